//! One target's share of a run, on a thread of its own: take its lease, set the device up
//! (a QEMU machine on a private LAN of its own, or a rig), then run the jobs it takes from the
//! queue until none is left. An infrastructure failure sends the job back for another target
//! (or this one after a power cycle); a target that fails twice in a row leaves the run, and a
//! rig that does is taken out of rotation until a health check passes.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::devices::{set_up, Device};
use super::policy::{self, Blame, BootError, Failure, KnownGood};
use super::schedule::{Job, Queue};
use crate::config::suite::{Suite, TestFile};
use crate::error::{Error, Result};
use crate::image::configure::Change;
use crate::lease::Lease;
use crate::qemu::accel::Accel;
use crate::qemu::rig::Emulator;
use crate::report::{Outcome, Reporter, TargetReport, TargetStatus, TestResult};
use crate::runner::exec::dut::Dut;
use crate::runner::exec::fresh::fresh_boot;
use crate::runner::exec::test::{device_config, missing_capability, run_test, TestEnd};
use crate::runner::media::Media;
use crate::runner::plan::Plan;
use crate::runner::snapshots::Snapshots;
use crate::runner::targets::{Kind, TargetSpec};
use crate::runner::{keys::KeyPair, RunOptions, Ui};

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
    /// The snapshot cache, unless `--no-snapshot`.
    pub snapshots: Option<&'a Snapshots>,
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

/// Which suite's fresh boot the device is in, whether no test has touched it since, whether it
/// was booted without the run's key, and, in an `independent` suite, the `config.json` that
/// boot gave it and whether a test left it changed.
#[derive(Default)]
struct DeviceState {
    suite: Option<usize>,
    pristine: bool,
    keyless: bool,
    config: Option<serde_json::Value>,
    changed: bool,
}

impl DeviceState {
    /// What the scheduling rules need to know of it.
    fn held(&self) -> policy::Held {
        policy::Held {
            suite: self.suite,
            pristine: self.pristine,
            keyless: self.keyless,
            changed: self.changed,
        }
    }
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
                streak = policy::streak(streak, infra.is_some());
                if let Some(m) = infra {
                    last_infra = m;
                }
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
                streak = policy::streak(streak, infra);
            }
            JobEnd::Interrupted => return None,
        }
        if policy::leaves_run(streak) {
            let why = format!("{streak} infrastructure failures in a row, the last: {last_infra}");
            let evidence = match known_good_evidence(spec, sh, &mut dut, known_good.as_ref()) {
                Ok((kg, _)) => kg,
                Err(_) => return None,
            };
            return Some((why, policy::leaves_rotation(evidence)));
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
    job: Job,
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
    let key_for = |test: &TestFile| test.ssh_key.then_some(sh.key.public.as_str());
    let wants = |test: &TestFile| policy::Wants {
        suite: job.chain.suite,
        suite_fresh: suite.file.fresh,
        own_device: test.starts_device(),
        keyless: !test.ssh_key,
    };
    let need_boot = policy::needs_boot(state.held(), wants(first));
    let begin = Instant::now();
    let mut boot_figures = Vec::new();
    if need_boot {
        sh.set(
            spec,
            TargetStatus::Running(format!("{}: booting", suite.name)),
            vec![],
        );
        sh.say(spec, &format!("{}: booting a fresh device", suite.name));
        let timeout = Duration::from_secs(plan.machine.boot_timeout);
        let mut say = |l: &str| sh.say(spec, &format!("{}: {l}", suite.name));
        match fresh_boot(dut, suite, key_for(first), sh.snapshots, timeout, &mut say) {
            Ok(fresh) => {
                *state = DeviceState {
                    suite: Some(job.chain.suite),
                    pristine: true,
                    keyless: !first.ssh_key,
                    config: suite.file.independent.then(|| device_config(dut)).flatten(),
                    changed: false,
                };
                sh.say(spec, &format!("{}: {}", suite.name, fresh.describe()));
                boot_figures = fresh.figures();
            }
            Err(_) if crate::interrupt::requested() => return JobEnd::Interrupted,
            Err(e) => {
                *state = DeviceState::default();
                let _ = dut.target.power().off();
                let (transcript, properties) = dut.take_test_record();
                let outcome = boot_failure(spec, sh, dut, known_good, e);
                let infra = matches!(outcome, Outcome::Error(_));
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
            let fresh = if policy::needs_boot(state.held(), wants(test)) {
                state.keyless = !test.ssh_key;
                let mut say = |l: &str| sh.say(spec, &format!("{label}: {l}"));
                fresh_boot(
                    dut,
                    suite,
                    key_for(test),
                    sh.snapshots,
                    Duration::from_secs(plan.machine.boot_timeout),
                    &mut say,
                )
                .map(|fresh| {
                    sh.say(spec, &format!("{label}: {}", fresh.describe()));
                    for (name, value) in fresh.figures() {
                        dut.record(name, value);
                    }
                })
            } else {
                Ok(())
            };
            state.pristine = false;
            let outcome = match fresh {
                Ok(()) => match run_test(dut, suite, test) {
                    TestEnd::Outcome(o) => o,
                    TestEnd::BadInput(why) => sh.stop_for_bad_input(why),
                },
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
        for (name, value) in std::mem::take(&mut boot_figures).into_iter().rev() {
            properties.insert(0, (name.to_string(), value));
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

/// The outcome of a fresh boot that failed, blamed on the evidence (see
/// [`policy::blame_boot`]): what the device showed and, for a device that never answered,
/// whether the target boots its known-good image.
fn boot_failure(
    spec: &TargetSpec,
    sh: &Shared,
    dut: &mut Dut,
    known_good: Option<&Media>,
    e: Error,
) -> Outcome {
    let error = match &e {
        Error::Interrupted => return Outcome::Error("interrupted".into()),
        Error::Failed(_) => BootError::Misbehaved,
        Error::Input(_) => BootError::BadInput,
        _ => BootError::NoAnswer,
    };
    let (evidence, booted) = if policy::needs_known_good(error) {
        match known_good_evidence(spec, sh, dut, known_good) {
            Ok(found) => found,
            Err(_) => return Outcome::Error("interrupted".into()),
        }
    } else {
        (KnownGood::NoneToTry, None)
    };
    match (policy::blame_boot(error, evidence), e) {
        (Blame::BadInput, e) => sh.stop_for_bad_input(e.to_string()),
        (Blame::Image, Error::Failed(m)) => {
            Outcome::Failed(format!("the device did not come up: {m}"))
        }
        (Blame::Image, e) => Outcome::Failed(format!(
            "the image under test did not come up ({e}), while this target's known-good image boots to SSH in {:.0}s",
            booted.unwrap_or_default().as_secs_f64()
        )),
        (Blame::Infrastructure, e) => Outcome::Error(match evidence {
            KnownGood::DoesNotBoot => format!(
                "the device did not come up: {e}; its known-good image did not either"
            ),
            _ => format!("the device did not come up: {e}"),
        }),
    }
}

/// What the target's known-good image shows about the target (booting it when it differs
/// from the image under test), with how long it took to boot; `Err` only on Ctrl-C.
fn known_good_evidence(
    spec: &TargetSpec,
    sh: &Shared,
    dut: &mut Dut,
    known_good: Option<&Media>,
) -> Result<(KnownGood, Option<Duration>)> {
    let Some(kg) = known_good else {
        return Ok((KnownGood::NoneToTry, None));
    };
    if kg.image == sh.machines[&spec.machine].media.image {
        return Ok((KnownGood::IsTheImageUnderTest, None));
    }
    match known_good_boots(spec, sh, dut, kg) {
        Ok(took) => Ok((KnownGood::Boots, Some(took))),
        Err(Error::Interrupted) => Err(Error::Interrupted),
        Err(_) => Ok((KnownGood::DoesNotBoot, None)),
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
    dut.keyless = false;
    let _ = dut.target.power().off();
    dut.leave_snapshot();
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
    let failure = if infra {
        Failure::Infrastructure
    } else {
        Failure::Test
    };
    if policy::runs_again(failure, job.infra_retries, job.reruns, sh.bad_input_seen()) {
        if infra {
            job.infra_retries -= 1;
            job.avoid.push(spec.name.clone());
        } else {
            job.reruns -= 1;
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
