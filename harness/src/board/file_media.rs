//! An image file playing an SD card (the emulated rig): always on the host side, written by
//! the same flasher as a block device.

use std::path::PathBuf;

use crate::device::{Media, MuxSide};
use crate::error::Result;

/// A file that stands in for a card; switching sides only records the side.
pub struct FileMedia {
    path: PathBuf,
    side: MuxSide,
}

impl FileMedia {
    /// The card is the file at `path` (created by the first flash).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileMedia {
            path: path.into(),
            side: MuxSide::Dut,
        }
    }

    /// The side last switched to.
    pub fn side(&self) -> MuxSide {
        self.side
    }
}

impl Media for FileMedia {
    fn switch(&mut self, side: MuxSide) -> Result<()> {
        self.side = side;
        Ok(())
    }

    fn host_device(&self) -> Result<PathBuf> {
        Ok(self.path.clone())
    }

    fn describe(&self) -> String {
        format!("image file {}", self.path.display())
    }
}
