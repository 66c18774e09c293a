//! Runs short external commands (uhubctl, user power commands): bounded in time, stopped by
//! Ctrl-C/SIGTERM, and their failure reported in one line.

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::process::Child;

/// Runs one command to completion: the seam the command-driven drivers are tested through.
pub trait CommandRunner: Send {
    /// Runs `argv` (program first) and returns its stdout. A non-zero exit (carrying the last
    /// line of stderr), a timeout or an interruption is an error.
    fn run(&mut self, argv: &[String]) -> Result<String>;
}

/// How often a running command is checked for exit, timeout and interruption.
const POLL: Duration = Duration::from_millis(20);
/// How long to wait for a finished command's pipes to drain (a stray grandchild may hold them).
const DRAIN: Duration = Duration::from_secs(1);

/// Runs commands as child processes in their own process group (see [`crate::process`]).
///
/// A command still running after `timeout`, or when a stop is asked for while it runs, has its
/// whole group killed. A command started after the stop (the runner's clean-up power-off)
/// still runs, within its time limit.
#[derive(Clone)]
pub struct ProcessRunner {
    /// The longest a command may run.
    pub timeout: Duration,
    cancel: Arc<dyn Fn() -> bool + Send + Sync>,
}

impl ProcessRunner {
    /// A runner with a time limit that observes [`crate::interrupt::requested`].
    pub fn new(timeout: Duration) -> Self {
        ProcessRunner::with_cancel(timeout, crate::interrupt::requested)
    }

    /// A runner whose stop flag is `cancel` instead of the process-wide one.
    pub fn with_cancel(
        timeout: Duration,
        cancel: impl Fn() -> bool + Send + Sync + 'static,
    ) -> Self {
        ProcessRunner {
            timeout,
            cancel: Arc::new(cancel),
        }
    }
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(pipe: Option<impl Read + Send + 'static>) -> Receiver<Vec<u8>> {
    let (tx, rx) = channel();
    if let Some(mut pipe) = pipe {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(buf);
        });
    }
    rx
}

impl CommandRunner for ProcessRunner {
    fn run(&mut self, argv: &[String]) -> Result<String> {
        let (prog, args) = argv
            .split_first()
            .ok_or_else(|| Error::input("empty command"))?;
        let shown = argv.join(" ");
        let mut cmd = Command::new(prog);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let stopped_before = (self.cancel)();
        let mut child = Child::spawn(cmd, &format!("`{shown}`")).map_err(|e| match e {
            Error::Input(_) => Error::input(format!("{prog} is not installed")),
            other => other,
        })?;
        let (out, err) = (drain(child.take_stdout()), drain(child.take_stderr()));
        let deadline = Instant::now() + self.timeout;
        let status = loop {
            let stopped = !stopped_before && (self.cancel)();
            match child.try_wait()? {
                Some(status) if status.success() || !stopped => break status,
                _ if stopped => {
                    child.kill();
                    tracing::warn!("interrupted while waiting for `{shown}`; killed it");
                    return Err(Error::Interrupted);
                }
                None if Instant::now() >= deadline => {
                    child.kill();
                    return Err(Error::infra(format!(
                        "`{shown}` did not finish within {:.1} s; killed it",
                        self.timeout.as_secs_f64()
                    )));
                }
                _ => std::thread::sleep(POLL),
            }
        };
        let stdout = out.recv_timeout(DRAIN).unwrap_or_default();
        if status.success() {
            return Ok(String::from_utf8_lossy(&stdout).into_owned());
        }
        let stderr = err.recv_timeout(DRAIN).unwrap_or_default();
        let stderr = String::from_utf8_lossy(&stderr);
        let last = stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        Err(Error::infra(format!(
            "`{shown}` failed ({status}){}{}",
            if last.is_empty() { "" } else { ": " },
            last.trim()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(words: &[&str]) -> Vec<String> {
        words.iter().map(|w| w.to_string()).collect()
    }

    fn runner(timeout_ms: u64) -> ProcessRunner {
        ProcessRunner::with_cancel(Duration::from_millis(timeout_ms), || false)
    }

    #[test]
    fn reports_exit_status_and_last_stderr_line() {
        let err = runner(10_000)
            .run(&argv(&["sh", "-c", "echo one >&2; echo two >&2; exit 3"]))
            .unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert!(err.to_string().ends_with(": two"), "{err}");
        let missing = runner(10_000).run(&argv(&["no-such-tool-x"])).unwrap_err();
        assert!(matches!(missing, Error::Input(_)));
        assert_eq!(missing.to_string(), "no-such-tool-x is not installed");
    }

    #[test]
    fn returns_stdout() {
        let out = runner(10_000)
            .run(&argv(&["sh", "-c", "echo Sent power off request"]))
            .unwrap();
        assert_eq!(out, "Sent power off request\n");
    }

    /// Whether process `pid` still exists (zombies included).
    fn alive(pid: i32) -> bool {
        let pid = rustix::process::Pid::from_raw(pid).expect("a pid is not 0");
        rustix::process::test_kill_process(pid).is_ok()
    }

    /// A shell whose background `sleep` (a grandchild) writes its pid to `pidfile`, then waits.
    fn hanging(pidfile: &std::path::Path) -> Vec<String> {
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        argv(&["sh", "-c", &script])
    }

    fn pid_in(pidfile: &std::path::Path) -> i32 {
        std::fs::read_to_string(pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }

    #[test]
    fn a_hanging_command_is_killed_with_its_group_at_its_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let t = Instant::now();
        let err = runner(500).run(&hanging(&pidfile)).unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
        assert!(matches!(err, Error::Infra(_)));
        assert!(
            err.to_string().contains("did not finish within 0.5 s"),
            "{err}"
        );
        assert!(err.to_string().contains("sleep 30 &"), "{err}");
        let pid = pid_in(&pidfile);
        // The grandchild is reaped by init once killed; give that a moment.
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !alive(pid)
        });
        assert!(gone, "the command's process group was left running");
    }

    #[test]
    fn a_stop_asked_for_while_a_command_runs_kills_it() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let start = Instant::now();
        let mut r = ProcessRunner::with_cancel(Duration::from_secs(60), move || {
            start.elapsed() > Duration::from_millis(300)
        });
        let err = r.run(&hanging(&pidfile)).unwrap_err();
        assert!(matches!(err, Error::Interrupted), "{err}");
        assert!(start.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn without_a_stop_the_same_command_runs_to_its_time_limit() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let t = Instant::now();
        let err = runner(800).run(&hanging(&pidfile)).unwrap_err();
        assert!(matches!(err, Error::Infra(_)), "{err}");
        assert!(t.elapsed() >= Duration::from_millis(800));
    }

    #[test]
    fn a_command_started_after_the_stop_still_runs() {
        let mut r = ProcessRunner::with_cancel(Duration::from_secs(10), || true);
        let out = r.run(&argv(&["sh", "-c", "sleep 0.2; echo off"])).unwrap();
        assert_eq!(out, "off\n");
    }
}

/// A fake runner for driver tests: records each command instead of running it, and answers
/// with the queued outputs in turn (empty output once they run out).
#[cfg(test)]
#[derive(Default)]
pub struct FakeRunner {
    /// Every argv it was asked to run, in order.
    pub calls: Vec<Vec<String>>,
    /// What each run returns, in order.
    pub outputs: std::collections::VecDeque<Result<String>>,
}

#[cfg(test)]
impl CommandRunner for FakeRunner {
    fn run(&mut self, argv: &[String]) -> Result<String> {
        self.calls.push(argv.to_vec());
        self.outputs
            .pop_front()
            .unwrap_or_else(|| Ok(String::new()))
    }
}
