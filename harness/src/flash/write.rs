//! The writing side of a flash: a reader thread feeds chunks, this thread writes their data
//! runs (`O_DIRECT` when aligned), and a hasher thread records what was written.

use std::os::unix::fs::FileExt;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::aligned::{is_aligned, AlignedBuf, ALIGN};
use super::bmap::Bmap;
use super::progress::{Meter, Phase, Progress};
use super::ranges::Extent;
use super::read::{self, Chunk, Msg, Plan};
use super::target::{too_large, Target};
use super::CHUNK;

/// Buffers in flight between reader, writer and hasher.
const POOL: usize = 6;

/// A written range and the sha256 its bytes must have.
pub type Unit = (Extent, [u8; 32]);

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

/// Writes the plan's data to `target`.
pub fn write_all(
    target: &mut Target,
    plan: Plan,
    bmap: Option<&Bmap>,
    skip_zeros: bool,
    progress: &dyn Fn(Progress),
) -> Result<Written> {
    let image = plan.image_name();
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
    let (chunk_tx, chunk_rx) = channel();
    std::thread::scope(|s| {
        let reader = s.spawn(move || read::produce(plan, skip_zeros, pool_rx, msg_tx));
        let hasher = s.spawn(move || hash_chunks(chunk_rx, pool_tx, expected, &image));
        let mut meter = Meter::new(Phase::Write, total, progress);
        let wrote = write_loop(target, msg_rx, chunk_tx, &mut meter);
        let hashed = hasher
            .join()
            .unwrap_or_else(|_| Err(Error::infra("the hasher thread crashed")));
        let _ = reader.join();
        let (image_size, bytes, direct_io) = match wrote {
            // The hasher stopped early: its error says why.
            Ok(None) => {
                return Err(hashed
                    .err()
                    .unwrap_or_else(|| Error::infra("hasher stopped")))
            }
            Ok(Some(w)) => w,
            Err(e) => return Err(e),
        };
        meter.finish();
        Ok(Written {
            image_size,
            bytes,
            units: hashed?,
            direct_io,
        })
    })
}

/// Writes every chunk; `Ok(None)` when the hasher hung up first.
fn write_loop(
    target: &mut Target,
    msgs: Receiver<Msg>,
    to_hasher: Sender<Chunk>,
    meter: &mut Meter,
) -> Result<Option<(u64, u64, bool)>> {
    let mut sink = Sink::new(target);
    let mut bytes = 0u64;
    loop {
        match msgs.recv() {
            Ok(Msg::Chunk(chunk)) => {
                for &(s, e) in &chunk.runs {
                    let at = chunk.offset + s as u64;
                    sink.put(at, &chunk.buf[s..e])?;
                    bytes += (e - s) as u64;
                }
                meter.add(chunk.len as u64);
                if to_hasher.send(chunk).is_err() {
                    return Ok(None);
                }
            }
            Ok(Msg::End(size)) => return Ok(Some((size, bytes, sink.direct && sink.used_direct))),
            Ok(Msg::Failed(e)) => return Err(e),
            Err(_) => return Ok(None),
        }
    }
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
                return Err(too_large(&self.target.path, end, cap));
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

/// Hashes each written chunk, then hands its buffer back. Without sha256 bmap checksums it
/// records one digest per run; with them it checks each bmap range as it completes.
fn hash_chunks(
    chunks: Receiver<Chunk>,
    pool: Sender<AlignedBuf>,
    expected: Option<Vec<Unit>>,
    image: &str,
) -> Result<Vec<Unit>> {
    let mut units = Vec::new();
    let mut check = expected.as_deref().map(RangeCheck::new);
    for chunk in chunks {
        for &(s, e) in &chunk.runs {
            let at = chunk.offset + s as u64;
            let data = &chunk.buf[s..e];
            match &mut check {
                Some(c) => c.feed(at, data, image)?,
                None => units.push((
                    Extent {
                        start: at,
                        end: at + data.len() as u64,
                    },
                    Sha256::digest(data).into(),
                )),
            }
        }
        let _ = pool.send(chunk.buf);
    }
    Ok(expected.unwrap_or(units))
}

/// Checks the image's bytes against the bmap's range checksums, as they stream past.
struct RangeCheck<'a> {
    ranges: &'a [Unit],
    idx: usize,
    hasher: Sha256,
    fed: u64,
}

impl<'a> RangeCheck<'a> {
    fn new(ranges: &'a [Unit]) -> RangeCheck<'a> {
        RangeCheck {
            ranges,
            idx: 0,
            hasher: Sha256::new(),
            fed: 0,
        }
    }

    fn feed(&mut self, at: u64, data: &[u8], image: &str) -> Result<()> {
        let Some((ext, want)) = self.ranges.get(self.idx) else {
            return Ok(());
        };
        debug_assert_eq!(at, ext.start + self.fed);
        self.hasher.update(data);
        self.fed += data.len() as u64;
        if self.fed >= ext.len() {
            let got: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
            if &got != want {
                return Err(Error::input(format!(
                    "image {image} does not match its bmap: {ext} have another checksum"
                )));
            }
            self.idx += 1;
            self.fed = 0;
        }
        Ok(())
    }
}
