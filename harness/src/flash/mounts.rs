//! What a block device is in use for: mounts (from `/proc/self/mountinfo`), the root file
//! system's disk, and kernel holders (device-mapper, md).

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The device number (major, minor) of the mounted file system.
    pub dev: (u32, u32),
    /// Where it is mounted.
    pub mount_point: String,
    /// The mount source (`/dev/sdb1`, `tmpfs`, ...).
    pub source: String,
}

/// Parses the text of `/proc/self/mountinfo`, skipping lines it cannot read.
pub fn parse_mountinfo(text: &str) -> Vec<Mount> {
    text.lines()
        .filter_map(|line| {
            let f: Vec<&str> = line.split(' ').collect();
            let (maj, min) = f.get(2)?.split_once(':')?;
            let sep = f.iter().position(|&x| x == "-")?;
            Some(Mount {
                dev: (maj.parse().ok()?, min.parse().ok()?),
                mount_point: unescape(f.get(4)?),
                source: unescape(f.get(sep + 2)?),
            })
        })
        .collect()
}

/// Undoes the kernel's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(u8::is_ascii_digit) {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The sysfs directory of a block device number, e.g. `/sys/devices/.../block/sdb/sdb1`.
fn sysfs_dir(dev: (u32, u32)) -> Option<PathBuf> {
    std::fs::canonicalize(format!("/sys/dev/block/{}:{}", dev.0, dev.1)).ok()
}

/// The sysfs directory of the whole disk a block device belongs to.
fn disk_dir(dev: (u32, u32)) -> Option<PathBuf> {
    let dir = sysfs_dir(dev)?;
    if dir.join("partition").exists() {
        dir.parent().map(Path::to_path_buf)
    } else {
        Some(dir)
    }
}

fn dev_of_rdev(rdev: u64) -> (u32, u32) {
    (libc::major(rdev), libc::minor(rdev))
}

/// The device number of a mount: its own, or that of its `/dev/...` source (btrfs reports an
/// anonymous device number in mountinfo).
fn mount_devs(m: &Mount) -> Vec<(u32, u32)> {
    let mut devs = vec![m.dev];
    if m.source.starts_with("/dev/") {
        if let Ok(meta) = std::fs::metadata(&m.source) {
            if meta.file_type().is_block_device() {
                devs.push(dev_of_rdev(meta.rdev()));
            }
        }
    }
    devs
}

/// Refuses a block device that is mounted (it or, for a whole disk, one of its partitions),
/// that holds the running system's root file system, or that the kernel holds (LVM, RAID).
pub fn check_not_in_use(path: &Path, rdev: u64) -> Result<()> {
    let target = dev_of_rdev(rdev);
    let shown = path.display();
    let Some(target_dir) = sysfs_dir(target) else {
        return Ok(()); // no sysfs: nothing more to learn
    };
    let target_disk = disk_dir(target);
    let target_is_disk = target_disk.as_deref() == Some(target_dir.as_path());
    let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let mounts = parse_mountinfo(&text);
    for m in &mounts {
        for dev in mount_devs(m) {
            let Some(dir) = sysfs_dir(dev) else { continue };
            let hit = dir == target_dir || (target_is_disk && dir.parent() == Some(&target_dir));
            if hit {
                return Err(Error::input(format!(
                    "{shown} is mounted at {}: refusing to write",
                    m.mount_point
                )));
            }
        }
    }
    if let Some(root) = mounts.iter().rev().find(|m| m.mount_point == "/") {
        let root_disks: Vec<_> = mount_devs(root).into_iter().filter_map(disk_dir).collect();
        if target_disk.as_ref().is_some_and(|d| root_disks.contains(d)) {
            return Err(Error::input(format!(
                "{shown} is the disk this host runs from: refusing to write"
            )));
        }
    }
    if let Some(holder) = holder_of(&target_dir) {
        return Err(Error::input(format!(
            "{shown} is in use by {holder}: refusing to write"
        )));
    }
    Ok(())
}

/// A kernel holder (dm-0, md0) of the device or of one of its partitions.
fn holder_of(dir: &Path) -> Option<String> {
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        dirs.extend(
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("partition").exists()),
        );
    }
    dirs.iter().find_map(|d| {
        let mut it = std::fs::read_dir(d.join("holders")).ok()?;
        it.next()?
            .ok()
            .map(|e| e.file_name().to_string_lossy().into_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo_lines() {
        let text = "\
22 27 0:21 / /proc rw,relatime - proc proc rw
36 27 8:17 / /media/my\\040card rw,relatime shared:1 - vfat /dev/sdb1 rw
garbage
";
        let m = parse_mountinfo(text);
        assert_eq!(m.len(), 2);
        assert_eq!(
            m[1],
            Mount {
                dev: (8, 17),
                mount_point: "/media/my card".into(),
                source: "/dev/sdb1".into()
            }
        );
    }

    #[test]
    fn refuses_the_root_disk_fake_free() {
        // The disk holding "/" here, when it is a real block device, must be refused.
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let Some(root) = parse_mountinfo(&text)
            .into_iter()
            .rev()
            .find(|m| m.mount_point == "/")
        else {
            return;
        };
        let Some(dir) = disk_dir(root.dev) else {
            return;
        };
        let dev = std::fs::read_to_string(dir.join("dev")).unwrap();
        let (maj, min) = dev.trim().split_once(':').unwrap();
        let rdev = libc::makedev(maj.parse().unwrap(), min.parse().unwrap());
        let err = check_not_in_use(Path::new("/dev/rootdisk"), rdev).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        assert!(err.to_string().contains("refusing to write"), "{err}");
    }
}
