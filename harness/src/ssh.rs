//! SSH to the device as root on port 22222: exec with a timeout, copy files, and wait for the
//! daemon's banner across reboots.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result};

/// Where and how to log in.
#[derive(Debug, Clone)]
pub struct SshTarget {
    /// The device's SSH address (a forwarded loopback port under QEMU).
    pub addr: SocketAddr,
    /// The run's private key; `None` logs in without a key (development images only).
    pub key: Option<PathBuf>,
}

/// What a command did.
#[derive(Debug, Clone)]
pub struct ExecOutput {
    /// Its exit status (-1 when it was killed by a signal).
    pub status: i32,
    /// Everything it wrote to stdout.
    pub stdout: String,
    /// Everything it wrote to stderr.
    pub stderr: String,
}

/// An authenticated SSH session.
pub struct Ssh {
    session: ssh2::Session,
}

/// Why [`Ssh::exec`] failed, and whether the command may have run: a command is sent again
/// only when it provably never started (at most once: `hostapp-update` must not run twice).
#[derive(Debug)]
pub struct ExecFailure {
    /// `false` when the command was never sent (no channel could be opened).
    pub started: bool,
    /// What went wrong.
    pub error: Error,
}

impl From<ExecFailure> for Error {
    fn from(f: ExecFailure) -> Error {
        f.error
    }
}

/// How often a blocking SSH operation looks up from its socket to check for Ctrl-C/SIGTERM,
/// a dead device and its deadline.
const SLICE: Duration = Duration::from_millis(100);

/// libssh2's "would block" (`LIBSSH2_ERROR_EAGAIN`).
const EAGAIN: i32 = -37;

/// Runs a non-blocking libssh2 call `op` until it no longer would block, bounded by
/// `deadline` and observing Ctrl-C/SIGTERM; `what` names it in the error.
fn until_done<T>(
    deadline: Instant,
    what: &str,
    mut op: impl FnMut() -> std::result::Result<T, ssh2::Error>,
) -> Result<T> {
    loop {
        match op() {
            Err(e) if e.code() == ssh2::ErrorCode::Session(EAGAIN) => {}
            other => return other.map_err(|e| Error::infra(format!("{what}: {e}"))),
        }
        if crate::interrupt::requested() {
            return Err(Error::Interrupted);
        }
        if Instant::now() >= deadline {
            return Err(Error::infra(format!("{what}: no answer in time")));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits until the SSH daemon at `addr` sends its `SSH-2.0` banner; returns the connection
/// it came on, the banner still unread, for [`Ssh::login`]: a socket-activated sshd on a slow
/// guest then starts once per boot, not once for the banner and again for the login.
///
/// A TCP connect alone proves nothing under QEMU: the forwarded port accepts before the guest
/// is up. Gives up after `timeout`, saying what it waited for.
pub fn wait_for_banner(addr: SocketAddr, timeout: Duration) -> Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        // Wait long for the banner once connected: a socket-activated sshd on a slow guest
        // takes seconds to start, and every abandoned connection costs it another sshd.
        // A port nobody listens on fails at once (refused, or closed by QEMU's forwarder).
        let left = deadline.saturating_duration_since(Instant::now());
        match peek_banner(
            addr,
            left.clamp(Duration::from_secs(1), Duration::from_secs(30)),
        ) {
            Ok(stream) => return Ok(stream),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    Err(Error::infra(format!(
        "gave up after {}s waiting for the SSH-2.0 banner on {addr} ({last})",
        timeout.as_secs()
    )))
}

/// Connects and waits for the banner's first bytes without consuming them.
fn peek_banner(addr: SocketAddr, timeout: Duration) -> std::result::Result<TcpStream, String> {
    const BANNER: &[u8] = b"SSH-2.0";
    let connect = timeout.min(Duration::from_secs(5));
    let stream = TcpStream::connect_timeout(&addr, connect).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + timeout;
    let no_banner = || format!("connected, but no banner within {}s", timeout.as_secs());
    let mut buf = [0u8; 16];
    loop {
        let n = match stream.peek(&mut buf) {
            Ok(0) => return Err("connection closed before the banner".into()),
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(no_banner())
            }
            Err(e) => return Err(e.to_string()),
        };
        let got = &buf[..n];
        if got.starts_with(BANNER) {
            stream.set_read_timeout(None).map_err(|e| e.to_string())?;
            return Ok(stream);
        }
        if !BANNER.starts_with(got) {
            return Err(format!(
                "not an SSH banner: {:?}",
                String::from_utf8_lossy(got)
            ));
        }
        // Part of the banner: peek answers at once until more arrives.
        if Instant::now() >= deadline {
            return Err(no_banner());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

impl Ssh {
    /// The host key the server showed, as bytes.
    pub fn host_key(&self) -> Option<Vec<u8>> {
        self.session.host_key().map(|(k, _)| k.to_vec())
    }

    /// The SHA-256 fingerprint of `key`, as OpenSSH prints it (`SHA256:...`).
    pub fn fingerprint(key: &[u8]) -> String {
        use base64::Engine as _;
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(key);
        format!(
            "SHA256:{}",
            base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest)
        )
    }

    /// Connects and logs in as root, within `timeout`.
    ///
    /// With a key, public-key authentication is used; without one, the login that a
    /// development image allows (no password). A refused login is [`Error::Failed`], since a
    /// device that refuses the run's key is misbehaving.
    /// The handshake and login are non-blocking underneath, so Ctrl-C/SIGTERM ends them
    /// within a fraction of a second.
    pub fn connect(target: &SshTarget, timeout: Duration) -> Result<Ssh> {
        let addr = target.addr;
        let tcp = TcpStream::connect_timeout(&addr, timeout.min(Duration::from_secs(10)))
            .infra_ctx(|| format!("cannot connect to SSH on {addr}"))?;
        Self::login(tcp, target, timeout)
    }

    /// [`Ssh::connect`] over `tcp`, a connection to `target` made already (by
    /// [`wait_for_banner`]).
    pub fn login(tcp: TcpStream, target: &SshTarget, timeout: Duration) -> Result<Ssh> {
        let addr = target.addr;
        let deadline = Instant::now() + timeout;
        let mut session =
            ssh2::Session::new().infra_ctx(|| "cannot start an SSH session".into())?;
        session.set_tcp_stream(tcp);
        session.set_blocking(false);
        until_done(deadline, &format!("SSH handshake with {addr}"), || {
            session.handshake()
        })?;
        // A refused login is the device's answer, not the network's.
        let refused = |what: &'static str| {
            move |e: Error| match e {
                Error::Infra(m) if !m.ends_with("no answer in time") => {
                    Error::failed(format!("root@{addr} refused {what}: {m}"))
                }
                other => other,
            }
        };
        match &target.key {
            Some(key) => {
                until_done(deadline, "public key login", || {
                    session.userauth_pubkey_file("root", None, key, None)
                })
                .map_err(refused("the run's key"))?;
            }
            None => {
                // "none" authentication succeeds when root has an empty password.
                let _ = until_done(deadline, "login", || session.auth_methods("root"));
                if !session.authenticated() {
                    until_done(deadline, "password login", || {
                        session.userauth_password("root", "")
                    })
                    .map_err(refused("a login without a key"))?;
                }
            }
        }
        session.set_blocking(true);
        if !session.authenticated() {
            return Err(Error::failed(format!("root@{addr}: not authenticated")));
        }
        Ok(Ssh { session })
    }

    /// Runs `command`, feeding it `stdin`, and collects its output; bounded by `timeout`.
    /// `watch` is called every [`SLICE`] or so while the command runs: an error from it (Ctrl-C,
    /// the device gone) ends the wait at once.
    pub fn exec(
        &self,
        command: &str,
        stdin: &[u8],
        timeout: Duration,
        watch: &mut dyn FnMut() -> Result<()>,
    ) -> std::result::Result<ExecOutput, ExecFailure> {
        let started = |error| ExecFailure {
            started: true,
            error,
        };
        let deadline = Instant::now() + timeout;
        let s = &self.session;
        s.set_blocking(true);
        s.set_timeout(timeout.min(Duration::from_secs(10)).as_millis().max(1) as u32);
        let mut channel = s.channel_session().map_err(|e| ExecFailure {
            started: false,
            error: Error::infra(format!("cannot open an SSH channel: {e}")),
        })?;
        channel.exec(command).map_err(|e| {
            started(Error::infra(format!(
                "cannot run `{command}` over SSH: {e}"
            )))
        })?;
        if !stdin.is_empty() {
            channel.write_all(stdin).map_err(|e| {
                started(Error::infra(format!(
                    "cannot send input to `{command}`: {e}"
                )))
            })?;
        }
        channel.send_eof().map_err(|e| {
            started(Error::infra(format!(
                "cannot close the command's input: {e}"
            )))
        })?;

        // Read both streams without blocking, so a chatty stderr cannot stall stdout.
        s.set_blocking(false);
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let mut chunk = [0u8; 16384];
        let mut looked = Instant::now();
        let result = 'read: loop {
            let mut progressed = false;
            for (stream_id, sink) in [(0, &mut out), (1, &mut err)] {
                match channel.stream(stream_id).read(&mut chunk) {
                    Ok(0) => {}
                    Ok(n) => {
                        sink.extend_from_slice(&chunk[..n]);
                        progressed = true;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    Err(e) => {
                        break 'read Err(Error::infra(format!(
                            "SSH read failed during `{command}`: {e}"
                        )))
                    }
                }
            }
            if channel.eof() && !progressed {
                break Ok(());
            }
            if Instant::now() >= deadline {
                break Err(Error::failed(format!(
                    "`{command}` did not finish within {}s",
                    timeout.as_secs()
                )));
            }
            if looked.elapsed() >= SLICE {
                looked = Instant::now();
                if let Err(e) = watch() {
                    break Err(e);
                }
            }
            if !progressed {
                std::thread::sleep(Duration::from_millis(5));
            }
        };
        s.set_blocking(true);
        if let Err(e) = result {
            // The session may be dead (the device gone, Ctrl-C): closing the channel must not
            // wait on it.
            s.set_timeout(200);
            drop(channel);
            return Err(started(e));
        }
        s.set_timeout(5000);
        let _ = channel.wait_close();
        let signalled = channel
            .exit_signal()
            .ok()
            .and_then(|sig| sig.exit_signal)
            .is_some();
        let status = if signalled {
            -1
        } else {
            channel.exit_status().unwrap_or(-1)
        };
        Ok(ExecOutput {
            status,
            stdout: String::from_utf8_lossy(&out).into_owned(),
            stderr: String::from_utf8_lossy(&err).into_owned(),
        })
    }
}

impl Drop for Ssh {
    /// Closing a session sends a goodbye; to a device that is gone it must not wait long.
    fn drop(&mut self) {
        self.session.set_blocking(true);
        self.session.set_timeout(500);
    }
}

/// Quotes `s` for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_single_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn banner_wait_rejects_a_silent_port_and_says_so() {
        // A listener that accepts but never speaks, as QEMU's forwarder does before boot.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let _held: Vec<_> = listener.incoming().take(3).collect();
        });
        let err = wait_for_banner(addr, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("SSH-2.0 banner") && err.contains(&addr.to_string()),
            "{err}"
        );
    }

    #[test]
    fn banner_wait_accepts_an_ssh_server() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n");
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        wait_for_banner(addr, Duration::from_secs(5)).unwrap();
    }

    #[test]
    fn banner_wait_leaves_a_banner_sent_in_pieces_unread_for_the_login() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let _ = s.write_all(b"SS");
                std::thread::sleep(Duration::from_millis(200));
                let _ = s.write_all(b"H-2.0-OpenSSH_9.2\r\n");
                std::thread::sleep(Duration::from_millis(500));
            }
        });
        let mut stream = wait_for_banner(addr, Duration::from_secs(5)).unwrap();
        let mut line = [0u8; 21];
        stream.read_exact(&mut line).unwrap();
        assert_eq!(&line, b"SSH-2.0-OpenSSH_9.2\r\n");
    }

    #[test]
    fn banner_wait_names_what_answered_instead_of_ssh() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for mut s in listener.incoming().take(8).flatten() {
                let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n");
            }
        });
        let err = wait_for_banner(addr, Duration::from_secs(1))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an SSH banner: \"HTTP/1.1"), "{err}");
    }
}
