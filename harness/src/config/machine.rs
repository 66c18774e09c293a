//! A machine type (`machines/NAME.yaml`): what hardware an image is for, and how QEMU runs it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Error, Result};

/// One machine file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Machine {
    /// The machine's name, equal to the file's stem.
    pub name: String,
    /// One line for `harness machines`.
    pub description: String,
    /// The balenaOS device type slug (`SLUG` in os-release).
    pub slug: String,
    /// `MACHINE` in os-release (the Yocto machine), where it differs from the slug.
    #[serde(default)]
    pub os_machine: Option<String>,
    /// The reference image recipe that is this machine's default image (`qemu/`), if any.
    #[serde(default)]
    pub reference_image: Option<String>,
    /// How to run it under QEMU; absent for boards that only exist as hardware.
    #[serde(default)]
    pub qemu: Option<QemuSpec>,
    /// How long a boot may take, power on to SSH, in seconds (default 300).
    #[serde(default = "default_boot_timeout")]
    pub boot_timeout: u64,
}

fn default_boot_timeout() -> u64 {
    300
}

/// QEMU settings for a machine.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QemuSpec {
    /// The emulator binary (`qemu-system-ARCH`; its suffix is the guest's architecture).
    pub binary: String,
    /// `-machine` type.
    pub machine: String,
    /// `-cpu` model (`cortex-a72`, `max`); QEMU's default for the machine when absent.
    #[serde(default)]
    pub cpu: Option<String>,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// The firmware: UEFI (`code` and `vars`) or a `bios` file (u-boot).
    pub firmware: Firmware,
    /// Virtual disk size in GiB; the image is the start of it (a copy-on-write overlay).
    pub disk_size_gib: u32,
    /// The NIC model (`virtio-net-pci`).
    pub nic: String,
    /// Whether the machine has a `vmgenid` device; by default where QEMU has one (x86). A
    /// restored snapshot needs it to reseed the guest's random state, so without it every
    /// fresh device boots for real (see [`QemuSpec::has_vmgenid`]).
    #[serde(default)]
    pub vmgenid: Option<bool>,
    /// Extra arguments appended verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

impl QemuSpec {
    /// The guest's architecture, from the binary's name (`qemu-system-aarch64`: `aarch64`).
    pub fn arch(&self) -> &str {
        let name = self.binary.rsplit('/').next().unwrap_or(&self.binary);
        name.strip_prefix("qemu-system-").unwrap_or(name)
    }

    /// Whether the guest's architecture is not the host's, so only TCG can run it.
    pub fn foreign(&self) -> bool {
        self.arch() != std::env::consts::ARCH
    }

    /// Whether QEMU starts the machine with a `vmgenid` device.
    pub fn has_vmgenid(&self) -> bool {
        self.vmgenid.unwrap_or_else(|| vmgenid_exists(self.arch()))
    }

    /// What is wrong with these settings beyond their types, in one line.
    fn check(&self) -> std::result::Result<(), String> {
        if self.vmgenid == Some(true) && !vmgenid_exists(self.arch()) {
            return Err(format!(
                "qemu.vmgenid: {} has no vmgenid device (QEMU has it on x86 only); remove the line or say `vmgenid: false`",
                self.binary
            ));
        }
        if self.cpus == 0 || self.memory_mib == 0 || self.disk_size_gib == 0 {
            return Err("qemu: cpus, memory_mib and disk_size_gib must be above 0".into());
        }
        if self.cpu.as_deref().is_some_and(|c| c.trim().is_empty()) {
            return Err("qemu.cpu: empty (leave it out for QEMU's default)".into());
        }
        Ok(())
    }
}

/// Whether QEMU has a `vmgenid` device for guests of `arch`.
fn vmgenid_exists(arch: &str) -> bool {
    matches!(arch, "x86_64" | "i386")
}

/// The firmware QEMU starts: UEFI in two pflash drives, or one file given as `-bios`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "FirmwareFields")]
pub enum Firmware {
    /// UEFI (OVMF): the read-only code flash (`OVMF_CODE_4M.fd`) and the variables template
    /// (`OVMF_VARS_4M.fd`), copied for each run.
    Uefi {
        /// See [`Firmware::Uefi`].
        code: PathBuf,
        /// See [`Firmware::Uefi`].
        vars: PathBuf,
    },
    /// A firmware image loaded as `-bios` (u-boot's `u-boot.bin`); it keeps no variables.
    Bios(PathBuf),
}

impl Firmware {
    /// The files QEMU reads.
    pub fn files(&self) -> Vec<&Path> {
        match self {
            Firmware::Uefi { code, vars } => vec![code, vars],
            Firmware::Bios(bios) => vec![bios],
        }
    }

    /// The UEFI variables template, if UEFI.
    pub fn vars(&self) -> Option<&Path> {
        match self {
            Firmware::Uefi { vars, .. } => Some(vars),
            Firmware::Bios(_) => None,
        }
    }
}

/// `firmware:` as written, checked into a [`Firmware`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FirmwareFields {
    #[serde(default)]
    code: Option<PathBuf>,
    #[serde(default)]
    vars: Option<PathBuf>,
    #[serde(default)]
    bios: Option<PathBuf>,
}

impl TryFrom<FirmwareFields> for Firmware {
    type Error = String;

    fn try_from(f: FirmwareFields) -> std::result::Result<Firmware, String> {
        match (f.code, f.vars, f.bios) {
            (Some(code), Some(vars), None) => Ok(Firmware::Uefi { code, vars }),
            (None, None, Some(bios)) => Ok(Firmware::Bios(bios)),
            _ => Err(
                "firmware: give either `code` and `vars` (UEFI) or `bios` (e.g. u-boot), not both or part"
                    .to_string(),
            ),
        }
    }
}

/// Reads `machines/NAME.yaml` under `root`, or a machine file given by its path (ending in
/// `.yaml`), e.g. a board port's own.
pub fn load(root: &Path, name: &str) -> Result<Machine> {
    if name.ends_with(".yaml") {
        let path = Path::new(name);
        if !path.is_file() {
            return Err(Error::input(format!("machine file {name} does not exist")));
        }
        return checked(path, super::yaml::read(path)?);
    }
    let path = root.join("machines").join(format!("{name}.yaml"));
    if !path.is_file() {
        let known = list(root)?.into_iter().map(|m| m.name).collect::<Vec<_>>();
        return Err(Error::input(format!(
            "unknown machine `{name}` (known: {})",
            known.join(", ")
        )));
    }
    let machine: Machine = checked(&path, super::yaml::read(&path)?)?;
    if machine.name != name {
        return Err(Error::input(format!(
            "{}: name `{}` does not match the file name",
            path.display(),
            machine.name
        )));
    }
    Ok(machine)
}

/// `machine` read from `path`, if its QEMU settings hold together; else one line naming the
/// file.
fn checked(path: &Path, machine: Machine) -> Result<Machine> {
    if let Some(Err(why)) = machine.qemu.as_ref().map(QemuSpec::check) {
        return Err(Error::input(format!("{}: {why}", path.display())));
    }
    Ok(machine)
}

/// Every machine under `root/machines`, sorted by name.
pub fn list(root: &Path) -> Result<Vec<Machine>> {
    let mut out = Vec::new();
    for path in super::suite::yaml_files(&root.join("machines"))? {
        out.push(checked(&path, super::yaml::read::<Machine>(&path)?)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn qemu(firmware: &str, extra: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.yaml");
        std::fs::write(
            &path,
            format!(
                "name: m\ndescription: d\nslug: m\nqemu:\n  binary: qemu-system-aarch64\n  \
                 machine: virt\n  memory_mib: 1024\n  cpus: 1\n  disk_size_gib: 4\n  \
                 nic: virtio-net-pci\n  firmware: {firmware}\n{extra}"
            ),
        )
        .unwrap();
        match load(&root(), path.to_str().unwrap()) {
            Ok(m) => format!("{:?}", m.qemu.unwrap().firmware),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn firmware_is_uefi_or_a_bios_file() {
        assert!(qemu("{bios: /u.bin}", "").starts_with("Bios("));
        assert!(qemu("{code: /c.fd, vars: /v.fd}", "").starts_with("Uefi {"));
        for bad in [
            "{code: /c.fd}",
            "{code: /c.fd, vars: /v.fd, bios: /u.bin}",
            "{}",
        ] {
            let e = qemu(bad, "");
            assert!(
                e.contains("m.yaml:")
                    && e.contains("firmware: give either `code` and `vars` (UEFI) or `bios`"),
                "{bad}: {e}"
            );
            assert_eq!(e.lines().count(), 1, "{e}");
        }
        let e = qemu("{rom: /u.bin}", "");
        assert!(e.contains("unknown field `rom`"), "{e}");
    }

    #[test]
    fn vmgenid_only_where_qemu_has_it() {
        let e = qemu("{bios: /u.bin}", "  vmgenid: true\n");
        assert!(e.ends_with("qemu.vmgenid: qemu-system-aarch64 has no vmgenid device (QEMU has it on x86 only); remove the line or say `vmgenid: false`"), "{e}");
        assert_eq!(e.lines().count(), 1);
        let e = qemu("{bios: /u.bin}", "  cpu: ''\n");
        assert!(
            e.ends_with("qemu.cpu: empty (leave it out for QEMU's default)"),
            "{e}"
        );
        let x86 = load(&root(), "qemux86-64").unwrap().qemu.unwrap();
        assert!(x86.has_vmgenid() && x86.arch() == "x86_64" && x86.cpu.is_none());
        let arm = load(&root(), "qemuarm64").unwrap().qemu.unwrap();
        assert!(!arm.has_vmgenid() && arm.arch() == "aarch64");
        assert_eq!(arm.cpu.as_deref(), Some("cortex-a72"));
        assert_eq!(arm.foreign(), std::env::consts::ARCH != "aarch64");
        assert!(matches!(arm.firmware, Firmware::Bios(_)));
    }

    #[test]
    fn every_machine_file_loads() {
        let names: Vec<String> = list(&root()).unwrap().into_iter().map(|m| m.name).collect();
        assert!(names.contains(&"qemuarm64".to_string()), "{names:?}");
    }
}
