//! What the terminal shows: one line per test and a closing summary.

use std::time::Duration;

use super::{Counts, Outcome, TestResult};

/// One line for a finished test: `PASS  smoke/ssh  1.2s`, with the reason when not passed.
pub fn line(r: &TestResult) -> String {
    let head = format!(
        "{:<5} {:<40} {:>7}",
        r.outcome.label(),
        format!("{}/{}", r.suite, r.name),
        human(r.duration)
    );
    match &r.outcome {
        Outcome::Passed => head,
        Outcome::Failed(m) | Outcome::Skipped(m) | Outcome::Error(m) => format!("{head}  {m}"),
    }
}

/// The closing line: `3 passed, 1 failed, 2 skipped, 0 errors in 2m03s`.
pub fn summary(c: &Counts, took: Duration) -> String {
    format!(
        "{} passed, {} failed, {} skipped, {} errors in {}",
        c.passed,
        c.failed,
        c.skipped,
        c.errors,
        human(took)
    )
}

/// `1.2s`, `2m03s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}
