//! Opens an image file as a stream of raw disk bytes, whatever it is packed in.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use crate::error::{Context, Error, Result};

/// How an image file is packed, judged by its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packing {
    /// A raw disk image (`.img`, or anything else).
    Raw,
    /// `.gz`
    Gzip,
    /// `.xz`
    Xz,
    /// `.zst`
    Zstd,
    /// `.zip` holding one `.img`
    Zip,
}

impl Packing {
    /// The packing of `path`, from its extension.
    pub fn of(path: &Path) -> Packing {
        match path.extension().and_then(|e| e.to_str()) {
            Some("gz") => Packing::Gzip,
            Some("xz") => Packing::Xz,
            Some("zst") => Packing::Zstd,
            Some("zip") => Packing::Zip,
            _ => Packing::Raw,
        }
    }
}

/// Opens `path` and returns a reader of the raw disk bytes inside it.
pub fn open_raw_stream(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).input_ctx(|| format!("cannot open image {}", path.display()))?;
    let buf = BufReader::with_capacity(1 << 20, file);
    Ok(match Packing::of(path) {
        Packing::Raw => Box::new(buf),
        Packing::Gzip => Box::new(flate2::bufread::MultiGzDecoder::new(buf)),
        Packing::Xz => Box::new(liblzma::bufread::XzDecoder::new_multi_decoder(buf)),
        Packing::Zstd => Box::new(
            zstd::stream::read::Decoder::with_buffer(buf)
                .input_ctx(|| format!("{} is not a zstd file", path.display()))?,
        ),
        Packing::Zip => open_zip_entry(path)?,
    })
}

/// The first `.img` entry of a zip archive, as a stream.
fn open_zip_entry(path: &Path) -> Result<Box<dyn Read + Send>> {
    let file = File::open(path).input_ctx(|| format!("cannot open image {}", path.display()))?;
    let mut archive = zip::ZipArchive::new(BufReader::new(file))
        .input_ctx(|| format!("{} is not a zip archive", path.display()))?;
    let index = (0..archive.len())
        .find(|&i| {
            archive
                .by_index(i)
                .map(|e| e.name().is_ok_and(|n| n.ends_with(".img")))
                .unwrap_or(false)
        })
        .ok_or_else(|| Error::input(format!("{} holds no .img file", path.display())))?;
    // The zip reader borrows the archive, so read the entry through a pipe thread.
    let (reader, mut writer) = std::io::pipe().infra_ctx(|| "cannot create a pipe".into())?;
    std::thread::spawn(move || {
        if let Ok(mut entry) = archive.by_index(index) {
            let _ = std::io::copy(&mut entry, &mut writer);
        }
    });
    Ok(Box::new(reader))
}
