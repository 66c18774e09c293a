//! The copy-on-write overlay over the user's image, and reads and writes of its blocks while
//! the machine is off (through `qemu-img` and `qemu-io`, so no root and no mounts).

use std::path::Path;
use std::process::Command;

use crate::error::{Context, Error, Result};

/// Creates a qcow2 overlay at `overlay` backed by the raw `base`, `size_gib` large (or the
/// base's size, if larger).
pub fn create(base: &Path, overlay: &Path, size_gib: u32) -> Result<()> {
    let base = base
        .canonicalize()
        .input_ctx(|| format!("image {} does not exist", base.display()))?;
    let base_size = std::fs::metadata(&base)
        .input_ctx(|| format!("cannot read {}", base.display()))?
        .len();
    let size = base_size.max(u64::from(size_gib) << 30);
    let _ = std::fs::remove_file(overlay);
    run(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(&base)
            .arg(overlay)
            .arg(size.to_string()),
        "qemu-img create",
    )
}

/// Reads `len` bytes at `offset` from the overlay's virtual disk.
pub fn read(overlay: &Path, offset: u64, len: u64) -> Result<Vec<u8>> {
    let tmp = tempfile::NamedTempFile::new().infra_ctx(|| "cannot create a temp file".into())?;
    let bs = block_size(offset, len);
    run(
        Command::new("qemu-img")
            .args(["dd", "-f", "qcow2", "-O", "raw"])
            .arg(format!("bs={bs}"))
            .arg(format!("skip={}", offset / bs))
            // qemu-img dd counts the skipped blocks in `count`.
            .arg(format!("count={}", (offset + len) / bs))
            .arg(format!("if={}", overlay.display()))
            .arg(format!("of={}", tmp.path().display())),
        "qemu-img dd",
    )?;
    let bytes =
        std::fs::read(tmp.path()).infra_ctx(|| "cannot read the overlay's blocks".into())?;
    if bytes.len() as u64 != len {
        return Err(Error::infra(format!(
            "qemu-img dd returned {} bytes of {len} at offset {offset}",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Writes each `(offset, bytes)` into the overlay's virtual disk (the base stays untouched).
pub fn write(overlay: &Path, writes: &[(u64, &[u8])]) -> Result<()> {
    if writes.is_empty() {
        return Ok(());
    }
    let dir = tempfile::tempdir().infra_ctx(|| "cannot create a temp dir".into())?;
    let mut cmd = Command::new("qemu-io");
    cmd.args(["-f", "qcow2"]);
    for (i, (offset, bytes)) in writes.iter().enumerate() {
        let src = dir.path().join(format!("w{i}"));
        std::fs::write(&src, bytes).infra_ctx(|| "cannot write a temp file".into())?;
        cmd.arg("-c").arg(format!(
            "write -q -s {} {offset} {}",
            src.display(),
            bytes.len()
        ));
    }
    cmd.arg(overlay);
    run(&mut cmd, "qemu-io write")
}

/// The largest power-of-two block (up to 1 MiB) that divides both `offset` and `len`.
fn block_size(offset: u64, len: u64) -> u64 {
    let mut bs = 1 << 20;
    while bs > 512 && (!offset.is_multiple_of(bs) || !len.is_multiple_of(bs)) {
        bs /= 2;
    }
    bs
}

fn run(cmd: &mut Command, what: &str) -> Result<()> {
    let out = cmd.output().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            Error::input(format!("{what}: not found (install Debian's `qemu-utils`)"))
        } else {
            Error::infra(format!("{what}: {e}"))
        }
    })?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(Error::infra(format!(
            "{what} failed: {}",
            err.lines().next().unwrap_or("").trim()
        )));
    }
    // qemu-io reports some failures on stdout with a zero exit status.
    let stdout = String::from_utf8_lossy(&out.stdout);
    if let Some(line) = stdout
        .lines()
        .find(|l| l.contains("failed") || l.contains("error"))
    {
        return Err(Error::infra(format!("{what} failed: {line}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_size_divides_offset_and_length() {
        assert_eq!(block_size(4 << 20, 40 << 20), 1 << 20);
        assert_eq!(block_size(2048 * 512, 81920 * 512), 1 << 20);
        assert_eq!(block_size(63 * 512, 1024), 512);
    }

    #[test]
    fn overlay_writes_reach_the_overlay_and_never_the_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, vec![7u8; 4 << 20]).unwrap();
        let ov = dir.path().join("ov.qcow2");
        create(&base, &ov, 0).unwrap();
        write(
            &ov,
            &[(1 << 20, &[1u8; 4096][..]), (3 << 20, &[2u8; 512][..])],
        )
        .unwrap();
        let got = read(&ov, 1 << 20, 1 << 20).unwrap();
        assert!(got[..4096].iter().all(|&b| b == 1));
        assert!(got[4096..].iter().all(|&b| b == 7));
        assert_eq!(read(&ov, 3 << 20, 512).unwrap(), vec![2u8; 512]);
        assert!(std::fs::read(&base).unwrap().iter().all(|&b| b == 7));
    }
}
