//! The seams between the runner and the hardware: one small trait per role.
//!
//! A QEMU machine and a board on a rig provide the same roles, so a suite runs unchanged on
//! either. Implementations: QEMU (QMP power), GPIO relay, uhubctl and a command (power); the
//! USB-SD-Mux and the SDWire (media).

use std::path::PathBuf;
use std::time::Duration;

use crate::Result;

/// Switches a device's power.
pub trait Power: Send {
    /// Turns the power on (a no-op when it is on already).
    fn on(&mut self) -> Result<()>;
    /// Cuts the power at once, as pulling the plug would.
    fn off(&mut self) -> Result<()>;
    /// Cuts the power, waits `off_for`, and turns it back on.
    fn cycle(&mut self, off_for: Duration) -> Result<()> {
        self.off()?;
        std::thread::sleep(off_for);
        self.on()
    }
    /// One line naming the switch, for logs and errors ("gpio relay gpiochip0:17").
    fn describe(&self) -> String;
}

/// Which side an SD muxer connects the card to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MuxSide {
    /// The card is a block device on the test host.
    Host,
    /// The card is in the board.
    Dut,
}

/// Switches a board's storage between the host (to write it) and the board (to boot it).
pub trait Media: Send {
    /// Connects the card to `side`; the muxer's own settling (power the card down, wait) is
    /// done here.
    fn switch(&mut self, side: MuxSide) -> Result<()>;
    /// The block device (or file) the card shows up as on the host, once switched there.
    fn host_device(&self) -> Result<PathBuf>;
    /// One line naming the muxer, for logs and errors.
    fn describe(&self) -> String;
}

/// The byte stream of a serial console: a QEMU chardev socket, a UART, or a pty.
pub trait ConsolePort: std::io::Read + std::io::Write + Send {
    /// A second handle on the same port, so one thread reads while another writes.
    fn try_clone_port(&self) -> Result<Box<dyn ConsolePort>>;
}
