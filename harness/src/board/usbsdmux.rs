//! The USB-SD-Mux (classic): a USB2642 card reader whose auxiliary I2C bus drives a PCA9536
//! GPIO expander that switches the card between host and DUT.
//!
//! The mux may be named by its `/dev/sg*` node or by the udev link `/dev/usb-sd-mux/id-*`.
//! Its SCSI model in sysfs tells the classic from the USB-SD-Mux FAST, whose expander (a
//! TCA6408 at another address, other pins) this driver does not drive: the FAST and any other
//! device are refused. Every switch is read back from the expander's input port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::device::{Media, MuxSide};
use crate::error::{Error, Result};
use crate::flash::settle::{wait_for_device, Settle};

use super::sg::{ScsiTransport, SgDevice};
use super::usb2642::Usb2642;

/// The SCSI model of the classic USB-SD-Mux.
pub const MODEL_CLASSIC: &str = "sdmux HS-SD/MMC";
/// The SCSI model of the USB-SD-Mux FAST.
pub const MODEL_FAST: &str = "sdFST HS-SD/MMC";

/// The PCA9536's 7-bit I2C address.
const PCA9536: u8 = 0x41;
/// PCA9536 input port register: the pins' actual levels.
const REG_INPUT: u8 = 0x00;
/// PCA9536 output port register: the levels the outputs are told to drive.
const REG_OUTPUT: u8 = 0x01;
/// PCA9536 configuration (direction) register; 0 bits are outputs.
const REG_CONFIG: u8 = 0x03;

/// GPIO 0 high: card data lines disconnected.
const DAT_OFF: u8 = 0x01;
/// GPIO 1 high: card power off.
const PWR_OFF: u8 = 0x02;
/// GPIO 2 high: card routed to the DUT (low: to the host).
const SELECT_DUT: u8 = 0x04;
/// GPIO 3 high: card-detect tells the reader "no card".
const CARD_REMOVED: u8 = 0x08;
/// The four pins the mux uses.
const PINS: u8 = DAT_OFF | PWR_OFF | SELECT_DUT | CARD_REMOVED;

/// A USB-SD-Mux, as a [`Media`] switch.
pub struct UsbSdMux<T> {
    i2c: Usb2642<T>,
    /// The path the rig gave (a `/dev/sg*` node or a udev link to one).
    sg: PathBuf,
    /// `sg` with links resolved: the `/dev/sgN` whose name sysfs knows.
    node: PathBuf,
    sys: PathBuf,
    /// How long the card stays unpowered on every switch (1 s, as the vendor tool).
    pub power_off_wait: Duration,
    /// How to wait for the card's block device on the host.
    pub settle: Settle,
}

impl UsbSdMux<SgDevice> {
    /// Opens the mux at `sg` (a `/dev/sg*` node or a `/dev/usb-sd-mux/id-*` link), refusing
    /// anything but a classic USB-SD-Mux.
    pub fn open(sg: &Path) -> Result<Self> {
        Self::open_in(sg, Path::new("/sys"))
    }

    fn open_in(sg: &Path, sys: &Path) -> Result<Self> {
        check_in(sg, sys)?;
        let scsi = SgDevice::open(&resolve(sg))?;
        Ok(Self::with_transport(scsi, sg, sys))
    }

    /// Opens the mux whose USB serial is `serial`.
    pub fn open_by_serial(serial: &str) -> Result<Self> {
        let sg = find_by_serial(Path::new("/sys"), serial)?;
        Self::open(&sg)
    }
}

/// Checks that `sg` exists and is a classic USB-SD-Mux, without switching it.
pub fn check(sg: &Path) -> Result<()> {
    check_in(sg, Path::new("/sys"))
}

fn check_in(sg: &Path, sys: &Path) -> Result<()> {
    if !sg.exists() {
        return Err(Error::input(format!(
            "usbsdmux {} does not exist",
            sg.display()
        )));
    }
    check_model(sys, sg)
}

/// `sg` with symlinks resolved, or as given when it cannot be.
fn resolve(sg: &Path) -> PathBuf {
    std::fs::canonicalize(sg).unwrap_or_else(|_| sg.to_path_buf())
}

/// `sys/class/scsi_generic/sgN` for the mux at `sg`.
fn class_dir(sys: &Path, sg: &Path) -> PathBuf {
    let node = resolve(sg);
    let name = node.file_name().unwrap_or_default();
    sys.join("class/scsi_generic").join(name)
}

/// Refuses anything whose SCSI model is not the classic USB-SD-Mux's.
pub fn check_model(sys: &Path, sg: &Path) -> Result<()> {
    let file = class_dir(sys, sg).join("device/model");
    let shown = sg.display();
    let model = std::fs::read_to_string(&file).map_err(|e| {
        Error::input(format!(
            "usbsdmux {shown}: cannot read its SCSI model from {}: {e}",
            file.display()
        ))
    })?;
    match model.trim() {
        MODEL_CLASSIC => Ok(()),
        MODEL_FAST => Err(Error::input(format!(
            "usbsdmux {shown} is a USB-SD-Mux FAST (SCSI model \"{MODEL_FAST}\"), which the \
             harness does not drive: its switch is a TCA6408 on other pins, so the classic \
             commands would set the wrong lines"
        ))),
        other => Err(Error::input(format!(
            "usbsdmux {shown} is not a USB-SD-Mux: its SCSI model is \"{other}\", not \
             \"{MODEL_CLASSIC}\""
        ))),
    }
}

fn side_name(side: Option<MuxSide>) -> &'static str {
    match side {
        Some(MuxSide::Host) => "host",
        Some(MuxSide::Dut) => "DUT",
        None => "off",
    }
}

/// The side the pin levels `v` put the card on, or `None` when it is unpowered.
fn side_of(v: u8) -> Option<MuxSide> {
    match (v & PWR_OFF != 0, v & SELECT_DUT != 0) {
        (true, _) => None,
        (false, true) => Some(MuxSide::Dut),
        (false, false) => Some(MuxSide::Host),
    }
}

impl<T: ScsiTransport> UsbSdMux<T> {
    /// A mux over any SCSI transport; `sg` names it and `sys` is where sysfs is mounted.
    pub fn with_transport(scsi: T, sg: &Path, sys: &Path) -> Self {
        UsbSdMux {
            i2c: Usb2642::new(scsi),
            sg: sg.to_path_buf(),
            node: resolve(sg),
            sys: sys.to_path_buf(),
            power_off_wait: Duration::from_secs(1),
            settle: Settle::default(),
        }
    }

    fn set_outputs(&mut self, value: u8) -> Result<()> {
        self.i2c.i2c_write(PCA9536, &[REG_OUTPUT, value])
    }

    fn read(&mut self, reg: u8) -> Result<u8> {
        let v = self.i2c.i2c_write_read(PCA9536, &[reg], 1)?;
        v.first()
            .copied()
            .ok_or_else(|| Error::infra(format!("{}: empty I2C read", self.describe())))
    }

    /// Cuts the card's power and data from both sides, then waits for its supply to drain.
    pub fn disconnect(&mut self) -> Result<()> {
        self.set_outputs(DAT_OFF | PWR_OFF | CARD_REMOVED)?;
        // Make the four pins outputs, leaving the others as they are.
        let config = self.read(REG_CONFIG)?;
        self.i2c.i2c_write(PCA9536, &[REG_CONFIG, config & !PINS])?;
        std::thread::sleep(self.power_off_wait);
        Ok(())
    }

    /// The side the card is on, or `None` when it is disconnected, from the pins' levels.
    pub fn side(&mut self) -> Result<Option<MuxSide>> {
        Ok(side_of(self.read(REG_INPUT)?))
    }

    /// The directory whose entry is the card's block device once it is on the host.
    fn block_dir(&self) -> PathBuf {
        class_dir(&self.sys, &self.node).join("device/block")
    }
}

impl<T: ScsiTransport> Media for UsbSdMux<T> {
    fn switch(&mut self, side: MuxSide) -> Result<()> {
        self.disconnect()?;
        match side {
            MuxSide::Dut => {
                // Route to the DUT while unpowered, then connect: no glitch on the lines.
                self.set_outputs(DAT_OFF | PWR_OFF | SELECT_DUT | CARD_REMOVED)?;
                self.set_outputs(SELECT_DUT | CARD_REMOVED)?;
            }
            MuxSide::Host => self.set_outputs(0)?,
        }
        let pins = self.read(REG_INPUT)?;
        if side_of(pins) != Some(side) {
            return Err(Error::infra(format!(
                "{} was switched to the {} but its pins read back {} (input port {pins:#04x})",
                self.describe(),
                side_name(Some(side)),
                side_name(side_of(pins))
            )));
        }
        Ok(())
    }

    fn host_device(&self) -> Result<PathBuf> {
        let dir = self.block_dir();
        let what = format!(
            "the card of {} (a disk under {})",
            self.describe(),
            dir.display()
        );
        wait_for_device(&what, self.settle, || block_under(&dir))
    }

    fn describe(&self) -> String {
        if self.node == self.sg {
            format!("usbsdmux {}", self.sg.display())
        } else {
            format!("usbsdmux {} ({})", self.sg.display(), self.node.display())
        }
    }
}

/// The `/dev/NAME` of the first block device listed in `dir`.
fn block_under(dir: &Path) -> Option<PathBuf> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names.first().map(|n| Path::new("/dev").join(n))
}

/// The `/dev/sg*` of the USB-SD-Mux with USB serial `serial`, found in sysfs at `sys`.
pub fn find_by_serial(sys: &Path, serial: &str) -> Result<PathBuf> {
    let class = sys.join("class/scsi_generic");
    let entries = std::fs::read_dir(&class).map_err(|e| {
        Error::input(format!(
            "usbsdmux {serial}: cannot list {}: {e}",
            class.display()
        ))
    })?;
    for e in entries.flatten() {
        let Ok(mut dir) = std::fs::canonicalize(e.path().join("device")) else {
            continue;
        };
        // Walk up from the SCSI device to the USB device that carries the serial.
        while dir.pop() && dir.starts_with(sys) {
            let Ok(s) = std::fs::read_to_string(dir.join("serial")) else {
                continue;
            };
            if s.trim() == serial {
                return Ok(Path::new("/dev").join(e.file_name()));
            }
            break;
        }
    }
    Err(Error::input(format!(
        "usbsdmux with serial {serial} not found (no /dev/sg* device carries it)"
    )))
}

#[cfg(test)]
mod tests;
