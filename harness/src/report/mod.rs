//! Results and the reports made of them: the terminal, `junit.xml`, `summary.json`,
//! `report.html`; and `harness report compare` over two runs' summaries.
//!
//! The runner hands each finished test to a [`Reporter`], which rewrites the files at once, so
//! a run that is killed still leaves valid reports of what ran.

pub mod compare;
pub mod html;
pub mod junit;
pub mod summary;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Context, Result};

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "message", rename_all = "snake_case")]
pub enum Outcome {
    /// Every step held.
    Passed,
    /// A check did not hold: the device misbehaved.
    Failed(String),
    /// Not run, with the reason (a capability the target lacks, a filter).
    Skipped(String),
    /// The machinery failed (boot, SSH, QEMU): not the device's fault as far as we know.
    Error(String),
}

impl Outcome {
    /// A short label for the terminal.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Passed => "PASS",
            Outcome::Failed(_) => "FAIL",
            Outcome::Skipped(_) => "SKIP",
            Outcome::Error(_) => "ERROR",
        }
    }
}

/// One finished test: its last run, and the earlier runs that did not pass.
#[derive(Debug, Clone, Serialize)]
pub struct TestResult {
    /// The suite it belongs to.
    pub suite: String,
    /// The test's name.
    pub name: String,
    /// The target (machine or rig) its last run was on.
    pub target: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it ran.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Figures it recorded (boot time, bytes on the wire), in order.
    pub properties: Vec<(String, String)>,
    /// The SSH commands it ran with their output.
    #[serde(skip)]
    pub transcript: String,
    /// What the serial console printed while it ran.
    #[serde(skip)]
    pub console: String,
    /// Earlier runs of it that failed or hit an infrastructure error, oldest first.
    pub attempts: Vec<Attempt>,
}

impl TestResult {
    /// Passed on a rerun after failing: flaky, not plainly passed.
    pub fn flaky(&self) -> bool {
        self.outcome == Outcome::Passed
            && self
                .attempts
                .iter()
                .any(|a| matches!(a.outcome, Outcome::Failed(_)))
    }

    /// The result as an earlier attempt of a rerun.
    pub fn into_attempt(self) -> Attempt {
        Attempt {
            target: self.target,
            outcome: self.outcome,
            duration: self.duration,
            transcript: self.transcript,
            console: self.console,
        }
    }
}

/// An earlier run of a test that did not pass (a failure before a rerun, or an infrastructure
/// error before a retry).
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// The target it ran on.
    pub target: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it ran.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
    /// Its SSH transcript.
    #[serde(skip)]
    pub transcript: String,
    /// Its serial console slice.
    #[serde(skip)]
    pub console: String,
}

/// One target of the run and how it is doing.
#[derive(Debug, Clone, Serialize)]
pub struct TargetReport {
    /// Its name in this run: `qemux86-64#1`, `rig-pi4-1`.
    pub name: String,
    /// The machine type it plays.
    pub machine: String,
    /// Where it is.
    #[serde(flatten)]
    pub status: TargetStatus,
    /// Notes about its set-up (accelerator, network, lease).
    pub notes: Vec<String>,
}

/// Where a target is in the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "detail", rename_all = "snake_case")]
pub enum TargetStatus {
    /// Waiting for its lease or being set up.
    Starting(String),
    /// Running a test (its `suite/test`) or booting.
    Running(String),
    /// Finished its share of the work.
    Done,
    /// Taken out of the run by an infrastructure failure, with the reason.
    Broken(String),
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// What the run was about, for the report headers.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// The run's title: its targets, e.g. `qemux86-64 x2` or `rig-pi4-1, rig-pi4-2`.
    pub title: String,
    /// `spread` (the tests shared out over the targets) or `each` (every target runs all).
    pub mode: String,
    /// The image under test.
    pub image: PathBuf,
    /// When the run started.
    #[serde(serialize_with = "unix_secs")]
    pub started: SystemTime,
    /// Notes about the set-up (accelerator, network mode).
    pub notes: Vec<String>,
}

fn unix_secs<S: serde::Serializer>(t: &SystemTime, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

/// Counts of outcomes.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    /// Tests that passed.
    pub passed: usize,
    /// Tests that failed.
    pub failed: usize,
    /// Tests that were skipped.
    pub skipped: usize,
    /// Tests that hit an infrastructure error.
    pub errors: usize,
    /// Tests that failed and then passed on a rerun (not counted as passed).
    pub flaky: usize,
}

impl Counts {
    /// Counts `results`.
    pub fn of(results: &[TestResult]) -> Counts {
        let mut c = Counts::default();
        for r in results {
            match r.outcome {
                Outcome::Passed if r.flaky() => c.flaky += 1,
                Outcome::Passed => c.passed += 1,
                Outcome::Failed(_) => c.failed += 1,
                Outcome::Skipped(_) => c.skipped += 1,
                Outcome::Error(_) => c.errors += 1,
            }
        }
        c
    }
}

/// Keeps the run's report files current as results arrive.
pub struct Reporter {
    dir: PathBuf,
    junit: PathBuf,
    info: RunInfo,
    targets: Vec<TargetReport>,
    results: Vec<TestResult>,
    interrupted: bool,
}

impl Reporter {
    /// A reporter writing into `dir` (and the JUnit file at `junit`).
    pub fn new(dir: &Path, junit: PathBuf, info: RunInfo) -> Result<Reporter> {
        std::fs::create_dir_all(dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
        let r = Reporter {
            dir: dir.to_path_buf(),
            junit,
            info,
            targets: Vec::new(),
            results: Vec::new(),
            interrupted: false,
        };
        r.write()?;
        Ok(r)
    }

    /// Records a finished test and rewrites the reports.
    pub fn add(&mut self, result: TestResult) -> Result<()> {
        self.results.push(result);
        self.write()
    }

    /// Records a target's state (a new target, or a change) and rewrites the reports.
    pub fn set_target(&mut self, target: TargetReport) -> Result<()> {
        match self.targets.iter_mut().find(|t| t.name == target.name) {
            Some(t) => *t = target,
            None => self.targets.push(target),
        }
        self.write()
    }

    /// The targets so far.
    pub fn targets(&self) -> &[TargetReport] {
        &self.targets
    }

    /// Marks the run as interrupted and rewrites the reports.
    pub fn interrupted(&mut self) -> Result<()> {
        self.interrupted = true;
        self.write()
    }

    /// The results so far.
    pub fn results(&self) -> &[TestResult] {
        &self.results
    }

    /// The JUnit file's path.
    pub fn junit_path(&self) -> &Path {
        &self.junit
    }

    fn write(&self) -> Result<()> {
        let xml = junit::render(&self.info, &self.results)?;
        write_atomic(&self.junit, xml.as_bytes())?;
        let json = summary::render(&self.info, &self.targets, &self.results, self.interrupted);
        write_atomic(&self.dir.join("summary.json"), json.as_bytes())?;
        let page = html::render(&self.info, &self.targets, &self.results, self.interrupted);
        write_atomic(&self.dir.join("report.html"), page.as_bytes())
    }
}

/// Writes `bytes` to `path` through a temp file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).infra_ctx(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).infra_ctx(|| format!("cannot write {}", path.display()))
}
