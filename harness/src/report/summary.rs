//! `summary.json`: the run's results for machines to read.

use serde_json::json;

use super::{Counts, RunInfo, TestResult};

/// Renders the summary as pretty JSON.
pub fn render(info: &RunInfo, results: &[TestResult], interrupted: bool) -> String {
    let doc = json!({
        "run": info,
        "interrupted": interrupted,
        "counts": Counts::of(results),
        "tests": results,
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}
