//! The writing side of a flash: a reader thread feeds chunks, several writer threads write
//! their data runs (`O_DIRECT` when aligned, so requests overlap on the device) and hash what
//! they wrote, and the caller's thread reports progress.

use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::aligned::{is_aligned, AlignedBuf, ALIGN};
use super::bmap::Bmap;
use super::check::Unit;
use super::progress::{Meter, Phase, Progress};
use super::ranges::Extent;
use super::read::{self, Msg, Plan};
use super::target::Target;
use super::CHUNK;

/// Writer threads: how many writes are in flight on the device at once.
pub const WRITERS: usize = 8;
/// Buffers in flight between the reader and the writers.
const POOL: usize = 2 * WRITERS + 2;

/// The outcome of the write phase.
pub struct Written {
    /// The raw image size.
    pub image_size: u64,
    /// Bytes written to the target.
    pub bytes: u64,
    /// What to read back and compare, in offset order.
    pub units: Vec<Unit>,
    /// Whether `O_DIRECT` was used throughout.
    pub direct_io: bool,
}

/// What one writer thread did.
#[derive(Default)]
struct WriterOut {
    units: Vec<Unit>,
    bytes: u64,
    end: Option<u64>,
    direct: bool,
}

/// State the writers share.
struct Shared<'a> {
    target: &'a Target,
    msgs: Mutex<Receiver<Msg>>,
    done: AtomicU64,
    stop: AtomicBool,
    /// Hash each run written (without sha256 bmap checksums to verify against).
    hash_runs: bool,
    /// Polled before each chunk; `true` interrupts.
    cancel: Option<fn() -> bool>,
}

/// Writes the plan's data to `target`; `check_source` checks the image against the bmap's
/// checksums on the way.
pub fn write_all(
    target: &Target,
    plan: Plan,
    bmap: Option<&Bmap>,
    skip_zeros: bool,
    check_source: bool,
    cancel: Option<fn() -> bool>,
    progress: &dyn Fn(Progress),
) -> Result<Written> {
    let expected: Option<Vec<Unit>> = bmap.and_then(|b| {
        b.ranges
            .iter()
            .map(|r| r.sha256.map(|s| (b.extent(r), s)))
            .collect()
    });
    let total = plan.data_bytes;
    let (pool_tx, pool_rx) = channel();
    for _ in 0..POOL {
        let _ = pool_tx.send(AlignedBuf::new(CHUNK));
    }
    let (msg_tx, msg_rx) = sync_channel(POOL);
    let shared = Arc::new(Shared {
        target,
        msgs: Mutex::new(msg_rx),
        done: AtomicU64::new(0),
        stop: AtomicBool::new(false),
        hash_runs: expected.is_none(),
        cancel,
    });
    // Checking the image against the bmap while writing costs a hash pass; verification
    // compares the target with the bmap's checksums anyway, so it is only done without it.
    let check = expected.as_deref().filter(|_| check_source);
    std::thread::scope(|s| {
        let reader = s.spawn(move || read::produce(plan, skip_zeros, check, pool_rx, msg_tx));
        let writers: Vec<_> = (0..WRITERS)
            .map(|_| {
                let (shared, pool) = (Arc::clone(&shared), pool_tx.clone());
                s.spawn(move || writer(&shared, pool))
            })
            .collect();
        // The writers alone hold the pool and the channel now: when they stop, so does the
        // reader.
        drop(pool_tx);
        let mut meter = Meter::new(Phase::Write, total, progress);
        let mut reported = 0;
        while !writers.iter().all(|w| w.is_finished()) {
            std::thread::sleep(Duration::from_millis(20));
            let done = shared.done.load(Ordering::Relaxed);
            meter.add(done - reported);
            reported = done;
        }
        drop(shared);
        let _ = reader.join();
        let mut all = WriterOut {
            direct: true,
            ..Default::default()
        };
        let mut first_err = None;
        for w in writers {
            match w.join() {
                Ok(Ok(out)) => {
                    all.units.extend(out.units);
                    all.bytes += out.bytes;
                    all.end = all.end.or(out.end);
                    all.direct &= out.direct;
                }
                Ok(Err(e)) => first_err = first_err.or(Some(e)),
                Err(_) => first_err = first_err.or(Some(Error::infra("a writer thread crashed"))),
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        let image_size = all
            .end
            .ok_or_else(|| Error::infra("the image reader stopped early"))?;
        meter.finish();
        all.units.sort_by_key(|(e, _)| e.start);
        Ok(Written {
            image_size,
            bytes: all.bytes,
            units: expected.clone().unwrap_or(all.units),
            direct_io: all.direct,
        })
    })
}

/// One writer thread: takes chunks until the reader ends, fails, or another writer failed.
fn writer(shared: &Shared, pool: Sender<AlignedBuf>) -> Result<WriterOut> {
    let mut sink = Sink::new(shared.target);
    let mut out = WriterOut::default();
    let result = loop {
        if shared.stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if shared.cancel.is_some_and(|c| c()) {
            break Err(Error::Interrupted);
        }
        let msg = shared
            .msgs
            .lock()
            .map_err(|_| Error::infra("writer poisoned"))?
            .recv();
        let chunk = match msg {
            Ok(Msg::Chunk(c)) => c,
            Ok(Msg::End(size)) => {
                out.end = Some(size);
                break Ok(());
            }
            Ok(Msg::Failed(e)) => break Err(e),
            Err(_) => break Ok(()),
        };
        for &(s, e) in &chunk.runs {
            let at = chunk.offset + s as u64;
            let data = &chunk.buf[s..e];
            if let Err(e) = sink.put(at, data) {
                shared.stop.store(true, Ordering::Relaxed);
                return Err(e);
            }
            out.bytes += data.len() as u64;
            if shared.hash_runs {
                let ext = Extent {
                    start: at,
                    end: at + data.len() as u64,
                };
                out.units.push((ext, Sha256::digest(data).into()));
            }
        }
        shared.done.fetch_add(chunk.len as u64, Ordering::Relaxed);
        let _ = pool.send(chunk.buf);
    };
    if result.is_err() {
        shared.stop.store(true, Ordering::Relaxed);
    }
    out.direct = sink.direct && sink.used_direct;
    result.map(|()| out)
}

/// Writes pieces to the target through the direct handle when it can.
struct Sink<'a> {
    target: &'a Target,
    direct: bool,
    used_direct: bool,
}

impl<'a> Sink<'a> {
    fn new(target: &'a Target) -> Sink<'a> {
        Sink {
            target,
            direct: target.direct.is_some(),
            used_direct: false,
        }
    }

    fn put(&mut self, at: u64, data: &[u8]) -> Result<()> {
        let end = at + data.len() as u64;
        if let Some(cap) = self.target.capacity() {
            if end > cap {
                return Err(Error::input(format!(
                    "the image is larger than {} ({cap} bytes): it has data up to byte {end}",
                    self.target.path.display()
                )));
            }
        }
        let fail = |e: std::io::Error| {
            Error::infra(format!(
                "cannot write {} at byte {at}: {e}",
                self.target.path.display()
            ))
        };
        let aligned = is_aligned(at)
            && is_aligned(data.len() as u64)
            && (data.as_ptr() as usize).is_multiple_of(ALIGN);
        if let (true, true, Some(direct)) = (self.direct, aligned, &self.target.direct) {
            match direct.write_all_at(data, at) {
                Ok(()) => {
                    self.used_direct = true;
                    return Ok(());
                }
                // The file system takes O_DIRECT opens but not the writes: go buffered.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = false,
                Err(e) => return Err(fail(e)),
            }
        }
        self.target.buffered.write_all_at(data, at).map_err(fail)
    }
}
