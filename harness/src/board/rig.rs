//! A rig (`rigs/NAME.yaml`): one board on one host, with the hardware that drives it.
//!
//! An emulated rig (`emulated: true`) names no hardware: QEMU plays the board and makes its
//! card, power switch, serial port and address at run time ([`crate::qemu::rig`]).

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
    /// QEMU plays the board; the hardware below is made at run time.
    #[serde(default)]
    pub emulated: bool,
    /// How its storage is switched between host and board.
    #[serde(default)]
    pub media: Option<MediaSpec>,
    /// How its power is switched.
    #[serde(default)]
    pub power: Option<PowerSpec>,
    /// Its serial console.
    #[serde(default)]
    pub console: Option<ConsoleSpec>,
    /// How to find its address.
    #[serde(default)]
    pub address: Option<AddressSpec>,
    /// Labels to pick rigs by (`--rigs tag=NAME`).
    #[serde(default)]
    pub tags: Vec<String>,
    /// The known-good image `harness health` boots (relative to the project); default: the
    /// machine's reference image.
    #[serde(default)]
    pub health_image: Option<std::path::PathBuf>,
}

/// A board's hardware, as its rig file names it or as an emulated rig made it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hardware {
    /// How its storage is switched between host and board.
    pub media: MediaSpec,
    /// How its power is switched.
    pub power: PowerSpec,
    /// Its serial console.
    pub console: ConsoleSpec,
    /// How to find its address.
    pub address: AddressSpec,
}

impl Rig {
    /// The hardware the rig file names (an error for an emulated rig not yet started).
    pub fn hardware(&self) -> Result<Hardware> {
        let missing = |what: &str| {
            Error::input(format!(
                "rig {}: no `{what}` (name the hardware, or set `emulated: true`)",
                self.name
            ))
        };
        Ok(Hardware {
            media: self.media.clone().ok_or_else(|| missing("media"))?,
            power: self.power.clone().ok_or_else(|| missing("power"))?,
            console: self.console.clone().ok_or_else(|| missing("console"))?,
            address: self.address.clone().ok_or_else(|| missing("address"))?,
        })
    }

    /// This rig with the hardware an emulator made for it.
    pub fn with_hardware(&self, hw: Hardware) -> Rig {
        Rig {
            media: Some(hw.media),
            power: Some(hw.power),
            console: Some(hw.console),
            address: Some(hw.address),
            ..self.clone()
        }
    }

    /// Checks the rig's hardware is present, without switching anything. An emulated rig has
    /// nothing to check before it starts.
    pub fn check(&self) -> Result<()> {
        if self.emulated {
            return Ok(());
        }
        let hw = self.hardware()?;
        hw.media
            .check()
            .and_then(|_| hw.power.check())
            .and_then(|_| hw.console.check())
    }

    fn validate(&self, path: &Path) -> Result<()> {
        let named = [
            ("media", self.media.is_some()),
            ("power", self.power.is_some()),
            ("console", self.console.is_some()),
            ("address", self.address.is_some()),
        ];
        if self.emulated {
            if let Some((key, _)) = named.iter().find(|(_, set)| *set) {
                return Err(Error::input(format!(
                    "{}: an emulated rig makes its own `{key}`; remove it",
                    path.display()
                )));
            }
            return Ok(());
        }
        self.hardware().map(|_| ())
    }
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
    let rig = read(&path)?;
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
        out.push(read(&path)?);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn read(path: &Path) -> Result<Rig> {
    let rig: Rig = crate::config::yaml::read(path)?;
    rig.validate(path)?;
    Ok(rig)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rig(text: &str) -> Result<Rig> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.yaml");
        std::fs::write(&path, text).unwrap();
        read(&path)
    }

    #[test]
    fn a_board_rig_names_all_its_hardware() {
        let err = rig("name: r\ndescription: d\nmachine: m\naddress: mdns\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "rig r: no `media` (name the hardware, or set `emulated: true`)"
        );
    }

    #[test]
    fn an_emulated_rig_names_none() {
        let ok = rig("name: e\ndescription: d\nmachine: m\nemulated: true\n").unwrap();
        assert!(ok.emulated && ok.check().is_ok());
        let err = rig("name: e\ndescription: d\nmachine: m\nemulated: true\naddress: mdns\n")
            .unwrap_err();
        assert!(err
            .to_string()
            .ends_with("an emulated rig makes its own `address`; remove it"));
    }
}
