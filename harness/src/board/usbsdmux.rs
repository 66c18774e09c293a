//! The USB-SD-Mux: a USB2642 card reader whose auxiliary I2C bus drives a PCA9536 GPIO
//! expander that switches the card between host and DUT, reached with the reader's vendor
//! SCSI command 0xCF through `/dev/sg*`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::device::{Media, MuxSide};
use crate::error::{Error, Result};
use crate::flash::settle::{wait_for_device, Settle};

use super::sg::{ScsiTransport, SgDevice};

/// The USB2642's vendor SCSI opcode.
const OPCODE: u8 = 0xCF;
/// Vendor action: I2C write.
const I2C_WRITE: u8 = 0x23;
/// Vendor action: I2C write, then read.
const I2C_WRITE_READ: u8 = 0x22;
/// Every I2C transfer moves a 512-byte data phase, as the vendor tool does.
const DATA_PHASE: usize = 512;

/// The PCA9536's 7-bit I2C address.
const PCA9536: u8 = 0x41;
/// PCA9536 output port register.
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

/// The I2C bridge of a USB2642 reader, over SCSI.
pub struct Usb2642<T> {
    scsi: T,
}

impl<T: ScsiTransport> Usb2642<T> {
    /// Wraps a SCSI transport.
    pub fn new(scsi: T) -> Self {
        Usb2642 { scsi }
    }

    /// Writes `data` (up to 512 bytes) to the I2C device at 7-bit address `addr`.
    pub fn i2c_write(&mut self, addr: u8, data: &[u8]) -> Result<()> {
        let len = data.len().min(DATA_PHASE);
        let mut cdb = [0u8; 16];
        cdb[..7].copy_from_slice(&[
            OPCODE,
            I2C_WRITE,
            addr << 1,
            0x00,
            (len >> 8) as u8,
            len as u8,
            0x00,
        ]);
        let mut phase = [0u8; DATA_PHASE];
        phase[..len].copy_from_slice(&data[..len]);
        self.scsi.send(&cdb, &phase)
    }

    /// Writes up to 9 bytes to `addr`, then reads `len` (up to 512) bytes back.
    pub fn i2c_write_read(&mut self, addr: u8, write: &[u8], len: usize) -> Result<Vec<u8>> {
        let (wlen, len) = (write.len().min(9), len.min(DATA_PHASE));
        let mut cdb = [0u8; 16];
        cdb[..7].copy_from_slice(&[
            OPCODE,
            I2C_WRITE_READ,
            addr << 1,
            (addr << 1) | 1,
            (len >> 8) as u8,
            len as u8,
            wlen as u8,
        ]);
        cdb[7..7 + wlen].copy_from_slice(&write[..wlen]);
        let mut phase = [0u8; DATA_PHASE];
        self.scsi.receive(&cdb, &mut phase)?;
        Ok(phase[..len].to_vec())
    }
}

/// A USB-SD-Mux, as a [`Media`] switch.
pub struct UsbSdMux<T> {
    i2c: Usb2642<T>,
    sg: PathBuf,
    sys: PathBuf,
    /// How long the card stays unpowered on every switch (1 s, as the vendor tool).
    pub power_off_wait: Duration,
    /// How to wait for the card's block device on the host.
    pub settle: Settle,
}

impl UsbSdMux<SgDevice> {
    /// Opens the mux at its `/dev/sg*` path.
    pub fn open(sg: &Path) -> Result<Self> {
        if !sg.exists() {
            return Err(Error::input(format!(
                "usbsdmux {} does not exist",
                sg.display()
            )));
        }
        Ok(Self::with_transport(
            SgDevice::open(sg)?,
            sg,
            Path::new("/sys"),
        ))
    }

    /// Opens the mux whose USB serial is `serial`.
    pub fn open_by_serial(serial: &str) -> Result<Self> {
        let sg = find_by_serial(Path::new("/sys"), serial)?;
        Self::open(&sg)
    }
}

impl<T: ScsiTransport> UsbSdMux<T> {
    /// A mux over any SCSI transport; `sg` names it and `sys` is where sysfs is mounted.
    pub fn with_transport(scsi: T, sg: &Path, sys: &Path) -> Self {
        UsbSdMux {
            i2c: Usb2642::new(scsi),
            sg: sg.to_path_buf(),
            sys: sys.to_path_buf(),
            power_off_wait: Duration::from_secs(1),
            settle: Settle::default(),
        }
    }

    fn set_outputs(&mut self, value: u8) -> Result<()> {
        self.i2c.i2c_write(PCA9536, &[REG_OUTPUT, value])
    }

    /// Cuts the card's power and data from both sides, then waits for its supply to drain.
    pub fn disconnect(&mut self) -> Result<()> {
        self.set_outputs(DAT_OFF | PWR_OFF | CARD_REMOVED)?;
        let outputs = DAT_OFF | PWR_OFF | SELECT_DUT | CARD_REMOVED;
        self.i2c.i2c_write(PCA9536, &[REG_CONFIG, !outputs])?;
        std::thread::sleep(self.power_off_wait);
        Ok(())
    }

    /// The side the card is on, or `None` when it is disconnected.
    pub fn side(&mut self) -> Result<Option<MuxSide>> {
        let v = self.i2c.i2c_write_read(PCA9536, &[REG_OUTPUT], 1)?[0];
        Ok(match (v & PWR_OFF != 0, v & SELECT_DUT != 0) {
            (true, _) => None,
            (false, true) => Some(MuxSide::Dut),
            (false, false) => Some(MuxSide::Host),
        })
    }
}

impl<T: ScsiTransport> Media for UsbSdMux<T> {
    fn switch(&mut self, side: MuxSide) -> Result<()> {
        self.disconnect()?;
        match side {
            MuxSide::Dut => {
                // Route to the DUT while unpowered, then connect: no glitch on the lines.
                self.set_outputs(DAT_OFF | PWR_OFF | SELECT_DUT | CARD_REMOVED)?;
                self.set_outputs(SELECT_DUT | CARD_REMOVED)
            }
            MuxSide::Host => self.set_outputs(0),
        }
    }

    fn host_device(&self) -> Result<PathBuf> {
        let name = self.sg.file_name().unwrap_or_default().to_owned();
        let dir = self
            .sys
            .join("class/scsi_generic")
            .join(&name)
            .join("device/block");
        let what = format!(
            "the card of usbsdmux {} (a disk under {})",
            self.sg.display(),
            dir.display()
        );
        wait_for_device(&what, self.settle, || block_under(&dir))
    }

    fn describe(&self) -> String {
        format!("usbsdmux {}", self.sg.display())
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
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// One SCSI command: the CDB and the data phase sent (empty for reads).
    type Sent = ([u8; 16], Vec<u8>);

    /// Records every SCSI command; answers reads with `reply`.
    #[derive(Clone, Default)]
    struct FakeScsi {
        sent: Arc<Mutex<Vec<Sent>>>,
        reply: u8,
    }

    impl ScsiTransport for FakeScsi {
        fn send(&mut self, cdb: &[u8; 16], data: &[u8]) -> Result<()> {
            self.sent.lock().unwrap().push((*cdb, data.to_vec()));
            Ok(())
        }
        fn receive(&mut self, cdb: &[u8; 16], buf: &mut [u8]) -> Result<()> {
            self.sent.lock().unwrap().push((*cdb, Vec::new()));
            buf[0] = self.reply;
            Ok(())
        }
    }

    fn mux(fake: &FakeScsi) -> UsbSdMux<FakeScsi> {
        let mut m =
            UsbSdMux::with_transport(fake.clone(), Path::new("/dev/sg3"), Path::new("/sys"));
        m.power_off_wait = Duration::ZERO;
        m
    }

    /// The (register, value) pairs written to the PCA9536, checking each full command.
    fn writes(fake: &FakeScsi) -> Vec<(u8, u8)> {
        let sent = fake.sent.lock().unwrap();
        sent.iter()
            .map(|(cdb, data)| {
                assert_eq!(
                    cdb,
                    &[0xCF, 0x23, 0x82, 0x00, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0]
                );
                assert_eq!(data.len(), 512);
                assert!(data[2..].iter().all(|&b| b == 0));
                (data[0], data[1])
            })
            .collect()
    }

    #[test]
    fn usbsdmux_fake_switch_to_host_powers_down_first() {
        let fake = FakeScsi::default();
        mux(&fake).switch(MuxSide::Host).unwrap();
        assert_eq!(
            writes(&fake),
            vec![(0x01, 0x0B), (0x03, 0xF0), (0x01, 0x00)]
        );
    }

    #[test]
    fn usbsdmux_fake_switch_to_dut_selects_before_powering() {
        let fake = FakeScsi::default();
        mux(&fake).switch(MuxSide::Dut).unwrap();
        assert_eq!(
            writes(&fake),
            vec![(0x01, 0x0B), (0x03, 0xF0), (0x01, 0x0F), (0x01, 0x0C)]
        );
    }

    #[test]
    fn usbsdmux_fake_switch_waits_with_the_card_off() {
        let fake = FakeScsi::default();
        let mut m = mux(&fake);
        m.power_off_wait = Duration::from_millis(50);
        let t = std::time::Instant::now();
        m.switch(MuxSide::Host).unwrap();
        assert!(t.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn usbsdmux_fake_reads_the_side() {
        for (reply, want) in [
            (0x00, Some(MuxSide::Host)),
            (0x0C, Some(MuxSide::Dut)),
            (0x0B, None),
        ] {
            let fake = FakeScsi {
                reply,
                ..Default::default()
            };
            assert_eq!(mux(&fake).side().unwrap(), want);
            let (cdb, _) = fake.sent.lock().unwrap()[0];
            assert_eq!(&cdb[..8], &[0xCF, 0x22, 0x82, 0x83, 0x00, 0x01, 0x01, 0x01]);
        }
    }

    #[test]
    fn usbsdmux_fake_finds_the_block_device_and_the_serial() {
        let sys = tempfile::tempdir().unwrap();
        let sys = std::fs::canonicalize(sys.path()).unwrap();
        let usb = sys.join("devices/usb1/1-1");
        let scsi = usb.join("1-1:1.0/host0/target0:0:0/0:0:0:0");
        std::fs::create_dir_all(scsi.join("block/sdq")).unwrap();
        std::fs::write(usb.join("serial"), "000000000815\n").unwrap();
        std::fs::create_dir_all(sys.join("class/scsi_generic/sg3")).unwrap();
        std::os::unix::fs::symlink(&scsi, sys.join("class/scsi_generic/sg3/device")).unwrap();

        assert_eq!(
            find_by_serial(&sys, "000000000815").unwrap(),
            Path::new("/dev/sg3")
        );
        let err = find_by_serial(&sys, "nope").unwrap_err();
        assert!(matches!(err, Error::Input(_)));

        let mut m = UsbSdMux::with_transport(FakeScsi::default(), Path::new("/dev/sg3"), &sys);
        m.settle = Settle {
            timeout: Duration::from_millis(300),
            stable_for: Duration::from_millis(20),
            poll: Duration::from_millis(10),
        };
        // /dev/sdq does not exist here, so the wait must time out naming what it waited for.
        let err = m.host_device().unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert!(err.to_string().contains("usbsdmux /dev/sg3"), "{err}");
        assert_eq!(
            block_under(&scsi.join("block")),
            Some(PathBuf::from("/dev/sdq"))
        );
    }

    #[test]
    fn a_missing_sg_device_is_one_input_line() {
        let err = UsbSdMux::open(Path::new("/dev/sg77")).err().unwrap();
        assert_eq!(err.to_string(), "usbsdmux /dev/sg77 does not exist");
    }
}
