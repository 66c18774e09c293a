//! Bad input ends with exit code 2 and one clear line, before any device is touched.

mod common;

use common::{run, stderr};

fn assert_one_line_exit_2(args: &[&str], expect: &str) {
    let out = run(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "{args:?} printed more than one line: {err}");
    assert!(lines[0].starts_with("harness: error: "), "{err}");
    assert!(
        lines[0].contains(expect),
        "{args:?}: {err:?} lacks {expect:?}"
    );
}

#[test]
fn unknown_machine() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    assert_one_line_exit_2(
        &["run", "--machine", "vax11", "suite/smoke", "--out", o],
        "unknown machine `vax11` (known: ",
    );
}

#[test]
fn unknown_suite() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    assert_one_line_exit_2(
        &["run", "--machine", "qemux86-64", "suite/nope", "--out", o],
        "unknown suite `suite/nope`",
    );
}

#[test]
fn missing_image() {
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            "suite/smoke",
            "--image",
            "/nonexistent/balena.img",
            "--out",
            o,
        ],
        "image /nonexistent/balena.img does not exist",
    );
}

#[test]
fn a_file_that_is_not_a_disk_image() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("notes.img");
    std::fs::write(
        &img,
        "these are not the partitions you are looking for\n".repeat(100),
    )
    .unwrap();
    let o = dir.path().join("out");
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            "suite/smoke",
            "--image",
            img.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ],
        "notes.img",
    );
}

#[test]
fn an_image_without_resin_boot() {
    use harness::image::{testimg, TableKind};
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("noboot.img");
    testimg::make_test_image(&img, TableKind::Msdos).unwrap();
    // Wipe the boot partition's FAT boot sector: the partition is there, its label is not.
    use std::io::{Seek, SeekFrom, Write};
    let mut f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.seek(SeekFrom::Start(testimg::BOOT_START)).unwrap();
    f.write_all(&[0u8; 4096]).unwrap();
    drop(f);
    let o = dir.path().join("out");
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            "suite/smoke",
            "--image",
            img.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ],
        "no partition labelled resin-boot",
    );
}

#[test]
fn a_suite_with_a_misspelt_step() {
    let dir = tempfile::tempdir().unwrap();
    let suite = dir.path().join("typo");
    std::fs::create_dir(&suite).unwrap();
    std::fs::write(suite.join("suite.yaml"), "description: has a typo\n").unwrap();
    std::fs::write(
        suite.join("t.yaml"),
        "description: x\nsteps:\n  - ssh: {run: uname}\n  - rebot: {}\n",
    )
    .unwrap();
    let o = dir.path().join("out");
    assert_one_line_exit_2(
        &[
            "run",
            "--machine",
            "qemux86-64",
            suite.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ],
        "t.yaml:4:5: unknown variant `rebot`, expected one of ssh, console,",
    );
}

#[test]
fn bad_yaml_in_a_machine_file_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("machines")).unwrap();
    std::fs::create_dir_all(dir.path().join("suites")).unwrap();
    std::fs::write(
        dir.path().join("machines/m.yaml"),
        "name: m\ndescription: x\nslug: m\nqemu:\n  binary: qemu\n  memory_mib: lots\n",
    )
    .unwrap();
    let out = common::harness()
        .env("HARNESS_ROOT", dir.path())
        .args(["machines"])
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("machines/m.yaml:6:15: "), "{err}");
}
