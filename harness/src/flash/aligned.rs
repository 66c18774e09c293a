//! Page-aligned I/O buffers, as `O_DIRECT` requires.
//!
//! No raw allocation: a buffer over-allocates a zeroed `Vec` by `ALIGN - 1` bytes and uses
//! the aligned window inside it. The heap block never moves while the buffer lives (it is never
//! grown), so the window stays aligned however often the buffer itself is moved.

use std::ops::{Deref, DerefMut};

/// The alignment of buffers, offsets and lengths for direct I/O (covers 512 and 4096 byte
/// logical blocks).
pub const ALIGN: usize = 4096;

/// A heap buffer whose start is aligned to [`ALIGN`].
pub struct AlignedBuf {
    /// The allocation, `ALIGN - 1` bytes longer than the buffer.
    bytes: Vec<u8>,
    /// Where the aligned window starts in `bytes`.
    start: usize,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (`len` > 0).
    pub fn new(len: usize) -> AlignedBuf {
        let bytes = vec![0u8; len + ALIGN - 1];
        let start = (bytes.as_ptr() as usize).wrapping_neg() % ALIGN;
        AlignedBuf { bytes, start, len }
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.bytes[self.start..self.start + self.len]
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..self.start + self.len]
    }
}

/// Whether `n` is a multiple of [`ALIGN`].
pub fn is_aligned(n: u64) -> bool {
    n.is_multiple_of(ALIGN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffer_is_aligned_and_zeroed() {
        let mut b = AlignedBuf::new(3 * ALIGN);
        assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        assert!(b.iter().all(|&x| x == 0));
        b[5] = 7;
        assert_eq!(b[5], 7);
        assert!(is_aligned(8192) && !is_aligned(100));
    }

    #[test]
    fn buffer_stays_aligned_when_moved() {
        let bufs: Vec<AlignedBuf> = (1..=8).map(|n| AlignedBuf::new(n * 512 + 1)).collect();
        for (n, b) in (1..=8).zip(bufs) {
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
            assert_eq!(b.len(), n * 512 + 1);
        }
    }
}
