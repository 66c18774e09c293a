//! Client for balenaEngine's `POST /images/delta`: asks the engine to build a v1→v2 delta image.
//!
//! balenaEngine answers with a stream of JSON progress messages (chunked), as its daemon writes
//! them in `daemon/images/image_delta.go`: `{"status":"Fingerprinting","progressDetail":{..},
//! "id":"<src>"}`, per-layer `Waiting` / `Computing delta` / `Delta complete` / `Skipping common
//! layer`, then `{"status":"Normal size: 2.05MB, Delta size: 1.1kB, 1863.64x improvement"}` and
//! `{"status":"Created delta: sha256:<id>"}`. A failure after the stream started is a line with
//! `"error"` / `"errorDetail"`; before, it is a plain error status with `{"message": ...}`.
//! A plain Docker engine has no such route and answers 404 `{"message":"page not found"}`.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;

use super::client::{HttpClient, HttpResponse};
use crate::error::{Error, Result};

/// The engine's API port in development mode.
pub const ENGINE_PORT: u16 = 2375;
/// Longest silence from the engine while it computes a delta (it sends progress as it goes).
pub const DELTA_TIMEOUT: Duration = Duration::from_secs(300);

/// What the engine made of a delta request.
#[derive(Debug, Clone, PartialEq)]
pub enum DeltaOutcome {
    /// The engine has no delta route (plain Docker): skip the delta test with this reason.
    Unsupported {
        /// The HTTP status (404).
        status: u16,
        /// The engine's answer, for the report.
        body: String,
    },
    /// The delta image was created.
    Created {
        /// Its image ID, `sha256:...`.
        image_id: String,
        /// The delta's size as the engine summarised it (decimal units, 4 significant digits).
        bytes: Option<u64>,
        /// The size of the layers it replaces, from the same summary.
        full_bytes: Option<u64>,
    },
}

/// Talks to an engine's HTTP API.
pub struct DeltaClient {
    http: HttpClient,
}

impl DeltaClient {
    /// A client for the engine at `addr` (usually the device's port [`ENGINE_PORT`]).
    pub fn tcp(addr: SocketAddr) -> Self {
        DeltaClient::new(HttpClient::new(addr, DELTA_TIMEOUT))
    }

    /// A client sending its requests through `http`.
    pub fn new(http: HttpClient) -> Self {
        DeltaClient { http }
    }

    /// Asks the engine for the delta from image `src` to image `dest` (names or IDs the engine
    /// holds). Failures the device causes are [`Error::Failed`]; transport ones [`Error::Infra`].
    pub fn create(&self, src: &str, dest: &str) -> Result<DeltaOutcome> {
        let target = format!("/images/delta?src={}&dest={}", escape(src), escape(dest));
        parse_delta_response(&self.http.post(&target, b"")?)
    }

    /// Waits until the engine answers `GET /_ping` (it starts listening some seconds after the
    /// device's SSH does), up to `timeout`; Ctrl-C/SIGTERM ends the wait at once.
    pub fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let deadline = std::time::Instant::now() + timeout;
        let ping = HttpClient::new(self.http.addr(), Duration::from_secs(5));
        loop {
            let last = match ping.get("/_ping") {
                Ok(r) if r.status == 200 => return Ok(()),
                Ok(r) => format!("HTTP {}", r.status),
                Err(e) => e.to_string(),
            };
            if crate::interrupt::requested() {
                return Err(Error::Interrupted);
            }
            if std::time::Instant::now() >= deadline {
                return Err(Error::failed(format!(
                    "the engine's API at {} did not answer /_ping within {}s: {last}",
                    self.http.addr(),
                    timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The image `image` as the engine exports it (`GET /images/<image>/get`: a tar).
    pub fn export(&self, image: &str) -> Result<Vec<u8>> {
        let resp = self.http.get(&format!("/images/{}/get", escape(image)))?;
        if resp.status != 200 {
            return Err(Error::failed(format!(
                "engine: export {image}: {}",
                summary(&resp)
            )));
        }
        Ok(resp.body)
    }

    /// Pulls `reference` (`host:port/repo:tag`): `Err` with the engine's own words when the
    /// pull fails (an error line in its progress stream, or an error status).
    pub fn pull(&self, reference: &str) -> Result<std::result::Result<(), String>> {
        let (name, tag) = reference
            .rsplit_once(':')
            .filter(|(_, t)| !t.contains('/'))
            .unwrap_or((reference, "latest"));
        let target = format!(
            "/images/create?fromImage={}&tag={}",
            escape(name),
            escape(tag)
        );
        let resp = self.http.post(&target, b"")?;
        if resp.status != 200 {
            return Ok(Err(summary(&resp)));
        }
        let text = String::from_utf8_lossy(&resp.body);
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let msg: Value = serde_json::from_str(line).unwrap_or_default();
            if let Some(error) = msg["errorDetail"]["message"]
                .as_str()
                .or(msg["error"].as_str())
            {
                return Ok(Err(error.to_string()));
            }
        }
        Ok(Ok(()))
    }

    /// Removes `image` and every tag of it (`DELETE /images/<image>?force=1`); `false` when
    /// the engine does not hold it.
    pub fn remove(&self, image: &str) -> Result<bool> {
        let resp = self.http.send(
            "DELETE",
            &format!("/images/{}?force=1", escape(image)),
            &[],
            None,
        )?;
        match resp.status {
            200 => Ok(true),
            404 => Ok(false),
            _ => Err(Error::failed(format!(
                "engine: remove {image}: {}",
                summary(&resp)
            ))),
        }
    }

    /// `GET /images/<image>/json`; `None` when the engine does not hold `image`.
    fn inspect(&self, image: &str) -> Result<Option<Value>> {
        let resp = self.http.get(&format!("/images/{}/json", escape(image)))?;
        if resp.status == 404 {
            return Ok(None);
        }
        if resp.status != 200 {
            return Err(Error::failed(format!(
                "engine: inspect {image}: {}",
                summary(&resp)
            )));
        }
        serde_json::from_slice(&resp.body)
            .map(Some)
            .map_err(|e| Error::failed(format!("engine: inspect {image}: bad JSON: {e}")))
    }

    /// The ID of `image` (field `Id`); `None` when the engine does not hold it.
    pub fn image_id(&self, image: &str) -> Result<Option<String>> {
        Ok(self
            .inspect(image)?
            .and_then(|json| json["Id"].as_str().map(str::to_string)))
    }

    /// The size the engine reports for `image` (field `Size`).
    pub fn image_size(&self, image: &str) -> Result<u64> {
        self.inspect(image)?
            .and_then(|json| json["Size"].as_u64())
            .ok_or_else(|| {
                Error::failed(format!("engine: inspect {image}: no such image or no Size"))
            })
    }
}

/// Reads the engine's answer to `POST /images/delta`.
pub fn parse_delta_response(resp: &HttpResponse) -> Result<DeltaOutcome> {
    if resp.status == 404 && !is_missing_image(&resp.body) {
        let body = String::from_utf8_lossy(&resp.body).trim().to_string();
        return Ok(DeltaOutcome::Unsupported {
            status: resp.status,
            body,
        });
    }
    if resp.status != 200 {
        return Err(Error::failed(format!("engine: delta: {}", summary(resp))));
    }
    let (mut image_id, mut bytes, mut full_bytes) = (None, None, None);
    let text = String::from_utf8_lossy(&resp.body);
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let msg: Value = serde_json::from_str(line).map_err(|e| {
            Error::failed(format!("engine: delta: unreadable progress {line:?}: {e}"))
        })?;
        if let Some(error) = msg["errorDetail"]["message"]
            .as_str()
            .or(msg["error"].as_str())
        {
            return Err(Error::failed(format!("engine: delta: {error}")));
        }
        let status = msg["status"].as_str().unwrap_or_default();
        if let Some(id) = status.strip_prefix("Created delta: ") {
            image_id = Some(id.trim().to_string());
        } else if let Some((full, delta)) = sizes(status) {
            (full_bytes, bytes) = (full, delta);
        } else if let Some(id) = final_id(&msg) {
            image_id = Some(id.to_string());
        }
    }
    match image_id {
        Some(image_id) => Ok(DeltaOutcome::Created {
            image_id,
            bytes,
            full_bytes,
        }),
        None => Err(Error::failed(
            "engine: delta: the stream ended without a delta image ID",
        )),
    }
}

/// A bare `{"id":"sha256:..."}` or `{"aux":{"ID":"sha256:..."}}`: other engines' final message.
/// Progress lines also carry `id`, but with a status and a short or named id.
fn final_id(msg: &Value) -> Option<&str> {
    let id = msg["aux"]["ID"]
        .as_str()
        .or_else(|| msg["status"].is_null().then(|| msg["id"].as_str())?)?;
    id.strip_prefix("sha256:")
        .filter(|hex| hex.len() == 64)
        .map(|_| id)
}

/// A 404 from balenaEngine itself (the route exists, an image does not), not plain Docker's.
fn is_missing_image(body: &[u8]) -> bool {
    let msg: Value = serde_json::from_slice(body).unwrap_or_default();
    msg["message"]
        .as_str()
        .is_some_and(|m| m.to_ascii_lowercase().contains("no such image"))
}

/// `Normal size: 2.05MB, Delta size: 1.1kB, ...` → (full, delta) in bytes.
fn sizes(status: &str) -> Option<(Option<u64>, Option<u64>)> {
    let rest = status.strip_prefix("Normal size: ")?;
    let (full, rest) = rest.split_once(", Delta size: ")?;
    let delta = rest.split(',').next()?;
    Some((human_bytes(full), human_bytes(delta)))
}

/// Parses go-units' `HumanSize` (`"1.1kB"`, `"512B"`, `"2.05MB"`: decimal units).
fn human_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let power = ["B", "kB", "MB", "GB", "TB", "PB"]
        .iter()
        .position(|u| *u == unit)?;
    Some((number * 1000f64.powi(power as i32)).round() as u64)
}

fn summary(resp: &HttpResponse) -> String {
    let body = String::from_utf8_lossy(&resp.body);
    let msg: Value = serde_json::from_str(&body).unwrap_or_default();
    let text = msg["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| body.trim().to_string());
    format!(
        "HTTP {}: {}",
        resp.status,
        text.chars().take(300).collect::<String>()
    )
}

/// Percent-encodes everything but unreserved characters and `:`, `/` and `@` (image references).
fn escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'.'
            | b'_'
            | b'~'
            | b':'
            | b'/'
            | b'@' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::replay;

    /// A client whose one request gets `response` (recorded bytes) from a loopback server;
    /// the handle gives the request as the server received it.
    fn client(response: &'static [u8]) -> (DeltaClient, std::thread::JoinHandle<String>) {
        let (addr, server) = replay::serve(response);
        (DeltaClient::tcp(addr), server)
    }

    #[test]
    fn waiting_for_the_engine_is_bounded_and_says_what_it_waited_for() {
        // A port nobody listens on (bound, then freed).
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let began = std::time::Instant::now();
        let e = DeltaClient::tcp(addr)
            .wait_ready(Duration::from_secs(1))
            .unwrap_err();
        assert!(began.elapsed() < Duration::from_secs(5));
        assert!(matches!(e, Error::Failed(_)), "{e}");
        assert!(
            e.to_string().contains("did not answer /_ping within 1s"),
            "{e}"
        );
        let (c, _server) = client(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nOK");
        c.wait_ready(Duration::from_secs(5)).unwrap();
    }

    /// Plain Docker (moby) on an unknown route: `{"message":"page not found"}`, 404.
    const RECORDED_DOCKER_404: &[u8] = b"HTTP/1.1 404 Not Found\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: Docker/20.10.24 (linux)\r\nDate: Wed, 25 Nov 2026 18:00:00 GMT\r\nContent-Length: 29\r\n\r\n{\"message\":\"page not found\"}\n";

    /// balenaEngine building a delta between two images sharing their base layer. Not captured
    /// from a device (the reference image runs an engine without deltas): reconstructed from the
    /// messages its `DeltaCreate` writes, one chunk per message as Go's `WriteFlusher` sends them.
    const RECORDED_BALENA_DELTA: &[u8] = b"HTTP/1.1 200 OK\r\nApi-Version: 1.40\r\nContent-Type: application/json\r\nServer: Docker/19.03.30 (linux)\r\nTransfer-Encoding: chunked\r\n\r\n\
78\r\n{\"status\":\"Fingerprinting\",\"progressDetail\":{\"current\":1081856,\"total\":2073600},\"progress\":\"[=====>  ]\",\"id\":\"app:v1\"}\r\n\r\n\
51\r\n{\"status\":\"Fingerprint complete, took 1.02s\",\"progressDetail\":{},\"id\":\"app:v1\"}\r\n\r\n\
3e\r\n{\"status\":\"Waiting\",\"progressDetail\":{},\"id\":\"4f1c9e0d2a3b\"}\r\n\r\n\
3e\r\n{\"status\":\"Waiting\",\"progressDetail\":{},\"id\":\"9a8b7c6d5e4f\"}\r\n\r\n\
4c\r\n{\"status\":\"Skipping common layer\",\"progressDetail\":{},\"id\":\"4f1c9e0d2a3b\"}\r\n\r\n\
45\r\n{\"status\":\"Delta complete\",\"progressDetail\":{},\"id\":\"9a8b7c6d5e4f\"}\r\n\r\n\
4b\r\n{\"status\":\"Normal size: 10.24kB, Delta size: 1.536kB, 6.67x improvement\"}\r\n\r\n\
65\r\n{\"status\":\"Created delta: sha256:5d41402abc4b2a76b9719d911017c592ae7d6f5c1b6d2b8f9e0a1c2d3e4f5a6b\"}\r\n\r\n\
0\r\n\r\n";

    /// balenaEngine asked for an image it does not hold, before the stream starts.
    const RECORDED_BALENA_NO_SUCH_IMAGE: &[u8] = b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 59\r\n\r\n{\"message\":\"no such image: app:v9: No such image: app:v9\"}\n";

    /// balenaEngine failing after the stream started.
    const RECORDED_BALENA_STREAM_ERROR: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n\
{\"status\":\"Fingerprinting\",\"progressDetail\":{},\"id\":\"app:v1\"}\r\n\
{\"errorDetail\":{\"message\":\"no space left on device\"},\"error\":\"no space left on device\"}\r\n";

    #[test]
    fn plain_docker_is_unsupported() {
        let (c, _) = client(RECORDED_DOCKER_404);
        let outcome = c.create("app:v1", "app:v2").unwrap();
        assert_eq!(
            outcome,
            DeltaOutcome::Unsupported {
                status: 404,
                body: "{\"message\":\"page not found\"}".into()
            }
        );
    }

    #[test]
    fn balena_delta_stream_gives_the_image_id_and_sizes() {
        let (c, server) = client(RECORDED_BALENA_DELTA);
        let outcome = c
            .create("10.0.2.2:5000/app:v1", "10.0.2.2:5000/app:v2")
            .unwrap();
        let want_id = "sha256:5d41402abc4b2a76b9719d911017c592ae7d6f5c1b6d2b8f9e0a1c2d3e4f5a6b";
        assert_eq!(
            outcome,
            DeltaOutcome::Created {
                image_id: want_id.into(),
                bytes: Some(1536),
                full_bytes: Some(10240)
            }
        );
        let sent = server.join().unwrap();
        assert!(
            sent.starts_with("POST /images/delta?src=10.0.2.2:5000/app:v1&dest=10.0.2.2:5000/app:v2 HTTP/1.1\r\n"),
            "{sent}"
        );
        // Header names as ureq writes them: lower case (HTTP header names are case-insensitive).
        let host = format!("host: {}\r\n", c.http.addr());
        assert!(
            sent.contains(&host) && sent.contains("content-length: 0\r\n"),
            "{sent}"
        );
    }

    #[test]
    fn engine_errors_are_failed_checks() {
        for recorded in [RECORDED_BALENA_NO_SUCH_IMAGE, RECORDED_BALENA_STREAM_ERROR] {
            let err = client(recorded).0.create("app:v9", "app:v2").unwrap_err();
            assert!(matches!(err, Error::Failed(_)), "{err}");
        }
        let err = client(RECORDED_BALENA_STREAM_ERROR)
            .0
            .create("a", "b")
            .unwrap_err();
        assert_eq!(err.to_string(), "engine: delta: no space left on device");
        let cut: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n{\"status\":\"Fingerprinting\"}\r\n";
        assert!(matches!(
            client(cut).0.create("a", "b"),
            Err(Error::Failed(_))
        ));
    }

    #[test]
    fn other_engines_final_id_is_accepted() {
        let id = format!("sha256:{}", "a".repeat(64));
        let body = format!(
            "{{\"status\":\"Waiting\",\"id\":\"{}\"}}\n{{\"id\":\"{id}\"}}\n",
            &id[7..19]
        );
        let resp = HttpResponse {
            status: 200,
            headers: vec![],
            body: body.into_bytes(),
        };
        let outcome = parse_delta_response(&resp).unwrap();
        assert_eq!(
            outcome,
            DeltaOutcome::Created {
                image_id: id,
                bytes: None,
                full_bytes: None
            }
        );
    }

    #[test]
    fn image_size_reads_inspect() {
        const RECORDED_INSPECT: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 49\r\n\r\n{\"Id\":\"sha256:ab\",\"Size\":2075136,\"VirtualSize\":0}";
        let (c, server) = client(RECORDED_INSPECT);
        assert_eq!(c.image_size("app:v2").unwrap(), 2_075_136);
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /images/app:v2/json HTTP/1.1"));
    }

    #[test]
    fn tcp_client_reads_a_chunked_stream_from_a_socket() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let engine = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
                head.push(byte[0]);
            }
            for piece in RECORDED_BALENA_DELTA.chunks(50) {
                conn.write_all(piece).unwrap();
            }
            String::from_utf8(head).unwrap()
        });
        let outcome = DeltaClient::tcp(addr).create("app:v1", "app:v2").unwrap();
        assert!(matches!(
            outcome,
            DeltaOutcome::Created {
                bytes: Some(1536),
                ..
            }
        ));
        assert!(engine
            .join()
            .unwrap()
            .starts_with("POST /images/delta?src=app:v1&dest=app:v2 "));
    }

    #[test]
    fn human_sizes_and_escaping() {
        assert_eq!(human_bytes("512B"), Some(512));
        assert_eq!(human_bytes("1.1kB"), Some(1100));
        assert_eq!(human_bytes("2.05MB"), Some(2_050_000));
        assert_eq!(human_bytes("lots"), None);
        assert_eq!(escape("reg:5000/app:v1 &x"), "reg:5000/app:v1%20%26x");
    }
}
