//! The serial console engine: logs every byte as it arrives and lets steps expect patterns,
//! log in, and run commands with their exit status.
//!
//! One engine serves a device for its whole run; transports come and go (QEMU restarts on a
//! power cycle, a UART is reopened) through [`Console::attach`]. Expectations only look at
//! output that arrived after the last match, so a step never matches stale text.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use regex::bytes::Regex;

use crate::device::ConsolePort;
use crate::error::{Context, Error, Result};

/// A device's serial console.
#[derive(Clone)]
pub struct Console {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    arrived: Condvar,
    writer: Mutex<Option<Box<dyn ConsolePort>>>,
    log: Mutex<File>,
    generation: AtomicU64,
    commands: AtomicU64,
}

struct State {
    /// Everything the console printed since the engine started.
    buf: Vec<u8>,
    /// Where the next expectation starts looking.
    cursor: usize,
    /// Why the current transport stopped giving output (QEMU exited, the UART went away),
    /// while the harness still used it; cleared by [`Console::attach`] and [`Console::detach`].
    lost: Option<String>,
}

impl Console {
    /// A console engine that streams everything it reads to `log_path`.
    pub fn new(log_path: &Path) -> Result<Console> {
        let log =
            File::create(log_path).infra_ctx(|| format!("cannot create {}", log_path.display()))?;
        Ok(Console {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    buf: Vec::new(),
                    cursor: 0,
                    lost: None,
                }),
                arrived: Condvar::new(),
                writer: Mutex::new(None),
                log: Mutex::new(log),
                generation: AtomicU64::new(0),
                commands: AtomicU64::new(0),
            }),
        })
    }

    /// Starts reading from `port` (replacing any previous transport).
    pub fn attach(&self, port: Box<dyn ConsolePort>) -> Result<()> {
        let mut reader = port.try_clone_port()?;
        let generation = self.inner.generation.fetch_add(1, Ordering::SeqCst) + 1;
        self.inner.state.lock().unwrap().lost = None;
        *self.inner.writer.lock().unwrap() = Some(port);
        let inner = Arc::clone(&self.inner);
        std::thread::Builder::new()
            .name("console".into())
            .spawn(move || {
                let mut chunk = [0u8; 4096];
                // The log file never holds a secret: bytes that may begin one wait for the rest.
                let mut pending = Vec::new();
                loop {
                    let n = match reader.read(&mut chunk) {
                        Ok(0) => {
                            inner.lose(generation, "the serial console closed".into());
                            break;
                        }
                        Err(e) => {
                            inner.lose(generation, format!("the serial console failed: {e}"));
                            break;
                        }
                        Ok(n) => n,
                    };
                    if inner.generation.load(Ordering::SeqCst) != generation {
                        break;
                    }
                    pending.extend_from_slice(&chunk[..n]);
                    let masked = crate::redact::stream(&mut pending, false);
                    let _ = inner.log.lock().unwrap().write_all(&masked);
                    inner
                        .state
                        .lock()
                        .unwrap()
                        .buf
                        .extend_from_slice(&chunk[..n]);
                    inner.arrived.notify_all();
                }
                let rest = crate::redact::stream(&mut pending, true);
                let _ = inner.log.lock().unwrap().write_all(&rest);
            })
            .infra_ctx(|| "cannot start the console reader".into())?;
        Ok(())
    }

    /// Stops using the current transport (its reader ends when the port closes).
    pub fn detach(&self) {
        self.inner.generation.fetch_add(1, Ordering::SeqCst);
        self.inner.state.lock().unwrap().lost = None;
        *self.inner.writer.lock().unwrap() = None;
    }

    /// Why the transport in use stopped giving output, if it did: the device (QEMU) is gone or
    /// the UART was unplugged.
    pub fn lost(&self) -> Option<String> {
        self.inner.state.lock().unwrap().lost.clone()
    }

    /// The console's last `lines` lines, for an error message.
    pub fn last_lines(&self, lines: usize) -> String {
        let state = self.inner.state.lock().unwrap();
        let text = String::from_utf8_lossy(&state.buf[state.buf.len().saturating_sub(4096)..])
            .into_owned();
        let all: Vec<&str> = text
            .lines()
            .map(str::trim_end)
            .filter(|l| !l.is_empty())
            .collect();
        all[all.len().saturating_sub(lines)..].join(" | ")
    }

    /// How many bytes the console has printed so far; a position for [`Console::text_between`].
    pub fn position(&self) -> usize {
        self.inner.state.lock().unwrap().buf.len()
    }

    /// The console output between two positions, as lossy UTF-8.
    pub fn text_between(&self, from: usize, to: usize) -> String {
        let state = self.inner.state.lock().unwrap();
        let to = to.min(state.buf.len());
        String::from_utf8_lossy(&state.buf[from.min(to)..to]).into_owned()
    }

    /// Forgets unmatched output: the next expectation only sees what arrives from now on.
    pub fn skip_to_end(&self) {
        let mut state = self.inner.state.lock().unwrap();
        state.cursor = state.buf.len();
    }

    /// Sends `text` as typed.
    pub fn send(&self, text: &str) -> Result<()> {
        let mut writer = self.inner.writer.lock().unwrap();
        let port = writer
            .as_mut()
            .ok_or_else(|| Error::infra("the serial console is not connected (device off?)"))?;
        port.write_all(text.as_bytes())
            .and_then(|_| port.flush())
            .infra_ctx(|| "cannot write to the serial console".into())
    }

    /// Waits until `pattern` shows up; returns the captures' text (whole match first).
    pub fn expect(&self, pattern: &str, timeout: Duration) -> Result<Vec<String>> {
        let re = compile(pattern)?;
        let deadline = Instant::now() + timeout;
        let mut state = self.inner.state.lock().unwrap();
        loop {
            let cursor = state.cursor;
            if let Some(caps) = re.captures(&state.buf[cursor..]) {
                let whole = caps.get(0).expect("group 0 always exists");
                let texts = caps
                    .iter()
                    .map(|m| {
                        m.map(|m| String::from_utf8_lossy(m.as_bytes()).into_owned())
                            .unwrap_or_default()
                    })
                    .collect();
                state.cursor = cursor + whole.end();
                return Ok(texts);
            }
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            if let Some(why) = &state.lost {
                let tail = tail_text(&state.buf[cursor..], 200);
                return Err(Error::infra(format!(
                    "{why} while waiting for /{pattern}/: the device is gone (last output: {tail:?})"
                )));
            }
            let now = Instant::now();
            if now >= deadline {
                let tail = tail_text(&state.buf[cursor..], 200);
                return Err(Error::Failed(format!(
                    "the serial console did not show /{pattern}/ within {}s (last output: {tail:?})",
                    timeout.as_secs()
                )));
            }
            state = self
                .inner
                .arrived
                // Wake at least every second to notice an interruption.
                .wait_timeout(state, (deadline - now).min(Duration::from_secs(1)))
                .unwrap()
                .0;
        }
    }

    /// Watches the console for `duration` and fails if `pattern` shows up.
    pub fn expect_absent(&self, pattern: &str, duration: Duration) -> Result<()> {
        match self.expect(pattern, duration) {
            Ok(m) => Err(Error::Failed(format!(
                "the serial console showed /{pattern}/ ({:?}) but must not",
                m[0]
            ))),
            Err(Error::Failed(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Logs in as `user` on a getty (a passwordless development login), and sets a known
    /// prompt.
    pub fn login(&self, user: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        self.skip_to_end();
        // Wake the getty up; a login prompt may have scrolled by long ago.
        self.send("\r")?;
        self.expect(r"login: ?$|login: ", left(deadline))?;
        self.send(&format!("{user}\r"))?;
        self.expect(r"[#$] ?$|[#$] ", left(deadline))?;
        // A prompt that cannot be confused with command output; the quotes split the typed
        // text so its echo does not match. Shells may put escape codes before the prompt.
        self.send("export PS1='harn''ess# '; stty -echoctl 2>/dev/null\r")?;
        self.expect("harness# ", left(deadline))?;
        Ok(())
    }

    /// Runs `command` on the console's shell (already logged in); returns its exit status and
    /// output.
    pub fn run(&self, command: &str, timeout: Duration) -> Result<(i32, String)> {
        let n = self.inner.commands.fetch_add(1, Ordering::SeqCst);
        self.skip_to_end();
        // The markers are split in the typed line so its echo cannot match them.
        self.send(&format!("echo H{n}''B; {command}; echo H{n}''E=$?\r"))?;
        self.expect(&format!("H{n}B\r?\n"), timeout)?;
        let start = self.inner.state.lock().unwrap().cursor;
        let caps = self.expect(&format!(r"H{n}E=(\d+)"), timeout)?;
        let end = self.inner.state.lock().unwrap().cursor - caps[0].len();
        let output = self.text_between(start, end);
        let status = caps[1].parse().unwrap_or(-1);
        Ok((status, output))
    }
}

impl Inner {
    /// The reader of transport `generation` ended: if that transport is still the one in use,
    /// the console is lost, and every wait on it learns so at once.
    fn lose(&self, generation: u64, why: String) {
        let mut state = self.state.lock().unwrap();
        if self.generation.load(Ordering::SeqCst) == generation {
            state.lost = Some(why);
        }
        drop(state);
        self.arrived.notify_all();
    }
}

fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

fn compile(pattern: &str) -> Result<Regex> {
    regex::bytes::RegexBuilder::new(pattern)
        .multi_line(true)
        .build()
        .map_err(|e| Error::input(format!("invalid console pattern /{pattern}/: {e}")))
}

fn tail_text(bytes: &[u8], max: usize) -> String {
    let start = bytes.len().saturating_sub(max);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// A unix socket as a console port (QEMU's serial chardev).
impl ConsolePort for std::os::unix::net::UnixStream {
    fn try_clone_port(&self) -> Result<Box<dyn ConsolePort>> {
        Ok(Box::new(
            self.try_clone()
                .infra_ctx(|| "cannot clone the console socket".into())?,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::UnixStream;

    /// A scripted shell on the far end of a socket pair: real sockets, fake device.
    fn fake_device(
        script: impl FnOnce(UnixStream) + Send + 'static,
    ) -> (Console, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let console = Console::new(&dir.path().join("serial.log")).unwrap();
        let (ours, theirs) = UnixStream::pair().unwrap();
        console.attach(Box::new(ours)).unwrap();
        std::thread::spawn(move || script(theirs));
        (console, dir)
    }

    #[test]
    fn a_transport_that_closes_ends_a_wait_at_once_as_infrastructure() {
        let (console, _dir) = fake_device(|mut s| {
            s.write_all(b"[  OK  ] Started serial getty\n").unwrap();
            std::thread::sleep(Duration::from_millis(100));
            // The device goes away: QEMU exits, the socket closes.
        });
        let start = Instant::now();
        let err = console
            .expect("never printed", Duration::from_secs(30))
            .unwrap_err();
        assert!(start.elapsed() < Duration::from_secs(5), "{err}");
        assert!(matches!(err, Error::Infra(_)), "{err}");
        assert!(err.to_string().contains("the device is gone"), "{err}");
        assert!(console.last_lines(3).contains("Started serial getty"));
        assert!(console.lost().is_some());
    }

    #[test]
    fn a_transport_detached_on_purpose_is_not_lost() {
        let (console, _dir) = fake_device(|_s| {});
        console.detach();
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(console.lost(), None);
        let err = console
            .expect("anything", Duration::from_millis(300))
            .unwrap_err();
        assert!(matches!(err, Error::Failed(_)), "{err}");
    }

    #[test]
    fn expect_sees_only_new_output_and_logs_everything() {
        let (console, dir) = fake_device(|mut s| {
            s.write_all(b"boot 1\nlogin: ").unwrap();
            std::thread::sleep(Duration::from_millis(50));
            s.write_all(b"\nboot 2\nlogin: ").unwrap();
            std::thread::sleep(Duration::from_millis(200));
        });
        console.expect("login: ", Duration::from_secs(2)).unwrap();
        console.expect("boot 2", Duration::from_secs(2)).unwrap();
        assert!(console
            .expect("boot 1", Duration::from_millis(100))
            .is_err());
        std::thread::sleep(Duration::from_millis(50));
        let log = std::fs::read_to_string(dir.path().join("serial.log")).unwrap();
        assert!(log.contains("boot 1") && log.contains("boot 2"));
    }

    #[test]
    fn expect_timeout_says_what_it_waited_for() {
        let (console, _dir) = fake_device(|mut s| {
            s.write_all(b"kernel panic").unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let err = console
            .expect("login:", Duration::from_millis(200))
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("/login:/") && msg.contains("kernel panic"),
            "{msg}"
        );
    }

    #[test]
    fn run_returns_status_and_output_from_a_fake_shell() {
        let (console, _dir) = fake_device(|s| {
            // Echo the typed line like a tty, then answer like sh would.
            let mut line = Vec::new();
            let mut r = s.try_clone().unwrap();
            let mut w = s;
            let mut byte = [0u8; 1];
            while r.read(&mut byte).unwrap_or(0) == 1 {
                line.push(byte[0]);
                if byte[0] == b'\r' {
                    w.write_all(&line).unwrap();
                    w.write_all(b"\nH0B\r\nhello\r\nH0E=3\r\nharness# ")
                        .unwrap();
                    line.clear();
                }
            }
        });
        let (status, out) = console
            .run("echo hello; false", Duration::from_secs(2))
            .unwrap();
        assert_eq!(status, 3);
        assert_eq!(out.trim(), "hello");
    }
}
