//! The SDWire: an FTDI FT200X whose CBUS pin 0, driven in CBUS bit-bang mode over USB,
//! switches the card between the test server (high) and the DUT (low).
//!
//! Its USB id 04e8:6001 is shared with Samsung's other boards (the SD-MUX, the USB-MUX), so
//! the driver also requires the product string `sd-wire`, as sd-mux-ctrl does, and refuses
//! the rest. Every switch is read back from the pins.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::device::{Media, MuxSide};
use crate::error::{Error, Result};
use crate::flash::settle::{wait_for_device, Settle};

/// The USB vendor id the SDWire ships with (the FTDI's EEPROM is reprogrammed).
pub const VENDOR: u16 = 0x04e8;
/// The USB product id the SDWire ships with.
pub const PRODUCT: u16 = 0x6001;
/// The USB product string that tells an SDWire from the other products with its id.
pub const PRODUCT_STRING: &str = "sd-wire";

/// FTDI vendor request: set bit mode.
const SIO_SET_BITMODE: u8 = 0x0B;
/// FTDI vendor request: read the pins' levels.
const SIO_READ_PINS: u8 = 0x0C;
/// Bit mode: CBUS bit-bang.
const BITMODE_CBUS: u8 = 0x20;
/// Vendor request, host to device, recipient device.
const REQUEST_TYPE_OUT: u8 = 0x40;
/// Vendor request, device to host, recipient device.
const REQUEST_TYPE_IN: u8 = 0xC0;
/// The FTDI interface index (A).
const INTERFACE_A: u16 = 1;
/// CBUS mask: high nibble sets pins 0-3 as outputs, the low nibble their levels.
const CBUS_OUTPUTS: u8 = 0xF0;
/// CBUS pin 0 high routes the card to the test server (host).
const CBUS_HOST: u8 = 0x01;

/// USB control transfers to a device: the seam the SDWire driver is tested through.
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
    /// Sends one control transfer with an IN data stage into `buf`; returns the bytes read.
    fn read_control(
        &mut self,
        request_type: u8,
        request: u8,
        value: u16,
        index: u16,
        buf: &mut [u8],
    ) -> Result<usize>;
}

/// Refuses a device with the SDWire's USB id whose product string is not `sd-wire`.
fn identify(serial: &str, product: &str) -> Result<()> {
    let what = match product {
        PRODUCT_STRING => return Ok(()),
        "sd-mux" => "a Samsung SD-MUX",
        "usb-mux" => "a Samsung USB-MUX",
        _ => "another product",
    };
    Err(Error::input(format!(
        "sdwire {serial}: the USB device {VENDOR:04x}:{PRODUCT:04x} with that serial is {what}, \
         not an SDWire (product string \"{product}\", want \"{PRODUCT_STRING}\"); the harness \
         does not drive it"
    )))
}

/// A USB device opened with `rusb`.
pub struct RusbDevice {
    handle: rusb::DeviceHandle<rusb::Context>,
    serial: String,
    /// The device's sysfs name, e.g. `1-1.2`.
    port: String,
}

impl RusbDevice {
    /// Opens the SDWire `vendor:product` whose serial is `serial`; a device with that serial
    /// but another product string is refused.
    pub fn open(vendor: u16, product: u16, serial: &str) -> Result<RusbDevice> {
        use rusb::UsbContext;
        let ctx = rusb::Context::new()
            .map_err(|e| Error::input(format!("sdwire {serial}: cannot use USB: {e}")))?;
        let devices = ctx
            .devices()
            .map_err(|e| Error::input(format!("sdwire {serial}: cannot list USB devices: {e}")))?;
        let (mut refused, mut unopened) = (None, None);
        for dev in devices.iter() {
            let Ok(desc) = dev.device_descriptor() else {
                continue;
            };
            if desc.vendor_id() != vendor || desc.product_id() != product {
                continue;
            }
            let handle = match dev.open() {
                Ok(h) => h,
                Err(e) => {
                    unopened.get_or_insert(e);
                    continue;
                }
            };
            let Ok(s) = handle.read_serial_number_string_ascii(&desc) else {
                continue;
            };
            if s != serial {
                continue;
            }
            let name = handle.read_product_string_ascii(&desc).unwrap_or_default();
            if let Err(e) = identify(serial, &name) {
                refused.get_or_insert(e);
                continue;
            }
            let ports = dev.port_numbers().unwrap_or_default();
            let path: Vec<String> = ports.iter().map(u8::to_string).collect();
            return Ok(RusbDevice {
                handle,
                serial: s,
                port: format!("{}-{}", dev.bus_number(), path.join(".")),
            });
        }
        if let Some(e) = refused {
            return Err(e);
        }
        let hint = unopened.map_or(String::new(), |e| {
            format!("; a {vendor:04x}:{product:04x} device could not be opened: {e}")
        });
        Err(Error::input(format!(
            "sdwire {serial} not found (no USB device {vendor:04x}:{product:04x} with that serial{hint})"
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

    fn read_control(
        &mut self,
        rt: u8,
        req: u8,
        value: u16,
        index: u16,
        buf: &mut [u8],
    ) -> Result<usize> {
        self.handle
            .read_control(rt, req, value, index, buf, Duration::from_secs(1))
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

    /// The pins' levels, as the FTDI reports them.
    fn read_pins(&mut self) -> Result<u8> {
        let mut buf = [0u8; 1];
        let n = self
            .usb
            .read_control(REQUEST_TYPE_IN, SIO_READ_PINS, 0, INTERFACE_A, &mut buf)?;
        if n != 1 {
            return Err(Error::infra(format!(
                "sdwire {}: reading the pins returned {n} bytes",
                self.serial
            )));
        }
        Ok(buf[0])
    }

    /// The side the card is on, read from CBUS pin 0.
    pub fn side(&mut self) -> Result<MuxSide> {
        Ok(side_of(self.read_pins()?))
    }
}

fn side_of(pins: u8) -> MuxSide {
    if pins & CBUS_HOST != 0 {
        MuxSide::Host
    } else {
        MuxSide::Dut
    }
}

fn side_name(side: MuxSide) -> &'static str {
    match side {
        MuxSide::Host => "host",
        MuxSide::Dut => "DUT",
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
        let pins = self.read_pins()?;
        if side_of(pins) != side {
            return Err(Error::infra(format!(
                "sdwire {} was switched to the {} but its pins read back {} (pins {pins:#04x})",
                self.serial,
                side_name(side),
                side_name(side_of(pins))
            )));
        }
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

    /// One control transfer: request type, request, value, index, and the OUT data or the
    /// IN length.
    type Ctl = (u8, u8, u16, u16, Vec<u8>);

    /// An FT200X in CBUS bit-bang mode: setting the mode sets the pins; `stuck` overrides what
    /// they read.
    #[derive(Default)]
    struct FakeUsb {
        sent: Vec<Ctl>,
        pins: u8,
        stuck: Option<u8>,
    }

    impl UsbControl for FakeUsb {
        fn write_control(&mut self, rt: u8, req: u8, v: u16, i: u16, d: &[u8]) -> Result<()> {
            self.sent.push((rt, req, v, i, d.to_vec()));
            self.pins = (v & 0x0F) as u8;
            Ok(())
        }
        fn read_control(&mut self, rt: u8, req: u8, v: u16, i: u16, b: &mut [u8]) -> Result<usize> {
            self.sent.push((rt, req, v, i, vec![0; b.len()]));
            b[0] = self.stuck.unwrap_or(self.pins);
            Ok(1)
        }
    }

    fn sdwire() -> SdWire<FakeUsb> {
        let mut s = SdWire::with_transport(FakeUsb::default(), "sd-wire_11", None);
        s.switch_wait = Duration::ZERO;
        s
    }

    // What sd-mux-ctrl (tizen tools/testlab/sd-mux, src/main.cpp) does through libftdi for an
    // SDWire: `--ts`/`--dut` is ftdi_set_bitmode(0xF0 | 1 or 0, BITMODE_CBUS), a vendor OUT
    // request 0x0B with value (mode << 8) | mask on interface A (index 1); `--status` is
    // ftdi_read_pins, a vendor IN request 0x0C of 1 byte, bit 0 set meaning the test server.
    const VENDOR_TS: Ctl = (0x40, 0x0B, 0x20F1, 1, Vec::new());
    const VENDOR_DUT: Ctl = (0x40, 0x0B, 0x20F0, 1, Vec::new());
    /// The IN data stage is one byte (recorded as one zero).
    fn vendor_status() -> Ctl {
        (0xC0, 0x0C, 0x0000, 1, vec![0])
    }

    #[test]
    fn sdwire_fake_host_sets_cbus0_high_and_reads_it_back() {
        let mut s = sdwire();
        s.switch(MuxSide::Host).unwrap();
        assert_eq!(s.usb.sent, vec![VENDOR_TS, vendor_status()]);
    }

    #[test]
    fn sdwire_fake_dut_sets_cbus0_low_and_reads_it_back() {
        let mut s = sdwire();
        s.switch(MuxSide::Dut).unwrap();
        assert_eq!(s.usb.sent, vec![VENDOR_DUT, vendor_status()]);
    }

    #[test]
    fn sdwire_fake_reads_its_side_from_cbus0() {
        for (pins, want) in [
            (0x01, MuxSide::Host),
            (0xF1, MuxSide::Host),
            (0x00, MuxSide::Dut),
            (0xFE, MuxSide::Dut),
        ] {
            let mut s = sdwire();
            s.usb.stuck = Some(pins);
            assert_eq!(s.side().unwrap(), want, "pins {pins:#x}");
            assert_eq!(s.usb.sent, vec![vendor_status()]);
        }
    }

    #[test]
    fn sdwire_fake_a_switch_the_pins_do_not_show_is_an_infra_error() {
        let mut s = sdwire();
        s.usb.stuck = Some(0x00);
        let err = s.switch(MuxSide::Host).unwrap_err();
        assert!(matches!(err, Error::Infra(_)));
        assert_eq!(
            err.to_string(),
            "sdwire sd-wire_11 was switched to the host but its pins read back DUT (pins 0x00)"
        );
        let mut s = sdwire();
        s.usb.stuck = Some(0x01);
        assert!(s.switch(MuxSide::Dut).is_err());
    }

    #[test]
    fn only_the_sd_wire_product_string_is_an_sdwire() {
        identify("sd-wire_11", "sd-wire").unwrap();
        for (product, what) in [
            ("sd-mux", "a Samsung SD-MUX"),
            ("usb-mux", "a Samsung USB-MUX"),
            ("FT200X USB I2C", "another product"),
            ("", "another product"),
            ("sd-wire2", "another product"),
        ] {
            let err = identify("sd-wire_11", product).unwrap_err();
            assert!(matches!(err, Error::Input(_)));
            let msg = err.to_string();
            assert!(msg.contains(&format!("is {what}, not an SDWire")), "{msg}");
            assert!(
                msg.contains(&format!("(product string \"{product}\"")),
                "{msg}"
            );
        }
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
