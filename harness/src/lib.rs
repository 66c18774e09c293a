//! `harness`: a hardware-in-the-loop test runner for balenaOS.
//!
//! Data flows one way:
//!
//! ```text
//! config (YAML: machines/, rigs/, suites/)
//!    -> plan (validated suites, tests, steps, targets)
//!    -> devices (QEMU or a board: power, console, SSH, media)
//!    -> results (one outcome per test, with its logs)
//!    -> report (terminal, junit.xml, summary.json)
//! ```
//!
//! Each stage lives in its own module; a stage only imports the stages before it.

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
pub mod paths;
pub mod process;
pub mod qemu;
pub mod redact;
pub mod reference;
pub mod registry;
pub mod report;
pub mod rotation;
pub mod runner;
pub mod ssh;
pub mod target;
#[cfg(test)]
pub mod testing;

pub use error::{Error, Result};
