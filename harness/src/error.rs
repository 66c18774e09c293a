//! The crate's error type: every error is one line, and its kind decides the exit code.

use crate::exit_code;

/// An error that ends a command. Its message is one line, fit for a terminal.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad input or setup (exit 2): the user can fix it by changing what they gave us.
    #[error("{0}")]
    Input(String),
    /// The machinery failed (exit 3): QEMU, flashing, power, boot, or SSH never came up.
    #[error("{0}")]
    Infra(String),
    /// A check did not hold (exit 1): the device under test misbehaved.
    #[error("{0}")]
    Failed(String),
    /// A check cannot apply to this device, and says why (the test is reported skipped).
    #[error("skipped: {0}")]
    Skip(String),
    /// Ctrl-C or SIGTERM arrived.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// An input error from anything displayable.
    pub fn input(msg: impl std::fmt::Display) -> Self {
        Error::Input(msg.to_string())
    }

    /// An infrastructure error from anything displayable.
    pub fn infra(msg: impl std::fmt::Display) -> Self {
        Error::Infra(msg.to_string())
    }

    /// A failed check from anything displayable.
    pub fn failed(msg: impl std::fmt::Display) -> Self {
        Error::Failed(msg.to_string())
    }

    /// The exit code this error maps to.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Input(_) => exit_code::BAD_INPUT,
            Error::Infra(_) => exit_code::INFRASTRUCTURE,
            Error::Failed(_) => exit_code::TEST_FAILED,
            Error::Interrupted => exit_code::INTERRUPTED,
            Error::Skip(_) => exit_code::SUCCESS,
        }
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a one-line context to errors from the standard library and other crates.
pub trait Context<T> {
    /// Turns the error into an [`Error::Input`] prefixed with `what`.
    fn input_ctx(self, what: impl FnOnce() -> String) -> Result<T>;
    /// Turns the error into an [`Error::Infra`] prefixed with `what`.
    fn infra_ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::fmt::Display> Context<T> for std::result::Result<T, E> {
    fn input_ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Input(format!("{}: {e}", what())))
    }
    fn infra_ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::Infra(format!("{}: {e}", what())))
    }
}
