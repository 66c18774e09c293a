//! Checks written in Rust, for what a YAML step cannot say; a test names them in a `check`
//! step with its arguments (see [`crate::runner::checks`] for the catalog). Each is bounded by
//! the step's timeout and says what it waited for.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::dut::Dut;
use crate::error::{Context, Error, Result};

/// Runs the check `name` with `args`.
pub fn run(
    dut: &mut Dut,
    name: &str,
    args: &BTreeMap<String, Value>,
    timeout: Duration,
) -> Result<()> {
    let args = Args {
        args,
        dut_vars: dut.vars.clone(),
    };
    match name {
        "engine-api" => engine_api(dut, &args, timeout),
        "mdns-resolve" => mdns_resolve(dut, &args, timeout),
        "http-from-device" => http_from_device(dut, timeout),
        "reach" => reach(dut, &args, timeout),
        "power-loss" => super::power_loss::run(dut, args.args, timeout),
        "engine-pull" => super::engine::pull(dut, args.args, timeout),
        "engine-delta" => super::engine::delta(dut, args.args, timeout),
        other => Err(Error::input(format!("unknown check `{other}`"))),
    }
}

/// A check's arguments, with `{{var}}` expanded.
struct Args<'a> {
    args: &'a BTreeMap<String, Value>,
    dut_vars: BTreeMap<String, String>,
}

impl Args<'_> {
    fn str(&self, key: &str) -> Option<String> {
        let raw = match self.args.get(key)? {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let mut out = raw;
        for (k, v) in &self.dut_vars {
            out = out.replace(&format!("{{{{{k}}}}}"), v);
        }
        Some(out)
    }

    fn ip(&self, key: &str) -> Result<Option<IpAddr>> {
        self.str(key)
            .map(|s| {
                s.parse().map_err(|_| {
                    Error::input(format!(
                        "check argument `{key}`: `{s}` is not an IP address"
                    ))
                })
            })
            .transpose()
    }
}

fn engine_api(dut: &mut Dut, args: &Args, timeout: Duration) -> Result<()> {
    let open = args
        .args
        .get("open")
        .and_then(Value::as_bool)
        .unwrap_or(true);
    let addr = dut
        .target
        .engine_addr()
        .ok_or_else(|| Error::infra("this target has no engine address"))?;
    let deadline = Instant::now() + timeout;
    loop {
        let answer = http_get(addr, "/_ping", Duration::from_secs(5));
        dut.note(&format!("GET http://{addr}/_ping -> {answer:?}"));
        match (&answer, open) {
            (Ok(body), true) if body.trim() == "OK" => return Ok(()),
            (Err(_), false) => return Ok(()),
            // A live change takes a moment (config unit, engine restart): closed within the
            // timeout passes.
            (Ok(body), false) if Instant::now() >= deadline => {
                return Err(Error::failed(format!(
                "the engine API on port 2375 still answered ({:?}) after {}s but must be closed",
                body.trim(),
                timeout.as_secs()
            )))
            }
            _ if Instant::now() >= deadline => {
                return Err(Error::failed(format!(
                "the engine API on port 2375 did not answer /_ping with OK within {}s ({answer:?})",
                timeout.as_secs()
            )))
            }
            _ => std::thread::sleep(Duration::from_secs(1)),
        }
    }
}

fn mdns_resolve(dut: &mut Dut, args: &Args, timeout: Duration) -> Result<()> {
    use mdns_sd::{HostnameResolutionEvent, ServiceDaemon};
    let name = args
        .str("name")
        .ok_or_else(|| Error::input("mdns-resolve needs `name`"))?;
    let want = match args.ip("ip")? {
        Some(ip) => ip,
        None => dut.target.ssh_addr(timeout)?.ip(),
    };
    let fqdn = format!(
        "{}.local.",
        name.trim_end_matches('.').trim_end_matches(".local")
    );
    let daemon = ServiceDaemon::new().infra_ctx(|| "cannot start the mDNS resolver".into())?;
    let events = daemon
        .resolve_hostname(&fqdn, Some(timeout.as_millis() as u64))
        .infra_ctx(|| format!("cannot resolve {fqdn}"))?;
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    let result = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match events.recv_timeout(left) {
            Ok(HostnameResolutionEvent::AddressesFound(_, addrs)) => {
                seen.extend(addrs.iter().map(|a| a.to_ip_addr()));
                if seen.contains(&want) {
                    break Ok(());
                }
            }
            Ok(HostnameResolutionEvent::SearchTimeout(_)) | Err(_) => {
                break Err(Error::failed(format!(
                    "{fqdn} did not resolve by mDNS to {want} within {}s (answers: {seen:?})",
                    timeout.as_secs()
                )))
            }
            Ok(_) => {}
        }
    };
    let _ = daemon.shutdown();
    dut.note(&format!("mDNS {fqdn} -> {seen:?}"));
    result
}

fn http_from_device(dut: &mut Dut, timeout: Duration) -> Result<()> {
    let bind = dut.target.serve_addr();
    let seen_from = dut
        .target
        .host_addr()
        .ok_or_else(|| Error::infra("this target cannot reach the harness"))?;
    let listener = TcpListener::bind((bind, 0)).infra_ctx(|| format!("cannot listen on {bind}"))?;
    let port = listener
        .local_addr()
        .infra_ctx(|| "no local address".into())?
        .port();
    let token = format!(
        "harness-{:x}",
        std::process::id() as u64 * 7919 + port as u64
    );
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    {
        let (token, served) = (token.clone(), served.clone());
        listener
            .set_nonblocking(false)
            .infra_ctx(|| "cannot configure the listener".into())?;
        std::thread::spawn(move || {
            // One answer per connection; the thread ends with the test process or after 20.
            for stream in listener.incoming().take(20).flatten() {
                if serve_one(stream, &token).is_ok() {
                    served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            }
        });
    }
    let url = format!("http://{seen_from}:{port}/token");
    let out = dut.exec(
        &format!("curl -fsS --max-time {} {url}", timeout.as_secs().max(5)),
        timeout + Duration::from_secs(5),
    )?;
    if out.status != 0 || out.stdout.trim() != token {
        return Err(Error::failed(format!(
            "the device could not fetch {url} from the harness (exit {}, got {:?}, stderr {:?})",
            out.status,
            out.stdout.trim(),
            out.stderr.trim()
        )));
    }
    dut.record(
        "http_requests_served",
        served.load(std::sync::atomic::Ordering::SeqCst),
    );
    Ok(())
}

fn serve_one(mut stream: TcpStream, body: &str) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    // Read the request head, bounded by the timeout and a line limit.
    for _ in 0..100 {
        line.clear();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    write!(
        stream,
        "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn reach(dut: &mut Dut, args: &Args, timeout: Duration) -> Result<()> {
    let ip = args
        .ip("ip")?
        .ok_or_else(|| Error::input("reach needs `ip`"))?;
    let port = args
        .str("port")
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| Error::input(format!("reach: bad port {p}")))
        })
        .transpose()?
        .unwrap_or(22222);
    let addr = SocketAddr::new(ip, port);
    crate::ssh::wait_for_banner(addr, timeout).map_err(|e| Error::failed(e.to_string()))?;
    dut.note(&format!("SSH banner seen at {addr}"));
    Ok(())
}

/// GET `path` from `addr` with the registry's HTTP client; the body of a 200 answer.
fn http_get(
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> std::result::Result<String, String> {
    let answer = crate::registry::HttpClient::new(addr, timeout)
        .get(path)
        .map_err(|e| e.to_string())?;
    if answer.status != 200 {
        return Err(format!("HTTP {}", answer.status));
    }
    Ok(String::from_utf8_lossy(&answer.body).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    /// A one-shot server on loopback sending `answer` (real sockets; stands in for 2375).
    fn serve(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(answer);
            }
        });
        addr
    }

    #[test]
    fn http_get_returns_the_body_of_a_200() {
        let addr = serve(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        assert_eq!(
            http_get(addr, "/_ping", Duration::from_secs(5)).unwrap(),
            "OK"
        );
    }

    #[test]
    fn http_get_fails_on_a_closed_answer_or_another_status() {
        // QEMU's port forwarder accepts and closes when nothing listens in the guest.
        assert!(http_get(serve(b""), "/_ping", Duration::from_secs(5)).is_err());
        let err = http_get(
            serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"),
            "/",
            Duration::from_secs(5),
        );
        assert_eq!(err.unwrap_err(), "HTTP 404");
    }
}
