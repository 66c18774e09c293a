//! Builds the test app image without Docker: a busybox base layer, a small app layer, config and manifest.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use flate2::{Compression, GzBuilder};
use serde_json::json;
use sha2::{Digest, Sha256};

use super::tar::{self, Entry};
use crate::error::{Context, Error, Result};

/// Media type of the manifests we serve (Docker image manifest, schema 2).
pub const MANIFEST_V2: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Media type of the image config blob.
pub const CONFIG_V1: &str = "application/vnd.docker.container.image.v1+json";
/// Media type of a gzip'd layer.
pub const LAYER_TAR_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Where Debian's `busybox-static` installs its binary.
pub const HOST_BUSYBOX: &str = "/bin/busybox";

/// `sha256:<hex>` of `bytes`, the form registries and engines use for digests.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// Content-addressed bytes with their media type.
#[derive(Debug, Clone)]
pub struct Blob {
    /// Media type as written in the manifest.
    pub media_type: &'static str,
    /// `sha256:` digest of `data`.
    pub digest: String,
    /// The bytes as served.
    pub data: Arc<[u8]>,
}

impl Blob {
    fn new(media_type: &'static str, data: Vec<u8>) -> Blob {
        Blob {
            media_type,
            digest: sha256_digest(&data),
            data: data.into(),
        }
    }

    /// Size in bytes.
    pub fn size(&self) -> u64 {
        self.data.len() as u64
    }
}

/// A gzip'd layer and the digest of its uncompressed tar (its `diff_id`).
#[derive(Debug, Clone)]
pub struct Layer {
    /// The compressed tar as served.
    pub blob: Blob,
    /// `sha256:` of the uncompressed tar.
    pub diff_id: String,
    /// Size of the uncompressed tar.
    pub tar_size: u64,
}

impl Layer {
    fn from_tar(tar: &[u8]) -> Layer {
        let mut gz = GzBuilder::new()
            .mtime(0)
            .write(Vec::new(), Compression::default());
        gz.write_all(tar).expect("writing to a Vec cannot fail");
        let compressed = gz.finish().expect("writing to a Vec cannot fail");
        Layer {
            blob: Blob::new(LAYER_TAR_GZIP, compressed),
            diff_id: sha256_digest(tar),
            tar_size: tar.len() as u64,
        }
    }
}

/// The static busybox for a device whose `uname -m` is `machine`: the host's
/// ([`HOST_BUSYBOX`]) for x86_64; for aarch64 `HARNESS_BUSYBOX_AARCH64`, else
/// `busybox-aarch64` in the harness's cache, taken once from Debian's `busybox-static` arm64
/// package there (`debs-arm64/`, where the reference image's recipe keeps its packages).
pub fn busybox_for(machine: &str) -> Result<std::path::PathBuf> {
    match machine {
        "x86_64" => Ok(HOST_BUSYBOX.into()),
        "aarch64" | "arm64" => {
            if let Some(p) = std::env::var_os("HARNESS_BUSYBOX_AARCH64").filter(|p| !p.is_empty()) {
                return Ok(p.into());
            }
            let cache = crate::paths::cache_dir();
            let out = cache.join("busybox-aarch64");
            if out.is_file() {
                return Ok(out);
            }
            let deb = std::fs::read_dir(cache.join("debs-arm64"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .find(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        n.starts_with("busybox-static_") && n.ends_with("_arm64.deb")
                    })
                });
            let missing = || {
                Error::input(format!(
                    "no static aarch64 busybox for the registry's test images: set \
                     HARNESS_BUSYBOX_AARCH64, or put one at {} (Debian's busybox-static arm64 \
                     package has it)",
                    out.display()
                ))
            };
            let deb = deb.ok_or_else(missing)?;
            let tmp = tempfile::tempdir_in(&cache).map_err(|_| missing())?;
            let ok = std::process::Command::new("dpkg-deb")
                .arg("-x")
                .arg(&deb)
                .arg(tmp.path())
                .status()
                .is_ok_and(|s| s.success());
            let bin = tmp.path().join("bin/busybox");
            if !ok || !bin.is_file() {
                return Err(missing());
            }
            let part = cache.join(format!("busybox-aarch64.{}", std::process::id()));
            std::fs::copy(&bin, &part)
                .and_then(|_| std::fs::rename(&part, &out))
                .map_err(|_| missing())?;
            Ok(out)
        }
        other => Err(Error::input(format!(
            "the registry's test images are for x86_64 and aarch64 devices, not {other}"
        ))),
    }
}

/// The shared base layer: a static busybox (x86-64 or aarch64) at `/bin/busybox` and `/bin/sh`
/// linking to it.
#[derive(Debug, Clone)]
pub struct BaseLayer {
    busybox: Arc<[u8]>,
    layer: Layer,
    /// The images' `architecture` (`amd64`, `arm64`), from the busybox's ELF header.
    arch: &'static str,
}

impl BaseLayer {
    /// Builds the base layer from the busybox binary at `path` (see [`HOST_BUSYBOX`]).
    ///
    /// Fails with [`Error::Input`] unless it is a statically linked x86-64 or aarch64 ELF
    /// executable, the only kind that runs in an otherwise empty image on the reference
    /// devices; the images are for its architecture.
    pub fn from_busybox(path: &Path) -> Result<BaseLayer> {
        let bytes = std::fs::read(path).input_ctx(|| {
            format!(
                "reading busybox at {} (install busybox-static)",
                path.display()
            )
        })?;
        let arch = check_static(&bytes).map_err(|why| {
            Error::input(format!(
                "{} is not usable as the image's busybox: {why}",
                path.display()
            ))
        })?;
        let busybox: Arc<[u8]> = bytes.into();
        let layer = Layer::from_tar(&base_tar(&busybox, None));
        Ok(BaseLayer {
            busybox,
            layer,
            arch,
        })
    }

    /// The images' architecture as OCI names it (`amd64`, `arm64`).
    pub fn arch(&self) -> &'static str {
        self.arch
    }

    /// The compressed layer.
    pub fn layer(&self) -> &Layer {
        &self.layer
    }

    /// A base with the same busybox plus a marker file, so its digest differs from this one's.
    fn variant(&self, marker: &str) -> Layer {
        Layer::from_tar(&base_tar(&self.busybox, Some(marker)))
    }
}

fn base_tar(busybox: &[u8], marker: Option<&str>) -> Vec<u8> {
    let mut entries = vec![
        Entry::Dir {
            path: "bin",
            mode: 0o755,
        },
        Entry::File {
            path: "bin/busybox",
            mode: 0o755,
            data: busybox,
        },
        Entry::Symlink {
            path: "bin/sh",
            target: "busybox",
        },
        Entry::Dir {
            path: "tmp",
            mode: 0o1777,
        },
    ];
    if let Some(marker) = marker {
        entries.push(Entry::Dir {
            path: "etc",
            mode: 0o755,
        });
        entries.push(Entry::File {
            path: "etc/harness-base",
            mode: 0o644,
            data: marker.as_bytes(),
        });
    }
    tar::archive(&entries)
}

/// Checks the ELF header: 64-bit little-endian, x86-64, executable, no program interpreter.
fn check_static(elf: &[u8]) -> std::result::Result<&'static str, String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes(b.try_into().unwrap()))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().unwrap()))
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let arch = match u16_at(18) {
        Some(62) => "amd64",
        Some(183) => "arm64",
        _ => return Err("not an x86-64 or aarch64 binary".into()),
    };
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(32), u16_at(54), u16_at(56)) else {
        return Err("truncated ELF header".into());
    };
    for i in 0..usize::from(phnum) {
        let at = phoff as usize + i * usize::from(phentsize);
        match u32_at(at) {
            None => return Err("truncated program headers".into()),
            Some(3) => return Err("dynamically linked (has PT_INTERP)".into()),
            Some(_) => {}
        }
    }
    Ok(arch)
}

/// A complete image: manifest, config and layers, ready to serve.
#[derive(Debug, Clone)]
pub struct AppImage {
    /// The version given to [`build_app`]; `/app/run.sh` prints it.
    pub version: String,
    /// The manifest ([`MANIFEST_V2`]); its digest is the image's repo digest.
    pub manifest: Blob,
    /// The config ([`CONFIG_V1`]); its digest is the engine's image ID.
    pub config: Blob,
    /// Layers, base first.
    pub layers: Vec<Layer>,
}

impl AppImage {
    /// The manifest digest (what `image@sha256:...` and `RepoDigests` show).
    pub fn digest(&self) -> &str {
        &self.manifest.digest
    }

    /// The config digest, which the engine reports as the image ID.
    pub fn image_id(&self) -> &str {
        &self.config.digest
    }

    /// Config and layer blobs, in manifest order.
    pub fn blobs(&self) -> impl Iterator<Item = &Blob> {
        std::iter::once(&self.config).chain(self.layers.iter().map(|l| &l.blob))
    }

    /// Compressed size of the layers alone.
    pub fn layers_size(&self) -> u64 {
        self.layers.iter().map(|l| l.blob.size()).sum()
    }

    /// Bytes a pull from scratch costs: manifest, config and every layer.
    pub fn wire_size(&self) -> u64 {
        self.manifest.size() + self.blobs().map(Blob::size).sum::<u64>()
    }

    /// Bytes a pull costs when `have` is already present: the manifest and the blobs `have` lacks.
    pub fn wire_size_after(&self, have: &AppImage) -> u64 {
        let missing = self
            .blobs()
            .filter(|b| !have.blobs().any(|h| h.digest == b.digest));
        self.manifest.size() + missing.map(Blob::size).sum::<u64>()
    }
}

/// Builds the app image `version`: `base` plus a layer with `/app/payload` and `/app/run.sh`.
///
/// Deterministic: the same inputs give the same digests on every host.
pub fn build_app(version: &str, payload: &[u8], base: &BaseLayer) -> AppImage {
    assemble(version, base.layer.clone(), base.arch, payload, false)
}

/// Like [`build_app`] but every layer differs, base included, so the image shares no layer
/// with any image from [`build_app`]: pulling it costs its full size whatever the device holds
/// (the negative `layer-reuse` check).
pub fn build_app_all_new(version: &str, payload: &[u8], base: &BaseLayer) -> AppImage {
    assemble(version, base.variant(version), base.arch, payload, true)
}

/// The script the image runs: prints the version and exits 0.
pub fn run_script(version: &str) -> String {
    format!("#!/bin/sh\necho \"harness-app {version}\"\nexit 0\n")
}

fn assemble(version: &str, base: Layer, arch: &str, payload: &[u8], all_new: bool) -> AppImage {
    let script = run_script(version);
    let mut entries = vec![
        Entry::Dir {
            path: "app",
            mode: 0o755,
        },
        Entry::File {
            path: "app/payload",
            mode: 0o644,
            data: payload,
        },
        Entry::File {
            path: "app/run.sh",
            mode: 0o755,
            data: script.as_bytes(),
        },
    ];
    if all_new {
        entries.push(Entry::File {
            path: "app/all-new",
            mode: 0o644,
            data: b"",
        });
    }
    let app = Layer::from_tar(&tar::archive(&entries));
    let layers = vec![base, app];
    let config = json!({
        "architecture": arch,
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["/bin/sh", "/app/run.sh"],
            "WorkingDir": "/app",
            "Labels": { "io.balena.harness.version": version },
        },
        "rootfs": {
            "type": "layers",
            "diff_ids": layers.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(),
        },
    });
    let config = serde_json::to_vec(&config).expect("json values serialize");
    package(version, config, layers)
}

/// An image of `config` (bytes kept as they are, so the image ID is theirs) and the layers
/// of its `rootfs.diff_ids`, with a schema-2 manifest: e.g. a delta image an engine exported.
pub fn from_parts(version: &str, config: Vec<u8>, layer_tars: &[Vec<u8>]) -> AppImage {
    let layers = layer_tars.iter().map(|t| Layer::from_tar(t)).collect();
    package(version, config, layers)
}

fn package(version: &str, config: Vec<u8>, layers: Vec<Layer>) -> AppImage {
    let config = Blob::new(CONFIG_V1, config);
    let descriptor =
        |b: &Blob| json!({ "mediaType": b.media_type, "size": b.size(), "digest": b.digest });
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_V2,
        "config": descriptor(&config),
        "layers": layers.iter().map(|l| descriptor(&l.blob)).collect::<Vec<_>>(),
    });
    let manifest = Blob::new(
        MANIFEST_V2,
        serde_json::to_vec_pretty(&manifest).expect("json values serialize"),
    );
    AppImage {
        version: version.to_string(),
        manifest,
        config,
        layers,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use flate2::read::GzDecoder;
    use std::io::Read;
    use std::sync::OnceLock;

    /// The host's busybox base, built once per test binary (gzip of 2 MB is slow unoptimised).
    /// `None` when the host has no usable busybox: the tests that need it then skip.
    pub(crate) fn base() -> Option<&'static BaseLayer> {
        static BASE: OnceLock<Option<BaseLayer>> = OnceLock::new();
        BASE.get_or_init(|| match BaseLayer::from_busybox(Path::new(HOST_BUSYBOX)) {
            Ok(b) => Some(b),
            Err(e) => {
                crate::testing::missing(&e.to_string());
                None
            }
        })
        .as_ref()
    }

    /// v1, v2 (shared base) and v2 with every layer new.
    pub(crate) fn images() -> Option<&'static (AppImage, AppImage, AppImage)> {
        static IMAGES: OnceLock<Option<(AppImage, AppImage, AppImage)>> = OnceLock::new();
        IMAGES
            .get_or_init(|| {
                let base = base()?;
                Some((
                    build_app("v1", b"payload one\n", base),
                    build_app("v2", b"payload two, a little longer\n", base),
                    build_app_all_new("v2", b"payload two, a little longer\n", base),
                ))
            })
            .as_ref()
    }

    fn gunzip(bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        GzDecoder::new(bytes).read_to_end(&mut out).unwrap();
        out
    }

    fn digests(image: &AppImage) -> Vec<&str> {
        image
            .layers
            .iter()
            .map(|l| l.blob.digest.as_str())
            .collect()
    }

    #[test]
    fn every_digest_is_the_sha256_of_its_bytes() {
        let Some((v1, v2, all_new)) = images() else {
            return;
        };
        for image in [v1, v2, all_new] {
            assert_eq!(image.manifest.digest, sha256_digest(&image.manifest.data));
            for blob in image.blobs() {
                assert_eq!(blob.digest, sha256_digest(&blob.data));
            }
        }
    }

    #[test]
    fn manifest_describes_config_and_layers() {
        let Some((v1, _, _)) = images() else { return };
        let m: serde_json::Value = serde_json::from_slice(&v1.manifest.data).unwrap();
        assert_eq!(m["schemaVersion"], 2);
        assert_eq!(m["mediaType"], MANIFEST_V2);
        assert_eq!(m["config"]["digest"], v1.config.digest.as_str());
        assert_eq!(m["config"]["size"], v1.config.size());
        assert_eq!(m["config"]["mediaType"], CONFIG_V1);
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 2);
        for (desc, layer) in layers.iter().zip(&v1.layers) {
            assert_eq!(desc["mediaType"], LAYER_TAR_GZIP);
            assert_eq!(desc["digest"], layer.blob.digest.as_str());
            assert_eq!(desc["size"], layer.blob.size());
        }
    }

    #[test]
    fn diff_ids_are_the_uncompressed_layers() {
        let Some((v1, v2, _)) = images() else { return };
        for image in [v1, v2] {
            let c: serde_json::Value = serde_json::from_slice(&image.config.data).unwrap();
            assert_eq!(c["architecture"], "amd64");
            assert_eq!(c["os"], "linux");
            assert_eq!(c["rootfs"]["type"], "layers");
            let ids: Vec<&str> = c["rootfs"]["diff_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            let tars: Vec<Vec<u8>> = image.layers.iter().map(|l| gunzip(&l.blob.data)).collect();
            let want: Vec<String> = tars.iter().map(|t| sha256_digest(t)).collect();
            assert_eq!(ids, want);
            for (tar, layer) in tars.iter().zip(&image.layers) {
                assert_eq!(tar.len() as u64, layer.tar_size);
            }
        }
    }

    #[test]
    fn v1_and_v2_share_exactly_the_base_and_all_new_shares_nothing() {
        let Some((v1, v2, all_new)) = images() else {
            return;
        };
        let (a, b, c) = (digests(v1), digests(v2), digests(all_new));
        assert_eq!(a[0], b[0], "base layer is shared");
        assert_ne!(a[1], b[1], "app layer differs");
        assert_ne!(v1.config.digest, v2.config.digest);
        assert_ne!(b[0], c[0], "all-new has its own base");
        assert!(
            c.iter().all(|d| !a.contains(d) && !b.contains(d)),
            "all-new shares no layer with v1 or v2"
        );
        assert_eq!(
            v2.wire_size_after(v1),
            v2.wire_size() - v2.layers[0].blob.size()
        );
        assert_eq!(all_new.wire_size_after(v1), all_new.wire_size());
        eprintln!(
            "v1 {} B, v2 {} B, shared base {} B, v2 after v1 {} B, all-new after v1 {} B",
            v1.wire_size(),
            v2.wire_size(),
            v1.layers[0].blob.size(),
            v2.wire_size_after(v1),
            all_new.wire_size_after(v1)
        );
    }

    #[test]
    fn builds_are_reproducible() {
        let Some(base) = base() else { return };
        let again = BaseLayer::from_busybox(Path::new(HOST_BUSYBOX)).unwrap();
        assert_eq!(base.layer().blob.digest, again.layer().blob.digest);
        let (a, b) = (build_app("v1", b"x", base), build_app("v1", b"x", &again));
        assert_eq!(a.digest(), b.digest());
    }

    #[test]
    fn app_layer_holds_payload_and_script() {
        let Some((v1, _, _)) = images() else { return };
        let tar = gunzip(&v1.layers[1].blob.data);
        let text = String::from_utf8_lossy(&tar);
        assert!(text.contains("app/payload") && text.contains("payload one\n"));
        assert!(text.contains("app/run.sh") && text.contains("echo \"harness-app v1\""));
    }

    #[test]
    fn run_script_prints_the_version_under_busybox() {
        if base().is_none() {
            return;
        }
        let out = std::process::Command::new(HOST_BUSYBOX)
            .args(["sh", "-c", &run_script("v7")])
            .output()
            .unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "harness-app v7\n");
    }

    #[test]
    fn an_aarch64_busybox_makes_arm64_images() {
        // A static ELF header: 64-bit little-endian, e_machine 183 (aarch64), no program headers.
        let mut elf = vec![0u8; 64];
        elf[..6].copy_from_slice(b"\x7fELF\x02\x01");
        elf[18] = 183;
        assert_eq!(check_static(&elf), Ok("arm64"));
        elf[18] = 62;
        assert_eq!(check_static(&elf), Ok("amd64"));
        elf[18] = 40;
        assert_eq!(
            check_static(&elf),
            Err("not an x86-64 or aarch64 binary".to_string())
        );
        let dir = tempfile::tempdir().unwrap();
        elf[18] = 183;
        std::fs::write(dir.path().join("busybox"), &elf).unwrap();
        let base = BaseLayer::from_busybox(&dir.path().join("busybox")).unwrap();
        assert_eq!(base.arch(), "arm64");
        let app = build_app("v1", b"p", &base);
        let config: serde_json::Value = serde_json::from_slice(&app.config.data).unwrap();
        assert_eq!(config["architecture"], "arm64");
        assert!(busybox_for("mips").is_err());
        assert_eq!(busybox_for("x86_64").unwrap(), Path::new(HOST_BUSYBOX));
    }

    #[test]
    fn rejects_a_binary_that_is_not_static_x86_64() {
        let dir = tempfile::tempdir().unwrap();
        let not_elf = dir.path().join("busybox");
        std::fs::write(&not_elf, b"#!/bin/sh\n").unwrap();
        let err = BaseLayer::from_busybox(&not_elf).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        let missing = BaseLayer::from_busybox(&dir.path().join("nope")).unwrap_err();
        assert!(matches!(missing, Error::Input(_)), "{missing}");
        if Path::new("/bin/true").exists()
            && check_static(&std::fs::read("/bin/true").unwrap()).is_ok()
        {
            panic!("/bin/true is dynamically linked on Debian and must be rejected");
        }
    }
}
