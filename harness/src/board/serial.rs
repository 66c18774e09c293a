//! A serial console (a UART like `/dev/ttyUSB0`, or a pty) opened with `serialport`.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serialport::TTYPort;

use crate::device::ConsolePort;
use crate::error::{Error, Result};

/// How long one read waits inside `serialport` before looking again.
const POLL: Duration = Duration::from_millis(100);

/// An open serial port, as a [`ConsolePort`].
///
/// Reads block until data arrives, like a socket without a timeout, unless
/// [`SerialConsole::set_read_timeout`] sets one (then they fail with `TimedOut`).
pub struct SerialConsole {
    port: TTYPort,
    path: String,
    read_timeout: Option<Duration>,
}

impl SerialConsole {
    /// Opens `path` at `baud` (8N1, no flow control).
    pub fn open(path: &Path, baud: u32) -> Result<SerialConsole> {
        let shown = path.display().to_string();
        if !path.exists() {
            return Err(Error::input(format!("serial port {shown} does not exist")));
        }
        let port = serialport::new(shown.as_str(), baud)
            .timeout(POLL)
            .open_native()
            .map_err(|e| Error::input(format!("cannot open serial port {shown}: {e}")))?;
        Ok(SerialConsole {
            port,
            path: shown,
            read_timeout: None,
        })
    }

    /// Makes reads give up with `TimedOut` after `timeout` (`None`: wait for data).
    pub fn set_read_timeout(&mut self, timeout: Option<Duration>) {
        self.read_timeout = timeout;
    }

    /// The port's path.
    pub fn path(&self) -> &str {
        &self.path
    }
}

impl Read for SerialConsole {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let start = std::time::Instant::now();
        loop {
            match self.port.read(buf) {
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {
                    if self.read_timeout.is_some_and(|t| start.elapsed() >= t) {
                        return Err(e);
                    }
                }
                other => return other,
            }
        }
    }
}

impl Write for SerialConsole {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.port.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.port.flush()
    }
}

impl ConsolePort for SerialConsole {
    fn try_clone_port(&self) -> Result<Box<dyn ConsolePort>> {
        let port = self
            .port
            .try_clone_native()
            .map_err(|e| Error::infra(format!("cannot clone serial port {}: {e}", self.path)))?;
        Ok(Box::new(SerialConsole {
            port,
            path: self.path.clone(),
            read_timeout: self.read_timeout,
        }))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rustix::pty::{grantpt, openpt, ptsname, unlockpt, OpenptFlags};
    use std::fs::File;

    /// A real pseudo-terminal: (master, slave path). The slave is opened by path, as a board's
    /// UART is.
    pub(crate) fn pty() -> (File, String) {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).unwrap();
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let path = ptsname(&master, Vec::new()).unwrap();
        (File::from(master), path.to_string_lossy().into_owned())
    }

    #[test]
    fn talks_both_ways_over_a_pty() {
        let (mut master, path) = pty();
        let mut con = SerialConsole::open(Path::new(&path), 115_200).unwrap();
        con.set_read_timeout(Some(Duration::from_secs(5)));
        master.write_all(b"login: ").unwrap();
        let mut buf = [0u8; 16];
        let n = con.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"login: ");

        let mut writer = con.try_clone_port().unwrap();
        writer.write_all(b"root\n").unwrap();
        let mut got = Vec::new();
        while !got.ends_with(b"\n") {
            let n = master.read(&mut buf).unwrap();
            got.extend_from_slice(&buf[..n]);
        }
        assert!(got.starts_with(b"root"), "{got:?}");
    }

    #[test]
    fn a_read_timeout_gives_up() {
        let (_master, path) = pty();
        let mut con = SerialConsole::open(Path::new(&path), 9600).unwrap();
        con.set_read_timeout(Some(Duration::from_millis(150)));
        let err = con.read(&mut [0u8; 4]).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
    }

    #[test]
    fn missing_and_unusable_ports_are_input_errors() {
        let err = SerialConsole::open(Path::new("/dev/ttyUSB77"), 115_200)
            .err()
            .unwrap();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(err.to_string(), "serial port /dev/ttyUSB77 does not exist");
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = SerialConsole::open(file.path(), 115_200).err().unwrap();
        assert!(matches!(err, Error::Input(_)));
        assert!(
            err.to_string().starts_with("cannot open serial port "),
            "{err}"
        );
    }
}
