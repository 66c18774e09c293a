//! The device factory: a target's device for a run, made on its worker's thread: a QEMU
//! machine on a private LAN of its own, the emulated rig (QEMU playing a board), or a board.

use std::path::Path;

use super::worker::Prepared;
use crate::board::BoardTarget;
use crate::console::Console;
use crate::error::{Error, Result};
use crate::lan::{self, Lan};
use crate::qemu::accel::Accel;
use crate::qemu::rig::Emulator;
use crate::qemu::target::QemuTarget;
use crate::qemu::{Disk, Network, QemuOptions, Serial};
use crate::runner::media::Media;
use crate::runner::targets::{Kind, TargetSpec};
use crate::target::Target;

/// A device set up for the run, with what must live as long as it does.
pub struct Device {
    /// The device.
    pub target: Box<dyn Target>,
    /// What this target boots to show that it works (see `worker::known_good_boots`).
    pub known_good: Option<Media>,
    /// The QEMU playing a board, for the emulated rig.
    pub emulator: Option<Emulator>,
    // Dropped last: the LAN's dnsmasq outlives QEMU.
    pub _lan: Option<Lan>,
}

/// The device for `spec`, made on this thread (a QEMU machine's LAN is this thread's
/// network namespace, so everything the worker starts shares it).
pub fn set_up(spec: &TargetSpec, p: &Prepared, dir: &Path) -> Result<Device> {
    let console = Console::new(&dir.join("serial.log"))?;
    match &spec.kind {
        Kind::Rig(rig) if rig.emulated => {
            let qemu = p.plan.machine.qemu.as_ref().ok_or_else(|| {
                Error::input(format!(
                    "machine `{}` has no QEMU settings, so no emulated rig can play it",
                    p.plan.machine.name
                ))
            })?;
            let accel = p.accel.unwrap_or(Accel::Tcg);
            let (emulator, hw) = Emulator::start(qemu, &dir.join("rig"), accel)?;
            let rig = rig.with_hardware(hw);
            Ok(Device {
                target: Box::new(BoardTarget::open(&rig, &p.media.image, console)?),
                known_good: None,
                emulator: Some(emulator),
                _lan: None,
            })
        }
        Kind::Rig(rig) => Ok(Device {
            target: Box::new(BoardTarget::open(rig, &p.media.image, console)?),
            known_good: None,
            emulator: None,
            _lan: None,
        }),
        Kind::Qemu => {
            let qemu = p.plan.machine.qemu.clone().ok_or_else(|| {
                Error::input(format!(
                    "machine `{}` has no QEMU settings; run it on a rig (--rig)",
                    p.plan.machine.name
                ))
            })?;
            let mut notes = Vec::new();
            let accel = p.accel.unwrap_or(Accel::Tcg);
            let (network, lan) = network(dir, &mut notes)?;
            let target = QemuTarget::new(
                &spec.name,
                QemuOptions {
                    spec: qemu,
                    base_image: p.media.image.clone(),
                    dir: dir.join("qemu"),
                    accel,
                    network,
                    disk: Disk::Overlay,
                    serial: Serial::Socket,
                },
                console,
                p.media.boot.clone(),
                notes,
            )?;
            Ok(Device {
                target: Box::new(target),
                known_good: None,
                emulator: None,
                _lan: lan,
            })
        }
    }
}

/// The private LAN when the harness may make one, else QEMU's user network.
fn network(dir: &Path, notes: &mut Vec<String>) -> Result<(Network, Option<Lan>)> {
    if std::env::var_os("HARNESS_NETWORK").is_some_and(|v| v == "user") {
        notes.push("network: QEMU user networking (HARNESS_NETWORK=user); tests that need a LAN are skipped".into());
        return Ok((Network::User, None));
    }
    match Lan::create(dir)? {
        Ok(mut lan) => {
            let taps = vec![
                (lan.add_tap()?, lan::dut_mac(0)),
                (lan.add_tap()?, lan::dut_mac(1)),
            ];
            notes.push(format!(
                "network: private LAN 10.77.0.0/24 in a network namespace of this target's own (harness {}, device {})",
                lan::HOST_IP,
                lan::DUT_IP
            ));
            Ok((Network::Lan(taps), Some(lan)))
        }
        Err(why) => {
            notes.push(format!(
                "network: QEMU user networking ({why}); tests that need a LAN are skipped"
            ));
            Ok((Network::User, None))
        }
    }
}
