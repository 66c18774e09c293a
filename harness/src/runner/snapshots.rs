//! The snapshot cache: freshly booted devices saved once and restored by every later fresh
//! device with the same key (see `exec::fresh` for the flow, `qemu::snapshot` for how QEMU
//! saves and loads).
//!
//! Where: `<cache>/snapshots/` (`HARNESS_SNAPSHOTS` moves it), 0700, one folder per key,
//! 0700 too: `state.mig`, `disk.qcow2`, `vars.fd`, the key pair the snapshot was booted with
//! (`id_ed25519`, never in a run's folder), `meta.json` (written last: a folder without it
//! is unfinished) and `used` (its modification time is the last restore).
//!
//! The key is a SHA-256 of everything the booted device depends on: the target's identity
//! (QEMU's binary, the machine, firmware, accelerator, network, the image file), the changes
//! the image gets (the suite's `config` and `files`, the SSH key replaced by a placeholder),
//! and this harness's binary and version. A suite's setup steps are not in it: they run after
//! every restore, as after a boot.
//!
//! Locks: `<key>.lock` beside the folder (a `flock`, see [`crate::lease::try_flock`]). Making
//! a snapshot holds it exclusive; a device restored from a snapshot holds it shared for as
//! long as it runs (its disk is a layer over the snapshot's). Pruning removes, least recently
//! used first, only snapshots nobody holds, down to `HARNESS_SNAPSHOT_GIB` (12 by default).

use std::fs::File;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use rustix::fs::FlockOperation;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{Context, Error, Result};
use crate::lease::try_flock;

/// What replaces the SSH key in the changes a key is made of: each snapshot has its own.
pub const KEY_PLACEHOLDER: &str = "ssh-ed25519 SNAPSHOT-KEY harness";

/// The cache's size bound when `HARNESS_SNAPSHOT_GIB` is not set.
pub const DEFAULT_GIB: u64 = 12;

/// The snapshot cache.
#[derive(Debug, Clone)]
pub struct Snapshots {
    dir: PathBuf,
    limit: u64,
}

/// A snapshot as [`Snapshots::take`] finds it.
pub enum Taken {
    /// Made: restore it (held shared).
    Ready(Hold),
    /// Not made yet: this device makes it (held exclusive).
    Make(Making),
}

/// A finished snapshot, held shared: nobody removes it while this lives.
#[derive(Debug)]
pub struct Hold {
    lock: File,
    dir: PathBuf,
    key: String,
}

/// A snapshot being made, held exclusive; its folder goes unless [`Making::done`] is called.
pub struct Making {
    lock: Option<File>,
    dir: PathBuf,
    key: String,
}

/// What `meta.json` says of a snapshot, for people.
#[derive(Debug, Serialize)]
pub struct Meta {
    /// The key.
    pub key: String,
    /// What the key was made of (the SSH key replaced).
    pub identity: String,
    /// When it was saved (seconds since the epoch).
    pub saved: u64,
    /// How long the boot before it took.
    pub boot_seconds: f64,
    /// The harness that made it.
    pub harness: String,
}

impl Snapshots {
    /// The cache where `HARNESS_SNAPSHOTS` says, else `<cache>/snapshots`, bounded by
    /// `HARNESS_SNAPSHOT_GIB`.
    pub fn from_env() -> Result<Snapshots> {
        let dir = std::env::var_os("HARNESS_SNAPSHOTS")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::paths::cache_dir().join("snapshots"));
        let gib = match std::env::var("HARNESS_SNAPSHOT_GIB") {
            Ok(v) => v.trim().parse::<u64>().map_err(|_| {
                Error::input(format!(
                    "HARNESS_SNAPSHOT_GIB={v}: not a whole number of GiB"
                ))
            })?,
            Err(_) => DEFAULT_GIB,
        };
        Snapshots::open(&dir, gib << 30)
    }

    /// The cache in `dir` (made 0700 when missing; refused when another user owns it),
    /// bounded by `limit` bytes.
    pub fn open(dir: &Path, limit: u64) -> Result<Snapshots> {
        crate::paths::private_dir(
            dir,
            "refusing to keep snapshots (and their private keys) there (set HARNESS_SNAPSHOTS)",
        )?;
        Ok(Snapshots {
            dir: dir.to_path_buf(),
            limit,
        })
    }

    /// The cache's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The snapshot `key`: held shared when it is made; else held exclusive for this device
    /// to make. While another device makes it, waits (up to `wait`, saying so once through
    /// `say`; Ctrl-C ends the wait).
    pub fn take(&self, key: &str, wait: Duration, say: &mut dyn FnMut(&str)) -> Result<Taken> {
        let lock_path = self.dir.join(format!("{key}.lock"));
        let lock = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .infra_ctx(|| format!("cannot open {}", lock_path.display()))?;
        let dir = self.dir.join(key);
        let start = Instant::now();
        let mut said = false;
        loop {
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            if try_flock(&lock, FlockOperation::NonBlockingLockShared, &lock_path)? {
                if finished(&dir) {
                    return Ok(Taken::Ready(Hold {
                        lock,
                        dir,
                        key: key.to_string(),
                    }));
                }
                unlock(&lock);
                if try_flock(&lock, FlockOperation::NonBlockingLockExclusive, &lock_path)? {
                    if finished(&dir) {
                        // Made between the two looks.
                        unlock(&lock);
                        continue;
                    }
                    // Whatever is there is an unfinished one of a maker that died.
                    let _ = std::fs::remove_dir_all(&dir);
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(&dir)
                        .infra_ctx(|| format!("cannot create {}", dir.display()))?;
                    return Ok(Taken::Make(Making {
                        lock: Some(lock),
                        dir,
                        key: key.to_string(),
                    }));
                }
            }
            if !said {
                say(&format!(
                    "waiting for snapshot {}, which another device is making (up to {})",
                    short(key),
                    crate::clock::wait_time(wait)
                ));
                said = true;
            }
            if start.elapsed() >= wait {
                return Err(Error::infra(format!(
                    "gave up after {} waiting for snapshot {}, which another device was making ({} stayed locked)",
                    crate::clock::wait_time(wait),
                    short(key),
                    lock_path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Removes snapshots nobody holds, least recently used first, until the cache is within
    /// its bound; `keep` is never removed. Returns the keys removed.
    pub fn prune(&self, keep: &str) -> Vec<String> {
        let mut entries: Vec<(SystemTime, u64, String)> = std::fs::read_dir(&self.dir)
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                is_key(&name).then(|| {
                    let path = e.path();
                    (last_used(&path), bytes(&path), name)
                })
            })
            .collect();
        entries.sort();
        let mut total: u64 = entries.iter().map(|(_, b, _)| b).sum();
        let mut removed = Vec::new();
        for (_, size, key) in entries {
            if total <= self.limit {
                break;
            }
            if key == keep {
                continue;
            }
            let lock_path = self.dir.join(format!("{key}.lock"));
            let Ok(lock) = File::open(&lock_path) else {
                continue;
            };
            if let Ok(true) = try_flock(&lock, FlockOperation::NonBlockingLockExclusive, &lock_path)
            {
                if std::fs::remove_dir_all(self.dir.join(&key)).is_ok() {
                    total = total.saturating_sub(size);
                    removed.push(key);
                }
            }
        }
        removed
    }
}

impl Hold {
    /// The snapshot's folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its key, short (for people).
    pub fn short(&self) -> &str {
        short(&self.key)
    }

    /// The private key the snapshot's device lets in.
    pub fn private_key(&self) -> PathBuf {
        self.dir.join("id_ed25519")
    }

    /// Records a restore (for pruning, least recently used first).
    pub fn touch(&self) {
        let used = self.dir.join("used");
        if let Ok(f) = File::create(&used) {
            let _ = f.set_modified(SystemTime::now());
        }
    }

    /// Removes the snapshot (one that did not restore) unless another device holds it too;
    /// whether it went.
    pub fn remove(self) -> bool {
        let path = self.dir.with_extension("lock");
        match try_flock(&self.lock, FlockOperation::NonBlockingLockExclusive, &path) {
            Ok(true) => std::fs::remove_dir_all(&self.dir).is_ok(),
            _ => false,
        }
    }
}

impl Making {
    /// The folder the snapshot is made in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its key, short (for people).
    pub fn short(&self) -> &str {
        short(&self.key)
    }

    /// Makes the key pair the snapshot's device is booted with, in its folder; returns the
    /// private key's path and the public key line.
    pub fn key_pair(&self) -> Result<(PathBuf, String)> {
        super::keys::write_pair(&self.dir)
    }

    /// The snapshot is saved: `meta.json` marks it finished, and the lock becomes shared,
    /// for this device to restore it like any other.
    pub fn done(mut self, meta: &Meta) -> Result<Hold> {
        let text = serde_json::to_vec_pretty(meta).expect("meta.json serializes");
        crate::paths::write_atomically(&self.dir.join("meta.json"), &text, 0o600)?;
        let lock = self.lock.take().expect("held until done");
        let path = self.dir.with_extension("lock");
        // Exclusive to shared; nobody waits for an exclusive lock here but a pruner, which
        // takes a finished snapshot only when nobody holds it.
        rustix::fs::flock(&lock, FlockOperation::LockShared)
            .map_err(|e| Error::infra(format!("cannot lock {}: {e}", path.display())))?;
        Ok(Hold {
            lock,
            dir: self.dir.clone(),
            key: self.key.clone(),
        })
    }
}

impl Drop for Making {
    fn drop(&mut self) {
        if self.lock.is_some() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// The snapshot key for `identity` (what the target and the image's changes make it): a
/// SHA-256 in hex, with this harness's binary and version.
pub fn key(identity: &str) -> String {
    let mut h = Sha256::new();
    h.update(identity.as_bytes());
    h.update(b"\nharness: ");
    h.update(harness_identity().as_bytes());
    hex::encode(h.finalize())
}

/// This harness: its binary (path, inode, size, times) and version.
pub fn harness_identity() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    format!(
        "{} {}",
        env!("CARGO_PKG_VERSION"),
        crate::qemu::snapshot::file_identity(&exe, true)
    )
}

/// A key as people see it.
pub fn short(key: &str) -> &str {
    &key[..key.len().min(12)]
}

fn is_key(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit())
}

fn finished(dir: &Path) -> bool {
    dir.join("meta.json").is_file()
}

fn unlock(file: &File) {
    let _ = rustix::fs::flock(file, FlockOperation::Unlock);
}

/// When the snapshot in `dir` was last restored (or made).
fn last_used(dir: &Path) -> SystemTime {
    ["used", "meta.json"]
        .iter()
        .find_map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The disk space the files in `dir` take.
fn bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.blocks() * 512)
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quiet() -> impl FnMut(&str) {
        |_| {}
    }

    fn meta(key: &str) -> Meta {
        Meta {
            key: key.into(),
            identity: "t".into(),
            saved: 0,
            boot_seconds: 1.0,
            harness: "h".into(),
        }
    }

    fn make(cache: &Snapshots, key: &str, size: usize) -> Hold {
        let Taken::Make(m) = cache.take(key, Duration::ZERO, &mut quiet()).unwrap() else {
            panic!("{key} was made already");
        };
        std::fs::write(m.dir().join("state.mig"), vec![1u8; size]).unwrap();
        m.done(&meta(key)).unwrap()
    }

    fn k(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    #[test]
    fn the_first_taker_makes_it_and_the_next_restores_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Snapshots::open(&dir.path().join("s"), 1 << 30).unwrap();
        assert_eq!(
            std::fs::metadata(cache.dir()).unwrap().mode() & 0o777,
            0o700
        );
        let hold = make(&cache, &k('a'), 10);
        assert!(hold.dir().join("meta.json").is_file());
        assert!(matches!(
            cache.take(&k('a'), Duration::ZERO, &mut quiet()).unwrap(),
            Taken::Ready(_)
        ));
        // A maker that gives up leaves nothing behind.
        let Taken::Make(m) = cache.take(&k('b'), Duration::ZERO, &mut quiet()).unwrap() else {
            panic!()
        };
        let (private, public) = m.key_pair().unwrap();
        assert!(private.starts_with(m.dir()) && public.starts_with("ssh-ed25519 "));
        let folder = m.dir().to_path_buf();
        drop(m);
        assert!(!folder.exists());
    }

    #[test]
    fn a_taker_waits_for_the_maker_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Snapshots::open(dir.path(), 1 << 30).unwrap();
        let Taken::Make(m) = cache.take(&k('c'), Duration::ZERO, &mut quiet()).unwrap() else {
            panic!()
        };
        let mut said = Vec::new();
        let e = cache
            .take(&k('c'), Duration::from_millis(300), &mut |l| {
                said.push(l.to_string())
            })
            .err()
            .unwrap();
        assert!(e.to_string().contains("gave up after"), "{e}");
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with("waiting for snapshot cccccccccccc"),
            "{said:?}"
        );
        let other = cache.clone();
        let waiter = std::thread::spawn(move || {
            matches!(
                other.take(&k('c'), Duration::from_secs(20), &mut |_| {}),
                Ok(Taken::Ready(_))
            )
        });
        std::thread::sleep(Duration::from_millis(300));
        std::fs::write(m.dir().join("state.mig"), b"x").unwrap();
        let _hold = m.done(&meta(&k('c'))).unwrap();
        assert!(
            waiter.join().unwrap(),
            "the waiter did not get the made snapshot"
        );
    }

    #[test]
    fn pruning_removes_the_least_recently_used_that_nobody_holds() {
        let dir = tempfile::tempdir().unwrap();
        // Room for three of the four (and their small files).
        let cache = Snapshots::open(dir.path(), (3 << 20) + (1 << 19)).unwrap();
        let held = make(&cache, &k('1'), 1 << 20);
        drop(make(&cache, &k('2'), 1 << 20));
        std::thread::sleep(Duration::from_millis(20));
        drop(make(&cache, &k('3'), 1 << 20));
        std::thread::sleep(Duration::from_millis(20));
        let newest = make(&cache, &k('4'), 1 << 20);
        // The oldest is held (a device runs on it): the next oldest goes instead.
        assert_eq!(cache.prune(&k('4')), vec![k('2')]);
        assert!(held.dir().is_dir() && newest.dir().is_dir());
        assert!(!dir.path().join(k('2')).exists());
        drop(held);
        assert_eq!(cache.prune(&k('4')), Vec::<String>::new(), "within bounds");
        let tight = Snapshots::open(dir.path(), 0).unwrap();
        assert_eq!(tight.prune(&k('4')), vec![k('1'), k('3')]);
    }

    #[test]
    fn a_snapshot_is_removed_only_when_nobody_else_holds_it() {
        let dir = tempfile::tempdir().unwrap();
        let cache = Snapshots::open(dir.path(), 1 << 30).unwrap();
        let one = make(&cache, &k('d'), 10);
        let Taken::Ready(two) = cache.take(&k('d'), Duration::ZERO, &mut quiet()).unwrap() else {
            panic!()
        };
        assert!(!two.remove(), "removed while another device held it");
        assert!(one.dir().join("meta.json").is_file());
        assert!(one.remove());
        assert!(!dir.path().join(k('d')).exists());
    }

    #[test]
    fn the_key_changes_with_the_identity_and_is_hex() {
        let a = key("config: a");
        assert!(is_key(&a), "{a}");
        assert_ne!(a, key("config: b"));
        assert_eq!(a, key("config: a"));
        assert_eq!(short(&a).len(), 12);
    }
}
