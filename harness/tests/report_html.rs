//! `report.html` as a browser shows it: a run built with the library API (no QEMU), its page
//! opened in headless Chromium, the DOM it dumps checked, and a screenshot taken.
//!
//! Set `REPORT_HTML_OUT=DIR` to keep the run's folder (page, screenshot, DOM) in `DIR`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

mod common;

use common::element;
use harness::report::{
    Attempt, Outcome, Reporter, RunInfo, TargetReport, TargetStatus, TestResult,
};

const BROKEN: &str = "the device did not come up: SSH never answered within 300s";

fn result(suite: &str, name: &str, target: &str, outcome: Outcome, secs: f64) -> TestResult {
    TestResult {
        suite: suite.into(),
        name: name.into(),
        target: target.into(),
        outcome,
        duration: Duration::from_secs_f64(secs),
        properties: vec![],
        transcript: format!("$ run {name}\nok\n"),
        console: String::new(),
        attempts: vec![],
    }
}

/// A spread run over two QEMU machines, the second broken, with one test of each kind.
fn build_run(dir: &Path) {
    let info = RunInfo {
        title: "qemux86-64 x2".into(),
        mode: "spread".into(),
        image: "/var/images/balena-qemux86-64-6.0.13.img".into(),
        started: SystemTime::UNIX_EPOCH + Duration::from_secs(1_748_743_200),
        notes: vec![
            "accelerator: tcg (KVM probe failed)".into(),
            "network: user-mode".into(),
        ],
    };
    let mut rep = Reporter::new(dir, dir.join("junit.xml"), info).unwrap();
    for (name, status) in [
        ("qemux86-64#1", TargetStatus::Done),
        ("qemux86-64#2", TargetStatus::Broken(BROKEN.into())),
    ] {
        rep.set_target(TargetReport {
            name: name.into(),
            machine: "qemux86-64".into(),
            status,
            notes: vec!["accel tcg, 2 vCPU".into()],
        })
        .unwrap();
    }
    let q1 = "qemux86-64#1";
    let q2 = "qemux86-64#2";

    let mut boot = result("smoke", "boot", q1, Outcome::Passed, 31.4);
    boot.properties = vec![
        ("boot_seconds".into(), "28.7".into()),
        ("bytes_served_v1".into(), "1048576".into()),
    ];
    boot.console = "[    0.000000] Linux version 6.1\r\n\x1b[0;32m  OK  \x1b[0m Reached target \
                    Multi-User System.\r\n<script>alert(1)</script> & \x07bell\r\nlogin: "
        .into();
    rep.add(boot).unwrap();

    rep.add(result(
        "os",
        "hostname",
        q1,
        Outcome::Failed("hostname is `balena`, expected `qemu-1`".into()),
        2.2,
    ))
    .unwrap();

    rep.add(result(
        "os",
        "lan",
        q1,
        Outcome::Skipped("the target has no LAN".into()),
        0.0,
    ))
    .unwrap();

    let mut logs = result("os", "logging", q1, Outcome::Passed, 5.1);
    logs.attempts = vec![Attempt {
        target: q1.into(),
        outcome: Outcome::Failed("journalctl shows no boot entries".into()),
        duration: Duration::from_secs_f64(4.0),
        transcript: "$ journalctl --list-boots\n".into(),
        console: String::new(),
    }];
    rep.add(logs).unwrap();

    let mut ssh = result("smoke", "ssh", q1, Outcome::Passed, 1.3);
    ssh.attempts = vec![Attempt {
        target: q2.into(),
        outcome: Outcome::Error(BROKEN.into()),
        duration: Duration::from_secs(300),
        transcript: String::new(),
        console: "U-Boot 2024.01\r\nStarting kernel ...\r\n".into(),
    }];
    rep.add(ssh).unwrap();
    rep.close().unwrap();
}

fn cell<'a>(dom: &'a str, test: &str, target: &str) -> &'a str {
    element(
        dom,
        "td",
        &format!("data-test=\"{test}\" data-target=\"{target}\""),
    )
}

/// junit.xml of a run with every kind of outcome (failed, error, skipped, flaky, an infra
/// attempt) satisfies the JUnit schemas; a copy broken the way a careless writer would (a count
/// that is not a number, a test case without a name) does not, so the check can fail.
#[test]
fn junit_of_every_outcome_validates_and_a_broken_one_does_not() {
    let dir = tempfile::tempdir().unwrap();
    build_run(dir.path());
    let junit = dir.path().join("junit.xml");
    common::assert_valid_junit(&junit);
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(
        xml.contains("<flakyFailure") && xml.contains("<skipped"),
        "{xml}"
    );

    let tests = regex::Regex::new(r#"<testsuite (.*?)tests="\d+""#).unwrap();
    for broken in [
        tests
            .replace(&xml, r#"<testsuite ${1}tests="many""#)
            .into_owned(),
        xml.replacen("<testcase name=", "<testcase nom=", 1),
    ] {
        assert_ne!(broken, xml);
        let bad = dir.path().join("broken.xml");
        std::fs::write(&bad, broken).unwrap();
        let problems = common::junit_problems(&bad);
        assert!(!problems.is_empty(), "a broken junit.xml validated");
    }
}

#[test]
fn chromium_shows_the_run() {
    let started = Instant::now();
    let (_tmp, dir): (Option<tempfile::TempDir>, PathBuf) =
        match std::env::var_os("REPORT_HTML_OUT") {
            Some(d) => {
                let d = PathBuf::from(d);
                let _ = std::fs::remove_dir_all(&d);
                (None, d)
            }
            None => {
                let t = tempfile::tempdir().unwrap();
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
    build_run(&dir);
    let page = dir.join("report.html").canonicalize().unwrap();
    let html = std::fs::read_to_string(&page).unwrap();
    common::assert_self_contained(&html);

    let dom = common::chromium(&dir, &["--dump-dom".into()], &page);
    std::fs::write(dir.join("dom.html"), &dom).unwrap();
    assert!(dom.contains("<h1>harness: qemux86-64 x2</h1>"), "{dom}");
    assert!(dom.contains("balena-qemux86-64-6.0.13.img"));
    assert!(dom.contains("2025-06-01 02:00:00 UTC"));
    assert!(dom.contains("accelerator: tcg (KVM probe failed)"));
    for (count, n) in [
        ("passed", 2),
        ("failed", 1),
        ("flaky", 1),
        ("skipped", 1),
        ("error", 0),
    ] {
        assert!(
            dom.contains(&format!("data-count=\"{count}\" data-n=\"{n}\"")),
            "{count}"
        );
    }

    // The targets and their states.
    let t1 = element(
        &dom,
        "tr",
        "data-target=\"qemux86-64#1\" data-state=\"done\"",
    );
    assert!(
        t1.contains(">done<") && t1.contains("accel tcg, 2 vCPU"),
        "{t1}"
    );
    let t2 = element(
        &dom,
        "tr",
        "data-target=\"qemux86-64#2\" data-state=\"broken\"",
    );
    assert!(t2.contains(">broken<") && t2.contains(BROKEN), "{t2}");

    // Each cell's status label, with its duration, message and figures.
    let q1 = "qemux86-64#1";
    let q2 = "qemux86-64#2";
    let boot = cell(&dom, "smoke/boot", q1);
    assert!(boot.contains("data-status=\"passed\"") && boot.contains(">passed</span>"));
    assert!(boot.contains("31.4s"), "{boot}");
    assert!(boot.contains("<dt>boot_seconds</dt><dd data-figure=\"boot_seconds\">28.7</dd>"));
    assert!(boot.contains("<dd data-figure=\"bytes_served_v1\">1048576</dd>"));
    assert!(cell(&dom, "smoke/boot", q2).contains("data-status=\"none\""));
    let hostname = cell(&dom, "os/hostname", q1);
    assert!(hostname.contains(">failed</span>"), "{hostname}");
    assert!(hostname.contains("hostname is `balena`, expected `qemu-1`"));
    let lan = cell(&dom, "os/lan", q1);
    assert!(lan.contains(">skipped</span>") && lan.contains("the target has no LAN"));
    let logging = cell(&dom, "os/logging", q1);
    assert!(logging.contains("data-status=\"flaky\"") && logging.contains(">flaky</span>"));
    assert!(logging.contains(">failed, rerun</span>"), "{logging}");
    assert!(logging.contains("journalctl shows no boot entries"));
    let ssh_there = cell(&dom, "smoke/ssh", q2);
    assert!(
        ssh_there.contains("data-status=\"infra-error\""),
        "{ssh_there}"
    );
    assert!(ssh_there.contains(">infra error</span>") && ssh_there.contains(BROKEN));
    assert!(ssh_there.contains("then ran on qemux86-64#1"));
    assert!(cell(&dom, "smoke/ssh", q1).contains(">passed</span>"));

    // The logs, one click away, and the console's markup as text.
    assert!(boot.contains("<details class=\"log\" data-log=\"ssh\"><summary>SSH transcript"));
    let console = element(boot, "details", "data-log=\"console\"");
    assert!(
        console.contains("<pre>[    0.000000] Linux version 6.1\n"),
        "{console}"
    );
    assert!(
        console.contains("  OK   Reached target Multi-User System."),
        "{console}"
    );
    assert!(console.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; bell"));
    assert!(
        !dom.contains("<script"),
        "the console's <script> became an element"
    );
    assert!(!dom.contains('\x1b') && !dom.contains('\x07'));
    assert!(element(ssh_there, "details", "data-log=\"console\"").contains("U-Boot 2024.01"));

    let size = common::screenshot(&dir, &page, "report.png");
    eprintln!(
        "report: {} ({size}-byte screenshot) in {:.1}s",
        page.display(),
        started.elapsed().as_secs_f64()
    );
}
