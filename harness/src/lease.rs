//! Leases on rigs and QEMU slots, so that two harness processes never use one at once.
//!
//! A lease `NAME` is held by keeping an exclusive `flock` on `<dir>/NAME.held` for as long as
//! the [`Lease`] lives. The kernel drops that lock when the holder dies, even by `kill -9`, so
//! the next taker gets the lease at once, and whether a lease is held never depends on the
//! clock: a wall-clock step (a rig host without an RTC setting its time) cannot free a live
//! lease. The holder also keeps the JSON record `<dir>/NAME.lease`, naming it and an expiry
//! that a background thread renews every third of the lease's lifetime. The record is for
//! people ("held by 1234@host until 21:45:03 UTC") and for harnesses from before this scheme,
//! which read, decide and write the record under a `flock` on `<dir>/NAME.lock` held for a
//! moment and trust only the expiry: this harness writes the record under that lock too, marks
//! it as held by lock, and treats an unmarked record (an older harness's) as held until its
//! expiry. Holders on other hosts sharing the folder (NFS) are not provided for. No server is
//! involved.
//!
//! Leases keep cooperating harnesses apart; they are no security boundary. What they must not
//! be is a way to turn the folder against root, so the folder is checked before use (owned by
//! root or by this user, and not writable by others unless sticky), every file in it is
//! reached through the folder's descriptor without following symbolic links, only plain files
//! with no other links are used, and the harness changes the mode only of files it has just
//! created itself.
//!
//! Several users share the default folder, which is sticky (mode 1777), so that harnesses of
//! different users (a CI runner's, root's) keep apart too: there only a file's owner may
//! replace it, so records are written readable and writable by all and, when another user
//! owns one, rewritten in place under the lock rather than replaced.

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rustix::fs::{AtFlags, FlockOperation, Mode, OFlags, CWD};
use rustix::io::Errno;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Error, Result};

/// The default lease folder, shared by every user on the host.
const SYSTEM_DIR: &str = "/run/lock/harness";

/// How long a lease lasts without renewal when `HARNESS_LEASE_TTL` is not set.
const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// The longest anyone holds `NAME.lock` (a read and a write): past this, something is wrong.
const BRIEF_LOCK_WAIT: Duration = Duration::from_secs(10);

/// A lease record is a few hundred bytes; read no more than this of one.
const RECORD_MAX: u64 = 64 * 1024;

/// The lease folder: `HARNESS_LEASE_DIR` (created with mode 0755 when missing), else
/// `/run/lock/harness` (created world-writable and sticky, mode 1777), else `<cache>/leases`
/// when `/run/lock` is not writable. A folder that someone else could use against this
/// process (another user's, a symbolic link, writable by others and not sticky) is refused.
pub fn dir() -> Result<PathBuf> {
    Ok(folder()?.path)
}

/// The lease folder, open and checked; see [`dir`].
fn folder() -> Result<Folder> {
    if let Some(dir) = std::env::var_os("HARNESS_LEASE_DIR") {
        let fix = "Set HARNESS_LEASE_DIR to a folder of your own.";
        return Folder::open(Path::new(&dir), Some(0o755), fix);
    }
    if let Some(system) = Folder::system()? {
        return Ok(system);
    }
    let dir = crate::paths::cache_dir().join("leases");
    let fix = "Remove it, or set HARNESS_LEASE_DIR to a folder of your own.";
    Folder::open(&dir, Some(0o755), fix)
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
    /// When the lease expires unless renewed, in Unix milliseconds. The holder renews it while
    /// it lives; it decides nothing for a holder that keeps the lease's lock (see the module).
    pub expires: u64,
    /// Whether the lease was free when read (not stored): its holder had let go or died, or,
    /// for a record of an older harness, its expiry had passed.
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

    /// A holder the record does not name (a record not yet written, or unreadable).
    fn unknown(name: &str, why: &str, since: u64, expires: u64) -> LeaseInfo {
        LeaseInfo {
            name: name.to_string(),
            holder: format!("unknown ({why})"),
            pid: 0,
            host: String::new(),
            what: String::new(),
            acquired: since,
            expires,
            expired: false,
        }
    }
}

/// The file `NAME.lease`: the lease as [`LeaseInfo`], and how its holder holds it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Record {
    #[serde(flatten)]
    info: LeaseInfo,
    /// Whether the holder keeps `NAME.held` locked: then the lease is held exactly while that
    /// lock is, whatever the clock says. A record without it comes from an older harness, and
    /// holds until its expiry.
    #[serde(default)]
    locked: bool,
}

/// Every lease in the lease folder, expired ones included, sorted by name.
pub fn list() -> Result<Vec<LeaseInfo>> {
    list_in(&folder()?, ttl()?)
}

/// The live holder of lease `name`; `None` when it is free or expired.
pub fn holder(name: &str) -> Result<Option<LeaseInfo>> {
    holder_in(&folder()?, name, ttl()?)
}

fn list_in(folder: &Folder, ttl: Duration) -> Result<Vec<LeaseInfo>> {
    let cannot = || format!("cannot read {}", folder.path.display());
    let entries = rustix::fs::Dir::read_from(&folder.dir).infra_ctx(cannot)?;
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.infra_ctx(cannot)?;
        let Some(name) = entry
            .file_name()
            .to_str()
            .ok()
            .and_then(|f| f.strip_suffix(".lease"))
        else {
            continue;
        };
        if check_name(name).is_err() {
            continue;
        }
        if let Some(info) = look(folder, name, ttl)? {
            out.push(info);
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

fn holder_in(folder: &Folder, name: &str, ttl: Duration) -> Result<Option<LeaseInfo>> {
    check_name(name)?;
    Ok(look(folder, name, ttl)?.filter(|info| !info.expired))
}

/// Lease `name` as a reader sees it, without taking it: its record, `expired` when nobody
/// holds it; a holder with no record yet shows as unknown; `None` when there is neither.
fn look(folder: &Folder, name: &str, ttl: Duration) -> Result<Option<LeaseInfo>> {
    let locked = held_by_someone(folder, name)?;
    Ok(match read_record(folder, name, ttl)? {
        Some(record) => Some(LeaseInfo {
            expired: !(locked || record.live_by_expiry()),
            ..record.info
        }),
        None if locked => Some(LeaseInfo::unknown(
            name,
            "no lease record yet",
            0,
            now_ms() + ms(ttl),
        )),
        None => None,
    })
}

impl Record {
    /// Whether an older harness's record still holds by its expiry (ours never do).
    fn live_by_expiry(&self) -> bool {
        !self.locked && now_ms() < self.info.expires
    }
}

/// A lease held by this process, renewed in the background until dropped.
pub struct Lease {
    folder: Arc<Folder>,
    name: String,
    /// Our acquisition, as written (its `expires` is stale; see `shared`).
    mine: LeaseInfo,
    shared: Arc<Shared>,
    renewer: Option<JoinHandle<()>>,
    /// `NAME.held`, locked exclusively while we hold the lease. It is closed (and so unlocked)
    /// only after `drop` has removed the record: fields drop after `Drop::drop`.
    _held: File,
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
        Lease::acquire_in(
            &Arc::new(folder()?),
            &[name.to_string()],
            what,
            wait,
            ttl()?,
            say,
        )
    }

    /// Takes the first free lease of `names` (a pool of QEMU slots or rigs), waiting like
    /// [`Lease::acquire`].
    pub fn acquire_any(
        names: &[String],
        what: &str,
        wait: Duration,
        say: &mut dyn FnMut(&str),
    ) -> Result<Lease> {
        Lease::acquire_in(&Arc::new(folder()?), names, what, wait, ttl()?, say)
    }

    /// The lease's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The expiry in the lease's record, renewed every third of its lifetime. It is there to
    /// be shown (and for older harnesses): while we live, our lock holds the lease anyway.
    pub fn expires(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.shared.expires.load(Ordering::SeqCst))
    }

    /// Whether someone else took the lease (its lock file or record was replaced, or an older
    /// harness took it after its expiry passed): stop using the rig.
    pub fn lost(&self) -> bool {
        self.shared.lost.load(Ordering::SeqCst)
    }

    fn acquire_in(
        folder: &Arc<Folder>,
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
                match Lease::try_take(folder, name, what, ttl)? {
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

    /// Takes lease `name` if nobody holds it; else says who does.
    fn try_take(
        folder: &Arc<Folder>,
        name: &str,
        what: &str,
        ttl: Duration,
    ) -> Result<std::result::Result<Lease, LeaseInfo>> {
        let held_path = folder.path.join(held_file(name));
        let held = open_lock(folder, &held_file(name))?;
        if !try_hold(&held, &held_path)? {
            let info = match read_record(folder, name, ttl)? {
                Some(record) => record.info,
                None => LeaseInfo::unknown(name, "no lease record yet", 0, now_ms() + ms(ttl)),
            };
            return Ok(Err(LeaseInfo {
                expired: false,
                ..info
            }));
        }
        // The lock file may have been replaced between opening and locking it.
        let held_id = file_id(&held, &held_path)?;
        if still_there(folder, name, held_id)? != Some(true) {
            let why = "its lock file was just replaced";
            return Ok(Err(LeaseInfo::unknown(name, why, 0, now_ms() + ms(ttl))));
        }
        // Ours, unless an older harness holds it by its record alone.
        let brief = BriefLock::take(folder, name, true)?;
        if let Some(record) = read_record(folder, name, ttl)? {
            if record.live_by_expiry() {
                return Ok(Err(record.info));
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
        let record = Record {
            info: mine.clone(),
            locked: true,
        };
        write_record(folder, name, &record)?;
        drop(brief);
        let shared = Arc::new(Shared {
            stop: Mutex::new(false),
            wake: Condvar::new(),
            lost: AtomicBool::new(false),
            expires: AtomicU64::new(mine.expires),
        });
        let renewer = {
            let (folder, mine, shared) = (folder.clone(), mine.clone(), shared.clone());
            std::thread::Builder::new()
                .name(format!("lease {name}"))
                .spawn(move || renew(&folder, &mine, held_id, ttl, &shared))
                .infra_ctx(|| format!("cannot start renewing lease {name}"))?
        };
        Ok(Ok(Lease {
            folder: folder.clone(),
            name: name.to_string(),
            mine,
            shared,
            renewer: Some(renewer),
            _held: held,
        }))
    }

    /// Deletes the record if it still names us (the lock goes when `_held` closes).
    fn release(&self) -> Result<()> {
        let folder = &self.folder;
        let _brief = BriefLock::take(folder, &self.name, false)?;
        let Some(record) = read_record(folder, &self.name, Duration::ZERO)? else {
            return Ok(());
        };
        if !record.info.same_holding(&self.mine) {
            return Ok(());
        }
        let file = record_file(&self.name);
        match rustix::fs::unlinkat(&folder.dir, file.as_str(), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            // Someone else's file in a sticky folder: expire it instead.
            Err(Errno::PERM | Errno::ACCESS) => {
                let mut info = record.info;
                info.expires = now_ms();
                write_record(folder, &self.name, &Record { info, ..record })
            }
            Err(e) => Err(Error::infra(format!(
                "cannot delete {}: {e}",
                folder.path.join(file).display()
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

/// The renewal loop: every ttl/3, push the expiry to now + ttl while the lease is ours.
fn renew(folder: &Folder, mine: &LeaseInfo, held_id: FileId, ttl: Duration, shared: &Shared) {
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
        match renew_once(folder, mine, held_id, ttl) {
            Ok(Some(expires)) => shared.expires.store(expires, Ordering::SeqCst),
            Ok(None) => {
                tracing::warn!("lease {} was taken by someone else", mine.name);
                shared.lost.store(true, Ordering::SeqCst);
                return;
            }
            // Try again next time; we still hold the lock.
            Err(e) => tracing::warn!("renewing lease {}: {e}", mine.name),
        }
    }
}

/// Renews once: the new expiry, or `None` when the lease is no longer ours (`NAME.held` is
/// another file than the one we locked, or the record names someone else).
fn renew_once(
    folder: &Folder,
    mine: &LeaseInfo,
    held_id: FileId,
    ttl: Duration,
) -> Result<Option<u64>> {
    if still_there(folder, &mine.name, held_id)? != Some(true) {
        return Ok(None);
    }
    let _brief = BriefLock::take(folder, &mine.name, false)?;
    match read_record(folder, &mine.name, ttl)? {
        Some(record) if record.info.same_holding(mine) => {
            let expires = now_ms() + ms(ttl);
            let info = LeaseInfo {
                expires,
                ..record.info
            };
            write_record(folder, &mine.name, &Record { info, ..record })?;
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

/// `NAME.lease`: the record.
fn record_file(name: &str) -> String {
    format!("{name}.lease")
}

/// `NAME.held`: locked by the holder for as long as it holds the lease.
fn held_file(name: &str) -> String {
    format!("{name}.held")
}

/// The lease folder, open: every file in it is reached through `dir`, so the folder checked
/// is the folder used, whatever happens to its path afterwards.
struct Folder {
    path: PathBuf,
    dir: File,
}

impl Folder {
    /// Opens the lease folder `path` and checks it; when `create` has a mode and the folder is
    /// missing, creates it (and its parents) first, with exactly that mode. `fix` ends the
    /// error when the folder is refused.
    fn open(path: &Path, create: Option<u32>, fix: &str) -> Result<Folder> {
        // Without a trailing slash, which would make the kernel follow a final symbolic link.
        let path: PathBuf = path.components().collect();
        let mut created = false;
        if let Some(mode) = create {
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent)
                    .infra_ctx(|| format!("cannot create the lease folder {}", path.display()))?;
            }
            created = mkdir(&path, mode)?;
        }
        let folder = Folder::open_dir(&path, fix)?.ok_or_else(|| {
            Error::infra(format!("the lease folder {} is missing", path.display()))
        })?;
        folder.check(create.filter(|_| created), fix)?;
        Ok(folder)
    }

    /// `/run/lock/harness`, created sticky and world-writable when missing; `None` when it
    /// is missing and cannot be created, or is not writable for this user.
    fn system() -> Result<Option<Folder>> {
        let path = Path::new(SYSTEM_DIR);
        let fix = "Remove it (it is made again as needed), or set HARNESS_LEASE_DIR to a folder \
                   of your own.";
        let created = mkdir(path, 0o1777).unwrap_or(false);
        let Some(folder) = Folder::open_dir(path, fix)? else {
            return Ok(None);
        };
        folder.check(Some(0o1777).filter(|_| created), fix)?;
        let write = rustix::fs::Access::WRITE_OK | rustix::fs::Access::EXEC_OK;
        Ok(rustix::fs::access(path, write).is_ok().then_some(folder))
    }

    /// Opens folder `path` without following a final symbolic link; `None` when missing.
    fn open_dir(path: &Path, fix: &str) -> Result<Option<Folder>> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        match rustix::fs::openat(CWD, path, flags, Mode::empty()) {
            Ok(fd) => Ok(Some(Folder {
                path: path.to_path_buf(),
                dir: File::from(fd),
            })),
            Err(Errno::NOENT) => Ok(None),
            Err(Errno::LOOP | Errno::NOTDIR) => {
                let link = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_symlink());
                let what = if link {
                    "is a symbolic link, which the harness does not follow"
                } else {
                    "is not a folder"
                };
                Err(refuse(path, what, fix))
            }
            Err(e) => Err(Error::infra(format!(
                "cannot open the lease folder {}: {e}",
                path.display()
            ))),
        }
    }

    /// Refuses a folder that someone else could use against this process: one that belongs to
    /// another user than root and this one (its owner may replace any file in it), or that
    /// others may write to without the sticky bit. Group write is fine when the group is root
    /// or this user's own. A folder this process just made (`made` is its mode) gets that mode
    /// here, whatever the umask cut.
    fn check(&self, made: Option<u32>, fix: &str) -> Result<()> {
        let cannot = || format!("cannot read the lease folder {}", self.path.display());
        let meta = self.dir.metadata().infra_ctx(cannot)?;
        let euid = rustix::process::geteuid().as_raw();
        if meta.uid() != euid && meta.uid() != 0 {
            let what = format!(
                "belongs to uid {}, not to root or to this user (uid {euid}), and its owner \
                 could replace any lease in it",
                meta.uid()
            );
            return Err(refuse(&self.path, &what, fix));
        }
        let mut mode = meta.mode() & 0o7777;
        if let Some(made) = made.filter(|_| meta.uid() == euid) {
            rustix::fs::fchmod(&self.dir, Mode::from_raw_mode(made)).infra_ctx(|| {
                format!(
                    "cannot set the mode of the lease folder {}",
                    self.path.display()
                )
            })?;
            mode = made;
        }
        let group_ok = meta.gid() == 0 || meta.gid() == rustix::process::getegid().as_raw();
        let others_write = mode & 0o002 != 0 || (mode & 0o020 != 0 && !group_ok);
        if others_write && mode & 0o1000 == 0 {
            let what = format!(
                "may be written by other users (mode {mode:04o}) and is not sticky, so anyone \
                 could replace the leases in it"
            );
            let fix = format!(
                "Make it sticky (chmod +t {}), or {}",
                self.path.display(),
                lowercase_first(fix)
            );
            return Err(refuse(&self.path, &what, &fix));
        }
        Ok(())
    }
}

/// `mkdir path` with `mode` (cut by the umask; [`Folder::check`] sets it): whether it made it.
fn mkdir(path: &Path, mode: u32) -> Result<bool> {
    match rustix::fs::mkdir(path, Mode::from_raw_mode(mode)) {
        Ok(()) => Ok(true),
        Err(Errno::EXIST) => Ok(false),
        Err(e) => Err(Error::infra(format!(
            "cannot create the lease folder {}: {e}",
            path.display()
        ))),
    }
}

/// The error for a lease folder the harness will not use.
fn refuse(path: &Path, what: &str, fix: &str) -> Error {
    Error::input(format!("the lease folder {} {what}. {fix}", path.display()))
}

fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Opens `<folder>/FILE` with `flags`, never through a symbolic link (`O_NOFOLLOW`), and
/// checks it is a plain file with no other hard links. With `create`, a missing file is made
/// with that mode: the only files whose mode the harness sets are ones it has just made. Else
/// a missing file is `None`.
fn open_plain(
    folder: &Folder,
    file: &str,
    flags: OFlags,
    create: Option<u32>,
) -> Result<Option<File>> {
    let path = || folder.path.join(file);
    let cannot = |e: Errno| Error::infra(format!("cannot open {}: {e}", path().display()));
    // NONBLOCK: a FIFO planted in the folder must not hang the open (it is refused below).
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    for _ in 0..10 {
        if let Some(mode) = create {
            let new = flags | OFlags::CREATE | OFlags::EXCL;
            match rustix::fs::openat(&folder.dir, file, new, Mode::from_raw_mode(mode)) {
                Ok(fd) => {
                    // Ours, just made: undo the umask so that other users can open it too.
                    rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode)).map_err(cannot)?;
                    return Ok(Some(File::from(fd)));
                }
                Err(Errno::EXIST) => {}
                Err(e) => return Err(cannot(e)),
            }
        }
        match rustix::fs::openat(&folder.dir, file, flags, Mode::empty()) {
            Ok(fd) => {
                let file = File::from(fd);
                let meta = file
                    .metadata()
                    .map_err(|e| Error::infra(format!("cannot read {}: {e}", path().display())))?;
                if !meta.file_type().is_file() {
                    return Err(refuse_file(&path(), "is not a plain file"));
                }
                if meta.nlink() > 1 {
                    return Err(refuse_file(&path(), "has other hard links"));
                }
                return Ok(Some(file));
            }
            // Removed since the attempt to create it: try again.
            Err(Errno::NOENT) if create.is_some() => {}
            Err(Errno::NOENT) => return Ok(None),
            Err(Errno::LOOP) => {
                return Err(refuse_file(
                    &path(),
                    "is a symbolic link, which the harness does not follow",
                ))
            }
            Err(e) => return Err(cannot(e)),
        }
    }
    Err(Error::infra(format!(
        "cannot open {}: it keeps disappearing",
        path().display()
    )))
}

/// The error for a file in the lease folder that the harness will not use.
fn refuse_file(path: &Path, what: &str) -> Error {
    Error::input(format!(
        "{} {what}; nothing the harness writes looks like that. Remove it, and find out who \
         made it",
        path.display()
    ))
}

/// Opens (creating it, mode 0644, when missing) the lock file `<folder>/FILE`, read-only:
/// `flock` needs no more.
fn open_lock(folder: &Folder, file: &str) -> Result<File> {
    open_plain(folder, file, OFlags::RDONLY, Some(0o644))?
        .ok_or_else(|| Error::infra(format!("cannot open {}", folder.path.join(file).display())))
}

/// A non-blocking `flock` `op` on `file`: whether it was granted (`path` names it in errors).
/// Also the snapshot cache's lock (`runner::snapshots`).
pub fn try_flock(file: &File, op: FlockOperation, path: &Path) -> Result<bool> {
    loop {
        match rustix::fs::flock(file, op) {
            Ok(()) => return Ok(true),
            Err(Errno::WOULDBLOCK) => return Ok(false),
            Err(Errno::INTR) => {}
            Err(e) => return Err(Error::infra(format!("cannot lock {}: {e}", path.display()))),
        }
    }
}

/// Takes the exclusive lock on `NAME.held` (`file`): `false` while a holder has it. Readers
/// looking at it for a moment (a shared lock, see [`held_by_someone`]) are waited out.
fn try_hold(file: &File, path: &Path) -> Result<bool> {
    for _ in 0..100 {
        if try_flock(file, FlockOperation::NonBlockingLockExclusive, path)? {
            return Ok(true);
        }
        // A holder's exclusive lock also bars a shared one; readers' shared locks do not.
        if !try_flock(file, FlockOperation::NonBlockingLockShared, path)? {
            return Ok(false);
        }
        let _ = rustix::fs::flock(file, FlockOperation::Unlock);
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(false)
}

/// Whether a holder keeps `NAME.held` locked, tried with a shared lock for a moment.
fn held_by_someone(folder: &Folder, name: &str) -> Result<bool> {
    let file = held_file(name);
    let Some(held) = open_plain(folder, &file, OFlags::RDONLY, None)? else {
        return Ok(false);
    };
    let path = folder.path.join(file);
    if try_flock(&held, FlockOperation::NonBlockingLockShared, &path)? {
        let _ = rustix::fs::flock(&held, FlockOperation::Unlock);
        return Ok(false);
    }
    Ok(true)
}

/// Which file a descriptor is: device and inode, as `statat` gives them.
type FileId = (u64, u64);

fn file_id(file: &File, path: &Path) -> Result<FileId> {
    let stat = rustix::fs::fstat(file).infra_ctx(|| format!("cannot read {}", path.display()))?;
    Ok((stat.st_dev, stat.st_ino))
}

/// Whether `NAME.held` is still the file `held_id`; `None` when it is gone.
fn still_there(folder: &Folder, name: &str, held_id: FileId) -> Result<Option<bool>> {
    let file = held_file(name);
    match rustix::fs::statat(&folder.dir, file.as_str(), AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some((stat.st_dev, stat.st_ino) == held_id)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(Error::infra(format!(
            "cannot read {}: {e}",
            folder.path.join(file).display()
        ))),
    }
}

/// An exclusive `flock` on `<dir>/NAME.lock` for the moment of a read and a write of the
/// record, as harnesses before this scheme take it; released when dropped (closed).
struct BriefLock {
    _file: File,
}

impl BriefLock {
    /// Waits for the lock up to [`BRIEF_LOCK_WAIT`]; an `interruptible` wait also ends at
    /// Ctrl-C or SIGTERM.
    fn take(folder: &Folder, name: &str, interruptible: bool) -> Result<BriefLock> {
        let file = format!("{name}.lock");
        let lock = open_lock(folder, &file)?;
        let path = folder.path.join(file);
        let start = Instant::now();
        loop {
            if try_flock(&lock, FlockOperation::NonBlockingLockExclusive, &path)? {
                return Ok(BriefLock { _file: lock });
            }
            if interruptible && crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            if start.elapsed() >= BRIEF_LOCK_WAIT {
                return Err(Error::infra(format!(
                    "{} has been locked for {}, though nobody needs it for more than a moment; \
                     find the process that holds it (fuser {})",
                    path.display(),
                    human(BRIEF_LOCK_WAIT),
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

/// Reads the record of lease `name`; `None` when there is none. A record that does not parse
/// (a writer died mid-write) counts as an older harness's, held by nobody known until its
/// modification time plus `ttl`. `expired` is set from the record's own expiry; whether the
/// lease is held is for the caller to say (see [`look`]).
fn read_record(folder: &Folder, name: &str, ttl: Duration) -> Result<Option<Record>> {
    let file = record_file(name);
    let Some(mut text_file) = open_plain(folder, &file, OFlags::RDONLY, None)? else {
        return Ok(None);
    };
    let cannot = || format!("cannot read {}", folder.path.join(&file).display());
    let mut text = Vec::new();
    (&mut text_file)
        .take(RECORD_MAX)
        .read_to_end(&mut text)
        .infra_ctx(cannot)?;
    let mut record = match serde_json::from_slice::<Record>(&text) {
        Ok(record) => record,
        Err(_) => {
            let modified = text_file
                .metadata()
                .and_then(|m| m.modified())
                .infra_ctx(cannot)?;
            let modified = modified.duration_since(UNIX_EPOCH).map(ms).unwrap_or(0);
            let info =
                LeaseInfo::unknown(name, "unreadable lease file", modified, modified + ms(ttl));
            Record {
                info,
                locked: false,
            }
        }
    };
    record.info.expired = now_ms() >= record.info.expires;
    Ok(Some(record))
}

/// Writes the record of lease `name`: a new file, readable and writable by all so that other
/// users can take the lease over, renamed into place; or, when another user's record is in
/// the way in a sticky folder, written over it in place.
fn write_record(folder: &Folder, name: &str, record: &Record) -> Result<()> {
    static SERIAL: AtomicU64 = AtomicU64::new(0);
    let file = record_file(name);
    let path = || folder.path.join(&file);
    let cannot = || format!("cannot write {}", path().display());
    let json = serde_json::to_vec_pretty(record).infra_ctx(cannot)?;
    let tmp = format!(
        ".{file}.{}.{}.tmp",
        std::process::id(),
        SERIAL.fetch_add(1, Ordering::SeqCst)
    );
    let flags = OFlags::WRONLY
        | OFlags::CREATE
        | OFlags::EXCL
        | OFlags::NOFOLLOW
        | OFlags::CLOEXEC
        | OFlags::NOCTTY;
    let mode = Mode::from_raw_mode(0o666);
    let written = (|| -> std::io::Result<()> {
        let fd = rustix::fs::openat(&folder.dir, tmp.as_str(), flags, mode)?;
        // Ours, just made: undo the umask.
        rustix::fs::fchmod(&fd, mode)?;
        File::from(fd).write_all(&json)?;
        rustix::fs::renameat(&folder.dir, tmp.as_str(), &folder.dir, file.as_str())?;
        Ok(())
    })();
    let Err(e) = written else {
        return Ok(());
    };
    let _ = rustix::fs::unlinkat(&folder.dir, tmp.as_str(), AtFlags::empty());
    if e.kind() != std::io::ErrorKind::PermissionDenied {
        return Err(Error::infra(format!("{}: {e}", cannot())));
    }
    let mut old = open_plain(folder, &file, OFlags::WRONLY, None)?
        .ok_or_else(|| Error::infra(format!("{}: {e}", cannot())))?;
    old.set_len(0)
        .and_then(|()| old.write_all(&json))
        .infra_ctx(cannot)
}

/// This host's name.
fn hostname() -> String {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy();
    if name.is_empty() {
        "unknown".into()
    } else {
        name.into_owned()
    }
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
/// `21:45:03 UTC` of a time in milliseconds since the epoch.
fn utc_time(unix_ms: u64) -> String {
    crate::clock::utc(unix_ms / 1000).time_text()
}

// `30m`, `1h30m`, `2m5s`, `500ms`: the wait style of `crate::clock`.
use crate::clock::wait_time as human;

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    const TTL: Duration = Duration::from_secs(60);

    fn quiet() -> impl FnMut(&str) {
        |_| {}
    }

    /// The lease folder `dir`, checked.
    fn at(dir: &Path) -> Arc<Folder> {
        Arc::new(Folder::open(dir, None, "Fix it.").unwrap())
    }

    fn take(dir: &Path, name: &str, wait: Duration, ttl: Duration) -> Result<Lease> {
        Lease::acquire_in(
            &at(dir),
            &[name.to_string()],
            "test",
            wait,
            ttl,
            &mut quiet(),
        )
    }

    fn holder_at(dir: &Path, name: &str, ttl: Duration) -> Option<LeaseInfo> {
        holder_in(&at(dir), name, ttl).unwrap()
    }

    fn lease_path(dir: &Path, name: &str) -> PathBuf {
        dir.join(record_file(name))
    }

    /// Writes a record as a harness from before `NAME.held` did (no `locked`).
    fn write_old(dir: &Path, info: &LeaseInfo) {
        let folder = at(dir);
        let _lock = BriefLock::take(&folder, &info.name, false).unwrap();
        let record = Record {
            info: info.clone(),
            locked: false,
        };
        write_record(&folder, &info.name, &record).unwrap();
    }

    fn someone(name: &str, pid: u32, what: &str, expires: u64) -> LeaseInfo {
        LeaseInfo {
            name: name.into(),
            holder: format!("{pid}@elsewhere"),
            pid,
            host: "elsewhere".into(),
            what: what.into(),
            acquired: now_ms() - 10_000,
            expires,
            expired: false,
        }
    }

    fn me() -> String {
        format!("{}@{}", std::process::id(), hostname())
    }

    fn mode_of(path: &Path) -> u32 {
        std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
    }

    fn is_root() -> bool {
        rustix::process::geteuid().is_root()
    }

    #[test]
    fn acquire_and_release() {
        let tmp = tempfile::tempdir().unwrap();
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        assert_eq!(lease.name(), "rig-a");
        assert!(lease.expires() > SystemTime::now());
        let info = holder_at(tmp.path(), "rig-a", TTL).unwrap();
        assert_eq!(info.holder, me());
        assert_eq!(info.what, "test");
        assert!(!info.expired);
        drop(lease);
        assert!(holder_at(tmp.path(), "rig-a", TTL).is_none());
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
            &at(tmp.path()),
            &["rig-a".into()],
            "other",
            Duration::from_millis(300),
            TTL,
            &mut |s: &str| said.push(s.to_string()),
        )
        .err()
        .unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300));
        let me = me();
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
        write_old(tmp.path(), &someone("rig-a", 1, "old run", now_ms() - 1));
        let listed = list_in(&at(tmp.path()), TTL).unwrap();
        assert_eq!(listed.len(), 1);
        assert!(listed[0].expired);
        assert!(holder_at(tmp.path(), "rig-a", TTL).is_none());
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        let info = holder_at(tmp.path(), "rig-a", TTL).unwrap();
        assert_eq!(info.pid, std::process::id());
        assert!(!lease.lost());
    }

    #[test]
    fn an_older_harness_record_holds_until_its_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        write_old(tmp.path(), &someone("rig-a", 2, "old", now_ms() + 60_000));
        let info = holder_at(tmp.path(), "rig-a", TTL).unwrap();
        assert_eq!(info.holder, "2@elsewhere");
        let err = take(tmp.path(), "rig-a", Duration::from_millis(100), TTL)
            .err()
            .unwrap();
        assert!(err.to_string().contains("2@elsewhere (old)"), "{err}");
        // Taking failed without disturbing it, nor leaving the lock held.
        assert_eq!(holder_at(tmp.path(), "rig-a", TTL).unwrap(), info);
        write_old(tmp.path(), &someone("rig-a", 2, "old", now_ms() - 1));
        take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
    }

    #[test]
    fn a_dead_holders_record_frees_the_lease_whatever_its_expiry() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = at(tmp.path());
        let dead = Record {
            info: someone("rig-a", 3, "dead", now_ms() + 3_600_000),
            locked: true,
        };
        write_record(&folder, "rig-a", &dead).unwrap();
        assert!(holder_at(tmp.path(), "rig-a", TTL).is_none());
        assert!(list_in(&folder, TTL).unwrap()[0].expired);
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        assert_eq!(holder_at(tmp.path(), "rig-a", TTL).unwrap().holder, me());
        assert!(!lease.lost());
    }

    #[test]
    fn a_clock_step_does_not_free_a_live_lease() {
        let tmp = tempfile::tempdir().unwrap();
        let folder = at(tmp.path());
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        // The wall clock jumps an hour ahead: the record's expiry is now long past.
        step_the_clock(&folder, "rig-a");
        let info = holder_at(tmp.path(), "rig-a", TTL).expect("still held");
        assert_eq!(info.holder, me());
        assert!(info.expires < now_ms());
        assert!(!list_in(&folder, TTL).unwrap()[0].expired);
        let err = take(tmp.path(), "rig-a", Duration::from_millis(300), TTL)
            .err()
            .unwrap();
        assert!(matches!(err, Error::Infra(_)), "{err}");
        assert!(err.to_string().contains(&me()), "{err}");
        assert!(!lease.lost());
        drop(lease);
        take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
    }

    /// Rewrites lease `name`'s record with an expiry an hour ago, as a clock step would make it.
    fn step_the_clock(folder: &Folder, name: &str) {
        let _lock = BriefLock::take(folder, name, false).unwrap();
        let mut record = read_record(folder, name, TTL).unwrap().unwrap();
        assert!(record.locked);
        record.info.expires = now_ms() - 3_600_000;
        write_record(folder, name, &record).unwrap();
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
        let folder = at(tmp.path());
        let names: Vec<String> = vec!["qemu-0".into(), "qemu-1".into()];
        let any = |what: &str, wait: Duration| {
            Lease::acquire_in(&folder, &names, what, wait, TTL, &mut quiet())
        };
        let a = any("a", Duration::ZERO).unwrap();
        let b = any("b", Duration::ZERO).unwrap();
        assert_eq!((a.name(), b.name()), ("qemu-0", "qemu-1"));
        let err = any("c", Duration::from_millis(100))
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
        let c = any("c", Duration::ZERO).unwrap();
        assert_eq!(c.name(), "qemu-0");
        assert_eq!(list_in(&folder, TTL).unwrap().len(), 2);
    }

    #[test]
    fn only_one_of_many_takers_wins() {
        let tmp = tempfile::tempdir().unwrap();
        let barrier = Arc::new(std::sync::Barrier::new(8));
        let takers: Vec<_> = (0..8)
            .map(|_| {
                let (dir, barrier) = (tmp.path().to_path_buf(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    take(&dir, "rig-a", Duration::ZERO, TTL).ok()
                })
            })
            .collect();
        let won: Vec<Lease> = takers
            .into_iter()
            .filter_map(|t| t.join().unwrap())
            .collect();
        assert_eq!(won.len(), 1);
    }

    #[test]
    fn readers_do_not_stop_a_taker() {
        let tmp = tempfile::tempdir().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let reader = {
            let (dir, stop) = (tmp.path().to_path_buf(), stop.clone());
            std::thread::spawn(move || {
                let folder = at(&dir);
                while !stop.load(Ordering::SeqCst) {
                    holder_in(&folder, "rig-a", TTL).unwrap();
                    list_in(&folder, TTL).unwrap();
                }
            })
        };
        for _ in 0..100 {
            take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        }
        stop.store(true, Ordering::SeqCst);
        reader.join().unwrap();
    }

    #[test]
    fn lost_when_someone_else_took_it() {
        let tmp = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(300);
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, ttl).unwrap();
        // An older harness that found the record expired (it trusts the clock).
        write_old(tmp.path(), &someone("rig-a", 2, "thief", now_ms() + 60_000));
        // Renewal runs every 100 ms; allow for a loaded machine.
        let start = Instant::now();
        while !lease.lost() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(lease.lost());
        drop(lease);
        // Dropping a lost lease leaves the new holder alone.
        let info = holder_at(tmp.path(), "rig-a", TTL).unwrap();
        assert_eq!(info.holder, "2@elsewhere");
    }

    #[test]
    fn lost_when_its_lock_file_is_replaced() {
        let tmp = tempfile::tempdir().unwrap();
        let ttl = Duration::from_millis(300);
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, ttl).unwrap();
        std::fs::remove_file(tmp.path().join("rig-a.held")).unwrap();
        let thief = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        let start = Instant::now();
        while !lease.lost() && start.elapsed() < Duration::from_secs(3) {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(lease.lost());
        drop(lease);
        assert!(!thief.lost());
        assert!(holder_at(tmp.path(), "rig-a", TTL).is_some());
    }

    #[test]
    fn unreadable_file_expires_from_its_mtime() {
        let tmp = tempfile::tempdir().unwrap();
        let path = lease_path(tmp.path(), "rig-a");
        std::fs::write(&path, "{ half").unwrap();
        let info = holder_at(tmp.path(), "rig-a", TTL).unwrap();
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
    fn the_harness_sets_the_mode_of_its_own_new_files_only() {
        let tmp = tempfile::tempdir().unwrap();
        let lease = take(tmp.path(), "rig-a", Duration::ZERO, TTL).unwrap();
        assert_eq!(mode_of(&tmp.path().join("rig-a.held")), 0o644);
        assert_eq!(mode_of(&tmp.path().join("rig-a.lock")), 0o644);
        assert_eq!(mode_of(&lease_path(tmp.path(), "rig-a")), 0o666);
        drop(lease);
        // Lock files someone else made (another user's, in a shared folder) keep their mode.
        for file in ["rig-b.held", "rig-b.lock"] {
            let path = tmp.path().join(file);
            std::fs::write(&path, "").unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            if is_root() {
                std::os::unix::fs::chown(&path, Some(65534), Some(65534)).unwrap();
            }
        }
        drop(take(tmp.path(), "rig-b", Duration::ZERO, TTL).unwrap());
        for file in ["rig-b.held", "rig-b.lock"] {
            let meta = std::fs::metadata(tmp.path().join(file)).unwrap();
            assert_eq!(meta.mode() & 0o7777, 0o600, "{file}");
            if is_root() {
                assert_eq!(meta.uid(), 65534, "{file}");
            }
        }
    }

    #[test]
    fn links_in_the_folder_are_refused_and_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("leases");
        std::fs::create_dir(&dir).unwrap();
        let victim = tmp.path().join("shadow");
        std::fs::write(&victim, "secret").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o600)).unwrap();
        let refused = |name: &str, file: &str, what: &str| {
            let err = take(&dir, name, Duration::ZERO, TTL).err().unwrap();
            let msg = err.to_string();
            assert!(matches!(err, Error::Input(_)), "{msg}");
            assert!(msg.contains(&dir.join(file).display().to_string()), "{msg}");
            assert!(msg.contains(what), "{msg}");
            assert_eq!(mode_of(&victim), 0o600);
            assert_eq!(std::fs::read_to_string(&victim).unwrap(), "secret");
        };
        // A symbolic link in place of each of the three files.
        for (name, file) in [
            ("rig-a", "rig-a.held"),
            ("rig-b", "rig-b.lock"),
            ("rig-c", "rig-c.lease"),
        ] {
            std::os::unix::fs::symlink(&victim, dir.join(file)).unwrap();
            refused(name, file, "symbolic link");
        }
        let err = holder_in(&at(&dir), "rig-c", TTL).err().unwrap();
        assert!(err.to_string().contains("symbolic link"), "{err}");
        // One that points nowhere yet: nothing is made at its far end.
        let nowhere = tmp.path().join("nowhere");
        std::os::unix::fs::symlink(&nowhere, dir.join("rig-d.held")).unwrap();
        refused("rig-d", "rig-d.held", "symbolic link");
        assert!(!nowhere.exists());
        // A hard link.
        std::fs::hard_link(&victim, dir.join("rig-e.held")).unwrap();
        refused("rig-e", "rig-e.held", "hard links");
        // A FIFO: refused, without hanging on the open.
        rustix::fs::mknodat(
            CWD,
            dir.join("rig-f.lock"),
            rustix::fs::FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        refused("rig-f", "rig-f.lock", "not a plain file");
    }

    #[test]
    fn a_folder_of_another_user_is_refused() {
        if !is_root() {
            return crate::testing::missing("root, to give a folder to another user");
        }
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("leases");
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(&dir, Some(65534), Some(65534)).unwrap();
        for create in [None, Some(0o755)] {
            let err = Folder::open(
                &dir,
                create,
                "Set HARNESS_LEASE_DIR to a folder of your own.",
            )
            .err()
            .unwrap();
            let msg = err.to_string();
            assert!(matches!(err, Error::Input(_)), "{msg}");
            assert!(
                msg.starts_with(&format!(
                    "the lease folder {} belongs to uid 65534, not to root or to this user",
                    dir.display()
                )),
                "{msg}"
            );
            assert!(msg.ends_with("Set HARNESS_LEASE_DIR to a folder of your own."));
        }
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        assert_eq!(mode_of(&dir), 0o755);
    }

    #[test]
    fn a_folder_others_may_write_to_must_be_sticky() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("leases");
        std::fs::create_dir(&dir).unwrap();
        let set = |mode: u32| {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        set(0o777);
        let err = Folder::open(&dir, None, "Fix it.").err().unwrap();
        let msg = err.to_string();
        assert!(matches!(err, Error::Input(_)), "{msg}");
        assert!(
            msg.contains("may be written by other users (mode 0777)"),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("chmod +t {}", dir.display())),
            "{msg}"
        );
        // Sticky: only a file's owner may replace it.
        set(0o1777);
        Folder::open(&dir, None, "Fix it.").unwrap();
        // Group-writable for this user's own group.
        set(0o775);
        Folder::open(&dir, None, "Fix it.").unwrap();
        if is_root() {
            // ...but not for another group.
            std::os::unix::fs::chown(&dir, None, Some(65534)).unwrap();
            assert!(Folder::open(&dir, None, "Fix it.").is_err());
            set(0o1775);
            Folder::open(&dir, None, "Fix it.").unwrap();
        }
    }

    #[test]
    fn a_symlinked_folder_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let real = tmp.path().join("real");
        std::fs::create_dir(&real).unwrap();
        let link = tmp.path().join("leases");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let with_slash = PathBuf::from(format!("{}/", link.display()));
        for path in [&link, &with_slash] {
            let err = Folder::open(path, Some(0o755), "Fix it.").err().unwrap();
            let msg = err.to_string();
            assert!(matches!(err, Error::Input(_)), "{msg}");
            assert!(
                msg.starts_with(&format!(
                    "the lease folder {} is a symbolic link",
                    link.display()
                )),
                "{msg}"
            );
        }
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        let err = Folder::open(&file, None, "Fix it.").err().unwrap();
        assert!(err.to_string().contains("is not a folder"), "{err}");
    }

    #[test]
    fn a_missing_folder_is_made_with_its_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("a/b/leases");
        let folder = Folder::open(&own, Some(0o755), "Fix it.").unwrap();
        assert_eq!(folder.path, own);
        assert_eq!(mode_of(&own), 0o755);
        let meta = std::fs::metadata(&own).unwrap();
        assert_eq!(meta.uid(), rustix::process::geteuid().as_raw());
        // As /run/lock/harness is made: shared by all users, sticky.
        let shared = tmp.path().join("shared");
        Folder::open(&shared, Some(0o1777), "Fix it.").unwrap();
        assert_eq!(mode_of(&shared), 0o1777);
        // An existing folder keeps its mode.
        std::fs::set_permissions(&own, std::fs::Permissions::from_mode(0o700)).unwrap();
        Folder::open(&own, Some(0o755), "Fix it.").unwrap();
        assert_eq!(mode_of(&own), 0o700);
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

    /// Run by `holder_killed_with_sigkill_frees_the_lease_at_once` in a child process: holds a
    /// lease until killed.
    #[test]
    #[ignore = "run as a child process by holder_killed_with_sigkill_frees_the_lease_at_once"]
    fn holder_child() {
        let Some(dir) = std::env::var_os("LEASE_TEST_DIR") else {
            return;
        };
        let _lease = take(Path::new(&dir), "rig-k", Duration::ZERO, TTL).unwrap();
        std::thread::sleep(Duration::from_secs(60));
    }

    #[test]
    fn holder_killed_with_sigkill_frees_the_lease_at_once() {
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
        while holder_at(tmp.path(), "rig-k", TTL).is_none() {
            assert!(appeared.elapsed() < Duration::from_secs(10), "no lease");
            std::thread::sleep(Duration::from_millis(20));
        }
        let held = holder_at(tmp.path(), "rig-k", TTL).unwrap();
        assert_eq!(held.pid, child.id());

        // A second taker waits, and says for whom.
        let said = Arc::new(Mutex::new(Vec::<String>::new()));
        let waiter = {
            let (dir, said) = (tmp.path().to_path_buf(), said.clone());
            std::thread::spawn(move || {
                let mut say = |s: &str| said.lock().unwrap().push(s.to_string());
                let lease = Lease::acquire_in(
                    &at(&dir),
                    &["rig-k".into()],
                    "second",
                    Duration::from_secs(20),
                    TTL,
                    &mut say,
                );
                (lease, Instant::now())
            })
        };
        // A clock step while the holder lives frees nothing.
        step_the_clock(&at(tmp.path()), "rig-k");
        std::thread::sleep(Duration::from_millis(600));
        assert!(!waiter.is_finished(), "taken from a live holder");
        assert!(holder_at(tmp.path(), "rig-k", TTL).is_some());

        // Killed: the lease is the waiter's at once, long before the record's expiry.
        child.kill().unwrap();
        let killed = Instant::now();
        child.wait().unwrap();
        let (lease, got) = waiter.join().unwrap();
        let lease = lease.unwrap();
        let after = got.duration_since(killed);
        assert!(
            after < Duration::from_secs(2),
            "taken {after:?} after the kill"
        );
        assert!(!lease.lost());
        assert_eq!(holder_at(tmp.path(), "rig-k", TTL).unwrap().what, "second");
        let said = said.lock().unwrap();
        assert!(
            said[0].starts_with(&format!(
                "waiting for rig-k: held by {}@{} (test) until ",
                held.pid,
                hostname()
            )),
            "{said:?}"
        );
    }
}
