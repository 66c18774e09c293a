//! End to end on the emulated rig: QEMU plays a board, and the board flow (flash through the
//! card's muxer, verify, power, serial console, SSH) runs exactly as on hardware. Needs the
//! reference image (`scripts/setup` builds it). Plus the rig's bad input: exit 2, one line.

mod common;

use std::path::Path;

use common::{assert_valid_junit, harness, qemu_pids_mentioning, qemu_slots, stderr, summary};

#[test]
fn a_health_check_brings_the_emulated_rig_back_into_rotation() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let state = common::scratch("state");
    // An earlier failure took the rig out of rotation: the pool has none left to offer.
    std::fs::create_dir_all(state.join("rotation")).unwrap();
    std::fs::write(
        state.join("rotation/emulated.json"),
        r#"{"rig":"emulated","in_rotation":false,"reason":"flash verify failed at 128 MiB","since":1764100000,"checked":1764100000,"run":""}"#,
    )
    .unwrap();
    let rigs = || {
        let out = harness()
            .arg("rigs")
            .env("HARNESS_STATE", &state)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(rigs().contains("out of rotation since"), "{}", rigs());
    let out = harness()
        .args(["run", "--rigs", "tag=x86_64", "suite/smoke"])
        .env("HARNESS_STATE", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("none of them in rotation"),
        "{}",
        stderr(&out)
    );

    // The health check boots the known-good image on it and runs suite/smoke.
    let out = harness()
        .args(["health", "--rig", "emulated", "--out"])
        .arg(dir.path())
        .env("HARNESS_STATE", &state)
        .output()
        .unwrap();
    let err = stderr(&out);
    let said = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{said}{err}");
    assert!(said.contains("emulated     healthy: in rotation"), "{said}");
    assert!(
        rigs().contains("in rotation (health check passed"),
        "{}",
        rigs()
    );
    let run = dir.path().join("emulated");
    assert_valid_junit(&run.join("junit.xml"));
    let s = summary(&run);
    assert_eq!(s["counts"]["passed"], 3, "{s}");
    assert_eq!(s["run"]["title"], "rig-emulated", "{s}");
    // The board flow went through the ordinary drivers: a card file, QMP, a pty UART.
    let notes = s["targets"][0]["notes"].to_string();
    for driver in [
        "media: image file ",
        "power: QEMU run state over QMP ",
        "/dev/pts/",
    ] {
        assert!(notes.contains(driver), "{driver} not in {notes}");
    }
    assert!(err.contains(", verified in "), "no flash figures: {err}");
    let serial = std::fs::read_to_string(run.join("rig-emulated/serial.log")).unwrap();
    assert!(
        serial.contains("Linux version"),
        "the kernel's boot lines are in serial.log"
    );
    assert!(
        qemu_pids_mentioning(&dir.path().to_string_lossy()).is_empty(),
        "the emulator outlived the run"
    );
}

/// Writes a suite of one test (`steps` in YAML) under `dir/name`.
fn suite(dir: &Path, name: &str, steps: &str) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    std::fs::write(
        d.join("suite.yaml"),
        "description: board flow\nconfig:\n  developmentMode: true\n",
    )
    .unwrap();
    std::fs::write(
        d.join("t.yaml"),
        format!("description: board flow\ntimeout: 900\nsteps:\n{steps}"),
    )
    .unwrap();
    d.to_string_lossy().into_owned()
}

#[test]
fn a_second_flash_power_cycles_and_image_configuration_reach_the_running_emulator() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let first = suite(
        dir.path(),
        "first",
        "  - ssh: {run: 'touch /mnt/data/harness-marker && sync', status: 0}\n\
         \x20 - power_cycle: {}\n\
         \x20 - ssh: {run: 'test -e /mnt/data/harness-marker', status: 0}\n\
         \x20 - configure: {set: {harnessMark: flashed}, on: image}\n\
         \x20 - ssh: {run: 'grep -c harnessMark /mnt/boot/config.json', output: '^1$'}\n",
    );
    // A fresh suite: the card is flashed again while QEMU holds it open, paused.
    let second = suite(
        dir.path(),
        "second",
        "  - ssh: {run: 'test ! -e /mnt/data/harness-marker && ! grep -q harnessMark /mnt/boot/config.json', status: 0}\n",
    );
    let out_dir = dir.path().join("out");
    let out = harness()
        .args(["run", "--rig", "emulated", &first, &second, "--out"])
        .arg(&out_dir)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(summary(&out_dir)["counts"]["passed"], 2);
    assert_eq!(err.matches(", verified in ").count(), 2, "{err}");
}

/// A project root with the machines, the smoke suite and one rig file `rig`.
fn root_with_rig(rig: &str, yaml: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let src = common::root();
    for sub in ["machines", "suites/smoke", "rigs"] {
        std::fs::create_dir_all(dir.path().join(sub)).unwrap();
    }
    for sub in ["machines", "suites/smoke"] {
        for e in std::fs::read_dir(src.join(sub)).unwrap() {
            let p = e.unwrap().path();
            std::fs::copy(&p, dir.path().join(sub).join(p.file_name().unwrap())).unwrap();
        }
    }
    let card = dir.path().join("card.img");
    let yaml = yaml.replace("CARD", card.to_str().unwrap());
    std::fs::write(
        dir.path().join("rigs").join(format!("{rig}.yaml")),
        format!("name: {rig}\ndescription: a rig for a test\nmachine: qemux86-64\n{yaml}"),
    )
    .unwrap();
    dir
}

fn assert_rig_bad_input(rig: &str, yaml: &str, expect: &str) {
    let root = root_with_rig(rig, yaml);
    let out = harness()
        .env("HARNESS_ROOT", root.path())
        .args(["run", "--rig", rig, "suite/smoke", "--out"])
        .arg(root.path().join("out"))
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(err.lines().count(), 1, "more than one line: {err}");
    assert_eq!(err.trim_end(), format!("harness: error: {expect}"));
}

#[test]
fn a_rig_naming_a_missing_serial_port_is_bad_input() {
    assert_rig_bad_input(
        "noserial",
        "media: {file: {path: CARD}}\n\
         power: {command: {on: 'true', off: 'true'}}\n\
         console: {port: /dev/ttyUSB77}\n\
         address: {fixed: 192.0.2.1}\n",
        "rig noserial: serial port /dev/ttyUSB77 does not exist",
    );
}

#[test]
fn a_rig_naming_a_missing_gpio_chip_is_bad_input() {
    assert_rig_bad_input(
        "nogpio",
        "media: {file: {path: CARD}}\n\
         power: {gpio: {chip: gpiochip77, line: 17}}\n\
         console: {port: /dev/null}\n\
         address: mdns\n",
        "rig nogpio: gpio chip gpiochip77 does not exist",
    );
}
