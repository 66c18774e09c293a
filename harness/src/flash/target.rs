//! Opens what an image is written to: a block device (after safety checks) or a file.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Context, Error, Result};

use super::mounts;
use super::settle::block_size_of;

/// What the image is written to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    /// A block device of this many bytes.
    BlockDevice {
        /// Its size in bytes.
        size: u64,
    },
    /// A regular file, kept sparse.
    File,
}

/// An open target: a buffered handle and, where the target allows it, an `O_DIRECT` one.
pub struct Target {
    /// The path it was opened by.
    pub path: PathBuf,
    /// Block device or file.
    pub kind: TargetKind,
    /// The buffered handle (for unaligned pieces, and always usable).
    pub buffered: File,
    /// The `O_DIRECT` handle, when the target accepts it.
    pub direct: Option<File>,
}

impl Target {
    /// Opens `path` to receive `image`; `image_size` (when known) must fit a block device, and
    /// a file is truncated to it.
    pub fn open(path: &Path, image: &Path, image_size: Option<u64>) -> Result<Target> {
        let shown = path.display();
        let meta = match std::fs::metadata(path) {
            Ok(m) => Some(m),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(Error::input(format!("cannot stat {shown}: {e}"))),
        };
        if let (Some(m), Ok(im)) = (&meta, std::fs::metadata(image)) {
            if m.dev() == im.dev() && m.ino() == im.ino() {
                return Err(Error::input(format!(
                    "{shown} is the image itself: refusing to write"
                )));
            }
        }
        match meta {
            Some(m) if m.file_type().is_block_device() => {
                mounts::check_not_in_use(path, m.rdev())?;
                Self::open_block_device(path, image_size)
            }
            Some(m) if m.is_file() => Self::open_file(path, image_size),
            Some(m) if m.is_dir() => Err(Error::input(format!(
                "{shown} is a directory, not a block device or file"
            ))),
            Some(_) => Err(Error::input(format!(
                "{shown} is neither a block device nor a regular file"
            ))),
            None if path.starts_with("/dev") => {
                Err(Error::input(format!("block device {shown} does not exist")))
            }
            None => Self::open_file(path, image_size),
        }
    }

    fn open_block_device(path: &Path, image_size: Option<u64>) -> Result<Target> {
        let shown = path.display();
        // O_EXCL on a block device claims it: it fails if the kernel has it mounted or held.
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_EXCL)
            .open(path)
            .map_err(|e| match e.raw_os_error() {
                Some(libc::EBUSY) => Error::input(format!(
                    "{shown} is busy (mounted or in use): refusing to write"
                )),
                Some(libc::EACCES) | Some(libc::EPERM) => {
                    Error::input(format!("no permission to write {shown}: {e}"))
                }
                _ => Error::infra(format!("cannot open {shown}: {e}")),
            })?;
        let size = block_size_of(&buffered).infra_ctx(|| format!("cannot size {shown}"))?;
        if let Some(img) = image_size {
            if img > size {
                return Err(too_large(path, img, size));
            }
        }
        let direct = open_direct(path);
        Ok(Target {
            path: path.to_path_buf(),
            kind: TargetKind::BlockDevice { size },
            buffered,
            direct,
        })
    }

    fn open_file(path: &Path, image_size: Option<u64>) -> Result<Target> {
        let buffered = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .input_ctx(|| format!("cannot create {}", path.display()))?;
        if let Some(size) = image_size {
            buffered
                .set_len(size)
                .infra_ctx(|| format!("cannot size {}", path.display()))?;
        }
        Ok(Target {
            path: path.to_path_buf(),
            kind: TargetKind::File,
            buffered,
            direct: open_direct(path),
        })
    }

    /// The size limit of the target, if it has one.
    pub fn capacity(&self) -> Option<u64> {
        match self.kind {
            TargetKind::BlockDevice { size } => Some(size),
            TargetKind::File => None,
        }
    }
}

/// A second handle with `O_DIRECT`, or none where the file system refuses it (tmpfs).
fn open_direct(path: &Path) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .ok()
}

/// The error for an image that does not fit its target.
pub fn too_large(path: &Path, image: u64, target: u64) -> Error {
    Error::input(format!(
        "the image ({image} bytes) is larger than {} ({target} bytes)",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_target_is_truncated_to_the_image_size() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("card.img");
        std::fs::write(&p, vec![7u8; 100]).unwrap();
        let t = Target::open(&p, Path::new("/nonexistent.img"), Some(1 << 20)).unwrap();
        assert_eq!(t.kind, TargetKind::File);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 1 << 20);
        assert_eq!(
            std::fs::metadata(&p).unwrap().blocks(),
            0,
            "stale data was kept"
        );
    }

    #[test]
    fn refuses_missing_devices_directories_and_the_image_itself() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("a.img");
        std::fs::write(&img, b"x").unwrap();
        for (p, want) in [
            (
                PathBuf::from("/dev/sdzz9"),
                "block device /dev/sdzz9 does not exist",
            ),
            (dir.path().to_path_buf(), "is a directory"),
            (img.clone(), "is the image itself"),
            (PathBuf::from("/dev/null"), "neither a block device"),
        ] {
            let err = Target::open(&p, &img, None).err().unwrap();
            assert!(matches!(err, Error::Input(_)));
            assert!(err.to_string().contains(want), "{err}");
        }
        assert_eq!(std::fs::read(&img).unwrap(), b"x");
    }
}
