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
    /// List the rigs and check that each one's hardware is present.
    Rigs,
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
}

/// `harness run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The machine type (see `harness machines`), run under QEMU.
    #[arg(long, required_unless_present = "rig", conflicts_with = "rig")]
    pub machine: Option<String>,
    /// A rig (see `harness rigs`): the board it holds, flashed through its SD muxer.
    #[arg(long)]
    pub rig: Option<String>,
    /// Suites to run: `suite/os`, `suites/os`, or a path to a suite folder.
    #[arg(required = true)]
    pub suites: Vec<String>,
    /// The image to test (`.img`, `.img.gz`, `.img.xz`, `.img.zst`, `.zip`); default: the
    /// machine's reference image.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// The run's folder for logs and reports; default `reports/<date>-<machine>`.
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
    /// Force the accelerator (`kvm` or `tcg`) instead of probing.
    #[arg(long, value_parser = ["kvm", "tcg"])]
    pub accel: Option<String>,
    /// Keep the disk overlay after the run (for a post-mortem).
    #[arg(long)]
    pub keep: bool,
    /// Set a suite variable, `NAME=VALUE` (e.g. `update_file=hostapp.tar`,
    /// `update_version=6.0.14` for suite/hup on a real balenaOS image).
    #[arg(long = "var", value_name = "NAME=VALUE", value_parser = parse_var)]
    pub vars: Vec<(String, String)>,
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
