//! Reads the written ranges back from the target, past the page cache, and compares digests.
//! Several threads read at once, each hashing whole ranges, so the device stays busy.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::aligned::{is_aligned, AlignedBuf, ALIGN};
use super::check::Unit;
use super::progress::{Meter, Phase, Progress};
use super::target::Target;
use super::CHUNK;

/// Reader threads.
const READERS: usize = 8;

/// Why verification failed: the error, and the unit whose bytes differ (none for I/O errors).
pub struct Failure {
    /// The index of the first unit that read back with another digest.
    pub mismatch: Option<usize>,
    /// The infrastructure error to report.
    pub error: Error,
}

/// Compares the target's bytes at each unit with the unit's digest. The first (lowest) bad
/// range is reported.
pub fn verify(
    target: &Target,
    units: &[Unit],
    cancel: Option<fn() -> bool>,
    progress: &dyn Fn(Progress),
) -> std::result::Result<(), Failure> {
    if target.direct.is_none() {
        drop_cache(&target.buffered);
    }
    let total = units.iter().map(|(e, _)| e.len()).sum();
    let mut meter = Meter::new(Phase::Verify, Some(total), progress);
    let next = AtomicUsize::new(0);
    let done = AtomicU64::new(0);
    // The lowest failing unit and why.
    let failed: Mutex<Option<(usize, Error, bool)>> = Mutex::new(None);
    let path = target.path.display().to_string();
    std::thread::scope(|s| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                s.spawn(|| {
                    let mut rb = ReadBack {
                        target,
                        direct: target.direct.is_some(),
                    };
                    let mut buf = AlignedBuf::new(CHUNK);
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some((ext, want)) = units.get(i) else {
                            return;
                        };
                        let lowest = failed.lock().map(|f| f.as_ref().map(|x| x.0));
                        if lowest.is_ok_and(|l| l.is_some_and(|l| l < i)) {
                            return;
                        }
                        if cancel.is_some_and(|c| c()) {
                            if let Ok(mut f) = failed.lock() {
                                f.get_or_insert((0, Error::Interrupted, false));
                            }
                            return;
                        }
                        let result = match rb.hash(&mut buf, ext.start, ext.end, &done) {
                            Ok(got) if &got == want => Ok(()),
                            Ok(_) => Err((
                                Error::infra(format!(
                                    "verification failed: {path} {ext} differ from the image"
                                )),
                                true,
                            )),
                            Err(e) => Err((e, false)),
                        };
                        if let Err((e, mismatch)) = result {
                            if let Ok(mut f) = failed.lock() {
                                if f.as_ref().is_none_or(|(j, _, _)| i < *j) {
                                    *f = Some((i, e, mismatch));
                                }
                            }
                        }
                    }
                })
            })
            .collect();
        let mut reported = 0;
        while !readers.iter().all(|r| r.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            let d = done.load(Ordering::Relaxed);
            meter.add(d - reported);
            reported = d;
        }
    });
    match failed.into_inner().ok().flatten() {
        Some((i, error, mismatch)) => Err(Failure {
            mismatch: mismatch.then_some(i),
            error,
        }),
        None => {
            meter.finish();
            Ok(())
        }
    }
}

struct ReadBack<'a> {
    target: &'a Target,
    direct: bool,
}

impl ReadBack<'_> {
    /// The sha256 of the target's bytes `start..end`, read in chunks through `buf`.
    fn hash(
        &mut self,
        buf: &mut AlignedBuf,
        start: u64,
        end: u64,
        done: &AtomicU64,
    ) -> Result<[u8; 32]> {
        let mut hasher = Sha256::new();
        let mut pos = start;
        while pos < end {
            let len = ((end - pos) as usize).min(CHUNK);
            self.read(buf, pos, len)?;
            hasher.update(&buf[..len]);
            done.fetch_add(len as u64, Ordering::Relaxed);
            pos += len as u64;
        }
        Ok(hasher.finalize().into())
    }

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
/// Failure only means a cached read.
fn drop_cache(f: &File) {
    let _ = rustix::fs::fadvise(f, 0, None, rustix::fs::Advice::DontNeed);
}
