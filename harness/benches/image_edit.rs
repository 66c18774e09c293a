//! Timing of the image library on a 2 GiB sparse balenaOS-shaped image: `configure` in place,
//! `inspect`, and unpacking a `.zst`. Run with `cargo bench --bench image_edit`.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::time::Instant;

use harness::image::{configure, inspect::inspect, testimg, unpack_to, Change, TableKind};

fn main() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("big.img");
    testimg::make_test_image_sized(&path, TableKind::Msdos, 2 << 30).expect("test image");
    let changes = [
        Change::Set("hostname".into(), "rig-1".into()),
        Change::Set("developmentMode".into(), "true".into()),
        Change::Set("os.sshKeys".into(), r#"["ssh-ed25519 AAAA k"]"#.into()),
        Change::WriteFile("system-connections/wifi".into(), vec![b'x'; 600]),
    ];
    for round in 0..3 {
        let t = Instant::now();
        configure(&path, &changes).expect("configure");
        println!("configure 2 GiB msdos, round {round}: {:?}", t.elapsed());
    }
    let t = Instant::now();
    inspect(&path).expect("inspect");
    println!("inspect 2 GiB raw: {:?}", t.elapsed());
    let zst = dir.path().join("big.img.zst");
    let mut enc =
        zstd::stream::write::Encoder::new(File::create(&zst).expect("zst"), 3).expect("encoder");
    std::io::copy(&mut File::open(&path).expect("image"), &mut enc).expect("compress");
    enc.finish().expect("finish").flush().expect("flush");
    let t = Instant::now();
    let raw = unpack_to(&zst, &dir.path().join("out")).expect("unpack");
    let allocated = std::fs::metadata(&raw).expect("metadata").blocks() * 512;
    println!(
        "unpack 2 GiB .zst: {:?}, {allocated} bytes allocated",
        t.elapsed()
    );
}
