//! Checks an image's bytes against its bmap's range checksums as they stream past, in order.

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};

use super::ranges::Extent;

/// A range of the target and the sha256 its bytes must have.
pub type Unit = (Extent, [u8; 32]);

/// Hashes each bmap range as its bytes arrive and compares at the range's end.
pub struct RangeCheck<'a> {
    ranges: &'a [Unit],
    idx: usize,
    hasher: Sha256,
    fed: u64,
}

impl<'a> RangeCheck<'a> {
    /// A check against `ranges`, which the data must arrive in.
    pub fn new(ranges: &'a [Unit]) -> RangeCheck<'a> {
        RangeCheck {
            ranges,
            idx: 0,
            hasher: Sha256::new(),
            fed: 0,
        }
    }

    /// Feeds the bytes at `at` (the next bytes of the current range); `image` names the image
    /// in the error.
    pub fn feed(&mut self, at: u64, data: &[u8], image: &str) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_ranges_split_over_pieces() {
        let data = [5u8; 100];
        let units = [(Extent { start: 0, end: 100 }, Sha256::digest(data).into())];
        let mut c = RangeCheck::new(&units);
        c.feed(0, &data[..60], "img").unwrap();
        c.feed(60, &data[60..], "img").unwrap();
        let mut c = RangeCheck::new(&units);
        c.feed(0, &[6u8; 100], "img").unwrap_err();
    }
}
