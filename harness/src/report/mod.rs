//! Results and the reports made of them: the terminal, `junit.xml`, `summary.json`,
//! `report.html`; and `harness report compare` over two runs' summaries.
//!
//! The runner hands each event (a target's state, a test started or finished) to one
//! [`Reporter`], which appends it to the run's [`journal`] and flushes it before the run goes
//! on, then renders the files from what the journal holds. A run killed in any way loses no
//! finished test: `harness report render RUN_DIR` renders the files again from the journal.

pub mod compare;
pub mod html;
pub mod journal;
pub mod junit;
pub mod summary;
pub mod terminal;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Result};
use journal::{Event, Journal, Slot};

/// How a test ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Figures it recorded (boot time, bytes on the wire), in order.
    pub properties: Vec<(String, String)>,
    /// The SSH commands it ran with their output (in the journal; not in summary.json).
    pub transcript: String,
    /// What the serial console printed while it ran (in the journal; not in summary.json).
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
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Attempt {
    /// The target it ran on.
    pub target: String,
    /// How it ended.
    #[serde(flatten)]
    pub outcome: Outcome,
    /// How long it ran.
    #[serde(with = "secs")]
    pub duration: Duration,
    /// Its SSH transcript.
    pub transcript: String,
    /// Its serial console slice.
    pub console: String,
}

/// One target of the run and how it is doing.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
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

/// Durations as seconds with millisecond precision.
mod secs {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs: f64 = serde::Deserialize::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// What the run was about, for the report headers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunInfo {
    /// The run's title: its targets, e.g. `qemux86-64 x2` or `rig-pi4-1, rig-pi4-2`.
    pub title: String,
    /// `spread` (the tests shared out over the targets) or `each` (every target runs all).
    pub mode: String,
    /// The image under test.
    pub image: PathBuf,
    /// When the run started.
    #[serde(with = "unix_secs")]
    pub started: SystemTime,
    /// Notes about the set-up (accelerator, network mode).
    pub notes: Vec<String>,
}

/// Times as whole seconds since the Unix epoch.
mod unix_secs {
    use std::time::{Duration, SystemTime};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(
            t.duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0),
        )
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let secs: u64 = serde::Deserialize::deserialize(d)?;
        Ok(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
    }
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

/// The run's one reporter: takes every event, journals it, and keeps the report files current.
pub struct Reporter {
    dir: PathBuf,
    junit: PathBuf,
    info: RunInfo,
    targets: Vec<TargetReport>,
    /// The latest result of each slot, in the order the slots first finished.
    results: Vec<TestResult>,
    slots: Vec<Slot>,
    /// Tests started and not finished.
    running: Vec<(Slot, TestResult)>,
    interrupted: bool,
    journal: Option<Journal>,
    next_slot: u64,
    /// Events since the files were last rendered, and when that was: the journal holds every
    /// event at once; the files follow at most every [`RENDER_EVERY`] (and at the end).
    dirty: bool,
    rendered: std::time::Instant,
}

/// How often the report files are rendered again while a run goes on.
pub const RENDER_EVERY: Duration = Duration::from_secs(1);

impl Reporter {
    /// A reporter writing into `dir` (and the JUnit file at `junit`), with a new journal.
    pub fn new(dir: &Path, junit: PathBuf, info: RunInfo) -> Result<Reporter> {
        std::fs::create_dir_all(dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
        let mut r = Reporter::empty(dir, junit, info);
        let mut journal = Journal::create(dir)?;
        journal.append(&Event::Run {
            info: r.info.clone(),
            junit: r.junit.clone(),
        })?;
        r.journal = Some(journal);
        r.write()?;
        Ok(r)
    }

    fn empty(dir: &Path, junit: PathBuf, info: RunInfo) -> Reporter {
        Reporter {
            dir: dir.to_path_buf(),
            junit,
            info,
            targets: Vec::new(),
            results: Vec::new(),
            slots: Vec::new(),
            running: Vec::new(),
            interrupted: false,
            journal: None,
            next_slot: u64::MAX / 2,
            dirty: false,
            rendered: std::time::Instant::now(),
        }
    }

    /// The run in `dir` as its journal tells it, for rendering again after a crash. Tests
    /// that had started and not finished when the journal ends are reported as interrupted.
    pub fn from_journal(dir: &Path) -> Result<Reporter> {
        let mut events = journal::read(dir)?.into_iter();
        let Some(Event::Run { info, junit }) = events.next() else {
            unreachable!("journal::read checks the first event");
        };
        let mut r = Reporter::empty(dir, junit, info);
        let mut ended = false;
        for event in events {
            match event {
                Event::Run { .. } => {}
                Event::Target(t) => r.apply_target(t),
                Event::Started {
                    slot,
                    suite,
                    name,
                    target,
                } => r.apply_started(slot, suite, name, target),
                Event::Finished { slot, result } => r.apply_finished(slot, *result),
                Event::Interrupted => r.interrupted = true,
                Event::Ended => ended = true,
            }
        }
        if !ended {
            r.interrupt_running("the run ended while it ran (the harness was killed)");
        }
        Ok(r)
    }

    /// Renders the report files again from what the reporter holds.
    pub fn render(&mut self) -> Result<()> {
        self.write()
    }

    /// A slot for a result that belongs to no job (every call gives a new one).
    pub fn new_slot(&mut self) -> Slot {
        self.next_slot += 1;
        Slot {
            job: self.next_slot,
            pos: 0,
        }
    }

    /// Records that a test started on a target.
    pub fn started(&mut self, slot: Slot, suite: &str, name: &str, target: &str) -> Result<()> {
        self.log(&Event::Started {
            slot,
            suite: suite.into(),
            name: name.into(),
            target: target.into(),
        })?;
        self.apply_started(slot, suite.into(), name.into(), target.into());
        Ok(())
    }

    /// Records a test's result for `slot` (replacing an earlier one there) and rewrites the
    /// reports.
    pub fn finished(&mut self, slot: Slot, result: TestResult) -> Result<()> {
        let event = Event::Finished {
            slot,
            result: Box::new(redacted(result)),
        };
        self.log(&event)?;
        let Event::Finished { result, .. } = event else {
            unreachable!()
        };
        self.apply_finished(slot, *result);
        self.write_soon()
    }

    /// Records a finished test in a slot of its own and rewrites the reports.
    pub fn add(&mut self, result: TestResult) -> Result<()> {
        let slot = self.new_slot();
        self.finished(slot, result)
    }

    /// Records a target's state (a new target, or a change) and rewrites the reports.
    pub fn set_target(&mut self, target: TargetReport) -> Result<()> {
        self.log(&Event::Target(target.clone()))?;
        self.apply_target(target);
        self.write_soon()
    }

    /// Renders the files if events arrived since they were last rendered (a run's ticker
    /// calls this, so the files never lag the journal by much more than [`RENDER_EVERY`]).
    pub fn flush(&mut self) -> Result<()> {
        if self.dirty {
            self.write()?;
        }
        Ok(())
    }

    /// The targets so far.
    pub fn targets(&self) -> &[TargetReport] {
        &self.targets
    }

    /// Marks the run as interrupted: tests still running are reported so.
    pub fn interrupted(&mut self) -> Result<()> {
        self.log(&Event::Interrupted)?;
        self.interrupted = true;
        self.interrupt_running("interrupted (Ctrl-C or SIGTERM) while it ran");
        self.write()
    }

    /// Ends the journal: the run is over and the reports are final.
    pub fn close(&mut self) -> Result<()> {
        self.interrupt_running("the run ended while it ran");
        self.log(&Event::Ended)?;
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

    /// Whether the run was interrupted.
    pub fn was_interrupted(&self) -> bool {
        self.interrupted
    }

    fn log(&mut self, event: &Event) -> Result<()> {
        match &mut self.journal {
            Some(j) => j.append(event),
            None => Ok(()),
        }
    }

    fn apply_target(&mut self, target: TargetReport) {
        match self.targets.iter_mut().find(|t| t.name == target.name) {
            Some(t) => *t = target,
            None => self.targets.push(target),
        }
    }

    fn apply_started(&mut self, slot: Slot, suite: String, name: String, target: String) {
        // What the slot held before (an earlier run of the test) becomes an earlier attempt
        // if this run never finishes.
        let attempts = match self.slots.iter().position(|s| *s == slot) {
            Some(i) => {
                let before = &self.results[i];
                let mut a = before.attempts.clone();
                if before.outcome != Outcome::Passed {
                    a.push(before.clone().into_attempt());
                }
                a
            }
            None => Vec::new(),
        };
        self.running.retain(|(s, _)| *s != slot);
        self.running.push((
            slot,
            TestResult {
                suite,
                name,
                target,
                outcome: Outcome::Error(String::new()),
                duration: Duration::ZERO,
                properties: vec![],
                transcript: String::new(),
                console: String::new(),
                attempts,
            },
        ));
    }

    fn apply_finished(&mut self, slot: Slot, result: TestResult) {
        self.running.retain(|(s, _)| *s != slot);
        match self.slots.iter().position(|s| *s == slot) {
            Some(i) => self.results[i] = result,
            None => {
                self.slots.push(slot);
                self.results.push(result);
            }
        }
    }

    /// Every test still running becomes a result saying `why`.
    fn interrupt_running(&mut self, why: &str) {
        for (slot, mut r) in std::mem::take(&mut self.running) {
            r.outcome = Outcome::Error(why.to_string());
            self.apply_finished(slot, r);
        }
    }

    /// Renders now if the last rendering is [`RENDER_EVERY`] old, else marks the files stale.
    fn write_soon(&mut self) -> Result<()> {
        if self.rendered.elapsed() >= RENDER_EVERY {
            self.write()
        } else {
            self.dirty = true;
            Ok(())
        }
    }

    fn write(&mut self) -> Result<()> {
        self.dirty = false;
        self.rendered = std::time::Instant::now();
        let xml = junit::render(&self.info, &self.results)?;
        write_atomic(&self.junit, xml.as_bytes())?;
        let json = summary::render(&self.info, &self.targets, &self.results, self.interrupted);
        write_atomic(&self.dir.join("summary.json"), json.as_bytes())?;
        let page = html::render(&self.info, &self.targets, &self.results, self.interrupted);
        write_atomic(&self.dir.join("report.html"), page.as_bytes())
    }
}

/// `r` with every secret masked (see [`crate::redact`]): what the reports and journal hold.
fn redacted(mut r: TestResult) -> TestResult {
    use crate::redact::text;
    fn outcome(o: &mut Outcome) {
        if let Outcome::Failed(m) | Outcome::Skipped(m) | Outcome::Error(m) = o {
            *m = text(m);
        }
    }
    r.transcript = text(&r.transcript);
    r.console = text(&r.console);
    outcome(&mut r.outcome);
    for (_, v) in &mut r.properties {
        *v = text(v);
    }
    for a in &mut r.attempts {
        a.transcript = text(&a.transcript);
        a.console = text(&a.console);
        outcome(&mut a.outcome);
    }
    r
}

/// Writes `bytes` to `path` through a temp file and a rename, so readers never see half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).infra_ctx(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).infra_ctx(|| format!("cannot write {}", path.display()))
}
