//! End to end on `qemuarm64`: an aarch64 `virt` machine booted by u-boot (TCG on an x86
//! host), from the qemuarm64 reference image. One run boots it for `suite/smoke` and for
//! `suite/hup`'s update (u-boot's resinOS_uEnv.txt switched and confirmed); the emulated arm
//! rig runs `suite/smoke` through the board flow; `port-check --static-only` passes on the
//! image and fails, without a boot, on a copy whose resinOS_uEnv.txt names no root slot.
//!
//! Needs the qemuarm64 reference image (`scripts/setup` builds it: `harness image build
//! --machine qemuarm64`), `qemu-system-aarch64` and u-boot (Debian's qemu-system-arm and
//! u-boot-qemu). Without them each test says so and passes, except under `CI=true`, where it
//! fails.

mod common;

use std::path::Path;
use std::time::Instant;

use common::{arm_image, harness, qemu_pids_mentioning, qemu_slots, stderr, summary};
use harness::image::configure::{configure, Change};

/// The figures each test of a run recorded, `suite/test: name=value ...`, for the log.
fn figures(s: &serde_json::Value) -> Vec<String> {
    s["tests"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            format!(
                "{}/{} {}s {}",
                t["suite"].as_str().unwrap_or(""),
                t["name"].as_str().unwrap_or(""),
                t["duration"],
                t["properties"]
            )
        })
        .collect()
}

/// Runs `harness run ARGS --out DIR` (one QEMU guest), asserts it passed `passed` tests and
/// left no QEMU behind; returns what it said and the serial log of `console` in the run.
fn run_passing(what: &str, args: &[&str], passed: u64, console: &str) -> (String, String) {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let out = harness()
        .args(args)
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    let took = started.elapsed();
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), stderr(&out));
    assert_eq!(out.status.code(), Some(0), "{said}");
    let s = summary(dir.path());
    eprintln!("{what}: {:.0}s; {:?}", took.as_secs_f64(), figures(&s));
    assert_eq!(s["counts"]["passed"], passed, "{s}");
    assert!(qemu_pids_mentioning(&dir.path().to_string_lossy()).is_empty());
    let serial = std::fs::read_to_string(dir.path().join(console).join("serial.log")).unwrap();
    (said, serial)
}

#[test]
fn smoke_and_the_u_boot_update_pass_on_qemuarm64() {
    let Some(_image) = arm_image() else { return };
    let (all, serial) = run_passing(
        "qemuarm64 smoke + hup/update",
        &["run", "--machine", "qemuarm64", "suite/smoke", "suite/hup"]
            .into_iter()
            .chain(["--filter", "^(smoke/|hup/update$)"])
            .collect::<Vec<_>>(),
        4,
        "qemuarm64",
    );
    // TCG without a probe, and no snapshots, each said once.
    assert!(
        all.contains("accelerator: tcg (aarch64 guest on a x86_64 host")
            || std::env::consts::ARCH == "aarch64",
        "{all}"
    );
    assert_eq!(
        all.matches("snapshots off: machine qemuarm64 has no vmgenid")
            .count(),
        1,
        "{all}"
    );
    assert!(
        serial.contains("U-Boot"),
        "u-boot's banner is in serial.log"
    );
    assert!(
        serial.contains("Linux version"),
        "the kernel's boot lines too"
    );
}

#[test]
fn the_emulated_arm_rig_runs_smoke_through_the_board_flow() {
    let Some(_image) = arm_image() else { return };
    let (_, serial) = run_passing(
        "emulated-arm smoke",
        &["run", "--rig", "emulated-arm", "suite/smoke"],
        3,
        "rig-emulated-arm",
    );
    assert!(serial.contains("U-Boot"), "the pty carried u-boot's banner");
    assert!(serial.contains("Linux version"), "and the kernel's");
}

/// Runs `harness port-check --machine qemuarm64 --static-only --image IMAGE --out DIR`.
fn port_check(image: &Path, dir: &Path) -> (std::process::Output, serde_json::Value) {
    let out = harness()
        .args([
            "port-check",
            "--machine",
            "qemuarm64",
            "--static-only",
            "--image",
        ])
        .arg(image)
        .arg("--out")
        .arg(dir)
        .output()
        .unwrap();
    let doc = std::fs::read_to_string(dir.join("porting.json"))
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or_default();
    (out, doc)
}

/// The static check `id` of a porting report.
fn static_check<'a>(doc: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|r| r["checks"].as_array().unwrap())
        .find(|c| c["id"] == format!("static/{id}"))
        .unwrap_or_else(|| panic!("no check {id}: {doc}"))
}

#[test]
fn port_check_reads_the_u_boot_image_and_names_a_broken_environment() {
    let Some(image) = arm_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let (out, doc) = port_check(&image, &dir.path().join("good"));
    assert_eq!(out.status.code(), Some(0), "{}{doc}", stderr(&out));
    eprintln!(
        "port-check --static-only: {:.2}s",
        started.elapsed().as_secs_f64()
    );
    for id in harness::port::statics::IDS {
        assert_eq!(static_check(&doc, id)["status"], "passed", "{id}: {doc}");
    }
    let env = static_check(&doc, "bootloader-env")["why"]
        .as_str()
        .unwrap();
    assert!(
        env.starts_with("resinOS_uEnv.txt: resin_root_part=") && env.ends_with("(resin-rootA)"),
        "{env}"
    );

    // A copy whose u-boot environment names no root slot: contract 8 fails, no boot.
    let copy = dir.path().join("no-root-part.img");
    let status = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(&image)
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    configure(
        &copy,
        &[Change::WriteFile(
            "resinOS_uEnv.txt".into(),
            b"upgrade_available=0\n".to_vec(),
        )],
    )
    .unwrap();
    let (out, doc) = port_check(&copy, &dir.path().join("bad"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}{}", stderr(&out));
    assert!(
        stdout.starts_with(
            "FAIL (static checks only, no boot): 1 of 8 contracts broken: 8. Host OS update"
        ),
        "{stdout}"
    );
    let env = static_check(&doc, "bootloader-env");
    assert_eq!(env["status"], "failed", "{env}");
    assert_eq!(
        env["why"], "resinOS_uEnv.txt names no resin_root_part",
        "{env}"
    );
    assert!(!dir.path().join("bad/run").exists(), "nothing booted");
}

/// KVM cannot run an aarch64 guest here: `--accel kvm` is bad input, before anything else.
#[test]
fn kvm_for_a_foreign_guest_is_bad_input() {
    if std::env::consts::ARCH == "aarch64" {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = harness()
        .args([
            "run",
            "--machine",
            "qemuarm64",
            "--accel",
            "kvm",
            "suite/smoke",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert_eq!(
        err.trim(),
        "harness: error: --accel kvm: machine qemuarm64 is aarch64, and KVM on this x86_64 \
         host runs only x86_64 guests (leave --accel out, or use tcg)"
    );
}
