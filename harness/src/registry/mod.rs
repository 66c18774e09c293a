//! A registry the harness serves itself, the images it serves, and a client for balenaEngine deltas.
//!
//! Data flows one way, host to device:
//!
//! ```text
//! /bin/busybox ──> BaseLayer ──┬─> build_app("v1", ..)          ─┐
//!  (busybox-static)            ├─> build_app("v2", ..)           ├─> Registry::start(addr, images)
//!                              └─> build_app_all_new("v2", ..)  ─┘        │  GET/HEAD /v2/...
//!                                                                          v
//!                  device engine: pull 10.0.2.2:PORT/app:v1  <── bytes counted per response
//!                                                                          │
//!  harness test: mark() ... pull ... bytes_served_since(mark) vs AppImage::wire_size()
//!
//!  DeltaClient (device's engine API, port 2375): POST /images/delta?src=..&dest=..
//!      -> Unsupported { 404 } on plain Docker, Created { image_id, bytes } on balenaEngine
//! ```
//!
//! - Images ([`build_app`]): deterministic tar + gzip layers, a Docker schema-2 manifest and an
//!   image config; identical inputs give identical digests on any host.
//! - [`Registry`]: read-only distribution API on its own tokio thread; synchronous callers just
//!   start it, read counts and drop it. In QEMU user networking the guest reaches the host's
//!   127.0.0.1 as 10.0.2.2, so bind `127.0.0.1:0` and pull `10.0.2.2:<port>/app:v1`.
//! - [`apply`]: a delta image exported from the engine ([`archive`]), served as `app:delta`
//!   and pulled back, which applies it to its base: how a device gets a delta.
//! - [`HttpClient`]: a blocking plain-HTTP client (ureq) for the engine API and the checks;
//!   [`DeltaClient`] asks the engine for deltas through it. Tests replay recorded engine answers
//!   from a loopback server.

mod apply;
mod archive;
mod client;
mod counts;
mod delta;
mod http;
mod image;
mod routes;
mod server;
mod tar;

pub use apply::{apply, Applied};
pub use archive::{Exported, DELTA_BASE_LABEL};
pub use client::{HttpClient, HttpResponse};
pub use counts::{Mark, Served};
pub use delta::{parse_delta_response, DeltaClient, DeltaOutcome, DELTA_TIMEOUT, ENGINE_PORT};
pub use image::{
    build_app, build_app_all_new, busybox_for, run_script, sha256_digest, AppImage, BaseLayer,
    Blob, Layer, CONFIG_V1, HOST_BUSYBOX, LAYER_TAR_GZIP, MANIFEST_V2,
};
pub use server::{Registry, RegistryHandle};
