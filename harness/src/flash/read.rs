//! The reading side of a flash: turns an image into chunks of data at their offsets.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, SyncSender};

use crate::error::{Context, Error, Result};
use crate::image::source::{open_raw_stream, Packing};

use super::aligned::{AlignedBuf, ALIGN};
use super::bmap::Bmap;
use super::check::{RangeCheck, Unit};
use super::ranges::{clip, data_extents, nonzero_runs, Extent};
use super::CHUNK;

/// How the image will be read.
pub struct Plan {
    image: PathBuf,
    source: Source,
    /// The raw image size, when known before reading.
    pub image_size: Option<u64>,
    /// The bytes of data that will be read, when known.
    pub data_bytes: Option<u64>,
}

enum Source {
    /// A raw file read at its data extents.
    Raw { file: File, extents: Vec<Extent> },
    /// A packed image read front to back; `keep` are the bmap's extents, if any.
    Stream { keep: Option<Vec<Extent>> },
}

impl Plan {
    /// Decides how to read `image`, with its bmap if there is one.
    pub fn new(image: &Path, bmap: Option<&Bmap>) -> Result<Plan> {
        let keep = bmap.map(Bmap::extents);
        if Packing::of(image) != Packing::Raw {
            return Ok(Plan {
                image: image.to_path_buf(),
                image_size: bmap.map(|b| b.image_size),
                data_bytes: keep.as_ref().map(|k| k.iter().map(Extent::len).sum()),
                source: Source::Stream { keep },
            });
        }
        let file =
            File::open(image).input_ctx(|| format!("cannot open image {}", image.display()))?;
        let size = file
            .metadata()
            .input_ctx(|| format!("cannot stat image {}", image.display()))?
            .len();
        if let Some(b) = bmap {
            if b.image_size != size {
                return Err(Error::input(format!(
                    "image {} is {size} bytes but its bmap says {}",
                    image.display(),
                    b.image_size
                )));
            }
        }
        let extents = match keep {
            Some(k) => k,
            None => data_extents(&file, size)?,
        };
        advise_sequential(&file);
        Ok(Plan {
            image: image.to_path_buf(),
            image_size: Some(size),
            data_bytes: Some(extents.iter().map(Extent::len).sum()),
            source: Source::Raw { file, extents },
        })
    }
}

impl Plan {
    /// The image's path, for messages.
    pub fn image_name(&self) -> String {
        self.image.display().to_string()
    }
}

/// A piece of the image: `buf[..len]` belongs at `offset`; only `runs` of it are written.
pub struct Chunk {
    pub offset: u64,
    pub buf: AlignedBuf,
    pub len: usize,
    /// Sub-ranges of `buf` to write, as start..end offsets.
    pub runs: Vec<(usize, usize)>,
}

/// What the reader sends to the writer.
pub enum Msg {
    Chunk(Chunk),
    /// The image ended; its raw size.
    End(u64),
    Failed(Error),
}

/// Reads the plan's data into buffers from `pool` and sends them to `out`, in offset order.
/// With `check`, the bytes are checked against the bmap's checksums on the way. Stops
/// quietly when the writers hang up.
pub fn produce(
    plan: Plan,
    skip_zeros: bool,
    check: Option<&[Unit]>,
    pool: Receiver<AlignedBuf>,
    out: SyncSender<Msg>,
) {
    let name = plan.image_name();
    let mut out = Out {
        tx: out,
        check: check.map(RangeCheck::new),
        image: &name,
    };
    let result = match plan.source {
        Source::Raw { file, extents } => {
            read_raw(&plan.image, &file, &extents, skip_zeros, &pool, &mut out)
                .map(|()| plan.image_size.unwrap_or(0))
        }
        Source::Stream { keep } => {
            read_stream(&plan.image, keep.as_deref(), skip_zeros, &pool, &mut out)
        }
    };
    let _ = out.tx.send(match result {
        Ok(size) => Msg::End(size),
        Err(e) => Msg::Failed(e),
    });
}

/// The reader's output: the channel, and the bmap check the data passes on its way.
struct Out<'a> {
    tx: SyncSender<Msg>,
    check: Option<RangeCheck<'a>>,
    image: &'a str,
}

/// Checks a chunk against the bmap (when there is one) and sends it; `Ok(false)` when the
/// writers hung up.
fn send(out: &mut Out, chunk: Chunk) -> Result<bool> {
    if let Some(check) = &mut out.check {
        for &(s, e) in &chunk.runs {
            check.feed(chunk.offset + s as u64, &chunk.buf[s..e], out.image)?;
        }
    }
    Ok(out.tx.send(Msg::Chunk(chunk)).is_ok())
}

/// A free buffer, or `None` when the writers are gone (so the reader should stop).
fn take(pool: &Receiver<AlignedBuf>) -> Option<AlignedBuf> {
    pool.recv().ok()
}

fn runs_of(buf: &[u8], skip_zeros: bool) -> Vec<(usize, usize)> {
    if skip_zeros {
        nonzero_runs(buf, ALIGN)
    } else if buf.is_empty() {
        Vec::new()
    } else {
        vec![(0, buf.len())]
    }
}

fn read_raw(
    image: &Path,
    file: &File,
    extents: &[Extent],
    skip_zeros: bool,
    pool: &Receiver<AlignedBuf>,
    out: &mut Out,
) -> Result<()> {
    for e in extents {
        let mut pos = e.start;
        while pos < e.end {
            let len = ((e.end - pos) as usize).min(CHUNK);
            let Some(mut buf) = take(pool) else {
                return Ok(());
            };
            file.read_exact_at(&mut buf[..len], pos)
                .input_ctx(|| format!("cannot read image {}", image.display()))?;
            let runs = runs_of(&buf[..len], skip_zeros);
            let chunk = Chunk {
                offset: pos,
                buf,
                len,
                runs,
            };
            if !send(out, chunk)? {
                return Ok(());
            }
            pos += len as u64;
        }
    }
    Ok(())
}

fn read_stream(
    image: &Path,
    keep: Option<&[Extent]>,
    skip_zeros: bool,
    pool: &Receiver<AlignedBuf>,
    out: &mut Out,
) -> Result<u64> {
    let mut stream = open_raw_stream(image)?;
    let last_needed = keep.map(|k| k.last().map_or(0, |e| e.end));
    let mut pos = 0u64;
    loop {
        let Some(mut buf) = take(pool) else {
            return Ok(pos);
        };
        let len = read_full(&mut stream, &mut buf[..CHUNK])
            .input_ctx(|| format!("cannot read image {}", image.display()))?;
        if len == 0 {
            break;
        }
        let window = Extent {
            start: pos,
            end: pos + len as u64,
        };
        let runs = match keep {
            Some(k) => clip(k, window)
                .iter()
                .map(|e| ((e.start - pos) as usize, (e.end - pos) as usize))
                .collect(),
            None => runs_of(&buf[..len], skip_zeros),
        };
        let chunk = Chunk {
            offset: pos,
            buf,
            len,
            runs,
        };
        if !send(out, chunk)? {
            return Ok(pos);
        }
        pos += len as u64;
    }
    if let Some(need) = last_needed {
        if pos < need {
            return Err(Error::input(format!(
                "image {} ends at {pos} bytes, before the end of its bmap's data ({need})",
                image.display()
            )));
        }
    }
    Ok(pos)
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn read_full(r: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Tells the kernel the whole file will be read in order; failure is harmless.
fn advise_sequential(file: &File) {
    let _ = rustix::fs::fadvise(file, 0, None, rustix::fs::Advice::Sequential);
}

/// The sha256 of the raw image's bytes at `ext`, read afresh (unpacking from the start).
pub fn source_digest(image: &Path, ext: &Extent) -> Result<[u8; 32]> {
    use sha2::{Digest, Sha256};
    let mut stream = open_raw_stream(image)?;
    let fail =
        |e: std::io::Error| Error::input(format!("cannot read image {}: {e}", image.display()));
    std::io::copy(&mut (&mut stream).take(ext.start), &mut std::io::sink()).map_err(fail)?;
    let mut hasher = Sha256::new();
    let mut rest = stream.take(ext.len());
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0;
    loop {
        let k = rest.read(&mut buf).map_err(fail)?;
        if k == 0 {
            break;
        }
        hasher.update(&buf[..k]);
        n += k as u64;
    }
    if n != ext.len() {
        return Err(Error::input(format!(
            "image {} ends before {ext}",
            image.display()
        )));
    }
    Ok(hasher.finalize().into())
}
