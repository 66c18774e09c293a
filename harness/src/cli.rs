//! The command line, as clap parses it. Each subcommand maps to one library call in `main.rs`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// A hardware-in-the-loop test runner for balenaOS: QEMU machines and real boards.
#[derive(Debug, Parser)]
#[command(name = "harness", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run suites on a machine: boot, test, report.
    ///
    /// Exit codes: 0 all passed, 1 a test failed, 2 bad input or setup, 3 infrastructure
    /// failure, 130 interrupted.
    Run(RunArgs),
    /// List the machine types with one line each.
    Machines,
    /// List the suites with one line each.
    Suites,
    /// Build, inspect or configure disk images.
    #[command(subcommand)]
    Image(ImageCommand),
    /// List the rigs: hardware present, in or out of rotation, who holds each one's lease.
    Rigs,
    /// Boot each rig's known-good image and run suite/smoke: a rig that fails goes out of
    /// rotation (with the reason), one that passes comes back.
    Health(HealthArgs),
    /// Write an image to a block device or file: only the blocks that hold data, verified.
    Flash {
        /// The image (`.img`, `.gz`, `.xz`, `.zst`, `.zip`; a `.bmap` beside it is used).
        image: PathBuf,
        /// The block device (or file) to write.
        #[arg(long)]
        to: PathBuf,
        /// Skip reading back and checking what was written.
        #[arg(long)]
        no_verify: bool,
    },
    /// Read the reports of finished runs.
    #[command(subcommand)]
    Report(ReportCommand),
    /// The board-porting report: check an image for a machine without booting it, then run
    /// suite/os, suite/hup and suite/engine on it; write porting.json and porting.html, one
    /// row per balenaOS contract.
    ///
    /// Exit codes: 0 every contract checked held, 1 a contract failed, 2 bad input,
    /// 3 infrastructure failure, 130 interrupted.
    PortCheck(PortCheckArgs),
}

/// `harness port-check`.
#[derive(Debug, Args)]
pub struct PortCheckArgs {
    /// The machine type (see `harness machines`), or a machine file (`path/to/board.yaml`).
    #[arg(long)]
    pub machine: String,
    /// The image (packed or raw); default: the machine's reference image.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Run the suites on this rig (a board of the machine) instead of QEMU.
    #[arg(long)]
    pub rig: Option<String>,
    /// A suite to run instead of suite/os, suite/hup and suite/engine; may repeat.
    #[arg(long = "suite")]
    pub suites: Vec<String>,
    /// Run only the tests whose `suite/test` matches this regex.
    #[arg(long)]
    pub filter: Option<String>,
    /// Only the checks on the image: no boot.
    #[arg(long)]
    pub static_only: bool,
    /// The report's folder; default `reports/port-<date>-<machine>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Set a suite variable, `NAME=VALUE`, as `harness run --var`.
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
    /// Force the accelerator (`kvm` or `tcg`) instead of probing.
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// Retries after an infrastructure failure, as `harness run --retries`.
    #[arg(long, default_value_t = 1)]
    pub retries: usize,
}

/// `harness run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// A machine type (see `harness machines`) to run under QEMU, or a machine file
    /// (`path/to/board.yaml`); may repeat.
    #[arg(long = "machine", required_unless_present_any = ["rigs", "pools"])]
    pub machines: Vec<String>,
    /// QEMU machines to boot at once per machine type, from one base image (copy-on-write
    /// overlays).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub parallel: u16,
    /// A rig (see `harness rigs`): the board it holds, flashed through its SD muxer; may
    /// repeat.
    #[arg(long = "rig")]
    pub rigs: Vec<String>,
    /// Rigs from the pool: `tag=NAME` picks every rig with that tag that is in rotation.
    #[arg(long = "rigs", value_name = "tag=NAME")]
    pub pools: Vec<String>,
    /// Every target runs every test, instead of sharing the tests out over the targets.
    #[arg(long)]
    pub each: bool,
    /// Suites to run: `suite/os`, `suites/os`, or a path to a suite folder.
    #[arg(required = true)]
    pub suites: Vec<String>,
    /// The image to test (`.img`, `.img.gz`, `.img.xz`, `.img.zst`, `.zip`); default: the
    /// machine's reference image.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The run's folder for logs and reports; default `reports/<date>-<targets>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Where to write the JUnit XML; default `<out>/junit.xml`.
    #[arg(long)]
    pub junit: Option<PathBuf>,
    /// Run only the tests whose `suite/test` matches this regex.
    #[arg(long)]
    pub filter: Option<String>,
    /// Run on after a failed test instead of skipping the rest.
    #[arg(long)]
    pub keep_going: bool,
    /// Retries after an infrastructure failure (boot, SSH, power, flash), on another target
    /// when there is one, else after a power cycle.
    #[arg(long, default_value_t = 1)]
    pub retries: usize,
    /// Reruns of a failed test; a test that then passes is reported flaky, not passed.
    #[arg(long, default_value_t = 0)]
    pub rerun_failures: usize,
    /// How long to wait for a busy target's lease, in seconds.
    #[arg(long, default_value_t = 1800)]
    pub lease_wait: u64,
    /// Stream this target's serial console to stdout while the run goes on.
    #[arg(long, value_name = "TARGET")]
    pub follow: Option<String>,
    /// Force the accelerator (`kvm` or `tcg`) instead of probing.
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// Keep the disk overlay after the run (for a post-mortem).
    #[arg(long)]
    pub keep: bool,
    /// Boot every fresh device: restore none from a snapshot and save none.
    #[arg(long)]
    pub no_snapshot: bool,
    /// Set a suite variable, `NAME=VALUE` (e.g. `update_file=hostapp.tar`,
    /// `update_version=6.0.14` for suite/hup on a real balenaOS image).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
}

/// `harness health`.
#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Rigs to check (default: every rig).
    #[arg(long = "rig")]
    pub rigs: Vec<String>,
    /// Check the rigs with this tag: `tag=NAME`.
    #[arg(long = "rigs", value_name = "tag=NAME")]
    pub pools: Vec<String>,
    /// Where the checks' reports go; default `reports/health-<date>-<rig>`.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn parse_var(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("`{s}` is not NAME=VALUE"))
}

/// `harness image ...`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Build the machine's reference image (or return the cached one) and print its path.
    Build {
        /// The machine type.
        #[arg(long)]
        machine: String,
    },
    /// Show an image's partitions, os-release and config.json (secrets masked).
    Inspect {
        /// The image.
        image: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Change config.json in an image's boot partition, in place.
    Configure {
        /// The image (raw).
        image: PathBuf,
        /// Set a key: `key=value`; the value is JSON if it parses, else a string;
        /// dotted keys reach into objects (`os.sshKeys=["ssh-ed25519 ..."]`).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
        /// Remove a key.
        #[arg(long = "remove", value_name = "KEY")]
        remove: Vec<String>,
        /// Replace config.json with this file.
        #[arg(long, conflicts_with_all = ["set", "remove"])]
        config: Option<PathBuf>,
    },
}

/// `harness report ...`.
#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Show what changed from run A to run B: regressions, fixes, flaky tests, new and gone
    /// tests, durations beyond ±25% and 5 s, changed figures.
    ///
    /// Exit codes: 0 no regression, 1 a test that passed in A failed in B, 2 a summary is
    /// missing or corrupt.
    Compare {
        /// Run A: its folder (holding `summary.json`) or its `summary.json`.
        a: PathBuf,
        /// Run B: its folder or its `summary.json`.
        b: PathBuf,
    },
    /// Render junit.xml, summary.json and report.html again from a run's journal (after a
    /// crash, `kill -9` or a power cut: tests that were running are reported interrupted).
    Render {
        /// The run's folder (holding `journal.jsonl`).
        dir: PathBuf,
    },
}
