//! Shared helpers for the integration tests: run the real `harness` binary.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

/// Tests that boot QEMU take this lock: two TCG guests at once on two cores only slow both.
pub static QEMU: Mutex<()> = Mutex::new(());

/// The project root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `harness` binary, run from the project root, with leases and rig states of its own
/// (a lease left by a test that kills a harness must not hold up the next test).
pub fn harness() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_harness"));
    cmd.current_dir(root())
        .env("HARNESS_LEASE_DIR", scratch("leases"))
        .env("HARNESS_STATE", scratch("state"));
    cmd
}

/// A new empty folder under the system's temp folder.
pub fn scratch(what: &str) -> PathBuf {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "harness-test-{}-{what}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs `harness ARGS` and returns its output.
pub fn run(args: &[&str]) -> Output {
    harness().args(args).output().expect("running harness")
}

/// Stderr as text.
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The schemas junit.xml must satisfy: the project's own (`harness/tests/fixtures/junit.xsd`,
/// the rules Jenkins and Surefire's consumers apply), and Jenkins' own junit-10.xsd where a
/// copy lies beside the project (`../shared/schemas`, a bonus check a plain clone lacks).
pub fn junit_schemas() -> Vec<PathBuf> {
    let ours = root().join("harness/tests/fixtures/junit.xsd");
    let jenkins = root().parent().unwrap().join("shared/schemas/junit-10.xsd");
    std::iter::once(ours)
        .chain(jenkins.is_file().then_some(jenkins))
        .collect()
}

/// What each JUnit schema finds wrong with `xml` (xmllint's complaint per failing schema).
pub fn junit_problems(xml: &Path) -> Vec<String> {
    junit_schemas()
        .into_iter()
        .filter_map(|schema| {
            let out = Command::new("xmllint")
                .args(["--noout", "--schema"])
                .arg(&schema)
                .arg(xml)
                .output()
                .expect("xmllint (Debian's libxml2-utils) must be installed");
            (!out.status.success()).then(|| {
                format!(
                    "{}: {}",
                    schema.display(),
                    String::from_utf8_lossy(&out.stderr)
                )
            })
        })
        .collect()
}

/// Validates `xml` against each JUnit schema; panics with xmllint's complaints.
pub fn assert_valid_junit(xml: &Path) {
    let problems = junit_problems(xml);
    assert!(
        problems.is_empty(),
        "{} does not validate: {}",
        xml.display(),
        problems.join("\n")
    );
}

/// The pids of QEMU processes whose command line mentions `needle`.
pub fn qemu_pids_mentioning(needle: &str) -> Vec<u32> {
    pids_mentioning("qemu-system", needle)
}

/// The pids of processes whose command line starts with `program` and mentions `needle`.
pub fn pids_mentioning(program: &str, needle: &str) -> Vec<u32> {
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.starts_with(program) && cmdline.contains(needle) {
            pids.push(pid);
        }
    }
    pids
}

/// A run's `summary.json`.
pub fn summary(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
}
