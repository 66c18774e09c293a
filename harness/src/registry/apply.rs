//! A balenaEngine delta brought back to an engine the way a device gets one: exported from the
//! engine that made it, served by a registry of the harness's own, and pulled. A pull of a
//! delta image applies it to its base (`io.resin.delta.base`), which the engine must hold, and
//! yields the target image (`io.resin.delta.config`), with the target's image ID.

use std::net::{IpAddr, SocketAddr};

use super::archive;
use super::delta::DeltaClient;
use super::server::Registry;
use crate::error::Result;

/// What applying a delta showed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The image the delta applies to, as its label names it.
    pub base: Option<String>,
    /// The delta image's size on the wire (manifest, config, layers).
    pub delta_wire: u64,
    /// What the engine pulled from the harness for it.
    pub served: u64,
    /// The image the pull yielded (its ID), or why the engine refused it, in its own words.
    pub pulled: std::result::Result<String, String>,
}

/// Exports `delta_id` from the engine, serves it on `bind` (a free port) as `app:delta`, has
/// the engine remove `remove_first` (images, with every tag) and pull it from `seen` (the
/// harness's address as the engine sees it).
pub fn apply(
    client: &DeltaClient,
    delta_id: &str,
    bind: IpAddr,
    seen: IpAddr,
    remove_first: &[String],
) -> Result<Applied> {
    let exported = archive::read(&client.export(delta_id)?, "delta")?;
    let base = exported.delta_base().map(str::to_string);
    let delta_wire = exported.image.wire_size();
    let registry = Registry::start(
        SocketAddr::new(bind, 0),
        vec![("app".into(), "delta".into(), exported.image)],
    )?;
    for image in remove_first {
        client.remove(image)?;
    }
    // The delta image itself goes too: the engine would otherwise find the pulled one at hand.
    client.remove(delta_id)?;
    let reference = format!(
        "{}/app:delta",
        SocketAddr::new(seen, registry.addr().port())
    );
    let mark = registry.mark();
    let pulled = match client.pull(&reference)? {
        Ok(()) => client
            .image_id(&reference)?
            .ok_or_else(|| format!("the engine pulled {reference} but does not hold it")),
        Err(why) => Err(why),
    };
    Ok(Applied {
        base,
        delta_wire,
        served: registry.bytes_served_since(mark),
        pulled,
    })
}
