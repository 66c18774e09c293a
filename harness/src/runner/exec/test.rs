//! One test on one device: the test's steps in order within its timeout, and what the
//! device's `config.json` says afterwards (its fresh device: [`super::fresh`]).

use std::time::{Duration, Instant};

use super::dut::Dut;
use crate::config::suite::{Capability, Suite, TestFile};
use crate::error::{Error, Result};
use crate::report::Outcome;

/// The device's `config.json`, or `None` when it cannot be read.
pub fn device_config(dut: &mut Dut) -> Option<serde_json::Value> {
    let out = dut
        .exec("cat /mnt/boot/config.json", Duration::from_secs(30))
        .ok()?;
    let config = serde_json::from_str(&out.stdout).ok()?;
    crate::redact::secrets_of_config(&config);
    Some(config)
}

pub fn missing_capability(requires: &[Capability], has: &[Capability]) -> Option<String> {
    requires.iter().find(|c| !has.contains(c)).map(|c| match c {
        Capability::Lan => {
            "needs a LAN shared with the device (the harness makes one when it has CAP_NET_ADMIN)"
                .to_string()
        }
        Capability::Power => "needs a power switch the harness controls".to_string(),
    })
}

/// How a test's steps ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TestEnd {
    /// Its outcome.
    Outcome(Outcome),
    /// A step found the run's input wrong (a file it needs is gone): the run stops, exit 2.
    BadInput(String),
}

/// The file the reference image has and real balenaOS never does.
pub const REFERENCE_MARK: &str = "/usr/lib/balena/reference-image";

/// Why a `reference_only` test is skipped on any other image.
pub const NOT_REFERENCE: &str = "reference-only test: this image does not declare itself the reference image (/usr/lib/balena/reference-image)";

/// The command that asks the device whether it is the reference image.
fn reference_probe() -> String {
    format!("if [ -e {REFERENCE_MARK} ]; then echo reference; else echo other; fi")
}

/// What the device answered to [`reference_probe`]: whether it has [`REFERENCE_MARK`].
fn is_reference(stdout: &str) -> Result<bool> {
    match stdout.trim() {
        "reference" => Ok(true),
        "other" => Ok(false),
        other => Err(Error::infra(format!(
            "cannot tell whether the device has {REFERENCE_MARK}: the shell answered {other:?}"
        ))),
    }
}

/// The outcome of a test whose step `i` (from 0) ended with `e`.
fn ended(i: usize, e: Error) -> TestEnd {
    TestEnd::Outcome(match e {
        Error::Input(m) => return TestEnd::BadInput(format!("step {}: {m}", i + 1)),
        Error::Failed(m) => Outcome::Failed(format!("step {}: {m}", i + 1)),
        Error::Skip(why) => Outcome::Skipped(why),
        Error::Interrupted => Outcome::Error("interrupted".into()),
        e => Outcome::Error(format!("step {}: {e}", i + 1)),
    })
}

/// Runs one test's steps in order, bounded by its timeout. A `reference_only` test first
/// asks the device for [`REFERENCE_MARK`], and is skipped without it.
pub fn run_test(dut: &mut Dut, suite: &Suite, test: &TestFile) -> TestEnd {
    let deadline = Instant::now() + Duration::from_secs(test.timeout);
    if test.reference_only {
        let budget = Duration::from_secs(test.timeout.min(60));
        let answer = dut
            .exec(&reference_probe(), budget)
            .and_then(|out| is_reference(&out.stdout));
        match answer {
            Ok(true) => dut.note(&format!("{REFERENCE_MARK} is there: the reference image")),
            Ok(false) => return TestEnd::Outcome(Outcome::Skipped(NOT_REFERENCE.into())),
            Err(Error::Interrupted) => {
                return TestEnd::Outcome(Outcome::Error("interrupted".into()))
            }
            Err(e) => {
                return TestEnd::Outcome(match e {
                    Error::Failed(m) => Outcome::Failed(m),
                    e => Outcome::Error(format!(
                        "cannot tell whether the image is the reference image: {e}"
                    )),
                })
            }
        }
    }
    for (i, step) in test.steps.iter().enumerate() {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return TestEnd::Outcome(Outcome::Failed(format!(
                "the test ran past its timeout of {}s",
                test.timeout
            )));
        }
        if let Err(e) = super::steps::run(dut, step, &suite.dir, budget) {
            return ended(i, e);
        }
    }
    TestEnd::Outcome(Outcome::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reference_probe_asks_for_the_mark_and_its_answer_is_read_strictly() {
        // The device's shell runs the probe: the host's sh answers alike.
        let out = std::process::Command::new("sh")
            .args(["-c", &reference_probe()])
            .output()
            .unwrap();
        let here = std::path::Path::new(REFERENCE_MARK).exists();
        assert_eq!(
            is_reference(&String::from_utf8_lossy(&out.stdout)).unwrap(),
            here
        );
        assert!(reference_probe().contains("/usr/lib/balena/reference-image"));
        assert!(is_reference("reference\n").unwrap());
        assert!(!is_reference("other\n").unwrap());
        let e = is_reference("sh: syntax error").unwrap_err();
        assert!(matches!(e, Error::Infra(_)), "{e}");
        assert_eq!(
            NOT_REFERENCE,
            "reference-only test: this image does not declare itself the reference image (/usr/lib/balena/reference-image)"
        );
    }
}
