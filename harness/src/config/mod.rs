//! Raw configuration read from YAML: machines, suites and their tests.
//!
//! Types here mirror the files one to one and reject unknown keys; validation that needs more
//! than one file happens in the plan.

pub mod machine;
pub mod suite;
pub mod yaml;
