//! A registry the harness serves itself, the images it serves, and a client for balenaEngine deltas.

mod client;
mod counts;
mod delta;
mod http;
mod image;
mod routes;
mod server;
mod tar;

pub use client::{parse_response, request, HttpResponse, TcpTransport, Transport};
pub use counts::{Mark, Served};
pub use delta::{parse_delta_response, DeltaClient, DeltaOutcome, DELTA_TIMEOUT, ENGINE_PORT};
pub use image::{
    build_app, build_app_all_new, run_script, sha256_digest, AppImage, BaseLayer, Blob, Layer,
    CONFIG_V1, HOST_BUSYBOX, LAYER_TAR_GZIP, MANIFEST_V2,
};
pub use server::{Registry, RegistryHandle};
