//! End to end: results a rack can trust. A run stopped by SIGTERM or killed with SIGKILL loses
//! no finished test; a device that dies mid-test is an infrastructure failure within seconds;
//! an image that never boots is the image's failure and leaves the rig in rotation; no secret
//! of the image, nor the run's private key, lands in the run folder. On the real reference
//! image under QEMU (`scripts/setup` builds it).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{
    assert_valid_junit, copy_of_reference, harness, qemu_pids_mentioning, qemu_slots, stderr,
    summary,
};

/// The journal's events of kind `kind` (`started`, `finished`, ...).
fn journal_events(dir: &Path, kind: &str) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("journal.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|e| e.get(kind).cloned())
        .collect()
}

/// Starts `harness run --machine qemux86-64 SUITE --out DIR` in the background.
fn start_run(suite: &str, dir: &Path) -> Child {
    harness()
        .args(["run", "--machine", "qemux86-64", suite, "--out"])
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Waits (bounded) until `ready` holds for the run in `dir`, or the harness exits.
fn wait_until(child: &mut Child, what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(900);
    while !ready() {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the harness ended before {what}"
        );
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Sends `signal` to `child` and returns its exit code and how long it took to exit.
fn signal_and_wait(child: &mut Child, signal: i32) -> (Option<i32>, Duration) {
    let sent = Instant::now();
    // SAFETY: a plain syscall on our own child.
    unsafe { libc::kill(child.id() as i32, signal) };
    let status = child.wait().unwrap();
    (status.code(), sent.elapsed())
}

fn test_of<'a>(s: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    s["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no test {name} in {s}"))
}

#[test]
fn sigterm_in_the_middle_of_a_chain_keeps_the_finished_tests_and_exits_130() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    // suite/engine runs as one chain of tests on one device.
    let mut child = start_run("suite/engine", dir.path());
    wait_until(&mut child, "two finished tests", || {
        journal_events(dir.path(), "finished").len() >= 2
    });
    // What had finished before the signal must stay as it finished.
    let finished: Vec<(String, serde_json::Value)> = journal_events(dir.path(), "finished")
        .iter()
        .map(|e| {
            let r = &e["result"];
            (
                r["name"].as_str().unwrap().to_string(),
                r["outcome"].clone(),
            )
        })
        .collect();
    let (code, took) = signal_and_wait(&mut child, libc::SIGTERM);
    assert_eq!(code, Some(130));
    assert!(
        took < Duration::from_secs(2),
        "the harness took {took:?} to end after SIGTERM"
    );
    eprintln!("ended {:.2}s after SIGTERM", took.as_secs_f64());
    assert!(qemu_pids_mentioning(&dir.path().to_string_lossy()).is_empty());
    assert_valid_junit(&dir.path().join("junit.xml"));
    let s = summary(dir.path());
    assert_eq!(s["interrupted"], true, "{s}");
    for (name, outcome) in &finished {
        assert_eq!(&test_of(&s, name)["outcome"], outcome, "{name}: {s}");
        assert_eq!(outcome, "passed", "{name}: {s}");
    }
    // The test that was running is reported, as interrupted.
    let tests = s["tests"].as_array().unwrap();
    assert!(
        tests.iter().any(|t| t["outcome"] == "error"
            && t["message"].as_str().unwrap_or("").contains("interrupted")),
        "{s}"
    );
    // The reports render again from the journal alone, the same.
    let before = std::fs::read_to_string(dir.path().join("summary.json")).unwrap();
    let out = harness()
        .args(["report", "render"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(dir.path().join("summary.json")).unwrap(),
        before
    );
}

/// A suite in `dir/NAME` (development mode) with `tests` as `(name, yaml)`, run in that order.
fn suite_of(dir: &Path, name: &str, tests: &[(&str, &str)]) -> PathBuf {
    let suite = dir.join(name);
    std::fs::create_dir_all(&suite).unwrap();
    let names: Vec<&str> = tests.iter().map(|(n, _)| *n).collect();
    std::fs::write(
        suite.join("suite.yaml"),
        format!(
            "description: {name}\nconfig:\n  developmentMode: true\ntests: [{}]\n",
            names.join(", ")
        ),
    )
    .unwrap();
    for (test, yaml) in tests {
        std::fs::write(suite.join(format!("{test}.yaml")), yaml).unwrap();
    }
    suite
}

#[test]
fn kill_9_loses_no_finished_test_and_report_render_recovers_the_run() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    // One device: `quick` finishes, then `slow` runs long enough to be killed in.
    let suite = suite_of(
        dir.path(),
        "two",
        &[
            ("quick", "description: q\nsteps:\n  - ssh: {run: 'true'}\n"),
            (
                "slow",
                "description: s\nsteps:\n  - ssh: {run: 'sleep 240', timeout: 300}\n",
            ),
        ],
    );
    let run = dir.path().join("run");
    let mut child = start_run(&suite.to_string_lossy(), &run);
    wait_until(&mut child, "quick finished and slow started", || {
        journal_events(&run, "finished").len() == 1 && journal_events(&run, "started").len() == 2
    });
    let (code, _) = signal_and_wait(&mut child, libc::SIGKILL);
    assert_eq!(code, None);

    let out = harness()
        .args(["report", "render"])
        .arg(&run)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_valid_junit(&run.join("junit.xml"));
    let s = summary(&run);
    assert_eq!(test_of(&s, "quick")["outcome"], "passed", "{s}");
    let t = test_of(&s, "slow");
    assert_eq!(t["outcome"], "error", "{t}");
    assert!(t["message"].as_str().unwrap().contains("killed"), "{t}");
    let page = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert!(page.contains("quick") && page.contains("slow"));
}

#[test]
fn qemu_killed_in_a_console_step_is_an_infrastructure_failure_within_seconds() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let suite = suite_of(
        dir.path(),
        "waits",
        &[(
            "wait",
            "description: waits for what never comes\ntimeout: 600\nsteps:\n  - console: {expect: never-printed-by-anyone, timeout: 300}\n",
        )],
    );
    let out_dir = dir.path().join("run");
    let mut child = harness()
        .args(["run", "--machine", "qemux86-64", "--retries", "0", "--out"])
        .arg(&out_dir)
        .arg(&suite)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_until(&mut child, "the test to start", || {
        !journal_events(&out_dir, "started").is_empty()
    });
    std::thread::sleep(Duration::from_secs(2));
    let pids = qemu_pids_mentioning(&out_dir.to_string_lossy());
    assert_eq!(pids.len(), 1, "{pids:?}");
    let killed = Instant::now();
    // SAFETY: a plain syscall on a QEMU the test's harness started.
    unsafe { libc::kill(pids[0] as i32, libc::SIGKILL) };
    let status = child.wait().unwrap();
    let took = killed.elapsed();
    assert_eq!(status.code(), Some(3));
    assert!(took < Duration::from_secs(5), "took {took:?}");
    eprintln!("ended {:.2}s after QEMU was killed", took.as_secs_f64());
    assert_valid_junit(&out_dir.join("junit.xml"));
    let s = summary(&out_dir);
    let t = test_of(&s, "wait");
    assert_eq!(t["outcome"], "error", "{t}");
    let msg = t["message"].as_str().unwrap();
    assert!(
        msg.contains("QEMU exited") || msg.contains("device is gone"),
        "{msg}"
    );
}

#[test]
fn no_secret_of_the_image_nor_the_private_key_lands_in_the_run_folder() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let image = copy_of_reference(dir.path());
    let (api, device) = ("apikey-2f9c1e7b5a3d4c6e", "devkey-8b1d0f3e7c2a9b4d");
    let out = harness()
        .args(["image", "configure"])
        .arg(&image)
        .args(["--set", &format!("apiKey={api}")])
        .args(["--set", &format!("deviceApiKey={device}")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let state = common::scratch("state");
    let run = dir.path().join("run");
    // suite/smoke is independent: the harness reads config.json over SSH after each test.
    let out = harness()
        .args(["run", "--machine", "qemux86-64", "--image"])
        .arg(&image)
        .arg("--out")
        .arg(&run)
        .arg("suite/smoke")
        .env("HARNESS_STATE", &state)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let junit = std::fs::read_to_string(run.join("junit.xml")).unwrap();
    assert!(
        junit.contains("cat /mnt/boot/config.json") && junit.contains("[secret]"),
        "the check is empty: config.json was not read into a transcript"
    );
    // The private key: where the harness kept it is gone; none of it is in the run folder.
    assert!(
        !state.join("keys").exists() || std::fs::read_dir(state.join("keys")).unwrap().count() == 0
    );
    let mut needles: Vec<Vec<u8>> = vec![api.into(), device.into()];
    needles.push(b"OPENSSH PRIVATE KEY".to_vec());
    let mut files = vec![run.clone()];
    let mut seen = 0;
    while let Some(p) = files.pop() {
        if p.is_dir() {
            files.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&p).unwrap();
        seen += 1;
        for n in &needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == &n[..]),
                "{} holds {:?}",
                p.display(),
                String::from_utf8_lossy(n)
            );
        }
    }
    assert!(seen >= 5, "only {seen} files in the run folder");
}

/// A project root like the repository's, whose qemux86-64 gives up on a boot after
/// `boot_timeout` seconds (the emulated rig plays that machine).
fn root_with_boot_timeout(dir: &Path, boot_timeout: u64) -> PathBuf {
    let real = common::root();
    let root = dir.join("project");
    for d in ["machines", "rigs"] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for d in ["suites", "qemu"] {
        std::os::unix::fs::symlink(real.join(d), root.join(d)).unwrap();
    }
    std::fs::copy(
        real.join("rigs/emulated.yaml"),
        root.join("rigs/emulated.yaml"),
    )
    .unwrap();
    // The same engine binaries as the real project (`../shared/bin`), so the reference image
    // has the same cache key and is not built again.
    let shared = real.join("..").join("shared");
    if shared.is_dir() {
        std::os::unix::fs::symlink(&shared, dir.join("shared")).unwrap();
    }
    let machine = std::fs::read_to_string(real.join("machines/qemux86-64.yaml")).unwrap();
    std::fs::write(
        root.join("machines/qemux86-64.yaml"),
        format!("{machine}boot_timeout: {boot_timeout}\n"),
    )
    .unwrap();
    root
}

#[test]
fn an_image_that_never_boots_fails_the_test_and_leaves_the_rig_in_rotation() {
    let _qemu = qemu_slots(1);
    let dir = tempfile::tempdir().unwrap();
    let image = copy_of_reference(dir.path());
    // Both root slots wiped: the firmware and the bootloader start, the OS never does.
    let table = std::process::Command::new("sfdisk")
        .args(["--json"])
        .arg(&image)
        .output()
        .unwrap();
    let table: serde_json::Value = serde_json::from_slice(&table.stdout).unwrap();
    let parts = table["partitiontable"]["partitions"].as_array().unwrap();
    for p in &parts[1..3] {
        let (start, size) = (p["start"].as_u64().unwrap(), p["size"].as_u64().unwrap());
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&image)
            .unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&vec![0u8; (size * 512).min(8 << 20) as usize], start * 512)
            .unwrap();
    }
    let root = root_with_boot_timeout(dir.path(), 90);
    let state = common::scratch("state");
    let run = dir.path().join("run");
    let out = harness()
        .args(["run", "--rig", "emulated", "--image"])
        .arg(&image)
        .arg("--out")
        .arg(&run)
        .arg("suite/smoke")
        .env("HARNESS_ROOT", &root)
        .env("HARNESS_STATE", &state)
        .output()
        .unwrap();
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    // The rig proved itself with its known-good image, so the image is to blame.
    assert!(err.contains("its known-good image boots to SSH"), "{err}");
    let s = summary(&run);
    assert_eq!(s["counts"]["failed"], 1, "{s}");
    assert_eq!(s["counts"]["errors"], 0, "{s}");
    let failed = s["tests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["outcome"] == "failed")
        .unwrap();
    assert!(
        failed["message"]
            .as_str()
            .unwrap()
            .contains("the image under test did not come up"),
        "{failed}"
    );
    let rigs = harness()
        .arg("rigs")
        .env("HARNESS_ROOT", &root)
        .env("HARNESS_STATE", &state)
        .output()
        .unwrap();
    let rigs = String::from_utf8_lossy(&rigs.stdout);
    assert!(!rigs.contains("out of rotation"), "{rigs}");
}
