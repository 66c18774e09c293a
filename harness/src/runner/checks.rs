//! The catalog of the checks written in Rust: their names, the arguments each takes (checked
//! before anything boots) and the boots each asks for (for the order of a farm's work). What
//! they do on a device is in [`crate::runner::exec::builtin`].

use std::collections::BTreeMap;
use std::net::IpAddr;

use serde_json::Value;

/// The built-in checks, with one line each.
pub const CHECKS: &[(&str, &str)] = &[
    (
        "engine-api",
        "the engine's TCP API (2375) from the harness: `open: true` answers GET /_ping with OK, `open: false` does not answer",
    ),
    (
        "mdns-resolve",
        "`name` (without .local) resolves by mDNS from the harness to `ip` (default: the device's address)",
    ),
    (
        "http-from-device",
        "the device fetches a token over HTTP from a server the harness runs on the device's network",
    ),
    (
        "power-loss",
        "cuts the power at `points` of a host OS update of `payload` (to `version`) and checks a complete OS boots, data intact, then a full update succeeds",
    ),
    (
        "engine-pull",
        "pulls app:`tag` from the harness's registry and runs it; records bytes on the wire; `full`, `max_ratio` bound them",
    ),
    (
        "engine-delta",
        "asks the engine for the app:`src` -> app:`dest` delta and pulls it back onto app:`src` alone, which must yield app:`dest` (`without_base`: onto neither, which must be refused; `apply: false`: only make it); skipped where the engine has no delta API",
    ),
    (
        "reach",
        "the harness sees the SSH-2.0 banner at `ip`:`port` (default port 22222)",
    ),
];

/// What one argument of a check takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `true` or `false`.
    Bool,
    /// Text (`{{var}}` filled in at run time).
    Text,
    /// An IP address, or text with a `{{var}}` that the run fills in.
    Ip,
    /// A TCP port, 1 to 65535 (a number, or text with a `{{var}}`).
    Port,
    /// An image the harness's registry serves: `v1` or `v2`.
    Tag,
    /// A number, 0 or more.
    Ratio,
    /// A whole number of seconds.
    Seconds,
    /// A non-empty list of `power-loss` cut points.
    Points,
}

impl Kind {
    fn expected(self) -> String {
        match self {
            Kind::Bool => "true or false".into(),
            Kind::Text => "text (quote it)".into(),
            Kind::Ip => "an IP address".into(),
            Kind::Port => "a port from 1 to 65535".into(),
            Kind::Tag => format!("one of {}", TAGS.join(", ")),
            Kind::Ratio => "a number, 0 or more".into(),
            Kind::Seconds => "a whole number of seconds".into(),
            Kind::Points => format!("a non-empty list of {}", POINTS.join(", ")),
        }
    }

    fn accepts(self, v: &Value) -> bool {
        let has_var = |s: &str| s.contains("{{");
        match (self, v) {
            (Kind::Bool, Value::Bool(_)) | (Kind::Text, Value::String(_)) => true,
            (Kind::Ip, Value::String(s)) => has_var(s) || s.parse::<IpAddr>().is_ok(),
            (Kind::Port, Value::Number(n)) => n.as_u64().is_some_and(|p| (1..=65535).contains(&p)),
            (Kind::Port, Value::String(s)) => has_var(s) || s.parse::<u16>().is_ok_and(|p| p > 0),
            (Kind::Tag, Value::String(s)) => TAGS.contains(&s.as_str()),
            (Kind::Ratio, Value::Number(n)) => n.as_f64().is_some_and(|r| r >= 0.0),
            (Kind::Seconds, Value::Number(n)) => n.as_u64().is_some(),
            (Kind::Points, Value::Array(list)) => {
                !list.is_empty()
                    && list
                        .iter()
                        .all(|p| p.as_str().is_some_and(|p| POINTS.contains(&p)))
            }
            _ => false,
        }
    }
}

/// The images of the harness's registry that `engine-pull` and `engine-delta` name.
const TAGS: &[&str] = &["v1", "v2"];

/// One argument of a check: its name, what it takes, and whether it is required.
type Arg = (&'static str, Kind, bool);

/// The arguments of each check, as its code reads them.
const ARGS: &[(&str, &[Arg])] = &[
    ("engine-api", &[("open", Kind::Bool, false)]),
    (
        "mdns-resolve",
        &[("name", Kind::Text, true), ("ip", Kind::Ip, false)],
    ),
    ("http-from-device", &[]),
    (
        "power-loss",
        &[
            ("payload", Kind::Text, true),
            ("version", Kind::Text, true),
            ("points", Kind::Points, false),
            ("mid_write_seconds", Kind::Seconds, false),
        ],
    ),
    (
        "engine-pull",
        &[
            ("tag", Kind::Tag, false),
            ("run", Kind::Bool, false),
            ("full", Kind::Bool, false),
            ("max_ratio", Kind::Ratio, false),
        ],
    ),
    (
        "engine-delta",
        &[
            ("src", Kind::Tag, false),
            ("dest", Kind::Tag, false),
            ("apply", Kind::Bool, false),
            ("without_base", Kind::Bool, false),
        ],
    ),
    (
        "reach",
        &[("ip", Kind::Ip, true), ("port", Kind::Port, false)],
    ),
];

/// Checks a `check` step before anything boots: the check exists, and `args` are the ones
/// its code reads, each of the type it reads (a wrong type would otherwise fall back to a
/// default, or fail only once the device is up). The error is the problem, without the
/// step's place.
pub fn check_args(name: &str, args: &BTreeMap<String, Value>) -> std::result::Result<(), String> {
    let Some((_, takes)) = ARGS.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = CHECKS.iter().map(|(n, _)| *n).collect();
        return Err(format!(
            "unknown check `{name}` (known: {})",
            known.join(", ")
        ));
    };
    for (key, value) in args {
        let Some(&(_, kind, _)) = takes.iter().find(|(a, _, _)| a == key) else {
            let names: Vec<&str> = takes.iter().map(|(a, _, _)| *a).collect();
            return Err(if names.is_empty() {
                format!("check `{name}` takes no arguments, but has `{key}`")
            } else {
                format!(
                    "check `{name}` has no argument `{key}` (it takes: {})",
                    names.join(", ")
                )
            });
        };
        if !kind.accepts(value) {
            return Err(format!(
                "check `{name}`: `{key}` must be {}, not {value}",
                kind.expected()
            ));
        }
    }
    if let Some((key, kind, _)) = takes
        .iter()
        .find(|(key, _, required)| *required && !args.contains_key(*key))
    {
        return Err(format!(
            "check `{name}` needs `{key}` ({})",
            kind.expected()
        ));
    }
    Ok(())
}

/// The boots the check `name` asks for with `args`, for the order of a farm's work.
pub fn boots(name: &str, args: &BTreeMap<String, Value>) -> usize {
    match name {
        "power-loss" => power_loss_boots(args),
        _ => 0,
    }
}

/// The cut points, in the order an update passes them.
pub const POINTS: &[&str] = &[
    "before-write",
    "mid-write",
    "after-write",
    "after-arm",
    "first-boot",
];

/// The boots the check asks for with `args`: one after each cut, one after the last update.
fn power_loss_boots(args: &BTreeMap<String, Value>) -> usize {
    let points = match args.get("points") {
        Some(Value::Array(list)) => list.len(),
        _ => POINTS.len(),
    };
    points + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(json: &str) -> BTreeMap<String, Value> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn every_check_lists_its_arguments() {
        let listed: Vec<&str> = CHECKS.iter().map(|(n, _)| *n).collect();
        let with_args: Vec<&str> = ARGS.iter().map(|(n, _)| *n).collect();
        assert_eq!(listed.len(), with_args.len());
        assert!(
            listed.iter().all(|n| with_args.contains(n)),
            "{with_args:?}"
        );
    }

    #[test]
    fn arguments_are_checked_by_name_and_type() {
        assert_eq!(check_args("reach", &args(r#"{"ip": "10.0.0.1"}"#)), Ok(()));
        assert_eq!(
            check_args("reach", &args(r#"{"ip": "{{host_ip}}", "port": "22"}"#)),
            Ok(())
        );
        assert_eq!(
            check_args("reboot-twice", &args("{}")).unwrap_err(),
            "unknown check `reboot-twice` (known: engine-api, mdns-resolve, http-from-device, power-loss, engine-pull, engine-delta, reach)"
        );
        assert_eq!(
            check_args("reach", &args(r#"{"ip": "10.0.0.1", "prot": 22}"#)).unwrap_err(),
            "check `reach` has no argument `prot` (it takes: ip, port)"
        );
        assert_eq!(
            check_args("reach", &args(r#"{"port": 22}"#)).unwrap_err(),
            "check `reach` needs `ip` (an IP address)"
        );
        assert_eq!(
            check_args("reach", &args(r#"{"ip": "10.0.0.300"}"#)).unwrap_err(),
            "check `reach`: `ip` must be an IP address, not \"10.0.0.300\""
        );
        assert_eq!(
            check_args("engine-api", &args(r#"{"open": "yes"}"#)).unwrap_err(),
            "check `engine-api`: `open` must be true or false, not \"yes\""
        );
        assert_eq!(
            check_args("http-from-device", &args(r#"{"url": "x"}"#)).unwrap_err(),
            "check `http-from-device` takes no arguments, but has `url`"
        );
        assert!(check_args("engine-pull", &args(r#"{"tag": "v3"}"#))
            .unwrap_err()
            .contains("`tag` must be one of v1, v2"));
        assert!(check_args(
            "power-loss",
            &args(r#"{"payload": "/p", "version": 6.0, "points": ["mid-write"]}"#)
        )
        .unwrap_err()
        .contains("`version` must be text (quote it), not 6.0"));
        assert!(check_args(
            "power-loss",
            &args(r#"{"payload": "/p", "version": "6", "points": ["mid-wirte"]}"#)
        )
        .unwrap_err()
        .contains("`points` must be a non-empty list of before-write,"));
    }
}
