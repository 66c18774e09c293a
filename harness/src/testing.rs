//! Helpers for the unit and integration tests.

/// A tool or file a test needs is missing. Under CI (`CI=true`) that is a failure naming what
/// is missing, since set-up installs every tool the tests use; elsewhere the test is skipped
/// with that reason on stderr.
pub fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and the test cannot run: {what} (scripts/setup installs it)");
    }
    eprintln!("skipped: {what}");
}
