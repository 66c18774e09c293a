//! Leases on rigs and QEMU slots, so that two harness processes never use one at once.
//!
//! A lease `NAME` is the JSON file `<dir>/NAME.lease`, naming its holder and an expiry that a
//! background thread renews while the [`Lease`] lives. A holder that dies (`kill -9`, a
//! cancelled CI job) stops renewing, and the lease frees itself when it expires, and not
//! before: the folder may be shared with other hosts, so a dead pid proves nothing. Reading,
//! deciding and writing happen under `flock` on `<dir>/NAME.lock`, held only for that moment.
//! No server is involved.
//!
//! Several users share the default folder, which is sticky (mode 1777): there only a file's
//! owner may replace it, so lease files are left writable by all and, when another user owns
//! one, rewritten in place under the lock rather than replaced.

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// The default lease folder, shared by every user on the host.
const SYSTEM_DIR: &str = "/run/lock/harness";

/// How long a lease lasts without renewal when `HARNESS_LEASE_TTL` is not set.
const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// The lease folder: `HARNESS_LEASE_DIR`, else `/run/lock/harness` (created world-writable
/// and sticky, mode 1777), else `<cache>/leases` when `/run/lock` is not writable.
pub fn dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("HARNESS_LEASE_DIR") {
        let dir = PathBuf::from(dir);
        std::fs::create_dir_all(&dir)
            .infra_ctx(|| format!("cannot create the lease folder {}", dir.display()))?;
        return Ok(dir);
    }
    let system = Path::new(SYSTEM_DIR);
    if std::fs::create_dir(system).is_ok() {
        // mkdir's mode is cut by the umask; set it explicitly.
        let _ = std::fs::set_permissions(system, std::fs::Permissions::from_mode(0o1777));
    }
    if system.is_dir() && writable(system) {
        return Ok(system.to_path_buf());
    }
    let dir = crate::paths::cache_dir().join("leases");
    std::fs::create_dir_all(&dir)
        .infra_ctx(|| format!("cannot create the lease folder {}", dir.display()))?;
    Ok(dir)
}

/// Whether this process may create files in `dir`.
fn writable(dir: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: plain syscall on a NUL-terminated path.
    unsafe { libc::access(c.as_ptr(), libc::W_OK | libc::X_OK) == 0 }
}

/// How long a lease lasts without renewal: `HARNESS_LEASE_TTL` in seconds (`3`, `0.5`),
/// default 60 s.
pub fn ttl() -> Result<Duration> {
    ttl_from(std::env::var("HARNESS_LEASE_TTL").ok().as_deref())
}

fn ttl_from(value: Option<&str>) -> Result<Duration> {
    let Some(text) = value else {
        return Ok(DEFAULT_TTL);
    };
    text.trim()
        .parse::<f64>()
        .ok()
        .filter(|s| *s > 0.0)
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| {
            Error::input(format!(
                "HARNESS_LEASE_TTL={text:?} is not a positive number of seconds"
            ))
        })
}

/// One lease as stored in its file, as [`list`] and [`holder`] show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseInfo {
    /// The lease's name, e.g. `rig-pi4-1` or `qemu-0`.
    pub name: String,
    /// `<pid>@<host>`.
    pub holder: String,
    /// The holder's process id (on `host`).
    pub pid: u32,
    /// The holder's host name.
    pub host: String,
    /// Free text from the holder, e.g. its run folder.
    pub what: String,
    /// When the holder took the lease, in Unix milliseconds.
    pub acquired: u64,
    /// When the lease expires unless renewed, in Unix milliseconds.
    pub expires: u64,
    /// Whether it had expired when read (not stored).
    #[serde(skip)]
    pub expired: bool,
}

impl LeaseInfo {
    /// `held by 1234@host (what) until 21:45:03 UTC`.
    pub fn describe(&self) -> String {
        format!("held by {} until {}", self.who(), utc_time(self.expires))
    }

    /// `1234@host (what)`, or just the holder when `what` is empty.
    fn who(&self) -> String {
        if self.what.is_empty() {
            self.holder.clone()
        } else {
            format!("{} ({})", self.holder, self.what)
        }
    }

    /// Whether this is the same acquisition as `other` (renewals change only `expires`).
    fn same_holding(&self, other: &LeaseInfo) -> bool {
        self.holder == other.holder && self.acquired == other.acquired
    }
}

/// Every lease in the lease folder, expired ones included, sorted by name.
pub fn list() -> Result<Vec<LeaseInfo>> {
    list_in(&dir()?, ttl()?)
}

/// The live holder of lease `name`; `None` when it is free or expired.
pub fn holder(name: &str) -> Result<Option<LeaseInfo>> {
    holder_in(&dir()?, name, ttl()?)
}

fn list_in(dir: &Path, ttl: Duration) -> Result<Vec<LeaseInfo>> {
    let entries = std::fs::read_dir(dir).infra_ctx(|| format!("cannot read {}", dir.display()))?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.infra_ctx(|| format!("cannot read {}", dir.display()))?;
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_suffix(".lease")) else {
            continue;
        };
        if name.is_empty() || name.starts_with('.') {
            continue;
        }
        let _lock = FileLock::take(dir, name)?;
        if let Some(info) = read(dir, name, ttl)? {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn holder_in(dir: &Path, name: &str, ttl: Duration) -> Result<Option<LeaseInfo>> {
    check_name(name)?;
    let _lock = FileLock::take(dir, name)?;
    Ok(read(dir, name, ttl)?.filter(|info| !info.expired))
}

/// A lease held by this process, renewed in the background until dropped.
pub struct Lease {
    dir: PathBuf,
    name: String,
    /// Our acquisition, as written (its `expires` is stale; see `shared`).
    mine: LeaseInfo,
    shared: Arc<Shared>,
    renewer: Option<JoinHandle<()>>,
}

/// What the lease and its renewal thread share.
struct Shared {
    stop: Mutex<bool>,
    wake: Condvar,
    lost: AtomicBool,
    expires: AtomicU64,
}

impl Lease {
    /// Takes lease `name` for `what` (free text, e.g. the run folder), waiting up to `wait`
    /// while someone else holds it. `say` hears a line when the wait starts and whenever
    /// the holder changes.
    pub fn acquire(
        name: &str,
        what: &str,
        wait: Duration,
        say: &mut dyn FnMut(&str),
    ) -> Result<Lease> {
        Lease::acquire_in(&dir()?, &[name.to_string()], what, wait, ttl()?, say)
    }

    /// Takes the first free lease of `names` (a pool of QEMU slots or rigs), waiting like
    /// [`Lease::acquire`].
    pub fn acquire_any(
        names: &[String],
        what: &str,
        wait: Duration,
        say: &mut dyn FnMut(&str),
    ) -> Result<Lease> {
        Lease::acquire_in(&dir()?, names, what, wait, ttl()?, say)
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// When the lease expires unless renewed again.
    pub fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.shared.expires.load(Ordering::SeqCst))
    }

    /// Whether someone else took the lease (we stalled past its expiry): stop using the rig.
    pub fn lost(&self) -> bool {
        self.shared.lost.load(Ordering::SeqCst)
    }

    fn acquire_in(
        dir: &Path,
        names: &[String],
        what: &str,
        wait: Duration,
        ttl: Duration,
        say: &mut dyn FnMut(&str),
    ) -> Result<Lease> {
        if names.is_empty() {
            return Err(Error::input("no lease to take: the list of names is empty"));
        }
        for name in names {
            check_name(name)?;
        }
        let poll = (ttl / 10).clamp(Duration::from_millis(50), Duration::from_millis(200));
        let start = Instant::now();
        let mut seen: Vec<(String, u64)> = Vec::new();
        loop {
            let mut held = Vec::new();
            for name in names {
                match Lease::try_take(dir, name, what, ttl)? {
                    Ok(lease) => return Ok(lease),
                    Err(info) => held.push(info),
                }
            }
            let now_seen: Vec<_> = held
                .iter()
                .map(|i| (i.holder.clone(), i.acquired))
                .collect();
            if now_seen != seen {
                say(&format!("waiting for {}", held_text(&held)));
                seen = now_seen;
            }
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            let waited = start.elapsed();
            if waited >= wait {
                return Err(Error::Infra(gave_up_text(&held, wait)));
            }
            std::thread::sleep(poll.min(wait - waited));
        }
    }

    /// Takes lease `name` if it is free or expired; else says who holds it.
    fn try_take(
        dir: &Path,
        name: &str,
        what: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<Lease, LeaseInfo>> {
        let _lock = FileLock::take(dir, name)?;
        if let Some(info) = read(dir, name, ttl)? {
            if !info.expired {
                return Ok(Err(info));
            }
        }
        let (pid, host) = (std::process::id(), hostname());
        let acquired = unique_now_ms();
        let mine = LeaseInfo {
            name: name.to_string(),
            holder: format!("{pid}@{host}"),
            pid,
            host,
            what: what.to_string(),
            acquired,
            expires: acquired + ms(ttl),
            expired: false,
        };
        write(dir, name, &mine)?;
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
            expires: AtomicU64::new(mine.expires),
        });
        let renewer = {
            let (dir, mine, shared) = (dir.to_path_buf(), mine.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("lease {name}"))
                .spawn(move || renew(&dir, &mine, ttl, &shared))
                .infra_ctx(|| format!("cannot start renewing lease {name}"))?
        };
        Ok(Ok(Lease {
            dir: dir.to_path_buf(),
            name: name.to_string(),
            mine,
            shared,
            renewer: Some(renewer),
        }))
    }

    /// Deletes the lease file if it still names us.
    fn release(&self) -> Result<()> {
        let _lock = FileLock::take(&self.dir, &self.name)?;
        let Some(mut info) = read(&self.dir, &self.name, Duration::ZERO)? else {
            return Ok(());
        };
        if !info.same_holding(&self.mine) {
            return Ok(());
        }
        let path = lease_path(&self.dir, &self.name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            // Someone else's file in a sticky folder: expire it instead.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                info.expires = now_ms();
                write(&self.dir, &self.name, &info)
            }
            Err(e) => Err(Error::infra(format!(
                "cannot delete {}: {e}",
                path.display()
            ))),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        *self.shared.stop.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(renewer) = self.renewer.take() {
            let _ = renewer.join();
        }
        if !self.lost() {
            if let Err(e) = self.release() {
                tracing::warn!("releasing lease {}: {e}", self.name);
            }
        }
    }
}

/// The renewal loop: every ttl/3, push the expiry to now + ttl while the file names us.
fn renew(dir: &Path, mine: &LeaseInfo, ttl: Duration, shared: &Shared) {
    let mut stop = shared.stop.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let deadline = Instant::now() + (ttl / 3).max(Duration::from_millis(10));
        while !*stop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            stop = match shared.wake.wait_timeout(stop, left) {
                Ok((guard, _)) => guard,
                Err(e) => e.into_inner().0,
            };
        }
        if *stop {
            return;
        }
        match renew_once(dir, mine, ttl) {
            Ok(Some(expires)) => shared.expires.store(expires, Ordering::SeqCst),
            Ok(None) => {
                tracing::warn!("lease {} was taken by someone else", mine.name);
                shared.lost.store(true, Ordering::SeqCst);
                return;
            }
            // Try again next time; the lease is still ours until it expires.
            Err(e) => tracing::warn!("renewing lease {}: {e}", mine.name),
        }
    }
}

/// Renews once: the new expiry, or `None` when the file no longer names us.
fn renew_once(dir: &Path, mine: &LeaseInfo, ttl: Duration) -> Result<Option<u64>> {
    let _lock = FileLock::take(dir, &mine.name)?;
    match read(dir, &mine.name, ttl)? {
        Some(info) if info.same_holding(mine) => {
            let expires = now_ms() + ms(ttl);
            write(dir, &mine.name, &LeaseInfo { expires, ..info })?;
            Ok(Some(expires))
        }
        _ => Ok(None),
    }
}

/// `rig-pi4-1: held by ...`, or `one of qemu-0, qemu-1: qemu-0 held by ...; qemu-1 held by ...`.
fn held_text(held: &[LeaseInfo]) -> String {
    match held {
        [one] => format!("{}: {}", one.name, one.describe()),
        _ => {
            let names: Vec<_> = held.iter().map(|i| i.name.as_str()).collect();
            let each: Vec<_> = held
                .iter()
                .map(|i| format!("{} {}", i.name, i.describe()))
                .collect();
            format!("one of {}: {}", names.join(", "), each.join("; "))
        }
    }
}

/// The error when the wait is over.
fn gave_up_text(held: &[LeaseInfo], wait: Duration) -> String {
    match held {
        [one] => format!(
            "lease {} is still held by {} after waiting {}; it expires at {}",
            one.name,
            one.who(),
            human(wait),
            utc_time(one.expires)
        ),
        _ => {
            let names: Vec<_> = held.iter().map(|i| i.name.as_str()).collect();
            let each: Vec<_> = held
                .iter()
                .map(|i| format!("{} by {} until {}", i.name, i.who(), utc_time(i.expires)))
                .collect();
            format!(
                "leases {} are all still held after waiting {}: {}",
                names.join(", "),
                human(wait),
                each.join("; ")
            )
        }
    }
}

/// Lease names become file names: no slashes, no leading dot, not empty.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || name.starts_with('.') || name.contains('/') || name.contains('\0') {
        return Err(Error::input(format!("bad lease name {name:?}")));
    }
    Ok(())
}

fn lease_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.lease"))
}

/// Reads lease `name`; `None` when there is no file. A file that does not parse (a writer
/// died mid-write) counts as held by nobody known until its modification time plus `ttl`.
fn read(dir: &Path, name: &str, ttl: Duration) -> Result<Option<LeaseInfo>> {
    let path = lease_path(dir, name);
    let text = match std::fs::read(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::infra(format!("cannot read {}: {e}", path.display()))),
    };
    let mut info = match serde_json::from_slice::<LeaseInfo>(&text) {
        Ok(info) => info,
        Err(_) => {
            let modified = std::fs::metadata(&path)
                .and_then(|m| m.modified())
                .infra_ctx(|| format!("cannot read {}", path.display()))?;
            let modified = modified.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0);
            LeaseInfo {
                name: name.to_string(),
                holder: "unknown (unreadable lease file)".into(),
                pid: 0,
                host: String::new(),
                what: String::new(),
                acquired: modified,
                expires: modified + ms(ttl),
                expired: false,
            }
        }
    };
    info.expired = now_ms() >= info.expires;
    Ok(Some(info))
}

/// Writes lease `name` atomically (temp file and rename), readable and writable by all so
/// that other users can take it over once it expires.
fn write(dir: &Path, name: &str, info: &LeaseInfo) -> Result<()> {
    let path = lease_path(dir, name);
    let json =
        serde_json::to_vec_pretty(info).infra_ctx(|| format!("cannot write {}", path.display()))?;
    crate::paths::write_atomically(&path, &json, 0o666)
}

/// An exclusive `flock` on `<dir>/NAME.lock`, released when dropped.
struct FileLock(File);

impl FileLock {
    fn take(dir: &Path, name: &str) -> Result<FileLock> {
        let path = dir.join(format!("{name}.lock"));
        let file = match OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o666)
            .open(&path)
        {
            Ok(file) => {
                // Undo the umask so other users can open it too (only works if it is ours).
                let _ = file.set_permissions(std::fs::Permissions::from_mode(0o666));
                file
            }
            // Another user's lock file without write access: flock works read-only too.
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                File::open(&path).infra_ctx(|| format!("cannot open {}", path.display()))?
            }
            Err(e) => return Err(Error::infra(format!("cannot open {}: {e}", path.display()))),
        };
        loop {
            // SAFETY: plain syscall on a file we own.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
                return Ok(FileLock(file));
            }
            let e = std::io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(Error::infra(format!("cannot lock {}: {e}", path.display())));
            }
        }
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // SAFETY: plain syscall; closing the file would release the lock anyway.
        unsafe {
            libc::flock(self.0.as_raw_fd(), libc::LOCK_UN);
        }
    }
}

/// This host's name.
fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or truncates.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return "unknown".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(ms)
        .unwrap_or(0)
}

/// Now in Unix milliseconds, but later than any earlier call in this process, so that two
/// acquisitions by one process never look alike.
fn unique_now_ms() -> u64 {
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = now_ms();
    let prev = LAST
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| {
            Some(now.max(last + 1))
        })
        .unwrap_or(now);
    now.max(prev + 1)
}

/// `21:45:03 UTC` from Unix milliseconds.
fn utc_time(unix_ms: u64) -> String {
    let s = unix_ms / 1000 % 86_400;
    format!("{:02}:{:02}:{:02} UTC", s / 3600, s % 3600 / 60, s % 60)
}

/// `30m`, `1h30m`, `2m5s`, `500ms`.
fn human(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = String::new();
    if h > 0 {
        out += &format!("{h}h");
    }
    if m > 0 {
        out += &format!("{m}m");
    }
    if s > 0 {
        out += &format!("{s}s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(60);

    fn quiet() -> impl FnMut(&str) {
        |_| {}
    }

    fn take(dir: &Path, name: &str, wait: Duration, ttl: Duration) -> Result<Lease> {
        Lease::acquire_in(dir, &[name.to_string()], "test", wait, ttl, &mut quiet())
    }

    #[test]
    fn acquire_and_release() {
        let tmp = tempfile::tempdir().unwrap();
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        assert_eq!(lease.name(), "rig-a");
        assert!(lease.expires() > SystemTime::now());
        let info = holder_in(tmp.path(), "rig-a", TTL).unwrap().unwrap();
        assert_eq!(
            info.holder,
            format!("{}@{}", std::process::id(), hostname())
        );
        assert_eq!(info.what, "test");
        assert!(!info.expired);
        drop(lease);
        assert!(holder_in(tmp.path(), "rig-a", TTL).unwrap().is_none());
        assert!(!lease_path(tmp.path(), "rig-a").exists());
        take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
    }

    #[test]
    fn second_acquire_waits_then_names_the_holder() {
        let tmp = tempfile::tempdir().unwrap();
        let _first = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        let mut said = Vec::new();
        let start = Instant::now();
        let err = Lease::acquire_in(
            tmp.path(),
            &["rig-a".into()],
            "other",
            Duration::from_millis(300),
            TTL,
            &mut |s: &str| said.push(s.to_string()),
        )
        .err()
        .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        let me = format!("{}@{}", std::process::id(), hostname());
        let msg = err.to_string();
        assert!(matches!(err, Error::Infra(_)), "{msg}");
        assert!(
            msg.starts_with(&format!(
                "lease rig-a is still held by {me} (test) after waiting 300ms; it expires at "
            )),
            "{msg}"
        );
        assert!(msg.ends_with(" UTC"), "{msg}");
        assert_eq!(said.len(), 1, "{said:?}");
        assert!(
            said[0].starts_with(&format!("waiting for rig-a: held by {me} (test) until ")),
            "{said:?}"
        );
    }

    #[test]
    fn expired_lease_is_taken() {
        let tmp = tempfile::tempdir().unwrap();
        let stale = LeaseInfo {
            name: "rig-a".into(),
            holder: "1@elsewhere".into(),
            pid: 1,
            host: "elsewhere".into(),
            what: "old run".into(),
            acquired: now_ms() - 10_000,
            expires: now_ms() - 1,
            expired: false,
        };
        write(tmp.path(), "rig-a", &stale).unwrap();
        let listed = list_in(tmp.path(), TTL).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].expired);
        assert!(holder_in(tmp.path(), "rig-a", TTL).unwrap().is_none());
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        let info = holder_in(tmp.path(), "rig-a", TTL).unwrap().unwrap();
        assert_eq!(info.pid, std::process::id());
        assert!(!lease.lost());
    }

    #[test]
    fn renewal_keeps_the_lease_past_its_ttl() {
        let tmp = tempfile::tempdir().unwrap();
        // Three TTLs in all; a TTL under 0.5 s is flaky on a loaded machine.
        let ttl = Duration::from_millis(500);
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, ttl).unwrap();
        std::thread::sleep(Duration::from_millis(500));
        let err = take(tmp.path(), "rig-a", Duration::from_secs(1), ttl)
            .err()
            .unwrap();
        assert!(matches!(err, Error::Infra(_)), "{err}");
        assert!(!lease.lost());
        assert!(lease.expires() > SystemTime::now());
    }

    #[test]
    fn drop_releases_at_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let lease = take(&dir, "rig-a", Duration::ZERO, TTL).unwrap();
        let waiter = std::thread::spawn(move || {
            take(&dir, "rig-a", Duration::from_secs(5), TTL).map(|_| Instant::now())
        });
        std::thread::sleep(Duration::from_millis(300));
        let dropped = Instant::now();
        drop(lease);
        assert!(!lease_path(tmp.path(), "rig-a").exists());
        let got = waiter.join().unwrap().unwrap();
        // The waiter polls every 200 ms; allow for a loaded machine.
        let after = got.duration_since(dropped);
        assert!(after < Duration::from_secs(2), "{after:?}");
    }

    #[test]
    fn acquire_any_picks_a_free_one() {
        let tmp = tempfile::tempdir().unwrap();
        let names: Vec<String> = vec!["qemu-0".into(), "qemu-1".into()];
        let a =
            Lease::acquire_in(tmp.path(), &names, "a", Duration::ZERO, TTL, &mut quiet()).unwrap();
        let b =
            Lease::acquire_in(tmp.path(), &names, "b", Duration::ZERO, TTL, &mut quiet()).unwrap();
        assert_eq!((a.name(), b.name()), ("qemu-0", "qemu-1"));
        let err = Lease::acquire_in(
            tmp.path(),
            &names,
            "c",
            Duration::from_millis(100),
            TTL,
            &mut quiet(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            err.starts_with("leases qemu-0, qemu-1 are all still held after waiting 100ms: "),
            "{err}"
        );
        assert!(err.contains("qemu-0 by ") && err.contains("(a)"), "{err}");
        assert!(err.contains("qemu-1 by ") && err.contains("(b)"), "{err}");
        drop(a);
        let c =
            Lease::acquire_in(tmp.path(), &names, "c", Duration::ZERO, TTL, &mut quiet()).unwrap();
        assert_eq!(c.name(), "qemu-0");
        assert_eq!(list_in(tmp.path(), TTL).unwrap().len(), 2);
    }

    #[test]
    fn lost_when_someone_else_took_it() {
        let tmp = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(300);
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, ttl).unwrap();
        let thief = LeaseInfo {
            name: "rig-a".into(),
            holder: "2@elsewhere".into(),
            pid: 2,
            host: "elsewhere".into(),
            what: "thief".into(),
            acquired: now_ms(),
            expires: now_ms() + 60_000,
            expired: false,
        };
        {
            let _lock = FileLock::take(tmp.path(), "rig-a").unwrap();
            write(tmp.path(), "rig-a", &thief).unwrap();
        }
        // Renewal runs every 100 ms; allow for a loaded machine.
        let start = Instant::now();
        while !lease.lost() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(lease.lost());
        drop(lease);
        // Dropping a lost lease leaves the new holder alone.
        let info = holder_in(tmp.path(), "rig-a", TTL).unwrap().unwrap();
        assert_eq!(info.holder, "2@elsewhere");
    }

    #[test]
    fn unreadable_file_expires_from_its_mtime() {
        let tmp = tempfile::tempdir().unwrap();
        let path = lease_path(tmp.path(), "rig-a");
        std::fs::write(&path, "{ half").unwrap();
        let info = holder_in(tmp.path(), "rig-a", TTL).unwrap().unwrap();
        assert!(info.holder.starts_with("unknown"));
        let old = SystemTime::now() - Duration::from_secs(120);
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
        take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
    }

    #[test]
    fn bad_names_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        for name in ["", "../x", ".hidden"] {
            let err = take(tmp.path(), name, Duration::ZERO, TTL).err().unwrap();
            assert!(matches!(err, Error::Input(_)), "{name}: {err}");
        }
    }

    #[test]
    fn ttl_values() {
        assert_eq!(ttl_from(None).unwrap(), Duration::from_secs(60));
        assert_eq!(ttl_from(Some("3")).unwrap(), Duration::from_secs(3));
        assert_eq!(ttl_from(Some("0.5")).unwrap(), Duration::from_millis(500));
        for bad in ["", "abc", "0", "-1", "inf", "NaN"] {
            let err = ttl_from(Some(bad)).unwrap_err();
            assert!(matches!(err, Error::Input(_)), "{bad}: {err}");
            assert!(err.to_string().starts_with("HARNESS_LEASE_TTL="), "{err}");
        }
    }

    #[test]
    fn formats() {
        assert_eq!(
            utc_time(((21 * 60 + 45) * 60 + 3) * 1000 + 86_400_000),
            "21:45:03 UTC"
        );
        assert_eq!(human(Duration::from_secs(1800)), "30m");
        assert_eq!(human(Duration::from_secs(5400)), "1h30m");
        assert_eq!(human(Duration::from_secs(125)), "2m5s");
        assert_eq!(human(Duration::from_millis(500)), "500ms");
    }

    /// Run by `holder_killed_with_sigkill` in a child process: holds a lease until killed.
    #[test]
    #[ignore = "run as a child process by holder_killed_with_sigkill"]
    fn holder_child() {
        let Some(dir) = std::env::var_os("LEASE_TEST_DIR") else {
            return;
        };
        let _lease = take(Path::new(&dir), "rig-k", Duration::ZERO, KILL_TTL).unwrap();
        std::thread::sleep(Duration::from_secs(30));
    }

    const KILL_TTL: Duration = Duration::from_millis(1500);

    #[test]
    fn holder_killed_with_sigkill_frees_the_lease_at_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let mut child = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "lease::tests::holder_child",
                "--nocapture",
                "--ignored",
            ])
            .env("LEASE_TEST_DIR", tmp.path())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let appeared = Instant::now();
        while holder_in(tmp.path(), "rig-k", KILL_TTL).unwrap().is_none() {
            assert!(appeared.elapsed() < Duration::from_secs(10), "no lease");
            std::thread::sleep(Duration::from_millis(20));
        }
        // Let it renew at least once, then kill it.
        std::thread::sleep(Duration::from_millis(600));
        child.kill().unwrap();
        child.wait().unwrap();
        let left = holder_in(tmp.path(), "rig-k", KILL_TTL).unwrap().unwrap();
        assert_eq!(left.pid, child.id());

        // Before the expiry: still held.
        let err = take(tmp.path(), "rig-k", Duration::from_millis(100), KILL_TTL)
            .err()
            .unwrap();
        assert!(
            now_ms() < left.expires,
            "the lease expired too soon to test"
        );
        assert!(err.to_string().contains(&left.holder), "{err}");

        // After it: ours, and not a moment before.
        let lease = take(tmp.path(), "rig-k", Duration::from_secs(3), KILL_TTL).unwrap();
        let got = now_ms();
        assert!(
            got >= left.expires,
            "taken at {got}, expiry {}",
            left.expires
        );
        assert!(
            got < left.expires + 1000,
            "taken late: {got} vs {}",
            left.expires
        );
        assert!(!lease.lost());
    }
}
