//! The runner: plan → device → results → report.
//!
//! One target runs the planned suites in order. A suite that wants a fresh device gets a
//! fresh copy of the image, configured with the suite's `config.json` and the run's SSH key,
//! and one boot; its tests then run in order against that device.

pub mod builtin;
pub mod dut;
pub mod engine;
pub mod keys;
pub mod media;
pub mod plan;
pub mod power_loss;
pub mod steps;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use crate::board::BoardTarget;
use crate::config::suite::Capability;
use crate::console::Console;
use crate::error::{Context, Error, Result};
use crate::image::configure::Change;
use crate::lan::{self, Lan};
use crate::qemu::accel::{self, Accel};
use crate::qemu::rig::Emulator;
use crate::qemu::target::QemuTarget;
use crate::qemu::{Disk, Network, QemuOptions, Serial};
use crate::report::{Counts, Outcome, Reporter, RunInfo, TestResult};
use crate::target::Target;
use dut::Dut;
use plan::Plan;

/// What `harness run` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// The machine type (for a rig: its machine, filled in from the rig file).
    pub machine: String,
    /// A rig (`rigs/NAME.yaml`): a board on this host, instead of a QEMU machine.
    pub rig: Option<String>,
    /// Suites, as `suite/os`, `suites/os` or a path.
    pub suites: Vec<String>,
    /// The image; default: the machine's reference image.
    pub image: Option<PathBuf>,
    /// The run's folder; default `reports/<date>-<machine>`.
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
    /// Wall time.
    pub duration: Duration,
}

impl RunSummary {
    /// The process exit code for this run.
    pub fn exit_code(&self) -> i32 {
        use crate::exit_code::*;
        if self.interrupted {
            INTERRUPTED
        } else if self.counts.errors > 0 {
            INFRASTRUCTURE
        } else if self.counts.failed > 0 {
            TEST_FAILED
        } else {
            SUCCESS
        }
    }
}

/// Runs the suites on a QEMU machine or a rig; `say` receives the progress lines.
pub fn run(root: &Path, opts: &RunOptions, say: &mut dyn FnMut(&str)) -> Result<RunSummary> {
    let started = Instant::now();
    let rig = opts
        .rig
        .as_deref()
        .map(|name| crate::board::rig::load(root, name))
        .transpose()?;
    if let Some(rig) = &rig {
        // Missing hardware is bad input, found before anything is built or flashed.
        rig.check()
            .map_err(|e| crate::board::spec::in_rig(&rig.name, e))?;
    }
    let machine = rig
        .as_ref()
        .map_or(opts.machine.as_str(), |r| r.machine.as_str());
    let plan = plan::build(root, machine, &opts.suites, opts.filter.as_deref())?;
    let target_name = rig
        .as_ref()
        .map_or(plan.machine.name.clone(), |r| format!("rig-{}", r.name));
    let dir = plan::run_dir(root, opts.out.as_deref(), &target_name);
    std::fs::create_dir_all(&dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
    let media = media::prepare(root, &plan.machine, opts.image.as_deref(), &dir, say)?;
    let key = keys::generate(&dir)?;
    let console = Console::new(&dir.join("serial.log"))?;
    // The LAN (if any) must exist before any thread that should live in it. The emulator
    // (if any) outlives the target that drives it.
    let mut notes = Vec::new();
    let (emulator, rig) = match rig {
        Some(rig) if rig.emulated => {
            let (emulator, hw) = emulate(&plan, &media, &dir, opts, &mut notes)?;
            notes.push(emulator.describe());
            (Some(emulator), Some(rig.with_hardware(hw)))
        }
        other => (None, other),
    };
    let (mut target, _lan): (Box<dyn Target>, Option<Lan>) = match &rig {
        Some(rig) => (
            Box::new(BoardTarget::open(rig, &media.image, console)?),
            None,
        ),
        None => qemu_target(&plan, &media, &dir, opts, console)?,
    };
    notes.extend(target.notes());
    for n in &notes {
        say(n);
    }
    let junit = opts.junit.clone().unwrap_or_else(|| dir.join("junit.xml"));
    let mut reporter = Reporter::new(
        &dir,
        junit.clone(),
        RunInfo {
            title: target_name.clone(),
            mode: "spread".into(),
            image: media.image.clone(),
            started: SystemTime::now(),
            notes,
        },
    )?;
    let mut vars = media.vars.clone();
    vars.insert("slug".into(), plan.machine.slug.clone());
    vars.insert("machine".into(), plan.machine.name.clone());
    if let Some(ip) = target.host_addr() {
        vars.insert("host_ip".into(), ip.to_string());
    }
    vars.extend(opts.vars.iter().cloned());

    let interrupted = {
        let mut dut = Dut::new(target.as_mut(), key.private.clone(), dir.clone());
        dut.vars = vars;
        run_suites(
            &plan,
            &mut dut,
            &key.public,
            opts,
            &target_name,
            &mut reporter,
            say,
        )?
    };
    target.finish(opts.keep);
    if let Some(emulator) = emulator {
        emulator.finish(opts.keep);
    }
    if interrupted {
        reporter.interrupted()?;
    }
    Ok(RunSummary {
        dir,
        junit,
        counts: Counts::of(reporter.results()),
        interrupted,
        duration: started.elapsed(),
    })
}

/// Starts the QEMU that plays the board of an emulated rig.
fn emulate(
    plan: &Plan,
    media: &media::Media,
    dir: &Path,
    opts: &RunOptions,
    notes: &mut Vec<String>,
) -> Result<(Emulator, crate::board::rig::Hardware)> {
    let spec = plan.machine.qemu.as_ref().ok_or_else(|| {
        Error::input(format!(
            "machine `{}` has no QEMU settings, so no emulated rig can play it",
            plan.machine.name
        ))
    })?;
    let accel = choose_accel(&spec.binary, media, opts, &mut |l| notes.push(l));
    Emulator::start(spec, &dir.join("rig"), accel)
}

/// The accelerator: forced by `--accel`, else probed.
fn choose_accel(
    binary: &str,
    media: &media::Media,
    opts: &RunOptions,
    note: &mut dyn FnMut(String),
) -> Accel {
    match opts.accel {
        Some(a) => {
            note(format!("accelerator: {} (forced)", a.qemu_name()));
            a
        }
        None => accel::choose(binary, media.probe_kernel.as_deref(), note),
    }
}

/// A QEMU machine for the plan's machine type, on the private LAN when the harness may make
/// one.
fn qemu_target(
    plan: &Plan,
    media: &media::Media,
    dir: &Path,
    opts: &RunOptions,
    console: Console,
) -> Result<(Box<dyn Target>, Option<Lan>)> {
    let spec = plan.machine.qemu.clone().ok_or_else(|| {
        Error::input(format!(
            "machine `{}` has no QEMU settings; run it on a rig (--rig)",
            plan.machine.name
        ))
    })?;
    let mut notes = Vec::new();
    let accel = choose_accel(&spec.binary, media, opts, &mut |l| notes.push(l));
    let (network, lan) = network(dir, &mut notes)?;
    let target = QemuTarget::new(
        &plan.machine.name,
        QemuOptions {
            spec,
            base_image: media.image.clone(),
            dir: dir.join("qemu"),
            accel,
            network,
            disk: Disk::Overlay,
            serial: Serial::Socket,
        },
        console,
        media.boot.clone(),
        notes,
    )?;
    Ok((Box::new(target), lan))
}

/// The private LAN when the harness may make one, else QEMU's user network.
fn network(dir: &Path, notes: &mut Vec<String>) -> Result<(Network, Option<Lan>)> {
    if std::env::var_os("HARNESS_NETWORK").is_some_and(|v| v == "user") {
        notes.push("network: QEMU user networking (HARNESS_NETWORK=user); tests that need a LAN are skipped".into());
        return Ok((Network::User, None));
    }
    match Lan::create(dir)? {
        Ok(mut lan) => {
            let taps = vec![
                (lan.add_tap()?, lan::dut_mac(0)),
                (lan.add_tap()?, lan::dut_mac(1)),
            ];
            notes.push(format!(
                "network: private LAN 10.77.0.0/24 in the harness's own namespace (harness {}, device {})",
                lan::HOST_IP,
                lan::DUT_IP
            ));
            Ok((Network::Lan(taps), Some(lan)))
        }
        Err(why) => {
            notes.push(format!(
                "network: QEMU user networking ({why}); tests that need a LAN are skipped"
            ));
            Ok((Network::User, None))
        }
    }
}

/// Runs every planned suite; returns whether the run was interrupted.
fn run_suites(
    plan: &Plan,
    dut: &mut Dut,
    public_key: &str,
    opts: &RunOptions,
    target_name: &str,
    reporter: &mut Reporter,
    say: &mut dyn FnMut(&str),
) -> Result<bool> {
    let mut stop: Option<String> = None;
    let mut booted = false;
    // Whether the device is as a fresh boot left it, so a `fresh` test need not boot again.
    let mut pristine = false;
    for planned in &plan.suites {
        let suite = &planned.suite;
        for (k, v) in &suite.file.vars {
            let value = dut.expand(v);
            dut.vars.insert(k.clone(), value);
        }
        let mut boot_error: Option<String> = None;
        let mut boot_seconds = None;
        let any_selected = planned.selected.iter().any(|&s| s);
        if stop.is_none() && any_selected && (suite.file.fresh || !booted) {
            say(&format!("{}: booting a fresh device", suite.name));
            match fresh_boot(dut, suite, public_key) {
                Ok(took) => {
                    booted = true;
                    pristine = true;
                    boot_seconds = Some(took.as_secs_f64());
                    say(&format!(
                        "{}: device up (SSH) after {:.1}s",
                        suite.name,
                        took.as_secs_f64()
                    ));
                }
                Err(e) if crate::interrupt::requested() => {
                    let _ = e;
                    return Ok(true);
                }
                Err(e @ Error::Input(_)) => return Err(e),
                Err(e) => boot_error = Some(e.to_string()),
            }
        }
        for ((name, test), &selected) in suite.tests.iter().zip(&planned.selected) {
            let begin = Instant::now();
            let console_from = dut.target.console().position();
            let outcome = if !selected {
                continue;
            } else if let Some(why) = &stop {
                Outcome::Skipped(why.clone())
            } else if let Some(e) = &boot_error {
                Outcome::Error(format!("the device did not come up: {e}"))
            } else if let Some(missing) =
                missing_capability(&test.requires, &dut.target.capabilities())
            {
                Outcome::Skipped(missing)
            } else {
                say(&format!("RUN   {}/{name}", suite.name));
                let fresh = if test.fresh && !pristine {
                    fresh_boot(dut, suite, public_key).map(|took| {
                        dut.record("boot_seconds", format!("{:.1}", took.as_secs_f64()))
                    })
                } else {
                    Ok(())
                };
                pristine = false;
                match fresh {
                    Ok(()) => run_test(dut, suite, test),
                    Err(e) => Outcome::Error(format!("the fresh device did not come up: {e}")),
                }
            };
            if crate::interrupt::requested() {
                return Ok(true);
            }
            let (transcript, mut properties) = dut.take_test_record();
            if let Some(s) = boot_seconds.take() {
                properties.insert(0, ("boot_seconds".into(), format!("{s:.1}")));
            }
            let result = TestResult {
                suite: suite.name.clone(),
                name: name.clone(),
                target: target_name.to_string(),
                attempts: Vec::new(),
                outcome,
                duration: begin.elapsed(),
                properties,
                transcript,
                console: dut
                    .target
                    .console()
                    .text_between(console_from, dut.target.console().position()),
            };
            say(&crate::report::terminal::line(&result, false));
            if matches!(result.outcome, Outcome::Failed(_) | Outcome::Error(_))
                && !opts.keep_going
                && stop.is_none()
            {
                stop = Some(format!(
                    "not run: {}/{name} failed (use --keep-going to run on)",
                    suite.name
                ));
            }
            reporter.add(result)?;
        }
    }
    Ok(false)
}

/// A fresh image with the suite's configuration and the run's key, booted to SSH.
fn fresh_boot(
    dut: &mut Dut,
    suite: &crate::config::suite::Suite,
    public_key: &str,
) -> Result<Duration> {
    dut.disconnect();
    dut.target.power().off()?;
    dut.target.fresh_image()?;
    let mut changes = steps::changes(&suite.file.config, &[], &suite.file.files);
    changes.push(Change::Set(
        "os.sshKeys".into(),
        serde_json::json!([public_key]).to_string(),
    ));
    dut.target.configure_image(&changes)?;
    let took = dut.boot(Duration::from_secs(300))?;
    for step in &suite.setup {
        steps::run(dut, step, &suite.dir, Duration::from_secs(300))?;
    }
    Ok(took)
}

fn missing_capability(requires: &[Capability], has: &[Capability]) -> Option<String> {
    requires.iter().find(|c| !has.contains(c)).map(|c| match c {
        Capability::Lan => {
            "needs a LAN shared with the device (the harness makes one when it has CAP_NET_ADMIN)"
                .to_string()
        }
        Capability::Power => "needs a power switch the harness controls".to_string(),
    })
}

/// Runs one test's steps in order, bounded by its timeout.
fn run_test(
    dut: &mut Dut,
    suite: &crate::config::suite::Suite,
    test: &crate::config::suite::TestFile,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(test.timeout);
    for (i, step) in test.steps.iter().enumerate() {
        let budget = deadline.saturating_duration_since(Instant::now());
        if budget.is_zero() {
            return Outcome::Failed(format!(
                "the test ran past its timeout of {}s",
                test.timeout
            ));
        }
        match steps::run(dut, step, &suite.dir, budget) {
            Ok(()) => {}
            Err(Error::Failed(m)) => return Outcome::Failed(format!("step {}: {m}", i + 1)),
            Err(Error::Skip(why)) => return Outcome::Skipped(why),
            Err(Error::Interrupted) => return Outcome::Error("interrupted".into()),
            Err(e) => return Outcome::Error(format!("step {}: {e}", i + 1)),
        }
    }
    Outcome::Passed
}
