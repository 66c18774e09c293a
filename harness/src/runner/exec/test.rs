//! One test on one device: a fresh device with the suite's configuration, the test's steps
//! in order within its timeout, and what the device's `config.json` says afterwards.

use std::time::{Duration, Instant};

use super::dut::Dut;
use crate::config::suite::{Capability, Suite, TestFile};
use crate::error::{Error, Result};
use crate::image::configure::Change;
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

/// A fresh image with the suite's configuration and the run's key, booted to SSH.
pub fn fresh_boot(
    dut: &mut Dut,
    suite: &Suite,
    public_key: &str,
    timeout: Duration,
) -> Result<Duration> {
    dut.disconnect();
    dut.forget_host_key();
    dut.target.power().off()?;
    dut.target.fresh_image()?;
    let mut changes = super::steps::changes(&suite.file.config, &[], &suite.file.files);
    changes.push(Change::Set(
        "os.sshKeys".into(),
        serde_json::json!([public_key]).to_string(),
    ));
    dut.target.configure_image(&changes)?;
    let took = dut.boot(timeout)?;
    for step in &suite.setup {
        super::steps::run(dut, step, &suite.dir, Duration::from_secs(300))?;
    }
    Ok(took)
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

/// Runs one test's steps in order, bounded by its timeout.
pub fn run_test(dut: &mut Dut, suite: &Suite, test: &TestFile) -> TestEnd {
    let deadline = Instant::now() + Duration::from_secs(test.timeout);
    for (i, step) in test.steps.iter().enumerate() {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return TestEnd::Outcome(Outcome::Failed(format!(
                "the test ran past its timeout of {}s",
                test.timeout
            )));
        }
        match super::steps::run(dut, step, &suite.dir, budget) {
            Ok(()) => {}
            Err(Error::Input(m)) => return TestEnd::BadInput(format!("step {}: {m}", i + 1)),
            Err(e) => {
                return TestEnd::Outcome(match e {
                    Error::Failed(m) => Outcome::Failed(format!("step {}: {m}", i + 1)),
                    Error::Skip(why) => Outcome::Skipped(why),
                    Error::Interrupted => Outcome::Error("interrupted".into()),
                    e => Outcome::Error(format!("step {}: {e}", i + 1)),
                })
            }
        }
    }
    TestEnd::Outcome(Outcome::Passed)
}
