//! Reads a disk's partition table (msdos with logical partitions, or GPT) and each partition's label.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom, Write};

use serde::Serialize;

use crate::error::{Error, Result};

/// The kind of partition table on a disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TableKind {
    /// A DOS/MBR table, possibly with an extended partition holding logical ones.
    Msdos,
    /// A GUID partition table behind a protective MBR.
    Gpt,
}

impl fmt::Display for TableKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TableKind::Msdos => "msdos",
            TableKind::Gpt => "gpt",
        })
    }
}

/// A filesystem, as told by its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FsKind {
    /// FAT12/16/32.
    Vfat,
    /// ext2/3/4 (they share the superblock magic).
    Ext4,
    /// Anything else, or nothing.
    Other,
}

impl fmt::Display for FsKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FsKind::Vfat => "vfat",
            FsKind::Ext4 => "ext4",
            FsKind::Other => "other",
        })
    }
}

/// One partition: where it lies and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Partition {
    /// The partition number as Linux counts it (msdos logical partitions start at 5).
    pub number: u32,
    /// Offset of the first byte, from the start of the disk.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// The partition type, e.g. `W95 FAT32 (LBA)`, `Linux`, `EFI System`.
    pub type_name: String,
    /// The filesystem's volume label, else the GPT partition name.
    pub label: Option<String>,
    /// The filesystem found inside; `None` for the msdos extended container.
    pub fs: Option<FsKind>,
    /// msdos: the boot flag is set; GPT: an EFI System partition, or the legacy BIOS
    /// bootable attribute is set.
    pub bootable: bool,
}

impl Partition {
    /// Offset one past the last byte.
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }

    /// The label, or `#N` when the partition has none (for messages).
    pub fn display_name(&self) -> String {
        match &self.label {
            Some(l) => l.clone(),
            None => format!("#{}", self.number),
        }
    }
}

/// A disk's partition table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartitionTable {
    /// msdos or GPT.
    pub kind: TableKind,
    /// Size of the whole disk image in bytes.
    pub disk_size: u64,
    /// The partitions that can hold a filesystem, in number order.
    pub partitions: Vec<Partition>,
    /// The msdos extended container (holding partitions 5, 6, …), if any.
    pub extended: Option<Partition>,
}

impl PartitionTable {
    /// The partition whose label is `label` (exactly, else ignoring ASCII case).
    pub fn by_label(&self, label: &str) -> Option<&Partition> {
        let exact = self
            .partitions
            .iter()
            .find(|p| p.label.as_deref() == Some(label));
        exact.or_else(|| {
            self.partitions.iter().find(|p| {
                p.label
                    .as_deref()
                    .is_some_and(|l| l.eq_ignore_ascii_case(label))
            })
        })
    }

    /// The partition numbered `number`.
    pub fn by_number(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    /// Labels (or `#N`) of all partitions, comma-separated, for error messages.
    pub fn label_list(&self) -> String {
        if self.partitions.is_empty() {
            return "no partitions".into();
        }
        let names: Vec<String> = self
            .partitions
            .iter()
            .map(Partition::display_name)
            .collect();
        names.join(", ")
    }
}

/// Wraps a reader so it can be handed to APIs that want `Write` too; every write fails.
///
/// Used to read FAT and GPT structures from an image opened read-only.
pub struct ReadOnly<R>(pub R);

impl<R: Read> Read for ReadOnly<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl<R: Seek> Seek for ReadOnly<R> {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.0.seek(pos)
    }
}

impl<R> Write for ReadOnly<R> {
    fn write(&mut self, _buf: &[u8]) -> io::Result<usize> {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "image opened read-only",
        ))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<R> fmt::Debug for ReadOnly<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ReadOnly")
    }
}

const SECTOR: u64 = 512;
const NOT_A_DISK: &str = "not a disk image (no msdos or GPT partition table)";

/// Reads the partition table of a whole-disk stream, and each partition's filesystem and label.
///
/// Errors are [`Error::Input`] and name no file: prefix them with [`super::at`].
pub fn read_table<F: Read + Seek>(file: &mut F) -> Result<PartitionTable> {
    let disk_size = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::input(format!("cannot read: {e}")))?;
    let mut mbr = [0u8; 512];
    if disk_size < SECTOR || read_at(file, 0, &mut mbr).is_err() {
        return Err(Error::input(NOT_A_DISK));
    }
    if mbr[510..512] != [0x55, 0xAA] {
        return Err(Error::input(NOT_A_DISK));
    }
    let entries: Vec<RawEntry> = (0..4).map(|i| RawEntry::parse(&mbr, i)).collect();
    if entries.iter().any(|e| e.sys == 0xEE) {
        vet_gpt_headers(file)?;
        return read_gpt(file, disk_size);
    }
    let used: Vec<&RawEntry> = entries
        .iter()
        .filter(|e| e.sys != 0 && e.sectors != 0)
        .collect();
    // A FAT "superfloppy" also ends in 55 AA; its bytes here are code, not a table.
    let sane = !used.is_empty()
        && used.iter().all(|e| {
            e.lba > 0 && (e.boot == 0 || e.boot == 0x80) && e.lba.checked_add(e.sectors).is_some()
        });
    if !sane {
        return Err(Error::input(NOT_A_DISK));
    }
    // The same extended types as `mbrman::MBRPartitionEntry::is_extended`.
    for ext in used
        .iter()
        .filter(|e| matches!(e.sys, 0x05 | 0x0F | 0x85 | 0xC5 | 0xD5))
    {
        vet_ebr_chain(file, ext)?;
    }
    read_msdos(file, disk_size)
}

/// Most logical partitions we accept; real images have two.
const MAX_LOGICAL: usize = 128;

/// Walks the chain of extended boot records as `mbrman` will, refusing the sector numbers that
/// would overflow its 32-bit sums (a panic in debug builds) and endless chains.
fn vet_ebr_chain<F: Read + Seek>(file: &mut F, ext: &RawEntry) -> Result<()> {
    let bad = |what: &str| Error::input(format!("bad msdos partition table: {what}"));
    let mut rel: u32 = 0;
    for _ in 0..MAX_LOGICAL {
        let abs = ext
            .lba
            .checked_add(rel)
            .ok_or_else(|| bad("extended boot record past 2 TiB"))?;
        let mut ebr = [0u8; 512];
        if read_at(file, u64::from(abs) * SECTOR, &mut ebr).is_err() || ebr[510..] != [0x55, 0xAA] {
            // mbrman stops at a missing first record and rejects a missing later one.
            return Ok(());
        }
        let (part, next) = (RawEntry::parse(&ebr, 0), RawEntry::parse(&ebr, 1));
        let fits = abs
            .checked_add(part.lba)
            .and_then(|s| s.checked_add(part.sectors))
            .is_some();
        if !fits {
            return Err(bad("logical partition past 2 TiB"));
        }
        if next.lba <= rel {
            // The end of the chain, or a loop that mbrman reports itself.
            return Ok(());
        }
        rel = next.lba;
    }
    Err(bad(&format!("more than {MAX_LOGICAL} logical partitions")))
}

/// Refuses GPT headers that would make the `gpt` crate panic (entry size other than 128) or
/// read for ages (absurd entry counts). Checks every header it finds, primary or backup.
fn vet_gpt_headers<F: Read + Seek>(file: &mut F) -> Result<()> {
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(|e| Error::input(format!("cannot read: {e}")))?;
    let candidates = [512, 4096, len.saturating_sub(512), len.saturating_sub(4096)];
    for offset in candidates {
        let mut h = [0u8; 92];
        if read_at(file, offset, &mut h).is_err() || &h[..8] != b"EFI PART" {
            continue;
        }
        let num_parts = u32::from_le_bytes([h[80], h[81], h[82], h[83]]);
        let part_size = u32::from_le_bytes([h[84], h[85], h[86], h[87]]);
        if part_size != 128 || num_parts > 4096 {
            return Err(Error::input(format!(
                "bad GPT partition table: {num_parts} entries of {part_size} bytes \
                 (expected at most 4096 of 128)"
            )));
        }
    }
    Ok(())
}

/// One primary entry of an MBR, parsed by hand to vet it before `mbrman` reads it.
struct RawEntry {
    boot: u8,
    sys: u8,
    lba: u32,
    sectors: u32,
}

impl RawEntry {
    fn parse(mbr: &[u8; 512], i: usize) -> RawEntry {
        let e = &mbr[446 + 16 * i..446 + 16 * (i + 1)];
        RawEntry {
            boot: e[0],
            sys: e[4],
            lba: u32::from_le_bytes([e[8], e[9], e[10], e[11]]),
            sectors: u32::from_le_bytes([e[12], e[13], e[14], e[15]]),
        }
    }
}

fn read_msdos<F: Read + Seek>(file: &mut F, disk_size: u64) -> Result<PartitionTable> {
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::input(format!("cannot read: {e}")))?;
    let mbr = mbrman::MBR::read_from(file, SECTOR as u32)
        .map_err(|e| Error::input(format!("bad msdos partition table: {e}")))?;
    let mut partitions = Vec::new();
    let mut extended = None;
    for (number, entry) in mbr.iter() {
        if entry.is_unused() || entry.sectors == 0 {
            continue;
        }
        let part = Partition {
            number: number as u32,
            start: u64::from(entry.starting_lba) * SECTOR,
            size: u64::from(entry.sectors) * SECTOR,
            type_name: msdos_type_name(entry.sys),
            label: None,
            fs: None,
            bootable: entry.is_active(),
        };
        if entry.is_extended() {
            extended = Some(part);
        } else {
            partitions.push(part);
        }
    }
    for p in &mut partitions {
        probe(file, p)?;
    }
    Ok(PartitionTable {
        kind: TableKind::Msdos,
        disk_size,
        partitions,
        extended,
    })
}

fn read_gpt<F: Read + Seek>(file: &mut F, disk_size: u64) -> Result<PartitionTable> {
    use gpt::disk::LogicalBlockSize;
    let mut last_err = None;
    for lb in [LogicalBlockSize::Lb512, LogicalBlockSize::Lb4096] {
        let opened = gpt::GptConfig::new()
            .writable(false)
            .logical_block_size(lb)
            .open_from_device(ReadOnly(&mut *file));
        let disk = match opened {
            Ok(d) => d,
            Err(e) => {
                last_err.get_or_insert(e);
                continue;
            }
        };
        let mut partitions = Vec::new();
        for (&number, p) in disk.partitions().iter().filter(|(_, p)| p.is_used()) {
            let (Ok(start), Ok(size)) = (p.bytes_start(lb), p.bytes_len(lb)) else {
                return Err(Error::input(format!(
                    "bad GPT partition table: partition {number} has an impossible range"
                )));
            };
            partitions.push(Partition {
                number,
                start,
                size,
                type_name: gpt_type_name(&p.part_type_guid),
                label: Some(p.name.trim_end_matches('\0').to_string()).filter(|n| !n.is_empty()),
                fs: None,
                bootable: p.part_type_guid == gpt::partition_types::EFI
                    || p.flags & LEGACY_BIOS_BOOTABLE != 0,
            });
        }
        drop(disk);
        for p in &mut partitions {
            probe(file, p)?;
        }
        return Ok(PartitionTable {
            kind: TableKind::Gpt,
            disk_size,
            partitions,
            extended: None,
        });
    }
    let why = last_err.map(|e| e.to_string()).unwrap_or_default();
    Err(Error::input(format!("bad GPT partition table: {why}")))
}

/// The GPT attribute bit "legacy BIOS bootable".
const LEGACY_BIOS_BOOTABLE: u64 = 1 << 2;

/// Detects the filesystem of `p` and takes its volume label, keeping the GPT name as fallback.
fn probe<F: Read + Seek>(file: &mut F, p: &mut Partition) -> Result<()> {
    let (fs, label) = detect_fs(file, p.start, p.size)?;
    p.fs = Some(fs);
    if label.is_some() {
        p.label = label;
    }
    Ok(())
}

/// The filesystem kind and volume label at `start`; a partition past the end reads as `Other`.
pub(crate) fn detect_fs<F: Read + Seek>(
    file: &mut F,
    start: u64,
    size: u64,
) -> Result<(FsKind, Option<String>)> {
    let mut head = [0u8; 2048];
    let want = head.len().min(usize::try_from(size).unwrap_or(usize::MAX));
    let got = read_up_to(file, start, &mut head[..want])
        .map_err(|e| Error::input(format!("cannot read partition at byte {start}: {e}")))?;
    let head = &head[..got];
    if let Some(bpb) = Bpb::parse(head) {
        let label = fat_root_label(file, start, &bpb).or_else(|| bpb.label.clone());
        return Ok((FsKind::Vfat, label));
    }
    if head.len() >= 1024 + 0x88 && head[1024 + 0x38..1024 + 0x3A] == [0x53, 0xEF] {
        let raw = &head[1024 + 0x78..1024 + 0x88];
        return Ok((FsKind::Ext4, clean_label(raw)));
    }
    Ok((FsKind::Other, None))
}

/// The few BIOS parameter block fields needed to find a FAT volume label.
struct Bpb {
    bytes_per_sector: u64,
    sectors_per_cluster: u64,
    reserved: u64,
    fats: u64,
    root_entries: u64,
    fat_size: u64,
    root_cluster: Option<u64>,
    label: Option<String>,
}

impl Bpb {
    fn parse(b: &[u8]) -> Option<Bpb> {
        if b.len() < 512 || b[510..512] != [0x55, 0xAA] || !matches!(b[0], 0xEB | 0xE9) {
            return None;
        }
        let u16at = |o: usize| u64::from(u16::from_le_bytes([b[o], b[o + 1]]));
        let u32at = |o: usize| u64::from(u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]));
        let bytes_per_sector = u16at(11);
        let sectors_per_cluster = u64::from(b[13]);
        let valid = matches!(bytes_per_sector, 512 | 1024 | 2048 | 4096)
            && sectors_per_cluster.is_power_of_two()
            && b[16] > 0;
        if !valid {
            return None;
        }
        let fat16_size = u16at(22);
        let fat32 = fat16_size == 0;
        // The extended boot record: "FAT" type string and label sit at different offsets on FAT32.
        let (sig_at, label_at, type_at) = if fat32 {
            (0x42, 0x47, 0x52)
        } else {
            (0x26, 0x2B, 0x36)
        };
        if &b[type_at..type_at + 3] != b"FAT" && !matches!(b[sig_at], 0x28 | 0x29) {
            return None;
        }
        let label = if b[sig_at] == 0x29 {
            clean_label(&b[label_at..label_at + 11]).filter(|l| l != "NO NAME")
        } else {
            None
        };
        Some(Bpb {
            bytes_per_sector,
            sectors_per_cluster,
            reserved: u16at(14),
            fats: u64::from(b[16]),
            root_entries: u16at(17),
            fat_size: if fat32 { u32at(36) } else { fat16_size },
            root_cluster: fat32.then(|| u32at(44)),
            label,
        })
    }
}

/// The volume label entry of a FAT root directory (what `mlabel`/`fatlabel` change).
fn fat_root_label<F: Read + Seek>(file: &mut F, start: u64, bpb: &Bpb) -> Option<String> {
    let first_root_sector = bpb.reserved + bpb.fats * bpb.fat_size;
    let (sector, len) = match bpb.root_cluster {
        None => (first_root_sector, bpb.root_entries * 32),
        // FAT32 has no fixed root region: the root directory is a cluster chain; read its first.
        Some(cluster) => {
            let sector = first_root_sector + cluster.checked_sub(2)? * bpb.sectors_per_cluster;
            (sector, bpb.sectors_per_cluster * bpb.bytes_per_sector)
        }
    };
    let offset = start.checked_add(sector.checked_mul(bpb.bytes_per_sector)?)?;
    let mut buf = vec![0u8; usize::try_from(len.min(256 * 1024)).ok()?];
    let got = read_up_to(file, offset, &mut buf).ok()?;
    for entry in buf[..got].chunks_exact(32) {
        match entry[0] {
            0x00 => break,
            0xE5 => continue,
            _ => {}
        }
        let attr = entry[11];
        if attr & 0x08 != 0 && attr & 0x0F != 0x0F {
            return clean_label(&entry[..11]);
        }
    }
    None
}

/// Trims NULs and spaces; `None` when nothing is left.
fn clean_label(raw: &[u8]) -> Option<String> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    let s = String::from_utf8_lossy(&raw[..end]).trim_end().to_string();
    Some(s).filter(|s| !s.is_empty())
}

fn read_at<F: Read + Seek>(file: &mut F, offset: u64, buf: &mut [u8]) -> io::Result<()> {
    file.seek(SeekFrom::Start(offset))?;
    file.read_exact(buf)
}

/// Reads as much of `buf` as the stream holds at `offset` (short at the end of the disk).
fn read_up_to<F: Read + Seek>(file: &mut F, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
    file.seek(SeekFrom::Start(offset))?;
    let mut got = 0;
    while got < buf.len() {
        match file.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn msdos_type_name(sys: u8) -> String {
    let name = match sys {
        0x01 => "FAT12",
        0x04 | 0x06 => "FAT16",
        0x05 => "Extended",
        0x0B => "W95 FAT32",
        0x0C => "W95 FAT32 (LBA)",
        0x0E => "W95 FAT16 (LBA)",
        0x0F => "W95 Ext'd (LBA)",
        0x82 => "Linux swap",
        0x83 => "Linux",
        0x85 => "Linux extended",
        0xEF => "EFI (FAT-12/16/32)",
        _ => return format!("0x{sys:02x}"),
    };
    name.to_string()
}

fn gpt_type_name(t: &gpt::partition_types::Type) -> String {
    use gpt::partition_types as pt;
    let known = [
        (&pt::EFI, "EFI System"),
        (&pt::LINUX_FS, "Linux filesystem"),
        (&pt::BASIC, "Microsoft basic data"),
        (&pt::BIOS, "BIOS boot"),
        (&pt::LINUX_SWAP, "Linux swap"),
    ];
    known
        .iter()
        .find(|(k, _)| k.guid == t.guid)
        .map(|(_, n)| n.to_string())
        .unwrap_or_else(|| t.guid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::testimg::{self, make_test_image};
    use std::fs::File;
    use std::io::Cursor;

    fn table_of(kind: TableKind) -> PartitionTable {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.img");
        make_test_image(&path, kind).unwrap();
        read_table(&mut File::open(&path).unwrap()).unwrap()
    }

    fn labels(t: &PartitionTable) -> Vec<(u32, String)> {
        t.partitions
            .iter()
            .map(|p| (p.number, p.display_name()))
            .collect()
    }

    #[test]
    fn msdos_labels_and_logical_partitions() {
        let t = table_of(TableKind::Msdos);
        assert_eq!(t.kind, TableKind::Msdos);
        assert_eq!(t.disk_size, testimg::DEFAULT_SIZE);
        let want: Vec<(u32, String)> = [
            (1, "resin-boot"),
            (2, "resin-rootA"),
            (3, "resin-rootB"),
            (5, "resin-state"),
            (6, "resin-data"),
        ]
        .iter()
        .map(|(n, l)| (*n, l.to_string()))
        .collect();
        assert_eq!(labels(&t), want);
        let boot = t.by_label("resin-boot").unwrap();
        assert_eq!(boot.fs, Some(FsKind::Vfat));
        assert_eq!(boot.size, testimg::BOOT_SIZE);
        assert_eq!(boot.type_name, "W95 FAT32 (LBA)");
        assert!(boot.bootable, "the boot flag of p1");
        assert_eq!(t.by_label("resin-state").unwrap().fs, Some(FsKind::Ext4));
        assert!(!t.by_label("resin-state").unwrap().bootable);
        let ext = t.extended.as_ref().unwrap();
        assert_eq!(ext.number, 4);
        assert_eq!(ext.fs, None);
        let data = t.by_label("resin-data").unwrap();
        assert!(data.start > ext.start && data.end() <= ext.end());
        assert_eq!(data.end(), t.disk_size);
    }

    #[test]
    fn gpt_labels_with_name_fallback() {
        let t = table_of(TableKind::Gpt);
        assert_eq!(t.kind, TableKind::Gpt);
        assert!(t.extended.is_none());
        let names: Vec<String> = labels(&t).into_iter().map(|(_, l)| l).collect();
        assert_eq!(
            names,
            [
                "resin-boot",
                "resin-rootA",
                "resin-rootB",
                "resin-state",
                "resin-data"
            ]
        );
        // resin-data's fake ext4 has no volume name: the GPT partition name stands in.
        assert_eq!(t.by_label("resin-data").unwrap().number, 5);
        assert_eq!(t.by_label("resin-boot").unwrap().type_name, "EFI System");
        assert!(
            t.by_label("resin-boot").unwrap().bootable,
            "an EFI System partition"
        );
        assert!(!t.by_label("resin-rootA").unwrap().bootable);
        assert_eq!(t.by_label("RESIN-BOOT").unwrap().number, 1);
        assert!(t.by_label("resin-nope").is_none());
    }

    #[test]
    fn not_a_disk() {
        for bytes in [
            Vec::new(),
            b"hello, I am a text file\n".to_vec(),
            vec![0u8; 4096],
        ] {
            let err = read_table(&mut Cursor::new(bytes)).unwrap_err();
            assert!(matches!(err, Error::Input(_)));
            assert_eq!(err.to_string(), NOT_A_DISK);
        }
    }

    /// An MBR holding one partition entry in slot `i`.
    fn mbr_with(disk: &mut [u8], at: usize, i: usize, sys: u8, lba: u32, sectors: u32) {
        let e = &mut disk[at + 446 + 16 * i..at + 446 + 16 * (i + 1)];
        e[4] = sys;
        e[8..12].copy_from_slice(&lba.to_le_bytes());
        e[12..16].copy_from_slice(&sectors.to_le_bytes());
        disk[at + 510] = 0x55;
        disk[at + 511] = 0xAA;
    }

    #[test]
    fn hostile_ebr_chain_is_an_input_error() {
        let mut disk = vec![0u8; 2 << 20];
        mbr_with(&mut disk, 0, 0, 0x0F, 2048, 0xFFFF_0000);
        // The first EBR's logical partition would end past u32::MAX sectors.
        mbr_with(&mut disk, 2048 * 512, 0, 0x83, 0xFFFF_FFF0, 100);
        let err = read_table(&mut Cursor::new(disk.clone())).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert_eq!(
            err.to_string(),
            "bad msdos partition table: logical partition past 2 TiB"
        );
        // A next-EBR pointer past u32::MAX.
        mbr_with(&mut disk, 2048 * 512, 0, 0x83, 2048, 100);
        mbr_with(&mut disk, 2048 * 512, 1, 0x05, 0xFFFF_FFF0, 100);
        let err = read_table(&mut Cursor::new(disk)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "bad msdos partition table: extended boot record past 2 TiB"
        );
    }

    #[test]
    fn hostile_gpt_header_is_an_input_error() {
        let mut disk = vec![0u8; 1 << 20];
        mbr_with(&mut disk, 0, 0, 0xEE, 1, (1 << 11) - 1);
        disk[512..520].copy_from_slice(b"EFI PART");
        disk[512 + 80..512 + 84].copy_from_slice(&128u32.to_le_bytes());
        disk[512 + 84..512 + 88].copy_from_slice(&64u32.to_le_bytes());
        let err = read_table(&mut Cursor::new(disk)).unwrap_err();
        assert!(matches!(err, Error::Input(_)));
        assert!(err
            .to_string()
            .starts_with("bad GPT partition table: 128 entries of 64"));
        // A protective MBR with no GPT behind it.
        let mut disk = vec![0u8; 1 << 20];
        mbr_with(&mut disk, 0, 0, 0xEE, 1, (1 << 11) - 1);
        let err = read_table(&mut Cursor::new(disk)).unwrap_err();
        assert!(
            err.to_string().starts_with("bad GPT partition table: "),
            "{err}"
        );
    }

    #[test]
    fn fat32_root_dir_label_wins_over_boot_sector() {
        let mut vol = Cursor::new(vec![0u8; 40 << 20]);
        let opts = fatfs::FormatVolumeOptions::new()
            .fat_type(fatfs::FatType::Fat32)
            .bytes_per_cluster(512)
            .volume_label(*b"OLD-LABEL  ");
        fatfs::format_volume(&mut vol, opts).unwrap();
        // Relabel the root-dir entry only, as `fatlabel` on an old boot sector might leave it.
        let bytes = vol.get_mut();
        let pos = bytes[..4 << 20]
            .windows(11)
            .rposition(|w| w == b"OLD-LABEL  ")
            .unwrap();
        assert!(pos > 512, "the last copy is the root-dir entry");
        bytes[pos..pos + 11].copy_from_slice(b"resin-boot ");
        let (fs, label) = detect_fs(&mut vol, 0, 40 << 20).unwrap();
        assert_eq!(fs, FsKind::Vfat);
        assert_eq!(label.as_deref(), Some("resin-boot"));
    }

    #[test]
    fn fat_superfloppy_is_not_a_disk() {
        let mut disk = Cursor::new(vec![0u8; 8 << 20]);
        fatfs::format_volume(&mut disk, fatfs::FormatVolumeOptions::new()).unwrap();
        let err = read_table(&mut disk).unwrap_err();
        assert_eq!(err.to_string(), NOT_A_DISK);
    }
}
