//! The registry the engine checks pull from: started by the first check that needs it, kept
//! with the device for the run.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use crate::error::{Error, Result};
use crate::registry::{self, AppImage, BaseLayer, Registry};

/// The registry and the images it serves, for the whole run.
pub struct Fixture {
    pub(crate) registry: Registry,
    pub(crate) images: BTreeMap<String, AppImage>,
    /// Where the device reaches the registry (`10.0.2.2:PORT` under user networking).
    pub(crate) seen_at: SocketAddr,
    /// Whether `app:v2` shares no layer with `app:v1`.
    pub(crate) all_new: bool,
}

impl Fixture {
    /// Serves the images on `serve` (a free port), for a device that reaches the harness at
    /// `host` and whose `uname -m` is `arch`; `app:v2` shares no layer with `app:v1` when
    /// `all_new`.
    pub fn start(
        serve: IpAddr,
        host: Option<IpAddr>,
        arch: &str,
        all_new: bool,
    ) -> Result<Fixture> {
        let base = BaseLayer::from_busybox(&registry::busybox_for(arch)?)?;
        let v1 = registry::build_app("v1", b"harness app payload, version 1\n", &base);
        let v2 = if all_new {
            registry::build_app_all_new("v2", b"harness app payload, version 2\n", &base)
        } else {
            registry::build_app("v2", b"harness app payload, version 2\n", &base)
        };
        let bind = SocketAddr::new(serve, 0);
        let registry = Registry::start(
            bind,
            vec![
                ("app".into(), "v1".into(), v1.clone()),
                ("app".into(), "v2".into(), v2.clone()),
            ],
        )?;
        let host = host.ok_or_else(|| Error::infra("this target cannot reach the harness"))?;
        let seen_at = SocketAddr::new(host, registry.addr().port());
        let images = BTreeMap::from([("v1".to_string(), v1), ("v2".to_string(), v2)]);
        Ok(Fixture {
            registry,
            images,
            seen_at,
            all_new,
        })
    }

    /// The image served as `app:TAG` (`v1`, `v2`).
    pub fn image(&self, tag: &str) -> Option<&AppImage> {
        self.images.get(tag)
    }

    /// The image `app:TAG` as the device names it.
    pub fn reference(&self, tag: &str) -> String {
        format!("{}/app:{tag}", self.seen_at)
    }
}
