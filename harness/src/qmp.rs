//! A QMP client: QEMU's JSON control socket, used for power and the VM's state.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::error::{Context, Error, Result};

/// A connected QMP session.
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects to the QMP socket at `path`, waiting up to `timeout` for it to appear.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp> {
        let stream = connect_unix(path, timeout, "QEMU's QMP socket")?;
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .infra_ctx(|| "cannot set a QMP timeout".into())?;
        let writer = stream
            .try_clone()
            .infra_ctx(|| "cannot clone the QMP socket".into())?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        // The greeting comes first, though an event of a machine that just started can slip
        // in ahead of it (seen as `RESUME` on a busy host): events are skipped, a few at most.
        let mut greeting = qmp.read_message()?;
        for _ in 0..8 {
            if greeting.get("event").is_none() {
                break;
            }
            greeting = qmp.read_message()?;
        }
        if greeting.get("QMP").is_none() {
            return Err(Error::infra(format!("unexpected QMP greeting: {greeting}")));
        }
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs `command` with `arguments` and returns its `return` value.
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value> {
        let msg = json!({"execute": command, "arguments": arguments});
        writeln!(self.writer, "{msg}").infra_ctx(|| format!("QMP {command}"))?;
        loop {
            let reply = self.read_message()?;
            if let Some(ret) = reply.get("return") {
                return Ok(ret.clone());
            }
            if let Some(err) = reply.get("error") {
                return Err(Error::infra(format!("QMP {command} failed: {err}")));
            }
            // Anything else is an asynchronous event; the console log tells the story.
        }
    }

    /// The VM's run state (`running`, `paused`, `shutdown`, ...).
    pub fn status(&mut self) -> Result<String> {
        let ret = self.execute("query-status", json!({}))?;
        Ok(ret["status"].as_str().unwrap_or("unknown").to_string())
    }

    fn read_message(&mut self) -> Result<Value> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .infra_ctx(|| "reading from QMP".into())?;
        if n == 0 {
            return Err(Error::infra("QEMU closed its QMP socket"));
        }
        serde_json::from_str(&line).infra_ctx(|| format!("QMP sent invalid JSON: {line}"))
    }
}

/// Connects to a unix socket that a child is about to create, bounded by `timeout`.
pub fn connect_unix(path: &Path, timeout: Duration, what: &str) -> Result<UnixStream> {
    let deadline = Instant::now() + timeout;
    loop {
        match UnixStream::connect(path) {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => {
                return Err(Error::infra(format!(
                    "gave up after {}s waiting for {what} at {}: {e}",
                    timeout.as_secs(),
                    path.display()
                )))
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}
