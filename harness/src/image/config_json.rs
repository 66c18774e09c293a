//! balenaOS `config.json`: parse, edit by dotted keys, print with secrets masked.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The top-level object of a `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct ConfigJson(pub Map<String, Value>);

impl ConfigJson {
    /// Parses `bytes`; errors name `origin` and the line and column.
    pub fn parse(bytes: &[u8], origin: &str) -> Result<ConfigJson> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| {
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let msg = full.strip_suffix(&suffix).unwrap_or(&full);
            Error::input(format!(
                "{origin}: invalid JSON at line {}, column {}: {msg}",
                e.line(),
                e.column()
            ))
        })?;
        match value {
            Value::Object(map) => Ok(ConfigJson(map)),
            other => Err(Error::input(format!(
                "{origin}: expected a JSON object, found {}",
                kind_of(&other)
            ))),
        }
    }

    /// The value at `dotted_key` (`os.sshKeys`), if any.
    pub fn get(&self, dotted_key: &str) -> Option<&Value> {
        let mut parts = dotted_key.split('.');
        let mut value = self.0.get(parts.next()?)?;
        for part in parts {
            value = value.as_object()?.get(part)?;
        }
        Some(value)
    }

    /// Sets `dotted_key` to `raw_value`: JSON when it parses as JSON (`true`, `3`, `["a"]`,
    /// `{"x":1}`), else the string itself. Missing parent objects are created.
    pub fn set(&mut self, dotted_key: &str, raw_value: &str) -> Result<()> {
        let parts = split_key(dotted_key)?;
        let value = serde_json::from_str::<Value>(raw_value)
            .unwrap_or_else(|_| Value::String(raw_value.to_string()));
        let Some((last, parents)) = parts.split_last() else {
            return Err(Error::input(format!("{dotted_key:?}: empty key")));
        };
        let mut map = &mut self.0;
        for (i, part) in parents.iter().enumerate() {
            let entry = map
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            map = match entry {
                Value::Object(m) => m,
                other => {
                    return Err(Error::input(format!(
                        "cannot set {dotted_key}: {} is {}, not an object",
                        parts[..=i].join("."),
                        kind_of(other)
                    )))
                }
            };
        }
        map.insert(last.to_string(), value);
        Ok(())
    }

    /// Removes `dotted_key`, returning its value if it was there.
    pub fn remove(&mut self, dotted_key: &str) -> Option<Value> {
        let parts = split_key(dotted_key).ok()?;
        let (last, parents) = parts.split_last()?;
        let mut map = &mut self.0;
        for part in parents {
            map = map.get_mut(*part)?.as_object_mut()?;
        }
        map.remove(*last)
    }

    /// Pretty JSON with a trailing newline, as written back to the boot partition.
    pub fn to_pretty_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(&self.0).unwrap_or_default();
        bytes.push(b'\n');
        bytes
    }

    /// A copy fit for logs and terminals: every secret's value becomes `"****"` plus its last
    /// four characters (only `"****"` when it is short).
    ///
    /// Secrets are `deviceApiKey`, `apiKey`, `provisioningApiKey` and any key whose name
    /// contains `apikey`, `token`, `secret` or `password`, ignoring case, at any depth.
    pub fn masked(&self) -> ConfigJson {
        ConfigJson(mask_map(&self.0))
    }
}

/// Splits a `--set` argument `key=value` at the first `=`.
pub fn parse_set_arg(arg: &str) -> Result<(String, String)> {
    let (key, value) = arg
        .split_once('=')
        .ok_or_else(|| Error::input(format!("--set {arg}: expected KEY=VALUE")))?;
    let key = key.trim();
    split_key(key).map_err(|_| {
        Error::input(format!(
            "--set {arg}: expected KEY=VALUE with a key like hostname or os.sshKeys"
        ))
    })?;
    Ok((key.to_string(), value.to_string()))
}

/// Whether a key names a secret (see [`ConfigJson::masked`]).
pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    ["apikey", "token", "secret", "password"]
        .iter()
        .any(|s| k.contains(s))
}

fn split_key(dotted_key: &str) -> Result<Vec<&str>> {
    let parts: Vec<&str> = dotted_key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(Error::input(format!(
            "{dotted_key:?}: expected a key like hostname or os.sshKeys"
        )));
    }
    Ok(parts)
}

fn mask_map(map: &Map<String, Value>) -> Map<String, Value> {
    map.iter()
        .map(|(k, v)| {
            let v = if is_secret_key(k) {
                mask_value(v)
            } else {
                mask_nested(v)
            };
            (k.clone(), v)
        })
        .collect()
}

fn mask_nested(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(mask_map(m)),
        Value::Array(a) => Value::Array(a.iter().map(mask_nested).collect()),
        other => other.clone(),
    }
}

fn mask_value(v: &Value) -> Value {
    match v {
        Value::Null => Value::Null,
        Value::String(s) => {
            let chars: Vec<char> = s.chars().collect();
            // Showing the tail of a short secret would show most of it.
            let tail: String = if chars.len() >= 12 {
                chars[chars.len() - 4..].iter().collect()
            } else {
                String::new()
            };
            Value::String(format!("****{tail}"))
        }
        _ => Value::String("****".into()),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cfg(v: Value) -> ConfigJson {
        match v {
            Value::Object(m) => ConfigJson(m),
            _ => unreachable!(),
        }
    }

    #[test]
    fn set_parses_json_or_takes_a_string() {
        let mut c = ConfigJson::default();
        for (k, raw) in [
            ("developmentMode", "true"),
            ("n", "3"),
            ("os.sshKeys", r#"["ssh-ed25519 AAAA x"]"#),
            (
                "os.network.connectivity",
                r#"{"uri":"http://x","interval":"60"}"#,
            ),
            ("hostname", "my-device"),
            ("dnsServers", "8.8.8.8 1.1.1.1"),
            ("quoted", r#""007""#),
            ("empty", ""),
        ] {
            c.set(k, raw).unwrap();
        }
        assert_eq!(
            Value::Object(c.0.clone()),
            json!({
                "developmentMode": true,
                "n": 3,
                "os": {
                    "sshKeys": ["ssh-ed25519 AAAA x"],
                    "network": {"connectivity": {"uri": "http://x", "interval": "60"}}
                },
                "hostname": "my-device",
                "dnsServers": "8.8.8.8 1.1.1.1",
                "quoted": "007",
                "empty": ""
            })
        );
        assert_eq!(c.get("os.sshKeys"), Some(&json!(["ssh-ed25519 AAAA x"])));
        assert_eq!(
            c.remove("os.network"),
            Some(json!({"connectivity": {"uri": "http://x", "interval": "60"}}))
        );
        assert_eq!(c.remove("os.network"), None);
        assert_eq!(c.remove("nope.deeper"), None);
        assert!(c.get("os.network.connectivity").is_none());
    }

    #[test]
    fn set_through_a_non_object_fails() {
        let mut c = cfg(json!({"hostname": "x"}));
        let err = c.set("hostname.sub", "1").unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            "cannot set hostname.sub: hostname is a string, not an object"
        );
        assert!(c.set("a..b", "1").is_err());
    }

    #[test]
    fn parse_errors_name_origin_and_position() {
        let err = ConfigJson::parse(
            b"{\n  \"a\": 1,\n  \"b\" 2\n}",
            "x.img: resin-boot/config.json",
        )
        .unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            "x.img: resin-boot/config.json: invalid JSON at line 3, column 7: expected `:`"
        );
        let err = ConfigJson::parse(b"[1]", "c.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "c.json: expected a JSON object, found an array"
        );
        let err = ConfigJson::parse(b"", "c.json").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("c.json: invalid JSON at line 1, column 0: "),
            "{err}"
        );
    }

    #[test]
    fn round_trip() {
        let c = cfg(json!({"a": {"b": [1, 2]}, "s": "x"}));
        let back = ConfigJson::parse(&c.to_pretty_bytes(), "t").unwrap();
        assert_eq!(back, c);
        assert!(c.to_pretty_bytes().ends_with(b"}\n"));
    }

    #[test]
    fn masks_secrets_recursively() {
        let c = cfg(json!({
            "deviceApiKey": "0123456789abcdef",
            "apiKey": "abcdefghijklmnop",
            "provisioningApiKey": "short",
            "mixpanelToken": "tttttttttttt9999",
            "nested": {"wifiPassword": "hunter2hunter2", "plain": "ok", "list": [{"SECRET_x": 5}]},
            "uuid": "not-a-secret-0123456789",
            "absent": null,
        }));
        let m = c.masked();
        assert_eq!(
            Value::Object(m.0),
            json!({
                "deviceApiKey": "****cdef",
                "apiKey": "****mnop",
                "provisioningApiKey": "****",
                "mixpanelToken": "****9999",
                "nested": {"wifiPassword": "****ter2", "plain": "ok", "list": [{"SECRET_x": "****"}]},
                "uuid": "not-a-secret-0123456789",
                "absent": null,
            })
        );
        // The original is untouched.
        assert_eq!(c.get("apiKey"), Some(&json!("abcdefghijklmnop")));
    }

    #[test]
    fn set_args() {
        assert_eq!(
            parse_set_arg("hostname=dev").unwrap(),
            ("hostname".into(), "dev".into())
        );
        assert_eq!(
            parse_set_arg("os.sshKeys=[\"a=b\"]").unwrap(),
            ("os.sshKeys".into(), "[\"a=b\"]".into())
        );
        assert_eq!(parse_set_arg("x=").unwrap(), ("x".into(), "".into()));
        let err = parse_set_arg("hostname").unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(err.to_string(), "--set hostname: expected KEY=VALUE");
        assert!(parse_set_arg("=v").is_err());
        assert!(parse_set_arg(".a=v").is_err());
    }
}
