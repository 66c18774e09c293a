//! End-to-end flashes into files: every packing, with and without a bmap, and the failures.

use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::*;

/// A sparse raw image: data at a few offsets (one block of zeros inside the data), with an
/// odd total size so the last block is short.
fn sparse_image(dir: &Path) -> (PathBuf, Vec<u8>) {
    let size = 5 * (1 << 20) + 1000;
    let data = [
        (0usize, 20_000usize),
        (2 << 20, 1 << 20),
        (size - 3000, 3000),
    ];
    let mut bytes = vec![0u8; size];
    let mut x = 7u32;
    for (start, len) in data {
        for b in &mut bytes[start..start + len] {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (x >> 16) as u8;
        }
    }
    bytes[(5 << 19)..(5 << 19) + 4096].fill(0);
    let path = dir.join("os.img");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(size as u64).unwrap();
    use std::os::unix::fs::FileExt;
    for (start, len) in data {
        f.write_all_at(&bytes[start..start + len], start as u64)
            .unwrap();
    }
    (path, bytes)
}

/// A bmap for `bytes` mapping every block that is not all zero, as `bmaptool create` would.
fn bmap_for(bytes: &[u8]) -> String {
    let bs = 4096;
    let blocks = bytes.len().div_ceil(bs);
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for (i, b) in bytes.chunks(bs).enumerate() {
        if b.iter().any(|&x| x != 0) {
            match ranges.last_mut() {
                Some(r) if r.1 + 1 == i => r.1 = i,
                _ => ranges.push((i, i)),
            }
        }
    }
    let mapped: usize = ranges.iter().map(|r| r.1 - r.0 + 1).sum();
    let mut xml = format!(
        "<?xml version=\"1.0\" ?>\n<bmap version=\"2.0\">\n<ImageSize> {} </ImageSize>\n\
         <BlockSize> {bs} </BlockSize>\n<BlocksCount> {blocks} </BlocksCount>\n\
         <MappedBlocksCount> {mapped} </MappedBlocksCount>\n<ChecksumType> sha256 </ChecksumType>\n<BlockMap>\n",
        bytes.len()
    );
    for (a, b) in ranges {
        let end = ((b + 1) * bs).min(bytes.len());
        let sum = hex::encode(Sha256::digest(&bytes[a * bs..end]));
        xml += &format!("<Range chksum=\"{sum}\"> {a}-{b} </Range>\n");
    }
    xml + "</BlockMap>\n</bmap>\n"
}

fn run(image: &Path, target: &Path) -> Result<FlashReport> {
    flash(&FlashOptions::new(image, target), &|_| {})
}

#[test]
fn raw_sparse_image_to_a_file_keeps_it_sparse() {
    let dir = tempfile::tempdir().unwrap();
    let (img, bytes) = sparse_image(dir.path());
    let out = dir.path().join("card");
    let seen = std::cell::Cell::new(0);
    let r = flash(&FlashOptions::new(&img, &out), &|p: Progress| {
        seen.set(seen.get() + 1);
        assert!(p.done <= p.total.unwrap());
    })
    .unwrap();
    assert_eq!(std::fs::read(&out).unwrap(), bytes);
    assert_eq!(r.image_size, bytes.len() as u64);
    assert!(r.written < 2 << 20, "wrote {}", r.written);
    assert!(r.verify_time.is_some() && seen.get() >= 2);
    let allocated = std::fs::metadata(&out).unwrap().blocks() * 512;
    assert!(allocated < 3 << 20, "target is not sparse: {allocated}");
}

#[test]
fn packed_images_stream_to_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (img, bytes) = sparse_image(dir.path());
    let gz = dir.path().join("os.img.gz");
    let mut enc =
        flate2::write::GzEncoder::new(std::fs::File::create(&gz).unwrap(), Default::default());
    enc.write_all(&bytes).unwrap();
    enc.finish().unwrap();
    let zst = dir.path().join("os.img.zst");
    std::fs::write(&zst, zstd::encode_all(&bytes[..], 1).unwrap()).unwrap();
    let zip = dir.path().join("os.zip");
    let mut z = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
    z.start_file("os.img", zip::write::SimpleFileOptions::default())
        .unwrap();
    z.write_all(&bytes).unwrap();
    z.finish().unwrap();
    drop(img);
    for packed in [&gz, &zst, &zip] {
        let out = dir.path().join("card");
        let r = run(packed, &out).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), bytes, "{}", packed.display());
        assert_eq!(r.image_size, bytes.len() as u64);
        assert!(
            r.written < 2 << 20,
            "zero blocks were written: {}",
            r.written
        );
    }
}

#[test]
fn a_bmap_beside_the_image_is_used_and_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (img, bytes) = sparse_image(dir.path());
    std::fs::write(dir.path().join("os.bmap"), bmap_for(&bytes)).unwrap();
    let xz = dir.path().join("os.img.xz");
    let mut enc = liblzma::write::XzEncoder::new(std::fs::File::create(&xz).unwrap(), 1);
    enc.write_all(&bytes).unwrap();
    enc.finish().unwrap();
    for image in [&img, &xz] {
        let out = dir.path().join("card");
        let r = run(image, &out).unwrap();
        assert_eq!(
            r.bmap.as_deref(),
            Some(dir.path().join("os.bmap").as_path())
        );
        assert_eq!(std::fs::read(&out).unwrap(), bytes);
    }
    // An image that does not match its bmap is refused.
    let mut bad = bytes.clone();
    bad[2 << 20] ^= 1;
    std::fs::write(&img, &bad).unwrap();
    let err = run(&img, &dir.path().join("card2")).unwrap_err();
    assert!(matches!(err, Error::Input(_)));
    assert!(err.to_string().contains("does not match its bmap"), "{err}");
}

#[test]
fn zero_blocks_are_written_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let (img, bytes) = sparse_image(dir.path());
    let mut opts = FlashOptions::new(&img, dir.path().join("card"));
    opts.bmap = BmapChoice::Ignore;
    let skipped = flash(&opts, &|_| {}).unwrap().written;
    opts.skip_zero_blocks = Some(false);
    let r = flash(&opts, &|_| {}).unwrap();
    assert_eq!(std::fs::read(&opts.target).unwrap(), bytes);
    assert!(r.written >= skipped + 4096, "{} vs {skipped}", r.written);
}

#[test]
fn verification_names_the_first_bad_range() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("card");
    std::fs::write(&p, vec![1u8; 8192]).unwrap();
    let t = target::Target::open(&dir.path().join("card2"), &p, None).unwrap();
    std::fs::write(&t.path, vec![1u8; 8192]).unwrap();
    let good: [u8; 32] = Sha256::digest([1u8; 4096]).into();
    let units = vec![
        (
            Extent {
                start: 0,
                end: 4096,
            },
            good,
        ),
        (
            Extent {
                start: 4096,
                end: 8192,
            },
            [0u8; 32],
        ),
    ];
    let Err(f) = verify::verify(&t, &units, None, &|_| {}) else {
        panic!("verification passed")
    };
    assert_eq!(f.mismatch, Some(1));
    assert!(matches!(f.error, Error::Infra(_)));
    let msg = f.error.to_string();
    assert!(msg.contains("bytes 4096-8191 differ"), "{msg}");
}

#[test]
fn bad_input_is_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let err = run(&dir.path().join("none.img"), &dir.path().join("card")).unwrap_err();
    assert!(matches!(err, Error::Input(_)));
    assert!(
        err.to_string().ends_with("none.img does not exist"),
        "{err}"
    );
    let (img, _) = sparse_image(dir.path());
    let err = run(&img, Path::new("/dev/sdzz")).unwrap_err();
    assert_eq!(err.to_string(), "block device /dev/sdzz does not exist");
}

#[test]
fn data_past_the_end_of_a_device_is_refused() {
    // A file posing as a 1 MiB block device: the writers must stop at its end.
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = sparse_image(dir.path());
    let path = dir.path().join("small");
    let t = target::Target {
        path: path.clone(),
        kind: TargetKind::BlockDevice { size: 1 << 20 },
        buffered: std::fs::File::create(&path).unwrap(),
        direct: None,
    };
    let plan = read::Plan::new(&img, None).unwrap();
    let Err(err) = write::write_all(&t, plan, None, false, false, None, &|_| {}) else {
        panic!("wrote past the end")
    };
    assert!(matches!(err, Error::Input(_)));
    assert!(err.to_string().contains("larger than"), "{err}");
    assert!(err.to_string().contains("(1048576 bytes)"), "{err}");
}

#[test]
fn a_cancelled_flash_is_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = sparse_image(dir.path());
    let mut opts = FlashOptions::new(&img, dir.path().join("card"));
    opts.cancel = Some(|| true);
    assert!(matches!(flash(&opts, &|_| {}), Err(Error::Interrupted)));
}
