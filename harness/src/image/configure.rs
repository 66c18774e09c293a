//! Edits an image's boot partition (config.json and other files) and unpacks packed images.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::bootfs::{check_path, open_boot, BootFs, BOOT_LABEL};
use super::config_json::ConfigJson;
use super::source::{open_raw_stream, Packing};
use crate::error::{Context, Error, Result};

/// One edit of the boot partition.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    /// Sets a dotted key of `config.json` to a raw value (see [`ConfigJson::set`]).
    Set(String, String),
    /// Removes a dotted key of `config.json`; nothing happens when it is absent.
    Remove(String),
    /// Replaces `config.json` as a whole.
    ReplaceConfig(ConfigJson),
    /// Writes a file into the boot partition (e.g. `system-connections/wifi`), replacing it.
    WriteFile(String, Vec<u8>),
}

/// Applies `changes`, in order, to the boot partition of the raw image at `path`, in place.
///
/// Packed images (`.gz`, `.xz`, `.zst`, `.zip`) are refused: unpack them first ([`unpack_to`]).
pub fn configure(path: &Path, changes: &[Change]) -> Result<()> {
    let shown = path.display();
    if Packing::of(path) != Packing::Raw {
        return Err(Error::input(format!(
            "{shown}: packed image; unpack it first (configure edits raw .img files in place)"
        )));
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .input_ctx(|| format!("cannot open image {shown} for writing"))?;
    let at = super::at(path);
    let boot = open_boot(&mut file).map_err(&at)?;
    apply(&boot, changes, &format!("{BOOT_LABEL}/config.json")).map_err(&at)?;
    boot.close().map_err(&at)?;
    file.sync_data()
        .infra_ctx(|| format!("cannot write image {shown}"))
}

/// Applies `changes` to an in-memory copy of just the boot partition (a whole FAT volume).
///
/// Pair it with [`changed_ranges`] to learn which blocks to write elsewhere.
pub fn edit_boot_partition(part: &mut [u8], changes: &[Change]) -> Result<()> {
    let len = part.len() as u64;
    let boot = BootFs::from_range(Cursor::new(part), 0, len)?;
    apply(&boot, changes, &format!("{BOOT_LABEL}/config.json"))?;
    boot.close()
}

/// Applies the changes. Everything is worked out in memory first (config.json read and edited,
/// paths checked), so a bad change fails before the partition is touched.
fn apply<D: Read + Write + Seek>(boot: &BootFs<D>, changes: &[Change], origin: &str) -> Result<()> {
    // The config.json being edited, once loaded; `dirty` when it must be written back.
    let mut config: Option<ConfigJson> = None;
    let mut dirty = false;
    // Whole-file writes, in order; a later write of config.json replaces what came before.
    let mut files: Vec<(&str, &[u8])> = Vec::new();
    for change in changes {
        let needs_config = matches!(change, Change::Set(..) | Change::Remove(_));
        if needs_config && config.is_none() {
            let written = files.iter().rev().find(|(p, _)| is_config_path(p));
            let current = match written {
                Some((_, bytes)) => Some(bytes.to_vec()),
                None => boot.read("config.json")?,
            };
            config = Some(match current {
                Some(bytes) => ConfigJson::parse(&bytes, origin)?,
                None => ConfigJson::default(),
            });
        }
        match change {
            Change::Set(key, raw) => {
                if let Some(c) = config.as_mut() {
                    c.set(key, raw)?;
                }
                dirty = true;
            }
            Change::Remove(key) => {
                if let Some(c) = config.as_mut() {
                    c.remove(key);
                }
                dirty = true;
            }
            Change::ReplaceConfig(c) => {
                config = Some(c.clone());
                dirty = true;
            }
            Change::WriteFile(path, bytes) => {
                check_path(path)?;
                if is_config_path(path) {
                    // A whole new config.json wins over the edits before it.
                    config = None;
                    dirty = false;
                }
                files.push((path, bytes));
            }
        }
    }
    for (path, bytes) in files {
        boot.write(path, bytes)?;
    }
    if let (true, Some(c)) = (dirty, &config) {
        boot.write("config.json", &c.to_pretty_bytes())?;
    }
    Ok(())
}

fn is_config_path(path: &str) -> bool {
    path.trim_start_matches('/')
        .eq_ignore_ascii_case("config.json")
}

/// The `(offset, len)` ranges of `after` that differ from `before`, compared `chunk` bytes at a
/// time, adjacent chunks merged. Bytes of `after` past the end of `before` count as changed.
pub fn changed_ranges(before: &[u8], after: &[u8], chunk: usize) -> Vec<(u64, u64)> {
    let chunk = chunk.max(1);
    let mut ranges: Vec<(u64, u64)> = Vec::new();
    let mut off = 0;
    while off < after.len() {
        let end = (off + chunk).min(after.len());
        let old = before.get(off..end.min(before.len())).unwrap_or(&[]);
        if old != &after[off..end] {
            match ranges.last_mut() {
                Some((start, len)) if *start + *len == off as u64 => *len += (end - off) as u64,
                _ => ranges.push((off as u64, (end - off) as u64)),
            }
        }
        off = end;
    }
    ranges
}

const BLOCK: usize = 64 << 10;

/// Decompresses a packed image into `dest_dir` as a sparse raw file and returns its path; a raw
/// image returns its own path.
///
/// The result is named after the source without its packing (`x.img.xz` → `x.img`, `x.zip` →
/// `x.img`). It appears only once complete, and is reused while the source keeps its mtime.
pub fn unpack_to(path: &Path, dest_dir: &Path) -> Result<PathBuf> {
    let packing = Packing::of(path);
    if packing == Packing::Raw {
        return Ok(path.to_path_buf());
    }
    let shown = path.display();
    let src_meta = fs::metadata(path).input_ctx(|| format!("cannot open image {shown}"))?;
    let src_mtime = src_meta.modified().ok();
    let dest = dest_dir.join(unpacked_name(path, packing));
    // An unpacked file carries its source's mtime: equal times mean it is already done.
    let dest_mtime = fs::metadata(&dest).and_then(|m| m.modified()).ok();
    if dest_mtime.is_some() && dest_mtime == src_mtime {
        return Ok(dest);
    }
    fs::create_dir_all(dest_dir)
        .infra_ctx(|| format!("cannot create directory {}", dest_dir.display()))?;
    let file_name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
    let partial = dest_dir.join(format!(
        ".{}.partial-{}",
        file_name.unwrap_or_default(),
        std::process::id()
    ));
    let result = sparse_copy(path, &partial, src_mtime).and_then(|()| {
        fs::rename(&partial, &dest).infra_ctx(|| format!("cannot create {}", dest.display()))
    });
    if result.is_err() {
        let _ = fs::remove_file(&partial);
    }
    result.map(|()| dest)
}

fn unpacked_name(path: &Path, packing: Packing) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "image".into());
    let stem = name.rsplit_once('.').map(|(s, _)| s).unwrap_or(&name);
    match packing {
        Packing::Zip if !stem.ends_with(".img") => format!("{stem}.img"),
        _ => stem.to_string(),
    }
}

/// Copies the decompressed stream of `src` to `dest`, seeking over all-zero blocks.
fn sparse_copy(src: &Path, dest: &Path, mtime: Option<std::time::SystemTime>) -> Result<()> {
    let mut reader = open_raw_stream(src)?;
    let write_ctx = || format!("cannot write {}", dest.display());
    let mut out = File::create(dest).infra_ctx(write_ctx)?;
    let mut buf = vec![0u8; BLOCK];
    let mut pos: u64 = 0;
    let mut skipped = false;
    loop {
        let n = fill(&mut reader, &mut buf)
            .input_ctx(|| format!("{}: cannot decompress", src.display()))?;
        if n == 0 {
            break;
        }
        let block = &buf[..n];
        if is_zero(block) {
            skipped = true;
        } else {
            if skipped {
                out.seek(SeekFrom::Start(pos)).infra_ctx(write_ctx)?;
                skipped = false;
            }
            out.write_all(block).infra_ctx(write_ctx)?;
        }
        pos += n as u64;
    }
    out.set_len(pos).infra_ctx(write_ctx)?;
    if let Some(t) = mtime {
        out.set_modified(t).infra_ctx(write_ctx)?;
    }
    out.sync_data().infra_ctx(write_ctx)
}

/// Reads until `buf` is full or the stream ends; returns how much was read.
fn fill(reader: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn is_zero(block: &[u8]) -> bool {
    // Slice equality on bytes is a memcmp: fast even in debug builds.
    static ZEROS: [u8; BLOCK] = [0; BLOCK];
    block.chunks(BLOCK).all(|c| c == &ZEROS[..c.len()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::bootfs::open_boot;
    use crate::image::partitions::{ReadOnly, TableKind};
    use crate::image::testimg::{self, make_test_image};
    use serde_json::json;
    use std::os::unix::fs::MetadataExt;

    fn image(kind: TableKind) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        make_test_image(&path, kind).unwrap();
        (dir, path)
    }

    fn read_boot(path: &Path, file: &str) -> Option<Vec<u8>> {
        let boot = open_boot(ReadOnly(File::open(path).unwrap())).unwrap();
        boot.read(file).unwrap()
    }

    fn config_of(path: &Path) -> serde_json::Value {
        let bytes = read_boot(path, "config.json").unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn configure_round_trips_config_in_place() {
        for kind in [TableKind::Msdos, TableKind::Gpt] {
            let (_dir, path) = image(kind);
            let size = fs::metadata(&path).unwrap().len();
            let changes = [
                Change::Set("hostname".into(), "rig-1".into()),
                Change::Set("developmentMode".into(), "true".into()),
                Change::Set("os.sshKeys".into(), r#"["ssh-ed25519 AAAA k"]"#.into()),
                Change::Remove("persistentLogging".into()),
                Change::WriteFile(
                    "system-connections/eth-static".into(),
                    b"[connection]\nid=eth\n".to_vec(),
                ),
            ];
            configure(&path, &changes).unwrap();
            assert_eq!(fs::metadata(&path).unwrap().len(), size);
            assert_eq!(
                config_of(&path),
                json!({
                    "deviceType": "generic-amd64",
                    "hostname": "rig-1",
                    "developmentMode": true,
                    "os": {"sshKeys": ["ssh-ed25519 AAAA k"]}
                })
            );
            assert_eq!(
                read_boot(&path, "system-connections/eth-static").unwrap(),
                b"[connection]\nid=eth\n"
            );
            // Other files are untouched.
            assert_eq!(
                read_boot(&path, "os-release").unwrap(),
                testimg::OS_RELEASE.as_bytes()
            );
        }
    }

    #[test]
    fn replace_config_and_later_edits() {
        let (_dir, path) = image(TableKind::Msdos);
        let fresh = ConfigJson::parse(br#"{"uuid":"abc"}"#, "t").unwrap();
        configure(
            &path,
            &[
                Change::Set("hostname".into(), "lost".into()),
                Change::ReplaceConfig(fresh),
                Change::Set("hostname".into(), "kept".into()),
            ],
        )
        .unwrap();
        assert_eq!(config_of(&path), json!({"uuid": "abc", "hostname": "kept"}));
        configure(
            &path,
            &[
                Change::Set("hostname".into(), "lost".into()),
                Change::WriteFile("/config.json".into(), br#"{"a":1}"#.to_vec()),
            ],
        )
        .unwrap();
        assert_eq!(config_of(&path), json!({"a": 1}));
    }

    #[test]
    fn a_failing_change_leaves_the_image_untouched() {
        let (_dir, path) = image(TableKind::Msdos);
        let head = |path: &Path| {
            let mut bytes = vec![0u8; (testimg::BOOT_START + testimg::BOOT_SIZE) as usize];
            File::open(path).unwrap().read_exact(&mut bytes).unwrap();
            bytes
        };
        let before = head(&path);
        let changes = [
            Change::WriteFile("system-connections/a".into(), b"x".to_vec()),
            Change::WriteFile("config.json".into(), b"{oops".to_vec()),
            Change::Set("hostname".into(), "h".into()),
        ];
        let err = configure(&path, &changes).unwrap_err();
        assert!(err.to_string().contains("invalid JSON"), "{err}");
        let changes = [
            Change::WriteFile("system-connections/a".into(), b"x".to_vec()),
            Change::WriteFile("../escape".into(), b"x".to_vec()),
        ];
        assert!(matches!(configure(&path, &changes), Err(Error::Input(_))));
        assert!(head(&path) == before, "the image changed");
    }

    #[test]
    fn invalid_config_json_is_an_input_error() {
        let (_dir, path) = image(TableKind::Msdos);
        configure(
            &path,
            &[Change::WriteFile(
                "config.json".into(),
                b"{\"a\": }".to_vec(),
            )],
        )
        .unwrap();
        let err = configure(&path, &[Change::Set("a".into(), "1".into())]).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: resin-boot/config.json: invalid JSON at line 1, column 7: expected value",
                path.display()
            )
        );
    }

    #[test]
    fn configure_refuses_packed_and_bad_images() {
        let dir = tempfile::tempdir().unwrap();
        let gz = dir.path().join("x.img.gz");
        fs::write(&gz, b"whatever").unwrap();
        let err = configure(&gz, &[]).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert!(err.to_string().contains("unpack it first"), "{err}");

        let text = dir.path().join("x.img");
        fs::write(&text, "just some text\n").unwrap();
        let err = configure(&text, &[]).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a disk image (no msdos or GPT partition table)",
                text.display()
            )
        );

        let empty = dir.path().join("empty.img");
        fs::write(&empty, b"").unwrap();
        let err = configure(&empty, &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a disk image (no msdos or GPT partition table)",
                empty.display()
            )
        );

        let missing = dir.path().join("missing.img");
        let err = configure(&missing, &[]).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
    }

    #[test]
    fn in_memory_edit_changes_few_small_ranges() {
        let (_dir, path) = image(TableKind::Msdos);
        let mut file = File::open(&path).unwrap();
        let mut before = vec![0u8; testimg::BOOT_SIZE as usize];
        file.seek(SeekFrom::Start(testimg::BOOT_START)).unwrap();
        file.read_exact(&mut before).unwrap();
        let mut after = before.clone();
        edit_boot_partition(
            &mut after,
            &[Change::Set("hostname".into(), "qemu-1".into())],
        )
        .unwrap();
        let ranges = changed_ranges(&before, &after, 4096);
        let total: u64 = ranges.iter().map(|r| r.1).sum();
        assert!(!ranges.is_empty() && ranges.len() <= 6, "{ranges:?}");
        assert!(total <= 6 * 4096, "{ranges:?}");
        let boot = BootFs::from_range(Cursor::new(after), 0, testimg::BOOT_SIZE).unwrap();
        let cfg = ConfigJson::parse(&boot.read("config.json").unwrap().unwrap(), "t").unwrap();
        assert_eq!(cfg.get("hostname"), Some(&json!("qemu-1")));
    }

    #[test]
    fn changed_ranges_merges_and_clips() {
        let before = vec![0u8; 100];
        let mut after = before.clone();
        assert!(changed_ranges(&before, &after, 10).is_empty());
        after[5] = 1;
        after[15] = 1;
        after[45] = 1;
        after[99] = 1;
        assert_eq!(
            changed_ranges(&before, &after, 10),
            vec![(0, 20), (40, 10), (90, 10)]
        );
        after.extend_from_slice(&[0; 5]);
        assert_eq!(
            changed_ranges(&before, &after, 10),
            vec![(0, 20), (40, 10), (90, 15)]
        );
        assert_eq!(changed_ranges(&[1, 2], &[1, 3], 0), vec![(1, 1)]);
    }

    fn pack(raw: &Path, dest: &Path) {
        let bytes = fs::read(raw).unwrap();
        let out = File::create(dest).unwrap();
        match Packing::of(dest) {
            Packing::Gzip => {
                let mut w = flate2::write::GzEncoder::new(out, flate2::Compression::fast());
                w.write_all(&bytes).unwrap();
                w.finish().unwrap();
            }
            Packing::Zstd => zstd::stream::copy_encode(&bytes[..], out, 1).unwrap(),
            Packing::Xz => {
                let mut w = liblzma::write::XzEncoder::new(out, 0);
                w.write_all(&bytes).unwrap();
                w.finish().unwrap();
            }
            Packing::Zip => {
                let mut w = zip::ZipWriter::new(out);
                let opts = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Deflated);
                w.start_file("balena.img", opts).unwrap();
                w.write_all(&bytes).unwrap();
                w.finish().unwrap();
            }
            Packing::Raw => unreachable!(),
        }
    }

    /// A 4 MiB raw file with data at the start, in the middle and just before a zero tail.
    fn sparse_raw() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        let mut bytes = vec![0u8; 4 << 20];
        for (i, b) in bytes[..300_000].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        bytes[(2 << 20) + 17] = 1;
        bytes[(3 << 20) - 1] = 2;
        fs::write(&path, &bytes).unwrap();
        (dir, path)
    }

    #[test]
    fn unpack_gives_the_same_bytes_sparsely() {
        let (dir, raw) = sparse_raw();
        let raw_bytes = fs::read(&raw).unwrap();
        let out_dir = dir.path().join("out");
        for name in ["t.img.gz", "t.img.zst", "t.img.xz", "t.zip"] {
            let packed = dir.path().join(name);
            pack(&raw, &packed);
            let unpacked = unpack_to(&packed, &out_dir).unwrap();
            assert_eq!(unpacked, out_dir.join("t.img"), "{name}");
            let meta = fs::metadata(&unpacked).unwrap();
            assert_eq!(meta.len(), raw_bytes.len() as u64, "{name}");
            assert!(
                fs::read(&unpacked).unwrap() == raw_bytes,
                "{name}: bytes differ"
            );
            // The fixture holds well under 8 MiB of data in a 256 MiB image.
            assert!(
                meta.blocks() * 512 < 8 << 20,
                "{name}: {} blocks",
                meta.blocks()
            );
            // Same mtime as its source: reused, not unpacked again.
            let again = unpack_to(&packed, &out_dir).unwrap();
            assert_eq!(fs::metadata(&again).unwrap().ino(), meta.ino(), "{name}");
            // A changed source is unpacked again.
            let later = meta.modified().unwrap() + std::time::Duration::from_secs(5);
            File::options()
                .write(true)
                .open(&packed)
                .unwrap()
                .set_modified(later)
                .unwrap();
            let fresh = unpack_to(&packed, &out_dir).unwrap();
            assert_ne!(fs::metadata(&fresh).unwrap().ino(), meta.ino(), "{name}");
            fs::remove_file(&unpacked).unwrap();
        }
        assert_eq!(unpack_to(&raw, &out_dir).unwrap(), raw);
        let leftovers: Vec<_> = fs::read_dir(&out_dir).unwrap().collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn unpack_of_a_damaged_zip_entry_fails_instead_of_truncating() {
        let (dir, raw) = sparse_raw();
        let zip = dir.path().join("t.zip");
        pack(&raw, &zip);
        let mut bytes = fs::read(&zip).unwrap();
        // Damage the compressed data just after the local header (30 bytes + "balena.img").
        for b in &mut bytes[60..200] {
            *b ^= 0x5A;
        }
        fs::write(&zip, &bytes).unwrap();
        let out = dir.path().join("out");
        let err = unpack_to(&zip, &out).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        assert!(err.to_string().contains("cannot decompress"), "{err}");
        assert!(!out.join("t.img").exists());
    }

    #[test]
    fn unpack_of_a_corrupt_archive_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["bad.img.gz", "bad.img.xz", "bad.img.zst", "bad.zip"] {
            let packed = dir.path().join(name);
            fs::write(&packed, b"definitely not compressed").unwrap();
            let err = unpack_to(&packed, &dir.path().join("out")).unwrap_err();
            assert!(matches!(err, Error::Input(_)), "{name}: {err}");
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let out: Vec<_> = fs::read_dir(dir.path().join("out"))
            .map(|d| d.collect())
            .unwrap_or_default();
        assert!(out.is_empty());
    }
}
