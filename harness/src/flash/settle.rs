//! Waits, bounded, for a block device to appear and settle after an SD mux switch.
//!
//! After a switch the card reader re-enumerates: the device node can appear before its size
//! is known, or vanish and come back. Writing in that window is the race labgrid users hit.

use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// How long to wait for a device and how long it must stay unchanged.
#[derive(Debug, Clone, Copy)]
pub struct Settle {
    /// Give up after this long.
    pub timeout: Duration,
    /// The device's path and size must stay the same this long.
    pub stable_for: Duration,
    /// How often to look.
    pub poll: Duration,
}

impl Default for Settle {
    fn default() -> Self {
        Settle {
            timeout: Duration::from_secs(30),
            stable_for: Duration::from_millis(500),
            poll: Duration::from_millis(100),
        }
    }
}

/// Polls `find` until it names a device with a readable, non-zero size that stays unchanged
/// for `settle.stable_for`, and returns it. `what` names the device in the timeout error.
pub fn wait_for_device(
    what: &str,
    settle: Settle,
    mut find: impl FnMut() -> Option<PathBuf>,
) -> Result<PathBuf> {
    let start = Instant::now();
    let mut seen: Option<(PathBuf, u64, Instant)> = None;
    loop {
        let now = Instant::now();
        let current = find().and_then(|p| device_size(&p).ok().filter(|&s| s > 0).map(|s| (p, s)));
        match (current, &seen) {
            (Some((p, s)), Some((q, t, since))) if p == *q && s == *t => {
                if now.duration_since(*since) >= settle.stable_for {
                    return Ok(p);
                }
            }
            (Some((p, s)), _) => seen = Some((p, s, now)),
            (None, _) => seen = None,
        }
        if now.duration_since(start) >= settle.timeout {
            let last = match &seen {
                Some((p, s, _)) => format!("{} of {s} bytes was still changing", p.display()),
                None => "it never appeared with a readable size".to_string(),
            };
            return Err(Error::infra(format!(
                "timed out after {:.1} s waiting for {what} to appear and settle: {last}",
                settle.timeout.as_secs_f64()
            )));
        }
        std::thread::sleep(settle.poll);
    }
}

/// The size in bytes of a block device or a regular file.
pub fn device_size(path: &Path) -> Result<u64> {
    let meta = std::fs::metadata(path).input_ctx(|| format!("cannot stat {}", path.display()))?;
    if !meta.file_type().is_block_device() {
        return Ok(meta.len());
    }
    let f = std::fs::File::open(path).infra_ctx(|| format!("cannot open {}", path.display()))?;
    block_size_of(&f).infra_ctx(|| format!("cannot read the size of {}", path.display()))
}

/// The size in bytes of an open block device: the offset of its end. The kernel answers a
/// seek to the end of a block device with the same count `BLKGETSIZE64` reports, and a seek
/// is a safe call where that ioctl is not. The file's offset is put back.
pub fn block_size_of(f: &std::fs::File) -> std::io::Result<u64> {
    let mut f = f;
    let at = f.stream_position()?;
    let size = f.seek(SeekFrom::End(0))?;
    f.seek(SeekFrom::Start(at))?;
    Ok(size)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quick() -> Settle {
        Settle {
            timeout: Duration::from_millis(600),
            stable_for: Duration::from_millis(100),
            poll: Duration::from_millis(10),
        }
    }

    #[test]
    fn returns_once_the_size_holds_still() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sdx");
        let mut calls = 0;
        let got = wait_for_device("the card", quick(), || {
            calls += 1;
            // Appears on the 3rd look, grows once, then holds still.
            if calls == 3 {
                std::fs::write(&p, [1u8; 10]).unwrap();
            }
            if calls == 5 {
                std::fs::write(&p, [1u8; 20]).unwrap();
            }
            (calls >= 3).then(|| p.clone())
        })
        .unwrap();
        assert_eq!(got, p);
        assert!(calls > 5);
    }

    #[test]
    fn times_out_naming_what_it_waited_for() {
        let err =
            wait_for_device("the block device of usbsdmux /dev/sg9", quick(), || None).unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert!(err.to_string().contains("usbsdmux /dev/sg9"), "{err}");
    }
}
