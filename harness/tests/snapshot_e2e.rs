//! Snapshots end to end on QEMU (the reference image): fresh devices restored from one
//! snapshot are independent of one another, the snapshot's private key stays out of the run
//! folder, a changed suite configuration gets a snapshot of its own, and a snapshot that does
//! not restore is removed while the device boots for real. The cache is a temporary folder
//! of the test's own (`HARNESS_SNAPSHOTS`).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use common::{
    assert_valid_junit, harness, qemu_pids_mentioning, qemu_slots, root, stderr, summary,
};

fn fixture(name: &str) -> String {
    root()
        .join("harness/tests/fixtures/snapshot")
        .join(name)
        .display()
        .to_string()
}

/// `harness run --machine qemux86-64 ARGS --out OUT` with the cache `snapshots`.
fn run(snapshots: &Path, out: &Path, args: &[&str]) -> Output {
    harness()
        .args(["run", "--machine", "qemux86-64", "--out"])
        .arg(out)
        .args(args)
        .env("HARNESS_SNAPSHOTS", snapshots)
        .output()
        .unwrap()
}

/// The snapshot folders in the cache.
fn snapshot_dirs(snapshots: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(snapshots)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect()
}

fn count(text: &str, needle: &str) -> usize {
    text.matches(needle).count()
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_containing(&path, needle));
        } else if let Ok(bytes) = std::fs::read(&path) {
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path);
            }
        }
    }
    found
}

/// No QEMU of the test's runs is left.
fn assert_no_qemu(needles: &[&Path]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left: Vec<u32> = needles
            .iter()
            .flat_map(|n| qemu_pids_mentioning(&n.to_string_lossy()))
            .collect();
        if left.is_empty() {
            return;
        }
        assert!(Instant::now() < deadline, "QEMU outlived its run: {left:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn restored_devices_are_independent_a_changed_config_gets_its_own_and_a_broken_one_is_removed() {
    let _qemu = qemu_slots(2);
    let cache = tempfile::tempdir().unwrap();
    let snapshots = cache.path().join("snapshots");

    // (1) Three fresh devices on two targets: one boots and saves, two restore.
    let first = tempfile::tempdir().unwrap();
    let out = run(
        &snapshots,
        first.path(),
        &[&fixture("independent"), "--parallel", "2"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(count(&err, "booted for real in"), 1, "{err}");
    assert_eq!(count(&err, "(restored from snapshot"), 2, "{err}");
    assert_valid_junit(&first.path().join("junit.xml"));
    let s = summary(first.path());
    assert_eq!(s["counts"]["passed"], 3, "{s}");
    for t in s["tests"].as_array().unwrap() {
        let figures: Vec<&str> = t["properties"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|p| p[0].as_str())
            .collect();
        assert!(figures.contains(&"restore_seconds"), "{t}");
    }
    // Each device drew random bytes of its own (the clock and the marks are the steps').
    let xml = std::fs::read_to_string(first.path().join("junit.xml")).unwrap();
    let re = regex::Regex::new(r"random: ([0-9a-f]{64})").unwrap();
    let mut random: Vec<&str> = re
        .captures_iter(&xml)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert_eq!(random.len(), 3, "{xml}");
    random.sort();
    random.dedup();
    assert_eq!(
        random.len(),
        3,
        "two devices drew the same bytes: {random:?}"
    );
    assert!(xml.contains("clock set from the host"), "{xml}");

    // (2) The snapshot's private key is in the cache (0700, 0600), never in the run folder.
    let dirs = snapshot_dirs(&snapshots);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let snapshot = &dirs[0];
    {
        use std::os::unix::fs::MetadataExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o777;
        assert_eq!(mode(&snapshots), 0o700);
        assert_eq!(mode(snapshot), 0o700);
        assert_eq!(mode(&snapshot.join("id_ed25519")), 0o600);
    }
    for file in ["state.mig", "disk.qcow2", "vars.fd", "meta.json"] {
        assert!(snapshot.join(file).is_file(), "no {file} in {snapshot:?}");
    }
    let private = std::fs::read_to_string(snapshot.join("id_ed25519")).unwrap();
    let body = private.lines().nth(1).unwrap().as_bytes();
    assert_eq!(
        files_containing(first.path(), b"OPENSSH PRIVATE KEY"),
        Vec::<PathBuf>::new()
    );
    assert_eq!(files_containing(first.path(), body), Vec::<PathBuf>::new());

    // (3) Another hostname in the suite's config: a snapshot of its own, no reuse.
    let other = tempfile::tempdir().unwrap();
    let out = run(&snapshots, other.path(), &[&fixture("other")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert_eq!(count(&err, "booted for real in"), 1, "{err}");
    assert_eq!(count(&err, "(restored from snapshot"), 0, "{err}");
    assert_eq!(snapshot_dirs(&snapshots).len(), 2);

    // (4) Every state cut to 1 MiB: the device boots for real, and says why.
    for dir in snapshot_dirs(&snapshots) {
        let state = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("state.mig"))
            .unwrap();
        state.set_len(1 << 20).unwrap();
    }
    let broken = tempfile::tempdir().unwrap();
    let out = run(
        &snapshots,
        broken.path(),
        &[&fixture("independent"), "--filter", "independent/a"],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let xml = std::fs::read_to_string(broken.path().join("junit.xml")).unwrap();
    assert!(xml.contains("did not restore (QEMU exited"), "{xml}");
    assert!(xml.contains("removed it; booting for real"), "{xml}");
    assert!(err.contains("(booted)"), "{err}");
    assert!(!snapshot.exists(), "the broken snapshot is still there");

    assert_no_qemu(&[&snapshots, first.path(), other.path(), broken.path()]);
}
