//! The farm end to end: several targets in one run, infrastructure failures retried on
//! another target, and leases that a killed holder frees at once.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant, SystemTime};

use common::{assert_valid_junit, harness, qemu_slots, scratch, stderr, summary};

/// A suite with one test that fails on its first run and passes on any later one: it checks
/// a file the harness fetched from a device on an earlier run (a leftover on the host, the
/// classic cause of a flaky test). `out` is the run's folder, where fetched files land.
fn flaky_suite(dir: &Path, out: &Path) -> std::path::PathBuf {
    let suite = dir.join("leftover");
    std::fs::create_dir_all(&suite).unwrap();
    std::fs::create_dir_all(out.join("files")).unwrap();
    std::fs::write(out.join("files/hostname"), "none\n").unwrap();
    std::os::unix::fs::symlink(out.join("files"), suite.join("files")).unwrap();
    std::fs::write(
        suite.join("suite.yaml"),
        "description: depends on a leftover of an earlier run\nconfig:\n  developmentMode: true\n",
    )
    .unwrap();
    std::fs::write(
        suite.join("leftover.yaml"),
        r#"description: passes only when an earlier run left the device's hostname on the host
steps:
  - copy: {from: files/hostname, to_device: /tmp/earlier}
  - copy: {from_device: /etc/hostname}
  - ssh: {run: 'echo "earlier run saw $(cat /tmp/earlier)"; test "$(cat /tmp/earlier)" != none'}
"#,
    )
    .unwrap();
    suite
}

#[test]
fn a_target_that_never_boots_is_retried_and_the_suite_passes_on_the_other() {
    let _qemu = qemu_slots(2);
    let dir = tempfile::tempdir().unwrap();
    let flaky = flaky_suite(&scratch("suites"), dir.path());
    // A good machine beside one whose firmware never boots (its boot times out in 30 s).
    let out = harness()
        .args([
            "run",
            "--machine",
            "qemux86-64",
            "--machine",
            "harness/tests/fixtures/broken-firmware.yaml",
            "suite/smoke",
        ])
        .arg(&flaky)
        .args([
            "--rerun-failures",
            "1",
            "--retries",
            "2",
            "--follow",
            "qemux86-64#1",
            "--out",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(0), "{err}");
    // --follow streamed the good machine's console to stdout as it booted.
    let followed = String::from_utf8_lossy(&out.stdout);
    assert!(followed.contains("Linux version"), "{followed}");
    let junit = dir.path().join("junit.xml");
    assert_valid_junit(&junit);
    let s = summary(dir.path());
    assert_eq!(s["counts"]["passed"], 3, "{s}");
    // The test that failed and then passed on a rerun is flaky, not passed.
    assert_eq!(s["counts"]["flaky"], 1, "{s}");
    let leftover = s["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "leftover")
        .unwrap()
        .clone();
    assert_eq!(leftover["flaky"], true, "{leftover}");
    assert!(
        leftover["attempts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["outcome"] == "failed"),
        "{leftover}"
    );
    assert!(err.contains("FLAKY"), "{err}");
    let targets = s["targets"].as_array().unwrap();
    let state = |name: &str| {
        targets
            .iter()
            .find(|t| t["name"] == name)
            .unwrap_or_else(|| panic!("no target {name} in {s}"))
            .clone()
    };
    // The broken target, and only it, is reported as an infrastructure failure.
    let broken = state("broken-firmware#2");
    assert_eq!(broken["state"], "broken", "{broken}");
    assert!(
        broken["detail"]
            .as_str()
            .unwrap()
            .contains("infrastructure failures in a row"),
        "{broken}"
    );
    assert_eq!(state("qemux86-64#1")["state"], "done", "{s}");
    // Every test passed on the good machine; those first tried on the broken one carry that
    // attempt as an infrastructure error.
    let tests = s["tests"].as_array().unwrap();
    assert!(tests.iter().all(|t| t["target"] == "qemux86-64#1"), "{s}");
    let retried: Vec<_> = tests
        .iter()
        .flat_map(|t| t["attempts"].as_array().unwrap().iter())
        .filter(|a| a["outcome"] == "error")
        .collect();
    assert!(!retried.is_empty(), "no retried test in {s}");
    for a in retried {
        assert_eq!(a["target"], "broken-firmware#2", "{a}");
        assert_eq!(a["outcome"], "error", "{a}");
        assert!(
            a["message"]
                .as_str()
                .unwrap()
                .contains("the device did not come up"),
            "{a}"
        );
    }
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains(r#"type="infrastructure""#), "{xml}");
    assert!(xml.contains("<flakyError"), "{xml}");
    assert!(xml.contains("<flakyFailure"), "{xml}");
    assert!(err.contains("out of this run"), "{err}");
    // The page for people says the same.
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    for hook in [
        r#"data-target="broken-firmware#2" data-state="broken""#,
        r#"data-test="leftover/leftover" data-target="qemux86-64#1" data-status="flaky""#,
        r#"data-status="infra-error""#,
    ] {
        assert!(html.contains(hook), "no {hook} in report.html");
    }
}

/// The lease file's `expires` (unix ms) and holder pid, once it exists.
fn lease(dir: &Path, name: &str) -> Option<(u64, u64)> {
    let text = std::fs::read_to_string(dir.join(format!("{name}.lease"))).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((v["expires"].as_u64()?, v["pid"].as_u64()?))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn a_killed_holders_lease_frees_the_rig_at_once() {
    let _qemu = qemu_slots(1);
    let leases = scratch("leases");
    let start = |out: &Path| {
        harness()
            .args(["run", "--rig", "emulated", "suite/smoke", "--out"])
            .arg(out)
            .env("HARNESS_LEASE_DIR", &leases)
            .env("HARNESS_LEASE_TTL", "8")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let wait_for = |what: &str, limit: Duration, f: &mut dyn FnMut() -> bool| {
        let t = Instant::now();
        while !f() {
            assert!(t.elapsed() < limit, "gave up waiting for {what}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let a_out = tempfile::tempdir().unwrap();
    let mut a = start(a_out.path());
    let a_pid = u64::from(a.id());
    wait_for(
        "the first harness's lease",
        Duration::from_secs(60),
        &mut || lease(&leases, "rig-emulated").is_some_and(|(_, pid)| pid == a_pid),
    );
    // A second harness waits for it, and says for whom.
    let b_out = tempfile::tempdir().unwrap();
    let mut b = start(b_out.path());
    let b_pid = u64::from(b.id());
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let reader = {
        let (mut err, said) = (b.stderr.take().unwrap(), said.clone());
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = err.read(&mut buf) {
                said.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    wait_for(
        "the second harness to wait for the lease",
        Duration::from_secs(60),
        &mut || said.lock().unwrap().contains("waiting for rig-emulated"),
    );
    assert!(
        said.lock().unwrap().contains(&format!("held by {a_pid}@")),
        "{}",
        said.lock().unwrap()
    );
    // Killed where it stands: the rig is the second harness's at once, not at the expiry.
    let (expires, _) = lease(&leases, "rig-emulated").unwrap();
    a.kill().unwrap();
    let killed = now_ms();
    a.wait().unwrap();
    wait_for(
        "the second harness to take the lease",
        Duration::from_secs(60),
        &mut || lease(&leases, "rig-emulated").is_some_and(|(_, pid)| pid == b_pid),
    );
    let taken = now_ms();
    assert!(
        taken < killed + 2000,
        "the second harness took the lease {} ms after the first was killed",
        taken - killed
    );
    assert!(
        taken < expires,
        "the second harness waited for the dead holder's expiry"
    );
    unsafe { libc::kill(b.id() as i32, libc::SIGTERM) };
    b.wait().unwrap();
    reader.join().unwrap();
}
