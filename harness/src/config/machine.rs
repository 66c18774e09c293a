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
    /// The emulator binary.
    pub binary: String,
    /// `-machine` type.
    pub machine: String,
    /// Guest memory in MiB.
    pub memory_mib: u32,
    /// Guest CPUs.
    pub cpus: u32,
    /// UEFI firmware: read-only code and the vars template copied per run.
    pub firmware: Firmware,
    /// Virtual disk size in GiB; the image is the start of it (a copy-on-write overlay).
    pub disk_size_gib: u32,
    /// The NIC model (`virtio-net-pci`).
    pub nic: String,
    /// Extra arguments appended verbatim.
    #[serde(default)]
    pub extra_args: Vec<String>,
}

/// UEFI firmware files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Firmware {
    /// The read-only code flash (`OVMF_CODE_4M.fd`).
    pub code: PathBuf,
    /// The variables template (`OVMF_VARS_4M.fd`), copied for each run.
    pub vars: PathBuf,
}

/// Reads `machines/NAME.yaml` under `root`, or a machine file given by its path (ending in
/// `.yaml`), e.g. a board port's own.
pub fn load(root: &Path, name: &str) -> Result<Machine> {
    if name.ends_with(".yaml") {
        let path = Path::new(name);
        if !path.is_file() {
            return Err(Error::input(format!("machine file {name} does not exist")));
        }
        return super::yaml::read(path);
    }
    let path = root.join("machines").join(format!("{name}.yaml"));
    if !path.is_file() {
        let known = list(root)?.into_iter().map(|m| m.name).collect::<Vec<_>>();
        return Err(Error::input(format!(
            "unknown machine `{name}` (known: {})",
            known.join(", ")
        )));
    }
    let machine: Machine = super::yaml::read(&path)?;
    if machine.name != name {
        return Err(Error::input(format!(
            "{}: name `{}` does not match the file name",
            path.display(),
            machine.name
        )));
    }
    Ok(machine)
}

/// Every machine under `root/machines`, sorted by name.
pub fn list(root: &Path) -> Result<Vec<Machine>> {
    let mut out = Vec::new();
    for path in super::suite::yaml_files(&root.join("machines"))? {
        out.push(super::yaml::read::<Machine>(&path)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
