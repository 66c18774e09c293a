//! Checks of the container engine against the registry the harness serves itself: pulls
//! measured in bytes on the wire, layer reuse, and balenaEngine deltas.
//!
//! The registry starts with the first check that needs it and serves `app:v1` and `app:v2`,
//! which share their busybox base layer (or, where the variable `engine_v2` is `all-new`,
//! share nothing: the negative check for layer reuse).

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::dut::Dut;
use super::fixture::Fixture;
use crate::error::{Error, Result};
use crate::registry::{AppImage, DeltaClient, DeltaOutcome};

/// Whether the suite asks for an `app:v2` that shares no layer with `app:v1`.
fn wants_all_new(dut: &Dut) -> bool {
    dut.vars.get("engine_v2").is_some_and(|v| v == "all-new")
}

fn fixture<'a>(dut: &'a mut Dut) -> Result<&'a Fixture> {
    // A suite that wants other images than the running registry serves gets a new one.
    if dut.engine.as_ref().map(|f| f.all_new) != Some(wants_all_new(dut)) {
        dut.engine = None;
        let f = Fixture::start(
            dut.target.serve_addr(),
            dut.target.host_addr(),
            wants_all_new(dut),
        )?;
        dut.note(&format!(
            "registry serving app:v1 and app:v2{} at {}",
            if f.all_new { " (sharing no layer)" } else { "" },
            f.seen_at
        ));
        dut.engine = Some(f);
    }
    Ok(dut.engine.as_ref().expect("set above"))
}

/// `engine-pull`: pulls `app:<tag>` from the harness's registry and runs it. Records the bytes
/// served; `full: true` requires exactly the image's size on the wire, `max_ratio: R` requires
/// at most R of the image's full size (layer reuse), `after: TAG` names the image already held.
pub fn pull(dut: &mut Dut, args: &BTreeMap<String, Value>, timeout: Duration) -> Result<()> {
    let tag = args
        .get("tag")
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string();
    let run = args.get("run").and_then(Value::as_bool).unwrap_or(true);
    let (reference, mark, full, image_id) = {
        let f = fixture(dut)?;
        let image = f
            .images
            .get(&tag)
            .ok_or_else(|| Error::input(format!("engine-pull: no image app:{tag} (v1, v2)")))?;
        (
            f.reference(&tag),
            f.registry.mark(),
            image.wire_size(),
            image.image_id().to_string(),
        )
    };
    let out = dut.exec(&format!("balena-engine pull {reference}"), timeout)?;
    if out.status != 0 {
        return Err(Error::failed(format!(
            "balena-engine pull {reference} exited {}: {}",
            out.status,
            out.stderr.trim()
        )));
    }
    // What went over the wire for this pull: manifests and blobs, not the `/v2/` probe.
    let served: u64 = {
        let f = dut.engine.as_ref().expect("started above");
        f.registry
            .served_since(mark)
            .iter()
            .filter(|s| s.path != "/v2/")
            .map(|s| s.bytes)
            .sum()
    };
    let ratio = served as f64 / full as f64;
    dut.record(&format!("bytes_served_{tag}"), served);
    dut.record(&format!("bytes_full_{tag}"), full);
    dut.record(&format!("ratio_{tag}"), format!("{ratio:.4}"));
    if args.get("full").and_then(Value::as_bool).unwrap_or(false) && served < full {
        return Err(Error::failed(format!(
            "pulling app:{tag} from scratch moved {served} bytes, less than its {full} bytes"
        )));
    }
    if let Some(max) = args.get("max_ratio").and_then(Value::as_f64) {
        if ratio > max {
            return Err(Error::failed(format!(
                "pulling app:{tag} moved {served} of its {full} bytes ({:.1}%), more than {:.1}%: its layers were not reused",
                ratio * 100.0,
                max * 100.0
            )));
        }
    }
    let id = dut.exec(
        &format!("balena-engine image inspect -f '{{{{.Id}}}}' {reference}"),
        timeout,
    )?;
    if id.stdout.trim() != image_id {
        return Err(Error::failed(format!(
            "the engine holds app:{tag} as {}, not {image_id}",
            id.stdout.trim()
        )));
    }
    if run {
        let out = dut.exec(&format!("balena-engine run --rm {reference}"), timeout)?;
        let want = format!("harness-app {tag}");
        if out.status != 0 || out.stdout.trim() != want {
            return Err(Error::failed(format!(
                "running app:{tag} exited {} and printed {:?}, expected {want:?}",
                out.status,
                out.stdout.trim()
            )));
        }
    }
    Ok(())
}

/// `engine-delta`: asks the engine for the delta from `app:<src>` to `app:<dest>` (both
/// pulled); skipped, saying why, where the engine has no delta API (plain Docker).
pub fn delta(dut: &mut Dut, args: &BTreeMap<String, Value>, timeout: Duration) -> Result<()> {
    let src = args
        .get("src")
        .and_then(Value::as_str)
        .unwrap_or("v1")
        .to_string();
    let dest = args
        .get("dest")
        .and_then(Value::as_str)
        .unwrap_or("v2")
        .to_string();
    let (src_ref, dest_ref, full) = {
        let f = fixture(dut)?;
        let full = f.images.get(&dest).map(AppImage::wire_size).unwrap_or(0);
        (f.reference(&src), f.reference(&dest), full)
    };
    let addr = dut
        .target
        .engine_addr()
        .ok_or_else(|| Error::infra("this target has no engine address"))?;
    let _ = timeout;
    match DeltaClient::tcp(addr).create(&src_ref, &dest_ref)? {
        DeltaOutcome::Unsupported { status, body } => {
            dut.note(&format!("POST /images/delta -> {status} {}", body.trim()));
            Err(Error::Skip(format!(
                "the engine has no delta API (POST /images/delta answered {status}): not balenaEngine"
            )))
        }
        DeltaOutcome::Created {
            image_id, bytes, ..
        } => {
            dut.record("delta_image", &image_id);
            if let Some(b) = bytes {
                dut.record("delta_bytes", b);
                dut.record(
                    "delta_ratio",
                    format!("{:.4}", b as f64 / full.max(1) as f64),
                );
            }
            dut.record("full_bytes", full);
            Ok(())
        }
    }
}
