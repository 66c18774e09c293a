//! The device as the steps see it: a target plus a cached SSH session, the run's key, the
//! current test's transcript, and the few operations every step kind builds on.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::image::configure::Change;
use crate::ssh::{self, ExecOutput, Ssh, SshTarget};
use crate::target::Target;

/// Kernel panics on the console during one wait for SSH that mean a boot loop. A rollback
/// legitimately panics until the bootloader falls back (the new OS cannot start): once under
/// GRUB, which falls back when `bootcount` reaches 2, and three times under u-boot, which
/// falls back above 3 boots (balenaOS contracts, section 8). A fourth panic means no fallback.
pub const PANIC_LIMIT: usize = 4;

/// What a refused password-less login of a test with `ssh_key: false` says; `why` is what
/// the SSH client saw.
pub fn refused_keyless(why: &str) -> String {
    format!("the device refused a password-less root login (a device without os.sshKeys in development mode must allow it): {why}")
}

/// A device under test during a run.
pub struct Dut<'t> {
    /// The device.
    pub target: &'t mut dyn Target,
    /// The private key the device lets in: the run's, or that of the snapshot the device was
    /// restored from (see [`Dut::use_snapshot`]).
    pub key: PathBuf,
    /// The run's private key (its public half is in `os.sshKeys` of a device booted for real).
    run_key: PathBuf,
    /// The snapshot the device was restored from, held while the device runs on it.
    snapshot: Option<crate::runner::snapshots::Hold>,
    /// Values substituted for `{{name}}` in step strings.
    pub vars: BTreeMap<String, String>,
    /// The run's folder (for files fetched from the device).
    pub run_dir: PathBuf,
    /// The registry the engine checks pull from, once one needed it.
    pub engine: Option<super::fixture::Fixture>,
    /// Every login is password-less (root, no key): the device was booted without
    /// `os.sshKeys` for a test with `ssh_key: false`.
    pub keyless: bool,
    ssh: Option<Ssh>,
    /// The SSH host key this device showed first since its last fresh image: a different one
    /// later is another host answering at its address.
    host_key: Option<Vec<u8>>,
    transcript: String,
    properties: Vec<(String, String)>,
}

impl<'t> Dut<'t> {
    /// Wraps `target` for a run.
    pub fn new(target: &'t mut dyn Target, key: PathBuf, run_dir: PathBuf) -> Dut<'t> {
        Dut {
            target,
            run_key: key.clone(),
            snapshot: None,
            key,
            vars: BTreeMap::new(),
            run_dir,
            engine: None,
            keyless: false,
            ssh: None,
            host_key: None,
            transcript: String::new(),
            properties: Vec::new(),
        }
    }

    /// Takes the transcript and figures gathered since the last call (one test's worth).
    pub fn take_test_record(&mut self) -> (String, Vec<(String, String)>) {
        (
            std::mem::take(&mut self.transcript),
            std::mem::take(&mut self.properties),
        )
    }

    /// Records a figure for the report.
    pub fn record(&mut self, key: &str, value: impl ToString) {
        self.properties.push((key.to_string(), value.to_string()));
    }

    /// Appends a line to the transcript.
    pub fn note(&mut self, line: &str) {
        let _ = writeln!(self.transcript, "# {line}");
    }

    /// The device runs on the snapshot `hold` (restored from it): its key lets it in, and it
    /// is held until the next fresh device.
    pub fn use_snapshot(&mut self, hold: crate::runner::snapshots::Hold) {
        self.key = hold.private_key();
        self.keyless = false;
        self.snapshot = Some(hold);
    }

    /// The device no longer runs on a snapshot (it is off, for a fresh image): the run's key
    /// again, and the snapshot is let go.
    pub fn leave_snapshot(&mut self) {
        self.key = self.run_key.clone();
        self.snapshot = None;
    }

    /// Replaces `{{name}}` with the run's values; `{{host_time}}` is the host's clock now,
    /// in seconds since the epoch.
    pub fn expand(&self, s: &str) -> String {
        let mut vars = self.vars.clone();
        if s.contains("{{host_time}}") {
            vars.insert("host_time".into(), crate::clock::now_unix().to_string());
        }
        let mut out = s.to_string();
        for (k, v) in &vars {
            out = out.replace(&format!("{{{{{k}}}}}"), v);
        }
        out
    }

    fn ssh_target(&mut self, with_key: bool, timeout: Duration) -> Result<SshTarget> {
        Ok(SshTarget {
            addr: self.target.ssh_addr(timeout)?,
            key: with_key.then(|| self.key.clone()),
        })
    }

    /// Waits for the SSH banner and logs in with the run's key (password-less when
    /// [`Dut::keyless`]), within `timeout`.
    ///
    /// A device that is still booting may answer and then stall or refuse the login (its
    /// keys not installed yet), so logins are retried until the deadline; the last error is
    /// what a timeout reports.
    pub fn connect(&mut self, timeout: Duration) -> Result<()> {
        let keyless = self.keyless;
        self.connect_with(!keyless, timeout).map_err(|e| match e {
            Error::Failed(m) if keyless => Error::Failed(refused_keyless(&m)),
            other => other,
        })
    }

    /// Logs in at once, without waiting for the SSH banner first: for a device that is up
    /// already (restored from a snapshot), where a socket-activated sshd would otherwise
    /// start twice, once for the banner and once for the login.
    pub fn login_at_once(&mut self, timeout: Duration) -> Result<()> {
        let target = self.ssh_target(!self.keyless, timeout)?;
        let session = Ssh::connect(&target, timeout)?;
        self.pin_host_key(&session, target.addr)?;
        self.ssh = Some(session);
        Ok(())
    }

    fn connect_with(&mut self, with_key: bool, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let target = self.ssh_target(with_key, timeout)?;
        // Wait in slices, watching the console: a device that keeps panicking will not
        // come up, and saying so at once beats waiting out the timeout.
        let watch_from = self.target.console().position();
        loop {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            self.target.alive()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let slice = left.min(Duration::from_secs(10));
            let attempt = ssh::wait_for_banner(target.addr, slice)
                .and_then(|tcp| Ssh::login(tcp, &target, left.max(Duration::from_secs(10))));
            match attempt {
                Ok(session) => {
                    self.pin_host_key(&session, target.addr)?;
                    self.ssh = Some(session);
                    return Ok(());
                }
                Err(e) if left <= slice => {
                    return Err(match e {
                        Error::Failed(m) => Error::Failed(m),
                        other => Error::infra(format!(
                            "gave up after {}s waiting to log in over SSH on {} ({other})",
                            timeout.as_secs(),
                            target.addr
                        )),
                    })
                }
                Err(_) => {
                    self.check_panics(watch_from)?;
                    std::thread::sleep(Duration::from_millis(500));
                }
            }
        }
    }

    /// Fails when the console showed [`PANIC_LIMIT`] kernel panics since `from`: the device
    /// is in a boot loop.
    fn check_panics(&self, from: usize) -> Result<()> {
        let console = self.target.console();
        let text = console.text_between(from, console.position());
        let panics: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("Kernel panic"))
            .collect();
        if panics.len() >= PANIC_LIMIT {
            return Err(Error::failed(format!(
                "the device panicked {} times while booting, in a loop: {}",
                panics.len(),
                panics[0].trim()
            )));
        }
        Ok(())
    }

    /// Pins the first host key the device shows; a different key later is an infrastructure
    /// error (another host answers at the device's address, e.g. over mDNS).
    fn pin_host_key(&mut self, session: &Ssh, addr: std::net::SocketAddr) -> Result<()> {
        let Some(key) = session.host_key() else {
            return Ok(());
        };
        match &self.host_key {
            None => {
                self.host_key = Some(key);
                Ok(())
            }
            Some(pinned) if *pinned == key => Ok(()),
            Some(pinned) => Err(Error::infra(format!(
                "{addr} showed SSH host key {} but this device showed {} since its fresh image: another host answers there",
                Ssh::fingerprint(&key),
                Ssh::fingerprint(pinned)
            ))),
        }
    }

    /// Forgets the pinned host key: the next device is a fresh image with keys of its own.
    pub fn forget_host_key(&mut self) {
        self.host_key = None;
    }

    /// Drops the SSH session (the device is going down).
    pub fn disconnect(&mut self) {
        self.ssh = None;
    }

    /// Logs in once, without the run's key, to see whether the device allows it.
    pub fn try_login_without_key(&mut self, timeout: Duration) -> Result<Ssh> {
        let target = self.ssh_target(false, timeout)?;
        let session = Ssh::connect(&target, timeout)?;
        self.pin_host_key(&session, target.addr)?;
        Ok(session)
    }

    /// Runs `command` over SSH and adds it to the transcript. A session found dead before the
    /// command was sent (the device rebooted) is replaced once; a command that may have started
    /// is never sent again: the step fails with what is known. Ctrl-C/SIGTERM and a device
    /// that dies (QEMU exits, the UART goes) end the wait at once.
    pub fn exec(&mut self, command: &str, timeout: Duration) -> Result<ExecOutput> {
        self.exec_with_input(command, b"", timeout)
    }

    /// [`Dut::exec`] with bytes on the command's stdin.
    pub fn exec_with_input(
        &mut self,
        command: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.alive()?;
        if self.ssh.is_none() {
            self.connect(timeout)?;
        }
        let out = match self.exec_once(command, stdin, timeout) {
            Err(f) if !f.started && matches!(f.error, Error::Infra(_)) => {
                // The session died before the command went out: one fresh connection.
                self.connect(timeout)?;
                self.exec_once(command, stdin, timeout)
            }
            other => other,
        };
        let out = out.map_err(|f| {
            let _ = writeln!(self.transcript, "$ {command}");
            let _ = writeln!(self.transcript, "[not finished: {}]", f.error);
            match f.error {
                Error::Infra(m) if f.started => Error::Infra(format!(
                    "{m} (the command had been sent, so it was not sent again)"
                )),
                other => other,
            }
        })?;
        let _ = writeln!(self.transcript, "$ {command}");
        self.transcript.push_str(&out.stdout);
        if !out.stderr.is_empty() {
            let _ = writeln!(self.transcript, "[stderr]\n{}", out.stderr.trim_end());
        }
        let _ = writeln!(self.transcript, "[exit {}]", out.status);
        Ok(out)
    }

    fn exec_once(
        &mut self,
        command: &str,
        stdin: &[u8],
        timeout: Duration,
    ) -> std::result::Result<ExecOutput, ssh::ExecFailure> {
        let ssh = self.ssh.as_ref().expect("connected before");
        let target = &mut *self.target;
        ssh.exec(command, stdin, timeout, &mut || {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            target.alive()
        })
    }

    /// Fails at once, as an infrastructure error with the console's last lines, when the
    /// device is gone (QEMU exited, the serial port vanished).
    pub fn alive(&mut self) -> Result<()> {
        self.target.alive()
    }

    /// The device's boot id (changes with every boot).
    pub fn boot_id(&mut self, timeout: Duration) -> Result<String> {
        Ok(self
            .exec("cat /proc/sys/kernel/random/boot_id", timeout)?
            .stdout
            .trim()
            .to_string())
    }

    /// Waits until the device answers SSH with a boot id other than `old`.
    pub fn wait_for_new_boot(&mut self, old: &str, timeout: Duration) -> Result<Duration> {
        self.wait_for_boot_id_change(old, timeout, false)
    }

    /// [`Self::wait_for_new_boot`]; with `repin`, any host key is taken (and pinned) until a
    /// new boot answers: the device is expected to come back with a new key.
    fn wait_for_boot_id_change(
        &mut self,
        old: &str,
        timeout: Duration,
        repin: bool,
    ) -> Result<Duration> {
        let start = Instant::now();
        let deadline = start + timeout;
        self.disconnect();
        loop {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::infra(format!(
                    "gave up after {}s waiting for the device to come back with a new boot id over SSH",
                    timeout.as_secs()
                )));
            }
            if repin {
                self.forget_host_key();
            }
            let attempt = self
                .connect(left)
                .and_then(|_| self.boot_id(left.min(Duration::from_secs(20))));
            match attempt {
                Ok(id) if id != old => return Ok(start.elapsed()),
                Ok(_) => {
                    self.disconnect();
                    std::thread::sleep(Duration::from_secs(1));
                }
                Err(e @ (Error::Failed(_) | Error::Interrupted)) => return Err(e),
                Err(_) => std::thread::sleep(Duration::from_secs(1)),
            }
        }
    }

    /// Powers the device on and waits for SSH; returns how long it took.
    pub fn boot(&mut self, timeout: Duration) -> Result<Duration> {
        let start = Instant::now();
        self.disconnect();
        self.target.power().on()?;
        self.connect(timeout).map_err(|e| match e {
            Error::Infra(m) => Error::Infra(format!("the device did not boot: {m}")),
            other => other,
        })?;
        Ok(start.elapsed())
    }

    /// Reboots from the device's own shell and waits for it to come back; with
    /// `new_host_key`, the host key it comes back with is pinned anew.
    pub fn reboot(&mut self, timeout: Duration, new_host_key: bool) -> Result<Duration> {
        let old = self.boot_id(Duration::from_secs(30))?;
        // Detach the reboot so the SSH command returns before the connection drops.
        let _ = self.exec(
            "(sleep 1; reboot) >/dev/null 2>&1 &",
            Duration::from_secs(15),
        );
        self.wait_for_boot_id_change(&old, timeout, new_host_key)
    }

    /// Cuts the power, restores it and waits for SSH.
    pub fn power_cycle(&mut self, timeout: Duration) -> Result<Duration> {
        self.disconnect();
        self.target.power().off()?;
        self.boot(timeout)
    }

    /// Changes the image while the device is off, then boots it.
    pub fn configure_image(&mut self, changes: &[Change], timeout: Duration) -> Result<Duration> {
        self.disconnect();
        self.target.power().off()?;
        self.target.configure_image(changes)?;
        self.boot(timeout)
    }

    /// Changes `/mnt/boot/config.json` (and boot-partition files) on the running device.
    pub fn configure_live(&mut self, changes: &[Change], timeout: Duration) -> Result<()> {
        use crate::image::config_json::ConfigJson;
        let current = self.exec("cat /mnt/boot/config.json", timeout)?;
        if current.status != 0 {
            return Err(Error::failed(format!(
                "cannot read /mnt/boot/config.json on the device: {}",
                current.stderr.trim()
            )));
        }
        let mut config = ConfigJson::parse(current.stdout.as_bytes(), "the device's config.json")?;
        crate::redact::secrets_of_config(&serde_json::Value::Object(config.0.clone()));
        for change in changes {
            match change {
                Change::Set(k, v) => config.set(k, v)?,
                Change::Remove(k) => {
                    config.remove(k);
                }
                Change::ReplaceConfig(c) => config = c.clone(),
                Change::WriteFile(path, bytes) => {
                    let remote = format!("/mnt/boot/{}", path.trim_start_matches('/'));
                    self.write_file(&remote, bytes, timeout)?;
                }
            }
        }
        let bytes = config.to_pretty_bytes();
        self.write_file("/mnt/boot/config.json", &bytes, timeout)
    }

    /// Writes `bytes` to `remote` on the device, atomically.
    pub fn write_file(&mut self, remote: &str, bytes: &[u8], timeout: Duration) -> Result<()> {
        let q = ssh::shell_quote(remote);
        let tmp = ssh::shell_quote(&format!("{remote}.harness-tmp"));
        let cmd =
            format!("mkdir -p \"$(dirname {q})\" && cat > {tmp} && sync && mv {tmp} {q} && sync");
        let out = self.exec_with_input(&cmd, bytes, timeout)?;
        if out.status != 0 {
            return Err(Error::failed(format!(
                "cannot write {remote} on the device: {}",
                out.stderr.trim()
            )));
        }
        Ok(())
    }
}
