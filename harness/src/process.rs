//! Child processes that never outlive the harness.
//!
//! Every long-lived child (QEMU, dnsmasq) is started in its own process group with the kernel's
//! parent-death signal set to SIGKILL, so it dies with the harness even on `kill -9`. Dropping a
//! [`Child`] kills the group and reaps it.

use std::process::Command;
use std::sync::Mutex;

/// The process groups of the live children, for [`kill_all`].
static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());

/// Kills every live child's process group (used when the harness is interrupted).
pub fn kill_all() {
    for pid in LIVE.lock().unwrap_or_else(|e| e.into_inner()).iter() {
        // SAFETY: plain syscall on a group we created.
        unsafe {
            libc::killpg(*pid as libc::pid_t, libc::SIGKILL);
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
        Child::spawn_with_death_signal(cmd, what, libc::SIGKILL)
    }

    /// [`Child::spawn`] with another parent-death signal: a wrapper that traps it can clean
    /// up a grandchild that cleared its own (the kernel clears it when a process changes its
    /// credentials, as dnsmasq does).
    pub fn spawn_with_death_signal(mut cmd: Command, what: &str, signal: i32) -> Result<Child> {
        use std::os::unix::process::CommandExt;
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, signal) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl.
                if libc::getppid() == 1 {
                    libc::_exit(1);
                }
                if libc::setpgid(0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
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
            // SAFETY: plain syscall; the group id is the child's pid (setpgid above).
            unsafe {
                libc::killpg(self.inner.id() as libc::pid_t, libc::SIGKILL);
            }
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
