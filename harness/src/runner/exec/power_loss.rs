//! The `power-loss` check: cut the power at chosen points of a host OS update and prove the
//! device still boots a complete OS — the old one, or the new one only once it was fully
//! written and the bootloader armed — with its data intact; then a full update succeeds.
//!
//! The device tells where an update is through the markers `hostapp-update` prints on the
//! serial console (`hostapp-update: phase=write-start|write-done|armed`); to cut at a phase
//! exactly, the update is asked to pause there (`HOSTAPP_UPDATE_STALL=<phase>`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::dut::Dut;
use crate::error::{Error, Result};
use crate::runner::checks::POINTS;

const CANARY: &str = "/mnt/data/harness-canary";
const BOOT: Duration = Duration::from_secs(300);

/// Runs the check. Arguments: `payload` (the update file on the device), `version` (the OS
/// version it installs), `points` (default: all of [`POINTS`]), `mid_write_seconds` (default 3).
pub fn run(dut: &mut Dut, args: &BTreeMap<String, Value>, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    let arg = |k: &str| args.get(k).and_then(Value::as_str).map(|s| dut.expand(s));
    let payload = arg("payload").ok_or_else(|| Error::input("power-loss needs `payload`"))?;
    let new_version = arg("version").ok_or_else(|| Error::input("power-loss needs `version`"))?;
    let points: Vec<String> = match args.get("points") {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => POINTS.iter().map(|p| p.to_string()).collect(),
    };
    if let Some(bad) = points.iter().find(|p| !POINTS.contains(&p.as_str())) {
        return Err(Error::input(format!(
            "power-loss: unknown point `{bad}` (known: {})",
            POINTS.join(", ")
        )));
    }
    let mid_write = args
        .get("mid_write_seconds")
        .and_then(Value::as_u64)
        .unwrap_or(3);
    let canary = sh(dut, &format!(
        "test -f {CANARY} || dd if=/dev/urandom of={CANARY} bs=1M count=4 2>/dev/null; sync; sha256sum {CANARY} | cut -d' ' -f1"
    ))?;
    for point in &points {
        if Instant::now() >= deadline {
            return Err(Error::failed(format!(
                "ran out of time before the cut point `{point}`"
            )));
        }
        let (old_version, old_slot) = (version(dut)?, slot(dut)?);
        cut_at(dut, point, &payload, mid_write)?;
        dut.boot(BOOT)?;
        let (v, s) = (version(dut)?, slot(dut)?);
        dut.record(&format!("cut_{point}"), format!("booted {v} from {s}"));
        dut.note(&format!(
            "power cut at {point}: booted {v} from {s} (before: {old_version} from {old_slot})"
        ));
        let old_ok = s == old_slot && v == old_version;
        let new_ok = s != old_slot && v == new_version;
        let ok = match point.as_str() {
            "after-arm" => new_ok,
            "first-boot" => old_ok || new_ok,
            _ => old_ok,
        };
        if !ok {
            let want = match point.as_str() {
                "after-arm" => format!("the new OS {new_version} from the other slot"),
                "first-boot" => "a complete OS, old or new".to_string(),
                _ => format!("the old OS {old_version} from {old_slot}"),
            };
            return Err(Error::failed(format!(
                "after a power cut at {point} the device booted {v} from {s}; expected {want}"
            )));
        }
        let now = sh(dut, &format!("sha256sum {CANARY} | cut -d' ' -f1"))?;
        if now != canary {
            return Err(Error::failed(format!(
                "after a power cut at {point} the data on resin-data changed"
            )));
        }
        if new_ok {
            wait_confirmed(dut)?;
        }
    }
    // Whatever the cuts left behind, a plain update must still work.
    let before = slot(dut)?;
    update(dut, &payload)?;
    dut.reboot(BOOT, false)?;
    let (v, s) = (version(dut)?, slot(dut)?);
    if v != new_version || s == before {
        return Err(Error::failed(format!(
            "the update after the power cuts did not take: booted {v} from {s} (was on {before})"
        )));
    }
    wait_confirmed(dut)?;
    dut.record("update_after_cuts", format!("booted {v} from {s}"));
    Ok(())
}

/// Starts an update and cuts the power at `point`.
fn cut_at(dut: &mut Dut, point: &str, payload: &str, mid_write: u64) -> Result<()> {
    let console = dut.target.console().clone();
    console.skip_to_end();
    let stall = match point {
        "before-write" => "write-start",
        "after-write" => "write-done",
        "after-arm" => "armed",
        _ => "",
    };
    let wait = Duration::from_secs(600);
    match point {
        "mid-write" => {
            start_update(dut, payload, "")?;
            console.expect("hostapp-update: phase=write-start", wait)?;
            let mark = console.position();
            std::thread::sleep(Duration::from_secs(mid_write));
            if console
                .text_between(mark, console.position())
                .contains("phase=write-done")
            {
                return Err(Error::input(format!(
                    "the update's write took under {mid_write}s, so it cannot be cut mid-write; lower mid_write_seconds"
                )));
            }
        }
        "first-boot" => {
            update(dut, payload)?;
            console.skip_to_end();
            let _ = dut.exec(
                "(sleep 1; reboot) >/dev/null 2>&1 &",
                Duration::from_secs(15),
            );
            // The new kernel is starting: the first boot of the new OS is under way.
            console.expect("Linux version", wait)?;
            std::thread::sleep(Duration::from_secs(2));
        }
        _ => {
            start_update(dut, payload, stall)?;
            console.expect(&format!("hostapp-update: phase={stall}"), wait)?;
        }
    }
    dut.disconnect();
    dut.target.power().off()
}

fn start_update(dut: &mut Dut, payload: &str, stall: &str) -> Result<()> {
    let env = if stall.is_empty() {
        String::new()
    } else {
        format!("HOSTAPP_UPDATE_STALL={stall} ")
    };
    sh(
        dut,
        &format!(
            "{env}nohup hostapp-update -f {payload} >/tmp/hostapp-update.log 2>&1 & echo started"
        ),
    )?;
    Ok(())
}

/// Runs a whole update (no cut).
fn update(dut: &mut Dut, payload: &str) -> Result<()> {
    let out = dut.exec(
        &format!("hostapp-update -f {payload}"),
        Duration::from_secs(900),
    )?;
    if out.status != 0 {
        return Err(Error::failed(format!(
            "hostapp-update -f {payload} exited {}: {}",
            out.status,
            out.stderr.trim().lines().last().unwrap_or("")
        )));
    }
    Ok(())
}

/// What the device's bootloader environments on resin-boot say of `upgrade_available`: one
/// `FILE: upgrade_available=N` line per file that names it. Found by name (`grubenv`,
/// `resinOS_uEnv.txt`, `bootenv`, ...), as balenaOS has a different one per bootloader.
const UPGRADE_AVAILABLE: &str = "for f in $(find /mnt/boot -maxdepth 3 -type f \\( -name '*env' -o -name '*Env.txt' -o -name '*env.txt' \\)); do v=$(grep -a '^upgrade_available=' \"$f\" | tail -n1); [ -n \"$v\" ] && echo \"$f: $v\"; done; true";

/// Whether the environments [`UPGRADE_AVAILABLE`] listed say the update is confirmed: at
/// least one names `upgrade_available`, and every one says 0.
fn confirmed(envs: &str) -> bool {
    let values: Vec<&str> = envs
        .lines()
        .filter_map(|l| l.rsplit_once("upgrade_available=").map(|(_, v)| v.trim()))
        .collect();
    !values.is_empty() && values.iter().all(|v| *v == "0")
}

/// Waits until the new OS confirmed itself (`upgrade_available=0`).
fn wait_confirmed(dut: &mut Dut) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let envs = sh(dut, UPGRADE_AVAILABLE)?;
        if confirmed(&envs) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let said = if envs.is_empty() {
                "no bootloader environment on resin-boot names upgrade_available".to_string()
            } else {
                envs.replace('\n', "; ")
            };
            return Err(Error::failed(format!(
                "the new OS did not confirm itself within 300s ({said})"
            )));
        }
        std::thread::sleep(Duration::from_secs(5));
    }
}

fn version(dut: &mut Dut) -> Result<String> {
    sh(dut, ". /etc/os-release && echo \"$VERSION_ID\"")
}

fn slot(dut: &mut Dut) -> Result<String> {
    sh(dut, "findmnt -n -o SOURCE /mnt/sysroot/active")
}

/// Runs `command` and returns its trimmed stdout; a non-zero exit is a failure.
fn sh(dut: &mut Dut, command: &str) -> Result<String> {
    let out = dut.exec(command, Duration::from_secs(60))?;
    if out.status != 0 {
        return Err(Error::failed(format!(
            "`{command}` exited {}: {}",
            out.status,
            out.stderr.trim()
        )));
    }
    Ok(out.stdout.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_update_is_confirmed_only_when_some_environment_says_0_and_none_says_otherwise() {
        assert!(confirmed(
            "/mnt/boot/EFI/BOOT/grubenv: upgrade_available=0\n"
        ));
        assert!(confirmed(
            "/mnt/boot/resinOS_uEnv.txt: upgrade_available=0\n/mnt/boot/bootenv: upgrade_available=0"
        ));
        assert!(!confirmed(""));
        assert!(!confirmed(
            "/mnt/boot/EFI/BOOT/grubenv: upgrade_available=1"
        ));
        assert!(!confirmed(
            "/mnt/boot/resinOS_uEnv.txt: upgrade_available=0\n/mnt/boot/bootenv: upgrade_available=1"
        ));
    }

    #[test]
    fn the_environment_probe_finds_every_bootloader_environment_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let boot = dir.path().join("mnt/boot");
        std::fs::create_dir_all(boot.join("EFI/BOOT")).unwrap();
        std::fs::write(
            boot.join("EFI/BOOT/grubenv"),
            "# GRUB\nupgrade_available=1\n",
        )
        .unwrap();
        std::fs::write(
            boot.join("resinOS_uEnv.txt"),
            "resin_root_part=2\nupgrade_available=0\n",
        )
        .unwrap();
        std::fs::write(boot.join("config.json"), "{}").unwrap();
        let probe = UPGRADE_AVAILABLE.replace("/mnt/boot", &boot.to_string_lossy());
        let out = std::process::Command::new("sh")
            .args(["-c", &probe])
            .output()
            .unwrap();
        let out = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("grubenv: upgrade_available=1"), "{out}");
        assert!(
            out.contains("resinOS_uEnv.txt: upgrade_available=0"),
            "{out}"
        );
        assert!(!confirmed(&out));
    }
}
