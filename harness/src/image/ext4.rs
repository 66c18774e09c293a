//! Reads files from an ext4 partition of a disk image in place, with e2fsprogs' `debugfs`.
//!
//! No mount, no loop device, no copy: `debugfs` opens `IMAGE?offset=N` (libext2fs takes I/O
//! options after a `?` in the device name) read-only and without its bitmaps (`-c`), one
//! command per call. Each call is bounded: it is killed after [`CALL_TIMEOUT`], and a file
//! larger than [`MAX_FILE`] is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::partitions::Partition;
use crate::error::{Context, Error, Result};
use crate::process::Child;

/// How long one `debugfs` call may take.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// The largest file [`Ext4::read`] returns.
pub const MAX_FILE: u64 = 64 << 20;

/// Symbolic links followed, at most, to reach a file.
pub(crate) const MAX_LINKS: usize = 8;

/// An ext4 filesystem lying at a byte offset of an image file.
#[derive(Debug, Clone)]
pub struct Ext4 {
    image: PathBuf,
    offset: u64,
    /// The partition's label (or `#N`), for messages.
    name: String,
}

/// What a path names, as far as the checks need to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    /// A regular file of this many bytes.
    File(u64),
    /// A directory.
    Dir,
    /// A symbolic link to this target.
    Link(String),
    /// Anything else (a device, a socket).
    Other,
}

impl Ext4 {
    /// The filesystem on `part` of `image`.
    pub fn on(image: &Path, part: &Partition) -> Result<Ext4> {
        if image.to_string_lossy().contains('?') {
            return Err(Error::input(format!(
                "{}: debugfs cannot open a file whose name holds `?`",
                image.display()
            )));
        }
        Ok(Ext4 {
            image: image.to_path_buf(),
            offset: part.start,
            name: part.display_name(),
        })
    }

    /// What `path` names (absolute, `/`-separated), following no link; `None` if nothing.
    pub fn stat(&self, path: &str) -> Result<Option<Node>> {
        let Some(text) = self.call("stat", path)? else {
            return Ok(None);
        };
        let text = String::from_utf8_lossy(&text);
        let kind = field(&text, "Type:").unwrap_or_default();
        Ok(Some(match kind.as_str() {
            "regular" => Node::File(
                field(&text, "Size:")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
            ),
            "directory" => Node::Dir,
            "symlink" => Node::Link(match link_target(&text) {
                Some(to) => to,
                // A target longer than 60 bytes lives in a block, which `cat` prints.
                None => {
                    let bytes = self.call("cat", path)?.unwrap_or_default();
                    String::from_utf8_lossy(&bytes).into_owned()
                }
            }),
            _ => Node::Other,
        }))
    }

    /// The bytes of the file at `path`, following symbolic links (within this filesystem,
    /// relative to its root); `None` when there is no such file.
    pub fn read(&self, path: &str) -> Result<Option<Vec<u8>>> {
        let mut path = path.to_string();
        for _ in 0..=MAX_LINKS {
            match self.stat(&path)? {
                None | Some(Node::Dir) | Some(Node::Other) => return Ok(None),
                Some(Node::Link(to)) => path = resolve(&path, &to),
                Some(Node::File(size)) if size > MAX_FILE => {
                    return Err(Error::input(format!(
                        "{}: {path} is {size} bytes, more than the {MAX_FILE} read",
                        self.name
                    )))
                }
                Some(Node::File(_)) => return self.call("cat", &path),
            }
        }
        Err(Error::input(format!(
            "{}: {path}: more than {MAX_LINKS} symbolic links",
            self.name
        )))
    }

    /// The names in the directory at `path` (without `.` and `..`); `None` when it is not
    /// there.
    pub fn list(&self, path: &str) -> Result<Option<Vec<String>>> {
        let Some(text) = self.call("ls -p", path)? else {
            return Ok(None);
        };
        // `ls -p`: one `/inode/mode/uid/gid/name/size/` line per entry.
        let names = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.strip_prefix('/')?.split('/').nth(4).map(String::from))
            .filter(|n| !n.is_empty() && n != "." && n != "..")
            .collect();
        Ok(Some(names))
    }

    /// Runs `debugfs -c -R "CMD PATH"` on the filesystem: its stdout, or `None` when the path
    /// is not there.
    fn call(&self, cmd: &str, path: &str) -> Result<Option<Vec<u8>>> {
        if !path.starts_with('/') || path.contains(['"', '\n', '\\']) {
            return Err(Error::input(format!("{path:?}: not a plain absolute path")));
        }
        let dir = tempfile::tempdir().infra_ctx(|| "cannot create a temporary folder".into())?;
        let (out, err) = (dir.path().join("out"), dir.path().join("err"));
        let file = |p: &Path| {
            std::fs::File::create(p).infra_ctx(|| format!("cannot create {}", p.display()))
        };
        let mut c = Command::new("debugfs");
        c.arg("-c")
            .arg("-R")
            .arg(format!("{cmd} \"{path}\""))
            .arg(format!("{}?offset={}", self.image.display(), self.offset))
            .stdin(Stdio::null())
            .stdout(file(&out)?)
            .stderr(file(&err)?);
        let mut child = Child::spawn(c, "debugfs (Debian's e2fsprogs)")?;
        let status = match child.wait_timeout(CALL_TIMEOUT)? {
            Some(s) => s,
            None => {
                child.kill();
                return Err(Error::infra(format!(
                    "debugfs on {} ({}) did not finish within {}s",
                    self.image.display(),
                    self.name,
                    CALL_TIMEOUT.as_secs()
                )));
            }
        };
        let stderr = std::fs::read_to_string(&err).unwrap_or_default();
        if !status.success() {
            return Err(Error::input(format!(
                "{}: {} is not a readable ext4 filesystem: {}",
                self.image.display(),
                self.name,
                complaint(&stderr)
            )));
        }
        if stderr.contains("File not found by ext2_lookup") {
            return Ok(None);
        }
        if let Some(problem) = stderr.lines().find(|l| l.starts_with(path)) {
            return Err(Error::input(format!("{}: {problem}", self.name)));
        }
        std::fs::read(&out)
            .map(Some)
            .infra_ctx(|| format!("cannot read {}", out.display()))
    }
}

/// The value after `key` on `stat`'s output (`Type: regular`, `Size: 123`).
fn field(text: &str, key: &str) -> Option<String> {
    let at = text.find(key)? + key.len();
    text[at..].split_whitespace().next().map(String::from)
}

/// A link's target from `stat`'s output: `Fast link dest: "../usr/lib/os-release"`.
fn link_target(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.contains("link dest:"))?;
    let quoted = line.split_once("link dest:")?.1.trim();
    Some(quoted.trim_matches('"').to_string())
}

/// The path a link at `from` pointing to `to` names, relative to the filesystem's root.
pub(crate) fn resolve(from: &str, to: &str) -> String {
    let mut parts: Vec<&str> = if to.starts_with('/') {
        Vec::new()
    } else {
        let mut p: Vec<&str> = from.split('/').filter(|s| !s.is_empty()).collect();
        p.pop();
        p
    };
    for seg in to.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    format!("/{}", parts.join("/"))
}

/// debugfs's complaint, without its version banner, on one line.
fn complaint(stderr: &str) -> String {
    let lines: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("debugfs 1.") && !l.contains("catastrophic"))
        .collect();
    match lines.first() {
        Some(l) => l.trim_start_matches("debugfs: ").to_string(),
        None => "debugfs failed".into(),
    }
}

/// For tests: an image file of 1 MiB of zeros, then an ext4 made by `mkfs.ext4 -d` from the
/// folder `src`, and the partition it is.
#[cfg(test)]
pub(crate) fn test_image(dir: &Path, src: &Path) -> (PathBuf, Partition) {
    let fs = dir.join("fs.img");
    let ok = Command::new("mkfs.ext4")
        .args(["-q", "-F", "-d"])
        .arg(src)
        .arg(&fs)
        .arg("8M")
        .status()
        .expect("mkfs.ext4 (Debian's e2fsprogs)");
    assert!(ok.success());
    let img = dir.join("disk.img");
    let mut bytes = vec![0u8; 1 << 20];
    bytes.extend(std::fs::read(&fs).unwrap());
    std::fs::write(&img, bytes).unwrap();
    let part = Partition {
        number: 2,
        start: 1 << 20,
        size: 8 << 20,
        type_name: "Linux".into(),
        label: Some("resin-rootA".into()),
        fs: None,
        bootable: false,
    };
    (img, part)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An image holding `usr/lib/os-release` and links to it.
    fn image(dir: &Path) -> (PathBuf, Partition) {
        let src = dir.join("src");
        std::fs::create_dir_all(src.join("usr/lib")).unwrap();
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("usr/lib/os-release"), "SLUG=\"x\"\n").unwrap();
        std::os::unix::fs::symlink("../usr/lib/os-release", src.join("etc/os-release")).unwrap();
        std::os::unix::fs::symlink("/etc/os-release", src.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop", src.join("loop")).unwrap();
        let long = format!("{}/usr/lib/os-release", "/.".repeat(40));
        std::os::unix::fs::symlink(long, src.join("long")).unwrap();
        test_image(dir, &src)
    }

    #[test]
    fn reads_files_links_and_folders_at_an_offset() {
        let dir = tempfile::tempdir().unwrap();
        let (img, part) = image(dir.path());
        let fs = Ext4::on(&img, &part).unwrap();
        let want = Some(b"SLUG=\"x\"\n".to_vec());
        assert_eq!(fs.read("/usr/lib/os-release").unwrap(), want);
        assert_eq!(fs.read("/etc/os-release").unwrap(), want);
        assert_eq!(fs.read("/abs").unwrap(), want);
        assert_eq!(
            fs.read("/long").unwrap(),
            want,
            "a link whose target is in a block"
        );
        assert_eq!(fs.read("/nope").unwrap(), None);
        assert_eq!(fs.read("/usr").unwrap(), None);
        assert_eq!(fs.stat("/usr").unwrap(), Some(Node::Dir));
        assert_eq!(
            fs.stat("/etc/os-release").unwrap(),
            Some(Node::Link("../usr/lib/os-release".into()))
        );
        let mut names = fs.list("/").unwrap().unwrap();
        names.sort();
        assert_eq!(names, ["abs", "etc", "long", "loop", "lost+found", "usr"]);
        assert_eq!(fs.list("/missing").unwrap(), None);
        let err = fs.read("/loop").unwrap_err();
        assert!(err.to_string().contains("symbolic links"), "{err}");
    }

    #[test]
    fn not_ext4_is_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let (img, mut part) = image(dir.path());
        part.start = 0;
        let err = Ext4::on(&img, &part).unwrap().read("/x").unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        assert!(
            err.to_string()
                .contains("resin-rootA is not a readable ext4"),
            "{err}"
        );
        assert!(err.to_string().contains("Bad magic number"), "{err}");
    }

    #[test]
    fn link_paths() {
        assert_eq!(
            resolve("/etc/os-release", "../usr/lib/os-release"),
            "/usr/lib/os-release"
        );
        assert_eq!(resolve("/a/b", "/c/./d"), "/c/d");
        assert_eq!(resolve("/a", "../../x"), "/x");
    }
}
