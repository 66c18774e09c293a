//! Disk images on the host: compressed sources, partition tables, the boot partition.

pub mod bootfs;
pub mod config_json;
pub mod configure;
pub mod ext4;
pub mod hostapp;
pub mod inspect;
pub mod partitions;
pub mod source;
pub mod testimg;

use std::path::Path;

pub use bootfs::{open_boot, BootFs};
pub use config_json::{parse_set_arg, ConfigJson};
pub use configure::{changed_ranges, configure, edit_boot_partition, unpack_to, Change};
pub use inspect::{inspect, Inspection};
pub use partitions::{read_table, FsKind, Partition, PartitionTable, ReadOnly, TableKind};

use crate::error::Error;

/// Prefixes an [`Error::Input`] message with the image's path: `x.img: no partition …`.
///
/// [`read_table`] and [`bootfs::open_boot`] work on streams and so name no file; callers that
/// know the path add it with this.
pub fn at(path: &Path) -> impl Fn(Error) -> Error + '_ {
    move |e| match e {
        Error::Input(msg) => Error::Input(format!("{}: {msg}", path.display())),
        other => other,
    }
}
