//! Which targets a run uses: QEMU machines (`--machine`, `--parallel N` copies each), rigs
//! named with `--rig`, and rigs picked from the pool by tag (`--rigs tag=NAME`, only those in
//! rotation). Each target is held through a lease while it runs.

use std::path::Path;

use crate::board::rig::{self, Rig};
use crate::error::{Error, Result};
use crate::rotation;

/// What plays a target.
#[derive(Debug, Clone)]
pub enum Kind {
    /// A QEMU machine on this host, in one of its QEMU slots.
    Qemu,
    /// A rig (a board, or QEMU playing one).
    Rig(Box<Rig>),
}

/// One target of a run.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Its name in the run: `qemux86-64`, `qemux86-64#2`, `rig-pi4-1`.
    pub name: String,
    /// The machine type it plays.
    pub machine: String,
    /// What plays it.
    pub kind: Kind,
    /// Picked from a pool, so the run may go on without it when its lease is not free.
    pub pooled: bool,
}

impl TargetSpec {
    /// The leases that may hold it (any one of them).
    pub fn lease_names(&self) -> Vec<String> {
        match &self.kind {
            Kind::Rig(r) => vec![format!("rig-{}", r.name)],
            Kind::Qemu => (0..qemu_slots()).map(|i| format!("qemu-{i}")).collect(),
        }
    }

    /// The rig's name, for a rig.
    pub fn rig(&self) -> Option<&Rig> {
        match &self.kind {
            Kind::Rig(r) => Some(r),
            Kind::Qemu => None,
        }
    }
}

/// How many QEMU machines this host runs at once, over all runs: `HARNESS_QEMU_SLOTS`, else
/// the number of CPUs.
pub fn qemu_slots() -> usize {
    std::env::var("HARNESS_QEMU_SLOTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n: &usize| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The run's targets, checked: rigs' hardware present, tags matching at least one rig in
/// rotation. `say` gets notes (a named rig that is out of rotation runs anyway).
pub fn resolve(
    root: &Path,
    machines: &[String],
    parallel: usize,
    rigs: &[String],
    pools: &[String],
    say: &mut dyn FnMut(String),
) -> Result<Vec<TargetSpec>> {
    let mut out = Vec::new();
    for name in rigs {
        let rig = rig::load(root, name)?;
        check(&rig)?;
        if let Some(status) = rotation::status(&rig.name)?.filter(|s| !s.in_rotation) {
            say(format!(
                "rig {} is {}; running it anyway since it was named",
                rig.name,
                status.describe()
            ));
        }
        out.push(rig_target(rig, false));
    }
    for pool in pools {
        let tag = pool.strip_prefix("tag=").ok_or_else(|| {
            Error::input(format!(
                "--rigs {pool}: expected `tag=NAME` (e.g. --rigs tag=pi4)"
            ))
        })?;
        let mut found = 0;
        for rig in rig::list(root)?
            .into_iter()
            .filter(|r| r.tags.iter().any(|t| t == tag))
        {
            found += 1;
            if !rotation::in_rotation(&rig.name) {
                let why = rotation::status(&rig.name)?.map(|s| s.describe());
                say(format!(
                    "rig {} skipped: {}",
                    rig.name,
                    why.unwrap_or_default()
                ));
                continue;
            }
            if let Err(e) = rig.check() {
                say(format!("rig {} skipped: {e}", rig.name));
                continue;
            }
            if !out
                .iter()
                .any(|t: &TargetSpec| t.name == format!("rig-{}", rig.name))
            {
                out.push(rig_target(rig, true));
            }
        }
        if !out.iter().any(|t| t.pooled) {
            return Err(Error::input(format!(
                "--rigs {pool}: {} rig(s) have tag `{tag}`, none of them in rotation and present (see `harness rigs`)",
                found
            )));
        }
    }
    let copies = parallel.max(1);
    let count = machines.len() * copies;
    for (k, machine) in machines
        .iter()
        .flat_map(|m| std::iter::repeat_n(m, copies))
        .enumerate()
    {
        let name = if count == 1 {
            machine_label(machine)
        } else {
            format!("{}#{}", machine_label(machine), k + 1)
        };
        out.push(TargetSpec {
            name,
            machine: machine.clone(),
            kind: Kind::Qemu,
            pooled: false,
        });
    }
    if out.is_empty() {
        return Err(Error::input(
            "no target: give --machine, --rig or --rigs tag=NAME",
        ));
    }
    Ok(out)
}

/// A machine's name for display: its file stem when given as a path.
fn machine_label(machine: &str) -> String {
    Path::new(machine)
        .file_stem()
        .filter(|_| machine.ends_with(".yaml"))
        .map_or(machine.to_string(), |s| s.to_string_lossy().into_owned())
}

fn rig_target(rig: Rig, pooled: bool) -> TargetSpec {
    TargetSpec {
        name: format!("rig-{}", rig.name),
        machine: rig.machine.clone(),
        kind: Kind::Rig(Box::new(rig)),
        pooled,
    }
}

/// Missing hardware is bad input, found before anything is built or flashed.
fn check(rig: &Rig) -> Result<()> {
    rig.check()
        .map_err(|e| crate::board::spec::in_rig(&rig.name, e))
}

/// A run's title from its targets: `qemux86-64`, `qemux86-64 x2`, `rig-pi4-1, rig-pi4-2`.
pub fn title(targets: &[TargetSpec]) -> String {
    let first = &targets[0].name;
    if targets.len() == 1 {
        return first.clone();
    }
    let machine = &targets[0].machine;
    if targets
        .iter()
        .all(|t| matches!(t.kind, Kind::Qemu) && &t.machine == machine)
    {
        return format!("{} x{}", machine_label(machine), targets.len());
    }
    targets
        .iter()
        .map(|t| t.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
