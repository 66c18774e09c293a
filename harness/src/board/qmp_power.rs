//! Power through a QEMU's QMP socket (the emulated rig): off freezes the machine and resets
//! it, on lets it run from the reset, like a board whose plug was pulled and put back.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;

use crate::device::Power;
use crate::error::{Error, Result};
use crate::qmp::Qmp;

/// A QEMU machine's run state as a power switch.
pub struct QmpPower {
    qmp: Qmp,
    socket: PathBuf,
}

impl QmpPower {
    /// Connects to the QMP socket at `socket`.
    pub fn connect(socket: &Path) -> Result<QmpPower> {
        if !socket.exists() {
            return Err(Error::input(format!(
                "QMP socket {} does not exist",
                socket.display()
            )));
        }
        Ok(QmpPower {
            qmp: Qmp::connect(socket, Duration::from_secs(10))?,
            socket: socket.to_path_buf(),
        })
    }
}

impl Power for QmpPower {
    fn on(&mut self) -> Result<()> {
        if self.qmp.status()? == "running" {
            return Ok(());
        }
        // The guest starts from its firmware and reads the card afresh.
        self.qmp.execute("system_reset", json!({}))?;
        self.qmp.execute("cont", json!({}))?;
        Ok(())
    }

    fn off(&mut self) -> Result<()> {
        self.qmp.execute("stop", json!({}))?;
        // Stopped, the guest neither runs nor writes; the reset drops its state, so what the
        // host writes to the card meanwhile is what the next boot sees.
        self.qmp.execute("system_reset", json!({}))?;
        Ok(())
    }

    fn describe(&self) -> String {
        format!("QEMU run state over QMP {}", self.socket.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::os::unix::net::UnixListener;
    use std::sync::{Arc, Mutex};

    /// A QMP server that answers every command and records what it was sent; `status` is
    /// what `query-status` reports.
    fn fake_qmp(dir: &Path, status: &'static str) -> (PathBuf, Arc<Mutex<Vec<String>>>) {
        let path = dir.join("qmp.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut w = stream.try_clone().unwrap();
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            for line in BufReader::new(stream).lines() {
                let line = line.unwrap();
                let ret = if line.contains("query-status") {
                    format!(r#"{{"return": {{"status": "{status}"}}}}"#)
                } else {
                    r#"{"return": {}}"#.to_string()
                };
                log.lock().unwrap().push(line);
                writeln!(w, "{ret}").unwrap();
            }
        });
        (path, seen)
    }

    fn commands(seen: &Mutex<Vec<String>>) -> Vec<String> {
        seen.lock().unwrap().clone()
    }

    #[test]
    fn qmp_fake_off_stops_and_resets_on_resets_and_continues() {
        let dir = tempfile::tempdir().unwrap();
        let (path, seen) = fake_qmp(dir.path(), "paused");
        let mut power = QmpPower::connect(&path).unwrap();
        power.off().unwrap();
        power.on().unwrap();
        let cmd = |c: &str| format!(r#"{{"arguments":{{}},"execute":"{c}"}}"#);
        assert_eq!(
            commands(&seen),
            [
                "qmp_capabilities",
                "stop",
                "system_reset",
                "query-status",
                "system_reset",
                "cont"
            ]
            .map(cmd)
        );
    }

    #[test]
    fn qmp_fake_on_is_a_no_op_when_running() {
        let dir = tempfile::tempdir().unwrap();
        let (path, seen) = fake_qmp(dir.path(), "running");
        let mut power = QmpPower::connect(&path).unwrap();
        power.on().unwrap();
        assert!(commands(&seen).last().unwrap().contains("query-status"));
    }

    #[test]
    fn a_missing_socket_is_bad_input() {
        let err = QmpPower::connect(Path::new("/nonexistent/qmp.sock"))
            .err()
            .unwrap();
        assert!(matches!(err, Error::Input(_)));
    }
}
