//! The runner: plan → devices → results → report.
//!
//! A run has one or more targets (QEMU machines, rigs). The plan stage checks everything
//! before a device is touched ([`plan`], [`checks`], [`targets`], [`media`], [`keys`]) and
//! puts the suites' tests into chains ([`chains`]); the farm ([`farm`]) shares the chains out
//! over the targets, or, with `each`, has every target run all of them; each test runs on a
//! device through [`exec`]. Results from every target go into one report.

pub mod chains;
pub mod checks;
pub mod exec;
pub mod farm;
pub mod keys;
pub mod media;
pub mod plan;
pub mod snapshots;
pub mod targets;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::config::machine::QemuSpec;
use crate::error::{Context, Error, Result};
use crate::qemu::accel::{self, Accel};
use crate::report::{Counts, Reporter, RunInfo};
use farm::schedule::{Job, Queue};
use farm::worker::{Prepared, Shared};
use targets::Kind;

/// What `harness run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Machine types to run under QEMU (`--machine`, may repeat).
    pub machines: Vec<String>,
    /// QEMU machines per machine type, booted at once from one base image.
    pub parallel: usize,
    /// Rigs by name (`--rig`, may repeat).
    pub rigs: Vec<String>,
    /// Rig pools, `tag=NAME` (`--rigs`): every rig with the tag that is in rotation.
    pub pools: Vec<String>,
    /// Every target runs every test, instead of sharing them out.
    pub each: bool,
    /// Suites, as `suite/os`, `suites/os` or a path.
    pub suites: Vec<String>,
    /// The image; default: the machine's reference image.
    pub image: Option<PathBuf>,
    /// The run's folder; default `reports/<date>-<targets>`.
    pub out: Option<PathBuf>,
    /// Where to write the JUnit file; default `<out>/junit.xml`.
    pub junit: Option<PathBuf>,
    /// A regex over `suite/test` selecting the tests to run.
    pub filter: Option<String>,
    /// Go on after a failed test instead of stopping the run.
    pub keep_going: bool,
    /// Force an accelerator instead of probing.
    pub accel: Option<Accel>,
    /// Keep the overlay and work files after the run.
    pub keep: bool,
    /// Values for `{{name}}` in the suites, over the defaults (e.g. `update_file` for a real
    /// balenaOS image's update).
    pub vars: Vec<(String, String)>,
    /// Retries of a chain of tests after an infrastructure failure (boot, SSH, power, flash).
    pub retries: usize,
    /// Reruns of a failed test; one that then passes is reported flaky.
    pub rerun_failures: usize,
    /// How long to wait for a target's lease.
    pub lease_wait: Duration,
    /// A target whose serial console is streamed to stdout.
    pub follow: Option<String>,
    /// Every fresh device boots: no snapshots are restored or made (`--no-snapshot`).
    pub no_snapshot: bool,
}

/// The terminal side of a run: lines to print and what each target is doing.
pub trait Ui: Sync {
    /// A line for the log (a test's result, a note).
    fn line(&self, line: &str);
    /// What `target` is doing now (its live line).
    fn status(&self, target: &str, what: &str);
}

/// What a finished run produced.
#[derive(Debug, Clone)]
pub struct RunSummary {
    /// The run's folder.
    pub dir: PathBuf,
    /// The JUnit file.
    pub junit: PathBuf,
    /// Outcome counts.
    pub counts: Counts,
    /// Whether Ctrl-C or SIGTERM cut it short.
    pub interrupted: bool,
    /// What a test found wrong with the run's input (a file a step needs is gone) that only
    /// showed on the device; it stopped the run.
    pub bad_input: Option<String>,
    /// Wall time.
    pub duration: Duration,
}

impl RunSummary {
    /// The process exit code for this run.
    pub fn exit_code(&self) -> i32 {
        use crate::exit_code::*;
        if self.interrupted {
            INTERRUPTED
        } else if self.bad_input.is_some() {
            BAD_INPUT
        } else if self.counts.errors > 0 {
            INFRASTRUCTURE
        } else if self.counts.failed > 0 {
            TEST_FAILED
        } else {
            SUCCESS
        }
    }
}

/// Runs the suites on the targets; `ui` shows the progress.
pub fn run(root: &Path, opts: &RunOptions, ui: &dyn Ui) -> Result<RunSummary> {
    let started = Instant::now();
    let mut notes = Vec::new();
    let specs = targets::resolve(
        root,
        &opts.machines,
        opts.parallel,
        &opts.rigs,
        &opts.pools,
        &mut |n| notes.push(n),
    )?;
    if let Some(f) = &opts.follow {
        if !specs.iter().any(|t| &t.name == f) {
            let names: Vec<&str> = specs.iter().map(|t| t.name.as_str()).collect();
            return Err(Error::input(format!(
                "--follow {f}: no such target in this run (targets: {})",
                names.join(", ")
            )));
        }
    }
    // Everything is checked before a device is touched: bad input fails in milliseconds.
    let mut plans = BTreeMap::new();
    for spec in &specs {
        if !plans.contains_key(&spec.machine) {
            let plan = plan::build_for(
                root,
                &spec.machine,
                &opts.suites,
                opts.filter.as_deref(),
                &plan::Given::of(opts),
            )?;
            if let (Some(q), Some(Accel::Kvm)) = (&plan.machine.qemu, opts.accel) {
                if q.foreign() {
                    return Err(kvm_cannot(&plan.machine.name, q));
                }
            }
            plans.insert(spec.machine.clone(), plan);
        }
    }
    // Secrets the suites declare, and the values their configuration gives them.
    for plan in plans.values() {
        for planned in &plan.suites {
            let file = &planned.suite.file;
            file.secrets
                .iter()
                .for_each(|k| crate::redact::secret_key(k));
            for (k, v) in &file.config {
                match v {
                    serde_json::Value::String(s) if crate::redact::is_secret_key(k) => {
                        crate::redact::secret_value(s)
                    }
                    other => crate::redact::secrets_of_config(other),
                }
            }
        }
    }
    let title = targets::title(&specs);
    let dir = plan::run_dir(root, opts.out.as_deref(), &folder_name(&title));
    std::fs::create_dir_all(&dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
    let mut machines = BTreeMap::new();
    for (name, plan) in plans {
        let media = media::prepare(root, &plan.machine, opts.image.as_deref(), &dir, &mut |l| {
            ui.line(l)
        })?;
        let needs_qemu = specs.iter().any(|t| {
            t.machine == name
                && match &t.kind {
                    Kind::Qemu => true,
                    Kind::Rig(r) => r.emulated,
                }
        });
        let accel = match (&plan.machine.qemu, needs_qemu) {
            (Some(q), true) => Some(choose_accel(&name, q, &media, opts, &mut |l| {
                notes.push(l)
            })?),
            _ => None,
        };
        let restorable = specs
            .iter()
            .any(|t| t.machine == name && matches!(t.kind, Kind::Qemu));
        if let (Some(q), true, false) = (&plan.machine.qemu, restorable, opts.no_snapshot) {
            if !q.has_vmgenid() {
                notes.push(format!(
                    "snapshots off: machine {name} has no vmgenid (a restored device could not \
                     reseed its random state), so every fresh device boots"
                ));
            }
        }
        let known_good = media::known_good(root, &plan.machine, None);
        machines.insert(
            name,
            Prepared {
                plan,
                media,
                accel,
                known_good,
            },
        );
    }
    for n in &notes {
        ui.line(n);
    }
    let key = keys::generate(&dir, &crate::paths::state_dir().join("keys"), opts.keep)?;
    let snapshots = match opts.no_snapshot {
        true => None,
        false => match snapshots::Snapshots::from_env() {
            Ok(cache) => Some(cache),
            Err(e @ Error::Input(_)) => return Err(e),
            Err(e) => {
                ui.line(&format!("snapshots: off for this run ({e})"));
                None
            }
        },
    };
    let junit = opts.junit.clone().unwrap_or_else(|| dir.join("junit.xml"));
    let image = machines
        .values()
        .next()
        .map(|p| p.media.image.clone())
        .unwrap_or_default();
    let reporter = Mutex::new(Reporter::new(
        &dir,
        junit.clone(),
        RunInfo {
            title,
            mode: if opts.each { "each" } else { "spread" }.into(),
            image,
            started: SystemTime::now(),
            notes,
        },
    )?);
    let names: Vec<String> = specs.iter().map(|t| t.name.clone()).collect();
    let first = &machines[&specs[0].machine].plan;
    let mut chains = chains::chains(first);
    if specs.len() > 1 && !opts.each {
        chains::longest_first(&mut chains, first);
    }
    let mut jobs = Vec::new();
    for chain in chains {
        let owners: Vec<Option<String>> = if opts.each {
            names.iter().cloned().map(Some).collect()
        } else {
            vec![None]
        };
        for owner in owners {
            jobs.push(Job::new(
                chain.clone(),
                owner,
                opts.retries,
                opts.rerun_failures,
            ));
        }
    }
    let queue = Queue::new(jobs, names);
    let bad_input = Mutex::new(None);
    let shared = Shared {
        root,
        opts,
        bad_input: &bad_input,
        machines: &machines,
        dir: &dir,
        key: &key,
        snapshots: snapshots.as_ref(),
        queue: &queue,
        reporter: &reporter,
        ui,
        several: specs.len() > 1,
    };
    let finished = AtomicBool::new(false);
    std::thread::scope(|s| {
        // The report files follow the journal within a second or so, also while no event
        // arrives (a long boot).
        let (finished, reporter) = (&finished, &reporter);
        s.spawn(move || {
            while !finished.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                let _ = reporter.lock().unwrap_or_else(|e| e.into_inner()).flush();
            }
        });
        if let Some(f) = &opts.follow {
            let log = dir.join(f).join("serial.log");
            s.spawn(move || follow(&log, finished));
        }
        let workers: Vec<_> = specs
            .iter()
            .map(|spec| {
                let shared = &shared;
                std::thread::Builder::new()
                    .name(spec.name.clone())
                    .spawn_scoped(s, move || farm::worker::work(spec, shared))
            })
            .collect();
        for w in workers.into_iter().flatten() {
            let _ = w.join();
        }
        finished.store(true, Ordering::SeqCst);
    });
    let interrupted = crate::interrupt::requested();
    let mut reporter = reporter.into_inner().unwrap_or_else(|e| e.into_inner());
    if interrupted {
        reporter.interrupted()?;
    }
    reporter.close()?;
    // An image unpacked into the run folder holds the image's secrets: it goes with the run.
    if !opts.keep {
        for p in machines.values() {
            if p.media.image.starts_with(&dir) {
                let _ = std::fs::remove_file(&p.media.image);
            }
        }
    }
    Ok(RunSummary {
        dir,
        junit,
        counts: Counts::of(reporter.results()),
        interrupted,
        bad_input: bad_input.into_inner().unwrap_or_else(|e| e.into_inner()),
        duration: started.elapsed(),
    })
}

/// A folder name for a run's title: `qemux86-64-x2`.
fn folder_name(title: &str) -> String {
    title
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// Streams a target's serial log to stdout until the run is over (`--follow`).
fn follow(log: &Path, finished: &AtomicBool) {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut pos = 0u64;
    let mut buf = Vec::new();
    loop {
        let done = finished.load(Ordering::SeqCst);
        if let Ok(mut f) = std::fs::File::open(log) {
            if f.seek(SeekFrom::Start(pos)).is_ok() {
                buf.clear();
                if let Ok(n) = f.read_to_end(&mut buf) {
                    pos += n as u64;
                    let mut out = std::io::stdout().lock();
                    let _ = out.write_all(&buf);
                    let _ = out.flush();
                }
            }
        }
        if done {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `--accel kvm` for a guest of another architecture than the host's.
fn kvm_cannot(machine: &str, spec: &QemuSpec) -> Error {
    Error::input(format!(
        "--accel kvm: machine {machine} is {}, and KVM on this {} host runs only {} guests (leave --accel out, or use tcg)",
        spec.arch(),
        std::env::consts::ARCH,
        std::env::consts::ARCH
    ))
}

/// The accelerator: forced by `--accel`, else probed; a guest of another architecture than
/// the host's is TCG without a probe, and `--accel kvm` for it is bad input.
fn choose_accel(
    name: &str,
    spec: &QemuSpec,
    media: &media::Media,
    opts: &RunOptions,
    note: &mut dyn FnMut(String),
) -> Result<Accel> {
    if spec.foreign() {
        if opts.accel == Some(Accel::Kvm) {
            return Err(kvm_cannot(name, spec));
        }
        note(format!(
            "accelerator: tcg ({} guest on a {} host: KVM runs only the host's architecture)",
            spec.arch(),
            std::env::consts::ARCH
        ));
        return Ok(Accel::Tcg);
    }
    Ok(match opts.accel {
        Some(a) => {
            note(format!("accelerator: {} (forced)", a.qemu_name()));
            a
        }
        None => accel::choose(&spec.binary, media.probe_kernel.as_deref(), note),
    })
}
