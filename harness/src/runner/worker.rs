//! One target's share of a run, on a thread of its own: take its lease, set the device up
//! (a QEMU machine on a private LAN of its own, or a rig), then run the jobs it takes from the
//! queue until none is left. An infrastructure failure sends the job back for another target
//! (or this one after a power cycle); a target that fails twice in a row leaves the run, and a
//! rig that does is taken out of rotation until a health check passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::dut::Dut;
use super::media::Media;
use super::plan::Plan;
use super::schedule::{Job, Queue};
use super::targets::{Kind, TargetSpec};
use super::{keys::KeyPair, RunOptions, Ui};
use crate::board::BoardTarget;
use crate::config::suite::{Capability, Suite};
use crate::console::Console;
use crate::error::{Error, Result};
use crate::image::configure::Change;
use crate::lan::{self, Lan};
use crate::lease::Lease;
use crate::qemu::accel::Accel;
use crate::qemu::rig::Emulator;
use crate::qemu::target::QemuTarget;
use crate::qemu::{Disk, Network, QemuOptions, Serial};
use crate::report::{Outcome, Reporter, TargetReport, TargetStatus, TestResult};
use crate::target::Target;

/// Infrastructure failures in a row after which a target leaves the run.
const TARGET_FAILURE_LIMIT: usize = 2;

/// What every worker shares: the run's inputs and where results go.
pub struct Shared<'a> {
    /// The project's root.
    pub root: &'a Path,
    /// The run's options.
    pub opts: &'a RunOptions,
    /// Bad input that only showed on a device (it stops the run: exit 2).
    pub bad_input: &'a Mutex<Option<String>>,
    /// Per machine type: its plan, image and accelerator.
    pub machines: &'a BTreeMap<String, Prepared>,
    /// The run's folder.
    pub dir: &'a Path,
    /// The run's SSH key.
    pub key: &'a KeyPair,
    /// The jobs.
    pub queue: &'a Queue,
    /// The reports.
    pub reporter: &'a Mutex<Reporter>,
    /// The terminal.
    pub ui: &'a dyn Ui,
    /// Whether the run has several targets (lines then say which).
    pub several: bool,
}

/// A machine type made ready before any target starts.
pub struct Prepared {
    /// The suites, checked, for this machine.
    pub plan: Plan,
    /// The image, checked.
    pub media: Media,
    /// The accelerator for QEMU on this host, if any target runs QEMU for it.
    pub accel: Option<Accel>,
    /// The machine's known-good image (its reference image, when built).
    pub known_good: Option<Media>,
}

/// A device set up for the run, with what must live as long as it does.
struct Device {
    target: Box<dyn Target>,
    /// What this target boots to show that it works (see [`known_good_boots`]).
    known_good: Option<Media>,
    emulator: Option<Emulator>,
    // Dropped last: the LAN's dnsmasq outlives QEMU.
    _lan: Option<Lan>,
}

/// Which suite's fresh boot the device is in, whether no test has touched it since, and, in an
/// `independent` suite, the `config.json` that boot gave it and whether a test left it changed.
#[derive(Default)]
struct DeviceState {
    suite: Option<usize>,
    pristine: bool,
    config: Option<serde_json::Value>,
    changed: bool,
}

/// How a job ended on this target.
enum JobEnd {
    /// Its results are final; with the message of the infrastructure failure that ended it.
    Done(Option<String>),
    /// It goes back to the queue; `true` when an infrastructure failure sent it.
    Retry(Job, bool),
    /// Ctrl-C.
    Interrupted,
}

impl Shared<'_> {
    fn set(&self, spec: &TargetSpec, status: TargetStatus, notes: Vec<String>) {
        if let TargetStatus::Running(what) | TargetStatus::Starting(what) = &status {
            self.ui.status(&spec.name, what);
        }
        let mut reporter = self.reporter.lock().unwrap_or_else(|e| e.into_inner());
        let notes = if notes.is_empty() {
            reporter
                .targets()
                .iter()
                .find(|t| t.name == spec.name)
                .map(|t| t.notes.clone())
                .unwrap_or_default()
        } else {
            notes
        };
        let report = TargetReport {
            name: spec.name.clone(),
            machine: spec.machine.clone(),
            status,
            notes,
        };
        if let Err(e) = reporter.set_target(report) {
            self.ui.line(&format!("cannot write the reports: {e}"));
        }
    }

    /// A test began: journaled, so that a run killed while it runs reports it interrupted.
    fn started(&self, job: &Job, pos: usize, suite: &Suite, name: &str, spec: &TargetSpec) {
        let mut reporter = self.reporter.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = reporter.started(job.slot(pos), &suite.name, name, &spec.name) {
            self.ui.line(&format!("cannot write the journal: {e}"));
        }
    }

    /// A test's result for the chain's test at `pos`, journaled before the run goes on. A
    /// `final` one is also printed; one whose test goes back to the queue stands in the report
    /// until its retry replaces it.
    fn finish(&self, job: &Job, pos: usize, result: TestResult, last: bool) {
        if last {
            self.ui
                .line(&crate::report::terminal::line(&result, self.several));
        }
        let mut reporter = self.reporter.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = reporter.finished(job.slot(pos), result) {
            self.ui.line(&format!("cannot write the reports: {e}"));
        }
    }

    fn say(&self, spec: &TargetSpec, line: &str) {
        if self.several {
            self.ui.line(&format!("[{}] {line}", spec.name));
        } else {
            self.ui.line(line);
        }
    }

    /// The target leaves the run: reports why, takes a rig out of rotation when the rig is
    /// shown to be at fault (`at_fault`: its known-good image did not boot either, or its
    /// hardware is missing), and reports the jobs nobody else can run.
    fn broken(&self, spec: &TargetSpec, why: String, at_fault: bool) {
        self.say(spec, &format!("out of this run: {why}"));
        self.set(spec, TargetStatus::Broken(why.clone()), vec![]);
        if let (Some(rig), false) = (spec.rig(), at_fault) {
            self.say(
                spec,
                &format!(
                    "rig {} stays in rotation: nothing shows the rig is at fault",
                    rig.name
                ),
            );
        } else if let Some(rig) = spec.rig() {
            let run = self.dir.display().to_string();
            match crate::rotation::mark_out(&rig.name, &why, &run) {
                Ok(()) => self.say(spec, &format!("rig {} taken out of rotation", rig.name)),
                Err(e) => self.say(spec, &format!("cannot record the rig's state: {e}")),
            }
        }
        self.orphans(spec, &format!("{} could not run it: {why}", spec.name));
    }

    /// Bad input that showed only on a device: recorded (the run exits 2), the queue stopped;
    /// returns the failing test's outcome.
    fn stop_for_bad_input(&self, why: String) -> Outcome {
        let mut seen = self.bad_input.lock().unwrap_or_else(|e| e.into_inner());
        seen.get_or_insert_with(|| why.clone());
        self.queue.stop(format!("not run: bad input: {why}"));
        Outcome::Error(format!("bad input: {why}"))
    }

    fn bad_input_seen(&self) -> bool {
        self.bad_input
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Reports the jobs left to nobody once `spec` is gone.
    fn orphans(&self, spec: &TargetSpec, why: &str) {
        for job in self.queue.target_gone(&spec.name) {
            if crate::interrupt::requested() {
                return;
            }
            let plan = &self.machines[&spec.machine].plan;
            let suite = &plan.suites[job.chain.suite].suite;
            for (pos, &t) in job.chain.tests.iter().enumerate() {
                self.finish(
                    &job,
                    pos,
                    TestResult {
                        suite: suite.name.clone(),
                        name: suite.tests[t].0.clone(),
                        target: job.target.clone().unwrap_or_else(|| spec.name.clone()),
                        outcome: Outcome::Error(format!("not run: {why}")),
                        duration: Duration::ZERO,
                        properties: vec![],
                        transcript: String::new(),
                        console: String::new(),
                        attempts: job.earlier[pos].clone(),
                    },
                    true,
                );
            }
        }
    }
}

/// Runs `spec`'s share of the work; returns when the queue has nothing left for it.
pub fn work(spec: &TargetSpec, sh: &Shared) {
    sh.set(
        spec,
        TargetStatus::Starting("waiting for its lease".into()),
        vec![],
    );
    let lease = match take_lease(spec, sh) {
        Ok(Some(lease)) => lease,
        Ok(None) => {
            sh.say(
                spec,
                "its lease was not free and the work is done without it",
            );
            sh.set(spec, TargetStatus::Done, vec![]);
            sh.orphans(spec, "no target was left to run it");
            return;
        }
        Err(Error::Interrupted) => return,
        Err(e) => return sh.broken(spec, e.to_string(), false),
    };
    sh.set(spec, TargetStatus::Starting("setting up".into()), vec![]);
    let prepared = &sh.machines[&spec.machine];
    let tdir = sh.dir.join(&spec.name);
    let device = std::fs::create_dir_all(&tdir)
        .map_err(|e| Error::infra(format!("cannot create {}: {e}", tdir.display())))
        .and_then(|()| set_up(spec, prepared, &tdir));
    let mut device = match device {
        Ok(mut d) => {
            d.known_good = match &spec.kind {
                Kind::Rig(rig) if rig.health_image.is_some() => crate::runner::media::known_good(
                    sh.root,
                    &prepared.plan.machine,
                    rig.health_image.as_deref(),
                ),
                _ => prepared.known_good.clone(),
            };
            d
        }
        Err(Error::Interrupted) => return,
        Err(e) => return sh.broken(spec, format!("could not be set up: {e}"), true),
    };
    let mut notes = vec![format!("lease: {}", lease.name())];
    notes.extend(device.emulator.as_ref().map(Emulator::describe));
    notes.extend(device.target.notes());
    for n in &notes {
        sh.say(spec, n);
    }
    sh.set(spec, TargetStatus::Running("ready".into()), notes);
    let broken = run_jobs(spec, sh, &mut device, &lease);
    device.target.finish(sh.opts.keep);
    if let Some(emulator) = device.emulator.take() {
        emulator.finish(sh.opts.keep);
    }
    drop(device);
    match broken {
        Some((why, at_fault)) => sh.broken(spec, why, at_fault),
        None => {
            sh.set(spec, TargetStatus::Done, vec![]);
            sh.orphans(spec, "no target was left to run it");
        }
    }
}

/// The target's lease: waits up to `--lease-wait`, or, for a rig from a pool, only while
/// there is work it could do.
fn take_lease(spec: &TargetSpec, sh: &Shared) -> Result<Option<Lease>> {
    let names = spec.lease_names();
    let what = sh.dir.display().to_string();
    let mut say = |l: &str| sh.say(spec, l);
    if !spec.pooled {
        return Lease::acquire_any(&names, &what, sh.opts.lease_wait, &mut say).map(Some);
    }
    let deadline = Instant::now() + sh.opts.lease_wait;
    loop {
        match Lease::acquire_any(&names, &what, Duration::from_secs(5), &mut say) {
            Ok(lease) => return Ok(Some(lease)),
            Err(Error::Infra(_)) if sh.queue.has_work() && Instant::now() < deadline => {}
            Err(Error::Infra(_)) if !sh.queue.has_work() => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

/// The device for `spec`, made on this thread (a QEMU machine's LAN is this thread's
/// network namespace, so everything the worker starts shares it).
fn set_up(spec: &TargetSpec, p: &Prepared, dir: &Path) -> Result<Device> {
    let console = Console::new(&dir.join("serial.log"))?;
    match &spec.kind {
        Kind::Rig(rig) if rig.emulated => {
            let qemu = p.plan.machine.qemu.as_ref().ok_or_else(|| {
                Error::input(format!(
                    "machine `{}` has no QEMU settings, so no emulated rig can play it",
                    p.plan.machine.name
                ))
            })?;
            let accel = p.accel.unwrap_or(Accel::Tcg);
            let (emulator, hw) = Emulator::start(qemu, &dir.join("rig"), accel)?;
            let rig = rig.with_hardware(hw);
            Ok(Device {
                target: Box::new(BoardTarget::open(&rig, &p.media.image, console)?),
                known_good: None,
                emulator: Some(emulator),
                _lan: None,
            })
        }
        Kind::Rig(rig) => Ok(Device {
            target: Box::new(BoardTarget::open(rig, &p.media.image, console)?),
            known_good: None,
            emulator: None,
            _lan: None,
        }),
        Kind::Qemu => {
            let qemu = p.plan.machine.qemu.clone().ok_or_else(|| {
                Error::input(format!(
                    "machine `{}` has no QEMU settings; run it on a rig (--rig)",
                    p.plan.machine.name
                ))
            })?;
            let mut notes = Vec::new();
            let accel = p.accel.unwrap_or(Accel::Tcg);
            let (network, lan) = network(dir, &mut notes)?;
            let target = QemuTarget::new(
                &spec.name,
                QemuOptions {
                    spec: qemu,
                    base_image: p.media.image.clone(),
                    dir: dir.join("qemu"),
                    accel,
                    network,
                    disk: Disk::Overlay,
                    serial: Serial::Socket,
                },
                console,
                p.media.boot.clone(),
                notes,
            )?;
            Ok(Device {
                target: Box::new(target),
                known_good: None,
                emulator: None,
                _lan: lan,
            })
        }
    }
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
                "network: private LAN 10.77.0.0/24 in a network namespace of this target's own (harness {}, device {})",
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

/// Takes jobs until none is left; returns why the target left the run early, if it did, and
/// whether the target was shown to be at fault.
fn run_jobs(
    spec: &TargetSpec,
    sh: &Shared,
    device: &mut Device,
    lease: &Lease,
) -> Option<(String, bool)> {
    let prepared = &sh.machines[&spec.machine];
    let known_good = device.known_good.clone();
    let mut dut = Dut::new(
        device.target.as_mut(),
        sh.key.private.clone(),
        sh.dir.to_path_buf(),
    );
    let mut vars = prepared.media.vars.clone();
    vars.insert("slug".into(), prepared.plan.machine.slug.clone());
    vars.insert("machine".into(), prepared.plan.machine.name.clone());
    if let Some(ip) = dut.target.host_addr() {
        vars.insert("host_ip".into(), ip.to_string());
    }
    vars.extend(sh.opts.vars.iter().cloned());
    let mut state = DeviceState::default();
    let mut streak = 0;
    let mut last_infra = String::new();
    while let Some(job) = sh.queue.next(&spec.name) {
        if lease.lost() {
            sh.queue.retry(job);
            return Some((
                format!(
                    "lost its lease {} (its lock file was replaced or another harness took it)",
                    lease.name()
                ),
                false,
            ));
        }
        dut.vars = vars.clone();
        match run_job(spec, sh, &mut dut, &mut state, known_good.as_ref(), job) {
            JobEnd::Done(infra) => {
                sh.queue.done();
                streak = match infra {
                    Some(m) => {
                        last_infra = m;
                        streak + 1
                    }
                    None => 0,
                };
            }
            JobEnd::Retry(job, infra) => {
                if let Some(a) = job.earlier.iter().flatten().last() {
                    if let Outcome::Error(m) | Outcome::Failed(m) = &a.outcome {
                        sh.say(spec, &format!("retrying elsewhere or later: {m}"));
                        if infra {
                            last_infra = m.clone();
                        }
                    }
                }
                sh.queue.retry(job);
                streak = if infra { streak + 1 } else { 0 };
            }
            JobEnd::Interrupted => return None,
        }
        if streak >= TARGET_FAILURE_LIMIT {
            let why = format!("{streak} infrastructure failures in a row, the last: {last_infra}");
            // The evidence: whether the target boots its known-good image. When that is the
            // image under test, the failures themselves are the evidence.
            let at_fault = match &known_good {
                Some(kg) if kg.image == prepared.media.image => true,
                Some(kg) => match known_good_boots(spec, sh, &mut dut, kg) {
                    Ok(_) => false,
                    Err(Error::Interrupted) => return None,
                    Err(_) => true,
                },
                None => false,
            };
            return Some((why, at_fault));
        }
    }
    None
}

/// Runs one chain of tests on the device, booting it first when the chain needs it.
fn run_job(
    spec: &TargetSpec,
    sh: &Shared,
    dut: &mut Dut,
    state: &mut DeviceState,
    known_good: Option<&Media>,
    mut job: Job,
) -> JobEnd {
    let plan = &sh.machines[&spec.machine].plan;
    let planned = &plan.suites[job.chain.suite];
    let suite = &planned.suite;
    for (k, v) in &suite.file.vars {
        let value = dut.expand(v);
        dut.vars.insert(k.clone(), value);
    }
    let test_at = |pos: usize| &suite.tests[job.chain.tests[pos]];
    // Tests this target will skip whatever happens need no boot.
    let caps = dut.target.capabilities();
    let skip_reason = |pos: usize| {
        sh.queue
            .stopped()
            .or_else(|| missing_capability(&test_at(pos).1.requires, &caps))
    };
    if (0..job.chain.tests.len()).all(|pos| skip_reason(pos).is_some()) {
        for pos in 0..job.chain.tests.len() {
            let why = skip_reason(pos).unwrap_or_default();
            let r = result(
                suite,
                &test_at(pos).0,
                spec,
                Outcome::Skipped(why),
                &job,
                pos,
            );
            sh.finish(&job, pos, r, true);
        }
        return JobEnd::Done(None);
    }
    let first = &test_at(0).1;
    let need_boot = match state.suite {
        None => true,
        Some(s) if s != job.chain.suite => suite.file.fresh,
        Some(_) => !state.pristine && (first.fresh || state.changed),
    };
    let begin = Instant::now();
    let mut boot_seconds = None;
    if need_boot {
        sh.set(
            spec,
            TargetStatus::Running(format!("{}: booting", suite.name)),
            vec![],
        );
        sh.say(spec, &format!("{}: booting a fresh device", suite.name));
        let timeout = Duration::from_secs(plan.machine.boot_timeout);
        match fresh_boot(dut, suite, &sh.key.public, timeout) {
            Ok(took) => {
                *state = DeviceState {
                    suite: Some(job.chain.suite),
                    pristine: true,
                    config: suite.file.independent.then(|| device_config(dut)).flatten(),
                    changed: false,
                };
                boot_seconds = Some(took.as_secs_f64());
                sh.say(
                    spec,
                    &format!(
                        "{}: device up (SSH) after {:.1}s",
                        suite.name,
                        took.as_secs_f64()
                    ),
                );
            }
            Err(_) if crate::interrupt::requested() => return JobEnd::Interrupted,
            Err(e) => {
                *state = DeviceState::default();
                let _ = dut.target.power().off();
                let (transcript, properties) = dut.take_test_record();
                let outcome = boot_failure(spec, sh, dut, known_good, e);
                let infra = matches!(outcome, Outcome::Error(_));
                if sh.bad_input_seen() {
                    job.reruns = 0;
                }
                let failed = TestResult {
                    duration: begin.elapsed(),
                    properties,
                    transcript,
                    ..result(suite, &test_at(0).0, spec, outcome, &job, 0)
                };
                return give_up_or_retry(spec, sh, suite, job, 0, failed, infra);
            }
        }
    }
    for pos in 0..job.chain.tests.len() {
        let (name, test) = test_at(pos);
        let begin = Instant::now();
        let console_from = dut.target.console().position();
        let outcome = if let Some(why) = skip_reason(pos) {
            Outcome::Skipped(why)
        } else {
            let label = format!("{}/{name}", suite.name);
            sh.started(&job, pos, suite, name, spec);
            sh.set(spec, TargetStatus::Running(label.clone()), vec![]);
            sh.say(spec, &format!("RUN   {label}"));
            let fresh = if test.fresh && !state.pristine {
                fresh_boot(
                    dut,
                    suite,
                    &sh.key.public,
                    Duration::from_secs(plan.machine.boot_timeout),
                )
                .map(|took| dut.record("boot_seconds", format!("{:.1}", took.as_secs_f64())))
            } else {
                Ok(())
            };
            state.pristine = false;
            let outcome = match fresh {
                Ok(()) => run_test(sh, dut, suite, test),
                Err(e) => boot_failure(spec, sh, dut, known_good, e),
            };
            // The next test of an independent suite wants the device as the suite's boot
            // left it: one that changed config.json sends it to a fresh device.
            if suite.file.independent
                && !matches!(outcome, Outcome::Error(_))
                && (state.config.is_none() || device_config(dut) != state.config)
            {
                dut.note("the test left config.json changed: the next test gets a fresh device");
                state.changed = true;
            }
            outcome
        };
        let interrupted = crate::interrupt::requested();
        let outcome = match outcome {
            Outcome::Passed | Outcome::Skipped(_) => outcome,
            _ if interrupted => {
                Outcome::Error("interrupted (Ctrl-C or SIGTERM) while it ran".into())
            }
            other => other,
        };
        let (transcript, mut properties) = dut.take_test_record();
        if let Some(s) = boot_seconds.take() {
            properties.insert(0, ("boot_seconds".into(), format!("{s:.1}")));
        }
        let console = dut
            .target
            .console()
            .text_between(console_from, dut.target.console().position());
        let r = TestResult {
            duration: begin.elapsed(),
            properties,
            transcript,
            console,
            ..result(suite, name, spec, outcome, &job, pos)
        };
        if interrupted {
            sh.finish(&job, pos, r, true);
            return JobEnd::Interrupted;
        }
        if sh.bad_input_seen() {
            // Bad input stops the run: nothing is retried or rerun.
            job.reruns = 0;
            job.infra_retries = 0;
        }
        match &r.outcome {
            Outcome::Error(_) => {
                *state = DeviceState::default();
                let _ = dut.target.power().off();
                return give_up_or_retry(spec, sh, suite, job, pos, r, true);
            }
            Outcome::Failed(_) if job.reruns > 0 => {
                // The rerun starts the chain again on a fresh device.
                *state = DeviceState::default();
                return give_up_or_retry(spec, sh, suite, job, pos, r, false);
            }
            Outcome::Failed(_) => stop_unless_keep_going(sh, suite, name),
            _ => {}
        }
        sh.finish(&job, pos, r, true);
    }
    JobEnd::Done(None)
}

/// The outcome of a fresh boot that failed, blamed on whoever the evidence blames: a device
/// that panics in a loop or fails a setup step is the image's failure; a device that never
/// answers is the image's failure if the target's known-good image boots, else the
/// infrastructure's; bad input stops the run.
fn boot_failure(
    spec: &TargetSpec,
    sh: &Shared,
    dut: &mut Dut,
    known_good: Option<&Media>,
    e: Error,
) -> Outcome {
    match e {
        Error::Failed(m) => Outcome::Failed(format!("the device did not come up: {m}")),
        Error::Input(m) => sh.stop_for_bad_input(m),
        Error::Interrupted => Outcome::Error("interrupted".into()),
        // The image under test is the known-good one: nothing else to try.
        e => match known_good
            .filter(|kg| kg.image != sh.machines[&spec.machine].media.image)
            .map(|kg| known_good_boots(spec, sh, dut, kg))
        {
            Some(Ok(took)) => Outcome::Failed(format!(
                "the image under test did not come up ({e}), while this target's known-good image boots to SSH in {:.0}s",
                took.as_secs_f64()
            )),
            Some(Err(Error::Interrupted)) => Outcome::Error("interrupted".into()),
            Some(Err(kg)) => Outcome::Error(format!(
                "the device did not come up: {e}; its known-good image did not either: {kg}"
            )),
            None => Outcome::Error(format!("the device did not come up: {e}")),
        },
    }
}

/// Boots the target's known-good image (with the run's key) to SSH and returns how long that
/// took; the image under test is put back for the next fresh device whatever happens.
fn known_good_boots(
    spec: &TargetSpec,
    sh: &Shared,
    dut: &mut Dut,
    known_good: &Media,
) -> Result<Duration> {
    let prepared = &sh.machines[&spec.machine];
    sh.say(
        spec,
        &format!(
            "checking the target with its known-good image {}",
            known_good.image.display()
        ),
    );
    dut.disconnect();
    dut.forget_host_key();
    let _ = dut.target.power().off();
    dut.target.use_image(&known_good.image, &known_good.boot);
    let key = Change::Set(
        "os.sshKeys".into(),
        serde_json::json!([sh.key.public]).to_string(),
    );
    let booted = dut
        .target
        .fresh_image()
        .and_then(|()| dut.target.configure_image(&[key]))
        .and_then(|()| dut.boot(Duration::from_secs(prepared.plan.machine.boot_timeout)));
    dut.disconnect();
    dut.forget_host_key();
    let _ = dut.target.power().off();
    dut.target
        .use_image(&prepared.media.image, &prepared.media.boot);
    match &booted {
        Ok(took) => sh.say(
            spec,
            &format!(
                "its known-good image boots to SSH in {:.0}s: the target works",
                took.as_secs_f64()
            ),
        ),
        Err(e) => sh.say(
            spec,
            &format!("its known-good image does not boot either: {e}"),
        ),
    }
    booted
}

/// After a failed run of the chain's test at `pos`: back to the queue while retries (or
/// reruns) are left, else the final results, the rest of the chain not run. Either way the
/// failed run is journaled at once; a retry's result replaces it.
fn give_up_or_retry(
    spec: &TargetSpec,
    sh: &Shared,
    suite: &Suite,
    mut job: Job,
    pos: usize,
    failed: TestResult,
    infra: bool,
) -> JobEnd {
    let left = if infra {
        &mut job.infra_retries
    } else {
        &mut job.reruns
    };
    if *left > 0 {
        *left -= 1;
        if infra {
            job.avoid.push(spec.name.clone());
        }
        sh.finish(&job, pos, failed.clone(), false);
        job.earlier[pos].push(failed.into_attempt());
        return JobEnd::Retry(job, infra);
    }
    let name = failed.name.clone();
    let why = match &failed.outcome {
        Outcome::Error(m) | Outcome::Failed(m) => m.clone(),
        _ => String::new(),
    };
    stop_unless_keep_going(sh, suite, &name);
    sh.finish(&job, pos, failed, true);
    for rest in pos + 1..job.chain.tests.len() {
        let rest_name = &suite.tests[job.chain.tests[rest]].0;
        let outcome = sh.queue.stopped().map_or_else(
            || {
                Outcome::Error(format!(
                    "not run: it follows {}/{name} on one device, which failed: {why}",
                    suite.name
                ))
            },
            Outcome::Skipped,
        );
        let r = result(suite, rest_name, spec, outcome, &job, rest);
        sh.finish(&job, rest, r, true);
    }
    JobEnd::Done(infra.then_some(why))
}

fn stop_unless_keep_going(sh: &Shared, suite: &Suite, name: &str) {
    if !sh.opts.keep_going {
        sh.queue.stop(format!(
            "not run: {}/{name} failed (use --keep-going to run on)",
            suite.name
        ));
    }
}

/// A result for the chain's test at `pos`, with the job's earlier runs of it.
fn result(
    suite: &Suite,
    name: &str,
    spec: &TargetSpec,
    outcome: Outcome,
    job: &Job,
    pos: usize,
) -> TestResult {
    TestResult {
        suite: suite.name.clone(),
        name: name.to_string(),
        target: spec.name.clone(),
        outcome,
        duration: Duration::ZERO,
        properties: vec![],
        transcript: String::new(),
        console: String::new(),
        attempts: job.earlier[pos].clone(),
    }
}

/// The device's `config.json`, or `None` when it cannot be read.
fn device_config(dut: &mut Dut) -> Option<serde_json::Value> {
    let out = dut
        .exec("cat /mnt/boot/config.json", Duration::from_secs(30))
        .ok()?;
    let config = serde_json::from_str(&out.stdout).ok()?;
    crate::redact::secrets_of_config(&config);
    Some(config)
}

/// A fresh image with the suite's configuration and the run's key, booted to SSH.
fn fresh_boot(
    dut: &mut Dut,
    suite: &Suite,
    public_key: &str,
    timeout: Duration,
) -> Result<Duration> {
    dut.disconnect();
    dut.forget_host_key();
    dut.target.power().off()?;
    dut.target.fresh_image()?;
    let mut changes = super::steps::changes(&suite.file.config, &[], &suite.file.files);
    changes.push(Change::Set(
        "os.sshKeys".into(),
        serde_json::json!([public_key]).to_string(),
    ));
    dut.target.configure_image(&changes)?;
    let took = dut.boot(timeout)?;
    for step in &suite.setup {
        super::steps::run(dut, step, &suite.dir, Duration::from_secs(300))?;
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

/// Runs one test's steps in order, bounded by its timeout. A step that finds the run's input
/// wrong (a file it needs is gone) stops the run as bad input.
fn run_test(
    sh: &Shared,
    dut: &mut Dut,
    suite: &Suite,
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
        match super::steps::run(dut, step, &suite.dir, budget) {
            Ok(()) => {}
            Err(Error::Failed(m)) => return Outcome::Failed(format!("step {}: {m}", i + 1)),
            Err(Error::Skip(why)) => return Outcome::Skipped(why),
            Err(Error::Interrupted) => return Outcome::Error("interrupted".into()),
            Err(Error::Input(m)) => return sh.stop_for_bad_input(format!("step {}: {m}", i + 1)),
            Err(e) => return Outcome::Error(format!("step {}: {e}", i + 1)),
        }
    }
    Outcome::Passed
}
