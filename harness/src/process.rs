//! Child processes that never outlive the harness.
//!
//! Every long-lived child (QEMU, dnsmasq) is started in its own process group with the kernel's
//! parent-death signal set to SIGKILL, so it dies with the harness even on `kill -9`. Dropping a
//! [`Child`] kills the group and reaps it.
//!
//! The syscalls are `rustix`'s safe ones. One `unsafe` block is left: registering the
//! `pre_exec` hook that runs between fork and exec, which std marks unsafe because such a hook
//! may only make async-signal-safe calls. It makes three raw syscalls and, when the parent is
//! already gone, `_exit`, which has no safe wrapper (std's `exit` runs atexit handlers, which
//! a forked child must not).

use std::process::Command;
use std::sync::Mutex;

use rustix::process::{kill_process_group, Pid, Signal};

/// The process groups of the live children, for [`kill_all`].
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every live child's process group (used when the harness is interrupted).
pub fn kill_all() {
    for pid in LIVE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        if let Some(group) = Pid::from_raw(*pid as i32) {
            let _ = kill_process_group(group, Signal::KILL);
        }
    }
}

use crate::error::{Context, Result};

/// A child process owned by the harness; dropped means killed.
pub struct Child {
    inner: std::process::Child,
    what: String,
}

impl Child {
    /// Starts `cmd`, tied to the life of this process. `what` names it in errors.
    pub fn spawn(cmd: Command, what: &str) -> Result<Child> {
        Child::spawn_with_death_signal(cmd, what, Signal::KILL)
    }

    /// [`Child::spawn`] with another parent-death signal: a wrapper that traps it can clean
    /// up a grandchild that cleared its own (the kernel clears it when a process changes its
    /// credentials, as dnsmasq does).
    pub fn spawn_with_death_signal(mut cmd: Command, what: &str, signal: Signal) -> Result<Child> {
        use rustix::process::{getppid, set_parent_process_death_signal, setpgid};
        use std::os::unix::process::CommandExt;
        // SAFETY: the hook runs in the forked child before exec, where only async-signal-safe
        // calls are allowed: prctl, getppid and setpgid are raw syscalls, `_exit` is
        // async-signal-safe, and an error converts from an errno without allocating.
        unsafe {
            cmd.pre_exec(move || {
                set_parent_process_death_signal(Some(signal))?;
                // The parent may have died between fork and prctl.
                if getppid() == Some(Pid::INIT) {
                    libc::_exit(1);
                }
                setpgid(None, None)?;
                Ok(())
            });
        }
        let inner = cmd.spawn().map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                crate::Error::input(format!(
                    "cannot start {what}: {:?} not found",
                    cmd.get_program()
                ))
            } else {
                crate::Error::infra(format!("cannot start {what}: {e}"))
            }
        })?;
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(inner.id());
        Ok(Child {
            inner,
            what: what.to_string(),
        })
    }

    /// The process id.
    pub fn id(&self) -> u32 {
        self.inner.id()
    }

    /// Takes the child's stdout pipe, if it was piped.
    pub fn take_stdout(&mut self) -> Option<std::process::ChildStdout> {
        self.inner.stdout.take()
    }

    /// Takes the child's stderr pipe, if it was piped.
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.inner.stderr.take()
    }

    /// Waits for the child to exit.
    pub fn wait(&mut self) -> Result<std::process::ExitStatus> {
        self.inner
            .wait()
            .infra_ctx(|| format!("cannot wait for {}", self.what))
    }

    /// Waits up to `timeout` for the child to exit; `None` if it is still running.
    pub fn wait_timeout(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<Option<std::process::ExitStatus>> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.try_wait()? {
                return Ok(Some(status));
            }
            if std::time::Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Whether the process has exited, with its status if so.
    pub fn try_wait(&mut self) -> Result<Option<std::process::ExitStatus>> {
        self.inner
            .try_wait()
            .infra_ctx(|| format!("cannot wait for {}", self.what))
    }

    /// Kills the process group and reaps the child.
    pub fn kill(&mut self) {
        if let Ok(None) = self.inner.try_wait() {
            // The group id is the child's pid (setpgid above).
            let _ = kill_process_group(Pid::from_child(&self.inner), Signal::KILL);
        }
        let _ = self.inner.wait();
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&p| p != self.inner.id());
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::process::{getpgid, waitpid, WaitOptions};

    #[test]
    fn a_child_leads_its_own_group_and_gets_its_death_signal_when_its_parent_goes() {
        for signal in [Signal::KILL, Signal::TERM] {
            // The parent-death signal follows the thread that started the child.
            let pid = std::thread::spawn(move || {
                let mut cmd = Command::new("sleep");
                cmd.arg("30");
                let child = Child::spawn_with_death_signal(cmd, "sleep", signal).unwrap();
                let pid = Pid::from_raw(child.id() as i32).unwrap();
                assert_eq!(getpgid(Some(pid)).unwrap(), pid);
                LIVE.lock().unwrap().retain(|&p| p != child.id());
                std::mem::forget(child);
                pid
            })
            .join()
            .unwrap();
            let (_, status) = waitpid(Some(pid), WaitOptions::empty()).unwrap().unwrap();
            assert_eq!(status.terminating_signal(), Some(signal.as_raw()));
        }
    }
}
