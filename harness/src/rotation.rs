//! Rigs in and out of rotation: a rig that fails its health check is taken out, and put back
//! when it passes one.
//!
//! The state is one JSON file per rig, `<state>/rotation/<rig>.json`. A rig never checked is
//! in rotation.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// A rig's rotation state, as stored in its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// The rig's name.
    pub rig: String,
    /// Whether runs may use the rig.
    pub in_rotation: bool,
    /// Why it is out, or that it passed its health check.
    pub reason: String,
    /// Since when it has been in or out, in Unix seconds.
    pub since: u64,
    /// When it was last checked, in Unix seconds.
    pub checked: u64,
    /// The run folder of that check, or empty.
    pub run: String,
}

impl Status {
    /// `out of rotation since 2026-11-25 21:45 UTC: flash verify failed at 128 MiB`, or
    /// `in rotation (health check passed 2026-11-25 21:45 UTC)`.
    pub fn describe(&self) -> String {
        if self.in_rotation {
            format!(
                "in rotation (health check passed {})",
                utc_minute(self.checked)
            )
        } else {
            format!(
                "out of rotation since {}: {}",
                utc_minute(self.since),
                self.reason
            )
        }
    }
}

/// Rig `rig`'s state; `None` if it was never checked (so it is in rotation).
pub fn status(rig: &str) -> Result<Option<Status>> {
    status_in(&dir(), rig)
}

/// Takes rig `rig` out of rotation for `reason`, found by the run in folder `run` (or empty).
/// A rig already out keeps its original `since`.
pub fn mark_out(rig: &str, reason: &str, run: &str) -> Result<()> {
    set_status(&dir(), rig, false, reason, run)
}

/// Puts rig `rig` back in rotation: it passed its health check in run folder `run`.
pub fn mark_in(rig: &str, run: &str) -> Result<()> {
    set_status(&dir(), rig, true, "passed its health check", run)
}

/// Whether runs may use rig `rig`: true if it was never checked or is in rotation. A state
/// file that cannot be read counts as in rotation (the next check rewrites it); [`status`]
/// reports the error.
pub fn in_rotation(rig: &str) -> bool {
    in_rotation_in(&dir(), rig)
}

/// The folder of the state files.
fn dir() -> PathBuf {
    crate::paths::state_dir().join("rotation")
}

fn path(dir: &Path, rig: &str) -> Result<PathBuf> {
    if rig.is_empty() || rig.starts_with('.') || rig.contains('/') || rig.contains('\0') {
        return Err(Error::input(format!("bad rig name {rig:?}")));
    }
    Ok(dir.join(format!("{rig}.json")))
}

fn status_in(dir: &Path, rig: &str) -> Result<Option<Status>> {
    let path = path(dir, rig)?;
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::infra(format!("cannot read {}: {e}", path.display()))),
    };
    serde_json::from_slice(&text)
        .map(Some)
        .input_ctx(|| format!("corrupt rotation state {} (delete it)", path.display()))
}

fn in_rotation_in(dir: &Path, rig: &str) -> bool {
    match status_in(dir, rig) {
        Ok(Some(s)) => s.in_rotation,
        Ok(None) | Err(_) => true,
    }
}

fn set_status(dir: &Path, rig: &str, in_rotation: bool, reason: &str, run: &str) -> Result<()> {
    let path = path(dir, rig)?;
    let now = crate::clock::now_unix();
    // A corrupt file is replaced: this check is the fresh word on the rig.
    let since = match status_in(dir, rig) {
        Ok(Some(old)) if old.in_rotation == in_rotation => old.since,
        _ => now,
    };
    let status = Status {
        rig: rig.to_string(),
        in_rotation,
        reason: reason.to_string(),
        since,
        checked: now,
        run: run.to_string(),
    };
    std::fs::create_dir_all(dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
    let json = serde_json::to_vec_pretty(&status)
        .infra_ctx(|| format!("cannot write {}", path.display()))?;
    crate::paths::write_atomically(&path, &json, 0o644)
}

/// `2026-11-25 21:45 UTC` from Unix seconds.
fn utc_minute(unix_secs: u64) -> String {
    crate::clock::utc(unix_secs).minute_text()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_checked_is_in_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        assert_eq!(status_in(tmp.path(), "pi4-1").unwrap(), None);
        assert!(in_rotation_in(tmp.path(), "pi4-1"));
    }

    #[test]
    fn mark_out_then_in() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("rotation");
        set_status(&dir, "pi4-1", false, "flash verify failed at 128 MiB", "r1").unwrap();
        let out = status_in(&dir, "pi4-1").unwrap().unwrap();
        assert!(!out.in_rotation);
        assert_eq!(out.reason, "flash verify failed at 128 MiB");
        assert_eq!(out.run, "r1");
        assert!(!in_rotation_in(&dir, "pi4-1"));

        // Out again: the reason and run change, `since` stays.
        let earlier = Status {
            since: 1_000,
            ..out.clone()
        };
        std::fs::write(
            path(&dir, "pi4-1").unwrap(),
            serde_json::to_vec(&earlier).unwrap(),
        )
        .unwrap();
        set_status(&dir, "pi4-1", false, "no serial console", "r2").unwrap();
        let again = status_in(&dir, "pi4-1").unwrap().unwrap();
        assert_eq!(
            (again.since, again.reason.as_str(), again.run.as_str()),
            (1_000, "no serial console", "r2")
        );
        assert!(again.checked >= out.checked);

        set_status(&dir, "pi4-1", true, "passed its health check", "r3").unwrap();
        let back = status_in(&dir, "pi4-1").unwrap().unwrap();
        assert!(back.in_rotation && in_rotation_in(&dir, "pi4-1"));
        assert_eq!(back.reason, "passed its health check");
        assert!(back.since >= again.checked);
        // Only the state file is left, no temp files.
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    }

    #[test]
    fn describe() {
        // 2026-11-25 21:45:30 UTC.
        let t = 1_795_643_130;
        let mut s = Status {
            rig: "pi4-1".into(),
            in_rotation: false,
            reason: "flash verify failed at 128 MiB".into(),
            since: t,
            checked: t + 3600,
            run: String::new(),
        };
        assert_eq!(
            s.describe(),
            "out of rotation since 2026-11-25 21:45 UTC: flash verify failed at 128 MiB"
        );
        s.in_rotation = true;
        assert_eq!(
            s.describe(),
            "in rotation (health check passed 2026-11-25 22:45 UTC)"
        );
        assert_eq!(utc_minute(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00 UTC");
    }

    #[test]
    fn corrupt_file_is_an_input_error() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("pi4-1.json");
        std::fs::write(&file, "{ not json").unwrap();
        let err = status_in(tmp.path(), "pi4-1").unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
        assert!(in_rotation_in(tmp.path(), "pi4-1"));
        // The next check replaces it.
        set_status(tmp.path(), "pi4-1", false, "boot failed", "").unwrap();
        assert!(!status_in(tmp.path(), "pi4-1").unwrap().unwrap().in_rotation);
    }

    #[test]
    fn bad_rig_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for rig in ["", "../x", ".hidden"] {
            assert!(matches!(status_in(tmp.path(), rig), Err(Error::Input(_))));
        }
    }
}
