//! Choosing the accelerator: KVM only when a real probe boot works, TCG otherwise.
//!
//! `/dev/kvm` existing proves little (nested virtualisation may open it and then hang a real
//! kernel), so the probe boots a kernel with a tiny initramfs that prints a marker and powers
//! off. The answer is cached per host kernel and QEMU binary, so only the first run pays.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Context, Result};
use crate::process::Child;

/// A QEMU accelerator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualisation.
    Kvm,
    /// Software emulation.
    Tcg,
}

impl Accel {
    /// The name QEMU's `-accel` takes.
    pub fn qemu_name(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }

    /// Parses `kvm`, `tcg` (for `--accel`).
    pub fn parse(s: &str) -> Option<Accel> {
        match s {
            "kvm" => Some(Accel::Kvm),
            "tcg" => Some(Accel::Tcg),
            _ => None,
        }
    }
}

const MARKER: &str = "HARNESS-KVM-PROBE-OK";
const PROBE_TIMEOUT: Duration = Duration::from_secs(25);

/// The accelerator to use: KVM if a probe boot of `kernel` under KVM reaches userspace.
/// `why` receives one line saying what was decided and why.
pub fn choose(qemu: &str, kernel: Option<&Path>, why: &mut dyn FnMut(String)) -> Accel {
    if std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        why("accelerator: tcg (/dev/kvm cannot be opened)".into());
        return Accel::Tcg;
    }
    let Some(kernel) = kernel.filter(|k| k.is_file()) else {
        why(
            "accelerator: tcg (no probe kernel yet; build the reference image to probe KVM)".into(),
        );
        return Accel::Tcg;
    };
    let cache = cache_file(qemu);
    if let Some(answer) = std::fs::read_to_string(&cache)
        .ok()
        .and_then(|s| Accel::parse(s.trim()))
    {
        why(format!(
            "accelerator: {} (cached probe, {})",
            answer.qemu_name(),
            cache.display()
        ));
        return answer;
    }
    let answer = match probe(qemu, kernel) {
        Ok(true) => Accel::Kvm,
        _ => Accel::Tcg,
    };
    why(format!(
        "accelerator: {} (probe boot under KVM {})",
        answer.qemu_name(),
        if answer == Accel::Kvm {
            "reached userspace"
        } else {
            "did not reach userspace"
        }
    ));
    if let Some(parent) = cache.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(&cache, answer.qemu_name());
    answer
}

/// The cache file for this host kernel and this QEMU binary.
fn cache_file(qemu: &str) -> PathBuf {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let qemu_id = which(qemu)
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
        .unwrap_or(0);
    crate::paths::cache_dir().join(format!("kvm-probe-{}-{qemu_id}", release.trim()))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// Boots `kernel` under KVM with a one-line init; true if the marker came back in time.
fn probe(qemu: &str, kernel: &Path) -> Result<bool> {
    let dir = tempfile::tempdir().infra_ctx(|| "cannot create a temp dir".into())?;
    let initrd = dir.path().join("probe.cpio");
    let busybox = Path::new("/bin/busybox");
    if !busybox.is_file() {
        return Ok(false);
    }
    let init = format!("#!/bin/busybox sh\n/bin/busybox echo {MARKER}\n/bin/busybox poweroff -f\n");
    let mut f =
        std::fs::File::create(&initrd).infra_ctx(|| "cannot write the probe initramfs".into())?;
    let busybox_bytes = std::fs::read(busybox).infra_ctx(|| "cannot read /bin/busybox".into())?;
    write_cpio(
        &mut f,
        &[
            ("bin", 0o040755, &[][..]),
            ("bin/busybox", 0o100755, &busybox_bytes),
            ("init", 0o100755, init.as_bytes()),
        ],
    )
    .infra_ctx(|| "cannot write the probe initramfs".into())?;
    drop(f);
    let out = dir.path().join("out.log");
    let mut cmd = Command::new(qemu);
    cmd.args([
        "-accel",
        "kvm",
        "-machine",
        "q35",
        "-m",
        "256",
        "-nodefaults",
        "-nographic",
    ])
    .args(["-no-reboot", "-serial", &format!("file:{}", out.display())])
    .arg("-kernel")
    .arg(kernel)
    .arg("-initrd")
    .arg(&initrd)
    .args(["-append", "console=ttyS0 panic=-1 quiet"])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let mut child = Child::spawn(cmd, "the KVM probe")?;
    let deadline = std::time::Instant::now() + PROBE_TIMEOUT;
    while std::time::Instant::now() < deadline {
        if std::fs::read_to_string(&out).is_ok_and(|s| s.contains(MARKER)) {
            return Ok(true);
        }
        if child.try_wait()?.is_some() {
            return Ok(std::fs::read_to_string(&out).is_ok_and(|s| s.contains(MARKER)));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(false)
}

/// Writes a `newc` cpio archive (what the kernel unpacks as an initramfs).
fn write_cpio(out: &mut impl Write, entries: &[(&str, u32, &[u8])]) -> std::io::Result<()> {
    let pad = |out: &mut dyn Write, n: usize| out.write_all(&[0u8; 3][..(4 - n % 4) % 4]);
    let trailer = [("TRAILER!!!", 0u32, &[][..])];
    for (ino, (name, mode, data)) in entries.iter().chain(trailer.iter()).enumerate() {
        let header = format!(
            "070701{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}{:08x}",
            ino + 1,
            mode,
            0,
            0,
            1,
            0,
            data.len(),
            0,
            0,
            0,
            0,
            name.len() + 1,
            0
        );
        out.write_all(header.as_bytes())?;
        out.write_all(name.as_bytes())?;
        out.write_all(&[0])?;
        pad(out, header.len() + name.len() + 1)?;
        out.write_all(data)?;
        pad(out, data.len())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_entries_are_four_byte_aligned_and_end_with_a_trailer() {
        let mut buf = Vec::new();
        write_cpio(&mut buf, &[("init", 0o100755, b"#!/bin/sh\n")]).unwrap();
        assert!(buf.starts_with(b"070701"));
        assert_eq!(buf.len() % 4, 0);
        let text = String::from_utf8_lossy(&buf);
        assert!(text.contains("init\0") && text.contains("TRAILER!!!"));
    }

    #[test]
    fn parses_accelerator_names() {
        assert_eq!(Accel::parse("kvm"), Some(Accel::Kvm));
        assert_eq!(Accel::parse("tcg"), Some(Accel::Tcg));
        assert_eq!(Accel::parse("hvf"), None);
    }
}
