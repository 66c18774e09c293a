//! Secrets kept out of everything the harness writes: transcripts, console logs, `junit.xml`,
//! `summary.json`, `report.html` and the journal.
//!
//! Two nets: the values of secrets the harness has seen (the `apiKey`, `deviceApiKey`, ... of
//! every `config.json` it read, and the keys a suite declares secret) are replaced wherever they
//! appear; and any JSON member whose key names a secret has its string value replaced, even a
//! value the harness never saw. One registry serves the process: a run has one set of secrets,
//! and every writer (a console's log thread, the reporter) must see all of them.

use std::sync::{LazyLock, RwLock};

use regex::Regex;

/// What a secret becomes.
pub const MASK: &str = "[secret]";

/// Values shorter than this are not masked by value (they would mask ordinary text).
const MIN_LEN: usize = 6;

static VALUES: RwLock<Vec<String>> = RwLock::new(Vec::new());
static EXTRA_KEYS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// A JSON member whose key names a secret (see [`is_secret_key`]), with its string value.
static MEMBER: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"("(?:[^"\\]|\\.)*"\s*:\s*)"((?:[^"\\]|\\.)*)""#).expect("valid regex")
});

/// Whether a `config.json` key names a secret: `apiKey`, `deviceApiKey`,
/// `provisioningApiKey`, any key with `apikey`, `token`, `secret` or `password` in its name,
/// and the keys suites declared secret.
pub fn is_secret_key(key: &str) -> bool {
    let key = key.rsplit('.').next().unwrap_or(key);
    crate::image::config_json::is_secret_key(key)
        || EXTRA_KEYS
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|k| k == key)
}

/// Declares `key` (a `config.json` key, the last part of a dotted one) secret.
pub fn secret_key(key: &str) {
    let key = key.rsplit('.').next().unwrap_or(key).to_string();
    let mut keys = EXTRA_KEYS.write().unwrap_or_else(|e| e.into_inner());
    if !keys.contains(&key) {
        keys.push(key);
    }
}

/// Remembers `value` as a secret: it is masked wherever it appears from now on.
pub fn secret_value(value: &str) {
    if value.len() < MIN_LEN || value == MASK {
        return;
    }
    let mut values = VALUES.write().unwrap_or_else(|e| e.into_inner());
    if !values.iter().any(|v| v == value) {
        values.push(value.to_string());
        // Longest first, so a secret that contains another is masked whole.
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
    }
}

/// Remembers the secrets of a `config.json` (at any depth).
pub fn secrets_of_config(config: &serde_json::Value) {
    match config {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(s) if is_secret_key(k) => secret_value(s),
                    other => secrets_of_config(other),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(secrets_of_config),
        _ => {}
    }
}

/// The length of the longest secret value known (a streaming writer holds back one byte
/// less than this, so a secret split across two chunks is still caught).
pub fn longest() -> usize {
    VALUES
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .first()
        .map_or(0, String::len)
}

/// `text` with every known secret value and every secret JSON member's value masked.
pub fn text(text: &str) -> String {
    let mut out = text.to_string();
    for v in VALUES.read().unwrap_or_else(|e| e.into_inner()).iter() {
        if out.contains(v.as_str()) {
            out = out.replace(v.as_str(), MASK);
        }
    }
    if out.contains('"') {
        out = MEMBER
            .replace_all(&out, |c: &regex::Captures| {
                let key = c[1]
                    .trim_end()
                    .trim_end_matches(':')
                    .trim_end()
                    .trim_matches('"');
                if is_secret_key(key) && &c[2] != MASK {
                    format!("{}\"{MASK}\"", &c[1])
                } else {
                    c[0].to_string()
                }
            })
            .into_owned();
    }
    out
}

/// [`text`] over bytes that may not be UTF-8 (a console's raw output): known values only.
pub fn bytes(bytes: &[u8]) -> Vec<u8> {
    let values = VALUES.read().unwrap_or_else(|e| e.into_inner());
    let mut out = bytes.to_vec();
    for v in values.iter() {
        let v = v.as_bytes();
        let mut i = 0;
        while let Some(at) = find(&out[i..], v) {
            let at = i + at;
            out.splice(at..at + v.len(), MASK.bytes());
            i = at + MASK.len();
        }
    }
    out
}

/// For a log written as bytes arrive: takes from `pending` what can be written now, masked,
/// and leaves the tail that may be the start of a secret whose rest has not arrived yet.
/// With `flush`, takes everything.
pub fn stream(pending: &mut Vec<u8>, flush: bool) -> Vec<u8> {
    let len = pending.len();
    let mut cut = len;
    if !flush {
        let values = VALUES.read().unwrap_or_else(|e| e.into_inner());
        // The longest tail that begins a secret waits.
        let longest = values.first().map_or(0, String::len).min(len);
        if let Some(k) = (1..=longest).rev().find(|&k| {
            values
                .iter()
                .any(|v| v.as_bytes().starts_with(&pending[len - k..]))
        }) {
            cut = len - k;
        }
        // A whole secret across the cut goes out whole, masked.
        for v in values.iter().map(|v| v.as_bytes()) {
            let mut i = 0;
            while let Some(at) = find(&pending[i..], v) {
                let (start, end) = (i + at, i + at + v.len());
                if start < cut && cut < end {
                    cut = end;
                }
                i = start + 1;
            }
        }
    }
    let out = bytes(&pending[..cut]);
    pending.drain(..cut);
    out
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_members_are_masked_even_when_never_seen() {
        let t = text(r#"{"apiKey": "abc", "deviceApiKey":"zzz-never-seen", "hostname": "pi"}"#);
        assert!(
            !t.contains("zzz-never-seen") && !t.contains("\"abc\""),
            "{t}"
        );
        assert!(t.contains(r#""hostname": "pi""#), "{t}");
    }

    #[test]
    fn known_values_are_masked_anywhere() {
        secrets_of_config(&serde_json::json!({"deviceApiKey": "d3v1c3-k3y-value-1", "os": {}}));
        let t = text("curl -H 'Authorization: Bearer d3v1c3-k3y-value-1'");
        assert_eq!(t, "curl -H 'Authorization: Bearer [secret]'");
        let b = bytes(b"\x1b[0mkey=d3v1c3-k3y-value-1\r\n");
        assert_eq!(b, b"\x1b[0mkey=[secret]\r\n");
        assert!(longest() >= "d3v1c3-k3y-value-1".len());
    }

    #[test]
    fn a_streamed_log_never_shows_a_secret_split_across_chunks() {
        secret_value("split-secret-0123");
        let mut pending = Vec::new();
        let mut log = Vec::new();
        for chunk in [
            &b"boot ok\r\nkey=split-se"[..],
            b"cret-0",
            b"123 done\r\nlogin: ",
        ] {
            pending.extend_from_slice(chunk);
            log.extend(stream(&mut pending, false));
        }
        // Text that cannot start a secret is written at once (a prompt must not wait).
        assert!(
            log.ends_with(b"login: "),
            "{}",
            String::from_utf8_lossy(&log)
        );
        log.extend(stream(&mut pending, true));
        let log = String::from_utf8(log).unwrap();
        assert_eq!(log, "boot ok\r\nkey=[secret] done\r\nlogin: ");
    }

    #[test]
    fn a_suite_may_declare_a_key_secret() {
        secret_key("os.wifi.psk");
        let t = text(r#"{"psk": "hunter2hunter2"}"#);
        assert!(!t.contains("hunter2"), "{t}");
        assert!(is_secret_key("os.wifi.psk") && is_secret_key("psk"));
        // Short values are not masked by value (they would mask ordinary words)...
        secret_value("abc");
        assert_eq!(text("abc"), "abc");
    }
}
