//! A tiny synchronous HTTP/1.1 client (one request per connection) behind a trait tests can replay.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::error::{Context, Error, Result};

/// The largest response we keep in memory.
pub const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// Carries one request to a server and brings back the raw response.
pub trait Transport {
    /// Sends `request` (complete, with `Connection: close`) and returns every byte the server
    /// sent until it closed the connection.
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>>;
}

/// [`Transport`] over a fresh TCP connection per request.
#[derive(Debug, Clone)]
pub struct TcpTransport {
    addr: SocketAddr,
    /// Longest wait between two reads or writes.
    timeout: Duration,
}

impl TcpTransport {
    /// A transport to `addr`; `timeout` bounds every read and write, and the connect (at most 10 s).
    pub fn new(addr: SocketAddr, timeout: Duration) -> TcpTransport {
        TcpTransport { addr, timeout }
    }
}

impl Transport for TcpTransport {
    fn exchange(&mut self, request: &[u8]) -> Result<Vec<u8>> {
        let addr = self.addr;
        // A device that is down should fail fast even when reads may take minutes.
        let connect = self.timeout.min(Duration::from_secs(10));
        let mut stream = TcpStream::connect_timeout(&addr, connect)
            .infra_ctx(|| format!("connecting to {addr}"))?;
        stream
            .set_read_timeout(Some(self.timeout))
            .infra_ctx(|| format!("{addr}"))?;
        stream
            .set_write_timeout(Some(self.timeout))
            .infra_ctx(|| format!("{addr}"))?;
        stream
            .write_all(request)
            .infra_ctx(|| format!("sending to {addr}"))?;
        let mut raw = Vec::new();
        let limit = MAX_RESPONSE as u64 + 1;
        stream
            .take(limit)
            .read_to_end(&mut raw)
            .infra_ctx(|| format!("reading from {addr}"))?;
        if raw.len() > MAX_RESPONSE {
            return Err(Error::infra(format!(
                "{addr}: response larger than {MAX_RESPONSE} bytes"
            )));
        }
        Ok(raw)
    }
}

/// A request with `Host` and `Connection: close`, and no body unless `body` is given.
pub fn request(
    method: &str,
    host: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpResponse {
    /// The status code.
    pub status: u16,
    /// Headers in the order sent, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
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

/// Parses a complete response read until close. `head_request`: the request was `HEAD`, so
/// there is no body whatever Content-Length says. Malformed or cut-short input is [`Error::Infra`].
pub fn parse_response(raw: &[u8], head_request: bool) -> Result<HttpResponse> {
    let bad = |what: &str| Error::infra(format!("malformed HTTP response: {what}"));
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..split]).map_err(|_| bad("headers are not UTF-8"))?;
    let rest = &raw[split + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_ascii_whitespace()
        .nth(1)
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|_| status_line.starts_with("HTTP/1."))
        .ok_or_else(|| bad("status line"))?;
    let headers = lines
        .map(|l| {
            l.split_once(':')
                .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        })
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| bad("header line"))?;
    let mut resp = HttpResponse {
        status,
        headers,
        body: Vec::new(),
    };
    if head_request || status == 204 || status == 304 {
        return Ok(resp);
    }
    let chunked = resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"));
    resp.body = if chunked {
        dechunk(rest).ok_or_else(|| bad("chunked body"))?
    } else if let Some(len) = resp.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("content-length"))?;
        rest.get(..len)
            .ok_or_else(|| bad("body shorter than content-length"))?
            .to_vec()
    } else {
        rest.to_vec()
    };
    Ok(resp)
}

fn dechunk(mut rest: &[u8]) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(body); // trailers, if any, are ignored
        }
        body.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size..)?.strip_prefix(b"\r\n")?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_length_chunked_and_head() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}", false).unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, b"{}".as_slice()));
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw, false).unwrap().body, b"abcde");
        let h = parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true).unwrap();
        assert!(h.body.is_empty() && h.header("CONTENT-length") == Some("9"));
    }

    #[test]
    fn refuses_cut_short_responses() {
        assert!(parse_response(b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabc", false).is_err());
        let cut = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n9\r\nabc";
        assert!(parse_response(cut, false).is_err());
        assert!(parse_response(b"garbage", false).is_err());
    }

    #[test]
    fn requests_close_and_post_sends_length() {
        let r = request("POST", "h:1", "/x", &[], b"");
        assert_eq!(
            r,
            b"POST /x HTTP/1.1\r\nHost: h:1\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        );
    }
}
