//! The image a run boots: the user's (unpacked once into the run's folder if packed) or the
//! machine's reference image, checked for a `resin-boot` partition before anything starts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::config::machine::Machine;
use crate::error::{Context, Error, Result};
use crate::image::partitions::{read_table, Partition};

/// A checked image, ready to boot.
#[derive(Debug, Clone)]
pub struct Media {
    /// The raw image.
    pub image: PathBuf,
    /// Its boot partition.
    pub boot: Partition,
    /// A kernel to probe KVM with, if the reference image is built.
    pub probe_kernel: Option<PathBuf>,
    /// Values the suites may use: `base_version`, `update_file`, `update_version`.
    pub vars: BTreeMap<String, String>,
}

/// Finds, unpacks and checks the image for a run in `dir`.
pub fn prepare(
    root: &Path,
    machine: &Machine,
    image: Option<&Path>,
    dir: &Path,
    say: &mut dyn FnMut(&str),
) -> Result<Media> {
    let mut vars = BTreeMap::new();
    let reference = match &machine.reference_image {
        Some(recipe) => {
            if image.is_none() && crate::reference::cached(root, recipe)?.is_none() {
                say(&format!(
                    "building the reference image for {} (once; cached)",
                    machine.name
                ));
            }
            match image {
                Some(_) => crate::reference::cached(root, recipe)?,
                None => Some(crate::reference::build(root, recipe, &mut |l| say(l))?),
            }
        }
        None => None,
    };
    let image = match (image, &reference) {
        (Some(path), _) => {
            if !path.is_file() {
                return Err(Error::input(format!(
                    "image {} does not exist",
                    path.display()
                )));
            }
            crate::image::configure::unpack_to(path, dir)?
        }
        (None, Some(build)) => {
            vars.insert("base_version".into(), build.version.clone());
            vars.insert(
                "update_file".into(),
                build.update_path().display().to_string(),
            );
            vars.insert("update_version".into(), build.update.version.clone());
            if let Some(no_health) = &build.update.no_health {
                let path = build.dir.join(no_health);
                vars.insert("update_file_no_health".into(), path.display().to_string());
            }
            build.image_path()
        }
        (None, None) => {
            return Err(Error::input(format!(
                "machine `{}` has no default image; give one with --image",
                machine.name
            )))
        }
    };
    let (boot, mut file) = boot_partition(&image)?;
    remember_secrets(&mut file);
    Ok(Media {
        image,
        boot,
        probe_kernel: reference.map(|b| b.kernel_path()),
        vars,
    })
}

/// The known-good image of a target: a rig's `health_image`, else the machine's reference
/// image when it is built. Booting it tells a target at fault from an image at fault; `None`
/// when there is none to boot (then nothing is blamed on the target without evidence).
pub fn known_good(root: &Path, machine: &Machine, health_image: Option<&Path>) -> Option<Media> {
    let image = match health_image {
        Some(p) => root.join(p),
        None => crate::reference::cached(root, machine.reference_image.as_deref()?)
            .ok()??
            .image_path(),
    };
    let (boot, _) = boot_partition(&image).ok()?;
    Some(Media {
        image,
        boot,
        probe_kernel: None,
        vars: BTreeMap::new(),
    })
}

/// The image's `resin-boot` partition (and the open image), or why it has none.
fn boot_partition(image: &Path) -> Result<(Partition, std::fs::File)> {
    let mut file = std::fs::File::open(image)
        .input_ctx(|| format!("cannot open image {}", image.display()))?;
    let table = read_table(&mut file).map_err(|e| match e {
        Error::Input(m) if !m.contains(&image.display().to_string()) => {
            Error::Input(format!("{}: {m}", image.display()))
        }
        other => other,
    })?;
    let boot = table.by_label("resin-boot").cloned().ok_or_else(|| {
        let labels: Vec<String> = table
            .partitions
            .iter()
            .filter_map(|p| p.label.clone())
            .collect();
        Error::input(format!(
            "{}: no partition labelled resin-boot (found: {})",
            image.display(),
            if labels.is_empty() {
                "no labels".into()
            } else {
                labels.join(", ")
            }
        ))
    })?;
    Ok((boot, file))
}

/// The secrets of the image's own `config.json` (a balena-cloud image's `apiKey`,
/// `deviceApiKey`): masked in everything the run writes.
fn remember_secrets(file: &mut std::fs::File) {
    use crate::image::{bootfs::open_boot, partitions::ReadOnly};
    let bytes = open_boot(ReadOnly(file)).and_then(|boot| boot.read("config.json"));
    if let Ok(Some(bytes)) = bytes {
        if let Ok(config) = serde_json::from_slice(&bytes) {
            crate::redact::secrets_of_config(&config);
        }
    }
}
