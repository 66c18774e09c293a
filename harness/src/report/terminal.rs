//! What the terminal shows: one line per test and a closing summary.

use std::time::Duration;

use crate::clock::elapsed;

use super::{Counts, Outcome, TestResult};

/// One line for a finished test: `PASS  smoke/ssh  1.2s`, with the reason when not passed;
/// `with_target` adds where it ran (`on qemux86-64#2`).
pub fn line(r: &TestResult, with_target: bool) -> String {
    let label = if r.flaky() {
        "FLAKY"
    } else {
        r.outcome.label()
    };
    let mut head = format!(
        "{:<5} {:<40} {:>7}",
        label,
        format!("{}/{}", r.suite, r.name),
        elapsed(r.duration)
    );
    if with_target {
        head.push_str(&format!("  on {}", r.target));
    }
    match &r.outcome {
        Outcome::Passed => head,
        Outcome::Failed(m) | Outcome::Skipped(m) | Outcome::Error(m) => format!("{head}  {m}"),
    }
}

/// The closing line: `3 passed, 1 failed, 2 skipped, 0 errors in 2m03s` (and `, 1 flaky`
/// before ` in` when a test passed only on a rerun).
pub fn summary(c: &Counts, took: Duration) -> String {
    let flaky = if c.flaky > 0 {
        format!(", {} flaky", c.flaky)
    } else {
        String::new()
    };
    format!(
        "{} passed, {} failed, {} skipped, {} errors{flaky} in {}",
        c.passed,
        c.failed,
        c.skipped,
        c.errors,
        elapsed(took)
    )
}
