//! bmaptool's block map files (`.bmap`, format 1.x and 2.x): which blocks of an image hold data.

use std::path::{Path, PathBuf};

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
        let stripped = strip_comments(raw);
        let text = stripped.as_str();
        let block_size = number(text, "BlockSize")?;
        let blocks_count = number(text, "BlocksCount")?;
        let mapped_blocks_count = number(text, "MappedBlocksCount")?;
        let image_size = match tag(text, "ImageSize") {
            Some(_) => number(text, "ImageSize")?,
            None => blocks_count * block_size,
        };
        if block_size == 0 || block_size % 512 != 0 {
            return Err(format!("block size {block_size} is not a multiple of 512"));
        }
        let ctype = tag(text, "ChecksumType").map(|s| s.trim().to_ascii_lowercase());
        let sha256 = match ctype.as_deref() {
            Some("sha256") => true,
            Some("sha1") | Some("md5") | None => false,
            Some(other) => return Err(format!("unknown checksum type {other}")),
        };
        if let Some(sum) = tag(text, "BmapFileChecksum") {
            if sha256 && !file_checksum_ok(raw, sum.trim()) {
                return Err("its own checksum does not match (the file is corrupt)".into());
            }
        }
        let mut ranges = Vec::new();
        let mut mapped = 0;
        for (attrs, body) in elements(text, "Range") {
            let (first, last) = parse_span(body.trim())?;
            if last < first || last >= blocks_count {
                return Err(format!("range {} is outside the image", body.trim()));
            }
            if ranges.last().is_some_and(|r: &BmapRange| first <= r.last) {
                return Err(format!("range {} overlaps or is out of order", body.trim()));
            }
            let sum = attr(attrs, "chksum").or_else(|| attr(attrs, "sha1"));
            let sha256 = match (sha256, sum) {
                (true, Some(s)) => Some(parse_hex32(s)?),
                (true, None) => return Err(format!("range {} has no checksum", body.trim())),
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

/// The text without `<!-- ... -->` comments (bmaptool's comments mention tag names).
fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("<!--") {
        out.push_str(&rest[..at]);
        match rest[at..].find("-->") {
            Some(end) => rest = &rest[at + end + 3..],
            None => return out,
        }
    }
    out.push_str(rest);
    out
}

/// Checks `<BmapFileChecksum>`: the sha256 of the file with that value replaced by zeros.
fn file_checksum_ok(text: &str, sum: &str) -> bool {
    let zeroed = text.replacen(sum, &"0".repeat(sum.len()), 1);
    hex::encode(Sha256::digest(zeroed.as_bytes())) == sum.to_ascii_lowercase()
}

fn tag<'a>(text: &'a str, name: &str) -> Option<&'a str> {
    elements(text, name).next().map(|(_, body)| body)
}

fn number(text: &str, name: &str) -> std::result::Result<u64, String> {
    let body = tag(text, name).ok_or_else(|| format!("no <{name}>"))?;
    body.trim()
        .parse()
        .map_err(|_| format!("<{name}> is not a number: {}", body.trim()))
}

/// Every `<name attrs>body</name>` in `text`, as (attrs, body).
fn elements<'a>(text: &'a str, name: &str) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    let open = format!("<{name}");
    let close = format!("</{name}>");
    let mut rest = text;
    std::iter::from_fn(move || loop {
        let at = rest.find(&open)?;
        let after = &rest[at + open.len()..];
        // Skip longer names that share the prefix (<BlocksCount> vs <BlockSize>).
        if !after.starts_with(['>', ' ', '\t', '\n', '\r']) {
            rest = after;
            continue;
        }
        let gt = after.find('>')?;
        let body_start = &after[gt + 1..];
        let end = body_start.find(&close)?;
        rest = &body_start[end + close.len()..];
        return Some((&after[..gt], &body_start[..end]));
    })
}

fn attr<'a>(attrs: &'a str, name: &str) -> Option<&'a str> {
    let at = attrs.find(&format!("{name}="))?;
    let v = &attrs[at + name.len() + 1..];
    let quote = v.chars().next()?;
    let v = &v[1..];
    Some(&v[..v.find(quote)?])
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
}
