//! Power through shell commands the rig gives for on and off (a smart plug's CLI, a PDU).

use crate::device::Power;
use crate::error::Result;

use super::run::{CommandRunner, ProcessRunner};

/// Runs `sh -c ON` or `sh -c OFF`.
pub struct CommandPower<R = ProcessRunner> {
    on: String,
    off: String,
    runner: R,
}

impl CommandPower {
    /// Power switched by the shell commands `on` and `off`.
    pub fn new(on: &str, off: &str) -> Self {
        CommandPower::with_runner(on, off, ProcessRunner)
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
        self.runner.run(&Self::shell(&self.on))
    }

    fn off(&mut self) -> Result<()> {
        self.runner.run(&Self::shell(&self.off))
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
}
