//! `harness report compare RUN_A RUN_B`: what changed from one run to the next, read from the
//! two runs' `summary.json`.
//!
//! Tests are keyed by `suite/name`, and by target too (`suite/name on qemux86-64#2`) when both
//! runs have every target run every test (`each`). Otherwise the results of a test on several
//! targets fold into one: its worst status, its longest duration.
//!
//! A regression is a test that passed (or was flaky) in A and failed in B; a fix, one that
//! failed in A and passed in B. A test that became flaky, or whose status changed otherwise
//! (to or from an infrastructure error, a skip), is shown as such but is neither. Durations
//! count as changed beyond ±25% and 5 s; figures (properties) whenever their text differs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::exit_code;

/// A run's summary, as much of it as a comparison needs.
#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    /// What the run was about.
    pub run: Run,
    /// Its tests, in the order they finished.
    #[serde(default)]
    pub tests: Vec<Test>,
}

/// The `run` object of a summary.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    /// The run's title (its targets).
    #[serde(default)]
    pub title: String,
    /// `spread` or `each`.
    #[serde(default)]
    pub mode: String,
    /// When it started, in seconds since the Unix epoch.
    #[serde(default)]
    pub started: u64,
}

/// One test's entry in a summary.
#[derive(Debug, Clone, Deserialize)]
pub struct Test {
    /// Its suite.
    pub suite: String,
    /// Its name.
    pub name: String,
    /// Where its last run was.
    #[serde(default)]
    pub target: String,
    /// `passed`, `failed`, `skipped` or `error`.
    pub outcome: String,
    /// Why it did not pass.
    #[serde(default)]
    pub message: Option<String>,
    /// How long it ran, in seconds.
    #[serde(default)]
    pub duration: f64,
    /// The figures it recorded.
    #[serde(default)]
    pub properties: Vec<(String, String)>,
    /// Passed only on a rerun.
    #[serde(default)]
    pub flaky: bool,
}

impl Test {
    /// Its status: the outcome, or `flaky`.
    pub fn status(&self) -> &str {
        if self.flaky && self.outcome == "passed" {
            "flaky"
        } else {
            &self.outcome
        }
    }
}

/// How bad a status is, to fold a test's results on several targets into one.
fn rank(status: &str) -> u8 {
    match status {
        "failed" => 5,
        "error" => 4,
        "flaky" => 3,
        "passed" => 2,
        "skipped" => 1,
        _ => 0,
    }
}

/// The summary at `path`: a run's folder (holding `summary.json`) or the file itself.
pub fn load(path: &Path) -> Result<Summary> {
    let file: PathBuf = if path.is_dir() {
        path.join("summary.json")
    } else {
        path.to_path_buf()
    };
    let text = std::fs::read_to_string(&file)
        .map_err(|e| Error::input(format!("cannot read {}: {e}", file.display())))?;
    serde_json::from_str(&text).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let msg = full.strip_suffix(&suffix).unwrap_or(&full);
        Error::input(format!(
            "{}:{}:{}: not a valid summary.json: {msg}",
            file.display(),
            e.line(),
            e.column()
        ))
    })
}

/// The kinds of change, in the order they are listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    /// Passed (or flaky) in A, failed in B.
    Regression,
    /// Failed in A, passed in B.
    Fix,
    /// Flaky in B, not in A.
    Flaky,
    /// Any other change of status (to or from an error, a skip; no longer flaky).
    Changed,
    /// Took longer beyond the thresholds.
    Slower,
    /// Took less time beyond the thresholds.
    Faster,
    /// A figure's value changed, appeared or went.
    Figure,
    /// Only in B.
    New,
    /// Only in A.
    Gone,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Regression => "regression",
            Kind::Fix => "fix",
            Kind::Flaky => "flaky",
            Kind::Changed => "changed",
            Kind::Slower => "slower",
            Kind::Faster => "faster",
            Kind::Figure => "figure",
            Kind::New => "new",
            Kind::Gone => "gone",
        }
    }
}

/// One change from A to B.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    /// What kind.
    pub kind: Kind,
    /// The test's key: `suite/name` (`on target` when both runs are `each`).
    pub test: String,
    /// What changed: `passed → failed: hostname is wrong`, `30.0s → 45.0s (×1.50)`.
    pub detail: String,
}

/// What changed from run A to run B.
#[derive(Debug, Clone)]
pub struct Comparison {
    /// One line each for A and B: title, start, test count.
    pub heads: [String; 2],
    /// The changes, regressions first.
    pub changes: Vec<Change>,
}

impl Comparison {
    /// How many changes of `kind`.
    pub fn count(&self, kind: Kind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }

    /// 1 when a test regressed, else 0.
    pub fn exit_code(&self) -> i32 {
        if self.count(Kind::Regression) > 0 {
            exit_code::TEST_FAILED
        } else {
            exit_code::SUCCESS
        }
    }

    /// The closing line: `1 regression, 2 fixes, 0 flaky, ..., 1 new, 0 gone`.
    pub fn counts_line(&self) -> String {
        let n = |k| self.count(k);
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        [
            plural(n(Kind::Regression), "regression", "regressions"),
            plural(n(Kind::Fix), "fix", "fixes"),
            format!("{} newly flaky", n(Kind::Flaky)),
            plural(n(Kind::Changed), "other change", "other changes"),
            format!("{} slower", n(Kind::Slower)),
            format!("{} faster", n(Kind::Faster)),
            plural(n(Kind::Figure), "figure changed", "figures changed"),
            format!("{} new", n(Kind::New)),
            format!("{} gone", n(Kind::Gone)),
        ]
        .join(", ")
    }

    /// The whole comparison as text: the two runs, one line per change, the counts.
    pub fn render(&self) -> String {
        let width = self
            .changes
            .iter()
            .map(|c| c.test.chars().count())
            .max()
            .unwrap_or(0)
            .clamp(20, 50);
        let mut out = format!("A: {}\nB: {}\n", self.heads[0], self.heads[1]);
        if self.changes.is_empty() {
            out.push_str("no changes\n");
        }
        for c in &self.changes {
            out.push_str(&format!(
                "{:<10} {:<width$} {}\n",
                c.kind.label(),
                c.test,
                c.detail
            ));
        }
        out.push_str(&self.counts_line());
        out.push('\n');
        out
    }
}

/// Loads the summaries at `a` and `b` and compares them.
pub fn compare_paths(a: &Path, b: &Path) -> Result<Comparison> {
    let (sa, sb) = (load(a)?, load(b)?);
    let mut c = compare(&sa, &sb);
    c.heads = [head(a, &sa), head(b, &sb)];
    Ok(c)
}

fn head(path: &Path, s: &Summary) -> String {
    format!(
        "{} ({}, {} mode, started {}, {} test{})",
        path.display(),
        s.run.title,
        s.run.mode,
        crate::clock::utc(s.run.started).text(),
        s.tests.len(),
        if s.tests.len() == 1 { "" } else { "s" }
    )
}

/// The tests of a summary by key, in order; a key's several results folded into one.
fn keyed(s: &Summary, by_target: bool) -> Vec<(String, Test)> {
    let mut out: Vec<(String, Test)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for t in &s.tests {
        let key = if by_target {
            format!("{}/{} on {}", t.suite, t.name, t.target)
        } else {
            format!("{}/{}", t.suite, t.name)
        };
        match index.get(&key) {
            Some(&i) => {
                let kept = &mut out[i].1;
                let duration = kept.duration.max(t.duration);
                if rank(t.status()) > rank(kept.status()) {
                    let properties = std::mem::take(&mut kept.properties);
                    *kept = t.clone();
                    kept.properties = properties;
                }
                kept.duration = duration;
            }
            None => {
                index.insert(key.clone(), out.len());
                out.push((key, t.clone()));
            }
        }
    }
    out
}

/// `passed`, or `failed: why`.
fn described(t: &Test) -> String {
    match &t.message {
        Some(m) if !m.is_empty() && t.outcome != "passed" => format!("{}: {m}", t.status()),
        _ => t.status().to_string(),
    }
}

/// `×1.44` when both parse as numbers (and A is not zero).
fn ratio(a: &str, b: &str) -> Option<f64> {
    let (a, b) = (a.trim().parse::<f64>().ok()?, b.trim().parse::<f64>().ok()?);
    (a != 0.0 && a.is_finite() && b.is_finite()).then(|| b / a)
}

/// What changed from `a` to `b` (the heads name the runs by title only).
pub fn compare(a: &Summary, b: &Summary) -> Comparison {
    let by_target = a.run.mode == "each" && b.run.mode == "each";
    let (ta, tb) = (keyed(a, by_target), keyed(b, by_target));
    let in_a: HashMap<&str, &Test> = ta.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let in_b: HashMap<&str, &Test> = tb.iter().map(|(k, t)| (k.as_str(), t)).collect();
    let mut changes = Vec::new();
    let mut add = |kind, test: &str, detail: String| {
        changes.push(Change {
            kind,
            test: test.to_string(),
            detail,
        })
    };
    for (key, new) in &tb {
        let Some(old) = in_a.get(key.as_str()) else {
            add(Kind::New, key, described(new));
            continue;
        };
        let (sa, sb) = (old.status(), new.status());
        if sa != sb {
            let kind = match (sa, sb) {
                ("passed" | "flaky", "failed") => Kind::Regression,
                ("failed", "passed") => Kind::Fix,
                (_, "flaky") => Kind::Flaky,
                _ => Kind::Changed,
            };
            add(kind, key, format!("{sa} → {}", described(new)));
        }
        let (da, db) = (old.duration, new.duration);
        if sa != "skipped"
            && sb != "skipped"
            && (db - da).abs() > 5.0
            && (db - da).abs() > 0.25 * da
        {
            let kind = if db > da { Kind::Slower } else { Kind::Faster };
            let secs = |s: f64| crate::clock::elapsed(Duration::from_secs_f64(s.max(0.0)));
            let r = if da > 0.0 {
                format!(" (×{:.2})", db / da)
            } else {
                String::new()
            };
            add(kind, key, format!("{} → {}{r}", secs(da), secs(db)));
        }
        let mut names: Vec<&str> = old.properties.iter().map(|(k, _)| k.as_str()).collect();
        for (k, _) in &new.properties {
            if !names.contains(&k.as_str()) {
                names.push(k);
            }
        }
        let value = |t: &'_ Test, k: &str| {
            t.properties
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
        };
        for k in names {
            let (va, vb) = (value(old, k), value(new, k));
            if va == vb {
                continue;
            }
            let r = match (&va, &vb) {
                (Some(x), Some(y)) => ratio(x, y)
                    .map(|r| format!(" (×{r:.2})"))
                    .unwrap_or_default(),
                _ => String::new(),
            };
            let show = |v: Option<String>| v.unwrap_or_else(|| "(none)".into());
            add(
                Kind::Figure,
                key,
                format!("{k}: {} → {}{r}", show(va), show(vb)),
            );
        }
    }
    for (key, old) in &ta {
        if !in_b.contains_key(key.as_str()) {
            add(Kind::Gone, key, format!("was {}", described(old)));
        }
    }
    changes.sort_by_key(|c| c.kind);
    let head = |s: &Summary| format!("{} ({} mode)", s.run.title, s.run.mode);
    Comparison {
        heads: [head(a), head(b)],
        changes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"{
      "run": {"title": "qemux86-64 x2", "mode": "spread", "image": "a.img", "started": 1748743200, "notes": []},
      "targets": [], "interrupted": false,
      "counts": {"passed": 4, "failed": 1, "skipped": 0, "errors": 0, "flaky": 0},
      "tests": [
        {"suite": "os", "name": "boot", "target": "q#1", "outcome": "passed", "duration": 30.0,
         "properties": [["boot_seconds", "31.2"], ["kernel", "6.1"]], "attempts": [], "flaky": false},
        {"suite": "os", "name": "hostname", "target": "q#1", "outcome": "passed", "duration": 2.0,
         "properties": [], "attempts": [], "flaky": false},
        {"suite": "os", "name": "lan", "target": "q#2", "outcome": "failed", "message": "no route",
         "duration": 3.0, "properties": [], "attempts": [], "flaky": false},
        {"suite": "os", "name": "logs", "target": "q#2", "outcome": "passed", "duration": 4.0,
         "properties": [], "attempts": [], "flaky": false},
        {"suite": "os", "name": "old", "target": "q#2", "outcome": "passed", "duration": 1.0,
         "properties": [], "attempts": [], "flaky": false}
      ]
    }"#;

    const B: &str = r#"{
      "run": {"title": "qemux86-64 x2", "mode": "spread", "image": "b.img", "started": 1748829600, "notes": []},
      "targets": [], "interrupted": false,
      "counts": {"passed": 2, "failed": 1, "skipped": 0, "errors": 0, "flaky": 1},
      "tests": [
        {"suite": "os", "name": "boot", "target": "q#2", "outcome": "passed", "duration": 45.0,
         "properties": [["boot_seconds", "45.0"], ["kernel", "6.1"], ["bytes", "100"]], "attempts": [], "flaky": false},
        {"suite": "os", "name": "hostname", "target": "q#1", "outcome": "failed",
         "message": "hostname is wrong", "duration": 2.5, "properties": [], "attempts": [], "flaky": false},
        {"suite": "os", "name": "lan", "target": "q#2", "outcome": "passed", "duration": 3.0,
         "properties": [], "attempts": [], "flaky": false},
        {"suite": "os", "name": "logs", "target": "q#1", "outcome": "passed", "duration": 4.2,
         "properties": [], "attempts": [{"target": "q#1", "outcome": "failed", "message": "x", "duration": 1.0}], "flaky": true},
        {"suite": "os", "name": "engine", "target": "q#1", "outcome": "passed", "duration": 9.0,
         "properties": [], "attempts": [], "flaky": false}
      ]
    }"#;

    fn summary(s: &str) -> Summary {
        serde_json::from_str(s).unwrap()
    }

    #[test]
    fn finds_regressions_fixes_flaky_timing_figures_new_and_gone() {
        let c = compare(&summary(A), &summary(B));
        let lines: Vec<(Kind, &str, &str)> = c
            .changes
            .iter()
            .map(|c| (c.kind, c.test.as_str(), c.detail.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (
                    Kind::Regression,
                    "os/hostname",
                    "passed → failed: hostname is wrong"
                ),
                (Kind::Fix, "os/lan", "failed → passed"),
                (Kind::Flaky, "os/logs", "passed → flaky"),
                (Kind::Slower, "os/boot", "30.0s → 45.0s (×1.50)"),
                (Kind::Figure, "os/boot", "boot_seconds: 31.2 → 45.0 (×1.44)"),
                (Kind::Figure, "os/boot", "bytes: (none) → 100"),
                (Kind::New, "os/engine", "passed"),
                (Kind::Gone, "os/old", "was passed"),
            ]
        );
        assert_eq!(
            c.counts_line(),
            "1 regression, 1 fix, 1 newly flaky, 0 other changes, 1 slower, 0 faster, \
             2 figures changed, 1 new, 1 gone"
        );
        assert_eq!(c.exit_code(), 1);
        assert_eq!(compare(&summary(B), &summary(B)).exit_code(), 0);
        let back = compare(&summary(B), &summary(A));
        assert_eq!(back.count(Kind::Regression), 1, "{}", back.render()); // os/lan
        assert_eq!(back.count(Kind::Changed), 1, "{}", back.render()); // flaky → passed
        assert!(back.render().ends_with("1 new, 1 gone\n"));
    }

    #[test]
    fn keys_by_target_only_when_both_runs_are_each() {
        let each = |s: &str| {
            let mut s = summary(s);
            s.run.mode = "each".into();
            s
        };
        let c = compare(&each(A), &each(B));
        assert!(c
            .changes
            .iter()
            .any(|c| c.test == "os/boot on q#2" && c.kind == Kind::New));
        let c = compare(&each(A), &summary(B));
        assert!(c.changes.iter().all(|c| !c.test.contains(" on ")));
    }

    #[test]
    fn folds_a_test_on_several_targets_into_its_worst() {
        let mut s = summary(B);
        let mut other = s.tests[0].clone();
        other.target = "q#1".into();
        other.outcome = "failed".into();
        other.duration = 50.0;
        s.tests.push(other);
        let k = keyed(&s, false);
        let boot = &k.iter().find(|(k, _)| k == "os/boot").unwrap().1;
        assert_eq!((boot.status(), boot.duration), ("failed", 50.0));
        assert_eq!(boot.properties.len(), 3);
    }

    #[test]
    fn a_missing_or_corrupt_summary_is_an_input_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let e = load(dir.path()).unwrap_err();
        assert!(matches!(e, Error::Input(_)), "{e:?}");
        assert!(e.to_string().contains("summary.json"), "{e}");
        let bad = dir.path().join("summary.json");
        std::fs::write(
            &bad,
            "{\n  \"run\": {\"title\": \"x\"},\n  \"tests\": [1]\n}",
        )
        .unwrap();
        let e = load(dir.path()).unwrap_err();
        let text = e.to_string();
        assert!(
            text.starts_with(&format!(
                "{}:3:13: not a valid summary.json: ",
                bad.display()
            )),
            "{text}"
        );
        assert!(
            !text.contains('\n') && !text.contains(" at line "),
            "{text}"
        );
        assert_eq!(e.exit_code(), 2);
    }
}
