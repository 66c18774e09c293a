//! From the command line and the YAML files to a validated plan: everything is checked
//! before a device is touched, so bad input fails in milliseconds with exit 2.

use std::path::{Path, PathBuf};

use regex::Regex;

use super::builtin;
use crate::config::machine::{self, Machine};
use crate::config::suite::{self, Step, Suite};
use crate::error::{Error, Result};

/// A suite and the names of its tests that the filter selects.
#[derive(Debug, Clone)]
pub struct PlannedSuite {
    /// The suite.
    pub suite: Suite,
    /// Whether each test (in order) is selected by `--filter`.
    pub selected: Vec<bool>,
}

/// What a run will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The machine type.
    pub machine: Machine,
    /// The suites in order.
    pub suites: Vec<PlannedSuite>,
}

/// Loads and checks `machine` and the `suites` (filtered by `filter`, a regex over
/// `suite/test`).
pub fn build(root: &Path, machine: &str, suites: &[String], filter: Option<&str>) -> Result<Plan> {
    let machine = machine::load(root, machine)?;
    let filter = filter
        .map(|f| Regex::new(f).map_err(|e| Error::input(format!("invalid --filter /{f}/: {e}"))))
        .transpose()?;
    if suites.is_empty() {
        return Err(Error::input(
            "no suite given (e.g. `harness run --machine qemux86-64 suite/smoke`)",
        ));
    }
    let mut planned = Vec::new();
    for spec in suites {
        let dir = suite::resolve(root, spec)?;
        let suite = suite::load(&dir)?;
        check_steps(&suite)?;
        let selected = suite
            .tests
            .iter()
            .map(|(name, _)| {
                filter
                    .as_ref()
                    .is_none_or(|f| f.is_match(&format!("{}/{name}", suite.name)))
            })
            .collect();
        planned.push(PlannedSuite { suite, selected });
    }
    Ok(Plan {
        machine,
        suites: planned,
    })
}

/// Rejects what the YAML types cannot: unknown checks, bad regexes, empty copies.
fn check_steps(suite: &Suite) -> Result<()> {
    for (name, test) in &suite.tests {
        let file = suite.dir.join(format!("{name}.yaml"));
        for (i, step) in test.steps.iter().enumerate() {
            let at = || format!("{}: step {}", file.display(), i + 1);
            let patterns: Vec<&String> = match step {
                Step::Ssh(s) | Step::WaitFor(s) => {
                    s.output.iter().chain(s.not_output.iter()).collect()
                }
                Step::Console(c) => c.expect.iter().chain(c.absent.iter()).collect(),
                Step::Check(c) if !builtin::exists(&c.name) => {
                    let known: Vec<&str> = builtin::CHECKS.iter().map(|(n, _)| *n).collect();
                    return Err(Error::input(format!(
                        "{}: unknown check `{}` (known: {})",
                        at(),
                        c.name,
                        known.join(", ")
                    )));
                }
                _ => vec![],
            };
            for p in patterns {
                // `{{var}}` placeholders are filled in at run time; check the rest.
                let probe = p.replace("{{", "").replace("}}", "");
                Regex::new(&probe)
                    .map_err(|e| Error::input(format!("{}: invalid pattern /{p}/: {e}", at())))?;
            }
        }
    }
    Ok(())
}

/// The run's folder: `out`, or `reports/<UTC date-time>-<target>` under the project.
pub fn run_dir(root: &Path, out: Option<&Path>, target: &str) -> PathBuf {
    match out {
        Some(o) => o.to_path_buf(),
        None => root
            .join("reports")
            .join(format!("{}-{target}", utc_stamp())),
    }
}

/// `YYYYMMDD-HHMMSS` in UTC, now.
pub fn utc_stamp() -> String {
    crate::clock::utc(crate::clock::now_unix()).stamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_has_date_and_time() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15);
        assert!(s.starts_with("20"));
    }
}
