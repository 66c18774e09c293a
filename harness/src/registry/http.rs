//! Server-side HTTP/1.1, just enough for a registry: read one request head, write one response.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The largest request head we read; registry clients send well under 2 KiB.
pub(crate) const MAX_HEAD: usize = 16 * 1024;
/// Bodies are written in chunks of this size, each counted before it is written.
const CHUNK: usize = 64 * 1024;

/// The parts of a request the registry looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Request {
    pub method: String,
    pub target: String,
    /// Media types from every `Accept` header, parameters stripped.
    pub accept: Vec<String>,
    pub keep_alive: bool,
    /// The request announced a body (Content-Length > 0 or Transfer-Encoding): we never read one.
    pub has_body: bool,
}

/// A response: status, extra headers and the full body (also its Content-Length for `HEAD`).
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub headers: Vec<(&'static str, String)>,
    pub body: Arc<[u8]>,
}

/// Reads one request head. `Ok(None)` when the peer closed before sending anything.
pub(crate) async fn read_request<R: AsyncBufRead + Unpin>(
    r: &mut R,
) -> io::Result<Option<Request>> {
    let mut head = Vec::new();
    loop {
        let start = head.len();
        let room = (MAX_HEAD - head.len()) as u64;
        if room == 0 {
            return Err(invalid("request head too large"));
        }
        let n = (&mut *r).take(room).read_until(b'\n', &mut head).await?;
        if n == 0 {
            return match head.is_empty() {
                true => Ok(None),
                false => Err(io::ErrorKind::UnexpectedEof.into()),
            };
        }
        if head[start..].ends_with(b"\n") && head[start..].trim_ascii().is_empty() {
            if start == 0 {
                head.clear(); // blank lines before a request are allowed
                continue;
            }
            break;
        }
    }
    parse_head(&head).map(Some)
}

fn parse_head(head: &[u8]) -> io::Result<Request> {
    let text = std::str::from_utf8(head).map_err(|_| invalid("request head is not UTF-8"))?;
    let mut lines = text.lines();
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split_ascii_whitespace();
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(invalid("malformed request line"));
    };
    let mut req = Request {
        method: method.to_string(),
        target: target.to_string(),
        accept: Vec::new(),
        keep_alive: version == "HTTP/1.1",
        has_body: false,
    };
    for line in lines.filter(|l| !l.trim().is_empty()) {
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| invalid("malformed header"))?;
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "accept" => req.accept.extend(
                value
                    .split(',')
                    .map(|v| v.split(';').next().unwrap_or("").trim().to_string()),
            ),
            "connection" if value.eq_ignore_ascii_case("close") => req.keep_alive = false,
            "connection" if value.eq_ignore_ascii_case("keep-alive") => req.keep_alive = true,
            "content-length" => req.has_body |= value != "0",
            "transfer-encoding" => req.has_body = true,
            _ => {}
        }
    }
    Ok(req)
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Unknown",
    }
}

/// Writes `resp`; the body is skipped for `HEAD`. `count` is told each chunk's size before the
/// chunk is written (so a client never sees bytes the ledger lacks) and its negation if it fails.
pub(crate) async fn write_response<W: AsyncWrite + Unpin>(
    w: &mut W,
    resp: &Response,
    head_only: bool,
    keep_alive: bool,
    timeout: Duration,
    mut count: impl FnMut(i64),
) -> io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nDocker-Distribution-API-Version: registry/2.0\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    for (name, value) in &resp.headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    with_timeout(timeout, w.write_all(head.as_bytes())).await?;
    if !head_only {
        for chunk in resp.body.chunks(CHUNK) {
            count(chunk.len() as i64);
            if let Err(e) = with_timeout(timeout, w.write_all(chunk)).await {
                count(-(chunk.len() as i64));
                return Err(e);
            }
        }
    }
    with_timeout(timeout, w.flush()).await
}

async fn with_timeout(
    limit: Duration,
    io: impl std::future::Future<Output = io::Result<()>>,
) -> io::Result<()> {
    tokio::time::timeout(limit, io)
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))?
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(raw: &[u8]) -> io::Result<Option<Request>> {
        let mut r = tokio::io::BufReader::new(raw);
        read_request(&mut r).await
    }

    #[tokio::test]
    async fn parses_a_registry_request() {
        let raw = b"\r\nGET /v2/app/manifests/v1 HTTP/1.1\r\nHost: x\r\nAccept: application/vnd.oci.image.manifest.v1+json; q=0.5, application/vnd.docker.distribution.manifest.v2+json\r\nAccept: */*\r\n\r\n";
        let req = read(raw).await.unwrap().unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.target, "/v2/app/manifests/v1");
        assert_eq!(
            req.accept,
            [
                "application/vnd.oci.image.manifest.v1+json",
                "application/vnd.docker.distribution.manifest.v2+json",
                "*/*"
            ]
        );
        assert!(req.keep_alive && !req.has_body);
    }

    #[tokio::test]
    async fn refuses_oversized_and_malformed_heads() {
        assert!(read(b"").await.unwrap().is_none());
        let big = format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD));
        assert!(read(big.as_bytes()).await.is_err());
        assert!(read(b"GARBAGE\r\n\r\n").await.is_err());
        assert!(
            read(b"GET / HTTP/1.1\r\nHost: x\r\n").await.is_err(),
            "cut short"
        );
        let req = read(b"HEAD / HTTP/1.0\r\nContent-Length: 3\r\n\r\n")
            .await
            .unwrap()
            .unwrap();
        assert!(!req.keep_alive && req.has_body);
    }
}
