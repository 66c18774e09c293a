//! A QEMU machine as a [`Target`]: the image lives in a copy-on-write overlay that is edited
//! while the machine is off, so the user's image is never written.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use super::{Network, QemuMachine, QemuOptions};
use crate::config::suite::Capability;
use crate::console::Console;
use crate::device::Power;
use crate::error::Result;
use crate::image::configure::{changed_ranges, edit_boot_partition, Change};
use crate::image::partitions::Partition;
use crate::target::Target;

/// A snapshot's files (in its folder): the machine's state, the frozen disk layer, the UEFI
/// variables.
pub const STATE: &str = "state.mig";
/// See [`STATE`].
pub const LAYER: &str = "disk.qcow2";
/// See [`STATE`].
pub const VARS: &str = "vars.fd";

/// A QEMU machine playing the device.
pub struct QemuTarget {
    name: String,
    machine: QemuMachine,
    opts: QemuOptions,
    console: Console,
    boot: Partition,
    notes: Vec<String>,
}

impl QemuTarget {
    /// A target for the machine `name`, booting `opts.base_image` whose boot partition is
    /// `boot`.
    pub fn new(
        name: &str,
        opts: QemuOptions,
        console: Console,
        boot: Partition,
        notes: Vec<String>,
    ) -> Result<QemuTarget> {
        let machine = QemuMachine::create(opts.clone(), Some(console.clone()))?;
        Ok(QemuTarget {
            name: name.to_string(),
            machine,
            opts,
            console,
            boot,
            notes,
        })
    }

    /// The QEMU machine itself (for QMP-level control).
    pub fn machine(&mut self) -> &mut QemuMachine {
        &mut self.machine
    }
}

impl Target for QemuTarget {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn power(&mut self) -> &mut dyn Power {
        &mut self.machine
    }

    fn console(&self) -> &Console {
        &self.console
    }

    fn ssh_addr(&mut self, _timeout: Duration) -> Result<SocketAddr> {
        Ok(self.machine.ssh_addr())
    }

    fn engine_addr(&self) -> Option<SocketAddr> {
        Some(self.machine.engine_addr())
    }

    fn host_addr(&self) -> Option<IpAddr> {
        Some(IpAddr::V4(match self.opts.network {
            // QEMU's user network maps its gateway to the host's loopback.
            Network::User => Ipv4Addr::new(10, 0, 2, 2),
            Network::Lan(_) => crate::lan::HOST_IP,
        }))
    }

    fn serve_addr(&self) -> IpAddr {
        match self.opts.network {
            Network::User => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Network::Lan(_) => IpAddr::V4(crate::lan::HOST_IP),
        }
    }

    fn capabilities(&self) -> Vec<Capability> {
        match self.opts.network {
            Network::User => vec![Capability::Power],
            Network::Lan(_) => vec![Capability::Power, Capability::Lan],
        }
    }

    fn fresh_image(&mut self) -> Result<()> {
        self.machine.off()?;
        self.machine = QemuMachine::create(self.opts.clone(), Some(self.console.clone()))?;
        Ok(())
    }

    fn configure_image(&mut self, changes: &[Change]) -> Result<()> {
        self.machine.off()?;
        let overlay = self.machine.overlay();
        let before = super::overlay::read(&overlay, self.boot.start, self.boot.size)?;
        let mut after = before.clone();
        edit_boot_partition(&mut after, changes)?;
        let ranges = changed_ranges(&before, &after, 64 << 10);
        let writes: Vec<(u64, &[u8])> = ranges
            .iter()
            .map(|&(off, len)| {
                (
                    self.boot.start + off,
                    &after[off as usize..(off + len) as usize],
                )
            })
            .collect();
        super::overlay::write(&overlay, &writes)
    }

    fn use_image(&mut self, image: &std::path::Path, boot: &Partition) {
        self.opts.base_image = image.to_path_buf();
        self.boot = boot.clone();
    }

    fn notes(&self) -> Vec<String> {
        self.notes.clone()
    }

    fn alive(&mut self) -> Result<()> {
        self.machine.check_running().map_err(|e| {
            crate::Error::infra(format!("{e} (console: {})", self.console.last_lines(3)))
        })
    }

    fn snapshot_identity(&self) -> Option<String> {
        use super::snapshot::{file_identity, which};
        let o = &self.opts;
        // Without vmgenid a restored guest would not reseed its RNG: no snapshots.
        if !o.spec.has_vmgenid() {
            return None;
        }
        let network = match &o.network {
            Network::User => "user".to_string(),
            Network::Lan(taps) => {
                let macs: Vec<&str> = taps.iter().map(|(_, mac)| mac.as_str()).collect();
                format!("lan {}", macs.join(" "))
            }
        };
        Some(
            [
                format!("qemu: {}", file_identity(&which(&o.spec.binary), true)),
                format!("spec: {:?}", o.spec),
                format!(
                    "firmware: {}",
                    o.spec
                        .firmware
                        .files()
                        .iter()
                        .map(|f| file_identity(f, true))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                format!("accel: {}", o.accel.qemu_name()),
                format!("network: {network}"),
                format!("disk: {:?}, serial: {:?}", o.disk, o.serial),
                // Not ctime: other devices' runs may touch it (a link count, a chmod).
                format!("image: {}", file_identity(&o.base_image, false)),
            ]
            .join("\n"),
        )
    }

    fn save_snapshot(&mut self, dir: &Path) -> Result<()> {
        self.machine.save(&dir.join(STATE))?;
        super::snapshot::freeze(&self.machine.overlay(), &dir.join(LAYER))?;
        if self.opts.spec.firmware.vars().is_none() {
            return Ok(());
        }
        let vars = self.opts.dir.join("vars.fd");
        std::fs::copy(&vars, dir.join(VARS))
            .map(|_| ())
            .map_err(|e| crate::Error::infra(format!("cannot copy {}: {e}", vars.display())))
    }

    fn restore_snapshot(&mut self, dir: &Path) -> Result<()> {
        self.machine
            .restore(&dir.join(STATE), &dir.join(LAYER), &dir.join(VARS))
    }

    fn finish(&mut self, keep: bool) {
        let _ = self.machine.off();
        if !keep {
            let _ = std::fs::remove_file(self.machine.overlay());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::machine::Firmware;
    use crate::qemu::{accel::Accel, Disk, Serial};

    fn identity(
        machine: &str,
        edit: &dyn Fn(&mut crate::config::machine::QemuSpec),
    ) -> Option<String> {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut spec = crate::config::machine::load(&root, machine)
            .unwrap()
            .qemu
            .unwrap();
        if let Firmware::Bios(bios) = &mut spec.firmware {
            *bios = dir.path().join("u-boot.bin");
            std::fs::write(&*bios, b"").unwrap();
        }
        edit(&mut spec);
        std::fs::write(dir.path().join("image.img"), vec![0u8; 1 << 20]).unwrap();
        let opts = QemuOptions {
            spec,
            base_image: dir.path().join("image.img"),
            dir: dir.path().join("m"),
            accel: Accel::Tcg,
            network: Network::User,
            disk: Disk::Overlay,
            serial: Serial::Socket,
        };
        let console = Console::new(&dir.path().join("serial.log")).unwrap();
        let boot = Partition {
            number: 1,
            start: 0,
            size: 1 << 20,
            type_name: "W95 FAT32 (LBA)".into(),
            label: Some("resin-boot".into()),
            fs: None,
            bootable: true,
        };
        QemuTarget::new(machine, opts, console, boot, vec![])
            .unwrap()
            .snapshot_identity()
    }

    #[test]
    fn no_snapshot_without_vmgenid_and_the_key_has_the_cpu_and_firmware() {
        assert_eq!(identity("qemuarm64", &|_| {}), None);
        // Were vmgenid there, cpu and firmware would be in the key.
        let arm = identity("qemuarm64", &|s| s.vmgenid = Some(true)).unwrap();
        assert!(
            arm.contains("cpu: Some(\"cortex-a72\")") && arm.contains("Bios("),
            "{arm}"
        );
        assert!(
            arm.contains("firmware: ") && arm.contains("u-boot.bin"),
            "{arm}"
        );
        let x86 = identity("qemux86-64", &|_| {}).unwrap();
        let other_cpu = identity("qemux86-64", &|s| s.cpu = Some("max".into())).unwrap();
        let spec = |id: &str| {
            id.lines()
                .find(|l| l.starts_with("spec: "))
                .unwrap()
                .to_string()
        };
        assert_ne!(spec(&x86), spec(&other_cpu));
        assert!(
            x86.contains("OVMF_CODE_4M.fd") && x86.contains("OVMF_VARS_4M.fd"),
            "{x86}"
        );
    }
}
