use super::*;
use std::sync::{Arc, Mutex};

/// One I2C transaction with the PCA9536, decoded from the SCSI command that carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tx {
    /// Write `value` to register `reg`.
    W(u8, u8),
    /// Read one byte from register `reg`.
    R(u8),
}
use Tx::{R, W};

// What the vendor tool (linux-automation/usbsdmux at a26197c, `UsbSdMuxClassic` over
// `Pca9536` in usbsdmux.py and i2c_gpio.py) sends for each command, with a PCA9536 fresh from
// power-on (configuration register 0xFF). `host` and `dut` start with `mode_disconnect`:
// output port 0x0B, then `set_pin_to_output(0x0F)`, a read-modify-write of the configuration.
const VENDOR_HOST: &[Tx] = &[W(0x01, 0x0B), R(0x03), W(0x03, 0xF0), W(0x01, 0x00)];
const VENDOR_DUT: &[Tx] = &[
    W(0x01, 0x0B),
    R(0x03),
    W(0x03, 0xF0),
    W(0x01, 0x0F),
    W(0x01, 0x0C),
];
/// `usbsdmux SG get`: `get_input_values`, the input port.
const VENDOR_GET: &[Tx] = &[R(0x00)];

/// A PCA9536 behind a USB2642: registers as after power-on; the input port reads the output
/// levels on output pins and 1 (pull-up) on input pins, unless `stuck` overrides it.
#[derive(Debug)]
struct Pca {
    output: u8,
    config: u8,
    stuck: Option<u8>,
}

impl Default for Pca {
    fn default() -> Self {
        Pca {
            output: 0xFF,
            config: 0xFF,
            stuck: None,
        }
    }
}

#[derive(Clone, Default)]
struct FakeScsi {
    sent: Arc<Mutex<Vec<Tx>>>,
    pca: Arc<Mutex<Pca>>,
}

impl ScsiTransport for FakeScsi {
    fn send(&mut self, cdb: &[u8; 16], data: &[u8]) -> Result<()> {
        // The exact write command: I2C write of 2 bytes to 0x41, 512-byte data phase.
        assert_eq!(
            cdb,
            &[0xCF, 0x23, 0x82, 0x00, 0x00, 0x02, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(data.len(), 512);
        assert!(data[2..].iter().all(|&b| b == 0));
        let (reg, value) = (data[0], data[1]);
        let mut pca = self.pca.lock().unwrap();
        match reg {
            0x01 => pca.output = value,
            0x03 => pca.config = value,
            _ => panic!("write to register {reg:#x}"),
        }
        self.sent.lock().unwrap().push(W(reg, value));
        Ok(())
    }

    fn receive(&mut self, cdb: &[u8; 16], buf: &mut [u8]) -> Result<()> {
        // The exact read command: write 1 byte (the register) to 0x41, read 1 byte back.
        assert_eq!(&cdb[..7], &[0xCF, 0x22, 0x82, 0x83, 0x00, 0x01, 0x01]);
        assert!(cdb[8..].iter().all(|&b| b == 0));
        assert_eq!(buf.len(), 512);
        let reg = cdb[7];
        let pca = self.pca.lock().unwrap();
        buf[0] = match reg {
            0x00 => pca.stuck.unwrap_or((pca.output & !pca.config) | pca.config),
            0x01 => pca.output,
            0x03 => pca.config,
            _ => panic!("read of register {reg:#x}"),
        };
        self.sent.lock().unwrap().push(R(reg));
        Ok(())
    }
}

fn mux(fake: &FakeScsi) -> UsbSdMux<FakeScsi> {
    let mut m = UsbSdMux::with_transport(fake.clone(), Path::new("/dev/sg3"), Path::new("/sys"));
    m.power_off_wait = Duration::ZERO;
    m
}

fn sent(fake: &FakeScsi) -> Vec<Tx> {
    fake.sent.lock().unwrap().clone()
}

/// The vendor's transactions, then the read-back of the input port.
fn then_read_back(vendor: &[Tx]) -> Vec<Tx> {
    [vendor, VENDOR_GET].concat()
}

#[test]
fn usbsdmux_fake_switch_to_host_sends_the_vendor_bytes_then_reads_back() {
    let fake = FakeScsi::default();
    mux(&fake).switch(MuxSide::Host).unwrap();
    assert_eq!(sent(&fake), then_read_back(VENDOR_HOST));
}

#[test]
fn usbsdmux_fake_switch_to_dut_sends_the_vendor_bytes_then_reads_back() {
    let fake = FakeScsi::default();
    mux(&fake).switch(MuxSide::Dut).unwrap();
    assert_eq!(sent(&fake), then_read_back(VENDOR_DUT));
}

#[test]
fn usbsdmux_fake_keeps_the_other_pins_direction() {
    let fake = FakeScsi::default();
    fake.pca.lock().unwrap().config = 0x3F;
    mux(&fake).switch(MuxSide::Host).unwrap();
    assert_eq!(sent(&fake)[2], W(0x03, 0x30));
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
fn usbsdmux_fake_reads_the_side_from_the_input_port() {
    for (pins, want) in [
        (0x00, Some(MuxSide::Host)),
        (0x0C, Some(MuxSide::Dut)),
        (0x0B, None),
    ] {
        let fake = FakeScsi::default();
        fake.pca.lock().unwrap().stuck = Some(pins);
        assert_eq!(mux(&fake).side().unwrap(), want);
        assert_eq!(sent(&fake), VENDOR_GET);
    }
}

#[test]
fn usbsdmux_fake_the_side_is_the_pins_not_what_they_were_told() {
    // The output register says host, the pins say the card is unpowered: the pins win.
    let fake = FakeScsi::default();
    {
        let mut pca = fake.pca.lock().unwrap();
        pca.output = 0x00;
        pca.config = 0xF0;
        pca.stuck = Some(0x0B);
    }
    assert_eq!(mux(&fake).side().unwrap(), None);
}

#[test]
fn usbsdmux_fake_a_switch_the_pins_do_not_show_is_an_infra_error() {
    let fake = FakeScsi::default();
    fake.pca.lock().unwrap().stuck = Some(0x0F);
    let err = mux(&fake).switch(MuxSide::Host).unwrap_err();
    assert!(matches!(err, Error::Infra(_)));
    assert_eq!(
        err.to_string(),
        "usbsdmux /dev/sg3 was switched to the host but its pins read back off (input port 0x0f)"
    );
    let fake = FakeScsi::default();
    fake.pca.lock().unwrap().stuck = Some(0x00);
    let err = mux(&fake).switch(MuxSide::Dut).unwrap_err();
    assert!(
        err.to_string()
            .contains("to the DUT but its pins read back host"),
        "{err}"
    );
}

/// A fake `/dev` and `/sys`: `dev/sg3`, its udev link `dev/usb-sd-mux/id-000000000815`, and
/// the SCSI device with SCSI model `model` and block device `sdq`.
struct Tree {
    _dir: tempfile::TempDir,
    sys: PathBuf,
    sg: PathBuf,
    link: PathBuf,
    scsi: PathBuf,
}

fn tree(model: &str) -> Tree {
    let dir = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(dir.path()).unwrap();
    let (sys, dev) = (root.join("sys"), root.join("dev"));
    let usb = sys.join("devices/usb1/1-1");
    let scsi = usb.join("1-1:1.0/host0/target0:0:0/0:0:0:0");
    std::fs::create_dir_all(scsi.join("block/sdq")).unwrap();
    // sysfs pads the model to 16 characters.
    std::fs::write(scsi.join("model"), format!("{model:<16}\n")).unwrap();
    std::fs::write(usb.join("serial"), "000000000815\n").unwrap();
    let class = sys.join("class/scsi_generic/sg3");
    std::fs::create_dir_all(&class).unwrap();
    std::os::unix::fs::symlink(&scsi, class.join("device")).unwrap();
    std::fs::create_dir_all(dev.join("usb-sd-mux")).unwrap();
    let sg = dev.join("sg3");
    std::fs::write(&sg, "").unwrap();
    let link = dev.join("usb-sd-mux/id-000000000815");
    std::os::unix::fs::symlink("../sg3", &link).unwrap();
    Tree {
        _dir: dir,
        sys,
        sg,
        link,
        scsi,
    }
}

#[test]
fn usbsdmux_fake_named_by_its_udev_link_finds_its_card() {
    let t = tree(MODEL_CLASSIC);
    let want = t.sys.join("class/scsi_generic/sg3/device/block");
    let m = UsbSdMux::with_transport(FakeScsi::default(), &t.link, &t.sys);
    assert_eq!(m.block_dir(), want);
    assert_eq!(block_under(&m.block_dir()), Some(PathBuf::from("/dev/sdq")));
    let shown = m.describe();
    assert!(shown.ends_with(&format!("({})", t.sg.display())), "{shown}");
    // The node itself gives the same directory.
    let m = UsbSdMux::with_transport(FakeScsi::default(), &t.sg, &t.sys);
    assert_eq!(m.block_dir(), want);
}

#[test]
fn usbsdmux_fake_a_link_is_not_looked_up_by_its_own_name() {
    let t = tree(MODEL_CLASSIC);
    let m = UsbSdMux::with_transport(FakeScsi::default(), &t.link, &t.sys);
    assert!(!m
        .block_dir()
        .starts_with(t.sys.join("class/scsi_generic/id-000000000815")));
    assert!(m
        .block_dir()
        .starts_with(t.sys.join("class/scsi_generic/sg3")));
}

#[test]
fn usbsdmux_fake_the_classic_opens_through_its_link() {
    let t = tree(MODEL_CLASSIC);
    check_in(&t.link, &t.sys).unwrap();
    let m = UsbSdMux::open_in(&t.link, &t.sys).unwrap();
    assert_eq!(m.node, t.sg);
}

#[test]
fn usbsdmux_fake_the_fast_is_refused() {
    let t = tree(MODEL_FAST);
    let err = UsbSdMux::open_in(&t.link, &t.sys).err().unwrap();
    assert!(matches!(err, Error::Input(_)));
    let msg = err.to_string();
    assert!(msg.contains("is a USB-SD-Mux FAST"), "{msg}");
    assert!(msg.contains("does not drive"), "{msg}");
    assert!(check_in(&t.sg, &t.sys).is_err());
}

#[test]
fn usbsdmux_fake_an_unknown_or_unreadable_model_is_refused() {
    let t = tree("Flash Reader");
    let err = check_in(&t.sg, &t.sys).unwrap_err();
    assert!(matches!(err, Error::Input(_)));
    assert!(
        err.to_string()
            .contains("is not a USB-SD-Mux: its SCSI model is \"Flash Reader\""),
        "{err}"
    );
    std::fs::remove_file(t.scsi.join("model")).unwrap();
    let err = check_in(&t.sg, &t.sys).unwrap_err();
    assert!(
        err.to_string().contains("cannot read its SCSI model"),
        "{err}"
    );
}

#[test]
fn usbsdmux_fake_finds_the_block_device_and_the_serial() {
    let t = tree(MODEL_CLASSIC);
    assert_eq!(
        find_by_serial(&t.sys, "000000000815").unwrap(),
        Path::new("/dev/sg3")
    );
    let err = find_by_serial(&t.sys, "nope").unwrap_err();
    assert!(matches!(err, Error::Input(_)));

    let mut m = UsbSdMux::with_transport(FakeScsi::default(), Path::new("/dev/sg3"), &t.sys);
    m.settle = Settle {
        timeout: Duration::from_millis(300),
        stable_for: Duration::from_millis(20),
        poll: Duration::from_millis(10),
    };
    // /dev/sdq does not exist here, so the wait must time out naming what it waited for.
    let err = m.host_device().unwrap_err();
    assert!(matches!(err, Error::Infra(_)));
    assert!(err.to_string().contains("usbsdmux /dev/sg3"), "{err}");
}

#[test]
fn a_missing_sg_device_is_one_input_line() {
    let err = UsbSdMux::open(Path::new("/dev/sg77")).err().unwrap();
    assert_eq!(err.to_string(), "usbsdmux /dev/sg77 does not exist");
}
