//! A test on a device: the device as steps see it ([`dut`]), the steps ([`steps`]), the
//! checks written in Rust ([`builtin`], [`engine`], [`power_loss`]) with the registry they
//! share ([`fixture`]), a fresh device, booted or restored from a snapshot ([`fresh`]), and
//! one test's steps to its outcome ([`test`]).
//! Nothing here knows about other targets, queues or retries.

pub mod builtin;
pub mod dut;
pub mod engine;
pub mod fixture;
pub mod fresh;
pub mod power_loss;
pub mod steps;
pub mod test;
