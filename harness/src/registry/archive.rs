//! An image as an engine exports it (`GET /images/<id>/get`, `docker save`: `manifest.json`,
//! the config, a `layer.tar` per layer) made into an image the harness's registry serves, with
//! the config's bytes kept, so the image ID is the same on both sides.

use std::collections::BTreeMap;
use std::io::Read;

use serde_json::Value;

use super::image::{from_parts, AppImage};
use crate::error::{Error, Result};

/// The label of a balenaEngine delta image naming the image it applies to.
pub const DELTA_BASE_LABEL: &str = "io.resin.delta.base";

/// An exported image.
pub struct Exported {
    /// Ready to serve.
    pub image: AppImage,
    /// Its config, parsed.
    pub config: Value,
}

impl Exported {
    /// The base a delta image applies to (its `io.resin.delta.base` label), if it is one.
    pub fn delta_base(&self) -> Option<&str> {
        self.config["config"]["Labels"][DELTA_BASE_LABEL].as_str()
    }
}

/// Reads an exported image (the first in the archive); `version` names it in the registry.
pub fn read(archive: &[u8], version: &str) -> Result<Exported> {
    let bad = |what: String| Error::failed(format!("the engine's image archive: {what}"));
    let mut files = BTreeMap::new();
    let mut entries = tar::Archive::new(archive);
    for entry in entries
        .entries()
        .map_err(|e| bad(format!("not a tar: {e}")))?
    {
        let mut entry = entry.map_err(|e| bad(format!("not a tar: {e}")))?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let path = entry
            .path()
            .map_err(|e| bad(format!("a bad name: {e}")))?
            .to_string_lossy()
            .into_owned();
        let mut data = Vec::new();
        entry
            .read_to_end(&mut data)
            .map_err(|e| bad(format!("{path}: {e}")))?;
        files.insert(path, data);
    }
    let file = |name: &str| {
        files
            .get(name)
            .ok_or_else(|| bad(format!("no {name} in it")))
    };
    let manifest: Value = serde_json::from_slice(file("manifest.json")?)
        .map_err(|e| bad(format!("manifest.json: {e}")))?;
    let first = &manifest[0];
    let config_name = first["Config"]
        .as_str()
        .ok_or_else(|| bad("manifest.json names no Config".into()))?;
    let config_bytes = file(config_name)?.clone();
    let config: Value =
        serde_json::from_slice(&config_bytes).map_err(|e| bad(format!("{config_name}: {e}")))?;
    let layers = first["Layers"]
        .as_array()
        .ok_or_else(|| bad("manifest.json names no Layers".into()))?
        .iter()
        .map(|l| {
            let name = l
                .as_str()
                .ok_or_else(|| bad("a layer without a name".into()))?;
            file(name).cloned()
        })
        .collect::<Result<Vec<_>>>()?;
    let image = from_parts(version, config_bytes, &layers);
    let diff_ids: Vec<&str> = config["rootfs"]["diff_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let ours: Vec<&str> = image.layers.iter().map(|l| l.diff_id.as_str()).collect();
    if diff_ids != ours {
        return Err(bad(format!(
            "its layers ({}) are not those its config names ({})",
            ours.join(", "),
            diff_ids.join(", ")
        )));
    }
    Ok(Exported { image, config })
}

#[cfg(test)]
mod tests {
    use super::super::tar::{archive, Entry};
    use super::*;

    fn saved(config: &[u8], layer: &[u8]) -> Vec<u8> {
        let manifest = br#"[{"Config":"abc.json","RepoTags":null,"Layers":["l1/layer.tar"]}]"#;
        archive(&[
            Entry::Dir {
                path: "l1",
                mode: 0o755,
            },
            Entry::File {
                path: "l1/layer.tar",
                mode: 0o644,
                data: layer,
            },
            Entry::File {
                path: "abc.json",
                mode: 0o644,
                data: config,
            },
            Entry::File {
                path: "manifest.json",
                mode: 0o644,
                data: manifest,
            },
        ])
    }

    #[test]
    fn an_exported_delta_keeps_its_config_bytes_and_names_its_base() {
        let layer = archive(&[Entry::File {
            path: "delta",
            mode: 0o600,
            data: b"rsync delta bytes",
        }]);
        let diff_id = super::super::sha256_digest(&layer);
        let config = format!(
            r#"{{"config":{{"Labels":{{"io.resin.delta.base":"sha256:1111","io.resin.delta.config":"{{}}"}}}},"rootfs":{{"type":"layers","diff_ids":["{diff_id}"]}}}}"#
        );
        let got = read(&saved(config.as_bytes(), &layer), "delta").unwrap();
        assert_eq!(got.delta_base(), Some("sha256:1111"));
        assert_eq!(
            got.image.image_id(),
            super::super::sha256_digest(config.as_bytes())
        );
        assert_eq!(got.image.layers.len(), 1);
        assert_eq!(got.image.layers[0].diff_id, diff_id);
        // A config naming other layers is refused, saying so.
        let wrong = config.replace(&diff_id, "sha256:2222");
        let e = read(&saved(wrong.as_bytes(), &layer), "delta")
            .err()
            .unwrap();
        assert!(e.to_string().contains("not those its config names"), "{e}");
        let e = read(b"not a tar at all", "x").err().unwrap();
        assert!(matches!(e, Error::Failed(_)), "{e}");
    }
}
