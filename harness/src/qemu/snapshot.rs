//! Snapshots of a running machine: its RAM and device state written to a file by QEMU's
//! migration, its disk frozen as a qcow2 layer, and a machine restored from both.
//!
//! Save: QMP `stop`, then `migrate` to `file:PATH` (QEMU 8.2 and later; `exec:cat > PATH`
//! before), polled with `query-migrate` until it completes. Restore: QEMU started with the
//! same arguments plus `-incoming defer`, then `migrate-incoming` from the file, polled until
//! it completes, then `cont`. Both sides must have the same machine, so every start has a
//! `vmgenid` device: a new generation id per start makes the guest reseed its random state
//! (Linux 5.18 and later), so two machines restored from one snapshot draw different bytes.
//!
//! The disk: at save, the machine's overlay becomes the snapshot's frozen layer; a restore
//! puts a new qcow2 overlay over that layer, so the layer is never written again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::{Context, Error, Result};
use crate::qmp::Qmp;

/// How long a save or a load of the machine's state may take (300 MB: 2-3 s measured).
pub const MIGRATION_TIMEOUT: Duration = Duration::from_secs(180);

/// The migration URI that writes (`incoming: false`) or reads the state file `path`, for a
/// QEMU of version `(major, minor)`.
pub fn uri(version: (u64, u64), path: &Path, incoming: bool) -> String {
    if version >= (8, 2) {
        format!("file:{}", path.display())
    } else if incoming {
        format!(
            "exec:cat {}",
            crate::ssh::shell_quote(&path.display().to_string())
        )
    } else {
        format!(
            "exec:cat > {}",
            crate::ssh::shell_quote(&path.display().to_string())
        )
    }
}

/// QEMU's `(major, minor)` version, asked over QMP.
pub fn version(qmp: &mut Qmp) -> Result<(u64, u64)> {
    let v = qmp.execute("query-version", json!({}))?;
    let q = &v["qemu"];
    match (q["major"].as_u64(), q["minor"].as_u64()) {
        (Some(major), Some(minor)) => Ok((major, minor)),
        _ => Err(Error::infra(format!(
            "QMP query-version answered without a version: {v}"
        ))),
    }
}

/// Stops the guest and writes its RAM and device state to `path`; returns once QEMU says the
/// migration completed. `alive` fails when QEMU is gone.
pub fn save(qmp: &mut Qmp, path: &Path, alive: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let version = version(qmp)?;
    qmp.execute("stop", json!({}))?;
    qmp.execute("migrate", json!({"uri": uri(version, path, false)}))?;
    wait_completed(qmp, "saving the machine's state", alive)
}

/// Loads the state in `path` into a QEMU started with `-incoming defer`, then lets the guest
/// run. `alive` fails when QEMU is gone (QEMU exits when a load fails).
pub fn load(qmp: &mut Qmp, path: &Path, alive: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let version = version(qmp)?;
    qmp.execute("migrate-incoming", json!({"uri": uri(version, path, true)}))?;
    wait_completed(qmp, "loading the machine's state", alive)?;
    qmp.execute("cont", json!({}))?;
    Ok(())
}

/// Polls `query-migrate` until the migration completed, bounded by [`MIGRATION_TIMEOUT`].
fn wait_completed(qmp: &mut Qmp, what: &str, alive: &mut dyn FnMut() -> Result<()>) -> Result<()> {
    let start = Instant::now();
    loop {
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        let info = qmp.execute("query-migrate", json!({})).map_err(|e| {
            // A QEMU that exits on a failed load closes QMP first: its own words say more.
            alive().err().unwrap_or(e)
        })?;
        match info["status"].as_str().unwrap_or("") {
            "completed" => return Ok(()),
            "failed" | "cancelled" => {
                let why = info["error-desc"].as_str().unwrap_or("no reason given");
                return Err(Error::infra(format!("{what} failed: {why}")));
            }
            _ => {}
        }
        alive()?;
        if start.elapsed() > MIGRATION_TIMEOUT {
            return Err(Error::infra(format!(
                "{what}: not done after {}s ({info})",
                MIGRATION_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes the machine's `overlay` the frozen layer at `layer` (moved; copied across file
/// systems).
pub fn freeze(overlay: &Path, layer: &Path) -> Result<()> {
    if std::fs::rename(overlay, layer).is_ok() {
        return Ok(());
    }
    std::fs::copy(overlay, layer)
        .infra_ctx(|| format!("cannot copy {} to {}", overlay.display(), layer.display()))?;
    let _ = std::fs::remove_file(overlay);
    Ok(())
}

/// Creates a qcow2 `overlay` over the frozen qcow2 `layer` (its size).
pub fn overlay_over(layer: &Path, overlay: &Path) -> Result<()> {
    let _ = std::fs::remove_file(overlay);
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(layer)
        .arg(overlay)
        .output()
        .map_err(|e| {
            Error::infra(format!(
                "qemu-img create: {e} (install Debian's qemu-utils)"
            ))
        })?;
    if !out.status.success() {
        return Err(Error::infra(format!(
            "qemu-img create over {} failed: {}",
            layer.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// Which file `path` is, and which version of it: path, inode, size, modification and
/// change times. `ctime` is left out where a file may be touched without being changed.
pub fn file_identity(path: &Path, ctime: bool) -> String {
    match std::fs::metadata(path) {
        Ok(m) => {
            let mut id = format!(
                "{} ino={} size={} mtime={}.{}",
                path.display(),
                m.ino(),
                m.size(),
                m.mtime(),
                m.mtime_nsec()
            );
            if ctime {
                id.push_str(&format!(" ctime={}.{}", m.ctime(), m.ctime_nsec()));
            }
            id
        }
        Err(e) => format!("{} ({e})", path.display()),
    }
}

/// The program `binary` names: itself when it has a slash, else the first match on `PATH`.
pub fn which(binary: &str) -> PathBuf {
    if binary.contains('/') {
        return PathBuf::from(binary);
    }
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|dir| dir.join(binary))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(binary))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_uri_is_a_file_from_qemu_8_2_and_a_pipe_before() {
        let p = Path::new("/s/state.mig");
        assert_eq!(uri((10, 0), p, false), "file:/s/state.mig");
        assert_eq!(uri((8, 2), p, true), "file:/s/state.mig");
        assert_eq!(uri((7, 2), p, false), "exec:cat > '/s/state.mig'");
        assert_eq!(uri((8, 1), p, true), "exec:cat '/s/state.mig'");
    }

    #[test]
    fn a_frozen_layer_carries_a_new_overlay_and_never_its_writes() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, vec![7u8; 1 << 20]).unwrap();
        let first = dir.path().join("first.qcow2");
        super::super::overlay::create(&base, &first, 0).unwrap();
        super::super::overlay::write(&first, &[(0, &[1u8; 512][..])]).unwrap();
        let layer = dir.path().join("snap/disk.qcow2");
        std::fs::create_dir_all(layer.parent().unwrap()).unwrap();
        freeze(&first, &layer).unwrap();
        assert!(!first.exists());
        let before = std::fs::read(&layer).unwrap();
        let next = dir.path().join("next.qcow2");
        overlay_over(&layer, &next).unwrap();
        assert_eq!(
            super::super::overlay::read(&next, 0, 512).unwrap(),
            vec![1u8; 512]
        );
        super::super::overlay::write(&next, &[(0, &[2u8; 512][..])]).unwrap();
        assert_eq!(
            super::super::overlay::read(&next, 0, 512).unwrap(),
            vec![2u8; 512]
        );
        assert_eq!(
            std::fs::read(&layer).unwrap(),
            before,
            "the layer was written"
        );
    }

    #[test]
    fn a_file_identity_changes_with_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("f");
        std::fs::write(&f, "a").unwrap();
        let one = file_identity(&f, true);
        std::fs::write(&f, "ab").unwrap();
        assert_ne!(one, file_identity(&f, true));
        assert!(file_identity(&dir.path().join("none"), false).contains("none"));
        assert!(which("sh").is_absolute());
    }
}
