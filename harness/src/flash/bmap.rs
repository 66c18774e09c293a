//! bmaptool's block map files (`.bmap`, format 1.x and 2.x): which blocks of an image hold data.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::error::{Context, Error, Result};

use super::ranges::Extent;

/// One `<Range>` of a bmap: mapped blocks `first..=last` and their checksum.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BmapRange {
    /// The first block of the range.
    pub first: u64,
    /// The last block of the range (inclusive).
    pub last: u64,
    /// The sha256 of the range's bytes, when the bmap carries sha256 checksums.
    pub sha256: Option<[u8; 32]>,
}

/// A parsed block map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bmap {
    /// The image size in bytes.
    pub image_size: u64,
    /// The block size in bytes.
    pub block_size: u64,
    /// The number of blocks in the image.
    pub blocks_count: u64,
    /// The number of blocks that hold data.
    pub mapped_blocks_count: u64,
    /// The mapped ranges, in order.
    pub ranges: Vec<BmapRange>,
}

impl Bmap {
    /// Reads and checks the bmap file at `path`.
    pub fn load(path: &Path) -> Result<Bmap> {
        let text = std::fs::read_to_string(path)
            .input_ctx(|| format!("cannot read bmap {}", path.display()))?;
        Bmap::parse(&text).map_err(|e| Error::input(format!("bmap {}: {e}", path.display())))
    }

    /// Parses bmap XML; the error is a short reason without the file name.
    pub fn parse(raw: &str) -> std::result::Result<Bmap, String> {
        let xml: BmapXml = quick_xml::de::from_str(raw).map_err(|e| format!("not a bmap: {e}"))?;
        if let Some(version) = &xml.version {
            let major = version.trim().split('.').next().unwrap_or_default();
            if !matches!(major, "1" | "2") {
                return Err(format!("unsupported bmap format version {version}"));
            }
        }
        let block_size = number(&xml.block_size, "BlockSize")?;
        let blocks_count = number(&xml.blocks_count, "BlocksCount")?;
        let mapped_blocks_count = number(&xml.mapped_blocks_count, "MappedBlocksCount")?;
        let image_size = match &xml.image_size {
            Some(text) => number(text, "ImageSize")?,
            None => blocks_count * block_size,
        };
        if block_size == 0 || block_size % 512 != 0 {
            return Err(format!("block size {block_size} is not a multiple of 512"));
        }
        let ctype = xml
            .checksum_type
            .as_deref()
            .map(|s| s.trim().to_ascii_lowercase());
        let sha256 = match ctype.as_deref() {
            Some("sha256") => true,
            Some("sha1") | Some("md5") | None => false,
            Some(other) => return Err(format!("unknown checksum type {other}")),
        };
        if let Some(sum) = &xml.file_checksum {
            if sha256 && !file_checksum_ok(raw, sum.trim()) {
                return Err("its own checksum does not match (the file is corrupt)".into());
            }
        }
        let mut ranges = Vec::new();
        let mut mapped = 0;
        for range in &xml.block_map.ranges {
            let span = range.span.trim();
            let (first, last) = parse_span(span)?;
            if last < first || last >= blocks_count {
                return Err(format!("range {span} is outside the image"));
            }
            if ranges.last().is_some_and(|r: &BmapRange| first <= r.last) {
                return Err(format!("range {span} overlaps or is out of order"));
            }
            let sum = range.chksum.as_deref().or(range.sha1.as_deref());
            let sha256 = match (sha256, sum) {
                (true, Some(s)) => Some(parse_hex32(s)?),
                (true, None) => return Err(format!("range {span} has no checksum")),
                (false, _) => None,
            };
            mapped += last - first + 1;
            ranges.push(BmapRange {
                first,
                last,
                sha256,
            });
        }
        if mapped != mapped_blocks_count {
            return Err(format!(
                "MappedBlocksCount says {mapped_blocks_count} but the ranges map {mapped}"
            ));
        }
        Ok(Bmap {
            image_size,
            block_size,
            blocks_count,
            mapped_blocks_count,
            ranges,
        })
    }

    /// The byte extent of a range, clipped to the image size.
    pub fn extent(&self, r: &BmapRange) -> Extent {
        Extent {
            start: r.first * self.block_size,
            end: ((r.last + 1) * self.block_size).min(self.image_size),
        }
    }

    /// The byte extents of all ranges.
    pub fn extents(&self) -> Vec<Extent> {
        self.ranges.iter().map(|r| self.extent(r)).collect()
    }
}

/// The bmap that sits beside `image`: `IMAGE.bmap`, or the name with its packing suffixes
/// (`.gz`, `.xz`, `.zst`, `.zip`, `.img`) replaced by `.bmap`, as bmaptool looks for it.
pub fn find_beside(image: &Path) -> Option<PathBuf> {
    let name = image.file_name()?.to_str()?;
    let mut candidates = vec![format!("{name}.bmap")];
    let mut stem = name;
    while let Some((head, ext)) = stem.rsplit_once('.') {
        if !matches!(ext, "gz" | "xz" | "zst" | "zip" | "img" | "raw" | "bz2") {
            break;
        }
        candidates.push(format!("{head}.bmap"));
        stem = head;
    }
    candidates
        .into_iter()
        .map(|c| image.with_file_name(c))
        .find(|p| p.is_file())
}

/// The `<bmap>` document as bmaptool writes it (comments are skipped by the parser).
#[derive(Debug, Deserialize)]
struct BmapXml {
    #[serde(rename = "@version")]
    version: Option<String>,
    #[serde(rename = "ImageSize")]
    image_size: Option<String>,
    #[serde(rename = "BlockSize")]
    block_size: String,
    #[serde(rename = "BlocksCount")]
    blocks_count: String,
    #[serde(rename = "MappedBlocksCount")]
    mapped_blocks_count: String,
    #[serde(rename = "ChecksumType")]
    checksum_type: Option<String>,
    #[serde(rename = "BmapFileChecksum")]
    file_checksum: Option<String>,
    #[serde(rename = "BlockMap", default)]
    block_map: BlockMapXml,
}

#[derive(Debug, Default, Deserialize)]
struct BlockMapXml {
    #[serde(rename = "Range", default)]
    ranges: Vec<RangeXml>,
}

/// `<Range chksum="...">first-last</Range>` (format 1.3 named the attribute `sha1`).
#[derive(Debug, Deserialize)]
struct RangeXml {
    #[serde(rename = "@chksum")]
    chksum: Option<String>,
    #[serde(rename = "@sha1")]
    sha1: Option<String>,
    #[serde(rename = "$text", default)]
    span: String,
}

/// Checks `<BmapFileChecksum>`: the sha256 of the file with that value replaced by zeros.
fn file_checksum_ok(text: &str, sum: &str) -> bool {
    let zeroed = text.replacen(sum, &"0".repeat(sum.len()), 1);
    hex::encode(Sha256::digest(zeroed.as_bytes())) == sum.to_ascii_lowercase()
}

fn number(text: &str, name: &str) -> std::result::Result<u64, String> {
    text.trim()
        .parse()
        .map_err(|_| format!("<{name}> is not a number: {}", text.trim()))
}

fn parse_span(s: &str) -> std::result::Result<(u64, u64), String> {
    let bad = || format!("bad range {s}");
    match s.split_once('-') {
        Some((a, b)) => Ok((
            a.trim().parse().map_err(|_| bad())?,
            b.trim().parse().map_err(|_| bad())?,
        )),
        None => {
            let a = s.parse().map_err(|_| bad())?;
            Ok((a, a))
        }
    }
}

fn parse_hex32(s: &str) -> std::result::Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim(), &mut out).map_err(|_| format!("bad sha256 checksum {s}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(sum0: &str, file_sum: &str) -> String {
        format!(
            r#"<?xml version="1.0" ?>
<bmap version="2.0">
    <!-- Count of blocks: <BlocksCount> below -->
    <ImageSize> 10000 </ImageSize>
    <BlockSize> 4096 </BlockSize>
    <BlocksCount> 3 </BlocksCount>
    <MappedBlocksCount> 2 </MappedBlocksCount>
    <ChecksumType> sha256 </ChecksumType>
    <BmapFileChecksum> {file_sum} </BmapFileChecksum>
    <BlockMap>
        <Range chksum="{sum0}"> 0 </Range>
        <Range chksum="{sum0}"> 2 </Range>
    </BlockMap>
</bmap>
"#
        )
    }

    fn with_valid_file_checksum(sum0: &str) -> String {
        let zeros = "0".repeat(64);
        let text = sample(sum0, &zeros);
        let sum = hex::encode(Sha256::digest(text.as_bytes()));
        sample(sum0, &sum)
    }

    #[test]
    fn parses_ranges_and_clips_last_block() {
        let sum0 = "ab".repeat(32);
        let b = Bmap::parse(&with_valid_file_checksum(&sum0)).unwrap();
        assert_eq!(b.block_size, 4096);
        assert_eq!(b.blocks_count, 3);
        assert_eq!(b.ranges.len(), 2);
        assert_eq!(b.ranges[1].first, 2);
        assert_eq!(b.ranges[0].sha256, Some([0xab; 32]));
        assert_eq!(
            b.extents(),
            vec![
                Extent {
                    start: 0,
                    end: 4096
                },
                Extent {
                    start: 8192,
                    end: 10000
                }
            ]
        );
    }

    #[test]
    fn rejects_a_corrupt_file() {
        let sum0 = "ab".repeat(32);
        let text = with_valid_file_checksum(&sum0).replace("<BlocksCount> 3", "<BlocksCount> 4");
        assert!(Bmap::parse(&text).unwrap_err().contains("corrupt"));
    }

    #[test]
    fn rejects_wrong_mapped_count() {
        let text = sample(&"ab".repeat(32), &"0".repeat(64))
            .replace("<BmapFileChecksum>", "<X>")
            .replace("</BmapFileChecksum>", "</X>")
            .replace("<MappedBlocksCount> 2", "<MappedBlocksCount> 5");
        assert!(Bmap::parse(&text)
            .unwrap_err()
            .contains("MappedBlocksCount"));
    }

    #[test]
    fn finds_the_bmap_beside_a_packed_image() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("os.img.xz");
        std::fs::write(dir.path().join("os.img.bmap"), "x").unwrap();
        assert_eq!(find_beside(&img), Some(dir.path().join("os.img.bmap")));
        assert_eq!(find_beside(&dir.path().join("other.img")), None);
        std::fs::write(dir.path().join("disk.bmap"), "x").unwrap();
        assert_eq!(
            find_beside(&dir.path().join("disk.img")),
            Some(dir.path().join("disk.bmap"))
        );
    }

    /// Written by `bmaptool create` (bmap-tools 3.6) for the 1 MiB sparse image that
    /// [`fixture_image`] rebuilds: data in block 3, blocks 100-101 and the last block, 255.
    const BMAPTOOL_3_6: &str = r#"<?xml version="1.0" ?>
<!-- This file contains the block map for an image file, which is basically
     a list of useful (mapped) block numbers in the image file. In other words,
     it lists only those blocks which contain data (boot sector, partition
     table, file-system metadata, files, directories, extents, etc). These
     blocks have to be copied to the target device. The other blocks do not
     contain any useful data and do not have to be copied to the target
     device.

     The block map an optimization which allows to copy or flash the image to
     the image quicker than copying of flashing the entire image. This is
     because with bmap less data is copied: <MappedBlocksCount> blocks instead
     of <BlocksCount> blocks.

     Besides the machine-readable data, this file contains useful commentaries
     which contain human-readable information like image size, percentage of
     mapped data, etc.

     The 'version' attribute is the block map file format version in the
     'major.minor' format. The version major number is increased whenever an
     incompatible block map format change is made. The minor number changes
     in case of minor backward-compatible changes. -->

<bmap version="2.0">
    <!-- Image size in bytes: 1.0 MiB -->
    <ImageSize> 1048576 </ImageSize>

    <!-- Size of a block in bytes -->
    <BlockSize> 4096 </BlockSize>

    <!-- Count of blocks in the image file -->
    <BlocksCount> 256 </BlocksCount>

    <!-- Count of mapped blocks: 16.0 KiB or 1.6%    -->
    <MappedBlocksCount> 4   </MappedBlocksCount>

    <!-- Type of checksum used in this file -->
    <ChecksumType> sha256 </ChecksumType>

    <!-- The checksum of this bmap file. When it is calculated, the value of
         the checksum has be zero (all ASCII "0" symbols).  -->
    <BmapFileChecksum> 8965389854b8d66e198168ee3264e4a68ec6a94a2ee401e78c8f89690e442bd1 </BmapFileChecksum>

    <!-- The block map which consists of elements which may either be a
         range of blocks or a single block. The 'chksum' attribute
         (if present) is the checksum of this blocks range. -->
    <BlockMap>
        <Range chksum="f91e2e6df4b9e6e978f41f69b041b503255a9681bc277ee57747759cf8e6dea2"> 3 </Range>
        <Range chksum="4e45f68d3034cb104895f36af0cf7b0f4b53821d217a661cf54d411245babff0"> 100-101 </Range>
        <Range chksum="e5749e1b2fece6fb5e4e61010e9319414a60ffef9d075d2e79ef8ad6bf42cce2"> 255 </Range>
    </BlockMap>
</bmap>
"#;

    /// The image [`BMAPTOOL_3_6`] maps, byte for byte.
    fn fixture_image() -> Vec<u8> {
        let mut image = vec![0u8; 1 << 20];
        image[3 * 4096..][..11].copy_from_slice(b"hello bmap\n");
        for (i, b) in image[100 * 4096..][..5000].iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        image[(1 << 20) - 4..].copy_from_slice(b"tail");
        image
    }

    #[test]
    fn reads_a_file_bmaptool_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparse.img.bmap");
        std::fs::write(&path, BMAPTOOL_3_6).unwrap();
        let b = Bmap::load(&path).unwrap();
        assert_eq!(
            (
                b.image_size,
                b.block_size,
                b.blocks_count,
                b.mapped_blocks_count
            ),
            (1 << 20, 4096, 256, 4)
        );
        let spans: Vec<(u64, u64)> = b.ranges.iter().map(|r| (r.first, r.last)).collect();
        assert_eq!(spans, [(3, 3), (100, 101), (255, 255)]);
        let image = fixture_image();
        for r in &b.ranges {
            let e = b.extent(r);
            let bytes = &image[e.start as usize..e.end as usize];
            assert_eq!(r.sha256, Some(Sha256::digest(bytes).into()), "{r:?}");
        }
    }

    #[test]
    fn a_malformed_bmap_is_an_input_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cut.bmap");
        let cut = &BMAPTOOL_3_6[..BMAPTOOL_3_6.find("<Range").unwrap() + 20];
        std::fs::write(&path, cut).unwrap();
        let err = Bmap::load(&path).unwrap_err();
        assert!(matches!(err, Error::Input(_)), "{err}");
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!("bmap {}: not a bmap: ", path.display())),
            "{msg}"
        );
        let no_size = BMAPTOOL_3_6.replace("<BlockSize> 4096 </BlockSize>", "");
        let msg = Bmap::parse(&no_size).unwrap_err();
        assert!(msg.contains("BlockSize"), "{msg}");
        let bad_number = BMAPTOOL_3_6.replace("<BlocksCount> 256", "<BlocksCount> lots");
        assert_eq!(
            Bmap::parse(&bad_number).unwrap_err(),
            "<BlocksCount> is not a number: lots"
        );
        let v3 = BMAPTOOL_3_6.replace(r#"<bmap version="2.0">"#, r#"<bmap version="3.0">"#);
        assert!(Bmap::parse(&v3).unwrap_err().contains("version 3.0"));
    }
}
