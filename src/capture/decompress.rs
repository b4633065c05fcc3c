//! Compressed captures (gzip, zstd), recognised by their magic bytes and
//! decompressed as a stream: nothing is written to disk, and stdin works
//! too. The decompressed bytes are read by hbscope's own readers (classic
//! pcap: `pcapfile`, pcapng: `pcapng`), since libpcap reads only what it
//! can open itself. This module is the only one using `flate2` and `zstd`.

use std::io::{self, Read};

use super::pcapfile::PcapFile;
use super::pcapng::PcapngStream;
use super::CaptureError;

/// A compression format hbscope decompresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Compression {
    /// gzip (`.gz`; several members are read one after the other, as `zcat`).
    Gzip,
    /// Zstandard (`.zst`).
    Zstd,
}

impl Compression {
    /// The format whose magic bytes `head` starts with, if any.
    pub(super) fn detect(head: &[u8]) -> Option<Self> {
        match head {
            [0x1f, 0x8b, ..] => Some(Compression::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Compression::Zstd),
            _ => None,
        }
    }

    /// Its name in messages.
    pub(super) fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Zstd => "zstd",
        }
    }
}

/// A capture reader over decompressed bytes.
pub(super) enum Decompressed {
    /// Classic pcap.
    Pcap(PcapFile),
    /// pcapng.
    Pcapng(PcapngStream),
}

/// Wraps `r` in a decoder for `c` and opens the capture inside.
///
/// # Errors
/// A message (the detail of [`CaptureError::NotACapture`]) when the
/// decompressed bytes are not a capture this reader takes, or
/// [`CaptureError`]s from reading the pcapng header.
pub(super) fn open(
    c: Compression,
    r: Box<dyn Read + Send>,
) -> Result<Result<Decompressed, String>, CaptureError> {
    let mut dec: Box<dyn Read + Send> = match c {
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(r))),
        Compression::Zstd => match zstd::stream::read::Decoder::new(r) {
            Ok(d) => Box::new(d),
            Err(e) => return Ok(Err(format!("zstd: {e}"))),
        },
    };
    let mut magic = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match dec.read(magic.get_mut(got..).unwrap_or(&mut [])) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Ok(Err(format!("{}-compressed, but {e}", c.name()))),
        }
    }
    let head = magic.get(..got).unwrap_or(&[]).to_vec();
    let stream: Box<dyn Read + Send> = Box::new(io::Cursor::new(head).chain(dec));
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        return PcapngStream::open(stream).map(|s| Ok(Decompressed::Pcapng(s)));
    }
    match PcapFile::open(stream) {
        Ok(Some(p)) => Ok(Ok(Decompressed::Pcap(p))),
        Ok(None) => Ok(Err(format!(
            "{}-compressed, and what is inside is not a pcap or pcapng file hbscope can read while decompressing \
             (a pcap 2.4 file with a common link type, or pcapng); decompress it first",
            c.name()
        ))),
        Err(e) => Ok(Err(format!("{}-compressed, but {e}", c.name()))),
    }
}
