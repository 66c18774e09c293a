//! Writing images to block devices and files: sparse-aware, verified.
//!
//! ```text
//! image (.img/.gz/.xz/.zst/.zip) ──read──▶ chunks of data ──write──▶ target ──hash──▶ digests
//!     + .bmap or holes or zero blocks        (4 MiB, aligned)    (O_DIRECT)          │
//!                                                                  read back ──hash──┘ compare
//! ```
//!
//! The work overlaps: one thread reads (and unpacks, and checks against the bmap) the image,
//! several write and hash, so the device sees several requests at once. Verification reads
//! the written ranges back from the target in parallel, bypassing the page cache, and
//! compares digests.
//!
//! What gets written, like bmaptool: with a bmap, its mapped blocks; without one, a raw
//! file's data extents (its holes are skipped) or, for a packed stream, everything. All-zero
//! blocks are skipped too when the target is a file (whose holes read as zeros), not on a
//! block device (old data would show through). Unwritten parts of a device keep old data.
//! A file target is truncated and sized to the image first, so it stays sparse.
//!
//! Refused, as input errors: a mounted device (or one with a mounted partition), the disk
//! the host runs from, a device held by device-mapper or md, an image larger than the device,
//! an image that does not match its bmap.

pub mod aligned;
pub mod bmap;
mod check;
pub mod mounts;
pub mod progress;
pub mod ranges;
mod read;
pub mod settle;
pub mod target;
mod verify;
mod write;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

pub use bmap::Bmap;
pub use progress::{Phase, Progress};
pub use ranges::Extent;
pub use settle::{device_size, wait_for_device, Settle};
pub use target::TargetKind;

/// The size of one read, write and hash unit.
pub const CHUNK: usize = 4 << 20;

/// Where the block map comes from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BmapChoice {
    /// Use `IMAGE.bmap` (or the name without its packing suffix) when it exists.
    #[default]
    Beside,
    /// Use this bmap file.
    File(PathBuf),
    /// Ignore any bmap and find the data ranges from the image itself.
    Ignore,
}

/// What to write where.
#[derive(Debug, Clone)]
pub struct FlashOptions {
    /// The image: raw, or packed as `.gz`, `.xz`, `.zst`, `.zip`.
    pub image: PathBuf,
    /// A block device, or a file (created, kept sparse).
    pub target: PathBuf,
    /// Where the block map comes from.
    pub bmap: BmapChoice,
    /// Read the written ranges back and compare (on by default).
    pub verify: bool,
    /// Leave all-zero blocks unwritten. `None` decides by the target: yes for a file (its
    /// holes read as zeros), no for a block device (old data would show through).
    pub skip_zero_blocks: Option<bool>,
    /// Polled between chunks: `true` stops the flash with [`Error::Interrupted`] (the CLI
    /// passes `interrupt::requested`).
    pub cancel: Option<fn() -> bool>,
}

impl FlashOptions {
    /// Options with the defaults: bmap beside the image, verification on.
    pub fn new(image: impl Into<PathBuf>, target: impl Into<PathBuf>) -> FlashOptions {
        FlashOptions {
            image: image.into(),
            target: target.into(),
            bmap: BmapChoice::Beside,
            verify: true,
            skip_zero_blocks: None,
            cancel: None,
        }
    }
}

/// What a flash did.
#[derive(Debug, Clone)]
pub struct FlashReport {
    /// The size of the raw image in bytes.
    pub image_size: u64,
    /// The bytes written to the target.
    pub written: u64,
    /// The number of ranges written (and verified).
    pub ranges: usize,
    /// The bmap used, if any.
    pub bmap: Option<PathBuf>,
    /// Whether the target was written with `O_DIRECT`.
    pub direct_io: bool,
    /// Time spent writing, including the final flush.
    pub write_time: Duration,
    /// Time spent verifying, when verification ran.
    pub verify_time: Option<Duration>,
}

/// Writes `opts.image` to `opts.target`, then verifies it; `progress` hears about both.
pub fn flash(opts: &FlashOptions, progress: &dyn Fn(Progress)) -> Result<FlashReport> {
    if !opts.image.is_file() {
        return Err(Error::input(format!(
            "image {} does not exist",
            opts.image.display()
        )));
    }
    let bmap_path = match &opts.bmap {
        BmapChoice::Beside => bmap::find_beside(&opts.image),
        BmapChoice::File(p) => Some(p.clone()),
        BmapChoice::Ignore => None,
    };
    let bmap = bmap_path.as_deref().map(Bmap::load).transpose()?;
    let plan = read::Plan::new(&opts.image, bmap.as_ref())?;
    let target = target::Target::open(&opts.target, &opts.image, plan.image_size)?;
    let skip_zeros = bmap.is_none()
        && opts
            .skip_zero_blocks
            .unwrap_or(target.kind == TargetKind::File);

    let started = Instant::now();
    let check_source = !opts.verify;
    let written = write::write_all(
        &target,
        plan,
        bmap.as_ref(),
        skip_zeros,
        check_source,
        opts.cancel,
        progress,
    )?;
    if target.kind == TargetKind::File {
        target
            .buffered
            .set_len(written.image_size)
            .infra_ctx(|| format!("cannot size {}", opts.target.display()))?;
    }
    sync(&target.buffered, &opts.target)?;
    let write_time = started.elapsed();

    let verify_time = if opts.verify {
        let t = Instant::now();
        if let Err(f) = verify::verify(&target, &written.units, opts.cancel, progress) {
            return Err(blame(opts, bmap.as_ref(), &written.units, f));
        }
        Some(t.elapsed())
    } else {
        None
    };
    Ok(FlashReport {
        image_size: written.image_size,
        written: written.bytes,
        ranges: written.units.len(),
        bmap: bmap_path,
        direct_io: written.direct_io,
        write_time,
        verify_time,
    })
}

/// With a bmap, the digests compared are the bmap's: a mismatch may be the image's fault
/// (it does not match its bmap, an input error) rather than the target's.
fn blame(
    opts: &FlashOptions,
    bmap: Option<&Bmap>,
    units: &[check::Unit],
    f: verify::Failure,
) -> Error {
    let (Some(i), Some(_)) = (f.mismatch, bmap) else {
        return f.error;
    };
    let (ext, want) = &units[i];
    match read::source_digest(&opts.image, ext) {
        Ok(got) if &got != want => Error::input(format!(
            "image {} does not match its bmap: {ext} have another checksum",
            opts.image.display()
        )),
        _ => f.error,
    }
}

fn sync(f: &std::fs::File, path: &Path) -> Result<()> {
    f.sync_all()
        .infra_ctx(|| format!("cannot flush {}", path.display()))
}

#[cfg(test)]
mod tests;
