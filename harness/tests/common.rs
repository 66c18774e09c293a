//! Shared helpers for the integration tests: run the real `harness` binary.

#![allow(dead_code)]

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Slots for QEMU guests, shared by the tests of one test binary: as many guests at once as
/// the host has cores (a TCG guest keeps about one busy while it boots), or
/// `HARNESS_TEST_QEMUS`. Every test that boots QEMU holds one slot per guest it runs at once
/// ([`qemu_slots`]), so two one-guest tests share a two-core host and a two-guest farm has it
/// to itself. This holds under `cargo test`, within one binary; under `cargo nextest run` (the
/// README's command) each test is a process of its own and nextest runs one test per core
/// (`.config/nextest.toml`).
struct SlotPool {
    free: Mutex<usize>,
    freed: Condvar,
    size: usize,
}

fn slot_pool() -> &'static SlotPool {
    static POOL: OnceLock<SlotPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let size = std::env::var("HARNESS_TEST_QEMUS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        SlotPool {
            free: Mutex::new(size),
            freed: Condvar::new(),
            size,
        }
    })
}

/// QEMU slots held by a test until it ends (also when it panics).
pub struct QemuSlots(usize);

impl Drop for QemuSlots {
    fn drop(&mut self) {
        let pool = slot_pool();
        *pool.free.lock().unwrap_or_else(|e| e.into_inner()) += self.0;
        pool.freed.notify_all();
    }
}

/// Waits for `guests` QEMU slots (at most the pool's size) and holds them.
pub fn qemu_slots(guests: usize) -> QemuSlots {
    let pool = slot_pool();
    let n = guests.clamp(1, pool.size);
    let mut free = pool.free.lock().unwrap_or_else(|e| e.into_inner());
    while *free < n {
        free = pool.freed.wait(free).unwrap_or_else(|e| e.into_inner());
    }
    *free -= n;
    QemuSlots(n)
}

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

/// The reference image (built by set-up; cached, so this returns at once).
pub fn reference_image() -> PathBuf {
    let out = harness()
        .args(["image", "build", "--machine", "qemux86-64"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    PathBuf::from(text.lines().last().expect("the image's path").trim())
}

/// A sparse copy of the reference image in `dir`.
pub fn copy_of_reference(dir: &Path) -> PathBuf {
    let copy = dir.join("image.img");
    let status = std::process::Command::new("cp")
        .arg("--sparse=always")
        .arg(reference_image())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(status.success());
    copy
}

/// Chromium, as Debian installs it.
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Runs Chromium headless with `args` and the page, in its own process group, killed after
/// 60 s; returns its stdout.
pub fn chromium(dir: &Path, args: &[String], page: &Path) -> String {
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: install Debian's chromium (scripts/setup does)"
    );
    let profile = tempfile::tempdir().unwrap();
    let (out, err) = (dir.join("chromium.out"), dir.join("chromium.err"));
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(args)
        .arg(format!("file://{}", page.display()))
        .stdin(Stdio::null())
        .stdout(File::create(&out).unwrap())
        .stderr(File::create(&err).unwrap())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id() as i32;
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break Some(s);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    // Chromium's helpers (zygote, renderer) share its group: end them all, whatever happened.
    unsafe { libc::kill(-pgid, libc::SIGKILL) };
    let _ = child.wait();
    let stderr = std::fs::read_to_string(&err).unwrap_or_default();
    let tail: Vec<&str> = stderr.lines().rev().take(15).collect();
    match status {
        None => panic!("chromium did not finish within 60s; its stderr ends:\n{tail:?}"),
        Some(s) if !s.success() => panic!("chromium failed ({s}); its stderr ends:\n{tail:?}"),
        Some(_) => std::fs::read_to_string(&out).unwrap(),
    }
}

/// The element (up to its closing tag) whose opening tag holds `attrs`.
pub fn element<'a>(dom: &'a str, tag: &str, attrs: &str) -> &'a str {
    let at = dom
        .find(attrs)
        .unwrap_or_else(|| panic!("no <{tag}> with {attrs} in the DOM"));
    let start = dom[..at].rfind(&format!("<{tag}")).unwrap();
    let end = at + dom[at..].find(&format!("</{tag}>")).unwrap();
    &dom[start..end]
}

/// The page loads nothing from outside: no absolute or protocol-relative `src`/`href`, no CSS
/// `url(`.
pub fn assert_self_contained(html: &str) {
    let external = regex::Regex::new(r#"(?i)(src|href)\s*=\s*["']?\s*(https?:)?//"#).unwrap();
    assert!(
        !external.is_match(html),
        "the page loads something from outside"
    );
    assert!(!html.contains("url("), "the page's CSS loads something");
}

/// A 1280x900 screenshot of `page` in headless Chromium, as `dir/name`; asserts it shows
/// something (over 20 kB) and returns its size.
pub fn screenshot(dir: &Path, page: &Path, name: &str) -> u64 {
    let shot = dir.join(name);
    chromium(
        dir,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".into(),
        ],
        page,
    );
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(size > 20_000, "{} is {size} bytes", shot.display());
    size
}

/// The qemuarm64 reference image, if `scripts/setup` built it (`harness image build --machine
/// qemuarm64`, cached under `HARNESS_CACHE`) and `qemu-system-aarch64` and u-boot are
/// installed. Without them: `None` after saying why on stderr, or under `CI=true` a failure.
pub fn arm_image() -> Option<PathBuf> {
    let root = root();
    let machine = harness::config::machine::load(&root, "qemuarm64").unwrap();
    let qemu = machine.qemu.expect("qemuarm64 runs under QEMU");
    let runs = Command::new(&qemu.binary)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing = if !runs {
        Some(format!("{} (Debian's qemu-system-arm)", qemu.binary))
    } else if let Some(f) = qemu.firmware.files().into_iter().find(|f| !f.is_file()) {
        Some(format!("{} (Debian's u-boot-qemu)", f.display()))
    } else {
        match harness::reference::cached(&root, "qemuarm64") {
            Ok(Some(build)) => return Some(build.image_path()),
            Ok(None) => Some(
                "the qemuarm64 reference image (sudo target/release/harness image build --machine qemuarm64; scripts/setup builds it)"
                    .to_string(),
            ),
            Err(e) => Some(format!("the qemuarm64 reference image ({e})")),
        }
    };
    harness::testing::missing(&missing.unwrap());
    None
}
