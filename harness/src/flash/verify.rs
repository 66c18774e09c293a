//! Reads the written ranges back from the target, past the page cache, and compares digests.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::aligned::{is_aligned, AlignedBuf, ALIGN};
use super::progress::{Meter, Phase, Progress};
use super::target::Target;
use super::write::Unit;
use super::CHUNK;

const POOL: usize = 4;

/// One piece read back: `buf[..len]` continues unit `unit`; `last` ends it.
struct Piece {
    unit: usize,
    buf: AlignedBuf,
    len: usize,
    last: bool,
}

/// Compares the target's bytes at each unit with the unit's digest; the first mismatch is an
/// infrastructure error naming the range.
pub fn verify(target: &Target, units: &[Unit], progress: &dyn Fn(Progress)) -> Result<()> {
    if target.direct.is_none() {
        drop_cache(&target.buffered);
    }
    let total = units.iter().map(|(e, _)| e.len()).sum();
    let mut meter = Meter::new(Phase::Verify, Some(total), progress);
    let (pool_tx, pool_rx) = channel();
    for _ in 0..POOL {
        let _ = pool_tx.send(AlignedBuf::new(CHUNK));
    }
    let (tx, rx) = sync_channel::<Result<Piece>>(POOL);
    let path = target.path.display().to_string();
    std::thread::scope(|s| {
        s.spawn(move || {
            let mut reader = ReadBack {
                target,
                direct: target.direct.is_some(),
            };
            for (i, (ext, _)) in units.iter().enumerate() {
                let mut pos = ext.start;
                while pos < ext.end {
                    let Ok(mut buf) = pool_rx.recv() else { return };
                    let len = ((ext.end - pos) as usize).min(CHUNK);
                    let piece = reader.read(&mut buf, pos, len).map(|()| Piece {
                        unit: i,
                        buf,
                        len,
                        last: pos + len as u64 == ext.end,
                    });
                    let failed = piece.is_err();
                    if tx.send(piece).is_err() || failed {
                        return;
                    }
                    pos += len as u64;
                }
            }
        });
        let mut hasher = Sha256::new();
        for piece in rx {
            let piece = piece?;
            hasher.update(&piece.buf[..piece.len]);
            meter.add(piece.len as u64);
            if piece.last {
                let got: [u8; 32] = std::mem::take(&mut hasher).finalize().into();
                let (ext, want) = &units[piece.unit];
                if &got != want {
                    return Err(Error::infra(format!(
                        "verification failed: {path} {ext} differ from the image"
                    )));
                }
            }
            let _ = pool_tx.send(piece.buf);
        }
        meter.finish();
        Ok(())
    })
}

struct ReadBack<'a> {
    target: &'a Target,
    direct: bool,
}

impl ReadBack<'_> {
    /// Fills `buf[..len]` with the target's bytes at `at`.
    fn read(&mut self, buf: &mut AlignedBuf, at: u64, len: usize) -> Result<()> {
        let fail = |e: std::io::Error| {
            Error::infra(format!(
                "cannot read back {} at byte {at}: {e}",
                self.target.path.display()
            ))
        };
        if let (true, true, Some(direct)) = (self.direct, is_aligned(at), &self.target.direct) {
            // Direct reads need an aligned length: read whole blocks, use the first len bytes.
            let want = len.div_ceil(ALIGN) * ALIGN;
            match read_some(direct, &mut buf[..want], at, len) {
                Ok(()) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    self.direct = false;
                    drop_cache(&self.target.buffered);
                }
                Err(e) => return Err(fail(e)),
            }
        }
        self.target
            .buffered
            .read_exact_at(&mut buf[..len], at)
            .map_err(fail)
    }
}

/// Reads into `buf` at `at` until at least `need` bytes arrived.
fn read_some(f: &File, buf: &mut [u8], at: u64, need: usize) -> std::io::Result<()> {
    let mut got = 0;
    while got < need {
        match f.read_at(&mut buf[got..], at + got as u64) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Asks the kernel to drop the file's cached pages, so reads come from the device.
fn drop_cache(f: &File) {
    // SAFETY: advisory syscall on an open descriptor; failure only means a cached read.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}
