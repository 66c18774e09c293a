//! A suite (`suites/NAME/`): a `suite.yaml` plus one YAML file per test, each a list of steps.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::{Context, Error, Result};

/// `suite.yaml`: what the suite needs from the device before its first test.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuiteFile {
    /// One line for `harness suites`.
    pub description: String,
    /// Keys merged into the image's `config.json` before boot (dotted keys allowed).
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    /// Files written into the boot partition before boot (path → content), e.g.
    /// `system-connections/static`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// Test files (paths relative to the suite folder) whose steps run after every fresh boot
    /// of this suite, before its tests: how a negative suite injects a fault that must
    /// survive the `fresh` devices of the tests it runs.
    #[serde(default)]
    pub setup: Vec<String>,
    /// Suite variables set before its first test (`{{name}}` in the values is expanded), e.g.
    /// a negative suite pointing `update_file` at a broken payload.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Boot a fresh copy of the image for this suite (the default), or keep the device as the
    /// previous suite left it.
    #[serde(default = "yes")]
    pub fresh: bool,
    /// Its tests depend only on the suite's boot, not on one another: a run with several
    /// targets shares them out one by one, and a test that leaves `config.json` changed sends
    /// the next one to a fresh device. Otherwise tests that follow one another share a device
    /// and go to one target together, split only where a test wants a `fresh` one.
    #[serde(default)]
    pub independent: bool,
    /// Fresh devices of this suite may be restored from a snapshot of a freshly booted one
    /// (the default; see `runner::snapshots`). `false` for a suite whose subject is the boot
    /// itself: each of its fresh devices boots.
    #[serde(default = "yes")]
    pub snapshot: bool,
    /// The tests in the order they run; default: every other `*.yaml` file, sorted by name.
    /// An entry is a test's name, or a path to a test file (relative to the suite folder,
    /// ending in `.yaml`), so a suite can reuse another suite's tests.
    #[serde(default)]
    pub tests: Vec<String>,
    /// `config.json` keys (dotted allowed) whose values are secrets beyond those the harness
    /// knows (`apiKey`, `deviceApiKey`, keys naming a token, secret or password): masked in
    /// every transcript, console log and report.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Multiplies every timeout of the suite's tests and setup steps (each test's and each
    /// step's), as `meson test --timeout-multiplier` does: above 1 for a slow board; below 1
    /// for a negative suite, whose waits are meant to run out and prove nothing more by
    /// running out later. Between 0.1 and 10.
    #[serde(default = "one")]
    pub timeout_multiplier: f64,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

/// One test file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TestFile {
    /// What the test proves, one line.
    pub description: String,
    /// An upper bound for the whole test, in seconds.
    #[serde(default = "default_test_timeout")]
    pub timeout: u64,
    /// Start from a fresh device (a fresh image with the suite's configuration, one boot), for
    /// tests that leave the device changed (an update, a rollback).
    #[serde(default)]
    pub fresh: bool,
    /// Capabilities the target must have (`lan`: the harness is a peer on the DUT's LAN);
    /// a target without them skips the test and says why.
    #[serde(default)]
    pub requires: Vec<Capability>,
    /// `false`: the test runs on a fresh device whose `config.json` has no `os.sshKeys`, and
    /// every login of the test is password-less (root, no key, empty password), as a
    /// development-mode balenaOS allows only without `os.sshKeys`. The device is not reused
    /// by tests that expect the run's key. Needs `developmentMode: true` in the suite's config.
    #[serde(default = "yes")]
    pub ssh_key: bool,
    /// Runs only on the reference image (which has `/usr/lib/balena/reference-image`); on any
    /// other image the test is skipped, saying so.
    #[serde(default)]
    pub reference_only: bool,
    /// The steps, run in order; the first that fails ends the test.
    pub steps: Vec<Step>,
}

impl TestFile {
    /// Whether the test needs a device booted for it alone: `fresh`, or without the run's key.
    pub fn starts_device(&self) -> bool {
        self.fresh || !self.ssh_key
    }

    /// Multiplies the test's timeout and every step's (a suite's `timeout_multiplier`).
    fn scale_timeouts(&mut self, multiplier: f64) {
        self.timeout = scaled(self.timeout, multiplier);
        for step in &mut self.steps {
            let t = step.timeout_mut();
            *t = scaled(*t, multiplier);
        }
    }
}

impl Step {
    /// The step's timeout, in seconds.
    pub fn timeout_mut(&mut self) -> &mut u64 {
        match self {
            Step::Ssh(s) | Step::WaitFor(s) => &mut s.timeout,
            Step::Console(s) => &mut s.timeout,
            Step::Reboot(s) | Step::PowerCycle(s) => &mut s.timeout,
            Step::Configure(s) => &mut s.timeout,
            Step::Copy(s) => &mut s.timeout,
            Step::Check(s) => &mut s.timeout,
        }
    }
}

/// `seconds` times `multiplier`, rounded up, at least 1.
fn scaled(seconds: u64, multiplier: f64) -> u64 {
    ((seconds as f64) * multiplier).ceil().max(1.0) as u64
}

fn default_test_timeout() -> u64 {
    600
}

/// What a test may need from its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Capability {
    /// The harness shares a LAN with the DUT (mDNS, the DUT's own address, a second NIC).
    Lan,
    /// The device can be switched off and on by the harness.
    Power,
}

/// One step of a test. Every wait in a step is bounded by its `timeout` (seconds).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Step {
    /// Runs a shell command over SSH and checks its result.
    Ssh(SshStep),
    /// Talks to the serial console.
    Console(ConsoleStep),
    /// Reboots the device from its own shell and waits for SSH to come back.
    Reboot(RebootStep),
    /// Cuts the power, restores it, and waits for SSH to come back.
    PowerCycle(RebootStep),
    /// Changes `config.json`, on the live device or in the image while it is off.
    Configure(ConfigureStep),
    /// Polls an SSH command until it matches or the deadline passes.
    WaitFor(SshStep),
    /// Copies a file to or from the device.
    Copy(CopyStep),
    /// A check written in Rust, for what YAML cannot say; see `runner::builtin`.
    Check(CheckStep),
}

/// `ssh` and `wait_for`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshStep {
    /// The command, run by the device's shell.
    pub run: String,
    /// The exit status it must have; `any` (null) accepts every status.
    #[serde(default = "zero")]
    pub status: Option<i32>,
    /// A regex stdout must match.
    #[serde(default)]
    pub output: Option<String>,
    /// A regex stdout must not match.
    #[serde(default)]
    pub not_output: Option<String>,
    /// Seconds before the step fails.
    #[serde(default = "default_step_timeout")]
    pub timeout: u64,
    /// Connect without the run's key (to prove passwordless or refused logins).
    #[serde(default)]
    pub without_key: bool,
    /// Expect the login itself to be refused (with `without_key`).
    #[serde(default)]
    pub refused: bool,
    /// Keep the trimmed stdout as `{{name}}` for later steps.
    #[serde(default)]
    pub save: Option<String>,
}

fn zero() -> Option<i32> {
    Some(0)
}

fn default_step_timeout() -> u64 {
    60
}

/// `console`: log in, send text, expect a pattern, or run a command on the console shell.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleStep {
    /// Log in as root first (a development image has a passwordless root getty).
    #[serde(default)]
    pub login: bool,
    /// Text sent to the console (a newline is added).
    #[serde(default)]
    pub send: Option<String>,
    /// A command run on the console shell; its exit status must be `status`.
    #[serde(default)]
    pub run: Option<String>,
    /// The exit status `run` must have.
    #[serde(default = "zero")]
    pub status: Option<i32>,
    /// A regex the console output must show (after `send`/`run`).
    #[serde(default)]
    pub expect: Option<String>,
    /// A regex that must NOT show up within the timeout (e.g. no login prompt).
    #[serde(default)]
    pub absent: Option<String>,
    /// Seconds before the step fails (for `absent`: how long to watch).
    #[serde(default = "default_step_timeout")]
    pub timeout: u64,
}

/// `reboot` and `power_cycle`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RebootStep {
    /// Seconds to wait for SSH after the reboot.
    #[serde(default = "default_boot_timeout")]
    pub timeout: u64,
    /// The device comes back with a new SSH host key (a state reset wipes the keys on
    /// resin-state): the harness pins the new one instead of refusing it.
    #[serde(default)]
    pub new_host_key: bool,
}

fn default_boot_timeout() -> u64 {
    300
}

/// `configure`: set or remove `config.json` keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigureStep {
    /// Keys to set (dotted keys reach into objects).
    #[serde(default)]
    pub set: BTreeMap<String, serde_json::Value>,
    /// Keys to remove.
    #[serde(default)]
    pub remove: Vec<String>,
    /// Files to write into the boot partition (path → content), e.g.
    /// `system-connections/static`.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// `live`: edit `/mnt/boot/config.json` on the running device; `image`: power off, edit
    /// the image, power on and wait for SSH.
    #[serde(default)]
    pub on: ConfigureOn,
    /// Seconds to wait (for the boot, with `image`).
    #[serde(default = "default_boot_timeout")]
    pub timeout: u64,
}

/// Where a `configure` step applies its change.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConfigureOn {
    /// On the running device.
    #[default]
    Live,
    /// In the image, with the device off.
    Image,
}

/// `copy`: one of `to_device` or `from_device`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyStep {
    /// A host file (relative to the suite folder, `{{var}}`s expanded) to send.
    #[serde(default)]
    pub from: Option<PathBuf>,
    /// The device path to write it to.
    #[serde(default)]
    pub to_device: Option<String>,
    /// A device path to fetch into the run's folder.
    #[serde(default)]
    pub from_device: Option<String>,
    /// Seconds before the step fails.
    #[serde(default = "default_step_timeout")]
    pub timeout: u64,
}

/// `check`: a named check written in Rust, with its arguments.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckStep {
    /// The check's name (`harness suites --checks` lists them).
    pub name: String,
    /// Its arguments, as the check documents them.
    #[serde(default)]
    pub args: BTreeMap<String, serde_json::Value>,
    /// Seconds before the step fails.
    #[serde(default = "default_step_timeout")]
    pub timeout: u64,
}

/// A suite read from disk: its folder, its settings, and its tests in order.
#[derive(Debug, Clone)]
pub struct Suite {
    /// The suite's name (its folder's name).
    pub name: String,
    /// Its folder.
    pub dir: PathBuf,
    /// `suite.yaml`.
    pub file: SuiteFile,
    /// `(test name, test)` in run order.
    pub tests: Vec<(String, TestFile)>,
    /// The steps of `setup`, in order.
    pub setup: Vec<Step>,
    /// Where each test (in the order of `tests`) is written.
    pub sources: Vec<Source>,
    /// Where each file of `setup` is written; their steps, one file after the other, are
    /// `setup`.
    pub setup_sources: Vec<Source>,
    /// Where entries of `suite.yaml` are written: `vars.NAME`, `config.KEY`, `files.PATH`,
    /// `setup.N` (from 0).
    pub places: BTreeMap<String, Place>,
}

impl Suite {
    /// `suite.yaml`.
    pub fn suite_yaml(&self) -> PathBuf {
        self.dir.join("suite.yaml")
    }

    /// Where the entry `key` of `suite.yaml` (`vars.NAME`, ...) is written, else the file.
    pub fn place(&self, key: &str) -> Place {
        self.places
            .get(key)
            .cloned()
            .unwrap_or_else(|| Place::file(self.suite_yaml()))
    }
}

/// A place in a YAML file: `file:line:column`, or only the file when the line is not known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The file.
    pub file: PathBuf,
    /// The line, from 1; 0 when not known.
    pub line: u64,
    /// The column, from 1.
    pub column: u64,
}

impl Place {
    /// The file, without a line.
    pub fn file(file: PathBuf) -> Place {
        Place {
            file,
            line: 0,
            column: 0,
        }
    }
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(f, "{}", self.file.display())
        } else {
            write!(f, "{}:{}:{}", self.file.display(), self.line, self.column)
        }
    }
}

/// A test file as read: its path and where each of its steps starts.
#[derive(Debug, Clone)]
pub struct Source {
    /// The file.
    pub path: PathBuf,
    /// `(line, column)` of each step, in order (`(0, 0)` where not known): one per step.
    pub steps: Vec<(u64, u64)>,
}

impl Source {
    /// Where step `i` (from 0) is written, else the file.
    pub fn step(&self, i: usize) -> Place {
        match self.steps.get(i) {
            Some(&(line, column)) if line > 0 => Place {
                file: self.path.clone(),
                line,
                column,
            },
            _ => Place::file(self.path.clone()),
        }
    }
}

/// Where a test file's steps start: the same file read for locations only.
#[derive(Deserialize, Default)]
struct StepPlaces {
    #[serde(default)]
    steps: Vec<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
}

/// Where the entries of `suite.yaml` start: the same file read for locations only.
#[derive(Deserialize, Default)]
struct SuitePlaces {
    #[serde(default)]
    vars: BTreeMap<String, serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    config: BTreeMap<String, serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    files: BTreeMap<String, serde_saphyr::Spanned<serde::de::IgnoredAny>>,
    #[serde(default)]
    setup: Vec<serde_saphyr::Spanned<serde::de::IgnoredAny>>,
}

fn line_column<T>(s: &serde_saphyr::Spanned<T>) -> (u64, u64) {
    (s.referenced.line(), s.referenced.column())
}

/// Reads the test file at `path`, with where its steps start.
pub fn read_test(path: &Path) -> Result<(TestFile, Source)> {
    let text =
        std::fs::read_to_string(path).input_ctx(|| format!("cannot read {}", path.display()))?;
    let test: TestFile = super::yaml::parse(&text, path)?;
    let places: StepPlaces = serde_saphyr::from_str(&text).unwrap_or_default();
    let steps = if places.steps.len() == test.steps.len() {
        places.steps.iter().map(line_column).collect()
    } else {
        vec![(0, 0); test.steps.len()]
    };
    Ok((
        test,
        Source {
            path: path.to_path_buf(),
            steps,
        },
    ))
}

fn suite_places(path: &Path, text: &str) -> BTreeMap<String, Place> {
    let doc: SuitePlaces = serde_saphyr::from_str(text).unwrap_or_default();
    let place = |s: &serde_saphyr::Spanned<serde::de::IgnoredAny>| {
        let (line, column) = line_column(s);
        Place {
            file: path.to_path_buf(),
            line,
            column,
        }
    };
    let keyed = [
        ("vars", &doc.vars),
        ("config", &doc.config),
        ("files", &doc.files),
    ];
    let mut out: BTreeMap<String, Place> = keyed
        .into_iter()
        .flat_map(|(what, map)| map.iter().map(move |(k, v)| (format!("{what}.{k}"), v)))
        .map(|(k, v)| (k, place(v)))
        .collect();
    for (i, s) in doc.setup.iter().enumerate() {
        out.insert(format!("setup.{i}"), place(s));
    }
    out
}

/// Resolves `suite/os`, `suites/os` or a path to a suite folder.
pub fn resolve(root: &Path, spec: &str) -> Result<PathBuf> {
    let direct = PathBuf::from(spec);
    if direct.join("suite.yaml").is_file() {
        return Ok(direct);
    }
    let name = spec
        .strip_prefix("suite/")
        .or_else(|| spec.strip_prefix("suites/"))
        .unwrap_or(spec)
        .trim_end_matches('/');
    let dir = root.join("suites").join(name);
    if dir.join("suite.yaml").is_file() {
        return Ok(dir);
    }
    let known = list(root)?.into_iter().map(|s| s.name).collect::<Vec<_>>();
    Err(Error::input(format!(
        "unknown suite `{spec}` (known: {})",
        known.join(", ")
    )))
}

/// Reads the suite in `dir` and every test it names.
pub fn load(dir: &Path) -> Result<Suite> {
    let name = dir
        .canonicalize()
        .input_ctx(|| format!("cannot read suite {}", dir.display()))?
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let suite_yaml = dir.join("suite.yaml");
    let text = std::fs::read_to_string(&suite_yaml)
        .input_ctx(|| format!("cannot read {}", suite_yaml.display()))?;
    let file: SuiteFile = super::yaml::parse(&text, &suite_yaml)?;
    let places = suite_places(&suite_yaml, &text);
    let multiplier = file.timeout_multiplier;
    if !(0.1..=10.0).contains(&multiplier) {
        return Err(Error::input(format!(
            "{}: timeout_multiplier {multiplier} is out of range (0.1 to 10)",
            suite_yaml.display()
        )));
    }
    let names = if file.tests.is_empty() {
        yaml_files(dir)?
            .into_iter()
            .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
            .filter(|n| n != "suite")
            .collect()
    } else {
        file.tests.clone()
    };
    let mut tests = Vec::new();
    let mut sources = Vec::new();
    for entry in names {
        let (test, path) = match entry.strip_suffix(".yaml") {
            Some(_) => {
                let path = dir.join(&entry);
                let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned());
                (stem.unwrap_or_default(), path)
            }
            None => (entry.clone(), dir.join(format!("{entry}.yaml"))),
        };
        if !path.is_file() {
            return Err(Error::input(format!(
                "{}: lists test `{test}` but {} does not exist",
                dir.join("suite.yaml").display(),
                path.display()
            )));
        }
        let (mut read, source) = read_test(&path)?;
        read.scale_timeouts(multiplier);
        tests.push((test, read));
        sources.push(source);
    }
    let mut setup = Vec::new();
    let mut setup_sources = Vec::new();
    for (i, entry) in file.setup.iter().enumerate() {
        let path = dir.join(entry);
        if !path.is_file() {
            let at = places
                .get(&format!("setup.{i}"))
                .cloned()
                .unwrap_or_else(|| Place::file(suite_yaml.clone()));
            return Err(Error::input(format!(
                "{at}: setup names {} which does not exist",
                path.display()
            )));
        }
        let (mut read, source) = read_test(&path)?;
        read.scale_timeouts(multiplier);
        setup.extend(read.steps);
        setup_sources.push(source);
    }
    Ok(Suite {
        name,
        dir: dir.to_path_buf(),
        file,
        tests,
        setup,
        sources,
        setup_sources,
        places,
    })
}

/// Every suite under `root/suites`, sorted by name.
pub fn list(root: &Path) -> Result<Vec<Suite>> {
    let mut out = Vec::new();
    let dir = root.join("suites");
    let entries = std::fs::read_dir(&dir).input_ctx(|| format!("cannot read {}", dir.display()))?;
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("suite.yaml").is_file())
        .collect();
    dirs.sort();
    for d in dirs {
        out.push(load(&d)?);
    }
    Ok(out)
}

/// The `*.yaml` files directly in `dir`, sorted.
pub fn yaml_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).input_ctx(|| format!("cannot read {}", dir.display()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_step_names_its_line() {
        let text = "description: x\nsteps:\n  - ssh: {run: true}\n  - rebot: {}\n";
        let err = super::super::yaml::parse::<TestFile>(text, Path::new("suites/x/t.yaml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("suites/x/t.yaml:4:5: unknown variant `rebot`"),
            "{err}"
        );
    }

    #[test]
    fn a_timeout_multiplier_scales_every_test_and_setup_timeout_and_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let suite = |multiplier: &str| {
            std::fs::write(
                dir.path().join("suite.yaml"),
                format!("description: s\nsetup: [f.yaml]\ntests: [t]\ntimeout_multiplier: {multiplier}\n"),
            )
            .unwrap();
            load(dir.path())
        };
        std::fs::write(
            dir.path().join("f.yaml"),
            "description: fault\nsteps:\n  - ssh: {run: 'true', timeout: 60}\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            "description: x\ntimeout: 901\nsteps:\n  - wait_for: {run: 'true', timeout: 420}\n  - reboot: {}\n  - check: {name: engine-api, timeout: 1}\n",
        )
        .unwrap();
        let s = suite("0.5").unwrap();
        let t = &s.tests[0].1;
        assert_eq!(t.timeout, 451);
        let mut steps = t.steps.clone();
        let got: Vec<u64> = steps.iter_mut().map(|s| *s.timeout_mut()).collect();
        assert_eq!(got, [210, default_boot_timeout().div_ceil(2), 1]);
        let mut setup = s.setup.clone();
        assert_eq!(*setup[0].timeout_mut(), 30);
        for bad in ["0", "-1", "11", ".nan"] {
            let err = suite(bad).unwrap_err().to_string();
            assert!(
                err.contains("timeout_multiplier") && err.contains("0.1 to 10"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn steps_and_suite_entries_know_their_line_and_column() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("suite.yaml"),
            "description: s\nvars:\n  a: '1'\nsetup: [t.yaml]\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("t.yaml"),
            "description: x\nsteps:\n  - ssh: {run: uname}\n  -   reboot: {}\n",
        )
        .unwrap();
        let suite = load(dir.path()).unwrap();
        let t = &suite.sources[0];
        assert_eq!(t.steps, vec![(3, 5), (4, 7)]);
        assert_eq!(
            t.step(1).to_string(),
            format!("{}:4:7", dir.path().join("t.yaml").display())
        );
        assert_eq!(suite.setup.len(), 2);
        assert_eq!(suite.setup_sources[0].steps.len(), 2);
        assert_eq!(suite.place("vars.a").line, 3);
        assert_eq!(suite.place("setup.0").line, 4);
        assert_eq!(suite.place("vars.b").line, 0);
    }

    #[test]
    fn ssh_step_defaults_expect_status_zero() {
        let text =
            "description: x\nsteps:\n  - ssh: {run: uname}\n  - wait_for: {run: x, status: null}\n";
        let t: TestFile = super::super::yaml::parse(text, Path::new("t.yaml")).unwrap();
        match (&t.steps[0], &t.steps[1]) {
            (Step::Ssh(a), Step::WaitFor(b)) => {
                assert_eq!(a.status, Some(0));
                assert_eq!(b.status, None);
            }
            other => panic!("{other:?}"),
        }
    }
}
