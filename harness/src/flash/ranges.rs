//! Byte extents of an image that hold data: from the file's holes, or from all-zero blocks.

use std::fs::File;

use rustix::fs::{seek, SeekFrom};
use rustix::io::Errno;

use crate::error::{Error, Result};

/// A byte range `start..end` of an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// The first byte.
    pub start: u64,
    /// One past the last byte.
    pub end: u64,
}

impl Extent {
    /// The length in bytes.
    pub fn len(&self) -> u64 {
        self.end - self.start
    }

    /// Whether the extent holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.end == self.start
    }
}

impl std::fmt::Display for Extent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "bytes {}-{}", self.start, self.end.saturating_sub(1))
    }
}

/// The data extents of a (possibly sparse) file of `size` bytes, found with
/// `SEEK_DATA`/`SEEK_HOLE`. A file system without hole support reports one extent.
pub fn data_extents(file: &File, size: u64) -> Result<Vec<Extent>> {
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let start = match seek(file, SeekFrom::Data(pos)) {
            Ok(start) => start,
            Err(Errno::NXIO) => break, // no data after pos
            Err(Errno::INVAL) if out.is_empty() => {
                return Ok(vec![Extent {
                    start: 0,
                    end: size,
                }]);
            }
            Err(e) => return Err(unmapped(e)),
        };
        let end = seek(file, SeekFrom::Hole(start)).map_err(unmapped)?;
        let end = end.min(size);
        if end > start {
            out.push(Extent { start, end });
        }
        pos = end.max(start + 1);
    }
    Ok(out)
}

/// The error for a failed `SEEK_DATA`/`SEEK_HOLE`.
fn unmapped(e: Errno) -> Error {
    let e = std::io::Error::from(e);
    Error::infra(format!("cannot map the image's data: {e}"))
}

/// The runs of `buf` (as `start..end` offsets) made of blocks of `block` bytes that are not
/// all zero. The last block may be short.
pub fn nonzero_runs(buf: &[u8], block: usize) -> Vec<(usize, usize)> {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for (i, b) in buf.chunks(block).enumerate() {
        if is_zero(b) {
            continue;
        }
        let (s, e) = (i * block, i * block + b.len());
        match runs.last_mut() {
            Some(last) if last.1 == s => last.1 = e,
            _ => runs.push((s, e)),
        }
    }
    runs
}

/// Whether every byte of `b` is zero (vectorised: ORs 16-byte words).
pub fn is_zero(b: &[u8]) -> bool {
    let (words, tail) = b.as_chunks::<16>();
    words.iter().fold(0, |a, w| a | u128::from_ne_bytes(*w)) == 0 && tail.iter().all(|&x| x == 0)
}

/// The parts of `extents` that fall within `window` (both sorted and disjoint).
pub fn clip(extents: &[Extent], window: Extent) -> Vec<Extent> {
    let first = extents.partition_point(|e| e.end <= window.start);
    extents[first..]
        .iter()
        .take_while(|e| e.start < window.end)
        .map(|e| Extent {
            start: e.start.max(window.start),
            end: e.end.min(window.end),
        })
        .filter(|e| !e.is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn finds_data_between_holes() {
        let f = tempfile::tempfile().unwrap();
        f.set_len(16 << 20).unwrap();
        f.write_all_at(&[1u8; 8192], 4 << 20).unwrap();
        let ext = data_extents(&f, 16 << 20).unwrap();
        // File systems may round extents out to their block size; data must be covered.
        assert!(ext
            .iter()
            .any(|e| e.start <= 4 << 20 && e.end >= (4 << 20) + 8192));
        assert!(ext.iter().map(Extent::len).sum::<u64>() < 16 << 20);
    }

    #[test]
    fn splits_zero_blocks() {
        let mut buf = vec![0u8; 4096 * 5 + 100];
        buf[10] = 1;
        buf[4096 + 7] = 1;
        buf[4096 * 3] = 1;
        buf[4096 * 5 + 99] = 1;
        assert_eq!(
            nonzero_runs(&buf, 4096),
            vec![(0, 8192), (4096 * 3, 4096 * 4), (4096 * 5, 4096 * 5 + 100)]
        );
        assert!(nonzero_runs(&[0u8; 8192], 4096).is_empty());
    }

    #[test]
    fn clips_extents_to_a_window() {
        let e = |start, end| Extent { start, end };
        let ext = [e(0, 10), e(20, 30), e(40, 50)];
        assert_eq!(clip(&ext, e(5, 25)), vec![e(5, 10), e(20, 25)]);
        assert_eq!(clip(&ext, e(30, 40)), vec![]);
        assert_eq!(e(0, 4096).to_string(), "bytes 0-4095");
    }
}
