//! A rig (`rigs/NAME.yaml`): one board on one host, with the hardware that drives it.

use std::path::Path;

use serde::Deserialize;

use super::spec::{AddressSpec, ConsoleSpec, MediaSpec, PowerSpec};
use crate::error::{Error, Result};

/// One rig file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rig {
    /// The rig's name, equal to the file's stem.
    pub name: String,
    /// One line for `harness rigs`.
    pub description: String,
    /// The machine type of the board (`machines/NAME.yaml`).
    pub machine: String,
    /// How its storage is switched between host and board.
    pub media: MediaSpec,
    /// How its power is switched.
    pub power: PowerSpec,
    /// Its serial console.
    pub console: ConsoleSpec,
    /// How to find its address.
    pub address: AddressSpec,
    /// Labels to pick rigs by.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// Reads `rigs/NAME.yaml` under `root`.
pub fn load(root: &Path, name: &str) -> Result<Rig> {
    let path = root.join("rigs").join(format!("{name}.yaml"));
    if !path.is_file() {
        let known: Vec<String> = list(root)?.into_iter().map(|r| r.name).collect();
        return Err(Error::input(format!(
            "unknown rig `{name}` (known: {})",
            known.join(", ")
        )));
    }
    let rig: Rig = crate::config::yaml::read(&path)?;
    if rig.name != name {
        return Err(Error::input(format!(
            "{}: name `{}` does not match the file name",
            path.display(),
            rig.name
        )));
    }
    Ok(rig)
}

/// Every rig under `root/rigs`, sorted by name.
pub fn list(root: &Path) -> Result<Vec<Rig>> {
    let dir = root.join("rigs");
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for path in crate::config::suite::yaml_files(&dir)? {
        out.push(crate::config::yaml::read::<Rig>(&path)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
