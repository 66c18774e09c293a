//! The emulated rig: QEMU plays a board. Its SD card is a raw image file, its UART a pty, its
//! power switch QMP; it is started once (paused) and kept running for the whole run. It hands
//! the board flow ordinary hardware specs, so nothing downstream knows it is QEMU.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use super::{accel::Accel, Disk, Network, QemuMachine, QemuOptions, Serial};
use crate::board::rig::Hardware;
use crate::board::spec::{AddressSpec, ConsoleSpec, MediaSpec, PowerSpec};
use crate::config::machine::QemuSpec;
use crate::device::Power;
use crate::error::{Context, Result};

/// The QEMU process behind an emulated rig; dropping it stops QEMU.
pub struct Emulator {
    machine: QemuMachine,
    card: PathBuf,
}

impl Emulator {
    /// Starts QEMU, paused, with the machine's QEMU settings `spec` in `dir`, and returns it
    /// with the hardware the board flow opens: the card file (sized like the machine's disk),
    /// the QMP power socket, the serial pty and the forwarded ports.
    pub fn start(spec: &QemuSpec, dir: &Path, accel: Accel) -> Result<(Emulator, Hardware)> {
        let mut spec = spec.clone();
        std::fs::create_dir_all(dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
        let card = dir.join("card.img");
        // QEMU fixes the disk's size when it opens the file; the flasher later truncates the
        // file to the image, and the guest reads zeros past its end, like an erased card.
        std::fs::File::create(&card)
            .and_then(|f| f.set_len(u64::from(spec.disk_size_gib) << 30))
            .infra_ctx(|| format!("cannot create {}", card.display()))?;
        // A second QMP monitor of its own for the power switch.
        let power = dir.join("power.sock");
        let _ = std::fs::remove_file(&power);
        spec.extra_args.extend([
            "-qmp".to_string(),
            format!("unix:{},server=on,wait=off", power.display()),
        ]);
        let opts = QemuOptions {
            spec,
            base_image: card.clone(),
            dir: dir.to_path_buf(),
            accel,
            network: Network::User,
            disk: Disk::Raw(card.clone()),
            serial: Serial::Pty,
        };
        let mut machine = QemuMachine::create(opts, None)?;
        machine.on()?;
        let pty = machine.pty()?;
        let hw = Hardware {
            media: MediaSpec::File { path: card.clone() },
            power: PowerSpec::Qmp { socket: power },
            console: ConsoleSpec {
                port: pty,
                baud: 115_200,
            },
            // User networking: the guest reaches the host's loopback at its gateway.
            address: AddressSpec::Forwarded {
                ssh: machine.ssh_addr().to_string(),
                engine: Some(machine.engine_addr().to_string()),
                host_ip: Some(IpAddr::V4(Ipv4Addr::new(10, 0, 2, 2))),
            },
        };
        Ok((Emulator { machine, card }, hw))
    }

    /// Stops QEMU; `keep` keeps the card file for a post-mortem.
    pub fn finish(mut self, keep: bool) {
        let _ = self.machine.off();
        if !keep {
            let _ = std::fs::remove_file(&self.card);
        }
    }

    /// One line about the emulator for the report.
    pub fn describe(&self) -> String {
        format!(
            "emulated rig: {} playing the board (user network, SSH forwarded)",
            self.machine.describe()
        )
    }
}
