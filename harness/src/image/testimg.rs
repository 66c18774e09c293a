//! Test fixture: builds a small balenaOS-shaped disk image in Rust, with no root and no tools.
//!
//! The image is a sparse file laid out like a real one (see "Disk layout" in the contracts):
//! `resin-boot` (FAT, 40 MiB, holding `os-release` and `config.json`), `resin-rootA` and
//! `resin-rootB` (fake ext4: only a superblock with magic and label), then `resin-state` and
//! `resin-data` (logical partitions 5 and 6 inside extended partition 4 on msdos; partitions 4
//! and 5 on GPT). On GPT, `resin-data`'s superblock carries no label, so its name comes from the
//! GPT partition name. For tests only: not a bootable image.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use fscommon::StreamSlice;

use super::partitions::TableKind;
use crate::error::{Context, Error, Result};

const MIB: u64 = 1 << 20;
/// Size of the image [`make_test_image`] makes.
pub const DEFAULT_SIZE: u64 = 256 * MIB;
/// Size of the `resin-boot` partition.
pub const BOOT_SIZE: u64 = 40 * MIB;
/// Offset of the `resin-boot` partition.
pub const BOOT_START: u64 = 4 * MIB;
const STATE_SIZE: u64 = 20 * MIB;

/// The `os-release` file the fixture puts on `resin-boot`.
pub const OS_RELEASE: &str = "ID=\"balena-os\"\nNAME=\"balenaOS\"\nVERSION=\"6.0.13\"\n\
VERSION_ID=\"6.0.13\"\nPRETTY_NAME=\"balenaOS 6.0.13\"\nMACHINE=\"generic-amd64\"\n";

/// The `config.json` the fixture puts on `resin-boot`.
pub const CONFIG_JSON: &str =
    "{\n  \"deviceType\": \"generic-amd64\",\n  \"hostname\": \"balena\",\n  \"persistentLogging\": false\n}\n";

/// Makes a [`DEFAULT_SIZE`] sparse test image at `path` (see the module docs for its layout).
pub fn make_test_image(path: &Path, kind: TableKind) -> Result<()> {
    make_test_image_sized(path, kind, DEFAULT_SIZE)
}

/// Like [`make_test_image`], for a disk of `disk_size` bytes (at least 128 MiB, whole MiB).
pub fn make_test_image_sized(path: &Path, kind: TableKind, disk_size: u64) -> Result<()> {
    if disk_size < 128 * MIB || !disk_size.is_multiple_of(MIB) {
        return Err(Error::input(format!(
            "test image size {disk_size} must be whole MiB, at least 128 MiB"
        )));
    }
    let ctx = || format!("cannot build test image {}", path.display());
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .infra_ctx(ctx)?;
    file.set_len(disk_size).infra_ctx(ctx)?;

    // Layout, in MiB: boot at 4, two equal root slots, then state and data in what is left.
    let root = (disk_size - BOOT_START - BOOT_SIZE - STATE_SIZE - 2 * MIB) / 3 / MIB * MIB;
    let root_a = BOOT_START + BOOT_SIZE;
    let root_b = root_a + root;
    let rest = root_b + root;
    match kind {
        TableKind::Msdos => write_msdos(&mut file, disk_size, root, rest).infra_ctx(ctx)?,
        TableKind::Gpt => write_gpt(&mut file, disk_size, root, rest).infra_ctx(ctx)?,
    }
    // The logical partitions sit 1 MiB after their EBR on msdos; keep GPT the same.
    let state = rest + MIB;
    let data = state + STATE_SIZE + MIB;
    fake_ext4(&mut file, root_a, Some("resin-rootA")).infra_ctx(ctx)?;
    fake_ext4(&mut file, root_b, Some("resin-rootB")).infra_ctx(ctx)?;
    fake_ext4(&mut file, state, Some("resin-state")).infra_ctx(ctx)?;
    let data_label = (kind == TableKind::Msdos).then_some("resin-data");
    fake_ext4(&mut file, data, data_label).infra_ctx(ctx)?;
    write_boot(&mut file).infra_ctx(ctx)?;
    file.flush().infra_ctx(ctx)
}

fn lba(bytes: u64) -> u32 {
    u32::try_from(bytes / 512).unwrap_or(u32::MAX)
}

fn write_msdos(file: &mut File, disk_size: u64, root: u64, rest: u64) -> std::io::Result<()> {
    let err = |e: mbrman::Error| std::io::Error::other(e.to_string());
    let mut mbr = mbrman::MBR::new_from(file, 512, [0x12, 0x34, 0x56, 0x78]).map_err(err)?;
    let entry = |sys: u8, start: u64, size: u64| mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_INACTIVE,
        first_chs: mbrman::CHS::empty(),
        sys,
        last_chs: mbrman::CHS::empty(),
        starting_lba: lba(start),
        sectors: lba(size),
    };
    mbr.header.partition_1 = mbrman::MBRPartitionEntry {
        boot: mbrman::BOOT_ACTIVE,
        ..entry(0x0C, BOOT_START, BOOT_SIZE)
    };
    mbr.header.partition_2 = entry(0x83, BOOT_START + BOOT_SIZE, root);
    mbr.header.partition_3 = entry(0x83, BOOT_START + BOOT_SIZE + root, root);
    mbr.header.partition_4 = entry(0x0F, rest, disk_size - rest);
    // `push` puts each EBR at the given sector and its partition one alignment (1 MiB) later.
    mbr.push(0x83, lba(rest), lba(STATE_SIZE + MIB))
        .map_err(err)?;
    let data_ebr = rest + STATE_SIZE + MIB;
    mbr.push(0x83, lba(data_ebr), lba(disk_size - data_ebr))
        .map_err(err)?;
    mbr.write_into(file).map_err(err)
}

fn write_gpt(file: &mut File, disk_size: u64, root: u64, rest: u64) -> std::io::Result<()> {
    use gpt::partition_types::{EFI, LINUX_FS};
    let err = |e: gpt::GptError| std::io::Error::other(e.to_string());
    let sectors = disk_size / 512;
    let pmbr = gpt::mbr::ProtectiveMBR::with_lb_size(lba(disk_size).saturating_sub(1));
    pmbr.overwrite_lba0(file)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .change_partition_count(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(&mut *file, None)
        .map_err(err)?;
    let state = rest + MIB;
    let data = state + STATE_SIZE + MIB;
    let last_usable = sectors - 34;
    let parts = [
        ("resin-boot", BOOT_START, BOOT_SIZE / 512, EFI),
        ("resin-rootA", BOOT_START + BOOT_SIZE, root / 512, LINUX_FS),
        (
            "resin-rootB",
            BOOT_START + BOOT_SIZE + root,
            root / 512,
            LINUX_FS,
        ),
        ("resin-state", state, STATE_SIZE / 512, LINUX_FS),
        ("resin-data", data, last_usable - data / 512 + 1, LINUX_FS),
    ];
    for (id, (name, start, len, ty)) in (1u32..).zip(parts) {
        disk.add_partition_at(name, id, start / 512, len, ty, 0)
            .map_err(err)?;
    }
    disk.write().map_err(err)?;
    Ok(())
}

/// Writes an ext4 superblock holding only the magic number and the volume name.
fn fake_ext4(file: &mut File, start: u64, label: Option<&str>) -> std::io::Result<()> {
    let mut sb = [0u8; 1024];
    sb[0x38..0x3A].copy_from_slice(&0xEF53u16.to_le_bytes());
    if let Some(label) = label {
        sb[0x78..0x78 + label.len()].copy_from_slice(label.as_bytes());
    }
    file.seek(SeekFrom::Start(start + 1024))?;
    file.write_all(&sb)
}

fn write_boot(file: &mut File) -> std::io::Result<()> {
    let mut label = *b"           ";
    label[..10].copy_from_slice(b"resin-boot");
    let slice = StreamSlice::new(&mut *file, BOOT_START, BOOT_START + BOOT_SIZE)?;
    fatfs::format_volume(slice, fatfs::FormatVolumeOptions::new().volume_label(label))?;
    let slice = StreamSlice::new(&mut *file, BOOT_START, BOOT_START + BOOT_SIZE)?;
    let fs = fatfs::FileSystem::new(slice, fatfs::FsOptions::new())?;
    {
        let root = fs.root_dir();
        root.create_file("os-release")?
            .write_all(OS_RELEASE.as_bytes())?;
        root.create_file("config.json")?
            .write_all(CONFIG_JSON.as_bytes())?;
        root.create_dir("system-connections")?;
        root.create_dir("splash")?;
    }
    fs.unmount()
}
