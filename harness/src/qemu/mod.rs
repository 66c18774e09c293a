//! The QEMU backend: a machine that plays the device, with QMP for power and a serial socket
//! for the console.
//!
//! Power off is a hard stop of QEMU (the guest gets no warning, as with a pulled plug); power
//! on starts QEMU again on the same overlay and UEFI variables, so the disk keeps what the
//! guest wrote.
//!
//! The emulated rig ([`rig`]) runs the same machine differently: its disk is a raw card file,
//! its serial port a pty, and it stays up for the whole run while QMP plays the power switch.

pub mod accel;
pub mod overlay;
pub mod rig;
pub mod snapshot;
pub mod target;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::config::machine::{Firmware, QemuSpec};
use crate::console::Console;
use crate::device::Power;
use crate::error::{Context, Error, Result};
use crate::process::Child;
use crate::qmp::{self, Qmp};
use accel::Accel;

/// How the guest's NIC is connected.
#[derive(Debug, Clone)]
pub enum Network {
    /// QEMU's user-mode network, with SSH and the engine port forwarded on 127.0.0.1.
    User,
    /// NICs on taps of the harness's private LAN (see [`crate::lan`]): `(tap, mac)` each.
    Lan(Vec<(String, String)>),
}

/// What the guest's disk is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disk {
    /// A copy-on-write overlay over [`QemuOptions::base_image`], sized by the machine.
    Overlay,
    /// A raw file used as is (the emulated rig's card). Raw has no QEMU-side cache, so what
    /// another process writes there while the guest is stopped is what it reads after a reset.
    Raw(PathBuf),
}

/// Where the guest's serial port goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serial {
    /// A unix socket QEMU waits on, attached to the machine's console engine.
    Socket,
    /// A pseudo-terminal (`/dev/pts/N`, see [`QemuMachine::pty`]) for whoever opens it. A pty
    /// drops output while nobody holds it open, so QEMU starts paused (`-S`) until `cont`.
    Pty,
}

/// Everything needed to run one QEMU machine.
#[derive(Debug, Clone)]
pub struct QemuOptions {
    /// The machine's QEMU settings.
    pub spec: QemuSpec,
    /// The raw base image; never written.
    pub base_image: PathBuf,
    /// A folder of its own for the overlay, UEFI variables and sockets.
    pub dir: PathBuf,
    /// KVM or TCG.
    pub accel: Accel,
    /// The network.
    pub network: Network,
    /// The guest's disk.
    pub disk: Disk,
    /// The guest's serial port.
    pub serial: Serial,
}

/// A running (or powered-off) QEMU machine.
pub struct QemuMachine {
    opts: QemuOptions,
    console: Option<Console>,
    ssh_port: u16,
    engine_port: u16,
    child: Option<Child>,
    qmp: Option<Qmp>,
    /// The state file the next start loads (a restore); taken by that start, so a later
    /// power on boots from the disk.
    incoming: Option<PathBuf>,
}

impl QemuMachine {
    /// Prepares a machine: a copy-on-write overlay over the base image (for [`Disk::Overlay`])
    /// and a fresh copy of the UEFI variables. It starts powered off. `console` receives a
    /// [`Serial::Socket`] port on each start.
    pub fn create(opts: QemuOptions, console: Option<Console>) -> Result<QemuMachine> {
        std::fs::create_dir_all(&opts.dir)
            .infra_ctx(|| format!("cannot create {}", opts.dir.display()))?;
        for f in opts.spec.firmware.files() {
            if !f.is_file() {
                return Err(Error::input(format!(
                    "firmware {} is missing (install {})",
                    f.display(),
                    match opts.spec.firmware {
                        Firmware::Uefi { .. } => "Debian's `ovmf`",
                        Firmware::Bios(_) =>
                            "the machine's firmware package, e.g. Debian's `u-boot-qemu`",
                    }
                )));
            }
        }
        if let Some(vars) = opts.spec.firmware.vars() {
            std::fs::copy(vars, opts.dir.join("vars.fd"))
                .infra_ctx(|| format!("cannot copy {}", vars.display()))?;
        }
        if opts.disk == Disk::Overlay {
            overlay::create(
                &opts.base_image,
                &opts.dir.join("overlay.qcow2"),
                opts.spec.disk_size_gib,
            )?;
        }
        Ok(QemuMachine {
            ssh_port: free_port()?,
            engine_port: free_port()?,
            opts,
            console,
            child: None,
            qmp: None,
            incoming: None,
        })
    }

    /// The copy-on-write overlay the guest's disk lives in.
    pub fn overlay(&self) -> PathBuf {
        self.opts.dir.join("overlay.qcow2")
    }

    /// SSH (guest port 22222) as reached from the host.
    pub fn ssh_addr(&self) -> SocketAddr {
        match self.opts.network {
            Network::User => SocketAddr::from((Ipv4Addr::LOCALHOST, self.ssh_port)),
            Network::Lan(_) => SocketAddr::from((crate::lan::DUT_IP, 22222)),
        }
    }

    /// The engine's TCP API (guest port 2375) as reached from the host.
    pub fn engine_addr(&self) -> SocketAddr {
        match self.opts.network {
            Network::User => SocketAddr::from((Ipv4Addr::LOCALHOST, self.engine_port)),
            Network::Lan(_) => SocketAddr::from((crate::lan::DUT_IP, 2375)),
        }
    }

    /// Whether QEMU is running.
    pub fn is_on(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Fails when QEMU, started and not stopped by the harness, has exited (and reaps it):
    /// the device died under the test.
    pub fn check_running(&mut self) -> Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Ok(());
        };
        match child.try_wait() {
            Ok(Some(_)) => {
                let mut child = self.child.take().expect("checked above");
                self.qmp = None;
                if let Some(console) = &self.console {
                    console.detach();
                }
                Err(self.explain_exit(&mut child, Error::infra("QEMU exited")))
            }
            _ => Ok(()),
        }
    }

    /// Resets the guest like its reset button (QEMU keeps running).
    pub fn reset(&mut self) -> Result<()> {
        self.qmp()?.execute("system_reset", serde_json::json!({}))?;
        Ok(())
    }

    /// The VM's state as QMP reports it (`running`, `paused`, ...), or `off`.
    pub fn state(&mut self) -> Result<String> {
        if !self.is_on() {
            return Ok("off".into());
        }
        self.qmp()?.status()
    }

    /// The pty the serial port is on (`/dev/pts/N`), for a running [`Serial::Pty`] machine.
    pub fn pty(&mut self) -> Result<PathBuf> {
        let chardevs = self
            .qmp()?
            .execute("query-chardev", serde_json::json!({}))?;
        chardevs
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["label"] == "ser0")
            .and_then(|c| c["filename"].as_str()?.strip_prefix("pty:"))
            .map(PathBuf::from)
            .ok_or_else(|| {
                Error::infra(format!(
                    "QEMU reported no pty for its serial port: {chardevs}"
                ))
            })
    }

    fn qmp(&mut self) -> Result<&mut Qmp> {
        self.qmp
            .as_mut()
            .ok_or_else(|| Error::infra("QEMU is not running"))
    }

    /// The QEMU command line.
    pub fn command(&self) -> Command {
        let o = &self.opts;
        let s = &o.spec;
        let dir = &o.dir;
        let mut cmd = Command::new(&s.binary);
        let nics: Vec<(String, String)> = match &o.network {
            Network::User => vec![(
                format!(
                    "user,id=n0,hostfwd=tcp:127.0.0.1:{}-:22222,hostfwd=tcp:127.0.0.1:{}-:2375",
                    self.ssh_port, self.engine_port
                ),
                format!("{},netdev=n0", s.nic),
            )],
            Network::Lan(taps) => taps
                .iter()
                .enumerate()
                .map(|(i, (tap, mac))| {
                    (
                        format!("tap,id=n{i},ifname={tap},script=no,downscript=no"),
                        format!("{},netdev=n{i},mac={mac}", s.nic),
                    )
                })
                .collect(),
        };
        cmd.args(["-name", "harness-dut", "-machine", &s.machine])
            .args(["-accel", o.accel.qemu_name()]);
        if let Some(cpu) = &s.cpu {
            cmd.args(["-cpu", cpu]);
        }
        cmd.args(["-m", &s.memory_mib.to_string(), "-smp", &s.cpus.to_string()])
            .args(["-nographic", "-nodefaults", "-no-user-config"]);
        match &s.firmware {
            Firmware::Uefi { code, .. } => {
                cmd.arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,readonly=on,file={}",
                        code.display()
                    ))
                    .arg("-drive")
                    .arg(format!(
                        "if=pflash,format=raw,file={}",
                        dir.join("vars.fd").display()
                    ));
            }
            Firmware::Bios(bios) => {
                cmd.arg("-bios").arg(bios);
            }
        }
        cmd.arg("-drive")
            .arg(match &o.disk {
                Disk::Overlay => format!(
                    "if=virtio,format=qcow2,cache=unsafe,file={}",
                    self.overlay().display()
                ),
                // Writeback goes through the host's page cache, which the flasher shares.
                Disk::Raw(card) => format!(
                    "if=virtio,format=raw,cache=writeback,file={}",
                    card.display()
                ),
            })
            .args(
                nics.iter()
                    .flat_map(|(netdev, device)| ["-netdev", netdev, "-device", device]),
            )
            .args(["-device", "virtio-rng-pci"]);
        if s.has_vmgenid() {
            // A new generation id per start: a restored guest reseeds its random state.
            cmd.args(["-device", "vmgenid"]);
        }
        cmd.arg("-chardev")
            .arg(match o.serial {
                Serial::Socket => format!(
                    "socket,id=ser0,path={},server=on,wait=on",
                    dir.join("serial.sock").display()
                ),
                Serial::Pty => "pty,id=ser0".to_string(),
            })
            .args(["-serial", "chardev:ser0"])
            .arg("-qmp")
            .arg(format!(
                "unix:{},server=on,wait=off",
                dir.join("qmp.sock").display()
            ))
            .args(&s.extra_args);
        if o.serial == Serial::Pty {
            cmd.arg("-S");
        }
        if self.incoming.is_some() {
            cmd.args(["-incoming", "defer"]);
        }
        cmd
    }

    /// Saves the running machine: its RAM and device state into `state` (see [`snapshot`]),
    /// then QEMU quits, so the overlay and UEFI variables are complete on disk.
    pub fn save(&mut self, state: &Path) -> Result<()> {
        let dir = &self.opts.dir;
        let (Some(qmp), Some(child)) = (self.qmp.as_mut(), self.child.as_mut()) else {
            return Err(Error::infra("QEMU is not running"));
        };
        let saved = snapshot::save(qmp, state, &mut || exited(dir, child));
        let stopped = self.stop();
        saved.and(stopped)
    }

    /// Restores a saved machine: a new overlay over the frozen `layer`, a copy of the saved
    /// UEFI variables `vars`, and QEMU started to load `state` and run on from it. A later
    /// power on boots from this overlay.
    pub fn restore(&mut self, state: &Path, layer: &Path, vars: &Path) -> Result<()> {
        self.stop()?;
        snapshot::overlay_over(layer, &self.overlay())?;
        if self.opts.spec.firmware.vars().is_some() {
            std::fs::copy(vars, self.opts.dir.join("vars.fd"))
                .infra_ctx(|| format!("cannot copy {}", vars.display()))?;
        }
        self.incoming = Some(state.to_path_buf());
        let started = self.start();
        self.incoming = None;
        started
    }

    fn start(&mut self) -> Result<()> {
        if self.is_on() {
            return Ok(());
        }
        let dir = &self.opts.dir;
        for sock in ["serial.sock", "qmp.sock"] {
            let _ = std::fs::remove_file(dir.join(sock));
        }
        let log = std::fs::File::create(dir.join("qemu.log"))
            .infra_ctx(|| format!("cannot create {}", dir.join("qemu.log").display()))?;
        let mut cmd = self.command();
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        let mut child = Child::spawn(cmd, &self.opts.spec.binary)?;
        if let (Serial::Socket, Some(console)) = (self.opts.serial, &self.console) {
            // QEMU waits for the serial client before it runs the guest, so no output is lost.
            let serial = qmp::connect_unix(
                &dir.join("serial.sock"),
                Duration::from_secs(20),
                "QEMU's serial socket",
            )
            .map_err(|e| self.explain_exit(&mut child, e))?;
            console.attach(Box::new(serial))?;
        }
        let mut qmp = Qmp::connect(&dir.join("qmp.sock"), Duration::from_secs(20))
            .map_err(|e| self.explain_exit(&mut child, e))?;
        if let Some(state) = self.incoming.clone() {
            let dir = dir.clone();
            let loaded = snapshot::load(&mut qmp, &state, &mut || exited(&dir, &mut child));
            if let Err(e) = loaded {
                // QEMU exits on a failed load: give it a moment to, for its own words.
                let _ = child.wait_timeout(Duration::from_secs(3));
                let e = self.explain_exit(&mut child, e);
                child.kill();
                if let Some(console) = &self.console {
                    console.detach();
                }
                return Err(e);
            }
        }
        self.child = Some(child);
        self.qmp = Some(qmp);
        Ok(())
    }

    /// If QEMU died, its last stderr line says why better than a socket error.
    fn explain_exit(&self, child: &mut Child, e: Error) -> Error {
        exited(&self.opts.dir, child).err().unwrap_or(e)
    }

    fn stop(&mut self) -> Result<()> {
        if let Some(qmp) = self.qmp.as_mut() {
            let _ = qmp.execute("quit", serde_json::json!({}));
        }
        self.qmp = None;
        if let Some(mut child) = self.child.take() {
            if child.wait_timeout(Duration::from_secs(10))?.is_none() {
                child.kill();
            }
        }
        if let Some(console) = &self.console {
            console.detach();
        }
        Ok(())
    }
}

impl Power for QemuMachine {
    fn on(&mut self) -> Result<()> {
        self.start()
    }

    fn off(&mut self) -> Result<()> {
        self.stop()
    }

    fn describe(&self) -> String {
        format!("QEMU ({})", self.opts.accel.qemu_name())
    }
}

impl Drop for QemuMachine {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Fails, with QEMU's last stderr line (`DIR/qemu.log`), when `child` has exited.
fn exited(dir: &Path, child: &mut Child) -> Result<()> {
    if let Ok(Some(status)) = child.try_wait() {
        let log = std::fs::read_to_string(dir.join("qemu.log")).unwrap_or_default();
        let last = log
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        return Err(Error::infra(format!("QEMU exited ({status}): {last}")));
    }
    Ok(())
}

/// A free TCP port on 127.0.0.1 (bound and released; QEMU binds it right after).
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").infra_ctx(|| "cannot find a free port".into())?;
    Ok(l.local_addr()
        .infra_ctx(|| "cannot find a free port".into())?
        .port())
}

/// Checks that `path` can be used as QEMU's base image.
pub fn check_base(path: &Path) -> Result<()> {
    if !path.is_file() {
        return Err(Error::input(format!(
            "image {} does not exist",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(disk: Disk, serial: Serial) -> String {
        args_with(disk, serial, None)
    }

    fn args_with(disk: Disk, serial: Serial, incoming: Option<&str>) -> String {
        args_of("qemux86-64", disk, serial, incoming)
    }

    fn args_of(machine: &str, disk: Disk, serial: Serial, incoming: Option<&str>) -> String {
        let dir = tempfile::tempdir().unwrap();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut machine = crate::config::machine::load(&root, machine).unwrap();
        // The firmware need not be installed for the command line.
        if let Some(q) = machine.qemu.as_mut() {
            if let Firmware::Bios(bios) = &mut q.firmware {
                *bios = dir.path().join("u-boot.bin");
                std::fs::write(&*bios, b"").unwrap();
            }
        }
        std::fs::write(dir.path().join("card.img"), vec![0u8; 1 << 20]).unwrap();
        let opts = QemuOptions {
            spec: machine.qemu.unwrap(),
            base_image: dir.path().join("card.img"),
            dir: dir.path().to_path_buf(),
            accel: Accel::Tcg,
            network: Network::User,
            disk,
            serial,
        };
        let mut m = QemuMachine::create(opts, None).unwrap();
        m.incoming = incoming.map(PathBuf::from);
        let cmd = m.command();
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    }

    #[test]
    fn a_card_on_a_pty_is_raw_and_starts_paused() {
        let line = args(Disk::Raw("/r/card.img".into()), Serial::Pty);
        assert!(line.contains("-drive if=virtio,format=raw,cache=writeback,file=/r/card.img"));
        assert!(
            line.contains("-chardev pty,id=ser0 -serial chardev:ser0"),
            "{line}"
        );
        assert!(line.ends_with(" -S"), "{line}");
        assert!(!line.contains("overlay.qcow2"), "{line}");
    }

    #[test]
    fn every_start_has_a_vmgenid_and_only_a_restore_waits_for_incoming_state() {
        let line = args(Disk::Overlay, Serial::Socket);
        assert!(line.contains("-device vmgenid"), "{line}");
        assert!(!line.contains("-incoming"), "{line}");
        let restore = args_with(Disk::Overlay, Serial::Socket, Some("/s/state.mig"));
        assert!(restore.ends_with(" -incoming defer"), "{restore}");
        // The same machine on both sides of a migration: only -incoming differs.
        assert_eq!(
            restore
                .trim_end_matches(" -incoming defer")
                .split(' ')
                .count(),
            line.split(' ').count()
        );
    }

    #[test]
    fn uefi_is_two_pflash_drives_and_u_boot_is_a_bios_with_no_vmgenid() {
        let x86 = args(Disk::Overlay, Serial::Socket);
        assert!(
            x86.contains(
                "-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd"
            ),
            "{x86}"
        );
        assert!(!x86.contains("-bios") && !x86.contains("-cpu"), "{x86}");
        let arm = args_of("qemuarm64", Disk::Overlay, Serial::Socket, None);
        assert!(
            arm.starts_with("-name harness-dut -machine virt -accel tcg -cpu cortex-a72 "),
            "{arm}"
        );
        assert!(
            arm.contains(" -bios ") && arm.contains("u-boot.bin"),
            "{arm}"
        );
        assert!(!arm.contains("pflash") && !arm.contains("vmgenid"), "{arm}");
        assert!(arm.contains("-device virtio-rng-pci"), "{arm}");
        assert!(arm.contains("-device virtio-net-pci,netdev=n0"), "{arm}");
    }

    #[test]
    fn an_emulated_arm_rig_s_card_is_on_a_pty_with_u_boot() {
        let arm = args_of(
            "qemuarm64",
            Disk::Raw("/r/card.img".into()),
            Serial::Pty,
            None,
        );
        assert!(
            arm.contains("-drive if=virtio,format=raw,cache=writeback,file=/r/card.img"),
            "{arm}"
        );
        assert!(
            arm.contains("-chardev pty,id=ser0 -serial chardev:ser0"),
            "{arm}"
        );
        assert!(arm.contains(" -bios "), "{arm}");
    }
}
