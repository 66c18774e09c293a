//! Where things live: the project's files, the cache, the reports.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// The project root: the folder holding `machines/` and `suites/`.
///
/// `HARNESS_ROOT` wins; else the current folder or one of its parents; else the folder the
/// binary was built in (`target/*/harness` sits two levels below the root).
pub fn project_root() -> Result<PathBuf> {
    if let Some(root) = std::env::var_os("HARNESS_ROOT") {
        return Ok(PathBuf::from(root));
    }
    let is_root = |p: &Path| p.join("machines").is_dir() && p.join("suites").is_dir();
    if let Ok(cwd) = std::env::current_dir() {
        if let Some(found) = cwd.ancestors().find(|p| is_root(p)) {
            return Ok(found.to_path_buf());
        }
    }
    if let Ok(exe) = std::env::current_exe() {
        if let Some(found) = exe.ancestors().find(|p| is_root(p)) {
            return Ok(found.to_path_buf());
        }
    }
    Err(Error::input(
        "cannot find the project (no machines/ and suites/ here or above); set HARNESS_ROOT",
    ))
}

/// The cache folder: `HARNESS_CACHE`, else `$XDG_CACHE_HOME/harness`, else `~/.cache/harness`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARNESS_CACHE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return PathBuf::from(dir).join("harness");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("harness")
}

/// The state folder (what persists between runs, such as which rigs are in rotation):
/// `HARNESS_STATE`, else `$XDG_STATE_HOME/harness`, else `~/.local/state/harness`.
pub fn state_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("HARNESS_STATE") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(dir).join("harness");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home)
        .join(".local")
        .join("state")
        .join("harness")
}

/// Makes `dir` (and its parents) a folder only this user may enter: created 0700 when
/// missing, set to 0700, refused (bad input naming `why`, e.g. "refusing to put the run's
/// private key there (set HARNESS_STATE)") when it is not a folder of this user's own.
pub fn private_dir(dir: &Path, why: &str) -> Result<()> {
    use crate::error::Context;
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .infra_ctx(|| format!("cannot create {}", dir.display()))?;
    let meta =
        std::fs::symlink_metadata(dir).infra_ctx(|| format!("cannot read {}", dir.display()))?;
    if !meta.is_dir() || meta.uid() != rustix::process::geteuid().as_raw() {
        return Err(Error::input(format!(
            "{} is not a folder of this user's own: {why}",
            dir.display()
        )));
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .infra_ctx(|| format!("cannot restrict {}", dir.display()))
}

/// Writes `bytes` to `path` atomically (a temp file in the same folder, renamed over it) with
/// permission bits `mode`. In a sticky folder only a file's owner may replace it; there the
/// file is rewritten in place, which callers make safe by holding a lock.
pub fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<()> {
    use crate::error::Context;
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let cannot = || format!("cannot write {}", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{name}."))
        .suffix(".tmp")
        .tempfile_in(dir)
        .infra_ctx(cannot)?;
    tmp.write_all(bytes)
        .and_then(|()| {
            tmp.as_file()
                .set_permissions(std::fs::Permissions::from_mode(mode))
        })
        .infra_ctx(cannot)?;
    match tmp.persist(path) {
        Ok(_) => Ok(()),
        Err(e) if e.error.kind() == std::io::ErrorKind::PermissionDenied => {
            std::fs::write(path, bytes).infra_ctx(cannot)
        }
        Err(e) => Err(Error::infra(format!("{}: {}", cannot(), e.error))),
    }
}
