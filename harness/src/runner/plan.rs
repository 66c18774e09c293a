//! From the command line and the YAML files to a validated plan: everything is checked
//! before a device is touched, so bad input fails in milliseconds with exit 2, with one line
//! naming the file (and line and column where known) and the problem.
//!
//! [`build`] checks what the files alone decide: every test has steps, every pattern
//! compiles, every check exists and gets the arguments its code reads, every `copy` has a
//! shape the runner knows, `save` names are variable names, and `--filter` selects a test.
//! [`build_for`] adds what depends on the run: every `{{variable}}` a step sends is set by
//! then (the runner's own, the reference image's, `--var`, the suite's `vars`, or a `save:`
//! earlier on the same device), and every `copy` source exists.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;

use regex::Regex;

use super::checks;
use crate::config::machine::{self, Machine};
use crate::config::suite::{self, Step, Suite};
use crate::error::{Error, Result};

/// A suite and the names of its tests that the filter selects.
#[derive(Debug, Clone)]
pub struct PlannedSuite {
    /// The suite.
    pub suite: Suite,
    /// Whether each test (in order) is selected by `--filter`.
    pub selected: Vec<bool>,
}

/// What a run will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The machine type.
    pub machine: Machine,
    /// The suites in order.
    pub suites: Vec<PlannedSuite>,
}

/// Loads and checks `machine` and the `suites` (filtered by `filter`, a regex over
/// `suite/test`): everything the files alone decide. [`build_for`] checks the variables too.
pub fn build(root: &Path, machine: &str, suites: &[String], filter: Option<&str>) -> Result<Plan> {
    let machine = machine::load(root, machine)?;
    let filter = filter
        .map(|f| Regex::new(f).map_err(|e| Error::input(format!("invalid --filter /{f}/: {e}"))))
        .transpose()?;
    if suites.is_empty() {
        return Err(Error::input(
            "no suite given (e.g. `harness run --machine qemux86-64 suite/smoke`)",
        ));
    }
    let mut planned = Vec::new();
    for spec in suites {
        let dir = suite::resolve(root, spec)?;
        let suite = suite::load(&dir)?;
        check_suite(&suite)?;
        let selected = suite
            .tests
            .iter()
            .map(|(name, _)| {
                filter
                    .as_ref()
                    .is_none_or(|f| f.is_match(&format!("{}/{name}", suite.name)))
            })
            .collect();
        planned.push(PlannedSuite { suite, selected });
    }
    if let Some(f) = &filter {
        if !planned.iter().any(|p| p.selected.contains(&true)) {
            let all: Vec<String> = planned
                .iter()
                .flat_map(|p| {
                    p.suite
                        .tests
                        .iter()
                        .map(move |(t, _)| format!("{}/{t}", p.suite.name))
                })
                .collect();
            return Err(Error::input(format!(
                "--filter /{f}/ selects no test (it is matched against `suite/test`: {})",
                abbreviate(&all, 12)
            )));
        }
    }
    Ok(Plan {
        machine,
        suites: planned,
    })
}

/// What sets `{{variables}}` for a run besides the suites: `--var` and whether the run boots
/// its own image (`--image`) rather than the machine's reference image.
#[derive(Debug, Clone, Default)]
pub struct Given {
    /// `--var NAME=VALUE`, in order (a later one wins).
    pub vars: Vec<(String, String)>,
    /// The run boots `--image`, so the reference image's variables are not set.
    pub image: bool,
}

impl Given {
    /// What `opts` set.
    pub fn of(opts: &super::RunOptions) -> Given {
        Given {
            vars: opts.vars.clone(),
            image: opts.image.is_some(),
        }
    }
}

/// [`build`], then the checks that depend on the run: `{{variables}}` and `copy` sources.
pub fn build_for(
    root: &Path,
    machine: &str,
    suites: &[String],
    filter: Option<&str>,
    given: &Given,
) -> Result<Plan> {
    let plan = build(root, machine, suites, filter)?;
    check_vars(&plan, given)?;
    Ok(plan)
}

/// Variables the runner sets for every test (`worker::run_jobs`; `host_time`, the host's
/// clock when a step is sent, `Dut::expand`).
pub const RUNNER_VARS: &[&str] = &["slug", "machine", "host_ip", "host_time"];

/// Variables the reference image sets (`media::prepare`), for a run without `--image`.
pub const REFERENCE_VARS: &[&str] = &[
    "base_version",
    "update_file",
    "update_version",
    "update_file_no_health",
];

/// `{{...}}` texts that are Go template keywords (`balena-engine ... --format`), left alone
/// when no variable has their name.
const TEMPLATE_WORDS: &[&str] = &["end", "else", "break", "continue", "nil"];

/// `{{name}}`: what the runner replaces with a variable's value.
static VAR_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\{\{([A-Za-z_][A-Za-z0-9_-]*)\}\}").expect("a valid regex"));

/// A name that can be written as `{{name}}`.
static VAR_NAME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[A-Za-z_][A-Za-z0-9_-]*$").expect("a valid regex"));

fn is_var_name(name: &str) -> bool {
    VAR_NAME.is_match(name)
}

const VAR_NAME_RULE: &str = "letters, digits, `_` and `-`, not starting with a digit";

/// The variables `text` refers to, in order.
fn refs(text: &str) -> Vec<String> {
    VAR_REF
        .captures_iter(text)
        .map(|c| c[1].to_string())
        .collect()
}

/// Every string inside a JSON value.
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|v| json_strings(v, out)),
        serde_json::Value::Object(o) => o.values().for_each(|v| json_strings(v, out)),
        _ => {}
    }
}

/// The texts of `step` that the runner fills `{{variables}}` into before using them.
fn expanded(step: &Step) -> Vec<String> {
    let mut out = Vec::new();
    match step {
        Step::Ssh(s) | Step::WaitFor(s) => {
            out.push(s.run.clone());
            out.extend(s.output.iter().chain(s.not_output.iter()).cloned());
        }
        Step::Console(c) => out.extend(
            [&c.send, &c.run, &c.expect, &c.absent]
                .into_iter()
                .flatten()
                .cloned(),
        ),
        Step::Copy(c) => {
            out.extend(c.from.iter().map(|p| p.to_string_lossy().into_owned()));
            out.extend(c.to_device.iter().chain(c.from_device.iter()).cloned());
        }
        Step::Check(c) => c.args.values().for_each(|v| json_strings(v, &mut out)),
        Step::Reboot(_) | Step::PowerCycle(_) | Step::Configure(_) => {}
    }
    out
}

/// The texts of `step` that reach the device as written, `{{...}}` and all.
fn literal(step: &Step) -> Vec<String> {
    let mut out = Vec::new();
    if let Step::Configure(c) = step {
        c.set.values().for_each(|v| json_strings(v, &mut out));
        out.extend(c.set.keys().cloned());
        out.extend(c.remove.iter().cloned());
        out.extend(c.files.iter().flat_map(|(k, v)| [k.clone(), v.clone()]));
    }
    out
}

/// The steps of a file with where each is written, and how to name one in an error.
struct Steps<'a> {
    steps: &'a [Step],
    source: &'a suite::Source,
    /// `step` or `setup step`.
    what: &'static str,
}

impl Steps<'_> {
    fn at(&self, i: usize) -> String {
        format!("{}: {} {}", self.source.step(i), self.what, i + 1)
    }
}

/// The setup files of `suite` with their steps (`suite.setup` is them one after the other).
fn setup_files(suite: &Suite) -> Vec<Steps<'_>> {
    let mut out = Vec::new();
    let mut from = 0;
    for source in &suite.setup_sources {
        let end = (from + source.steps.len()).min(suite.setup.len());
        out.push(Steps {
            steps: &suite.setup[from..end],
            source,
            what: "setup step",
        });
        from = end;
    }
    out
}

/// Rejects what the YAML types cannot: empty tests, unknown checks and arguments, bad
/// regexes, copies of no known shape, `save` where nothing is saved, `{{...}}` where it is
/// not filled in.
fn check_suite(suite: &Suite) -> Result<()> {
    if suite.tests.is_empty() {
        return Err(Error::input(format!(
            "{}: suite `{}` has no tests",
            suite.suite_yaml().display(),
            suite.name
        )));
    }
    for key in suite.file.vars.keys() {
        if !is_var_name(key) {
            return Err(Error::input(format!(
                "{}: vars: `{key}` is not a variable name ({VAR_NAME_RULE})",
                suite.place(&format!("vars.{key}"))
            )));
        }
    }
    let config = suite.file.config.iter().map(|(k, v)| {
        let mut texts = vec![k.clone()];
        json_strings(v, &mut texts);
        (format!("config.{k}"), texts)
    });
    let files = suite
        .file
        .files
        .iter()
        .map(|(k, v)| (format!("files.{k}"), vec![k.clone(), v.clone()]));
    for (key, texts) in config.chain(files) {
        if let Some(name) = texts
            .iter()
            .flat_map(|t| refs(t))
            .find(|n| !is_template_word(n))
        {
            return Err(Error::input(format!(
                "{}: {key}: `{{{{{name}}}}}` would reach the device as written: variables are not filled in here (only in ssh, wait_for, console, copy and check steps)",
                suite.place(&key)
            )));
        }
    }
    let development = suite.file.config.get("developmentMode") == Some(&serde_json::json!(true));
    for ((_, test), source) in suite.tests.iter().zip(&suite.sources) {
        if !test.ssh_key && !development {
            return Err(Error::input(format!(
                "{}: ssh_key: false needs developmentMode: true in the suite's config ({}): balenaOS allows a password-less root login only in development mode",
                source.path.display(),
                suite.suite_yaml().display()
            )));
        }
    }
    for (steps, source) in suite
        .tests
        .iter()
        .map(|(_, t)| &t.steps)
        .zip(&suite.sources)
    {
        let file = Steps {
            steps,
            source,
            what: "step",
        };
        if steps.is_empty() {
            return Err(Error::input(format!(
                "{}: the test has no steps; it would pass without checking anything",
                source.path.display()
            )));
        }
        check_steps(&file)?;
    }
    for file in setup_files(suite) {
        if file.steps.is_empty() {
            return Err(Error::input(format!(
                "{}: the setup file has no steps",
                file.source.path.display()
            )));
        }
        check_steps(&file)?;
    }
    Ok(())
}

fn is_template_word(name: &str) -> bool {
    TEMPLATE_WORDS.contains(&name)
}

fn check_steps(file: &Steps) -> Result<()> {
    for (i, step) in file.steps.iter().enumerate() {
        let at = || file.at(i);
        let patterns: Vec<&String> = match step {
            Step::Ssh(s) | Step::WaitFor(s) => s.output.iter().chain(s.not_output.iter()).collect(),
            Step::Console(c) => c.expect.iter().chain(c.absent.iter()).collect(),
            _ => vec![],
        };
        for p in patterns {
            // `{{var}}` placeholders are filled in at run time; check the rest.
            let probe = p.replace("{{", "").replace("}}", "");
            Regex::new(&probe)
                .map_err(|e| Error::input(format!("{}: invalid pattern /{p}/: {e}", at())))?;
        }
        match step {
            Step::Check(c) => {
                checks::check_args(&c.name, &c.args)
                    .map_err(|e| Error::input(format!("{}: {e}", at())))?;
            }
            Step::Copy(c) => match (&c.from, &c.to_device, &c.from_device) {
                (Some(_), Some(_), None) | (None, None, Some(_)) => {}
                _ => {
                    return Err(Error::input(format!(
                        "{}: a copy step takes either `from` and `to_device`, or `from_device`",
                        at()
                    )))
                }
            },
            Step::WaitFor(s) if s.save.is_some() => {
                return Err(Error::input(format!(
                    "{}: wait_for does not save its output; save it with an ssh step after it",
                    at()
                )))
            }
            Step::Ssh(s) if s.save.is_some() && s.without_key => {
                return Err(Error::input(format!(
                    "{}: an ssh step with `without_key` does not save its output",
                    at()
                )))
            }
            Step::Ssh(s) => {
                if let Some(name) = s.save.as_ref().filter(|n| !is_var_name(n)) {
                    return Err(Error::input(format!(
                        "{}: `save: {name}` is not a variable name ({VAR_NAME_RULE})",
                        at()
                    )));
                }
            }
            _ => {}
        }
        if let Some(name) = literal(step)
            .iter()
            .flat_map(|t| refs(t))
            .find(|n| !is_template_word(n))
        {
            return Err(Error::input(format!(
                "{}: `{{{{{name}}}}}` would reach the device as written: a configure step does not fill in variables (only ssh, wait_for, console, copy and check steps do)",
                at()
            )));
        }
    }
    Ok(())
}

/// A variable's value as far as the plan knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    /// Known before the run: `--var`, the machine's names, a suite var made of those.
    Known(String),
    /// Known only once the run is under way (a `save:`, the reference image's, `host_ip`).
    Later,
}

type Vars = BTreeMap<String, Value>;

/// Fills the known variables into `text`, as the runner will; `None` when one is known only
/// at run time.
fn fill(text: &str, vars: &Vars) -> Option<String> {
    let mut out = text.to_string();
    for name in refs(text) {
        match vars.get(&name) {
            Some(Value::Known(v)) => out = out.replace(&format!("{{{{{name}}}}}"), v),
            Some(Value::Later) => return None,
            None => {}
        }
    }
    Some(out)
}

/// Checks every `{{variable}}` the run will send and every `copy` source, test by test as the
/// runner strings them together on one device.
fn check_vars(plan: &Plan, given: &Given) -> Result<()> {
    let mut base = Vars::new();
    for name in RUNNER_VARS {
        let value = match *name {
            "slug" => Value::Known(plan.machine.slug.clone()),
            "machine" => Value::Known(plan.machine.name.clone()),
            _ => Value::Later,
        };
        base.insert(name.to_string(), value);
    }
    if !given.image {
        for name in REFERENCE_VARS {
            base.insert(name.to_string(), Value::Later);
        }
    }
    for (name, value) in &given.vars {
        if !is_var_name(name) {
            return Err(Error::input(format!(
                "--var {name}={value}: `{name}` is not a variable name ({VAR_NAME_RULE})"
            )));
        }
        base.insert(name.clone(), Value::Known(value.clone()));
    }
    let chains = super::chains::chains(plan);
    for (s, planned) in plan.suites.iter().enumerate() {
        let suite = &planned.suite;
        let ctx = Context {
            planned,
            given,
            base: &base,
        };
        // The suite's vars, set in name order before each of its chains.
        let mut vars = base.clone();
        for (key, value) in &suite.file.vars {
            if let Some(name) = unset(value, &vars) {
                return Err(Error::input(format!(
                    "{}: vars.{key}: `{{{{{name}}}}}` is not set: {}",
                    suite.place(&format!("vars.{key}")),
                    ctx.why_unset(&name, None, &vars)
                )));
            }
            let v = fill(value, &vars).map_or(Value::Later, Value::Known);
            vars.insert(key.clone(), v);
        }
        // Setup runs after each fresh boot; what it saves lasts for the rest of the setup.
        let mut setup_vars = vars.clone();
        for file in setup_files(suite) {
            ctx.check_file(&file, &mut setup_vars, None)?;
        }
        for chain in chains.iter().filter(|c| c.suite == s) {
            let mut on_device = vars.clone();
            for &t in &chain.tests {
                let file = Steps {
                    steps: &suite.tests[t].1.steps,
                    source: &suite.sources[t],
                    what: "step",
                };
                let here = Here {
                    test: t,
                    chain_first: chain.tests[0],
                };
                ctx.check_file(&file, &mut on_device, Some(here))?;
            }
        }
    }
    Ok(())
}

/// The first variable `text` refers to that `vars` lacks (Go template words aside).
fn unset(text: &str, vars: &Vars) -> Option<String> {
    refs(text)
        .into_iter()
        .find(|n| !vars.contains_key(n) && !is_template_word(n))
}

/// Which test is being checked: its index, and the index of its chain's first test.
#[derive(Clone, Copy)]
struct Here {
    test: usize,
    chain_first: usize,
}

struct Context<'a> {
    planned: &'a PlannedSuite,
    given: &'a Given,
    base: &'a Vars,
}

impl Context<'_> {
    /// Checks one file's steps in order against `vars`, adding what they save.
    fn check_file(&self, file: &Steps, vars: &mut Vars, here: Option<Here>) -> Result<()> {
        let suite = &self.planned.suite;
        for (i, step) in file.steps.iter().enumerate() {
            for text in expanded(step) {
                if let Some(name) = unset(&text, vars) {
                    let why = self.why_unset(&name, here.map(|h| (h, i)), vars);
                    return Err(Error::input(format!(
                        "{}: `{{{{{name}}}}}` is not set: {why}",
                        file.at(i)
                    )));
                }
            }
            match step {
                Step::Ssh(s) => {
                    if let Some(name) = &s.save {
                        vars.insert(name.clone(), Value::Later);
                    }
                }
                Step::Copy(c) => {
                    let Some(from) = &c.from else { continue };
                    let raw = from.to_string_lossy();
                    // The runner reads it relative to the running suite's folder.
                    if let Some(filled) = fill(&raw, vars) {
                        let path = suite.dir.join(&filled);
                        if !path.is_file() {
                            let what = if path.exists() {
                                "is not a file"
                            } else {
                                "does not exist"
                            };
                            return Err(Error::input(format!(
                                "{}: copy from `{raw}`: {} {what}",
                                file.at(i),
                                shown(&path).display()
                            )));
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Why `name` is not set at step `step` of the test `here` (`None`: in setup or the
    /// suite's vars), and how to set it.
    fn why_unset(&self, name: &str, at: Option<(Here, usize)>, vars: &Vars) -> String {
        let suite = &self.planned.suite;
        let saves = |steps: &[Step]| -> Vec<usize> {
            steps
                .iter()
                .enumerate()
                .filter(|(_, s)| matches!(s, Step::Ssh(s) if s.save.as_deref() == Some(name)))
                .map(|(i, _)| i)
                .collect()
        };
        if let Some((here, step)) = at {
            let own = saves(&suite.tests[here.test].1.steps);
            if let Some(j) = own.iter().find(|&&j| j > step) {
                return format!("it is saved only by step {}, after this one", j + 1);
            }
            for (t, (test_name, test)) in suite.tests.iter().enumerate() {
                if t == here.test || saves(&test.steps).is_empty() {
                    continue;
                }
                if t > here.test {
                    return format!(
                        "it is saved only by test `{test_name}`, which runs after this one"
                    );
                }
                if !self.planned.selected[t] {
                    return format!(
                        "it is saved by test `{test_name}`, which --filter leaves out of this run"
                    );
                }
                if suite.file.independent {
                    return format!("it is saved by test `{test_name}`, but the suite is `independent`: each test starts from the suite's boot without the others' saves");
                }
                let (first, first_test) = &suite.tests[here.chain_first];
                let why = if first_test.fresh {
                    "(`fresh: true`) starts a new device after it"
                } else if !first_test.ssh_key {
                    "(`ssh_key: false`) starts a new device without the run's key after it"
                } else {
                    "starts a new device after it (the test before it ran without the run's key, `ssh_key: false`)"
                };
                return format!("it is saved by test `{test_name}`, but test `{first}` {why}, without its saves");
            }
            if suite
                .setup
                .iter()
                .any(|s| matches!(s, Step::Ssh(s) if s.save.as_deref() == Some(name)))
            {
                return "it is saved by a setup step, and tests do not see setup's saves (setup runs only after a fresh boot)".into();
            }
        }
        if suite.file.vars.contains_key(name) {
            return format!(
                "the suite's vars set `{name}` after this one (they are set in name order)"
            );
        }
        if self.given.image && REFERENCE_VARS.contains(&name) && !self.base.contains_key(name) {
            return format!(
                "the reference image sets it, but this run boots --image: give --var {name}=VALUE"
            );
        }
        let known: Vec<String> = vars.keys().cloned().collect();
        format!(
            "nothing sets it (give --var {name}=VALUE, set it in the suite's vars, or save it in an earlier step; set here: {})",
            abbreviate(&known, 20)
        )
    }
}

/// `path`, relative to the working folder when it is under it.
fn shown(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir().map_or(path.to_path_buf(), |d| d.join(path))
    };
    // Make `suites/x/../y` readable without touching the file system.
    let mut out = PathBuf::new();
    for c in abs.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The first `n` of `items`, and how many more.
fn abbreviate(items: &[String], n: usize) -> String {
    if items.is_empty() {
        return "none".into();
    }
    let mut out = items.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if items.len() > n {
        out.push_str(&format!(" and {} more", items.len() - n));
    }
    out
}

/// The run's folder: `out`, or `reports/<UTC date-time>-<target>` under the project.
pub fn run_dir(root: &Path, out: Option<&Path>, target: &str) -> PathBuf {
    match out {
        Some(o) => o.to_path_buf(),
        None => root
            .join("reports")
            .join(format!("{}-{target}", utc_stamp())),
    }
}

/// `YYYYMMDD-HHMMSS` in UTC, now.
pub fn utc_stamp() -> String {
    crate::clock::utc(crate::clock::now_unix()).stamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamp_has_date_and_time() {
        let s = utc_stamp();
        assert_eq!(s.len(), 15);
        assert!(s.starts_with("20"));
    }

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    /// The repository's suites, by folder name.
    fn repo_suites() -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(root().join("suites"))
            .unwrap()
            .flatten()
            .filter(|e| e.path().join("suite.yaml").is_file())
            .map(|e| format!("suite/{}", e.file_name().to_string_lossy()))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn every_suite_of_the_repository_passes_on_the_reference_image() {
        let suites = repo_suites();
        assert!(suites.len() >= 7, "{suites:?}");
        for s in &suites {
            // As suites_e2e runs them: the reference image, no --var.
            build_for(
                &root(),
                "qemux86-64",
                std::slice::from_ref(s),
                None,
                &Given::default(),
            )
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        // All at once, as farm runs do, and each of their tests alone.
        let plan = build_for(&root(), "qemux86-64", &suites, None, &Given::default()).unwrap();
        for p in &plan.suites {
            for (t, _) in &p.suite.tests {
                let only = format!("^{}/{t}$", p.suite.name);
                let s = format!("suite/{}", p.suite.name);
                build_for(&root(), "qemux86-64", &[s], Some(&only), &Given::default())
                    .unwrap_or_else(|e| panic!("{only}: {e}"));
            }
        }
    }

    #[test]
    fn every_suite_of_the_repository_passes_on_a_real_image_with_its_vars() {
        let dir = tempfile::tempdir().unwrap();
        let payload = dir.path().join("hostapp.tar");
        std::fs::write(&payload, b"payload").unwrap();
        let payload = payload.display().to_string();
        // As the README runs suite/hup on a real balenaOS image.
        let given = Given {
            vars: vec![
                ("update_file".into(), payload.clone()),
                ("update_version".into(), "6.0.14".into()),
                ("base_version".into(), "6.0.13".into()),
                ("update_file_no_health".into(), payload),
            ],
            image: true,
        };
        for s in repo_suites() {
            build_for(
                &root(),
                "qemux86-64",
                std::slice::from_ref(&s),
                None,
                &given,
            )
            .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        // Without them, suite/hup says which one is missing.
        let bare = Given {
            vars: vec![],
            image: true,
        };
        let err = build_for(&root(), "qemux86-64", &["suite/hup".into()], None, &bare)
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("update.yaml:5:5: step 1: `{{base_version}}` is not set: the reference image sets it, but this run boots --image: give --var base_version=VALUE"),
            "{err}"
        );
    }

    /// The variable lists above name what the runner sets, no more and no less.
    #[test]
    fn built_in_variables_are_those_the_runner_and_the_image_set() {
        let set = |source: &str| -> Vec<String> {
            let re = Regex::new(r#"vars\s*\.insert\(\s*"([a-z_]+)""#).unwrap();
            let mut names: Vec<String> =
                re.captures_iter(source).map(|c| c[1].to_string()).collect();
            names.sort();
            names
        };
        let sorted = |names: &[&str]| {
            let mut v: Vec<String> = names.iter().map(|n| n.to_string()).collect();
            v.sort();
            v
        };
        let runner = [include_str!("farm/worker.rs"), include_str!("exec/dut.rs")].concat();
        assert_eq!(set(&runner), sorted(RUNNER_VARS));
        assert_eq!(set(include_str!("media.rs")), sorted(REFERENCE_VARS));
    }

    /// A suite in a temp folder: `suite.yaml` and `(file, text)` pairs.
    fn suite(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, text) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn plan(dir: &tempfile::TempDir, filter: Option<&str>, given: &Given) -> Result<Plan> {
        let spec = dir.path().display().to_string();
        build_for(&root(), "qemux86-64", &[spec], filter, given)
    }

    fn err(dir: &tempfile::TempDir, filter: Option<&str>, given: &Given) -> String {
        let e = plan(dir, filter, given).unwrap_err();
        assert!(matches!(e, Error::Input(_)), "{e:?}");
        let e = e.to_string();
        assert_eq!(e.lines().count(), 1, "{e}");
        e
    }

    const SUITE: &str = "description: s\ntests: [a, b]\n";

    #[test]
    fn a_save_carries_over_to_later_steps_and_tests_on_the_same_device() {
        let dir = suite(&[
            ("suite.yaml", SUITE),
            (
                "a.yaml",
                "description: a\nsteps:\n  - ssh: {run: uname, save: kernel}\n  - ssh: {run: 'echo {{kernel}}', output: '^{{kernel}}$'}\n",
            ),
            ("b.yaml", "description: b\nsteps:\n  - ssh: {run: 'test {{kernel}} = Linux'}\n"),
        ]);
        plan(&dir, None, &Given::default()).unwrap();
        // Without `a`, nothing saves it before `b`.
        let e = err(&dir, Some("/b$"), &Given::default());
        assert!(e.contains("b.yaml:3:5: step 1: `{{kernel}}` is not set: it is saved by test `a`, which --filter leaves out of this run"), "{e}");
    }

    #[test]
    fn a_fresh_test_or_an_independent_suite_does_not_see_earlier_saves() {
        let a = "description: a\nsteps:\n  - ssh: {run: uname, save: kernel}\n";
        let b = "description: b\nfresh: true\nsteps:\n  - ssh: {run: 'test {{kernel}} = Linux'}\n";
        let dir = suite(&[("suite.yaml", SUITE), ("a.yaml", a), ("b.yaml", b)]);
        let e = err(&dir, None, &Given::default());
        assert!(e.contains("it is saved by test `a`, but test `b` (`fresh: true`) starts a new device after it"), "{e}");
        let b = b.replace("fresh: true\n", "");
        let independent = "description: s\nindependent: true\ntests: [a, b]\n";
        let dir = suite(&[("suite.yaml", independent), ("a.yaml", a), ("b.yaml", &b)]);
        let e = err(&dir, None, &Given::default());
        assert!(e.contains("but the suite is `independent`"), "{e}");
    }

    #[test]
    fn ssh_key_false_needs_development_mode() {
        let a = "description: a\nssh_key: false\nsteps:\n  - ssh: {run: 'true'}\n";
        for config in ["", "config: {developmentMode: false}\n"] {
            let dir = suite(&[
                (
                    "suite.yaml",
                    &format!("description: s\n{config}tests: [a]\n"),
                ),
                ("a.yaml", a),
            ]);
            let e = err(&dir, None, &Given::default());
            assert!(
                e.contains(
                    "a.yaml: ssh_key: false needs developmentMode: true in the suite's config"
                ),
                "{e}"
            );
        }
        let dir = suite(&[
            (
                "suite.yaml",
                "description: s\nconfig: {developmentMode: true}\ntests: [a]\n",
            ),
            ("a.yaml", a),
        ]);
        let plan = plan(&dir, None, &Given::default()).unwrap();
        let test = &plan.suites[0].suite.tests[0].1;
        assert!(!test.ssh_key && test.starts_device());
    }

    #[test]
    fn a_test_after_one_without_the_key_does_not_see_its_saves() {
        let dev = "description: s\nconfig: {developmentMode: true}\ntests: [a, b, c]\n";
        let a = "description: a\nssh_key: false\nsteps:\n  - ssh: {run: uname, save: kernel}\n";
        let b = "description: b\nsteps:\n  - ssh: {run: 'test {{kernel}} = Linux'}\n";
        let dir = suite(&[
            ("suite.yaml", dev),
            ("a.yaml", a),
            ("b.yaml", b),
            ("c.yaml", b),
        ]);
        let e = err(&dir, None, &Given::default());
        assert!(e.contains("but test `b` starts a new device after it (the test before it ran without the run's key"), "{e}");
        let a = a.replace("ssh_key: false\n", "");
        let b =
            "description: b\nssh_key: false\nsteps:\n  - ssh: {run: 'test {{kernel}} = Linux'}\n";
        let dir = suite(&[
            ("suite.yaml", dev),
            ("a.yaml", &a),
            ("b.yaml", b),
            ("c.yaml", "description: c\nsteps:\n  - ssh: {run: 'true'}\n"),
        ]);
        let e = err(&dir, None, &Given::default());
        assert!(
            e.contains("but test `b` (`ssh_key: false`) starts a new device without the run's key"),
            "{e}"
        );
    }

    #[test]
    fn a_variable_used_before_its_save_or_after_only_in_setup_is_refused() {
        let dir = suite(&[
            ("suite.yaml", "description: s\nsetup: [setup.yaml]\ntests: [a]\n"),
            ("setup.yaml", "description: s\nsteps:\n  - ssh: {run: cat /etc/machine-id, save: id}\n  - ssh: {run: 'echo {{id}}'}\n"),
            ("a.yaml", "description: a\nsteps:\n  - ssh: {run: 'echo {{late}}'}\n  - ssh: {run: uname, save: late}\n"),
        ]);
        let e = err(&dir, None, &Given::default());
        assert!(e.ends_with("a.yaml:3:5: step 1: `{{late}}` is not set: it is saved only by step 2, after this one"), "{e}");
        std::fs::write(
            dir.path().join("a.yaml"),
            "description: a\nsteps:\n  - ssh: {run: 'echo {{id}}'}\n",
        )
        .unwrap();
        let e = err(&dir, None, &Given::default());
        assert!(
            e.contains("`{{id}}` is not set: it is saved by a setup step, and tests do not see"),
            "{e}"
        );
    }

    #[test]
    fn suite_vars_and_var_values_are_filled_in_name_order() {
        let dir = suite(&[
            (
                "suite.yaml",
                "description: s\nvars: {a_dir: '{{root}}/x', b_file: '{{a_dir}}/f'}\ntests: [a]\n",
            ),
            (
                "a.yaml",
                "description: a\nsteps:\n  - copy: {from: '{{b_file}}', to_device: /tmp/f}\n",
            ),
        ]);
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("x")).unwrap();
        let given = Given {
            vars: vec![("root".into(), root.path().display().to_string())],
            image: false,
        };
        let e = err(&dir, None, &given);
        assert!(e.contains("step 1: copy from `{{b_file}}`: "), "{e}");
        assert!(e.ends_with("/x/f does not exist"), "{e}");
        std::fs::write(root.path().join("x/f"), "f").unwrap();
        plan(&dir, None, &given).unwrap();
        // A suite var that refers to one set after it (in name order) is refused.
        std::fs::write(
            dir.path().join("suite.yaml"),
            "description: s\nvars: {a_file: '{{b_dir}}/f', b_dir: '{{root}}/x'}\ntests: [a]\n",
        )
        .unwrap();
        let e = err(&dir, None, &given);
        assert!(e.ends_with("suite.yaml:2:16: vars.a_file: `{{b_dir}}` is not set: the suite's vars set `b_dir` after this one (they are set in name order)"), "{e}");
    }

    #[test]
    fn go_templates_are_not_variables_and_configure_does_not_fill_in() {
        let dir = suite(&[
            ("suite.yaml", "description: s\ntests: [a]\n"),
            ("a.yaml", "description: a\nsteps:\n  - ssh: {run: \"balena-engine info -f '{{.Driver}}{{range .X}}{{end}}'\"}\n"),
        ]);
        plan(&dir, None, &Given::default()).unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "description: a\nsteps:\n  - configure: {set: {hostname: '{{slug}}'}}\n",
        )
        .unwrap();
        let e = err(&dir, None, &Given::default());
        assert!(
            e.contains("a.yaml:3:5: step 1: `{{slug}}` would reach the device as written"),
            "{e}"
        );
    }

    #[test]
    fn bad_save_names_and_saves_that_save_nothing_are_refused() {
        for (step, want) in [
            (
                "ssh: {run: uname, save: 'my kernel'}",
                "`save: my kernel` is not a variable name",
            ),
            (
                "wait_for: {run: uname, save: kernel}",
                "wait_for does not save its output",
            ),
            (
                "ssh: {run: uname, without_key: true, save: kernel}",
                "`without_key` does not save",
            ),
        ] {
            let dir = suite(&[
                ("suite.yaml", "description: s\ntests: [a]\n"),
                ("a.yaml", &format!("description: a\nsteps:\n  - {step}\n")),
            ]);
            let e = err(&dir, None, &Given::default());
            assert!(e.contains(want), "{e}");
        }
        let dir = suite(&[
            ("suite.yaml", "description: s\ntests: [a]\n"),
            ("a.yaml", "description: a\nsteps:\n  - ssh: {run: uname}\n"),
        ]);
        let given = Given {
            vars: vec![("a b".into(), "1".into())],
            image: false,
        };
        assert!(err(&dir, None, &given).starts_with("--var a b=1: `a b` is not a variable name"));
    }
}
