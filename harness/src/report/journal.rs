//! The run's journal (`journal.jsonl` in the run folder): every event of the run, one JSON
//! line each, written and flushed to disk before the run goes on. `junit.xml`,
//! `summary.json` and `report.html` are renderings of it, so a run killed in any way (SIGKILL,
//! a panic, the power) loses no finished test: `harness report render RUN_DIR` renders them
//! again from the journal.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{RunInfo, TargetReport, TestResult};
use crate::error::{Context, Error, Result};

/// The journal's file name in the run folder.
pub const FILE: &str = "journal.jsonl";

/// Where a test's result belongs: a run of a chain of tests (a job; its retries keep the id)
/// and the test's place in it. A later result for the same slot replaces the earlier one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Slot {
    /// The job's id, unique in the run.
    pub job: u64,
    /// The test's place in the job's chain.
    pub pos: usize,
}

/// One event of a run.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Event {
    /// The run began (always the first line).
    Run {
        /// What the run is about.
        info: RunInfo,
        /// Where its JUnit file goes.
        junit: PathBuf,
    },
    /// A target appeared or changed state.
    Target(TargetReport),
    /// A test began on a target.
    Started {
        /// Its slot.
        slot: Slot,
        /// `suite`, `name` and `target` of the test.
        suite: String,
        /// The test's name.
        name: String,
        /// The target it runs on.
        target: String,
    },
    /// A test ended (or its run ended and it goes back to the queue).
    Finished {
        /// Its slot.
        slot: Slot,
        /// The result.
        result: Box<TestResult>,
    },
    /// Ctrl-C or SIGTERM stopped the run.
    Interrupted,
    /// The run ended of itself (a journal without this line is from a run that was killed).
    Ended,
}

/// The open journal of a running run.
pub struct Journal {
    file: File,
    path: PathBuf,
}

impl Journal {
    /// A new journal in `dir` (an earlier one there is replaced).
    pub fn create(dir: &Path) -> Result<Journal> {
        let path = dir.join(FILE);
        let file = File::create(&path).infra_ctx(|| format!("cannot create {}", path.display()))?;
        Ok(Journal { file, path })
    }

    /// Appends `event` and flushes it to disk.
    pub fn append(&mut self, event: &Event) -> Result<()> {
        let mut line = serde_json::to_vec(event)
            .map_err(|e| Error::infra(format!("cannot encode a journal event: {e}")))?;
        line.push(b'\n');
        self.file
            .write_all(&line)
            .and_then(|()| self.file.sync_data())
            .infra_ctx(|| format!("cannot write {}", self.path.display()))
    }
}

/// Reads the events of the journal in `dir`. A last line cut short by a crash is dropped;
/// any other line that cannot be read is an error naming it.
pub fn read(dir: &Path) -> Result<Vec<Event>> {
    let path = dir.join(FILE);
    let file = File::open(&path).input_ctx(|| {
        format!(
            "cannot read {} (is {} the folder of a run?)",
            path.display(),
            dir.display()
        )
    })?;
    let lines: Vec<String> = BufReader::new(file)
        .lines()
        .collect::<std::io::Result<_>>()
        .input_ctx(|| format!("cannot read {}", path.display()))?;
    let mut events = Vec::with_capacity(lines.len());
    for (i, line) in lines.iter().enumerate() {
        match serde_json::from_str(line) {
            Ok(e) => events.push(e),
            // A crash in the middle of a write leaves half a last line.
            Err(_) if i + 1 == lines.len() => {}
            Err(e) => {
                return Err(Error::input(format!(
                    "{}:{}: not a journal event: {e}",
                    path.display(),
                    i + 1
                )))
            }
        }
    }
    match events.first() {
        Some(Event::Run { .. }) => Ok(events),
        _ => Err(Error::input(format!(
            "{}: does not begin with the run's description",
            path.display()
        ))),
    }
}
