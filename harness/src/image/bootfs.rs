//! Reads and writes files on the `resin-boot` FAT partition in place, without mounting or copying.

use std::io::{self, Read, Seek, SeekFrom, Write};
use std::sync::{Arc, Mutex};

use fscommon::{BufStream, StreamSlice};

use super::partitions::{read_table, FsKind, Partition};
use crate::error::{Error, Result};

/// The label of the boot partition.
pub const BOOT_LABEL: &str = "resin-boot";

type Disk<D> = BufStream<StreamSlice<Tracked<D>>>;

/// The FAT filesystem of the boot partition, opened over a stream of the whole disk.
///
/// Paths are `/`-separated and relative to the partition's root (`config.json`,
/// `system-connections/wifi`); a leading `/` is allowed. Call [`BootFs::close`] after writing,
/// so that a failed final flush is reported; dropping also flushes, silently.
///
/// Not `Send` (fatfs 0.3 keeps `&dyn` options): open, use and close it on one thread, e.g.
/// inside one `spawn_blocking`.
pub struct BootFs<D: Read + Write + Seek> {
    fs: fatfs::FileSystem<Disk<D>>,
    io_error: Arc<Mutex<Option<String>>>,
    partition: Option<Partition>,
}

/// Opens the FAT filesystem on the partition labelled `resin-boot` of a whole-disk stream.
///
/// Errors are [`Error::Input`] naming no file (prefix them with [`super::at`]), e.g.
/// `no partition labelled resin-boot (found: rootfs, data)`.
pub fn open_boot<D: Read + Write + Seek>(mut disk: D) -> Result<BootFs<D>> {
    let table = read_table(&mut disk)?;
    let part = table.by_label(BOOT_LABEL).ok_or_else(|| {
        Error::input(format!(
            "no partition labelled {BOOT_LABEL} (found: {})",
            table.label_list()
        ))
    })?;
    if part.fs != Some(FsKind::Vfat) {
        return Err(Error::input(format!(
            "partition {} ({BOOT_LABEL}) is not a FAT filesystem",
            part.number
        )));
    }
    if part.end() > table.disk_size {
        return Err(Error::input(format!(
            "partition {} ({BOOT_LABEL}) ends past the end of the image (truncated?)",
            part.number
        )));
    }
    let mut boot = BootFs::from_range(disk, part.start, part.size)?;
    boot.partition = Some(part.clone());
    Ok(boot)
}

impl<D: Read + Write + Seek> BootFs<D> {
    /// Opens the FAT filesystem found in bytes `start..start + size` of `disk`.
    ///
    /// Use `0` and the stream's length for a stream of just the partition.
    pub fn from_range(disk: D, start: u64, size: u64) -> Result<BootFs<D>> {
        let io_error = Arc::new(Mutex::new(None));
        let tracked = Tracked {
            inner: disk,
            error: io_error.clone(),
        };
        let end = start
            .checked_add(size)
            .ok_or_else(|| Error::input("impossible partition range"))?;
        let slice = StreamSlice::new(tracked, start, end)
            .map_err(|e| Error::input(format!("cannot read boot partition: {e}")))?;
        let fs = fatfs::FileSystem::new(BufStream::new(slice), fatfs::FsOptions::new())
            .map_err(|e| Error::input(format!("{BOOT_LABEL}: not a valid FAT filesystem: {e}")))?;
        Ok(BootFs {
            fs,
            io_error,
            partition: None,
        })
    }

    /// The partition this filesystem lives on, when opened with [`open_boot`].
    pub fn partition(&self) -> Option<&Partition> {
        self.partition.as_ref()
    }

    /// The contents of the file at `path`, or `None` when there is no such file.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let path = clean_path(path)?;
        let mut file = match self.fs.root_dir().open_file(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.error(&path, "cannot open", e)),
        };
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| self.error(&path, "cannot read", e))?;
        Ok(Some(bytes))
    }

    /// Writes `bytes` to the file at `path`, replacing what it held and creating parent directories.
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let path = clean_path(path)?;
        let root = self.fs.root_dir();
        let (dir, name) = match path.rsplit_once('/') {
            Some((parent, name)) => {
                let mut dir = root;
                for part in parent.split('/') {
                    dir = dir
                        .create_dir(part)
                        .map_err(|e| self.error(&path, "cannot create directory for", e))?;
                }
                (dir, name)
            }
            None => (root, path.as_str()),
        };
        let mut file = dir
            .create_file(name)
            .map_err(|e| self.error(&path, "cannot create", e))?;
        file.truncate()
            .and_then(|_| file.write_all(bytes))
            .and_then(|_| file.flush())
            .map_err(|e| self.error(&path, "cannot write", e))
    }

    /// Removes the file (or empty directory) at `path`; `false` when there was nothing to remove.
    pub fn remove(&self, path: &str) -> Result<bool> {
        let path = clean_path(path)?;
        match self.fs.root_dir().remove(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(self.error(&path, "cannot remove", e)),
        }
    }

    /// The names in directory `dir` (`""` or `/` for the root), sorted, with `/` after directories.
    pub fn list(&self, dir: &str) -> Result<Vec<String>> {
        let trimmed = dir.trim_matches('/');
        let root = self.fs.root_dir();
        let d = if trimmed.is_empty() {
            root
        } else {
            let path = clean_path(trimmed)?;
            root.open_dir(&path)
                .map_err(|e| self.error(&path, "cannot open directory", e))?
        };
        let mut names = Vec::new();
        for entry in d.iter() {
            let entry = entry.map_err(|e| self.error(dir, "cannot list", e))?;
            let name = entry.file_name();
            if name == "." || name == ".." {
                continue;
            }
            names.push(if entry.is_dir() { name + "/" } else { name });
        }
        names.sort();
        Ok(names)
    }

    /// Flushes everything to the disk and reports any write that failed on the way.
    pub fn close(self) -> Result<()> {
        let BootFs { fs, io_error, .. } = self;
        let unmounted = fs.unmount();
        // Dropping the filesystem flushed the buffer; a failure there shows only in the tracker.
        if let Some(msg) = take(&io_error) {
            return Err(Error::infra(format!("cannot write {BOOT_LABEL}: {msg}")));
        }
        unmounted.map_err(|e| Error::input(format!("{BOOT_LABEL}: cannot unmount: {e}")))
    }

    /// An I/O failure of the disk itself is infrastructure; anything else fatfs says means the
    /// filesystem or the path is wrong.
    fn error(&self, path: &str, what: &str, e: io::Error) -> Error {
        match take(&self.io_error) {
            Some(msg) => Error::infra(format!("{what} {BOOT_LABEL}/{path}: {msg}")),
            None => Error::input(format!("{what} {BOOT_LABEL}/{path}: {e}")),
        }
    }
}

fn take(slot: &Mutex<Option<String>>) -> Option<String> {
    slot.lock().map(|mut s| s.take()).unwrap_or(None)
}

/// Checks that `path` names a file inside the boot partition (no `..`, `.` or empty parts).
pub fn check_path(path: &str) -> Result<()> {
    clean_path(path).map(drop)
}

/// Checks a path inside the boot partition and drops a leading `/`.
fn clean_path(path: &str) -> Result<String> {
    let p = path.strip_prefix('/').unwrap_or(path);
    let bad = p.is_empty() || p.split('/').any(|c| c.is_empty() || c == "." || c == "..");
    if bad {
        return Err(Error::input(format!(
            "{path:?}: expected a path inside {BOOT_LABEL} like system-connections/wifi"
        )));
    }
    Ok(p.to_string())
}

/// Passes I/O through and remembers the first error, which fatfs may only log.
struct Tracked<D> {
    inner: D,
    error: Arc<Mutex<Option<String>>>,
}

impl<D> Tracked<D> {
    fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if let Ok(mut slot) = self.error.lock() {
                slot.get_or_insert_with(|| e.to_string());
            }
        }
        r
    }
}

impl<D: Read> Read for Tracked<D> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let r = self.inner.read(buf);
        self.note(r)
    }
}

impl<D: Write> Write for Tracked<D> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let r = self.inner.write(buf);
        self.note(r)
    }
    fn flush(&mut self) -> io::Result<()> {
        let r = self.inner.flush();
        self.note(r)
    }
}

impl<D: Seek> Seek for Tracked<D> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        let r = self.inner.seek(pos);
        self.note(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::partitions::{ReadOnly, TableKind};
    use crate::image::testimg::{self, make_test_image};
    use std::fs::{File, OpenOptions};
    use std::io::Cursor;
    use std::time::Instant;

    fn image(kind: TableKind) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        make_test_image(&path, kind).unwrap();
        (dir, path)
    }

    fn rw(path: &std::path::Path) -> File {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .unwrap()
    }

    #[test]
    fn reads_fixture_files() {
        for kind in [TableKind::Msdos, TableKind::Gpt] {
            let (_dir, path) = image(kind);
            let mut file = File::open(&path).unwrap();
            let boot = open_boot(ReadOnly(&mut file)).unwrap();
            assert_eq!(boot.partition().unwrap().number, 1);
            let os = boot.read("os-release").unwrap().unwrap();
            assert_eq!(os, testimg::OS_RELEASE.as_bytes());
            assert_eq!(
                boot.read("/config.json").unwrap().unwrap(),
                testimg::CONFIG_JSON.as_bytes()
            );
            assert_eq!(boot.read("missing").unwrap(), None);
            assert_eq!(boot.read("nodir/missing").unwrap(), None);
            assert_eq!(
                boot.list("/").unwrap(),
                [
                    "config.json",
                    "os-release",
                    "splash/",
                    "system-connections/"
                ]
            );
            boot.close().unwrap();
        }
    }

    #[test]
    fn writes_in_place_and_reads_back() {
        let (_dir, path) = image(TableKind::Msdos);
        let before = std::fs::metadata(&path).unwrap().len();
        {
            let t = Instant::now();
            let boot = open_boot(rw(&path)).unwrap();
            boot.write("system-connections/wifi", b"[connection]\nid=wifi\n")
                .unwrap();
            boot.write("a/b/c.txt", &vec![7u8; 100_000]).unwrap();
            boot.write("config.json", b"{}").unwrap();
            assert!(boot.remove("splash").unwrap());
            assert!(!boot.remove("splash").unwrap());
            boot.close().unwrap();
            assert!(t.elapsed().as_millis() < 2000, "took {:?}", t.elapsed());
        }
        assert_eq!(std::fs::metadata(&path).unwrap().len(), before);
        let boot = open_boot(ReadOnly(File::open(&path).unwrap())).unwrap();
        assert_eq!(
            boot.read("system-connections/wifi").unwrap().unwrap(),
            b"[connection]\nid=wifi\n"
        );
        assert_eq!(boot.read("a/b/c.txt").unwrap().unwrap().len(), 100_000);
        assert_eq!(boot.read("config.json").unwrap().unwrap(), b"{}");
        assert_eq!(boot.list("system-connections").unwrap(), ["wifi"]);
        assert!(!boot.list("").unwrap().contains(&"splash/".to_string()));
    }

    #[test]
    fn read_only_stream_refuses_writes() {
        let (_dir, path) = image(TableKind::Gpt);
        let boot = open_boot(ReadOnly(File::open(&path).unwrap())).unwrap();
        let err = boot.write("x", b"y").unwrap_err();
        assert!(matches!(err, Error::Infra(_)), "{err}");
        assert!(err.to_string().contains("read-only"), "{err}");
    }

    #[test]
    fn bad_paths() {
        let (_dir, path) = image(TableKind::Msdos);
        let boot = open_boot(rw(&path)).unwrap();
        for p in ["", "/", "a//b", "../x", "a/./b"] {
            let err = boot.write(p, b"").unwrap_err();
            assert!(matches!(err, Error::Input(_)), "{p}: {err}");
        }
        let err = boot.read("splash").unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
    }

    #[test]
    fn missing_boot_partition() {
        let (_dir, path) = image(TableKind::Msdos);
        // Rename the boot filesystem's labels: the root-dir entry and the boot sector's.
        let mut file = rw(&path);
        let mut window = vec![0u8; 1 << 20];
        file.seek(SeekFrom::Start(testimg::BOOT_START)).unwrap();
        file.read_exact(&mut window).unwrap();
        for i in 0..window.len() - 10 {
            if &window[i..i + 10] == b"resin-boot" {
                window[i..i + 10].copy_from_slice(b"flash-boot");
            }
        }
        file.seek(SeekFrom::Start(testimg::BOOT_START)).unwrap();
        file.write_all(&window).unwrap();
        let err = match open_boot(file) {
            Err(e) => e,
            Ok(_) => panic!("opened a disk without resin-boot"),
        };
        let err = crate::image::at(std::path::Path::new("image.img"))(err);
        assert_eq!(
            err.to_string(),
            "image.img: no partition labelled resin-boot \
             (found: flash-boot, resin-rootA, resin-rootB, resin-state, resin-data)"
        );
    }

    #[test]
    fn edits_an_in_memory_partition() {
        let (_dir, path) = image(TableKind::Msdos);
        let mut file = File::open(&path).unwrap();
        let mut part = vec![0u8; testimg::BOOT_SIZE as usize];
        file.seek(SeekFrom::Start(testimg::BOOT_START)).unwrap();
        file.read_exact(&mut part).unwrap();
        let len = part.len() as u64;
        let boot = BootFs::from_range(Cursor::new(&mut part[..]), 0, len).unwrap();
        boot.write("hello", b"world").unwrap();
        boot.close().unwrap();
        let boot = BootFs::from_range(Cursor::new(part.clone()), 0, len).unwrap();
        assert_eq!(boot.read("hello").unwrap().unwrap(), b"world");
    }
}
