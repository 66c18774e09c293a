//! The logs of the tests a port-check ran, copied beside the report (`porting-logs/`), so that
//! the page links to plain files that travel with it.
//!
//! Per test: `porting-logs/<suite>/<test>.ssh.txt` (its SSH transcript, earlier attempts
//! first) and `<test>.console.txt` (its slice of the serial console, escape sequences
//! removed); per target: `porting-logs/<target>/serial.log`, its whole console.

use std::collections::BTreeMap;
use std::path::Path;

use super::rows::Link;
use crate::error::{Context, Result};
use crate::report::html::clean;
use crate::report::{TargetReport, TestResult};

/// The folder, under the report's.
pub const DIR: &str = "porting-logs";

/// Writes the logs of `results` (read from the run in `run_dir`) under `out/porting-logs`;
/// returns each test's links (by `suite/test`), relative to `out`.
pub fn copy(
    out: &Path,
    run_dir: &Path,
    results: &[TestResult],
    targets: &[TargetReport],
) -> Result<BTreeMap<String, Vec<Link>>> {
    let mut serials = BTreeMap::new();
    for t in targets {
        let from = run_dir.join(&t.name).join("serial.log");
        if from.is_file() {
            let rel = format!("{DIR}/{}/serial.log", safe(&t.name));
            write_copy(&from, &out.join(&rel))?;
            serials.insert(t.name.clone(), rel);
        }
    }
    let mut links = BTreeMap::new();
    for r in results {
        let key = format!("{}/{}", r.suite, r.name);
        let base = format!("{DIR}/{}/{}", safe(&r.suite), safe(&r.name));
        let mut ssh = String::new();
        let mut console = String::new();
        for a in &r.attempts {
            let head = format!(
                "=== earlier attempt on {}: {} ===\n",
                a.target,
                a.outcome.label()
            );
            if !a.transcript.is_empty() {
                ssh.push_str(&head);
                ssh.push_str(&a.transcript);
                ssh.push('\n');
            }
            if !a.console.is_empty() {
                console.push_str(&head);
                console.push_str(&clean(&a.console));
                console.push('\n');
            }
        }
        ssh.push_str(&r.transcript);
        console.push_str(&clean(&r.console));
        let mut mine = Vec::new();
        for (text, suffix, label) in [
            (&ssh, "ssh.txt", "SSH transcript"),
            (&console, "console.txt", "console"),
        ] {
            if !text.trim().is_empty() {
                let rel = format!("{base}.{suffix}");
                write(&out.join(&rel), text.as_bytes())?;
                mine.push(Link {
                    label: label.into(),
                    href: rel,
                });
            }
        }
        if let Some(rel) = serials.get(&r.target) {
            mine.push(Link {
                label: format!("serial log of {}", r.target),
                href: rel.clone(),
            });
        }
        links.insert(key, mine);
    }
    Ok(links)
}

/// A name fit for a file and a relative link: letters, digits, `.`, `_`, `-`; the rest `-`.
fn safe(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    match s.trim_start_matches('.') {
        "" => "-".into(),
        t => t.to_string(),
    }
}

fn write(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
    }
    std::fs::write(path, bytes).infra_ctx(|| format!("cannot write {}", path.display()))
}

fn write_copy(from: &Path, to: &Path) -> Result<()> {
    let bytes = std::fs::read(from).infra_ctx(|| format!("cannot read {}", from.display()))?;
    write(to, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{Attempt, Outcome, TargetStatus};
    use std::time::Duration;

    #[test]
    fn logs_are_copied_and_linked() {
        let run = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(run.path().join("qemux86-64#2")).unwrap();
        std::fs::write(run.path().join("qemux86-64#2/serial.log"), "boot\n").unwrap();
        let r = TestResult {
            suite: "os".into(),
            name: "hostname".into(),
            target: "qemux86-64#2".into(),
            outcome: Outcome::Passed,
            duration: Duration::from_secs(1),
            properties: vec![],
            transcript: "$ hostname\nx\n".into(),
            console: "\x1b[0;32mOK\x1b[0m\r\n".into(),
            attempts: vec![Attempt {
                target: "qemux86-64#1".into(),
                outcome: Outcome::Error("SSH lost".into()),
                duration: Duration::from_secs(1),
                transcript: "$ hostname\n".into(),
                console: String::new(),
            }],
        };
        let targets = [TargetReport {
            name: "qemux86-64#2".into(),
            machine: "qemux86-64".into(),
            status: TargetStatus::Done,
            notes: vec![],
        }];
        let links = copy(out.path(), run.path(), &[r], &targets).unwrap();
        let got: Vec<(&str, &str)> = links["os/hostname"]
            .iter()
            .map(|l| (l.label.as_str(), l.href.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("SSH transcript", "porting-logs/os/hostname.ssh.txt"),
                ("console", "porting-logs/os/hostname.console.txt"),
                (
                    "serial log of qemux86-64#2",
                    "porting-logs/qemux86-64-2/serial.log"
                ),
            ]
        );
        let ssh = std::fs::read_to_string(out.path().join(got[0].1)).unwrap();
        assert_eq!(
            ssh,
            "=== earlier attempt on qemux86-64#1: ERROR ===\n$ hostname\n\n$ hostname\nx\n"
        );
        let console = std::fs::read_to_string(out.path().join(got[1].1)).unwrap();
        assert_eq!(console, "OK\n");
        assert_eq!(
            std::fs::read_to_string(out.path().join(got[2].1)).unwrap(),
            "boot\n"
        );
        assert_eq!(safe(".."), "-");
        assert_eq!(safe("../x"), "-x");
    }
}
