//! End to end on QEMU: the real reference image, booted under real QEMU, tested through its
//! real sshd and serial console. Needs the reference image (`scripts/setup` builds it).

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{
    assert_valid_junit, harness, pids_mentioning, qemu_pids_mentioning, qemu_slots, stderr, summary,
};

#[test]
fn smoke_suite_passes_and_its_junit_validates() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let out = harness()
        .args(["run", "--machine", "qemux86-64", "suite/smoke", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let junit = dir.path().join("junit.xml");
    assert_valid_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    for test in ["ssh", "os-release", "serial-console"] {
        assert!(
            xml.contains(&format!(r#"name="{test}""#)),
            "{test} missing from {xml}"
        );
    }
    // Each test carries its SSH transcript and its slice of the console.
    assert!(xml.contains("$ cat /etc/os-release"), "{xml}");
    assert!(xml.contains("=== serial console ==="), "{xml}");
    let s = summary(dir.path());
    assert_eq!(s["counts"]["passed"], 3, "{s}");
    let serial = std::fs::read_to_string(dir.path().join("qemux86-64/serial.log")).unwrap();
    assert!(
        serial.contains("Linux version"),
        "the kernel's boot lines are in serial.log"
    );
}

/// Starts a smoke run in the background and waits until QEMU is up.
fn start_run_and_wait_for_qemu(dir: &Path) -> std::process::Child {
    let child = harness()
        .args(["run", "--machine", "qemux86-64", "suite/smoke", "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(600);
    let needle = dir.to_string_lossy().into_owned();
    while qemu_pids_mentioning(&needle).is_empty() {
        assert!(Instant::now() < deadline, "QEMU never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    // Let the guest get going, so QEMU is busy when the harness dies.
    std::thread::sleep(Duration::from_secs(3));
    child
}

/// Neither QEMU nor the private LAN's dnsmasq outlives the harness.
fn assert_qemu_gone(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    let left = || {
        [
            qemu_pids_mentioning(&needle),
            pids_mentioning("dnsmasq", &needle),
        ]
        .concat()
    };
    while !left().is_empty() {
        assert!(
            Instant::now() < deadline,
            "outlived the harness: {:?}",
            left()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn kill_9_of_the_harness_leaves_no_qemu() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_run_and_wait_for_qemu(dir.path());
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
    child.wait().unwrap();
    assert_qemu_gone(dir.path());
}

#[test]
fn sigterm_stops_qemu_and_leaves_a_valid_report() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let mut child = start_run_and_wait_for_qemu(dir.path());
    // SAFETY: plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_qemu_gone(dir.path());
    assert_valid_junit(&dir.path().join("junit.xml"));
    assert_eq!(summary(dir.path())["interrupted"], true);
}
