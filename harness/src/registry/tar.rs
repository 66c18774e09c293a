//! A minimal, deterministic ustar writer: directories, regular files and symlinks, fixed owner and mtime.

/// The mtime every entry gets (2024-01-01T00:00:00Z), so archives are byte-for-byte reproducible.
pub const MTIME: u64 = 1_704_067_200;

const BLOCK: usize = 512;

/// One entry of an archive. Paths are relative (`bin/busybox`), without a leading `/`.
#[derive(Debug, Clone)]
pub enum Entry<'a> {
    /// A directory with its mode (e.g. `0o755`).
    Dir { path: &'a str, mode: u32 },
    /// A regular file with its mode and content.
    File {
        path: &'a str,
        mode: u32,
        data: &'a [u8],
    },
    /// A symbolic link pointing at `target`.
    Symlink { path: &'a str, target: &'a str },
}

/// Writes `entries` in order as a ustar archive (owner 0:0, mtime [`MTIME`]) and the two end blocks.
///
/// Panics if a path or link target does not fit the 100-byte ustar fields: callers pass constants.
pub fn archive(entries: &[Entry<'_>]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        match *entry {
            Entry::Dir { path, mode } => {
                let name = format!("{}/", path.trim_end_matches('/'));
                out.extend_from_slice(&header(&name, mode, 0, b'5', ""));
            }
            Entry::File { path, mode, data } => {
                out.extend_from_slice(&header(path, mode, data.len() as u64, b'0', ""));
                out.extend_from_slice(data);
                out.resize(out.len().next_multiple_of(BLOCK), 0);
            }
            Entry::Symlink { path, target } => {
                out.extend_from_slice(&header(path, 0o777, 0, b'2', target));
            }
        }
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn header(name: &str, mode: u32, size: u64, kind: u8, link: &str) -> [u8; BLOCK] {
    assert!(
        name.len() < 100 && link.len() < 100,
        "tar path too long: {name}"
    );
    let mut h = [0u8; BLOCK];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], u64::from(mode));
    octal(&mut h[108..116], 0); // uid
    octal(&mut h[116..124], 0); // gid
    octal(&mut h[124..136], size);
    octal(&mut h[136..148], MTIME);
    h[156] = kind;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    h[265..269].copy_from_slice(b"root");
    h[297..301].copy_from_slice(b"root");
    // The checksum is computed with its own field read as eight spaces.
    h[148..156].copy_from_slice(b"        ");
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    h[148..155].copy_from_slice(format!("{sum:06o}\0").as_bytes());
    h
}

/// Writes `value` as zero-padded octal filling the field but its last byte, which stays NUL.
fn octal(field: &mut [u8], value: u64) {
    let width = field.len() - 1;
    let text = format!("{value:0width$o}");
    assert!(text.len() == width, "tar field overflow: {value}");
    field[..width].copy_from_slice(text.as_bytes());
    field[width] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn sample() -> Vec<u8> {
        archive(&[
            Entry::Dir {
                path: "bin",
                mode: 0o755,
            },
            Entry::File {
                path: "bin/tool",
                mode: 0o755,
                data: b"hello\n",
            },
            Entry::Symlink {
                path: "bin/sh",
                target: "tool",
            },
        ])
    }

    #[test]
    fn blocks_are_aligned_and_reproducible() {
        let a = sample();
        assert_eq!(a.len() % BLOCK, 0);
        assert_eq!(
            a.len(),
            (3 + 1 + 2) * BLOCK,
            "three headers, one data block, two end blocks"
        );
        assert_eq!(a, sample());
    }

    #[test]
    fn system_tar_lists_what_we_wrote() {
        let Ok(_) = Command::new("tar").arg("--version").output() else {
            return crate::testing::missing("tar on PATH (apt-get install tar)");
        };
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.tar");
        std::fs::write(&file, sample()).unwrap();
        let out = Command::new("tar").arg("-tvf").arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(listing.contains("drwxr-xr-x root/root"), "{listing}");
        assert!(
            listing.contains("-rwxr-xr-x root/root         6 2024-01-01"),
            "{listing}"
        );
        assert!(listing.contains("bin/sh -> tool"), "{listing}");
    }
}
