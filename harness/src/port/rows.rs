//! The porting report's model: checks (static ones on the image, tests on a device), grouped
//! into one row per contract section, a verdict, and the exit code.

use serde::Serialize;

use crate::exit_code;
use crate::report::{Outcome, TestResult};

/// Where a check or a row stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It held.
    Passed,
    /// The image or the device broke the contract.
    Failed,
    /// Not checked, with the reason.
    Skipped,
    /// The machinery failed (boot, QEMU, SSH): nothing is known about the contract.
    Error,
}

impl Status {
    /// The word shown and written: `passed`, `failed`, `skipped`, `error`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Passed => "passed",
            Status::Failed => "failed",
            Status::Skipped => "skipped",
            Status::Error => "error",
        }
    }
}

/// What one check found: its status and why (for a passed check, what it saw).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// Where it stands.
    pub status: Status,
    /// Why, in one line.
    pub why: String,
}

impl Finding {
    /// A check that held; `seen` says what it saw.
    pub fn passed(seen: impl Into<String>) -> Finding {
        Finding {
            status: Status::Passed,
            why: seen.into(),
        }
    }

    /// A broken contract.
    pub fn failed(why: impl Into<String>) -> Finding {
        Finding {
            status: Status::Failed,
            why: why.into(),
        }
    }

    /// Not checked.
    pub fn skipped(why: impl Into<String>) -> Finding {
        Finding {
            status: Status::Skipped,
            why: why.into(),
        }
    }

    /// What a test's result says.
    pub fn of_test(r: &TestResult) -> Finding {
        match &r.outcome {
            Outcome::Passed if r.flaky() => {
                Finding::passed("flaky: failed, then passed on a rerun")
            }
            Outcome::Passed => Finding::passed(""),
            Outcome::Failed(m) => Finding::failed(m.clone()),
            Outcome::Skipped(m) => Finding::skipped(m.clone()),
            Outcome::Error(m) => Finding {
                status: Status::Error,
                why: m.clone(),
            },
        }
    }
}

/// Whether a check was made on the image in place or by a test on a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// On the image, before any boot.
    Static,
    /// A test of a suite, on a device.
    Test,
}

/// A link to a log copied next to the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    /// What it is: `SSH transcript`, `console`, `serial log`.
    pub label: String,
    /// Its path relative to the report's folder.
    pub href: String,
}

/// One check of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// `static/partitions`, or a test's `suite/name`.
    pub id: String,
    /// Static or a test.
    pub kind: Kind,
    /// What it checks.
    pub title: String,
    /// Where it stands.
    pub status: Status,
    /// Why; for a passed check, what it saw (may be empty).
    pub why: String,
    /// Its logs (tests that ran).
    pub logs: Vec<Link>,
}

/// One contract section of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The section's number on the contracts page; `None` for tests no contract claims.
    pub section: Option<u32>,
    /// The section's title.
    pub title: String,
    /// Failed if a check failed, else error if one errored, else passed if one passed, else
    /// skipped.
    pub status: Status,
    /// Why, from the checks that decided the status.
    pub why: String,
    /// The checks of this section, static ones first.
    pub checks: Vec<Check>,
}

/// The whole report: its header, its rows, its verdict (`porting.json` as it is written).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The board ported.
    pub board: Board,
    /// The image checked, as given.
    pub image: String,
    /// When the check started, UTC.
    pub date: String,
    /// The contracts page the rows are named after; `None` when it was not at hand.
    pub contracts: Option<String>,
    /// The suites run (or that would have run).
    pub suites: Vec<String>,
    /// Whether only the static checks were asked for.
    pub static_only: bool,
    /// Whether a device was booted.
    pub booted: bool,
    /// The verdict.
    pub verdict: Verdict,
    /// One row per contract section.
    pub rows: Vec<Row>,
    /// The run's own report (`run/report.html`), relative to the report's folder.
    pub run_report: Option<String>,
    /// Notes: why nothing booted, what went wrong with the run.
    pub notes: Vec<String>,
}

/// The board a report is about.
#[derive(Debug, Clone, Serialize)]
pub struct Board {
    /// The machine type (`machines/NAME.yaml`, or a machine file).
    pub machine: String,
    /// Its balenaOS slug.
    pub slug: String,
    /// Its one-line description.
    pub description: String,
    /// The rig it ran on, if a rig.
    pub rig: Option<String>,
}

/// The report's verdict, in one line.
#[derive(Debug, Clone, Serialize)]
pub struct Verdict {
    /// Failed if a contract failed, error if the machinery failed, passed if some held.
    pub status: Status,
    /// The line: `PASS: 8 of 8 contracts held`.
    pub line: String,
}

/// Groups `checks` (each with its section) into one row per section of `sections`, in
/// order; checks of a section not listed, and those of none, go into a last row.
pub fn rows(sections: &[(u32, String)], checks: Vec<(Option<u32>, Check)>) -> Vec<Row> {
    let mut out: Vec<Row> = sections
        .iter()
        .map(|(n, title)| Row {
            section: Some(*n),
            title: title.clone(),
            status: Status::Skipped,
            why: String::new(),
            checks: Vec::new(),
        })
        .collect();
    let mut other = Vec::new();
    for (section, check) in checks {
        match out
            .iter_mut()
            .find(|r| r.section.is_some() && r.section == section)
        {
            Some(row) => row.checks.push(check),
            None => other.push(check),
        }
    }
    if !other.is_empty() {
        out.push(Row {
            section: None,
            title: "Tests no contract claims (not in suites/contracts.yaml)".into(),
            status: Status::Skipped,
            why: String::new(),
            checks: other,
        });
    }
    for row in &mut out {
        row.checks.sort_by_key(|c| c.kind != Kind::Static);
        (row.status, row.why) = decide(&row.checks);
    }
    out
}

/// A row's status and why, from its checks.
fn decide(checks: &[Check]) -> (Status, String) {
    if checks.is_empty() {
        return (Status::Skipped, "no check covers this contract".into());
    }
    let status = [Status::Failed, Status::Error, Status::Passed]
        .into_iter()
        .find(|s| checks.iter().any(|c| c.status == *s))
        .unwrap_or(Status::Skipped);
    let deciding: Vec<String> = checks
        .iter()
        .filter(|c| c.status == status && !c.why.is_empty())
        .map(|c| format!("{}: {}", c.id, c.why))
        .collect();
    let why = match status {
        Status::Passed => {
            let skipped = checks
                .iter()
                .filter(|c| c.status == Status::Skipped)
                .count();
            let held = checks.len() - skipped;
            let mut s = format!("{held} check{} held", plural(held));
            if skipped > 0 {
                s.push_str(&format!(", {skipped} skipped"));
            }
            s
        }
        Status::Skipped => {
            let mut reasons: Vec<&str> = checks.iter().map(|c| c.why.as_str()).collect();
            reasons.dedup();
            reasons.join("; ")
        }
        _ => deciding.join("; "),
    };
    (status, why)
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The report's one-line verdict.
pub fn verdict(rows: &[Row], static_only: bool) -> Verdict {
    let (status, line) = verdict_parts(rows, static_only);
    Verdict { status, line }
}

fn verdict_parts(rows: &[Row], static_only: bool) -> (Status, String) {
    let named = |s: Status| -> Vec<String> {
        rows.iter()
            .filter(|r| r.status == s)
            .map(|r| match r.section {
                Some(n) => format!("{n}. {}", r.title),
                None => r.title.clone(),
            })
            .collect()
    };
    let (failed, errors, passed, skipped) = (
        named(Status::Failed),
        named(Status::Error),
        named(Status::Passed),
        named(Status::Skipped),
    );
    let scope = if static_only {
        " (static checks only, no boot)"
    } else {
        ""
    };
    if !failed.is_empty() {
        return (
            Status::Failed,
            format!(
                "FAIL{scope}: {} of {} contracts broken: {}",
                failed.len(),
                rows.len(),
                failed.join(", ")
            ),
        );
    }
    if !errors.is_empty() {
        return (
            Status::Error,
            format!(
                "INCOMPLETE{scope}: the machinery failed in {}; {} of {} contracts held",
                errors.join(", "),
                passed.len(),
                rows.len()
            ),
        );
    }
    if passed.is_empty() {
        return (Status::Skipped, format!("NOTHING CHECKED{scope}"));
    }
    let mut line = format!(
        "PASS{scope}: {} of {} contracts held",
        passed.len(),
        rows.len()
    );
    if !skipped.is_empty() {
        line.push_str(&format!("; not checked: {}", skipped.join(", ")));
    }
    (Status::Passed, line)
}

/// The exit code of a report whose verdict is `status`, like `harness run`'s: infrastructure
/// errors 3, a broken contract 1, else 0.
pub fn exit_code(rows: &[Row]) -> i32 {
    if rows.iter().any(|r| r.status == Status::Error) {
        exit_code::INFRASTRUCTURE
    } else if rows.iter().any(|r| r.status == Status::Failed) {
        exit_code::TEST_FAILED
    } else {
        exit_code::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(id: &str, kind: Kind, status: Status, why: &str) -> Check {
        Check {
            id: id.into(),
            kind,
            title: id.into(),
            status,
            why: why.into(),
            logs: vec![],
        }
    }

    fn sections() -> Vec<(u32, String)> {
        vec![
            (1, "Disk layout".into()),
            (2, "config.json".into()),
            (3, "Networking".into()),
        ]
    }

    #[test]
    fn rows_take_the_worst_check_and_keep_the_section_order() {
        let rows = rows(
            &sections(),
            vec![
                (
                    Some(2),
                    check("os/hostname", Kind::Test, Status::Passed, ""),
                ),
                (
                    Some(1),
                    check("os/fsck", Kind::Test, Status::Skipped, "no LAN"),
                ),
                (
                    Some(1),
                    check(
                        "static/partitions",
                        Kind::Static,
                        Status::Failed,
                        "no resin-state",
                    ),
                ),
                (
                    Some(2),
                    check("os/dns", Kind::Test, Status::Skipped, "filtered"),
                ),
                (
                    None,
                    check("mine/x", Kind::Test, Status::Error, "QEMU died"),
                ),
            ],
        );
        let got: Vec<(Option<u32>, Status)> = rows.iter().map(|r| (r.section, r.status)).collect();
        assert_eq!(
            got,
            [
                (Some(1), Status::Failed),
                (Some(2), Status::Passed),
                (Some(3), Status::Skipped),
                (None, Status::Error),
            ]
        );
        assert_eq!(rows[0].checks[0].id, "static/partitions", "static first");
        assert_eq!(rows[0].why, "static/partitions: no resin-state");
        assert_eq!(rows[1].why, "1 check held, 1 skipped");
        assert_eq!(rows[2].why, "no check covers this contract");
        assert_eq!(exit_code(&rows), exit_code::INFRASTRUCTURE);
        let (status, line) = verdict_parts(&rows, false);
        assert_eq!(status, Status::Failed);
        assert_eq!(line, "FAIL: 1 of 4 contracts broken: 1. Disk layout");
    }

    #[test]
    fn verdicts() {
        let pass = |n: u32| (Some(n), check("t", Kind::Test, Status::Passed, ""));
        let rows_ok = rows(&sections(), vec![pass(1), pass(2)]);
        assert_eq!(exit_code(&rows_ok), exit_code::SUCCESS);
        assert_eq!(
            verdict_parts(&rows_ok, true),
            (
                Status::Passed,
                "PASS (static checks only, no boot): 2 of 3 contracts held; not checked: \
                 3. Networking"
                    .into()
            )
        );
        let err = (Some(3), check("t", Kind::Test, Status::Error, "boot"));
        let rows_err = rows(&sections(), vec![pass(1), err]);
        assert_eq!(
            verdict_parts(&rows_err, false),
            (
                Status::Error,
                "INCOMPLETE: the machinery failed in 3. Networking; 1 of 3 contracts held".into()
            )
        );
        let failed = (Some(2), check("t", Kind::Test, Status::Failed, "x"));
        assert_eq!(exit_code(&rows(&sections(), vec![failed])), 1);
        assert_eq!(
            verdict_parts(&rows(&sections(), vec![]), false).0,
            Status::Skipped
        );
    }
}
