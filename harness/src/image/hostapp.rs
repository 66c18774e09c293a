//! The OS files of a root partition, read in place: at the partition's top, or, in a hostapp
//! slot (balenaOS since 2.x, and the reference image), inside the engine layers under
//! `balena/` that hold the OS as a container image.
//!
//! A hostapp slot holds `balena/` (an engine data root), `current`, `hostapps/`, `boot`. Its
//! OS lives in the layer folders of the engine's storage driver: `balena/overlay2/<id>/diff`
//! (each with a `lower` file listing the layers below it) or `balena/aufs/diff/<id>` (with
//! `balena/aufs/layers/<id>` listing them). A file is looked up from the topmost layer down.

use super::ext4::{resolve, Ext4, Node, MAX_LINKS};
use crate::error::{Error, Result};

/// The most layers looked at in one slot.
const MAX_LAYERS: usize = 64;

/// Where a root partition's OS files are.
#[derive(Debug, Clone)]
pub struct OsRoot {
    fs: Ext4,
    /// Folders that hold the OS's `/`, topmost first.
    tops: Vec<String>,
}

impl OsRoot {
    /// The OS root of the filesystem `fs`: its hostapp layers when it has `balena/`, else its
    /// own top.
    pub fn of(fs: Ext4) -> Result<OsRoot> {
        let mut tops = Vec::new();
        for driver in &DRIVERS {
            if tops.is_empty() {
                tops = layers(&fs, driver)?;
            }
        }
        if tops.is_empty() {
            tops.push(String::new());
        }
        Ok(OsRoot { fs, tops })
    }

    /// Whether the OS lives in hostapp layers rather than at the partition's top.
    pub fn is_hostapp(&self) -> bool {
        self.tops.first().is_some_and(|t| !t.is_empty())
    }

    /// The OS's file at `path` (absolute), from the topmost layer that has it, following
    /// symbolic links within the OS, with where it was found (a path inside the partition);
    /// `None` when no layer has it, or the topmost one deleted it.
    pub fn read(&self, path: &str) -> Result<Option<(String, Vec<u8>)>> {
        let mut path = path.to_string();
        for _ in 0..=MAX_LINKS {
            match self.find(&path)? {
                Some((_, Node::Link(to))) => path = resolve(&path, &to),
                Some((full, Node::File(_))) => {
                    return Ok(self.fs.read(&full)?.map(|bytes| (full, bytes)))
                }
                // Nothing, a folder, or a deletion (a whiteout device).
                _ => return Ok(None),
            }
        }
        Err(Error::input(format!(
            "{path}: more than {MAX_LINKS} symbolic links"
        )))
    }

    /// How many layers the OS has (1 for an OS at the partition's top).
    pub fn layers(&self) -> usize {
        self.tops.len()
    }

    /// The topmost layer's entry for `path`, with its path inside the partition.
    fn find(&self, path: &str) -> Result<Option<(String, Node)>> {
        for top in &self.tops {
            let full = format!("{top}{path}");
            if let Some(node) = self.fs.stat(&full)? {
                return Ok(Some((full, node)));
            }
        }
        Ok(None)
    }
}

/// A storage driver's layout: where its layers are listed, where a layer's files are, and
/// the file listing the layers below it (`{}` is the layer's id).
struct Driver {
    listed: &'static str,
    files: &'static str,
    below: &'static str,
}

const DRIVERS: [Driver; 2] = [
    Driver {
        listed: "/balena/overlay2",
        files: "/balena/overlay2/{}/diff",
        below: "/balena/overlay2/{}/lower",
    },
    Driver {
        listed: "/balena/aufs/diff",
        files: "/balena/aufs/diff/{}",
        below: "/balena/aufs/layers/{}",
    },
];

/// The layer folders of `driver`, topmost first (the one with the most layers below it);
/// none when the driver's folder is not there.
fn layers(fs: &Ext4, driver: &Driver) -> Result<Vec<String>> {
    let Some(ids) = fs.list(driver.listed)? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    // overlay2's `l/` holds short links to the layers, not a layer.
    for id in ids.into_iter().filter(|i| i != "l").take(MAX_LAYERS) {
        let below = fs.read(&driver.below.replace("{}", &id))?;
        let depth = below.map_or(0, |b| {
            String::from_utf8_lossy(&b)
                .split([':', '\n'])
                .filter(|s| !s.trim().is_empty())
                .count()
        });
        found.push((depth, driver.files.replace("{}", &id)));
    }
    found.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    Ok(found.into_iter().map(|(_, d)| d).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ext4::test_image;
    use std::path::Path;

    fn write(root: &Path, path: &str, text: &str) {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    #[test]
    fn a_hostapp_slot_is_read_from_its_top_layer_down() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        let o2 = "balena/overlay2";
        // The image's layer, an upper layer over it, and the container's layer on top.
        write(
            &src,
            &format!("{o2}/base/diff/usr/lib/os-release"),
            "VERSION=\"1\"\n",
        );
        write(
            &src,
            &format!("{o2}/base/diff/balenaos.fingerprint"),
            "old\n",
        );
        std::fs::create_dir_all(src.join(format!("{o2}/base/diff/etc"))).unwrap();
        std::os::unix::fs::symlink(
            "../usr/lib/os-release",
            src.join(format!("{o2}/base/diff/etc/os-release")),
        )
        .unwrap();
        write(&src, &format!("{o2}/upper/lower"), "l/BASE");
        write(
            &src,
            &format!("{o2}/upper/diff/usr/lib/os-release"),
            "VERSION=\"2\"\n",
        );
        write(&src, &format!("{o2}/top/lower"), "l/UPPER:l/BASE");
        write(&src, &format!("{o2}/top/diff/etc/hostname"), "x\n");
        std::fs::create_dir_all(src.join(format!("{o2}/l"))).unwrap();
        let (img, part) = test_image(dir.path(), &src);
        let root = OsRoot::of(Ext4::on(&img, &part).unwrap()).unwrap();
        assert!(root.is_hostapp());
        assert_eq!(root.layers(), 3);
        // /etc/os-release is a link in the base layer to a file the upper layer replaced.
        let (found, bytes) = root.read("/etc/os-release").unwrap().unwrap();
        assert_eq!(bytes, b"VERSION=\"2\"\n");
        assert_eq!(found, "/balena/overlay2/upper/diff/usr/lib/os-release");
        let (found, _) = root.read("/balenaos.fingerprint").unwrap().unwrap();
        assert_eq!(found, "/balena/overlay2/base/diff/balenaos.fingerprint");
        assert_eq!(root.read("/nope").unwrap(), None);
    }

    #[test]
    fn a_plain_root_is_read_at_its_top() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        write(&src, "balenaos.fingerprint", "x\n");
        let (img, part) = test_image(dir.path(), &src);
        let root = OsRoot::of(Ext4::on(&img, &part).unwrap()).unwrap();
        assert!(!root.is_hostapp());
        let (found, bytes) = root.read("/balenaos.fingerprint").unwrap().unwrap();
        assert_eq!(
            (found.as_str(), bytes.as_slice()),
            ("/balenaos.fingerprint", &b"x\n"[..])
        );
    }
}
