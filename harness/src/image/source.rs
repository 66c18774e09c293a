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
    // The zip reader borrows the archive, so read the entry through a pipe thread; the reader
    // reports the thread's error (a bad CRC, a truncated archive) instead of a short stream.
    let (reader, mut writer) = std::io::pipe().infra_ctx(|| "cannot create a pipe".into())?;
    let copier = std::thread::spawn(move || -> std::io::Result<u64> {
        let mut entry = archive.by_index(index).map_err(std::io::Error::other)?;
        std::io::copy(&mut entry, &mut writer)
    });
    Ok(Box::new(ZipPipe {
        reader,
        copier: Some(copier),
    }))
}

/// The reading end of the zip pipe; at its end, the copying thread's error, if any.
struct ZipPipe {
    reader: std::io::PipeReader,
    copier: Option<std::thread::JoinHandle<std::io::Result<u64>>>,
}

impl Read for ZipPipe {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.reader.read(buf)?;
        if n == 0 && !buf.is_empty() {
            if let Some(copier) = self.copier.take() {
                match copier.join() {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return Err(std::io::Error::other("zip reader thread panicked")),
                }
            }
        }
        Ok(n)
    }
}
