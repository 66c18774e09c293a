//! `summary.json`: the run's results for machines to read.

use serde_json::json;

use super::{Counts, RunInfo, TargetReport, TestResult};

/// Renders the summary as pretty JSON.
pub fn render(
    info: &RunInfo,
    targets: &[TargetReport],
    results: &[TestResult],
    interrupted: bool,
) -> String {
    let doc = json!({
        "run": info,
        "targets": targets,
        "interrupted": interrupted,
        "counts": Counts::of(results),
        "tests": results.iter().map(test).collect::<Vec<_>>(),
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// A test's entry: its fields and whether it was flaky. Logs (the SSH transcript, the
/// console) stay in junit.xml, report.html and the journal.
fn test(r: &TestResult) -> serde_json::Value {
    let mut v = serde_json::to_value(r).unwrap_or_default();
    if let Some(obj) = v.as_object_mut() {
        strip_logs(obj);
        if let Some(serde_json::Value::Array(attempts)) = obj.get_mut("attempts") {
            for a in attempts.iter_mut().filter_map(|a| a.as_object_mut()) {
                strip_logs(a);
            }
        }
        obj.insert("flaky".into(), r.flaky().into());
    }
    v
}

fn strip_logs(obj: &mut serde_json::Map<String, serde_json::Value>) {
    obj.remove("transcript");
    obj.remove("console");
}
