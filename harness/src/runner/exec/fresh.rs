//! A fresh device: a fresh image with the suite's configuration, booted, or restored from a
//! snapshot of such a device (see [`crate::runner::snapshots`]).
//!
//! The first fresh device of a snapshot key boots for real with the snapshot's own key
//! pair, waits until systemd has settled, and is saved; then it, and every later fresh
//! device of that key, is restored: a new disk layer over the saved one, the machine's state
//! loaded, a login with the snapshot's key (its host key pinned anew), and the clock set from
//! the host's. A snapshot that does not restore is removed (when nobody else uses it) and the
//! device boots for real. A device without the run's key (`ssh_key: false`), a suite with
//! `snapshot: false`, `--no-snapshot` and a target that cannot snapshot always boot. Reboots,
//! power cycles and power cuts of a restored device are real boots from its own disk.

use std::time::{Duration, Instant};

use super::dut::Dut;
use crate::config::suite::Suite;
use crate::error::{Error, Result};
use crate::image::configure::Change;
use crate::runner::snapshots::{self, Hold, Making, Meta, Snapshots, Taken};

/// How long a device may take to settle (`systemctl is-system-running --wait`) before it
/// is saved.
const SETTLE: Duration = Duration::from_secs(120);

/// Tries at setting a restored device's clock.
const CLOCK_TRIES: usize = 4;

/// How far a restored device's clock may be from the host's once set, in seconds.
const CLOCK_SLACK: f64 = 1.0;

/// How a fresh device came up.
#[derive(Debug, Clone, PartialEq)]
pub enum How {
    /// A real boot.
    Booted,
    /// Restored from the snapshot with this (short) key.
    Restored(String),
    /// Booted for real (taking this long), saved as the snapshot with this key, and restored
    /// from it.
    Saved(String, Duration),
}

/// A fresh device that is up: how, and how long it took (to logged in, and with the clock
/// set after a restore; without the suite's setup steps).
#[derive(Debug, Clone, PartialEq)]
pub struct Fresh {
    /// How it came up.
    pub how: How,
    /// How long that took.
    pub took: Duration,
}

impl Fresh {
    /// `device up (SSH) after 2.5s (restored from snapshot 0a1b2c3d4e5f)`.
    pub fn describe(&self) -> String {
        let how = match &self.how {
            How::Booted => "booted".to_string(),
            How::Restored(k) => format!("restored from snapshot {k}"),
            How::Saved(k, boot) => format!(
                "booted for real in {:.1}s and saved as snapshot {k}, then restored",
                boot.as_secs_f64()
            ),
        };
        format!(
            "device up (SSH) after {:.1}s ({how})",
            self.took.as_secs_f64()
        )
    }

    /// The figures the report records: `boot_seconds` and/or `restore_seconds`.
    pub fn figures(&self) -> Vec<(&'static str, String)> {
        let secs = |d: &Duration| format!("{:.1}", d.as_secs_f64());
        match &self.how {
            How::Booted => vec![("boot_seconds", secs(&self.took))],
            How::Restored(_) => vec![("restore_seconds", secs(&self.took))],
            How::Saved(_, boot) => vec![
                ("boot_seconds", secs(boot)),
                ("restore_seconds", secs(&self.took)),
            ],
        }
    }
}

/// A fresh device with the suite's configuration and the run's key, up on SSH, with the
/// suite's setup steps run. Without a key (`None`: a test with `ssh_key: false`)
/// `config.json` has no `os.sshKeys` at all and every login from now on is password-less.
/// With `snapshots`, the device may come from a snapshot (see the module's notes); `say`
/// tells the terminal what it waits for.
pub fn fresh_boot(
    dut: &mut Dut,
    suite: &Suite,
    public_key: Option<&str>,
    snapshots: Option<&Snapshots>,
    timeout: Duration,
    say: &mut dyn FnMut(&str),
) -> Result<Fresh> {
    dut.disconnect();
    dut.forget_host_key();
    dut.target.power().off()?;
    // Off, the device no longer needs the snapshot its disk was layered on.
    dut.leave_snapshot();
    let snapshot = match (snapshots, public_key) {
        (Some(cache), Some(_)) if suite.file.snapshot => {
            dut.target.snapshot_identity().map(|id| (cache, id))
        }
        _ => None,
    };
    let mut up = None;
    if let Some((cache, identity)) = snapshot {
        up = from_snapshot(dut, suite, cache, &identity, timeout, say)?;
    }
    let fresh = match up {
        Some(fresh) => fresh,
        None => {
            dut.target.fresh_image()?;
            dut.keyless = public_key.is_none();
            dut.target
                .configure_image(&boot_changes(suite, public_key))?;
            Fresh {
                how: How::Booted,
                took: dut.boot(timeout)?,
            }
        }
    };
    dut.note(&fresh.describe());
    for step in &suite.setup {
        super::steps::run(dut, step, &suite.dir, Duration::from_secs(300))?;
    }
    Ok(fresh)
}

/// What a fresh device's image gets: the suite's configuration and files, then the run's
/// key in `os.sshKeys`, or no `os.sshKeys` at all.
pub fn boot_changes(suite: &Suite, public_key: Option<&str>) -> Vec<Change> {
    let mut changes = super::steps::changes(&suite.file.config, &[], &suite.file.files);
    changes.push(match public_key {
        Some(key) => Change::Set("os.sshKeys".into(), serde_json::json!([key]).to_string()),
        None => Change::Remove("os.sshKeys".into()),
    });
    changes
}

/// What a snapshot of a fresh device of `suite` on a target of `identity` depends on.
fn snapshot_identity(identity: &str, suite: &Suite) -> String {
    format!(
        "{identity}\nchanges: {:?}",
        boot_changes(suite, Some(snapshots::KEY_PLACEHOLDER))
    )
}

/// The device from the snapshot of its key, made first when there is none; `None` when it
/// must boot for real after all (the transcript says why). Errors are a real boot's (the
/// first device of a key boots) or Ctrl-C.
fn from_snapshot(
    dut: &mut Dut,
    suite: &Suite,
    cache: &Snapshots,
    identity: &str,
    timeout: Duration,
    say: &mut dyn FnMut(&str),
) -> Result<Option<Fresh>> {
    let identity = snapshot_identity(identity, suite);
    let key = snapshots::key(&identity);
    // Another device making this snapshot boots, settles and saves it: wait for all three.
    let wait =
        timeout + SETTLE + crate::qemu::snapshot::MIGRATION_TIMEOUT + Duration::from_secs(60);
    let (hold, made) = match cache.take(&key, wait, say)? {
        Taken::Ready(hold) => (hold, None),
        Taken::Make(making) => {
            let short = making.short().to_string();
            match make(dut, suite, making, &identity, timeout)? {
                Some((hold, boot)) => {
                    for gone in cache.prune(&key) {
                        say(&format!(
                            "removed snapshot {} (the cache is bounded; least recently used first)",
                            snapshots::short(&gone)
                        ));
                    }
                    (hold, Some(boot))
                }
                None => {
                    say(&format!(
                        "could not save snapshot {short}: booting for real"
                    ));
                    return Ok(None);
                }
            }
        }
    };
    let short = hold.short().to_string();
    match restore(dut, &hold, timeout) {
        Ok(took) => {
            hold.touch();
            dut.use_snapshot(hold);
            Ok(Some(Fresh {
                how: match made {
                    Some(boot) => How::Saved(short, boot),
                    None => How::Restored(short),
                },
                took,
            }))
        }
        // Ctrl-C kills QEMU under the restore: the snapshot is not to blame.
        Err(_) if crate::interrupt::requested() => Err(Error::Interrupted),
        Err(e) => {
            let _ = dut.target.power().off();
            dut.leave_snapshot();
            dut.keyless = false;
            let gone = if hold.remove() {
                "removed it"
            } else {
                "kept it: another device runs on it"
            };
            let line = format!("snapshot {short} did not restore ({e}); {gone}; booting for real");
            dut.note(&line);
            say(&line);
            Ok(None)
        }
    }
}

/// Boots the first device of a key for real with the snapshot's own key pair, lets it settle
/// and saves it; returns the snapshot and how long the boot took, or `None` when it booted but
/// could not be saved (the note says why). A boot that fails is the error.
fn make(
    dut: &mut Dut,
    suite: &Suite,
    making: Making,
    identity: &str,
    timeout: Duration,
) -> Result<Option<(Hold, Duration)>> {
    let (private, public) = making.key_pair()?;
    dut.target.fresh_image()?;
    dut.keyless = false;
    dut.target
        .configure_image(&boot_changes(suite, Some(&public)))?;
    dut.key = private;
    let booted = dut.boot(timeout);
    let took = match booted {
        Ok(took) => took,
        Err(e) => {
            dut.leave_snapshot();
            return Err(e);
        }
    };
    let saved = settle(dut).and_then(|state| {
        dut.note(&format!(
            "booted in {:.1}s and settled ({state}): saving it as snapshot {}",
            took.as_secs_f64(),
            making.short()
        ));
        dut.disconnect();
        dut.target.save_snapshot(making.dir())
    });
    let _ = dut.target.power().off();
    dut.leave_snapshot();
    match saved {
        Ok(()) => {
            let meta = Meta {
                key: snapshots::key(identity),
                identity: identity.to_string(),
                saved: crate::clock::now_unix(),
                boot_seconds: took.as_secs_f64(),
                harness: snapshots::harness_identity(),
            };
            making.done(&meta).map(|hold| Some((hold, took)))
        }
        Err(_) if crate::interrupt::requested() => Err(Error::Interrupted),
        Err(e) => {
            dut.note(&format!("could not save snapshot {}: {e}", making.short()));
            Ok(None)
        }
    }
}

/// Waits (bounded) until systemd says the device is up: `running`, or `degraded` (a unit
/// failed, which the tests will see anyway). Returns the state.
fn settle(dut: &mut Dut) -> Result<String> {
    let command = format!(
        "timeout {} systemctl is-system-running --wait",
        SETTLE.as_secs()
    );
    let out = dut.exec(&command, SETTLE + Duration::from_secs(30))?;
    let state = out.stdout.trim().to_string();
    match state.as_str() {
        "running" | "degraded" => Ok(state),
        other => Err(Error::infra(format!(
            "the device did not settle within {}s: systemd says {other:?}",
            SETTLE.as_secs()
        ))),
    }
}

/// Restores the snapshot `hold` onto the device, logs in with its key and sets the clock;
/// returns how long that took.
fn restore(dut: &mut Dut, hold: &Hold, timeout: Duration) -> Result<Duration> {
    let start = Instant::now();
    dut.disconnect();
    dut.forget_host_key();
    dut.target.restore_snapshot(hold.dir())?;
    let loaded = start.elapsed();
    dut.key = hold.private_key();
    dut.keyless = false;
    // The device was up when saved: its sshd answers at once, unless it was mid-start.
    if dut
        .login_at_once(timeout.min(Duration::from_secs(30)))
        .is_err()
    {
        dut.connect(timeout)?;
    }
    let logged_in = start.elapsed();
    let (off, tries) = set_clock(dut)?;
    let took = start.elapsed();
    dut.note(&format!(
        "restored snapshot {}: state loaded after {:.1}s, logged in after {:.1}s, clock set from the host's after {:.1}s ({off:+.2}s off, {tries} {})",
        hold.short(),
        loaded.as_secs_f64(),
        logged_in.as_secs_f64(),
        took.as_secs_f64(),
        if tries == 1 { "try" } else { "tries" }
    ));
    Ok(took)
}

/// The host's clock, in seconds since the epoch.
fn host_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Sets the device's clock to the host's (`date -u -s @T`, T the host's clock plus the lag
/// the last try showed; a `date` that takes whole seconds only gets T rounded) and reads it
/// back; up to [`CLOCK_TRIES`] tries until it is within [`CLOCK_SLACK`]. Returns the last
/// offset and the tries.
fn set_clock(dut: &mut Dut) -> Result<(f64, usize)> {
    // A first guess at the lag of one command under emulation.
    let mut lag = 0.5;
    let mut off = 0.0;
    for tries in 1..=CLOCK_TRIES {
        let target = host_now() + lag;
        let out = dut.exec(&set_clock_command(target), Duration::from_secs(30))?;
        let now = host_now();
        off = parse_clock(&out.stdout).ok_or_else(|| {
            Error::infra(format!(
                "cannot set the device's clock: `date` said {:?} {:?}",
                out.stdout.trim(),
                out.stderr.trim()
            ))
        })? - now;
        if off.abs() <= CLOCK_SLACK {
            return Ok((off, tries));
        }
        lag -= off;
    }
    Err(Error::infra(format!(
        "the device's clock stayed {off:+.1}s off the host's after {CLOCK_TRIES} tries at setting it"
    )))
}

/// Sets the clock to `t` (seconds since the epoch) and prints it back.
fn set_clock_command(t: f64) -> String {
    format!(
        "{{ date -u -s @{t:.3} || date -u -s @{:.0}; }} >/dev/null 2>&1; date +%s.%N",
        t.round()
    )
}

/// `date +%s.%N`'s answer (a `date` without `%N` prints it literally: whole seconds then).
fn parse_clock(stdout: &str) -> Option<f64> {
    let text = stdout.trim();
    text.parse()
        .ok()
        .or_else(|| text.split('.').next()?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fresh_device_without_the_key_has_no_ssh_keys_at_all() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("suite.yaml"),
            "description: s\nconfig: {developmentMode: true, os.sshKeys: [x]}\ntests: [a]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "description: a\nssh_key: false\nsteps:\n  - ssh: {run: 'true'}\n",
        )
        .unwrap();
        let suite = crate::config::suite::load(dir.path()).unwrap();
        let mut config =
            crate::image::config_json::ConfigJson::parse(br#"{"os":{"sshKeys":["old"]}}"#, "t")
                .unwrap();
        for change in boot_changes(&suite, None) {
            match change {
                Change::Set(k, v) => config.set(&k, &v).unwrap(),
                Change::Remove(k) => {
                    config.remove(&k);
                }
                _ => {}
            }
        }
        assert_eq!(config.0.get("os"), Some(&serde_json::json!({})));
        assert_eq!(
            config.0.get("developmentMode"),
            Some(&serde_json::json!(true))
        );
        let with = boot_changes(&suite, Some("ssh-ed25519 AAAA harness"));
        assert!(
            matches!(with.last(), Some(Change::Set(k, v)) if k == "os.sshKeys" && v.contains("AAAA"))
        );
    }

    #[test]
    fn the_snapshot_identity_has_the_configuration_but_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let suite = |hostname: &str| {
            std::fs::write(
                dir.path().join("suite.yaml"),
                format!("description: s\nconfig: {{hostname: {hostname}}}\ntests: [a]\n"),
            )
            .unwrap();
            std::fs::write(
                dir.path().join("a.yaml"),
                "description: a\nsteps:\n  - ssh: {run: 'true'}\n",
            )
            .unwrap();
            crate::config::suite::load(dir.path()).unwrap()
        };
        let one = snapshot_identity("qemu", &suite("one"));
        assert!(
            one.contains("one") && one.contains(snapshots::KEY_PLACEHOLDER),
            "{one}"
        );
        assert_ne!(one, snapshot_identity("qemu", &suite("two")));
        assert_ne!(one, snapshot_identity("qemu2", &suite("one")));
    }

    #[test]
    fn the_clock_is_set_to_the_millisecond_or_else_to_the_second() {
        let cmd = set_clock_command(1_700_000_000.6);
        assert_eq!(
            cmd,
            "{ date -u -s @1700000000.600 || date -u -s @1700000001; } >/dev/null 2>&1; date +%s.%N"
        );
        // GNU date (the host's, as the reference image's) takes the fraction.
        let out = std::process::Command::new("date")
            .args(["-u", "-d", "@1700000000.600", "+%s.%N"])
            .output()
            .unwrap();
        assert_eq!(
            parse_clock(&String::from_utf8_lossy(&out.stdout)),
            Some(1_700_000_000.6)
        );
    }

    #[test]
    fn the_clock_is_read_with_or_without_nanoseconds() {
        assert_eq!(
            parse_clock("1700000000.250000000\n"),
            Some(1_700_000_000.25)
        );
        assert_eq!(parse_clock("1700000000.N\n"), Some(1_700_000_000.0));
        assert_eq!(parse_clock("date: invalid date"), None);
    }

    #[test]
    fn the_figure_and_the_line_say_how_the_device_came_up() {
        let f = Fresh {
            how: How::Restored("0a1b2c3d4e5f".into()),
            took: Duration::from_millis(2500),
        };
        assert_eq!(
            f.describe(),
            "device up (SSH) after 2.5s (restored from snapshot 0a1b2c3d4e5f)"
        );
        assert_eq!(f.figures(), [("restore_seconds", "2.5".to_string())]);
        let b = Fresh {
            how: How::Booted,
            took: Duration::from_secs(28),
        };
        assert_eq!(b.figures(), [("boot_seconds", "28.0".to_string())]);
        assert!(b.describe().ends_with("(booted)"));
        let s = Fresh {
            how: How::Saved("0a1b2c3d4e5f".into(), Duration::from_secs(30)),
            took: Duration::from_secs(2),
        };
        assert_eq!(s.figures().len(), 2);
        assert!(s
            .describe()
            .contains("booted for real in 30.0s and saved as snapshot"));
    }
}
