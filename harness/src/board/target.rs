//! A board on a rig as a [`Target`]: the board flow. Its card is flashed and configured
//! through the SD muxer while the power is off, its UART feeds the console engine, and its
//! address comes the way the rig says.
//!
//! The flow only sees the roles ([`Media`], [`Power`], [`ConsolePort`](crate::device::ConsolePort))
//! and an address, so a USB-SD-Mux board and the emulated rig run the same code.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::address;
use super::card::write_card;
use super::rig::Rig;
use super::spec::{in_rig, AddressSpec};
use crate::config::suite::Capability;
use crate::console::Console;
use crate::device::{Media, MuxSide, Power};
use crate::error::{Context, Error, Result};
use crate::flash::FlashReport;
use crate::image::configure::{configure, Change};
use crate::target::Target;

/// A board driven through its rig's hardware.
pub struct BoardTarget {
    rig: String,
    media: Box<dyn Media>,
    power: Box<dyn Power>,
    console: Console,
    address: AddressSpec,
    image: PathBuf,
    /// The board's mDNS host name, read from the card's `config.json` after configuring it.
    mdns_host: Option<String>,
    /// The address found since the card was last written.
    found: Option<SocketAddr>,
    notes: Vec<String>,
}

impl BoardTarget {
    /// Opens the rig's drivers and attaches its serial port to `console` (once: a UART stays
    /// open across power cycles); `image` is the raw image each fresh device gets. Missing
    /// hardware is bad input, naming the rig.
    pub fn open(rig: &Rig, image: &Path, console: Console) -> Result<BoardTarget> {
        let hw = rig.hardware()?;
        let named = |e| in_rig(&rig.name, e);
        let media = hw.media.open().map_err(named)?;
        let power = hw.power.open().map_err(named)?;
        let port = hw.console.open().map_err(named)?;
        console.attach(port).map_err(named)?;
        let notes = vec![
            format!("media: {}", media.describe()),
            format!("power: {}", power.describe()),
            format!(
                "console: serial port {} at {} baud",
                hw.console.port.display(),
                hw.console.baud
            ),
            format!("address: {}", describe(&hw.address)),
        ];
        Ok(BoardTarget {
            rig: rig.name.clone(),
            media,
            power,
            console,
            address: hw.address,
            image: image.to_path_buf(),
            mdns_host: None,
            found: None,
            notes,
        })
    }

    fn named(&self, e: Error) -> Error {
        in_rig(&self.rig, e)
    }

    /// The address if it is known without asking the board.
    fn known(&self) -> Option<SocketAddr> {
        match &self.address {
            AddressSpec::Fixed(spec) | AddressSpec::Forwarded { ssh: spec, .. } => {
                address::fixed(spec).ok()
            }
            _ => self.found,
        }
    }

    /// Runs `edit` on the card's host device with the card on the host side, then hands the
    /// card back to the board (also on failure; the edit's error wins).
    fn on_host(&mut self, edit: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
        let who = self.media.describe();
        self.media.switch(MuxSide::Host)?;
        let edited = self.media.host_device().and_then(|dev| edit(&dev));
        let back = self.media.switch(MuxSide::Dut);
        edited.map_err(|e| match e {
            Error::Infra(m) => Error::Infra(format!("{who}: {m}")),
            other => other,
        })?;
        back
    }
}

impl Target for BoardTarget {
    fn name(&self) -> String {
        format!("rig {}", self.rig)
    }

    fn power(&mut self) -> &mut dyn Power {
        self.power.as_mut()
    }

    fn console(&self) -> &Console {
        &self.console
    }

    fn ssh_addr(&mut self, timeout: Duration) -> Result<SocketAddr> {
        if let Some(addr) = self.known() {
            return Ok(addr);
        }
        let addr = match &self.address {
            AddressSpec::Fixed(spec) | AddressSpec::Forwarded { ssh: spec, .. } => {
                address::fixed(spec)
            }
            AddressSpec::Mdns => {
                let host = self.mdns_host.clone().ok_or_else(|| {
                    Error::infra("the board's mDNS name is not known before its card is configured")
                })?;
                address::mdns(&host, timeout)
            }
            AddressSpec::Console => address::from_console(&self.console, timeout),
        }
        .map_err(|e| self.named(e))?;
        self.found = Some(addr);
        Ok(addr)
    }

    fn engine_addr(&self) -> Option<SocketAddr> {
        match &self.address {
            AddressSpec::Forwarded { engine, .. } => {
                engine.as_deref().and_then(|e| address::fixed(e).ok())
            }
            // A non-standard SSH port says nothing about where the engine is.
            AddressSpec::Fixed(spec) if address::has_port(spec) => None,
            _ => self.known().map(|a| SocketAddr::new(a.ip(), 2375)),
        }
    }

    fn host_addr(&self) -> Option<IpAddr> {
        match &self.address {
            AddressSpec::Forwarded { host_ip, .. } => *host_ip,
            _ => self.known().and_then(|a| address::local_towards(a.ip())),
        }
    }

    fn serve_addr(&self) -> IpAddr {
        match (&self.address, self.known()) {
            // The NAT hands the board's connections to the forwarding host: this one, when
            // the forwarded ports are on loopback.
            (AddressSpec::Forwarded { .. }, Some(a)) if a.ip().is_loopback() => a.ip(),
            (AddressSpec::Forwarded { .. }, _) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            _ => self
                .host_addr()
                .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        }
    }

    fn capabilities(&self) -> Vec<Capability> {
        match self.address {
            // The board answered mDNS here, so the harness is on its LAN.
            AddressSpec::Mdns => vec![Capability::Power, Capability::Lan],
            _ => vec![Capability::Power],
        }
    }

    fn fresh_image(&mut self) -> Result<()> {
        self.power.off().map_err(|e| self.named(e))?;
        self.found = None;
        tracing::info!(
            "rig {}: flashing {} to {}",
            self.rig,
            self.image.display(),
            self.media.describe()
        );
        let report = write_card(
            self.media.as_mut(),
            &self.image,
            &|o| o.cancel = Some(crate::interrupt::requested),
            &|_| {},
        )
        .map_err(|e| in_rig(&self.rig, e))?;
        tracing::info!("rig {}: {}", self.rig, summary(&report));
        Ok(())
    }

    fn use_image(&mut self, image: &Path, _boot: &crate::image::partitions::Partition) {
        self.image = image.to_path_buf();
    }

    fn configure_image(&mut self, changes: &[Change]) -> Result<()> {
        self.power.off().map_err(|e| self.named(e))?;
        self.found = None;
        let want_host = self.address == AddressSpec::Mdns;
        let mut host = None;
        self.on_host(|card| {
            configure(card, changes)?;
            if want_host {
                host = Some(mdns_host(card)?);
            }
            Ok(())
        })
        .map_err(|e| in_rig(&self.rig, e))?;
        if host.is_some() {
            self.mdns_host = host;
        }
        tracing::info!(
            "rig {}: configured the card ({} changes)",
            self.rig,
            changes.len()
        );
        Ok(())
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }
}

fn describe(addr: &AddressSpec) -> String {
    match addr {
        AddressSpec::Fixed(a) => format!("fixed {a}"),
        AddressSpec::Mdns => "mDNS (<hostname>.local from config.json)".into(),
        AddressSpec::Console => "read from the console after login".into(),
        AddressSpec::Forwarded {
            ssh,
            engine,
            host_ip,
        } => format!(
            "forwarded: SSH at {ssh}, engine at {}, harness seen as {}",
            engine.as_deref().unwrap_or("none"),
            host_ip.map_or("unknown".into(), |ip| ip.to_string())
        ),
    }
}

/// One line of figures about a flash.
fn summary(r: &FlashReport) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let rate = mib(r.written) / r.write_time.as_secs_f64().max(1e-3);
    format!(
        "wrote {:.0} MiB of {:.0} MiB in {} ranges in {:.1}s ({rate:.0} MiB/s){}",
        mib(r.written),
        mib(r.image_size),
        r.ranges,
        r.write_time.as_secs_f64(),
        r.verify_time
            .map(|t| format!(", verified in {:.1}s", t.as_secs_f64()))
            .unwrap_or_default()
    )
}

/// The name a balenaOS board announces over mDNS: `hostname` from the card's `config.json`,
/// else the first 7 characters of its `uuid`.
fn mdns_host(card: &Path) -> Result<String> {
    use crate::image::{bootfs::open_boot, config_json::ConfigJson, partitions::ReadOnly};
    let mut file =
        std::fs::File::open(card).infra_ctx(|| format!("cannot open {}", card.display()))?;
    let boot = open_boot(ReadOnly(&mut file))?;
    let bytes = boot.read("config.json")?.unwrap_or_else(|| b"{}".to_vec());
    let config = ConfigJson::parse(&bytes, "config.json")?;
    let text = |k: &str| config.get(k).and_then(|v| v.as_str()).map(str::to_string);
    text("hostname")
        .or_else(|| text("uuid").map(|u| u.chars().take(7).collect()))
        .ok_or_else(|| {
            Error::input("address mdns needs `hostname` or `uuid` in config.json to know the name")
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::board::spec::{ConsoleSpec, MediaSpec, PowerSpec};
    use crate::image::partitions::TableKind;
    use crate::image::testimg::make_test_image;

    /// A board whose card is a file, whose power switch appends to `power.log`, and whose
    /// UART is a pty nobody answers on.
    struct Bench {
        dir: tempfile::TempDir,
        board: BoardTarget,
        _uart: std::fs::File,
    }

    fn bench(address: AddressSpec) -> Bench {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let image = d.join("os.img");
        make_test_image(&image, TableKind::Msdos).unwrap();
        let (uart, port) = crate::board::serial::tests::pty();
        let log = d.join("power.log").display().to_string();
        let rig = Rig {
            name: "bench".into(),
            description: "a fake board".into(),
            machine: "m".into(),
            emulated: false,
            media: Some(MediaSpec::File {
                path: d.join("card.img"),
            }),
            power: Some(PowerSpec::Command {
                on: format!("echo on >> {log}"),
                off: format!("echo off >> {log}"),
            }),
            console: Some(ConsoleSpec {
                port: port.into(),
                baud: 115_200,
            }),
            address: Some(address),
            tags: Vec::new(),
            health_image: None,
        };
        let console = Console::new(&d.join("serial.log")).unwrap();
        let board = BoardTarget::open(&rig, &image, console).unwrap();
        Bench {
            dir,
            board,
            _uart: uart,
        }
    }

    fn power_log(b: &Bench) -> String {
        std::fs::read_to_string(b.dir.path().join("power.log")).unwrap_or_default()
    }

    fn card_config(b: &Bench) -> String {
        use crate::image::{bootfs::open_boot, partitions::ReadOnly};
        let mut f = std::fs::File::open(b.dir.path().join("card.img")).unwrap();
        let boot = open_boot(ReadOnly(&mut f)).unwrap();
        String::from_utf8(boot.read("config.json").unwrap().unwrap()).unwrap()
    }

    #[test]
    fn flashes_and_configures_the_card_with_the_power_off() {
        let mut b = bench(AddressSpec::Fixed("127.0.0.1:2222".into()));
        assert_eq!(b.board.notes().len(), 4);
        b.board.fresh_image().unwrap();
        assert_eq!(
            std::fs::read(b.dir.path().join("card.img")).unwrap(),
            std::fs::read(b.dir.path().join("os.img")).unwrap()
        );
        b.board
            .configure_image(&[Change::Set("harnessMark".into(), "1".into())])
            .unwrap();
        assert!(card_config(&b).contains("harnessMark"));
        assert_eq!(power_log(&b), "off\noff\n");
        b.board.power().on().unwrap();
        assert_eq!(power_log(&b), "off\noff\non\n");
    }

    #[test]
    fn a_fixed_address_with_a_port_is_ssh_only_on_this_host() {
        let mut b = bench(AddressSpec::Fixed("127.0.0.1:2222".into()));
        let addr = b.board.ssh_addr(Duration::from_secs(1)).unwrap();
        assert_eq!(addr.to_string(), "127.0.0.1:2222");
        assert_eq!(b.board.engine_addr(), None);
        assert_eq!(b.board.host_addr(), None);
        assert_eq!(b.board.capabilities(), vec![Capability::Power]);
    }

    #[test]
    fn forwarded_ports_give_ssh_engine_and_the_harness_as_the_board_sees_it() {
        let mut b = bench(AddressSpec::Forwarded {
            ssh: "127.0.0.1:2222".into(),
            engine: Some("127.0.0.1:2375".into()),
            host_ip: Some("10.0.2.2".parse().unwrap()),
        });
        let ssh = b.board.ssh_addr(Duration::from_secs(1)).unwrap();
        assert_eq!(ssh.to_string(), "127.0.0.1:2222");
        assert_eq!(b.board.engine_addr().unwrap().to_string(), "127.0.0.1:2375");
        assert_eq!(b.board.host_addr(), Some("10.0.2.2".parse().unwrap()));
        assert_eq!(b.board.serve_addr(), IpAddr::from([127, 0, 0, 1]));
    }

    #[test]
    fn the_mdns_name_comes_from_the_configured_card() {
        let mut b = bench(AddressSpec::Mdns);
        assert!(b.board.capabilities().contains(&Capability::Lan));
        b.board.fresh_image().unwrap();
        b.board.configure_image(&[]).unwrap();
        assert_eq!(b.board.mdns_host.as_deref(), Some("balena"));
        b.board
            .configure_image(&[
                Change::Remove("hostname".into()),
                Change::Set("uuid".into(), "0123456789abcdef".into()),
            ])
            .unwrap();
        assert_eq!(b.board.mdns_host.as_deref(), Some("0123456"));
    }

    #[test]
    fn a_missing_image_is_bad_input_naming_the_rig() {
        let mut b = bench(AddressSpec::Console);
        std::fs::remove_file(b.dir.path().join("os.img")).unwrap();
        let err = b.board.fresh_image().unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert!(err.to_string().starts_with("rig bench: image "), "{err}");
    }
}
