//! Runs short external commands (uhubctl, user power commands) and reports their failure.

use std::process::{Command, Stdio};

use crate::error::{Error, Result};

/// Runs one command to completion: the seam the command-driven drivers are tested through.
pub trait CommandRunner: Send {
    /// Runs `argv` (program first); a non-zero exit is an error carrying its stderr.
    fn run(&mut self, argv: &[String]) -> Result<()>;
}

/// Runs commands as child processes.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessRunner;

impl CommandRunner for ProcessRunner {
    fn run(&mut self, argv: &[String]) -> Result<()> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| Error::input("empty command"))?;
        let out = Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::input(format!("{prog} is not installed")),
                _ => Error::infra(format!("cannot run {prog}: {e}")),
            })?;
        if out.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(Error::infra(format!(
            "`{}` failed ({}){}{}",
            argv.join(" "),
            out.status,
            if last.is_empty() { "" } else { ": " },
            last.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_exit_status_and_last_stderr_line() {
        let argv: Vec<String> = ["sh", "-c", "echo one >&2; echo two >&2; exit 3"]
            .map(String::from)
            .to_vec();
        let err = ProcessRunner.run(&argv).unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert!(err.to_string().ends_with(": two"), "{err}");
        let missing = ProcessRunner
            .run(&["no-such-tool-x".to_string()])
            .unwrap_err();
        assert_eq!(missing.to_string(), "no-such-tool-x is not installed");
        ProcessRunner.run(&["true".to_string()]).unwrap();
    }
}

/// A fake runner for driver tests: records each command instead of running it.
#[cfg(test)]
#[derive(Default)]
pub struct FakeRunner {
    /// Every argv it was asked to run, in order.
    pub calls: Vec<Vec<String>>,
}

#[cfg(test)]
impl CommandRunner for FakeRunner {
    fn run(&mut self, argv: &[String]) -> Result<()> {
        self.calls.push(argv.to_vec());
        Ok(())
    }
}
