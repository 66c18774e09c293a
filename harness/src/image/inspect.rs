//! `harness image inspect`: partition table, os-release and masked config.json of an image.

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};

use serde::{Serialize, Serializer};

use super::bootfs::{open_boot, BOOT_LABEL};
use super::config_json::ConfigJson;
use super::configure::unpack_to;
use super::partitions::{read_table, PartitionTable, ReadOnly};
use super::source::Packing;
use crate::error::{Context, Result};

/// What an image holds, for people (`Display`) and machines (`Serialize`, `--json`).
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// The image as given.
    pub path: PathBuf,
    /// Its partition table.
    pub table: PartitionTable,
    /// `os-release` from the boot partition, in file order (a JSON object in `--json`).
    #[serde(serialize_with = "pairs_as_map")]
    pub os_release: Vec<(String, String)>,
    /// `config.json` from the boot partition with its secrets masked; `None` when absent.
    pub config: Option<ConfigJson>,
}

/// Inspects the image at `path`; a packed image is first unpacked into a temporary directory.
pub fn inspect(path: &Path) -> Result<Inspection> {
    if Packing::of(path) == Packing::Raw {
        return inspect_raw(path, path);
    }
    let tmp = tempfile::tempdir().infra_ctx(|| "cannot create a temporary directory".into())?;
    let raw = unpack_to(path, tmp.path())?;
    inspect_raw(&raw, path)
}

fn inspect_raw(raw: &Path, shown: &Path) -> Result<Inspection> {
    let at = super::at(shown);
    let mut file =
        File::open(raw).input_ctx(|| format!("cannot open image {}", shown.display()))?;
    let table = read_table(&mut file).map_err(&at)?;
    let boot = open_boot(ReadOnly(&mut file)).map_err(&at)?;
    let os_release = boot
        .read("os-release")
        .map_err(&at)?
        .map(|b| parse_os_release(&String::from_utf8_lossy(&b)))
        .unwrap_or_default();
    let origin = format!("{}: {BOOT_LABEL}/config.json", shown.display());
    let config = match boot.read("config.json").map_err(&at)? {
        Some(bytes) => Some(ConfigJson::parse(&bytes, &origin)?.masked()),
        None => None,
    };
    Ok(Inspection {
        path: shown.to_path_buf(),
        table,
        os_release,
        config,
    })
}

/// Parses `KEY=value` lines, dropping comments and the quotes around values.
pub fn parse_os_release(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), unquote(v.trim())))
        .collect()
}

fn unquote(v: &str) -> String {
    for q in ['"', '\''] {
        if let Some(inner) = v.strip_prefix(q).and_then(|s| s.strip_suffix(q)) {
            if q == '\'' {
                return inner.to_string();
            }
            let mut out = String::with_capacity(inner.len());
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match (c, chars.clone().next()) {
                    ('\\', Some(n @ ('"' | '\\' | '$' | '`'))) => {
                        out.push(n);
                        chars.next();
                    }
                    _ => out.push(c),
                }
            }
            return out;
        }
    }
    v.to_string()
}

fn pairs_as_map<S: Serializer>(pairs: &[(String, String)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// Sizes as people read them: `512 B`, `40.0 MiB`, `2.0 GiB`.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

impl fmt::Display for Inspection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = &self.table;
        writeln!(
            f,
            "{}: {} partition table, {}",
            self.path.display(),
            t.kind,
            human_size(t.disk_size)
        )?;
        let mut rows: Vec<_> = t.partitions.iter().chain(t.extended.iter()).collect();
        rows.sort_by_key(|p| p.number);
        let width = rows
            .iter()
            .filter_map(|p| p.label.as_ref().map(String::len))
            .max()
            .unwrap_or(0)
            .max("(extended)".len());
        writeln!(
            f,
            "  {:>2}  {:<width$}  {:<5}  {:>10}  {:>10}  type",
            "#", "label", "fs", "start", "size"
        )?;
        for p in rows {
            let is_extended = t.extended.as_ref() == Some(p);
            let label = match (&p.label, is_extended) {
                (_, true) => "(extended)",
                (Some(l), false) => l.as_str(),
                (None, false) => "-",
            };
            let fs = p.fs.map(|k| k.to_string()).unwrap_or_else(|| "-".into());
            writeln!(
                f,
                "  {:>2}  {label:<width$}  {fs:<5}  {:>10}  {:>10}  {}",
                p.number,
                human_size(p.start),
                human_size(p.size),
                p.type_name
            )?;
        }
        writeln!(f, "os-release:")?;
        if self.os_release.is_empty() {
            writeln!(f, "  (none)")?;
        }
        for (k, v) in &self.os_release {
            writeln!(f, "  {k}={v}")?;
        }
        match &self.config {
            None => writeln!(f, "config.json: (none)"),
            Some(c) => {
                writeln!(f, "config.json (secrets masked):")?;
                let pretty = String::from_utf8_lossy(&c.to_pretty_bytes()).into_owned();
                for line in pretty.lines() {
                    writeln!(f, "  {line}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;
    use crate::image::configure::{configure, Change};
    use crate::image::partitions::TableKind;
    use crate::image::testimg::{make_test_image, make_test_image_sized};
    use std::io::Write;

    #[test]
    fn inspects_a_raw_msdos_image() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        make_test_image(&path, TableKind::Msdos).unwrap();
        configure(
            &path,
            &[Change::Set(
                "deviceApiKey".into(),
                "0123456789abcdef0123".into(),
            )],
        )
        .unwrap();
        let i = inspect(&path).unwrap();
        assert_eq!(i.table.partitions.len(), 5);
        assert_eq!(i.os_release[0], ("ID".into(), "balena-os".into()));
        let text = i.to_string();
        let want_lines = [
            "msdos partition table, 256.0 MiB",
            "   1  resin-boot   vfat      4.0 MiB    40.0 MiB  W95 FAT32 (LBA)",
            "   4  (extended)   -       ",
            "   6  resin-data   ext4  ",
            "  PRETTY_NAME=balenaOS 6.0.13",
            "config.json (secrets masked):",
            "    \"deviceApiKey\": \"****0123\",",
        ];
        for want in want_lines {
            assert!(text.contains(want), "missing {want:?} in:\n{text}");
        }
        assert!(!text.contains("0123456789abcdef"), "{text}");
        let json = serde_json::to_value(&i).unwrap();
        assert_eq!(json["table"]["kind"], "msdos");
        assert_eq!(json["table"]["partitions"][0]["label"], "resin-boot");
        assert_eq!(json["table"]["partitions"][0]["fs"], "vfat");
        assert_eq!(json["table"]["extended"]["number"], 4);
        assert_eq!(json["os_release"]["VERSION_ID"], "6.0.13");
        assert_eq!(json["config"]["deviceApiKey"], "****0123");
    }

    #[test]
    fn inspects_a_packed_gpt_image() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("t.img");
        make_test_image_sized(&raw, TableKind::Gpt, 128 << 20).unwrap();
        let packed = dir.path().join("t.img.zst");
        let mut enc = zstd::stream::write::Encoder::new(File::create(&packed).unwrap(), 1).unwrap();
        std::io::copy(&mut File::open(&raw).unwrap(), &mut enc).unwrap();
        enc.finish().unwrap().flush().unwrap();
        let i = inspect(&packed).unwrap();
        assert_eq!(i.path, packed);
        assert_eq!(i.table.kind, TableKind::Gpt);
        assert_eq!(i.table.by_label("resin-data").unwrap().number, 5);
        assert!(i.config.is_some());
        assert!(i
            .to_string()
            .starts_with(&format!("{}: gpt", packed.display())));
    }

    #[test]
    fn inspect_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.img");
        std::fs::write(&text, "hello\n").unwrap();
        let err = inspect(&text).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            format!(
                "{}: not a disk image (no msdos or GPT partition table)",
                text.display()
            )
        );
        let err = inspect(&dir.path().join("absent.img")).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert!(err.to_string().starts_with("cannot open image "), "{err}");
    }

    #[test]
    fn os_release_parsing() {
        let text = "# comment\nID=balena-os\nNAME=\"balena OS\"\nX='a b'\nE=\"say \\\"hi\\\"\"\n\nbroken\n";
        assert_eq!(
            parse_os_release(text),
            vec![
                ("ID".into(), "balena-os".into()),
                ("NAME".into(), "balena OS".into()),
                ("X".into(), "a b".into()),
                ("E".into(), "say \"hi\"".into()),
            ]
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(human_size(512), "512 B");
        assert_eq!(human_size(4 << 20), "4.0 MiB");
        assert_eq!(human_size(2 << 30), "2.0 GiB");
        assert_eq!(human_size(1536), "1.5 KiB");
    }
}
