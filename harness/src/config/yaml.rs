//! Reads YAML into typed values, with errors that name the file, line and column.

use std::path::Path;

use serde::de::DeserializeOwned;

use crate::error::{Context, Error, Result};

/// Parses the YAML file at `path` into `T`.
pub fn read<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text =
        std::fs::read_to_string(path).input_ctx(|| format!("cannot read {}", path.display()))?;
    parse(&text, path)
}

/// Parses `text` (read from `path`) into `T`.
pub fn parse<T: DeserializeOwned>(text: &str, path: &Path) -> Result<T> {
    serde_saphyr::from_str(text).map_err(|e| located(path, &e))
}

/// `file:line:column: message`, the message without the library's source snippet.
fn located(path: &Path, e: &serde_saphyr::Error) -> Error {
    let full = e.to_string();
    let first = full.lines().next().unwrap_or("invalid YAML");
    // The library's own first line reads "error: line L column C: message".
    let message = first
        .split_once("column ")
        .and_then(|(_, rest)| rest.split_once(": "))
        .map(|(_, m)| m)
        .unwrap_or(first.trim_start_matches("error: "));
    match e.location() {
        Some(l) => Error::input(format!(
            "{}:{}:{}: {message}",
            path.display(),
            l.line(),
            l.column()
        )),
        None => Error::input(format!("{}: {message}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        count: u32,
    }

    fn err(text: &str) -> String {
        parse::<Doc>(text, Path::new("t.yaml"))
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn unknown_key_names_file_line_and_column() {
        assert_eq!(
            err("name: a\ncount: 1\ncolour: red\n"),
            "t.yaml:3:1: unknown field `colour`, expected one of name, count"
        );
    }

    #[test]
    fn wrong_type_and_tabs_are_located() {
        assert!(err("name: a\ncount: many\n").starts_with("t.yaml:2:8: "));
        assert!(err("name: a\ncount:\n\t1\n").starts_with("t.yaml:3:"));
    }

    #[test]
    fn error_is_one_line() {
        assert_eq!(err("name: [\n").lines().count(), 1);
    }
}
