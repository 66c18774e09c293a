//! The SDWire: an FTDI FT200X whose CBUS pin 0, driven in CBUS bit-bang mode over USB,
//! switches the card between the test server (high) and the DUT (low).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::device::{Media, MuxSide};
use crate::error::{Error, Result};
use crate::flash::settle::{wait_for_device, Settle};

/// The USB vendor id the SDWire ships with (the FTDI's EEPROM is reprogrammed).
pub const VENDOR: u16 = 0x04e8;
/// The USB product id the SDWire ships with.
pub const PRODUCT: u16 = 0x6001;

/// FTDI vendor request: set bit mode.
const SIO_SET_BITMODE: u8 = 0x0B;
/// Bit mode: CBUS bit-bang.
const BITMODE_CBUS: u8 = 0x20;
/// Vendor request, host to device, recipient device.
const REQUEST_TYPE_OUT: u8 = 0x40;
/// The FTDI interface index (A).
const INTERFACE_A: u16 = 1;
/// CBUS mask: high nibble sets pins 0-3 as outputs, the low nibble their levels.
const CBUS_OUTPUTS: u8 = 0xF0;
/// CBUS pin 0 high routes the card to the test server (host).
const CBUS_HOST: u8 = 0x01;

/// A USB control transfer to a device: the seam the SDWire driver is tested through.
pub trait UsbControl: Send {
    /// Sends one control transfer with an OUT data stage of `data`.
    fn write_control(
        &mut self,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        data: &[u8],
    ) -> Result<()>;
}

/// A USB device opened with `rusb`.
pub struct RusbDevice {
    handle: rusb::DeviceHandle<rusb::Context>,
    serial: String,
    /// The device's sysfs name, e.g. `1-1.2`.
    port: String,
}

impl RusbDevice {
    /// Opens the device `vendor:product` whose serial is `serial`.
    pub fn open(vendor: u16, product: u16, serial: &str) -> Result<RusbDevice> {
        use rusb::UsbContext;
        let ctx = rusb::Context::new()
            .map_err(|e| Error::input(format!("sdwire {serial}: cannot use USB: {e}")))?;
        let devices = ctx
            .devices()
            .map_err(|e| Error::input(format!("sdwire {serial}: cannot list USB devices: {e}")))?;
        for dev in devices.iter() {
            let Ok(desc) = dev.device_descriptor() else {
                continue;
            };
            if desc.vendor_id() != vendor || desc.product_id() != product {
                continue;
            }
            let Ok(handle) = dev.open() else { continue };
            let Ok(s) = handle.read_serial_number_string_ascii(&desc) else {
                continue;
            };
            if s == serial {
                let ports = dev.port_numbers().unwrap_or_default();
                let path: Vec<String> = ports.iter().map(u8::to_string).collect();
                return Ok(RusbDevice {
                    handle,
                    serial: s,
                    port: format!("{}-{}", dev.bus_number(), path.join(".")),
                });
            }
        }
        Err(Error::input(format!(
            "sdwire {serial} not found (no USB device {vendor:04x}:{product:04x} with that serial)"
        )))
    }
}

impl UsbControl for RusbDevice {
    fn write_control(
        &mut self,
        rt: u8,
        req: u8,
        value: u16,
        index: u16,
        data: &[u8],
    ) -> Result<()> {
        self.handle
            .write_control(rt, req, value, index, data, Duration::from_secs(1))
            .map(|_| ())
            .map_err(|e| {
                Error::infra(format!(
                    "sdwire {}: USB control transfer failed: {e}",
                    self.serial
                ))
            })
    }
}

/// An SDWire, as a [`Media`] switch.
pub struct SdWire<U> {
    usb: U,
    serial: String,
    /// The card reader's block device, when the rig names it; otherwise found in sysfs.
    block_device: Option<PathBuf>,
    /// The FTDI's sysfs USB name (`1-1.2`), to find the reader beside it on the same hub.
    usb_port: Option<String>,
    /// How to wait for the card's block device on the host.
    pub settle: Settle,
    /// How long the card stays disconnected between sides.
    pub switch_wait: Duration,
}

impl SdWire<RusbDevice> {
    /// Opens the SDWire with USB serial `serial`; `block_device` pins the reader's device.
    pub fn open(serial: &str, block_device: Option<PathBuf>) -> Result<Self> {
        let usb = RusbDevice::open(VENDOR, PRODUCT, serial)?;
        let port = usb.port.clone();
        let mut s = SdWire::with_transport(usb, serial, block_device);
        s.usb_port = Some(port);
        Ok(s)
    }
}

impl<U: UsbControl> SdWire<U> {
    /// An SDWire over any control-transfer transport.
    pub fn with_transport(usb: U, serial: &str, block_device: Option<PathBuf>) -> Self {
        SdWire {
            usb,
            serial: serial.to_string(),
            block_device,
            usb_port: None,
            settle: Settle::default(),
            switch_wait: Duration::from_millis(500),
        }
    }

    fn set_cbus(&mut self, levels: u8) -> Result<()> {
        let value = (u16::from(BITMODE_CBUS) << 8) | u16::from(CBUS_OUTPUTS | levels);
        self.usb
            .write_control(REQUEST_TYPE_OUT, SIO_SET_BITMODE, value, INTERFACE_A, &[])
    }
}

impl<U: UsbControl> Media for SdWire<U> {
    fn switch(&mut self, side: MuxSide) -> Result<()> {
        self.set_cbus(match side {
            MuxSide::Host => CBUS_HOST,
            MuxSide::Dut => 0,
        })?;
        // The SDWire has no power switch of its own: give the card and the reader time to
        // see the change before anyone looks for the block device.
        std::thread::sleep(self.switch_wait);
        Ok(())
    }

    fn host_device(&self) -> Result<PathBuf> {
        let what = format!("the card of sdwire {}", self.serial);
        match (&self.block_device, &self.usb_port) {
            (Some(p), _) => {
                let p = p.clone();
                wait_for_device(&format!("{what} ({})", p.display()), self.settle, || {
                    Some(p.clone())
                })
            }
            (None, Some(port)) => {
                let hub = port
                    .rsplit_once('.')
                    .map_or(port.as_str(), |(h, _)| h)
                    .to_string();
                let what = format!("{what} (a disk on USB hub {hub} beside {port})");
                wait_for_device(&what, self.settle, || {
                    sibling_disk(Path::new("/sys"), &hub, port)
                })
            }
            (None, None) => Err(Error::input(format!(
                "sdwire {}: no block device given and no USB port to find it by",
                self.serial
            ))),
        }
    }

    fn describe(&self) -> String {
        format!("sdwire {}", self.serial)
    }
}

/// A disk whose sysfs path runs through USB hub `hub` but not through the FTDI at `port`.
fn sibling_disk(sys: &Path, hub: &str, port: &str) -> Option<PathBuf> {
    let hub_seg = format!("/{hub}/");
    let port_seg = format!("/{port}/");
    let mut found: Vec<_> = std::fs::read_dir(sys.join("block"))
        .ok()?
        .flatten()
        .filter_map(|e| {
            let real = std::fs::canonicalize(e.path()).ok()?;
            let s = real.to_string_lossy().into_owned();
            (s.contains(&hub_seg) && !s.contains(&port_seg)).then(|| e.file_name())
        })
        .collect();
    found.sort();
    found.first().map(|n| Path::new("/dev").join(n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct FakeUsb {
        sent: Vec<(u8, u8, u16, u16, Vec<u8>)>,
    }

    impl UsbControl for FakeUsb {
        fn write_control(&mut self, rt: u8, req: u8, v: u16, i: u16, d: &[u8]) -> Result<()> {
            self.sent.push((rt, req, v, i, d.to_vec()));
            Ok(())
        }
    }

    fn sdwire() -> SdWire<FakeUsb> {
        let mut s = SdWire::with_transport(FakeUsb::default(), "sd-wire_11", None);
        s.switch_wait = Duration::ZERO;
        s
    }

    #[test]
    fn sdwire_fake_host_sets_cbus0_high() {
        let mut s = sdwire();
        s.switch(MuxSide::Host).unwrap();
        assert_eq!(s.usb.sent, vec![(0x40, 0x0B, 0x20F1, 1, vec![])]);
    }

    #[test]
    fn sdwire_fake_dut_sets_cbus0_low() {
        let mut s = sdwire();
        s.switch(MuxSide::Dut).unwrap();
        assert_eq!(s.usb.sent, vec![(0x40, 0x0B, 0x20F0, 1, vec![])]);
    }

    #[test]
    fn sdwire_fake_finds_the_reader_beside_the_ftdi() {
        let sys = tempfile::tempdir().unwrap();
        let sys = std::fs::canonicalize(sys.path()).unwrap();
        let reader = sys.join("devices/pci0/usb1/1-1/1-1.1/1-1.1:1.0/host3/block/sdr");
        let other = sys.join("devices/pci0/usb2/2-1/2-1:1.0/host4/block/sdb");
        std::fs::create_dir_all(&reader).unwrap();
        std::fs::create_dir_all(&other).unwrap();
        std::fs::create_dir_all(sys.join("block")).unwrap();
        std::os::unix::fs::symlink(&reader, sys.join("block/sdr")).unwrap();
        std::os::unix::fs::symlink(&other, sys.join("block/sdb")).unwrap();
        assert_eq!(
            sibling_disk(&sys, "1-1", "1-1.2"),
            Some(PathBuf::from("/dev/sdr"))
        );
        assert_eq!(sibling_disk(&sys, "1-1", "1-1.1"), None);
    }

    #[test]
    fn sdwire_fake_without_a_way_to_find_the_card_is_an_input_error() {
        let err = sdwire().host_device().unwrap_err();
        assert!(matches!(err, Error::Input(_)));
    }
}
