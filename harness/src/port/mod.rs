//! `harness port-check`: the board-porting report.
//!
//! It checks an image for a machine without booting it ([`statics`]), then, unless asked not
//! to or a static check failed, runs the suites on the machine (or a rig) through
//! [`runner::run`], and writes `porting.json` and `porting.html`: one row per contract section
//! of balenaOS's contracts page ([`rows`], [`contracts`]), each with the checks that prove it,
//! why, and links to the tests' logs ([`logs`]) — what a porter reads instead of JUnit.
//!
//! At the runner's level: it calls the runner; nothing below imports it.

pub mod contracts;
pub mod logs;
pub mod page;
pub mod rows;
pub mod statics;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::machine::Machine;
use crate::error::{Context, Error, Result};
use crate::image::source::Packing;
use crate::report::Reporter;
use crate::runner::{self, plan, RunOptions, RunSummary, Ui};
use contracts::Mapping;
use rows::{Board, Check, Finding, Report, Status};

/// The suites a port-check runs unless told otherwise.
pub const DEFAULT_SUITES: [&str; 3] = ["suite/os", "suite/hup", "suite/engine"];

/// What `harness port-check` was asked to do.
#[derive(Debug, Clone, Default)]
pub struct PortOptions {
    /// The machine type, or a machine file.
    pub machine: String,
    /// The image; default: what `harness run` would boot (the machine's reference image).
    pub image: Option<PathBuf>,
    /// A rig of that machine to run the suites on, instead of QEMU.
    pub rig: Option<String>,
    /// The suites; default [`DEFAULT_SUITES`].
    pub suites: Vec<String>,
    /// A regex over `suite/test`.
    pub filter: Option<String>,
    /// Only the checks on the image: no boot.
    pub static_only: bool,
    /// The report's folder; default `reports/port-<date>-<machine>`.
    pub out: Option<PathBuf>,
    /// What else `harness run` takes: `--var`, `--accel`, `--retries`, `--keep`.
    pub run: RunOptions,
}

/// What a port-check produced.
#[derive(Debug, Clone)]
pub struct PortSummary {
    /// The report's folder.
    pub dir: PathBuf,
    /// The report.
    pub report: Report,
    /// The process exit code.
    pub exit_code: i32,
}

/// Checks the image, runs the suites unless told not to, and writes the report.
pub fn check(root: &Path, opts: &PortOptions, ui: &dyn Ui) -> Result<PortSummary> {
    let started = crate::clock::now_unix();
    let (machine, suites, plan) = validate(root, opts)?;
    let mapping = Mapping::load(root)?;
    let dir = match &opts.out {
        Some(o) => o.clone(),
        None => root
            .join("reports")
            .join(format!("port-{}-{}", plan::utc_stamp(), machine.name)),
    };
    std::fs::create_dir_all(&dir).infra_ctx(|| format!("cannot create {}", dir.display()))?;
    let image = image(root, &machine, opts.image.as_deref(), &dir, ui)?;

    ui.line(&format!("static checks of {}", image.shown.display()));
    let found = statics::check(&image.raw, &machine)?;
    for (id, f) in &found {
        ui.line(&format!("  {:<7} {id}: {}", f.status.word(), f.why));
    }
    let static_failed = found.iter().any(|(_, f)| f.status == Status::Failed);
    let mut notes = Vec::new();
    let mut not_run = Finding::skipped("not run (the run ended before it)");
    let mut run: Option<RunSummary> = None;
    if opts.static_only {
        not_run = Finding::skipped("not run: --static-only");
    } else if static_failed {
        notes.push("The image failed a static check, so it was not booted.".to_string());
        not_run =
            Finding::skipped("not run: the image failed a static check, so it was not booted");
    } else {
        match runner::run(root, &run_options(opts, &suites, &image, &dir), ui) {
            Ok(s) => run = Some(s),
            Err(e @ (Error::Input(_) | Error::Interrupted)) => return Err(e),
            Err(e) => {
                notes.push(format!("The run failed: {e}"));
                not_run = Finding {
                    status: Status::Error,
                    why: format!("not run: {e}"),
                };
            }
        }
    }
    let shown = image.shown.display().to_string();
    drop(image);

    let (results, links) = match &run {
        Some(s) => {
            let reporter = Reporter::from_journal(&s.dir)?;
            let links = logs::copy(&dir, &s.dir, reporter.results(), reporter.targets())?;
            (reporter.results().to_vec(), links)
        }
        None => Default::default(),
    };
    let mut checks: Vec<(Option<u32>, Check)> = found
        .into_iter()
        .map(|(id, f)| mapping.static_check(id, f))
        .collect();
    for planned in &plan.suites {
        let suite = &planned.suite.name;
        for ((name, _), selected) in planned.suite.tests.iter().zip(&planned.selected) {
            let key = format!("{suite}/{name}");
            let f = match results
                .iter()
                .find(|r| &r.suite == suite && &r.name == name)
            {
                Some(r) => Finding::of_test(r),
                None if !selected => Finding::skipped("not selected by --filter"),
                None => not_run.clone(),
            };
            let logs = links.get(&key).cloned().unwrap_or_default();
            checks.push(mapping.test_check(&key, f, logs));
        }
    }
    let page = contracts::page_path(root);
    let page_sections = page
        .as_ref()
        .and_then(|p| std::fs::read_to_string(p).ok())
        .map(|t| contracts::page_sections(&t))
        .unwrap_or_default();
    let rows = rows::rows(&contracts::sections(&mapping, &page_sections), checks);
    if run.as_ref().is_some_and(|s| s.interrupted) {
        notes.push("Interrupted: the run was stopped before it finished.".into());
    }
    let report = Report {
        board: Board {
            machine: machine.name.clone(),
            slug: machine.slug.clone(),
            description: machine.description.clone(),
            rig: opts.rig.clone(),
        },
        image: shown,
        date: crate::clock::utc(started).text(),
        contracts: page.map(|p| p.display().to_string()),
        suites,
        static_only: opts.static_only,
        booted: run.is_some(),
        verdict: rows::verdict(&rows, opts.static_only),
        run_report: run
            .as_ref()
            .and_then(|s| s.dir.strip_prefix(&dir).ok())
            .map(|rel| format!("{}/report.html", rel.display())),
        notes,
        rows,
    };
    write(&dir, &report)?;
    let exit_code = match &run {
        Some(s) if s.interrupted => crate::exit_code::INTERRUPTED,
        Some(s) if s.bad_input.is_some() => crate::exit_code::BAD_INPUT,
        _ => rows::exit_code(&report.rows),
    };
    Ok(PortSummary {
        dir,
        report,
        exit_code,
    })
}

/// What the files decide, checked before anything is read or booted: the machine, the rig, the
/// image's presence, the suites (their variables too, for a run) and the filter.
fn validate(root: &Path, opts: &PortOptions) -> Result<(Machine, Vec<String>, plan::Plan)> {
    let machine = crate::config::machine::load(root, &opts.machine)?;
    if let Some(name) = &opts.rig {
        let rig = crate::board::rig::load(root, name)?;
        if rig.machine != machine.name {
            return Err(Error::input(format!(
                "rig {name} holds a {}, not a {}",
                rig.machine, machine.name
            )));
        }
    }
    if let Some(img) = opts.image.as_ref().filter(|p| !p.is_file()) {
        return Err(Error::input(format!(
            "image {} does not exist",
            img.display()
        )));
    }
    let suites: Vec<String> = if opts.suites.is_empty() {
        DEFAULT_SUITES.iter().map(|s| s.to_string()).collect()
    } else {
        opts.suites.clone()
    };
    let plan = if opts.static_only {
        plan::build(root, &opts.machine, &suites, opts.filter.as_deref())?
    } else {
        let given = plan::Given {
            vars: opts.run.vars.clone(),
            image: opts.image.is_some(),
        };
        plan::build_for(root, &opts.machine, &suites, opts.filter.as_deref(), &given)?
    };
    Ok((machine, suites, plan))
}

/// The image checked and booted.
struct Image {
    /// The raw image.
    raw: PathBuf,
    /// As given (a packed image's own path).
    shown: PathBuf,
    /// The folder it was unpacked into, removed when this is dropped (it may hold the
    /// image's secrets).
    unpacked: Option<PathBuf>,
}

impl Drop for Image {
    fn drop(&mut self) {
        if let Some(dir) = &self.unpacked {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The image to check and boot: the one given (a packed one unpacked under `dir`), else the
/// machine's reference image (built once, cached).
fn image(
    root: &Path,
    machine: &Machine,
    given: Option<&Path>,
    dir: &Path,
    ui: &dyn Ui,
) -> Result<Image> {
    if let Some(path) = given {
        if Packing::of(path) == Packing::Raw {
            return Ok(Image {
                raw: path.to_path_buf(),
                shown: path.to_path_buf(),
                unpacked: None,
            });
        }
        ui.line(&format!("unpacking {}", path.display()));
        let into = dir.join("image");
        // Made before the unpacking, so that a failed one is cleaned up too.
        let mut image = Image {
            raw: PathBuf::new(),
            shown: path.to_path_buf(),
            unpacked: Some(into.clone()),
        };
        image.raw = crate::image::unpack_to(path, &into)?;
        return Ok(image);
    }
    let Some(recipe) = &machine.reference_image else {
        return Err(Error::input(format!(
            "machine `{}` has no default image; give one with --image",
            machine.name
        )));
    };
    let raw = crate::reference::build(root, recipe, &mut |l| ui.line(l))?.image_path();
    Ok(Image {
        shown: raw.clone(),
        raw,
        unpacked: None,
    })
}

/// The options a `harness run` of the same machine, image and suites gets; it goes on after
/// a failure (a porting report wants every row).
fn run_options(opts: &PortOptions, suites: &[String], image: &Image, dir: &Path) -> RunOptions {
    let mut r = opts.run.clone();
    match &opts.rig {
        Some(rig) => r.rigs = vec![rig.clone()],
        None => {
            r.machines = vec![opts.machine.clone()];
            r.parallel = r.parallel.max(1);
        }
    }
    r.suites = suites.to_vec();
    // Without --image the runner boots the reference image itself, with its variables.
    r.image = opts.image.as_ref().map(|_| image.raw.clone());
    r.out = Some(dir.join("run"));
    r.filter = opts.filter.clone();
    r.keep_going = true;
    if r.lease_wait.is_zero() {
        r.lease_wait = Duration::from_secs(1800);
    }
    r
}

/// Writes `porting.json` and `porting.html` into `dir`.
fn write(dir: &Path, report: &Report) -> Result<()> {
    let json =
        serde_json::to_string_pretty(report).infra_ctx(|| "cannot render porting.json".into())?;
    crate::report::write_atomic(&dir.join("porting.json"), json.as_bytes())?;
    crate::report::write_atomic(&dir.join("porting.html"), page::render(report).as_bytes())
}
