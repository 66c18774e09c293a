//! The process exit codes, a documented contract for CI systems.

/// Every test passed (skipped tests do not count as failures).
pub const SUCCESS: i32 = 0;
/// At least one test failed.
pub const TEST_FAILED: i32 = 1;
/// Bad input or setup: a YAML error, a missing image, an unknown machine, a missing tool.
pub const BAD_INPUT: i32 = 2;
/// Infrastructure failure: QEMU, flashing, power, boot or SSH never came up.
pub const INFRASTRUCTURE: i32 = 3;
/// The run was interrupted (Ctrl-C or SIGTERM); the report holds what ran.
pub const INTERRUPTED: i32 = 130;
