//! Disk images on the host: compressed sources, partition tables, the boot partition.

pub mod source;
