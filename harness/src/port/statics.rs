//! The checks made on an image without booting it, reading it in place: the partition table,
//! the boot partition (config.json, os-release, the bootloader's environment), and the OS of
//! the active root slot (os-release, the fingerprint) through `image::hostapp`.
//!
//! Each check is a pure function of what was read, so that it is tested without an image;
//! [`check`] reads the image and calls them.

use std::fs::File;
use std::path::Path;

use regex::Regex;

use super::rows::Finding;
use crate::config::machine::Machine;
use crate::error::{Context, Error, Result};
use crate::image::ext4::Ext4;
use crate::image::hostapp::OsRoot;
use crate::image::inspect::parse_os_release;
use crate::image::partitions::{read_table, FsKind, Partition, PartitionTable, ReadOnly};

/// The static checks by id, in the order they are reported.
pub const IDS: [&str; 7] = [
    "partitions",
    "boot-flag",
    "fingerprint",
    "config-json",
    "os-release",
    "boot-os-release",
    "bootloader-env",
];

/// The partitions balenaOS has, in order, with their filesystems.
const LAYOUT: [(&str, FsKind); 5] = [
    ("resin-boot", FsKind::Vfat),
    ("resin-rootA", FsKind::Ext4),
    ("resin-rootB", FsKind::Ext4),
    ("resin-state", FsKind::Ext4),
    ("resin-data", FsKind::Ext4),
];

/// Where bootloaders keep their environment on resin-boot: GRUB (two places), u-boot,
/// balena-bootloader.
const ENV_FILES: [&str; 4] = [
    "EFI/BOOT/grubenv",
    "grub/grubenv",
    "resinOS_uEnv.txt",
    "bootenv",
];

/// The fields `/etc/os-release` must have (contracts, section 7).
const OS_RELEASE_FIELDS: [&str; 8] = [
    "ID",
    "NAME",
    "VERSION",
    "VERSION_ID",
    "PRETTY_NAME",
    "MACHINE",
    "META_BALENA_VERSION",
    "SLUG",
];

/// Runs every static check on the raw image at `image` for `machine`, in [`IDS`] order.
///
/// A check that cannot read what it needs fails, saying why; errors are left for what is no
/// fault of the image (a missing `debugfs`, a file that cannot be opened).
pub fn check(image: &Path, machine: &Machine) -> Result<Vec<(&'static str, Finding)>> {
    let mut file =
        File::open(image).input_ctx(|| format!("cannot open image {}", image.display()))?;
    let table = match read_table(&mut file) {
        Ok(t) => t,
        Err(Error::Input(why)) => {
            let rest = Finding::skipped("the image has no partition table to read");
            return Ok(IDS
                .iter()
                .map(|&id| match id {
                    "partitions" => (id, Finding::failed(why.clone())),
                    _ => (id, rest.clone()),
                })
                .collect());
        }
        Err(e) => return Err(e),
    };
    let mut out = vec![
        ("partitions", partitions(&table)),
        ("boot-flag", boot_flag(&table)),
    ];
    let mut slot = None;
    match crate::image::open_boot(ReadOnly(&mut file)) {
        Ok(boot) => {
            let config = found(boot.read("config.json"))?;
            out.push((
                "config-json",
                match config {
                    Ok(bytes) => config_json(bytes.as_deref(), &machine.slug),
                    Err(f) => f,
                },
            ));
            out.push((
                "boot-os-release",
                match found(boot.read("os-release"))? {
                    Ok(Some(_)) => Finding::passed("resin-boot/os-release"),
                    Ok(None) => Finding::failed("resin-boot has no os-release"),
                    Err(f) => f,
                },
            ));
            let mut envs = Vec::new();
            for name in ENV_FILES {
                if let Ok(Some(bytes)) = found(boot.read(name))? {
                    envs.push((name, String::from_utf8_lossy(&bytes).into_owned()));
                }
            }
            let (finding, active) = bootloader_env(&envs, &table);
            out.push(("bootloader-env", finding));
            slot = active;
        }
        Err(Error::Input(why)) => {
            for id in ["config-json", "boot-os-release", "bootloader-env"] {
                out.push((id, Finding::failed(why.clone())));
            }
        }
        Err(e) => return Err(e),
    }
    out.extend(root_checks(image, &table, slot.as_ref(), machine)?);
    out.sort_by_key(|(id, _)| IDS.iter().position(|i| i == id));
    Ok(out)
}

/// A read whose input error is the image's fault: `Ok(Err(failed finding))`.
fn found<T>(r: Result<T>) -> Result<Result<T, Finding>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Error::Input(why)) => Ok(Err(Finding::failed(why))),
        Err(e) => Err(e),
    }
}

/// os-release and the fingerprint, from the OS in `slot` (else resin-rootA).
fn root_checks(
    image: &Path,
    table: &PartitionTable,
    slot: Option<&Partition>,
    machine: &Machine,
) -> Result<Vec<(&'static str, Finding)>> {
    let Some(slot) = slot.or_else(|| table.by_label("resin-rootA")) else {
        let why = Finding::skipped("no root slot to read (no resin-rootA)");
        return Ok(vec![("os-release", why.clone()), ("fingerprint", why)]);
    };
    let name = slot.display_name();
    let root = match found(Ext4::on(image, slot).and_then(OsRoot::of))? {
        Ok(root) => root,
        Err(f) => return Ok(vec![("os-release", f.clone()), ("fingerprint", f)]),
    };
    let where_ = if root.is_hostapp() {
        format!("{name} (its hostapp, {} layers)", root.layers())
    } else {
        name.clone()
    };
    let release = match found(root.read("/etc/os-release"))? {
        Ok(Some((_, bytes))) => os_release(&String::from_utf8_lossy(&bytes), machine),
        Ok(None) => Finding::failed(format!("no /etc/os-release in {where_}")),
        Err(f) => f,
    };
    let print = match found(root.read("/balenaos.fingerprint"))? {
        Ok(Some((_, bytes))) => fingerprint(&String::from_utf8_lossy(&bytes), &where_),
        Ok(None) => Finding::failed(format!("no /balenaos.fingerprint in {where_}")),
        Err(f) => f,
    };
    Ok(vec![("os-release", release), ("fingerprint", print)])
}

/// The five partitions, in order, each with its filesystem.
pub fn partitions(table: &PartitionTable) -> Finding {
    let mut problems = Vec::new();
    let mut last: Option<&Partition> = None;
    for (label, fs) in LAYOUT {
        let Some(p) = table
            .partitions
            .iter()
            .find(|p| p.label.as_deref() == Some(label))
        else {
            problems.push(format!("no partition labelled {label}"));
            continue;
        };
        if p.fs != Some(fs) {
            let is = p.fs.map_or("nothing".to_string(), |k| k.to_string());
            problems.push(format!("{label} (#{}) holds {is}, not {fs}", p.number));
        }
        if let Some(before) = last.filter(|b| b.number > p.number) {
            problems.push(format!(
                "{label} (#{}) comes before {} (#{})",
                p.number,
                before.display_name(),
                before.number
            ));
        }
        last = Some(p);
    }
    if problems.is_empty() {
        let numbers: Vec<String> = LAYOUT
            .iter()
            .filter_map(|(l, _)| table.by_label(l).map(|p| format!("{l} #{}", p.number)))
            .collect();
        Finding::passed(format!("{} table: {}", table.kind, numbers.join(", ")))
    } else {
        Finding::failed(format!(
            "{} (the image has: {})",
            problems.join("; "),
            table.label_list()
        ))
    }
}

/// resin-boot is the partition firmware boots from.
pub fn boot_flag(table: &PartitionTable) -> Finding {
    match table.by_label("resin-boot") {
        None => Finding::skipped("no resin-boot partition"),
        Some(p) if p.bootable => Finding::passed(format!("resin-boot (#{}) is bootable", p.number)),
        Some(p) => Finding::failed(format!(
            "resin-boot (#{}) has no boot flag{}",
            p.number,
            if table.kind == crate::image::TableKind::Gpt {
                " (neither an EFI System partition nor legacy-BIOS bootable)"
            } else {
                ""
            }
        )),
    }
}

/// config.json as the image ships it: `deviceType` is the machine's slug, `persistentLogging`
/// a boolean if present.
pub fn config_json(bytes: Option<&[u8]>, slug: &str) -> Finding {
    let Some(bytes) = bytes else {
        return Finding::failed("resin-boot has no config.json");
    };
    let doc: serde_json::Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) => return Finding::failed(format!("config.json is not JSON: {e}")),
    };
    let Some(obj) = doc.as_object() else {
        return Finding::failed("config.json is not a JSON object");
    };
    let mut problems = Vec::new();
    match obj.get("deviceType") {
        Some(serde_json::Value::String(t)) if t == slug => {}
        Some(other) => problems.push(format!(
            "deviceType is {other}, expected \"{slug}\" (the machine's slug)"
        )),
        None => problems.push(format!(
            "config.json has no deviceType (the image must ship \"deviceType\": \"{slug}\")"
        )),
    }
    if let Some(v) = obj.get("persistentLogging").filter(|v| !v.is_boolean()) {
        problems.push(format!("persistentLogging is {v}, not a boolean"));
    }
    if problems.is_empty() {
        Finding::passed(format!("deviceType \"{slug}\""))
    } else {
        Finding::failed(problems.join("; "))
    }
}

/// The bootloader's environment: the first of [`ENV_FILES`] present (`envs`, name and text)
/// that names `resin_root_part`, which must be a root slot; also the slot it names.
pub fn bootloader_env<'t>(
    envs: &[(&str, String)],
    table: &'t PartitionTable,
) -> (Finding, Option<Partition>) {
    if envs.is_empty() {
        return (
            Finding::failed(format!("resin-boot has none of {}", ENV_FILES.join(", "))),
            None,
        );
    }
    let named = envs.iter().find_map(|(name, text)| {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .find_map(|l| l.strip_prefix("resin_root_part="))
            .map(|v| (*name, v.trim().to_string()))
    });
    let Some((file, value)) = named else {
        let names: Vec<&str> = envs.iter().map(|(n, _)| *n).collect();
        return (
            Finding::failed(format!("{} names no resin_root_part", names.join(", "))),
            None,
        );
    };
    let is_slot =
        |p: &&'t Partition| matches!(p.label.as_deref(), Some("resin-rootA" | "resin-rootB"));
    // A partition number, in hex as u-boot writes it; or a slot letter.
    let by_number = u32::from_str_radix(&value, 16)
        .ok()
        .and_then(|n| table.by_number(n))
        .filter(is_slot);
    let slot = by_number.or_else(|| match value.as_str() {
        "A" | "a" => table.by_label("resin-rootA"),
        "B" | "b" => table.by_label("resin-rootB"),
        _ => None,
    });
    match slot {
        Some(p) => (
            Finding::passed(format!(
                "{file}: resin_root_part={value} ({})",
                p.display_name()
            )),
            Some(p.clone()),
        ),
        None => (
            Finding::failed(format!(
                "{file}: resin_root_part={value} names no root slot (resin-rootA or \
                 resin-rootB; partitions: {})",
                table.label_list()
            )),
            None,
        ),
    }
}

/// `/etc/os-release`: the required fields, double-quoted values where not purely
/// alphanumeric, no `VARIANT`/`VARIANT_ID`, `ID`, `NAME`, and `SLUG`/`MACHINE` of `machine`.
pub fn os_release(text: &str, machine: &Machine) -> Finding {
    let fields = parse_os_release(text);
    let get = |k: &str| fields.iter().find(|(f, _)| f == k).map(|(_, v)| v.as_str());
    let mut problems = Vec::new();
    let missing: Vec<&str> = OS_RELEASE_FIELDS
        .into_iter()
        .filter(|f| get(f).is_none_or(str::is_empty))
        .collect();
    if !missing.is_empty() {
        problems.push(format!("missing {}", missing.join(", ")));
    }
    let os_machine = machine.os_machine.as_deref().unwrap_or(&machine.slug);
    for (field, want, what) in [
        ("ID", "balena-os", "balenaOS's"),
        ("NAME", "balenaOS", "balenaOS's"),
        ("SLUG", machine.slug.as_str(), "the machine's slug"),
        ("MACHINE", os_machine, "the machine's"),
    ] {
        if let Some(v) = get(field).filter(|v| *v != want) {
            problems.push(format!("{field} is \"{v}\", expected \"{want}\" ({what})"));
        }
    }
    for variant in ["VARIANT", "VARIANT_ID"] {
        if get(variant).is_some() {
            problems.push(format!("{variant} is set (balenaOS has none since 2.85)"));
        }
    }
    let plain = Regex::new(r"^[A-Za-z0-9]*$").expect("a valid regex");
    for line in text.lines().map(str::trim) {
        let Some((k, raw)) = line.split_once('=').filter(|_| !line.starts_with('#')) else {
            continue;
        };
        let quoted = raw.len() >= 2 && raw.starts_with('"') && raw.ends_with('"');
        if !quoted && !plain.is_match(raw) {
            problems.push(format!("{k}={raw} is not double-quoted"));
        }
    }
    if problems.is_empty() {
        Finding::passed(format!(
            "{}, SLUG {}, MACHINE {os_machine}",
            get("PRETTY_NAME").unwrap_or_default(),
            machine.slug
        ))
    } else {
        Finding::failed(problems.join("; "))
    }
}

/// `/balenaos.fingerprint`: an `md5  /path` line per OS file.
pub fn fingerprint(text: &str, where_: &str) -> Finding {
    let line = Regex::new(r"^\\?[0-9a-f]{32}  /").expect("a valid regex");
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let bad = lines.iter().filter(|l| !line.is_match(l)).count();
    if lines.is_empty() {
        Finding::failed(format!("/balenaos.fingerprint in {where_} is empty"))
    } else if bad > 0 {
        let first = lines.iter().find(|l| !line.is_match(l)).unwrap_or(&"");
        Finding::failed(format!(
            "/balenaos.fingerprint in {where_}: {bad} of {} lines are not `md5  /path`, e.g. {:?}",
            lines.len(),
            first.chars().take(80).collect::<String>()
        ))
    } else {
        Finding::passed(format!("{} files in {where_}", lines.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testimg::make_test_image;
    use crate::image::TableKind;
    use crate::port::rows::Status;

    fn machine() -> Machine {
        serde_saphyr::from_str("name: m\ndescription: d\nslug: qemux86-64\n").unwrap()
    }

    fn table(kind: TableKind) -> PartitionTable {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        make_test_image(&path, kind).unwrap();
        read_table(&mut File::open(&path).unwrap()).unwrap()
    }

    const GOOD: &str = "ID=\"balena-os\"\nNAME=\"balenaOS\"\nVERSION=\"6.0.13\"\n\
        VERSION_ID=\"6.0.13\"\nPRETTY_NAME=\"balenaOS 6.0.13\"\nMACHINE=\"qemux86-64\"\n\
        META_BALENA_VERSION=\"6.0.13\"\nSLUG=\"qemux86-64\"\n";

    #[test]
    fn partitions_in_order_with_their_filesystems() {
        for kind in [TableKind::Msdos, TableKind::Gpt] {
            let t = table(kind);
            let f = partitions(&t);
            assert_eq!(f.status, Status::Passed, "{kind}: {}", f.why);
            assert_eq!(boot_flag(&t).status, Status::Passed, "{kind}");
        }
        let mut t = table(TableKind::Msdos);
        t.partitions[3].label = Some("resin-junk".into());
        t.partitions[1].fs = Some(FsKind::Vfat);
        t.partitions.swap(1, 2);
        let (a, b) = (t.partitions[1].number, t.partitions[2].number);
        t.partitions[1].number = b;
        t.partitions[2].number = a;
        t.partitions[0].bootable = false;
        let f = partitions(&t);
        assert_eq!(f.status, Status::Failed);
        assert!(
            f.why.contains("resin-rootA (#3) holds vfat, not ext4"),
            "{}",
            f.why
        );
        assert!(
            f.why
                .contains("resin-rootB (#2) comes before resin-rootA (#3)"),
            "{}",
            f.why
        );
        assert!(
            f.why.contains("no partition labelled resin-state"),
            "{}",
            f.why
        );
        assert!(f.why.contains("(the image has: resin-boot, "), "{}", f.why);
        let f = boot_flag(&t);
        assert_eq!(
            (f.status, f.why.as_str()),
            (Status::Failed, "resin-boot (#1) has no boot flag")
        );
    }

    #[test]
    fn config_json_ships_the_slug() {
        let ok = config_json(
            Some(br#"{"deviceType":"qemux86-64","persistentLogging":false}"#),
            "qemux86-64",
        );
        assert_eq!(ok.status, Status::Passed);
        let f = config_json(
            Some(br#"{"deviceType":"raspberrypi3","persistentLogging":"no"}"#),
            "qemux86-64",
        );
        assert_eq!(f.status, Status::Failed);
        assert_eq!(
            f.why,
            "deviceType is \"raspberrypi3\", expected \"qemux86-64\" (the machine's slug); \
             persistentLogging is \"no\", not a boolean"
        );
        assert!(config_json(Some(b"{}"), "x")
            .why
            .contains("has no deviceType"));
        assert!(config_json(Some(b"[1"), "x")
            .why
            .starts_with("config.json is not JSON"));
        assert_eq!(config_json(None, "x").why, "resin-boot has no config.json");
    }

    #[test]
    fn bootloader_environments() {
        let t = table(TableKind::Msdos);
        let grub = (
            "EFI/BOOT/grubenv",
            "# GRUB Environment Block\nresin_root_part=2\nbootcount=0\n####".to_string(),
        );
        let (f, slot) = bootloader_env(&[grub], &t);
        assert_eq!(f.why, "EFI/BOOT/grubenv: resin_root_part=2 (resin-rootA)");
        assert_eq!(slot.unwrap().number, 2);
        let uboot = (
            "resinOS_uEnv.txt",
            "resin_root_part=3\nupgrade_available=1\n".to_string(),
        );
        assert_eq!(bootloader_env(&[uboot], &t).1.unwrap().number, 3);
        let letter = ("bootenv", "resin_root_part=B\n".to_string());
        assert_eq!(bootloader_env(&[letter], &t).1.unwrap().number, 3);
        let (f, slot) = bootloader_env(&[("bootenv", "resin_root_part=5\n".to_string())], &t);
        assert!(
            f.why
                .starts_with("bootenv: resin_root_part=5 names no root slot"),
            "{}",
            f.why
        );
        assert!(slot.is_none());
        let (f, _) = bootloader_env(&[("grub/grubenv", "bootcount=0\n".to_string())], &t);
        assert_eq!(f.why, "grub/grubenv names no resin_root_part");
        let (f, _) = bootloader_env(&[], &t);
        assert_eq!(
            f.why,
            "resin-boot has none of EFI/BOOT/grubenv, grub/grubenv, resinOS_uEnv.txt, bootenv"
        );
    }

    #[test]
    fn os_release_fields() {
        let ok = os_release(GOOD, &machine());
        assert_eq!(ok.status, Status::Passed, "{}", ok.why);
        assert_eq!(
            ok.why,
            "balenaOS 6.0.13, SLUG qemux86-64, MACHINE qemux86-64"
        );
        let bad = GOOD
            .replace("META_BALENA_VERSION=\"6.0.13\"\n", "")
            .replace("SLUG=\"qemux86-64\"", "SLUG=\"raspberrypi4-64\"")
            .replace(
                "\nVERSION=\"6.0.13\"\n",
                "\nVERSION=6.0.13\nVARIANT=\"dev\"\n",
            );
        let f = os_release(&bad, &machine());
        assert_eq!(f.status, Status::Failed);
        assert_eq!(
            f.why,
            "missing META_BALENA_VERSION; SLUG is \"raspberrypi4-64\", expected \"qemux86-64\" \
             (the machine's slug); VARIANT is set (balenaOS has none since 2.85); \
             VERSION=6.0.13 is not double-quoted"
        );
        let mut m = machine();
        m.os_machine = Some("genericx86-64".into());
        assert!(os_release(GOOD, &m)
            .why
            .contains("MACHINE is \"qemux86-64\", expected \"genericx86-64\""));
    }

    #[test]
    fn fingerprints() {
        let f = fingerprint("0123456789abcdef0123456789abcdef  /bin/sh\n\\0123456789abcdef0123456789abcdef  /a\\nb\n", "resin-rootA");
        assert_eq!(
            (f.status, f.why.as_str()),
            (Status::Passed, "2 files in resin-rootA")
        );
        let f = fingerprint("0123456789abcdef0123456789abcdef  /bin/sh\ngarbage\n", "x");
        assert!(
            f.why
                .contains("1 of 2 lines are not `md5  /path`, e.g. \"garbage\""),
            "{}",
            f.why
        );
        assert_eq!(fingerprint("\n", "x").status, Status::Failed);
    }

    #[test]
    fn a_file_that_is_no_disk_fails_the_layout_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.img");
        std::fs::write(&path, "hello").unwrap();
        let got = check(&path, &machine()).unwrap();
        assert_eq!(got.len(), IDS.len());
        assert_eq!(got[0].0, "partitions");
        assert_eq!(got[0].1.status, Status::Failed);
        assert!(got[1..].iter().all(|(_, f)| f.status == Status::Skipped));
        let err = check(&dir.path().join("absent.img"), &machine()).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
    }
}
