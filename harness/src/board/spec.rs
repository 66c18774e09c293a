//! The hardware part of a rig file, as written in `rigs/*.yaml`: which SD muxer, power switch
//! and serial port a board uses. Each spec can check that its hardware is present (for
//! `harness rigs`, without switching anything) and open its driver.

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::device::{ConsolePort, Media, Power};
use crate::error::{Error, Result};

use super::{CommandPower, FileMedia, QmpPower, Relay, SdWire, SerialConsole, Uhubctl, UsbSdMux};

/// How the board's storage is switched between host and board.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum MediaSpec {
    /// A classic USB-SD-Mux (the FAST is refused), by its `/dev/sg*` path or its USB serial.
    Usbsdmux {
        /// The SCSI generic device, e.g. `/dev/sg1` or its udev link
        /// `/dev/usb-sd-mux/id-000000000815`.
        #[serde(default)]
        sg: Option<PathBuf>,
        /// The USB serial (`000000000815`), found in sysfs.
        #[serde(default)]
        serial: Option<String>,
    },
    /// An SDWire, by its USB serial.
    Sdwire {
        /// The USB serial (`sd-wire_11`).
        serial: String,
        /// The card reader's block device, if its sysfs neighbour lookup should be skipped.
        #[serde(default)]
        block_device: Option<PathBuf>,
    },
    /// An image file that stands in for the card (an emulated rig).
    File {
        /// The file.
        path: PathBuf,
    },
}

/// How the board's power is switched.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PowerSpec {
    /// A relay on a GPIO line (GPIO character device).
    Gpio {
        /// `gpiochip0` or `/dev/gpiochip0`.
        chip: String,
        /// The line offset on the chip.
        line: u32,
        /// A low level closes the relay.
        #[serde(default)]
        active_low: bool,
    },
    /// A switchable USB hub port.
    Uhubctl {
        /// The hub location (`1-1.4`).
        hub: String,
        /// The port number on the hub.
        port: u32,
    },
    /// Shell commands.
    Command {
        /// Turns the board on.
        on: String,
        /// Turns it off.
        off: String,
    },
    /// A QEMU's run state through its QMP socket (the emulated rig).
    Qmp {
        /// The QMP socket.
        socket: PathBuf,
    },
}

/// The board's serial console.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSpec {
    /// The port (`/dev/ttyUSB0`, a `/dev/serial/by-id/...` link, or a pty).
    pub port: PathBuf,
    /// The baud rate.
    #[serde(default = "default_baud")]
    pub baud: u32,
}

/// How to find the board's network address once it booted.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum AddressSpec {
    /// Resolve `<short uuid>.local` over mDNS.
    Mdns,
    /// A fixed address (a DHCP reservation): an IP or host name, with `:PORT` when SSH is
    /// not on 22222 (a forwarded port).
    Fixed(String),
    /// Read it from the console (`ip -4 addr` after login).
    Console,
    /// Ports forwarded to the board through NAT (a board behind a router, or the emulated
    /// rig's user network).
    Forwarded {
        /// Where its SSH port (22222) is reached, `HOST:PORT`.
        ssh: String,
        /// Where its engine's API (2375) is reached, `HOST:PORT`, if forwarded.
        #[serde(default)]
        engine: Option<String>,
        /// The harness's address as the board sees it (the NAT's inside address), so the
        /// board can reach servers the harness runs.
        #[serde(default)]
        host_ip: Option<std::net::IpAddr>,
    },
}

fn default_baud() -> u32 {
    115_200
}

impl MediaSpec {
    /// Checks the muxer is there, without switching it.
    pub fn check(&self) -> Result<()> {
        match self {
            MediaSpec::Usbsdmux { .. } => super::usbsdmux::check(&self.sg_path()?),
            // Opening claims nothing and sends nothing.
            MediaSpec::Sdwire { serial, .. } => super::sdwire::RusbDevice::open(
                super::sdwire::VENDOR,
                super::sdwire::PRODUCT,
                serial,
            )
            .map(|_| ()),
            MediaSpec::File { path } => match path.parent() {
                Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
                    Err(Error::input(format!(
                        "the directory of card image {} does not exist",
                        path.display()
                    )))
                }
                _ => Ok(()),
            },
        }
    }

    fn sg_path(&self) -> Result<PathBuf> {
        let MediaSpec::Usbsdmux { sg, serial } = self else {
            unreachable!("only called for usbsdmux")
        };
        match (sg, serial) {
            (Some(sg), _) if !sg.exists() => Err(Error::input(format!(
                "usbsdmux {} does not exist",
                sg.display()
            ))),
            (Some(sg), _) => Ok(sg.clone()),
            (None, Some(serial)) => super::usbsdmux::find_by_serial(Path::new("/sys"), serial),
            (None, None) => Err(Error::input("usbsdmux needs `sg` or `serial`")),
        }
    }

    /// Opens the muxer's driver.
    pub fn open(&self) -> Result<Box<dyn Media>> {
        Ok(match self {
            MediaSpec::Usbsdmux { .. } => Box::new(UsbSdMux::open(&self.sg_path()?)?),
            MediaSpec::Sdwire {
                serial,
                block_device,
            } => Box::new(SdWire::open(serial, block_device.clone())?),
            MediaSpec::File { path } => {
                self.check()?;
                Box::new(FileMedia::new(path))
            }
        })
    }
}

impl PowerSpec {
    /// Checks the switch is there, without switching it.
    pub fn check(&self) -> Result<()> {
        match self {
            PowerSpec::Gpio { chip, line, .. } => {
                super::relay::GpiodLine::open(chip, *line).map(|_| ())
            }
            PowerSpec::Uhubctl { .. } => in_path("uhubctl"),
            PowerSpec::Command { .. } => in_path("sh"),
            PowerSpec::Qmp { socket } if !socket.exists() => Err(Error::input(format!(
                "QMP socket {} does not exist",
                socket.display()
            ))),
            PowerSpec::Qmp { .. } => Ok(()),
        }
    }

    /// Opens the switch's driver.
    pub fn open(&self) -> Result<Box<dyn Power>> {
        Ok(match self {
            PowerSpec::Gpio {
                chip,
                line,
                active_low,
            } => Box::new(Relay::open(chip, *line, *active_low)?),
            PowerSpec::Uhubctl { hub, port } => {
                self.check()?;
                Box::new(Uhubctl::new(hub, *port))
            }
            PowerSpec::Command { on, off } => Box::new(CommandPower::new(on, off)),
            PowerSpec::Qmp { socket } => Box::new(QmpPower::connect(socket)?),
        })
    }
}

impl ConsoleSpec {
    /// Checks the port exists and is a character device, without opening it (opening a UART
    /// can toggle DTR, which resets some boards).
    pub fn check(&self) -> Result<()> {
        let shown = self.port.display();
        let meta = std::fs::metadata(&self.port)
            .map_err(|_| Error::input(format!("serial port {shown} does not exist")))?;
        if !meta.file_type().is_char_device() {
            return Err(Error::input(format!(
                "serial port {shown} is not a character device"
            )));
        }
        Ok(())
    }

    /// Opens the port.
    pub fn open(&self) -> Result<Box<dyn ConsolePort>> {
        Ok(Box::new(SerialConsole::open(&self.port, self.baud)?))
    }
}

/// Prefixes an error with the rig it came from, keeping its kind (`rig pi4: ...`).
pub fn in_rig(rig: &str, e: Error) -> Error {
    match e {
        Error::Input(m) => Error::Input(format!("rig {rig}: {m}")),
        Error::Infra(m) => Error::Infra(format!("rig {rig}: {m}")),
        other => other,
    }
}

fn in_path(tool: &str) -> Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    if std::env::split_paths(&path).any(|d| d.join(tool).is_file()) {
        Ok(())
    } else {
        Err(Error::input(format!("{tool} is not installed")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Hw {
        media: MediaSpec,
        power: PowerSpec,
        console: ConsoleSpec,
    }

    fn parse(text: &str) -> Hw {
        serde_saphyr::from_str(text).unwrap()
    }

    #[test]
    fn parses_each_kind() {
        let hw = parse(
            "media:\n  usbsdmux:\n    serial: \"000000000815\"\n\
             power:\n  gpio:\n    chip: gpiochip0\n    line: 17\n    active_low: true\n\
             console:\n  port: /dev/ttyUSB0\n",
        );
        assert_eq!(
            hw.media,
            MediaSpec::Usbsdmux {
                sg: None,
                serial: Some("000000000815".into())
            }
        );
        assert_eq!(
            hw.power,
            PowerSpec::Gpio {
                chip: "gpiochip0".into(),
                line: 17,
                active_low: true
            }
        );
        assert_eq!(hw.console.baud, 115_200);
        let hw = parse(
            "media:\n  sdwire:\n    serial: sd-wire_11\n\
             power:\n  uhubctl:\n    hub: 1-1.4\n    port: 2\n\
             console:\n  port: /dev/ttyAMA0\n  baud: 921600\n",
        );
        assert!(matches!(hw.media, MediaSpec::Sdwire { .. }));
        assert!(matches!(hw.power, PowerSpec::Uhubctl { port: 2, .. }));
        assert_eq!(hw.console.baud, 921_600);
    }

    #[test]
    fn parses_each_address() {
        let parse = |t: &str| serde_saphyr::from_str::<AddressSpec>(t).unwrap();
        assert_eq!(parse("mdns"), AddressSpec::Mdns);
        assert_eq!(
            parse("fixed: 10.0.0.7"),
            AddressSpec::Fixed("10.0.0.7".into())
        );
        assert_eq!(
            parse("forwarded:\n  ssh: 127.0.0.1:2222\n  host_ip: 10.0.2.2\n"),
            AddressSpec::Forwarded {
                ssh: "127.0.0.1:2222".into(),
                engine: None,
                host_ip: Some("10.0.2.2".parse().unwrap())
            }
        );
    }

    #[test]
    fn the_shipped_rigs_parse() {
        let rigs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../rigs");
        for entry in std::fs::read_dir(&rigs).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            for (key, check) in [("media", 0), ("power", 1), ("console", 2), ("address", 3)] {
                let Some(v) = doc.get(key) else { continue };
                let v = v.clone();
                let ok = match check {
                    0 => serde_json::from_value::<MediaSpec>(v).is_ok(),
                    1 => serde_json::from_value::<PowerSpec>(v).is_ok(),
                    3 => serde_json::from_value::<AddressSpec>(v).is_ok(),
                    _ => serde_json::from_value::<ConsoleSpec>(v).is_ok(),
                };
                assert!(ok, "{}: bad {key}", path.display());
            }
        }
    }

    #[test]
    fn missing_hardware_is_one_input_line_naming_the_rig() {
        let console = ConsoleSpec {
            port: "/dev/ttyUSB7".into(),
            baud: 115_200,
        };
        let err = in_rig("pi4", console.check().unwrap_err());
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            "rig pi4: serial port /dev/ttyUSB7 does not exist"
        );
        let gpio = PowerSpec::Gpio {
            chip: "gpiochip9".into(),
            line: 1,
            active_low: false,
        };
        assert_eq!(
            gpio.check().unwrap_err().to_string(),
            "gpio chip gpiochip9 does not exist"
        );
        let mux = MediaSpec::Usbsdmux {
            sg: Some("/dev/sg9".into()),
            serial: None,
        };
        assert_eq!(
            mux.open().err().unwrap().to_string(),
            "usbsdmux /dev/sg9 does not exist"
        );
        assert!(matches!(
            MediaSpec::Usbsdmux {
                sg: None,
                serial: None
            }
            .check(),
            Err(Error::Input(_))
        ));
    }

    #[test]
    fn a_file_card_is_always_on_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let spec = MediaSpec::File {
            path: dir.path().join("card.img"),
        };
        let mut m = spec.open().unwrap();
        m.switch(crate::device::MuxSide::Host).unwrap();
        assert_eq!(m.host_device().unwrap(), dir.path().join("card.img"));
    }
}
