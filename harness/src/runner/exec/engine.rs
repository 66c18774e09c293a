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
        // The images are for the device's architecture.
        let arch = dut.exec("uname -m", Duration::from_secs(60))?;
        let arch = arch.stdout.trim().to_string();
        let f = Fixture::start(
            dut.target.serve_addr(),
            dut.target.host_addr(),
            &arch,
            wants_all_new(dut),
        )?;
        dut.note(&format!(
            "registry serving app:v1 and app:v2{} for {} at {}",
            if f.all_new { " (sharing no layer)" } else { "" },
            arch,
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
    wait_for_engine(dut, timeout)?;
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
/// pulled), then proves it applies as a device gets it: the delta image is exported, served by
/// the harness as `app:delta` and pulled on the device holding only `app:<src>` (`app:<dest>`
/// removed), which must yield `app:<dest>`'s image. `without_base: true` removes `app:<src>`
/// too: the pull must then be refused. `apply: false` stops after making the delta. Skipped,
/// saying why, where the engine has no delta API (plain Docker).
/// Waits (on the device, at most `timeout` and 120 s) until the engine answers: right after a
/// boot SSH is up before the engine is.
fn wait_for_engine(dut: &mut Dut, timeout: Duration) -> Result<()> {
    let secs = timeout.min(Duration::from_secs(120)).as_secs().max(1);
    let out = dut.exec(
        &format!(
            "i=0; until balena-engine version >/dev/null 2>&1; do i=$((i+1)); [ $i -ge {secs} ] && exit 1; sleep 1; done"
        ),
        timeout,
    )?;
    if out.status != 0 {
        return Err(Error::failed(format!(
            "the engine did not answer `balena-engine version` within {secs}s"
        )));
    }
    Ok(())
}

pub fn delta(dut: &mut Dut, args: &BTreeMap<String, Value>, timeout: Duration) -> Result<()> {
    let tag = |name: &str, default: &str| {
        args.get(name)
            .and_then(Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    let flag =
        |name: &str, default: bool| args.get(name).and_then(Value::as_bool).unwrap_or(default);
    let (src, dest) = (tag("src", "v1"), tag("dest", "v2"));
    let (apply, without_base) = (flag("apply", true), flag("without_base", false));
    let (src_ref, dest_ref, full, src_id, dest_id, seen) = {
        let f = fixture(dut)?;
        let id = |t: &str| {
            f.images
                .get(t)
                .map(|i| i.image_id().to_string())
                .unwrap_or_default()
        };
        let full = f.images.get(&dest).map(AppImage::wire_size).unwrap_or(0);
        (
            f.reference(&src),
            f.reference(&dest),
            full,
            id(&src),
            id(&dest),
            f.seen_at.ip(),
        )
    };
    let addr = dut
        .target
        .engine_addr()
        .ok_or_else(|| Error::infra("this target has no engine address"))?;
    let client = DeltaClient::tcp(addr);
    client.wait_ready(timeout)?;
    let delta_id = match client.create(&src_ref, &dest_ref)? {
        DeltaOutcome::Unsupported { status, body } => {
            dut.note(&format!("POST /images/delta -> {status} {}", body.trim()));
            return Err(Error::Skip(format!(
                "the engine has no delta API (POST /images/delta answered {status}): not balenaEngine"
            )));
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
            dut.record(&format!("bytes_full_{dest}"), full);
            image_id
        }
    };
    if !apply {
        return Ok(());
    }
    let mut remove = vec![dest_id.clone()];
    if without_base {
        remove.push(src_id.clone());
    }
    let applied =
        crate::registry::apply(&client, &delta_id, dut.target.serve_addr(), seen, &remove)?;
    dut.record("bytes_delta", applied.delta_wire);
    dut.record("bytes_served_delta", applied.served);
    dut.note(&format!(
        "delta {delta_id} (base {}) served as app:delta; the device held {}",
        applied.base.as_deref().unwrap_or("none named"),
        if without_base {
            format!("neither app:{src} nor app:{dest}")
        } else {
            format!("app:{src} only")
        }
    ));
    applied_verdict(&applied, &src, &dest, &src_id, &dest_id, without_base)
}

/// Whether what the pull of a delta yielded is what the contract says: `app:<dest>`'s image on
/// a device holding its base, a refusal on one without it.
fn applied_verdict(
    applied: &crate::registry::Applied,
    src: &str,
    dest: &str,
    src_id: &str,
    dest_id: &str,
    without_base: bool,
) -> Result<()> {
    if applied.base.as_deref() != Some(src_id) {
        return Err(Error::failed(format!(
            "the delta app:{src} -> app:{dest} names base {}, not app:{src} ({src_id})",
            applied.base.as_deref().unwrap_or("none")
        )));
    }
    match (&applied.pulled, without_base) {
        (Ok(id), false) if id == dest_id => Ok(()),
        (Ok(id), false) => Err(Error::failed(format!(
            "the delta app:{src} -> app:{dest} applied on a device holding app:{src} gave image {id}, not app:{dest} ({dest_id})"
        ))),
        (Err(why), false) => Err(Error::failed(format!(
            "the device refused the delta app:{src} -> app:{dest} although it holds its base app:{src}: {why}"
        ))),
        (Ok(id), true) => Err(Error::failed(format!(
            "the delta app:{src} -> app:{dest} applied (as {id}) on a device without its base app:{src} ({src_id}): it must be refused"
        ))),
        (Err(why), true) if why.contains(src_id) || why.contains("base") => Ok(()),
        (Err(why), true) => Err(Error::failed(format!(
            "the delta was refused on a device without its base, but the engine did not say the base is missing: {why}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::Applied;

    fn applied(base: &str, pulled: std::result::Result<&str, &str>) -> Applied {
        Applied {
            base: Some(base.into()),
            delta_wire: 2248,
            served: 2220,
            pulled: pulled.map(str::to_string).map_err(str::to_string),
        }
    }

    #[test]
    fn a_delta_must_yield_the_target_on_its_base_and_be_refused_without_it() {
        let ok =
            |a: &Applied, without| applied_verdict(a, "v1", "v2", "sha256:a", "sha256:b", without);
        assert!(ok(&applied("sha256:a", Ok("sha256:b")), false).is_ok());
        let e = ok(&applied("sha256:a", Ok("sha256:c")), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("gave image sha256:c, not app:v2 (sha256:b)"),
            "{e}"
        );
        let e = ok(&applied("sha256:a", Err("loading delta base image")), false).unwrap_err();
        assert!(
            e.to_string()
                .contains("refused the delta app:v1 -> app:v2 although it holds its base"),
            "{e}"
        );
        let e = ok(&applied("sha256:x", Ok("sha256:b")), false).unwrap_err();
        assert!(
            e.to_string().contains("names base sha256:x, not app:v1"),
            "{e}"
        );
        // Without its base: refused, naming it, is right; applied is a failure.
        let refusal = "loading delta base image \"sha256:a\": no such file or directory";
        assert!(ok(&applied("sha256:a", Err(refusal)), true).is_ok());
        let e = ok(&applied("sha256:a", Ok("sha256:b")), true).unwrap_err();
        assert!(
            e.to_string()
                .contains("on a device without its base app:v1"),
            "{e}"
        );
        assert!(matches!(e, Error::Failed(_)));
        let e = ok(&applied("sha256:a", Err("connection reset")), true).unwrap_err();
        assert!(
            e.to_string().contains("did not say the base is missing"),
            "{e}"
        );
    }
}
