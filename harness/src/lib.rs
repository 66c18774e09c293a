//! `harness`: a hardware-in-the-loop test runner for balenaOS.
//!
//! Data flows one way:
//!
//! ```text
//! config (YAML: machines/, rigs/, suites/)
//!    -> plan (validated suites, tests, steps, targets)
//!    -> devices (QEMU or a board: power, console, SSH, media)
//!    -> results (one outcome per test, with its logs)
//!    -> report (terminal, junit.xml, summary.json, report.html)
//! ```
//!
//! The modules in layers; a module imports only from its own layer or the ones above it in
//! this list (`ARCHITECTURE.md` says what each does):
//!
//! 1. foundations: `error`, `exit_code`, `clock`, `paths`, `process`, `interrupt`,
//!    `device` (the power/media/console traits), `qmp`, `redact`
//! 2. configuration and images: `config`, `image`, `reference`
//! 3. devices: `console`, `ssh`, `target`, `flash`, `board`, `qemu` (its emulated rig plays a
//!    `board`), `ntp`, `lan`, `registry`
//! 4. shared farm state: `lease`, `rotation`
//! 5. results: `report` (the result types, the journal and its renderings)
//! 6. the runner: `runner` (plan stage, then `runner::exec` for a test on a device, then
//!    `runner::farm` for targets, queue and retries)
//! 7. the front: `port` (`harness port-check`, which calls the runner), `live`, `cli` (and
//!    `main.rs`)

pub mod board;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod device;
pub mod error;
pub mod exit_code;
pub mod flash;
pub mod image;
pub mod interrupt;
pub mod lan;
pub mod lease;
pub mod live;
pub mod ntp;
pub mod paths;
pub mod port;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod report;
pub mod rotation;
pub mod runner;
pub mod ssh;
pub mod target;
/// For the unit and integration tests only.
#[doc(hidden)]
pub mod testing;

pub use error::{Error, Result};
