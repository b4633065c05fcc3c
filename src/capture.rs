//! Packet sources: where captured packets come from.
//!
//! This is the only module that touches the `pcap` crate (libpcap). It hands
//! out [`PacketRecord`]s: a capture timestamp in nanoseconds, the captured and
//! original lengths, and the captured bytes. Everything downstream speaks only
//! this type, and every source (file, live interface, simulation) hands them
//! out through the [`PacketSource`] trait, which `crate::driver` runs.
//!
//! [`FileSource`] reads pcap and pcapng files (or stdin for `-`). Before libpcap
//! sees a path, the obvious mistakes (missing file, directory, empty file,
//! unreadable file) are checked here so the user gets a plain message instead
//! of libpcap's terse one; libpcap's own errors are translated too.
//!
//! [`live::LiveCapture`] reads an interface (TPACKET_V3 blocks, nanosecond
//! timestamps, non-blocking with poll) and can save what it reads with `--write`.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::model::Timestamp;

pub mod bpf;
mod decompress;
pub mod live;
pub mod multi;
mod pcapfile;
pub mod pcapng;
pub mod ring;
pub mod savefile;

/// A link-layer header type: the `DLT_` value libpcap reports for a capture.
///
/// libpcap translates the `LINKTYPE_` value stored in a file into the host's
/// `DLT_` value, so e.g. a file with `LINKTYPE_RAW` (101) reports
/// [`LinkType::RAW`] (12 on Linux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LinkType(pub i32);

impl LinkType {
    /// BSD loopback: 4-byte address family in the capturing host's byte order.
    pub const NULL: LinkType = LinkType(0);
    /// Ethernet (`EN10MB`), including VLAN-tagged frames.
    pub const ETHERNET: LinkType = LinkType(1);
    /// Raw IP (`DLT_RAW` on most systems).
    pub const RAW: LinkType = LinkType(12);
    /// Raw IP as `DLT_RAW` is numbered on OpenBSD.
    pub const RAW_OPENBSD: LinkType = LinkType(14);
    /// Raw IP (`LINKTYPE_RAW`, as stored in files).
    pub const LINKTYPE_RAW: LinkType = LinkType(101);
    /// OpenBSD loopback: 4-byte address family in network byte order.
    pub const LOOP: LinkType = LinkType(108);
    /// Linux cooked capture v1 (`LINUX_SLL`, `tcpdump -i any -y LINUX_SLL`).
    pub const LINUX_SLL: LinkType = LinkType(113);
    /// Raw IPv4.
    pub const IPV4: LinkType = LinkType(228);
    /// Raw IPv6.
    pub const IPV6: LinkType = LinkType(229);
    /// Linux cooked capture v2 (`LINUX_SLL2`, what `tcpdump -i any` writes).
    pub const LINUX_SLL2: LinkType = LinkType(276);

    /// libpcap's name for this link type (e.g. `EN10MB`, `LINUX_SLL2`), or
    /// `DLT_<n>` when libpcap does not know it.
    #[must_use]
    pub fn name(&self) -> String {
        pcap::Linktype(self.0)
            .get_name()
            .unwrap_or_else(|_| format!("DLT_{}", self.0))
    }
}

impl fmt::Display for LinkType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.name(), self.0)
    }
}

/// One captured packet, borrowed from its source until the next read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketRecord<'a> {
    /// Capture timestamp (nanoseconds since the Unix epoch).
    pub ts: Timestamp,
    /// Number of bytes captured (`data.len()`).
    pub caplen: u32,
    /// Length of the packet on the wire; larger than `caplen` when the
    /// snapshot length cut the packet.
    pub orig_len: u32,
    /// The captured bytes, starting with the link-layer header.
    pub data: &'a [u8],
}

/// Why a capture could not be opened or read. Each message says what is
/// wrong and what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The path does not exist.
    #[error("{}: no such file; check the path to the capture file", path.display())]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// The path is a directory.
    #[error("{}: is a directory; give the path of a .pcap or .pcapng file", path.display())]
    IsDirectory {
        /// The path given.
        path: PathBuf,
    },
    /// The file has no bytes at all.
    #[error(
        "{}: empty file, not a capture (0 bytes); was the capture stopped before it wrote anything?",
        path.display()
    )]
    Empty {
        /// The path given.
        path: PathBuf,
    },
    /// Standard input (`-`) ended before its first byte.
    #[error(
        "-: standard input is empty (0 bytes), not a capture; did the command piping into hbscope \
         (e.g. `tcpdump -w -`) fail or stop before it wrote anything?"
    )]
    EmptyStdin,
    /// The file cannot be read with the current rights.
    #[error(
        "{}: permission denied; make the file readable (e.g. `sudo chmod a+r`) or run as a user who can read it",
        path.display()
    )]
    Permission {
        /// The path given.
        path: PathBuf,
    },
    /// libpcap takes paths as UTF-8 strings only.
    #[error("{}: the path is not valid UTF-8, which libpcap cannot open; rename the file or read it from stdin with `-`", path.display())]
    PathNotUtf8 {
        /// The path given.
        path: PathBuf,
    },
    /// The file is not a capture libpcap can read.
    #[error(
        "{}: not a pcap or pcapng file ({detail}); give a capture written by tcpdump, dumpcap/tshark or Wireshark",
        path.display()
    )]
    NotACapture {
        /// The path given.
        path: PathBuf,
        /// What libpcap or the pre-check found.
        detail: String,
    },
    /// A pcapng file whose interfaces have different link-layer types;
    /// libpcap 1.10 stops reading when it meets the block that declares such an
    /// interface: before the first packet when all interfaces are declared up
    /// front (as `mergecap` writes them), later for a concatenated section.
    #[error(
        "the pcapng file mixes interfaces with different link-layer types, which libpcap cannot read ({detail}); \
         the packets before this point were read. Capture again on one interface (`tcpdump -i any` \
         records every interface with a single link type), or split the file into one file per interface"
    )]
    MixedLinkTypes {
        /// libpcap's message.
        detail: String,
    },
    /// The file ends in the middle of a packet record.
    #[error(
        "the capture file is cut short in the middle of a packet record ({detail}); the packets before it were read. \
         The file was probably copied or stopped while it was still being written"
    )]
    Truncated {
        /// libpcap's message (how many bytes were expected and found).
        detail: String,
    },
    /// Any other failure while reading packets.
    #[error("could not read the next packet from the capture ({detail}); the file may be corrupt")]
    Read {
        /// libpcap's message.
        detail: String,
    },
    /// An I/O error while checking the path before opening it.
    #[error("{}: cannot open: {source}", path.display())]
    Io {
        /// The path given.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl CaptureError {
    /// The stable warning code used when this error ends reading partway
    /// (the packets before it are still analysed).
    #[must_use]
    pub fn warning_code(&self) -> &'static str {
        match self {
            CaptureError::Truncated { .. } => "capture-truncated",
            CaptureError::MixedLinkTypes { .. } => "mixed-link-types",
            _ => "read-error",
        }
    }
}

/// How a [`PacketSource::next_batch`] call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    /// This many packets (at least one) were handed over.
    Packets(usize),
    /// No packet is ready now; more may come (a live interface).
    Idle,
    /// The source is exhausted: no packet will come any more.
    End,
}

/// Why a packet source stopped or failed: a file's or a live interface's
/// error, with the warning code the report records it under.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading a capture file.
    #[error(transparent)]
    File(#[from] CaptureError),
    /// Reading a live interface or writing its `--write` file.
    #[error(transparent)]
    Live(#[from] live::LiveCaptureError),
}

impl SourceError {
    /// The stable warning code the report records this error under
    /// (`capture-truncated`, `read-error`, `live-capture-error`, `write-error`, ...).
    #[must_use]
    pub fn warning_code(&self) -> &'static str {
        match self {
            SourceError::File(e) => e.warning_code(),
            SourceError::Live(e) => e.warning_code(),
        }
    }
}

/// Something that yields [`PacketRecord`]s: a capture file ([`FileSource`]),
/// a live interface ([`live::LiveCapture`]) or a simulation
/// (`driver::PacedSource`). `crate::driver` runs every mode's loop over it.
///
/// A source ends in one of two ways: [`Batch::End`] (a file's clean end), or
/// an error, after which it is exhausted. Packets read before an error come
/// first (in a batch of their own), then the error.
pub trait PacketSource {
    /// The link-layer type of the packets.
    fn link_type(&self) -> LinkType;

    /// Waits until packets are ready or `timeout` passed; `true` when they
    /// may be ready. A file is always ready: the default returns at once.
    ///
    /// # Errors
    /// [`SourceError`] when waiting failed (the source cannot go on).
    fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, SourceError> {
        let _ = timeout;
        Ok(true)
    }

    /// Hands up to `max` packets that are ready to `f`, together or in
    /// several calls (the records are borrowed from the source until `f`
    /// returns); says how many, or that none is ready, or the end.
    ///
    /// # Errors
    /// [`SourceError`] when reading failed, only when no packet was handed
    /// over before it in this call; the source is exhausted afterwards.
    fn next_batch(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(&[PacketRecord<'_>]),
    ) -> Result<Batch, SourceError>;

    /// Packets the kernel dropped since the capture started, for sources that
    /// have such a counter (a live interface); `None` otherwise or when the
    /// counter cannot be read.
    fn drops(&mut self) -> Option<u64> {
        None
    }

    /// Writes out what the source saves on the side (`--write`); called about
    /// once a second. The default saves nothing.
    ///
    /// # Errors
    /// [`SourceError`] when the save file cannot be written.
    fn flush(&mut self) -> Result<(), SourceError> {
        Ok(())
    }

    /// Adds a text note to what the source saves (a pcapng `--write` file:
    /// [`savefile::Savefile::annotate`]); `false` when nothing can carry it
    /// (no save file, or classic pcap). The default saves nothing.
    fn annotate(&mut self, text: &str) -> bool {
        let _ = text;
        false
    }

    /// Flushes and closes what the source saves; the saved file's path, when
    /// there is one. Later reads are still allowed but nothing more is saved.
    ///
    /// # Errors
    /// [`SourceError`] when the final flush fails.
    fn close_save(&mut self) -> Result<Option<PathBuf>, SourceError> {
        Ok(None)
    }

    /// Bytes of the input read so far (for progress display); 0 when unknown.
    fn bytes_read(&self) -> u64 {
        0
    }

    /// Size of the input in bytes, when known (a regular file).
    fn size(&self) -> Option<u64> {
        None
    }
}

/// The on-disk format, known from the file's first bytes (when the file could
/// be peeked at) and used only to estimate progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileFormat {
    Pcap,
    Pcapng,
    /// Compressed; read as a stream by hbscope's own readers.
    Compressed(decompress::Compression),
}

/// pcap's per-record header length.
const PCAP_RECORD_HEADER: u64 = 16;
/// pcap's file header length.
const PCAP_FILE_HEADER: u64 = 24;
/// An Enhanced Packet Block's fixed part (block header, fields, trailing length).
const PCAPNG_EPB_OVERHEAD: u64 = 32;

/// Reads a pcap or pcapng file (or stdin for `-`) through libpcap, with
/// nanosecond timestamps; classic pcap files libpcap would read unchanged are
/// read by hbscope's own reader (see `capture/pcapfile.rs`), which is faster.
pub struct FileSource {
    reader: Reader,
    link: LinkType,
    file_size: Option<u64>,
    format: FileFormat,
    consumed: u64,
    /// Set after the end of the file or an error: later reads return `Ok(None)`.
    done: bool,
    /// Records of the last [`FileSource::next_batch`] (kept for its allocation).
    batch: Vec<pcapfile::Record>,
    /// The pipe libpcap reads stdin from (after the peek at its first bytes).
    _relay: Option<io::PipeReader>,
}

enum Reader {
    Libpcap(pcap::Capture<pcap::Offline>),
    Own(Box<pcapfile::PcapFile>),
    /// pcapng read by hbscope's stream reader (compressed input).
    Ng(Box<pcapng::PcapngStream>),
}

impl fmt::Debug for FileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("link", &self.link)
            .field("file_size", &self.file_size)
            .field("consumed", &self.consumed)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl FileSource {
    /// Opens a pcap or pcapng file; `-` reads stdin.
    ///
    /// # Errors
    /// [`CaptureError::NotFound`], [`CaptureError::IsDirectory`],
    /// [`CaptureError::Empty`], [`CaptureError::Permission`],
    /// [`CaptureError::PathNotUtf8`] or [`CaptureError::Io`] from the checks
    /// made before libpcap sees the path; [`CaptureError::NotACapture`] when
    /// libpcap does not recognise the file.
    pub fn open(path: &Path) -> Result<Self, CaptureError> {
        Self::open_with(path, true)
    }

    /// [`FileSource::open`]; `own_reader` false always reads through libpcap.
    fn open_with(path: &Path, own_reader: bool) -> Result<Self, CaptureError> {
        let is_stdin = path.as_os_str() == "-";
        let (file_size, format) = if is_stdin {
            (None, FileFormat::Pcap)
        } else {
            precheck(path)?
        };
        if let FileFormat::Compressed(c) = format {
            let file = File::open(path).map_err(|e| io_error(path, e))?;
            return Self::decompressing(path, c, Box::new(file));
        }
        let mut relay = None;
        let relay_path;
        let path = if is_stdin && own_reader {
            // Peeked for compression; plain input goes on to libpcap
            // through a pipe that replays the peeked bytes.
            let mut stdin = io::stdin();
            let mut magic = [0u8; 4];
            let got = read_up_to(&mut stdin, &mut magic).map_err(|e| io_error(path, e))?;
            let head = magic.get(..got).unwrap_or(&[]).to_vec();
            if let Some(c) = decompress::Compression::detect(&head) {
                let stream = io::Cursor::new(head).chain(stdin);
                return Self::decompressing(path, c, Box::new(stream));
            }
            let (reader, writer) = io::pipe().map_err(|e| io_error(path, e))?;
            std::thread::spawn(move || {
                let mut writer = writer;
                let mut stdin = io::stdin();
                // Ends when libpcap closes its end (EPIPE) or stdin ends.
                let _ = io::Write::write_all(&mut writer, &head)
                    .and_then(|()| io::copy(&mut stdin, &mut writer));
            });
            relay_path = PathBuf::from(format!(
                "/dev/fd/{}",
                std::os::fd::AsRawFd::as_raw_fd(&reader)
            ));
            relay = Some(reader);
            relay_path.as_path()
        } else {
            path
        };
        let Some(path_str) = path.to_str() else {
            // The pcap crate would hand libpcap a null path for a non-UTF-8 one.
            return Err(CaptureError::PathNotUtf8 {
                path: path.to_path_buf(),
            });
        };
        if own_reader && format == FileFormat::Pcap && file_size.is_some() {
            let file = File::open(path).map_err(|e| io_error(path, e))?;
            if let Some(own) =
                pcapfile::PcapFile::open(Box::new(file)).map_err(|e| io_error(path, e))?
            {
                return Ok(FileSource {
                    _relay: None,
                    link: own.link_type(),
                    reader: Reader::Own(Box::new(own)),
                    file_size,
                    format,
                    consumed: PCAP_FILE_HEADER,
                    done: false,
                    batch: Vec::new(),
                });
            }
        }
        let shown = if relay.is_some() {
            Path::new("-")
        } else {
            path
        };
        let cap = pcap::Capture::from_file_with_precision(path_str, pcap::Precision::Nano)
            .map_err(|e| open_error(shown, &e))?;
        let link = LinkType(cap.get_datalink().0);
        let consumed = match format {
            FileFormat::Pcap => PCAP_FILE_HEADER,
            FileFormat::Pcapng | FileFormat::Compressed(_) => 0,
        };
        Ok(FileSource {
            _relay: relay,
            reader: Reader::Libpcap(cap),
            link,
            file_size,
            format,
            consumed,
            done: false,
            batch: Vec::new(),
        })
    }

    /// A compressed capture read as a stream by hbscope's own readers.
    fn decompressing(
        path: &Path,
        c: decompress::Compression,
        r: Box<dyn Read + Send>,
    ) -> Result<Self, CaptureError> {
        let reader = match decompress::open(c, r)? {
            Ok(decompress::Decompressed::Pcap(p)) => Reader::Own(Box::new(p)),
            Ok(decompress::Decompressed::Pcapng(n)) => Reader::Ng(Box::new(n)),
            Err(detail) => {
                return Err(CaptureError::NotACapture {
                    path: path.to_path_buf(),
                    detail,
                })
            }
        };
        let link = match &reader {
            Reader::Own(p) => p.link_type(),
            Reader::Ng(n) => n.link_type(),
            Reader::Libpcap(cap) => LinkType(cap.get_datalink().0),
        };
        Ok(FileSource {
            reader,
            link,
            // Progress counts decompressed bytes: no total to compare with.
            file_size: None,
            format: FileFormat::Compressed(c),
            consumed: 0,
            done: false,
            batch: Vec::new(),
            _relay: None,
        })
    }

    /// The link-layer type of the file (of its first interface, for pcapng).
    #[must_use]
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// The next packet, `Ok(None)` at the clean end of the file.
    ///
    /// # Errors
    /// [`CaptureError::Truncated`] when the file ends inside a record,
    /// [`CaptureError::MixedLinkTypes`] when a pcapng interface's link type
    /// differs from the first one's,
    /// [`CaptureError::Read`] otherwise. After an error the source is
    /// exhausted and returns `Ok(None)`.
    pub fn next_packet(&mut self) -> Result<Option<PacketRecord<'_>>, CaptureError> {
        if self.done {
            return Ok(None);
        }
        let cap = match &mut self.reader {
            Reader::Libpcap(cap) => cap,
            Reader::Ng(ng) => {
                return match ng.next() {
                    Ok(Some(rec)) => {
                        count_bytes(&mut self.consumed, self.file_size, rec.stored);
                        Ok(Some(PacketRecord {
                            ts: rec.ts,
                            caplen: rec.caplen,
                            orig_len: rec.orig_len,
                            data: ng.data(),
                        }))
                    }
                    Ok(None) => {
                        self.done = true;
                        Ok(None)
                    }
                    Err(e) => {
                        self.done = true;
                        Err(e)
                    }
                };
            }
            Reader::Own(own) => {
                return match own.next() {
                    Ok(Some(rec)) => {
                        count_bytes(&mut self.consumed, self.file_size, rec.stored);
                        Ok(Some(PacketRecord {
                            ts: rec.ts,
                            caplen: rec.caplen,
                            orig_len: rec.orig_len,
                            data: own.data(&rec),
                        }))
                    }
                    Ok(None) => {
                        self.done = true;
                        count_to_end(&mut self.consumed, self.file_size);
                        Ok(None)
                    }
                    Err(e) => {
                        self.done = true;
                        Err(e)
                    }
                };
            }
        };
        match cap.next_packet() {
            Ok(packet) => {
                let header = *packet.header;
                let record_overhead = match self.format {
                    FileFormat::Pcap => PCAP_RECORD_HEADER,
                    FileFormat::Pcapng | FileFormat::Compressed(_) => PCAPNG_EPB_OVERHEAD,
                };
                let stored = match self.format {
                    FileFormat::Pcap => u64::from(header.caplen),
                    FileFormat::Pcapng | FileFormat::Compressed(_) => {
                        u64::from(header.caplen).next_multiple_of(4)
                    }
                };
                count_bytes(
                    &mut self.consumed,
                    self.file_size,
                    record_overhead.saturating_add(stored),
                );
                Ok(Some(PacketRecord {
                    ts: timestamp(&header),
                    caplen: header.caplen,
                    orig_len: header.len,
                    data: packet.data,
                }))
            }
            Err(pcap::Error::NoMorePackets) => {
                self.done = true;
                count_to_end(&mut self.consumed, self.file_size);
                Ok(None)
            }
            Err(e) => {
                self.done = true;
                Err(read_error(&e))
            }
        }
    }

    /// Reads up to `max` packets and hands them to `f` together (one at a
    /// time through libpcap, which reuses its buffer for every packet);
    /// returns how many, 0 at the clean end of the file.
    ///
    /// # Errors
    /// As [`FileSource::next_packet`], when no packet was read before the
    /// error (packets before an error come first, then the error).
    pub fn next_batch(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(&[PacketRecord<'_>]),
    ) -> Result<usize, CaptureError> {
        if self.done {
            return Ok(0);
        }
        let Reader::Own(own) = &mut self.reader else {
            return match self.next_packet()? {
                Some(rec) => {
                    f(&[rec]);
                    Ok(1)
                }
                None => Ok(0),
            };
        };
        let mut recs = std::mem::take(&mut self.batch);
        if let Err(e) = own.next_batch(max, &mut recs) {
            self.done = true;
            self.batch = recs;
            return Err(e);
        }
        if recs.is_empty() {
            self.done = true;
            count_to_end(&mut self.consumed, self.file_size);
            self.batch = recs;
            return Ok(0);
        }
        let stored: u64 = recs.iter().map(|r| r.stored).sum();
        count_bytes(&mut self.consumed, self.file_size, stored);
        let packets: Vec<PacketRecord<'_>> = recs
            .iter()
            .map(|r| PacketRecord {
                ts: r.ts,
                caplen: r.caplen,
                orig_len: r.orig_len,
                data: own.data(r),
            })
            .collect();
        f(&packets);
        let n = packets.len();
        drop(packets);
        self.batch = recs;
        Ok(n)
    }

    /// Size of the file in bytes, when it is a regular file (not stdin or a pipe).
    #[must_use]
    pub fn file_size(&self) -> Option<u64> {
        self.file_size
    }

    /// Approximate number of file bytes read so far (record headers plus
    /// captured bytes; pcapng options and non-packet blocks are not counted
    /// until the end of the file), for progress display.
    #[must_use]
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }
}

impl PacketSource for FileSource {
    fn link_type(&self) -> LinkType {
        FileSource::link_type(self)
    }

    fn next_batch(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(&[PacketRecord<'_>]),
    ) -> Result<Batch, SourceError> {
        match FileSource::next_batch(self, max, f)? {
            0 => Ok(Batch::End),
            n => Ok(Batch::Packets(n)),
        }
    }

    fn bytes_read(&self) -> u64 {
        self.bytes_consumed()
    }

    fn size(&self) -> Option<u64> {
        self.file_size()
    }
}

/// Counts `n` more bytes of the file read (never past its size, when known).
fn count_bytes(consumed: &mut u64, file_size: Option<u64>, n: u64) {
    *consumed = consumed.saturating_add(n);
    if let Some(size) = file_size {
        *consumed = (*consumed).min(size);
    }
}

/// The end of the file was reached: all of it counts as read.
fn count_to_end(consumed: &mut u64, file_size: Option<u64>) {
    if let Some(size) = file_size {
        *consumed = size;
    }
}

/// With `Precision::Nano`, libpcap's `tv_usec` field holds nanoseconds.
// `time_t`/`suseconds_t` are i64 on 64-bit Linux but narrower elsewhere.
#[allow(clippy::useless_conversion)]
fn timestamp(header: &pcap::PacketHeader) -> Timestamp {
    Timestamp::from_parts(i64::from(header.ts.tv_sec), i64::from(header.ts.tv_usec))
}

/// Checks a path before libpcap sees it; returns the file size (regular files
/// only) and the format guessed from the magic number.
fn precheck(path: &Path) -> Result<(Option<u64>, FileFormat), CaptureError> {
    let owned = || path.to_path_buf();
    let meta = std::fs::metadata(path).map_err(|e| io_error(path, e))?;
    if meta.is_dir() {
        return Err(CaptureError::IsDirectory { path: owned() });
    }
    if !meta.is_file() {
        // A pipe or device: nothing to peek at without stealing bytes from libpcap.
        return Ok((None, FileFormat::Pcap));
    }
    if meta.len() == 0 {
        return Err(CaptureError::Empty { path: owned() });
    }
    let mut magic = [0u8; 4];
    let mut file = File::open(path).map_err(|e| io_error(path, e))?;
    let got = read_up_to(&mut file, &mut magic).map_err(|e| io_error(path, e))?;
    let magic = magic.get(..got).unwrap_or(&[]);
    let format = match magic {
        [0x0a, 0x0d, 0x0d, 0x0a] => FileFormat::Pcapng,
        m => match decompress::Compression::detect(m) {
            Some(c) => FileFormat::Compressed(c),
            None => FileFormat::Pcap,
        },
    };
    Ok((Some(meta.len()), format))
}

/// Reads until `buf` is full or the end of the file.
fn read_up_to(file: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while let Some(rest) = buf.get_mut(got..) {
        if rest.is_empty() {
            break;
        }
        match file.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn io_error(path: &Path, e: io::Error) -> CaptureError {
    let path = path.to_path_buf();
    match e.kind() {
        io::ErrorKind::NotFound => CaptureError::NotFound { path },
        io::ErrorKind::PermissionDenied => CaptureError::Permission { path },
        io::ErrorKind::IsADirectory => CaptureError::IsDirectory { path },
        _ => CaptureError::Io { path, source: e },
    }
}

/// Translates libpcap's refusal to open a file.
fn open_error(path: &Path, e: &pcap::Error) -> CaptureError {
    let path = path.to_path_buf();
    let msg = match e {
        pcap::Error::PcapError(msg) => msg.as_str(),
        other => {
            return CaptureError::NotACapture {
                path,
                detail: other.to_string(),
            }
        }
    };
    if path.as_os_str() == "-" && msg.contains("header bytes, only got 0") {
        return CaptureError::EmptyStdin;
    }
    let detail = if msg.contains("unknown file format") {
        "libpcap: unknown file format".to_string()
    } else if msg.contains("truncated dump file") || msg.contains("truncated pcapng") {
        format!("the file ends inside its file header; libpcap: {msg}")
    } else if msg.contains("No such file") {
        return CaptureError::NotFound { path };
    } else if msg.contains("Permission denied") {
        return CaptureError::Permission { path };
    } else {
        format!("libpcap: {msg}")
    };
    CaptureError::NotACapture { path, detail }
}

/// Translates a libpcap error met while reading packets.
fn read_error(e: &pcap::Error) -> CaptureError {
    match e {
        pcap::Error::PcapError(msg) if msg.contains("truncated") => CaptureError::Truncated {
            detail: format!("libpcap: {msg}"),
        },
        pcap::Error::PcapError(msg)
            if msg.contains("different from the type of the first interface") =>
        {
            CaptureError::MixedLinkTypes {
                detail: format!("libpcap: {msg}"),
            }
        }
        pcap::Error::PcapError(msg) => CaptureError::Read {
            detail: format!("libpcap: {msg}"),
        },
        other => CaptureError::Read {
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_type_names_come_from_libpcap() {
        assert_eq!(LinkType::ETHERNET.name(), "EN10MB");
        assert_eq!(LinkType::LINUX_SLL2.name(), "LINUX_SLL2");
        assert_eq!(LinkType::LINUX_SLL.name(), "LINUX_SLL");
        assert_eq!(LinkType(-5).name(), "DLT_-5");
        assert_eq!(LinkType::ETHERNET.to_string(), "EN10MB (1)");
    }

    /// Every record and the way reading ends, as text.
    fn read_all(path: &Path, own: bool) -> (bool, Vec<String>) {
        let mut src = match FileSource::open_with(path, own) {
            Ok(s) => s,
            Err(e) => return (false, vec![format!("open: {e}")]),
        };
        let is_own = matches!(src.reader, Reader::Own(_));
        let mut out = vec![src.link_type().to_string()];
        loop {
            match src.next_packet() {
                Ok(Some(r)) => out.push(format!(
                    "{:?} {} {} {:?}",
                    r.ts, r.caplen, r.orig_len, r.data
                )),
                Ok(None) => break,
                Err(e) => {
                    out.push(format!("{} {e}", e.warning_code()));
                    break;
                }
            }
        }
        (is_own, out)
    }

    /// hbscope's own pcap reader gives libpcap's records and errors: on every
    /// shipped capture, and on copies cut at many lengths or with a damaged
    /// record length.
    #[test]
    #[allow(clippy::unwrap_used, clippy::expect_used)]
    fn own_reader_reads_what_libpcap_reads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
        let tmp = std::env::temp_dir().join(format!("hbscope-pcapfile-{}", std::process::id()));
        std::fs::create_dir_all(&tmp).unwrap();
        let mut own_used = 0;
        let mut variants = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_none_or(|x| x != "pcap") {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let mut cases = vec![bytes.clone()];
            // Cut inside the first records' headers and data, and near the end.
            for cut in (24..bytes.len().min(400))
                .step_by(7)
                .chain([bytes.len() - 1, bytes.len() - 17])
            {
                cases.push(bytes[..cut].to_vec());
            }
            // A first record with an impossible capture length, and one over the snapshot length.
            if bytes.len() > 40 {
                for caplen in [300_000u32, 70_000] {
                    let mut b = bytes.clone();
                    let le = b[0] == 0xd4 || b[0] == 0x4d;
                    let v = if le {
                        caplen.to_le_bytes()
                    } else {
                        caplen.to_be_bytes()
                    };
                    b[32..36].copy_from_slice(&v);
                    cases.push(b);
                }
            }
            for (i, case) in cases.iter().enumerate() {
                let f = tmp.join(format!("c{i}.pcap"));
                std::fs::write(&f, case).unwrap();
                let (is_own, own) = read_all(&f, true);
                let (_, lib) = read_all(&f, false);
                own_used += usize::from(is_own);
                variants += 1;
                assert_eq!(own, lib, "{} variant {i}", path.display());
            }
        }
        std::fs::remove_dir_all(&tmp).unwrap();
        assert!(
            own_used > 100,
            "own reader used on {own_used} of {variants} files"
        );
    }

    #[test]
    fn read_errors_are_classified() {
        let e = read_error(&pcap::Error::PcapError(
            "truncated dump file; tried to read 66 captured bytes, only got 14".into(),
        ));
        assert!(matches!(e, CaptureError::Truncated { .. }), "{e:?}");
        let e = read_error(&pcap::Error::PcapError(
            "an interface has a type 276 different from the type of the first interface".into(),
        ));
        assert!(matches!(e, CaptureError::MixedLinkTypes { .. }), "{e:?}");
        let e = read_error(&pcap::Error::PcapError("something else".into()));
        assert!(matches!(e, CaptureError::Read { .. }), "{e:?}");
    }
}
