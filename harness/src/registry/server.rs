//! The registry server: a read-only distribution endpoint on its own tokio thread, counting bytes.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, Semaphore};

use super::counts::{Counts, Mark, Served};
use super::http::{read_request, write_response, Response};
use super::image::AppImage;
use super::routes::{self, Store};
use crate::error::{Context, Result};

/// Connections served at once; more are closed on accept.
const MAX_CONNECTIONS: usize = 32;
/// How long a connection may sit without sending a complete request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one write may stall before the connection is dropped.
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);

/// A running registry. It serves until dropped; dropping stops it and closes its connections.
pub struct Registry {
    addr: SocketAddr,
    counts: Arc<Counts>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The name the issue uses for the running registry.
pub type RegistryHandle = Registry;

impl Registry {
    /// Binds `bind` (port 0 picks a free one) and serves `images` as `(repo, tag, image)`.
    ///
    /// Bad names or a repeated `repo:tag` are [`Error::Input`](crate::Error::Input); a failed
    /// bind or thread start is [`Error::Infra`](crate::Error::Infra).
    pub fn start(bind: SocketAddr, images: Vec<(String, String, AppImage)>) -> Result<Registry> {
        let store = Arc::new(Store::new(images)?);
        let listener = std::net::TcpListener::bind(bind)
            .infra_ctx(|| format!("binding the registry on {bind}"))?;
        listener
            .set_nonblocking(true)
            .infra_ctx(|| "registry socket".to_string())?;
        let addr = listener
            .local_addr()
            .infra_ctx(|| "registry socket".to_string())?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .infra_ctx(|| "starting the registry's runtime".to_string())?;
        let counts = Arc::new(Counts::default());
        let (shutdown, stop) = oneshot::channel();
        let served = counts.clone();
        let thread = std::thread::Builder::new()
            .name(format!("registry-{}", addr.port()))
            .spawn(move || {
                runtime.block_on(async move {
                    match TcpListener::from_std(listener) {
                        Ok(listener) => serve(listener, store, served, stop).await,
                        Err(e) => tracing::error!("registry on {addr}: {e}"),
                    }
                });
                // Dropping the runtime here cancels the connections still open.
            })
            .infra_ctx(|| "starting the registry's thread".to_string())?;
        tracing::info!("registry serving on {addr}");
        Ok(Registry {
            addr,
            counts,
            shutdown: Some(shutdown),
            thread: Some(thread),
        })
    }

    /// The address it listens on (with the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Responses sent since start or the last [`reset_counts`](Self::reset_counts), oldest first
    /// (the last 10,000 at most).
    pub fn served(&self) -> Vec<Served> {
        self.counts.served()
    }

    /// Body bytes served for paths under `/v2/<repo>/` since start or the last reset.
    pub fn bytes_for(&self, repo: &str) -> u64 {
        self.counts.bytes_for(repo)
    }

    /// Body bytes served since start; not affected by [`reset_counts`](Self::reset_counts).
    pub fn bytes_total(&self) -> u64 {
        self.counts.total()
    }

    /// The current byte total, to measure one step with [`bytes_served_since`](Self::bytes_served_since).
    pub fn mark(&self) -> Mark {
        self.counts.mark()
    }

    /// Body bytes served (all repositories) since `mark` was taken.
    pub fn bytes_served_since(&self, mark: Mark) -> u64 {
        self.counts.total().saturating_sub(mark.total)
    }

    /// Responses sent since `mark` (unless [`reset_counts`](Self::reset_counts) dropped them).
    /// Sum those where [`Served::is_blob`] to leave out manifests and `/v2/` pings.
    pub fn served_since(&self, mark: Mark) -> Vec<Served> {
        self.counts.served_since(mark)
    }

    /// Empties the list of served responses (and so [`bytes_for`](Self::bytes_for)); marks stay valid.
    pub fn reset_counts(&self) {
        self.counts.reset();
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn serve(
    listener: TcpListener,
    store: Arc<Store>,
    counts: Arc<Counts>,
    mut stop: oneshot::Receiver<()>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of descriptors and the like: back off instead of spinning.
                        tracing::warn!("registry accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::warn!("registry: {MAX_CONNECTIONS} connections open, refusing one");
                    continue;
                };
                let (store, counts) = (store.clone(), counts.clone());
                tokio::spawn(async move {
                    if let Err(e) = connection(stream, &store, &counts).await {
                        tracing::debug!("registry connection: {e}");
                    }
                    drop(slot);
                });
            }
        }
    }
}

/// Serves requests on one connection until the client closes, asks to, idles or errs.
async fn connection(stream: TcpStream, store: &Store, counts: &Counts) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    if starts_with_tls(&mut read).await {
        // An engine tries HTTPS first even for an insecure registry. A prompt plain-HTTP answer
        // makes it fall back to HTTP at once ("server gave HTTP response to HTTPS client")
        // instead of waiting out its TLS handshake timeout.
        // No body, so the attempt adds nothing to the byte counts.
        let response = Response {
            status: 400,
            content_type: "text/plain",
            headers: vec![],
            body: Arc::from([]),
        };
        counts.begin(served("TLS", "", None, 400));
        write_response(&mut write, &response, false, false, WRITE_TIMEOUT, |_| {}).await?;
        return write.shutdown().await;
    }
    loop {
        let request = match tokio::time::timeout(IDLE_TIMEOUT, read_request(&mut read)).await {
            Err(_) | Ok(Ok(None)) => return Ok(()),
            Ok(Ok(Some(request))) => request,
            Ok(Err(e)) => {
                let response = routes::error(400, "UNSUPPORTED", &format!("bad request: {e}"));
                let seq = counts.begin(served("", "", None, 400));
                let count = |n| counts.add(seq, n);
                write_response(&mut write, &response, false, false, WRITE_TIMEOUT, count).await?;
                return write.shutdown().await;
            }
        };
        let routed = match request.has_body {
            true => routes::error(400, "UNSUPPORTED", "request bodies are not accepted").into(),
            false => store.route(&request.method, &request.target, &request.accept),
        };
        let keep_alive = request.keep_alive && !request.has_body;
        let head_only = request.method == "HEAD";
        let entry = served(
            &request.method,
            &request.target,
            routed.repo,
            routed.response.status,
        );
        let seq = counts.begin(entry);
        let count = |n| counts.add(seq, n);
        write_response(
            &mut write,
            &routed.response,
            head_only,
            keep_alive,
            WRITE_TIMEOUT,
            count,
        )
        .await?;
        if !keep_alive {
            return write.shutdown().await;
        }
    }
}

/// Whether the client opened with a TLS handshake record (0x16) rather than an HTTP method.
async fn starts_with_tls<R: tokio::io::AsyncBufRead + Unpin>(read: &mut R) -> bool {
    use tokio::io::AsyncBufReadExt;
    let first = tokio::time::timeout(IDLE_TIMEOUT, read.fill_buf()).await;
    matches!(first, Ok(Ok([0x16, ..])))
}

fn served(method: &str, path: &str, repo: Option<String>, status: u16) -> Served {
    Served {
        method: method.to_string(),
        path: path.to_string(),
        repo,
        status,
        bytes: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::client::{HttpClient, HttpResponse};
    use crate::registry::image::tests::images;
    use crate::registry::image::{sha256_digest, MANIFEST_V2};
    use std::collections::HashSet;
    use std::io::{Read, Write};

    const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";

    fn start() -> Option<Registry> {
        let (v1, v2, all_new) = images()?.clone();
        let images = vec![
            ("app".to_string(), "v1".to_string(), v1),
            ("app".to_string(), "v2".to_string(), v2),
            ("app-all-new".to_string(), "v2".to_string(), all_new),
        ];
        Some(Registry::start("127.0.0.1:0".parse().unwrap(), images).unwrap())
    }

    fn fetch(reg: &Registry, method: &str, target: &str, accept: &str) -> HttpResponse {
        let headers: Vec<(&str, &str)> = match accept {
            "" => vec![],
            accept => vec![("Accept", accept)],
        };
        HttpClient::new(reg.addr(), Duration::from_secs(10))
            .send(method, target, &headers, None)
            .unwrap()
    }

    /// Sends `raw` bytes (not necessarily HTTP) on a fresh connection; all the server answers.
    fn exchange_raw(reg: &Registry, raw: &[u8]) -> Vec<u8> {
        let mut stream = std::net::TcpStream::connect(reg.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        stream.write_all(raw).unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).unwrap();
        answer
    }

    /// Pulls `repo:tag` the way an engine does: the manifest, then each blob it lacks.
    fn pull(reg: &Registry, repo: &str, tag: &str, have: &mut HashSet<String>) {
        let m = fetch(
            reg,
            "GET",
            &format!("/v2/{repo}/manifests/{tag}"),
            MANIFEST_V2,
        );
        assert_eq!(m.status, 200);
        let m: serde_json::Value = serde_json::from_slice(&m.body).unwrap();
        let descriptors = std::iter::once(&m["config"]).chain(m["layers"].as_array().unwrap());
        for digest in descriptors.map(|d| d["digest"].as_str().unwrap().to_string()) {
            if have.insert(digest.clone()) {
                let blob = fetch(reg, "GET", &format!("/v2/{repo}/blobs/{digest}"), "");
                assert_eq!(blob.status, 200);
                assert_eq!(sha256_digest(&blob.body), digest);
            }
        }
    }

    #[test]
    fn serves_base_manifests_blobs_and_404s_and_counts_their_bytes() {
        let Some(reg) = start() else { return };
        let (v1, _, _) = images().unwrap();
        let base = fetch(&reg, "GET", "/v2/", "");
        assert_eq!((base.status, base.body.as_slice()), (200, b"{}".as_slice()));
        assert_eq!(
            base.header("Docker-Distribution-API-Version"),
            Some("registry/2.0")
        );

        let m = fetch(
            &reg,
            "GET",
            "/v2/app/manifests/v1",
            &format!("{OCI_MANIFEST}, {MANIFEST_V2}"),
        );
        assert_eq!(m.status, 200);
        assert_eq!(m.body, &*v1.manifest.data);
        assert_eq!(m.header("Content-Type"), Some(MANIFEST_V2));
        assert_eq!(
            m.header("Docker-Content-Digest"),
            Some(sha256_digest(&m.body).as_str())
        );
        assert_eq!(m.header("Docker-Content-Digest"), Some(v1.digest()));

        let head = fetch(&reg, "HEAD", "/v2/app/manifests/v1", MANIFEST_V2);
        assert_eq!(head.status, 200);
        assert!(head.body.is_empty());
        assert_eq!(
            head.header("Content-Length"),
            Some(v1.manifest.size().to_string().as_str())
        );
        assert_eq!(head.header("Docker-Content-Digest"), Some(v1.digest()));
        let by_digest = fetch(
            &reg,
            "GET",
            &format!("/v2/app/manifests/{}", v1.digest()),
            "",
        );
        assert_eq!(by_digest.body, &*v1.manifest.data);

        let mut blob_bytes = 0;
        for blob in v1.blobs() {
            let got = fetch(&reg, "GET", &format!("/v2/app/blobs/{}", blob.digest), "");
            assert_eq!(got.status, 200);
            assert_eq!(sha256_digest(&got.body), blob.digest);
            assert_eq!(
                got.header("Docker-Content-Digest"),
                Some(blob.digest.as_str())
            );
            blob_bytes += got.body.len() as u64;
        }
        let head_blob = fetch(
            &reg,
            "HEAD",
            &format!("/v2/app/blobs/{}", v1.config.digest),
            "",
        );
        assert_eq!(
            head_blob.header("Content-Length"),
            Some(v1.config.size().to_string().as_str())
        );

        let missing = format!("/v2/app/blobs/sha256:{}", "0".repeat(64));
        let not_found = [
            (missing.as_str(), "BLOB_UNKNOWN"),
            ("/v2/app/manifests/v9", "MANIFEST_UNKNOWN"),
            ("/v2/nope/manifests/v1", "NAME_UNKNOWN"),
        ];
        let mut error_bytes = 0;
        for (path, code) in not_found {
            let r = fetch(&reg, "GET", path, "");
            assert_eq!(r.status, 404, "{path}");
            let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
            assert_eq!(v["errors"][0]["code"], code);
            error_bytes += r.body.len() as u64;
        }
        let oci_only = fetch(&reg, "GET", "/v2/app/manifests/v1", OCI_MANIFEST);
        assert_eq!(oci_only.status, 404);
        error_bytes += oci_only.body.len() as u64;

        let served = reg.served();
        assert_eq!(served.len(), 4 + v1.blobs().count() + 1 + 3 + 1);
        assert!(served
            .iter()
            .filter(|s| s.method == "HEAD")
            .all(|s| s.bytes == 0));
        assert_eq!(served[1].bytes, v1.manifest.size());
        assert_eq!(served[1].path, "/v2/app/manifests/v1");
        assert_eq!(served[1].repo.as_deref(), Some("app"));
        let app = 2 * v1.manifest.size() + blob_bytes + error_bytes - {
            let nope = &served[served.len() - 2];
            assert_eq!(nope.repo.as_deref(), Some("nope"));
            nope.bytes
        };
        assert_eq!(reg.bytes_for("app"), app);
        assert_eq!(
            reg.bytes_total(),
            2 + 2 * v1.manifest.size() + blob_bytes + error_bytes
        );
        reg.reset_counts();
        assert_eq!((reg.served().len(), reg.bytes_for("app")), (0, 0));
    }

    #[test]
    fn pulling_v2_after_v1_costs_only_the_changed_layer() {
        let Some(reg) = start() else { return };
        let (v1, v2, all_new) = images().unwrap();
        let mut have = HashSet::new();
        let mark = reg.mark();
        pull(&reg, "app", "v1", &mut have);
        assert_eq!(reg.bytes_served_since(mark), v1.wire_size());
        let blobs: u64 = reg
            .served_since(mark)
            .iter()
            .filter(|s| s.is_blob())
            .map(|s| s.bytes)
            .sum();
        assert_eq!(blobs, v1.wire_size() - v1.manifest.size());

        let mark = reg.mark();
        pull(&reg, "app", "v2", &mut have);
        let want = v2.manifest.size() + v2.config.size() + v2.layers[1].blob.size();
        assert_eq!(reg.bytes_served_since(mark), want);
        assert_eq!(want, v2.wire_size_after(v1));

        let mut have = HashSet::new();
        pull(&reg, "app", "v1", &mut have);
        let mark = reg.mark();
        pull(&reg, "app-all-new", "v2", &mut have);
        assert_eq!(reg.bytes_served_since(mark), all_new.wire_size());
        assert_eq!(reg.bytes_for("app-all-new"), all_new.wire_size());
    }

    #[test]
    fn keeps_a_connection_alive_and_refuses_writes_and_garbage() {
        let Some(reg) = start() else { return };
        let mut stream = std::net::TcpStream::connect(reg.addr()).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let two = b"GET /v2/ HTTP/1.1\r\nHost: r\r\n\r\nGET /v2/ HTTP/1.1\r\nHost: r\r\nConnection: close\r\n\r\n";
        stream.write_all(two).unwrap();
        let mut raw = String::new();
        stream.read_to_string(&mut raw).unwrap();
        assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");

        assert_eq!(
            fetch(&reg, "DELETE", "/v2/app/manifests/v1", "").status,
            405
        );
        let raw = exchange_raw(&reg, b"nonsense\r\n\r\n");
        assert!(raw.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
    }

    #[test]
    fn answers_a_tls_hello_at_once_in_plain_http() {
        let Some(reg) = start() else { return };
        let hello = b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03";
        let raw = exchange_raw(&reg, hello);
        assert!(raw.starts_with(b"HTTP/1.1 400 Bad Request\r\n"));
        assert_eq!(reg.served()[0].method, "TLS");
        assert_eq!(reg.bytes_total(), 0);
    }

    #[test]
    fn start_refuses_bad_names_and_a_taken_port_and_drop_stops_it() {
        let Some((v1, _, _)) = images() else { return };
        let one = |repo: &str, tag: &str| vec![(repo.to_string(), tag.to_string(), v1.clone())];
        let any: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let bad = Registry::start(any, one("App", "v1")).err().unwrap();
        assert!(matches!(bad, crate::Error::Input(_)), "{bad}");
        let mut twice = one("app", "v1");
        twice.extend(one("app", "v1"));
        assert!(matches!(
            Registry::start(any, twice),
            Err(crate::Error::Input(_))
        ));

        let reg = Registry::start(any, one("app", "v1")).unwrap();
        let addr = reg.addr();
        assert!(matches!(
            Registry::start(addr, one("app", "v1")),
            Err(crate::Error::Infra(_))
        ));
        drop(reg);
        assert!(
            std::net::TcpStream::connect(addr).is_err(),
            "stopped on drop"
        );
    }

    #[test]
    fn skopeo_copies_from_the_registry_when_installed() {
        let skopeo = std::path::Path::new("/usr/bin/skopeo");
        if !skopeo.exists() {
            return crate::testing::missing("/usr/bin/skopeo (apt-get install skopeo)");
        }
        let Some(reg) = start() else { return };
        let (v1, _, _) = images().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let src = format!("docker://{}/app:v1", reg.addr());
        let dest = format!("oci:{}:v1", dir.path().display());
        let out = std::process::Command::new(skopeo)
            .args([
                "--insecure-policy",
                "copy",
                "--src-tls-verify=false",
                &src,
                &dest,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for layer in &v1.layers {
            let hex = layer.blob.digest.trim_start_matches("sha256:");
            let copied = std::fs::read(dir.path().join("blobs/sha256").join(hex)).unwrap();
            assert_eq!(sha256_digest(&copied), layer.blob.digest);
        }
        let out = std::process::Command::new(skopeo)
            .args(["inspect", "--tls-verify=false", &src])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let inspected: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(inspected["Digest"], v1.digest());
        assert_eq!(inspected["Architecture"], "amd64");
    }
}
