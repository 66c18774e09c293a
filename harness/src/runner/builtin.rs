//! Checks written in Rust, for what a YAML step cannot say; a test names them in a `check`
//! step with its arguments.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::Value;

use super::dut::Dut;
use crate::error::{Error, Result};

/// The names of the built-in checks, with one line each.
pub const CHECKS: &[(&str, &str)] = &[(
    "engine-api",
    "the engine's TCP API (2375) from the harness: `open: true` answers GET /_ping with OK, `open: false` does not answer",
)];

/// Whether `name` is a built-in check.
pub fn exists(name: &str) -> bool {
    CHECKS.iter().any(|(n, _)| *n == name)
}

/// Runs the check `name` with `args`.
pub fn run(dut: &mut Dut, name: &str, args: &BTreeMap<String, Value>, timeout: Duration) -> Result<()> {
    match name {
        "engine-api" => engine_api(dut, args, timeout),
        other => Err(Error::input(format!("unknown check `{other}`"))),
    }
}

fn engine_api(dut: &mut Dut, args: &BTreeMap<String, Value>, timeout: Duration) -> Result<()> {
    let open = args.get("open").and_then(Value::as_bool).unwrap_or(true);
    let addr = dut
        .target
        .engine_addr()
        .ok_or_else(|| Error::infra("this target has no engine address"))?;
    let deadline = std::time::Instant::now() + timeout;
    loop {
        let answer = http_get(addr, "/_ping", Duration::from_secs(5));
        dut.note(&format!("GET http://{addr}/_ping -> {answer:?}"));
        match (&answer, open) {
            (Ok(body), true) if body.trim() == "OK" => return Ok(()),
            (Err(_), false) => {
                return Ok(());
            }
            (Ok(body), false) => {
                return Err(Error::failed(format!(
                    "the engine API on port 2375 answered ({:?}) but must be closed",
                    body.trim()
                )))
            }
            _ if std::time::Instant::now() >= deadline => {
                return Err(Error::failed(format!(
                    "the engine API on port 2375 did not answer /_ping with OK within {}s ({answer:?})",
                    timeout.as_secs()
                )))
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

/// A minimal HTTP/1.0 GET; returns the body of a 200 answer.
pub fn http_get(addr: std::net::SocketAddr, path: &str, timeout: Duration) -> std::result::Result<String, String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(timeout)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut text = String::new();
    s.read_to_string(&mut text).map_err(|e| e.to_string())?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or("no HTTP answer")?;
    if !head.starts_with("HTTP/1.") || !head.contains(" 200 ") {
        return Err(format!("HTTP answer: {}", head.lines().next().unwrap_or("")));
    }
    Ok(body.to_string())
}
