//! A small blocking HTTP/1.1 client (ureq underneath) for the device's engine API and the checks.
//!
//! Plain HTTP only: the engine API and the harness's own servers sit on loopback or the rig's
//! private LAN. No proxy from the environment, no redirects, no connection kept between
//! requests, and every status comes back as an [`HttpResponse`] rather than an error.

use std::net::SocketAddr;
use std::time::Duration;

use crate::error::{Error, Result};

/// The largest response body we keep in memory.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;
/// The longest a connect may take, whatever the read timeout: a device that is down fails fast.
const MAX_CONNECT: Duration = Duration::from_secs(10);

/// A response, read to the end.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers, names in lower case; look them up with [`header`](Self::header).
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked (empty for `HEAD`, 204 and 304).
    pub body: Vec<u8>,
}

impl HttpResponse {
    /// The first header named `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends requests to one server address.
#[derive(Debug, Clone)]
pub struct HttpClient {
    addr: SocketAddr,
    agent: ureq::Agent,
}

impl HttpClient {
    /// A client for the server at `addr`. `timeout` bounds every read and write (the longest
    /// silence, not the whole exchange: a server may stream for longer while it keeps sending),
    /// and the connect (at most 10 s).
    pub fn new(addr: SocketAddr, timeout: Duration) -> HttpClient {
        let config = ureq::Agent::config_builder()
            .proxy(None)
            .max_redirects(0)
            .http_status_as_error(false)
            .max_idle_connections(0)
            .timeout_connect(Some(timeout.min(MAX_CONNECT)))
            .timeout_per_read(Some(timeout))
            .timeout_per_write(Some(timeout))
            .build();
        HttpClient {
            addr,
            agent: ureq::Agent::new_with_config(config),
        }
    }

    /// The server's address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `GET target` (a path with an optional query, e.g. `/_ping`).
    pub fn get(&self, target: &str) -> Result<HttpResponse> {
        self.send("GET", target, &[], None)
    }

    /// `POST target` with `body` (empty is sent as `Content-Length: 0`).
    pub fn post(&self, target: &str, body: &[u8]) -> Result<HttpResponse> {
        self.send("POST", target, &[], Some(body))
    }

    /// Any `method` with extra `headers`; `body: None` sends none.
    /// Transport and protocol failures (refused, timed out, cut short, malformed) are
    /// [`Error::Infra`]; any status the server sends is a response.
    pub fn send(
        &self,
        method: &str,
        target: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Result<HttpResponse> {
        let url = format!("http://{}{target}", self.addr);
        let failed = |e: &dyn std::fmt::Display| Error::infra(format!("{method} {url}: {e}"));
        let mut request = ureq::http::Request::builder().method(method).uri(&url);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let sent = match body {
            Some(body) => request.body(body).map(|r| self.agent.run(r)),
            None => request.body(()).map(|r| self.agent.run(r)),
        };
        let mut response = sent.map_err(|e| failed(&e))?.map_err(|e| failed(&e))?;
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                (name.as_str().to_string(), value)
            })
            .collect();
        let body = response
            .body_mut()
            .with_config()
            .limit(MAX_RESPONSE as u64)
            .read_to_vec()
            .map_err(|e| failed(&e))?;
        Ok(HttpResponse {
            status: response.status().as_u16(),
            headers,
            body,
        })
    }
}

/// A one-connection server on loopback that records the request and answers with fixed bytes.
#[cfg(test)]
pub(crate) mod replay {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::thread::JoinHandle;

    /// Serves `response` (raw bytes, as recorded) to one connection, then closes it; the
    /// handle gives the request head as received (and its body, if it announced one).
    pub(crate) fn serve(response: &'static [u8]) -> (SocketAddr, JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let (mut head, mut line) = (String::new(), String::new());
            while reader.read_line(&mut line).unwrap() > 0 && line != "\r\n" {
                head.push_str(&line);
                line.clear();
            }
            head.push_str(&line);
            let length = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                .map_or(0, |(_, v)| v.trim().parse().unwrap());
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            head.push_str(&String::from_utf8_lossy(&body));
            conn.write_all(response).unwrap();
            head
        });
        (addr, server)
    }
}

#[cfg(test)]
mod tests {
    use super::replay::serve;
    use super::*;

    /// Replays `raw` to one request and returns the client's answer.
    fn answer(method: &str, raw: &'static [u8]) -> Result<HttpResponse> {
        let (addr, server) = serve(raw);
        let got = HttpClient::new(addr, Duration::from_secs(5)).send(method, "/", &[], None);
        server.join().unwrap();
        got
    }

    #[test]
    fn parses_length_chunked_and_head() {
        let r = answer("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}").unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"{}".as_slice()));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(answer("GET", raw).unwrap().body, b"abcde");
        let h = answer("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n").unwrap();
        assert!(h.body.is_empty() && h.header("CONTENT-length") == Some("9"));
    }

    #[test]
    fn refuses_cut_short_responses() {
        let short = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc";
        assert!(answer("GET", short).is_err());
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc";
        assert!(answer("GET", cut).is_err());
        assert!(answer("GET", b"garbage").is_err());
        let err = answer("GET", b"").unwrap_err();
        assert!(matches!(err, Error::Infra(_)), "{err}");
    }

    #[test]
    fn post_sends_length_and_other_statuses_are_answers() {
        let (addr, server) = serve(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let r = HttpClient::new(addr, Duration::from_secs(5))
            .post("/x?a=b:c/d", b"")
            .unwrap();
        assert_eq!(r.status, 404);
        let sent = server.join().unwrap().to_ascii_lowercase();
        assert!(sent.starts_with("post /x?a=b:c/d http/1.1\r\n"), "{sent}");
        assert!(sent.contains(&format!("\r\nhost: {addr}\r\n")), "{sent}");
        assert!(sent.contains("\r\ncontent-length: 0\r\n"), "{sent}");
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_port_is_refused() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let started = std::time::Instant::now();
        let err = HttpClient::new(addr, Duration::from_millis(300))
            .get("/")
            .unwrap_err();
        assert!(matches!(err, Error::Infra(_)), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(listener);
        assert!(HttpClient::new(addr, Duration::from_secs(1))
            .get("/")
            .is_err());
    }
}
