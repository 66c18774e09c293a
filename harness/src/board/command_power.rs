//! Power through shell commands the rig gives for on and off (a smart plug's CLI, a PDU).
//! Each runs within [`TIMEOUT`] and is killed, with its process group, by Ctrl-C/SIGTERM.

use std::time::Duration;

use crate::device::Power;
use crate::error::Result;

use super::run::{CommandRunner, ProcessRunner};

/// The longest one power command may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `sh -c ON` or `sh -c OFF`.
pub struct CommandPower<R = ProcessRunner> {
    on: String,
    off: String,
    runner: R,
}

impl CommandPower {
    /// Power switched by the shell commands `on` and `off`.
    pub fn new(on: &str, off: &str) -> Self {
        CommandPower::with_runner(on, off, ProcessRunner::new(TIMEOUT))
    }
}

impl<R: CommandRunner> CommandPower<R> {
    /// As [`CommandPower::new`], running commands through `runner`.
    pub fn with_runner(on: &str, off: &str, runner: R) -> Self {
        CommandPower {
            on: on.to_string(),
            off: off.to_string(),
            runner,
        }
    }

    fn shell(cmd: &str) -> Vec<String> {
        vec!["sh".into(), "-c".into(), cmd.into()]
    }
}

impl<R: CommandRunner> Power for CommandPower<R> {
    fn on(&mut self) -> Result<()> {
        self.runner.run(&Self::shell(&self.on)).map(|_| ())
    }

    fn off(&mut self) -> Result<()> {
        self.runner.run(&Self::shell(&self.off)).map(|_| ())
    }

    fn describe(&self) -> String {
        format!("power command `{}` / `{}`", self.on, self.off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    use crate::board::run::FakeRunner;

    #[test]
    fn command_power_fake_runs_the_given_commands() {
        let mut p = CommandPower::with_runner("plug 3 on", "plug 3 off", FakeRunner::default());
        p.on().unwrap();
        p.off().unwrap();
        assert_eq!(
            p.runner.calls,
            vec![
                vec!["sh".to_string(), "-c".into(), "plug 3 on".into()],
                vec!["sh".to_string(), "-c".into(), "plug 3 off".into()],
            ]
        );
    }

    #[test]
    fn a_failing_command_is_an_infra_error() {
        let mut p = CommandPower::new("exit 0", "echo relay stuck >&2; exit 1");
        p.on().unwrap();
        let err = p.off().unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert!(err.to_string().contains("relay stuck"), "{err}");
    }

    #[test]
    fn a_hanging_command_is_killed_at_its_time_limit() {
        let runner = ProcessRunner::with_cancel(Duration::from_millis(300), || false);
        let mut p = CommandPower::with_runner("sleep 30", "true", runner);
        let t = std::time::Instant::now();
        let err = p.on().unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10));
        assert!(matches!(err, Error::Infra(_)));
        assert_eq!(
            err.to_string(),
            "`sh -c sleep 30` did not finish within 0.3 s; killed it"
        );
    }

    #[test]
    fn the_default_runner_has_a_time_limit() {
        let p = CommandPower::new("true", "true");
        assert_eq!(p.runner.timeout, TIMEOUT);
    }
}
