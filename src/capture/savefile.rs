//! `live --write`: the pcap file the captured packets are copied to, opened
//! and written by hbscope itself.
//!
//! libpcap's `pcap_dump_open` opens by path: it follows a symbolic link and
//! truncates whatever the link points at, and creates the file with the
//! umask's mode. A link planted in a shared directory such as /tmp would
//! then let hbscope (running as root) clobber any file. So the file is
//! opened here, with `O_CREAT|O_EXCL|O_NOFOLLOW` and mode 0600 (it holds
//! AMQP credentials):
//! - a symbolic link at the path is always refused;
//! - an existing file is refused unless `--force`; with `--force` it must be
//!   a regular file with no other hard link, and is truncated and made 0600.
//!
//! The format is classic pcap with nanosecond timestamps (magic
//! `a1b23c4d`), what libpcap writes for a nanosecond capture; the file is
//! valid after every [`Savefile::flush`].
//!
//! [`PcapngWriter`] writes pcapng (nanosecond timestamps, comments in the
//! section header) for the flight recorder's per-gap files, into a file
//! made by [`create_private`] (`O_CREAT|O_EXCL`, mode 0600: never an
//! existing file, never through a symbolic link).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{LinkType, PacketRecord};

/// pcap magic for nanosecond timestamps.
const MAGIC_NANOS: u32 = 0xa1b2_3c4d;

/// Why the `--write` file cannot be opened: the detail of a
/// `LiveCaptureError::Write`.
fn refusal(path: &Path, e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(c) if c == rustix::io::Errno::EXIST.raw_os_error() => {
            "the file already exists; give a new path, or add --force to replace it".to_owned()
        }
        Some(c) if c == rustix::io::Errno::LOOP.raw_os_error() => symlink_refusal(path),
        _ => e.to_string(),
    }
}

fn symlink_refusal(_path: &Path) -> String {
    "the path is a symbolic link, which hbscope never writes through (a link planted in a \
     shared directory could point at any file); remove it or give another path"
        .to_owned()
}

/// The pcap `LINKTYPE_` value stored in a file for a live capture's `DLT_`
/// value: they are the same number except raw IP.
fn linktype_of(dlt: LinkType) -> u32 {
    match dlt {
        LinkType::RAW | LinkType::RAW_OPENBSD => 101,
        LinkType(n) => u32::try_from(n).unwrap_or(0),
    }
}

/// Creates a new file at `path` for packets: mode 0600 (it holds
/// credentials), `O_CREAT|O_EXCL`, so neither an existing file nor a symbolic
/// link (even a dangling one) is ever written through.
///
/// # Errors
/// The system's error; `AlreadyExists` when anything is at `path`.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
}

/// pcapng block types and options used by [`PcapngWriter`].
const NG_SHB: u32 = 0x0a0d_0d0a;
const NG_IDB: u32 = 1;
const NG_EPB: u32 = 6;
const NG_BYTE_ORDER: u32 = 0x1a2b_3c4d;
const OPT_END: u16 = 0;
const OPT_COMMENT: u16 = 1;
const SHB_USERAPPL: u16 = 4;
const IF_TSRESOL: u16 = 9;

/// Longest option value: option lengths are 16 bits.
const MAX_OPTION: usize = 65_532;

/// Appends one pcapng option (code, length, value padded to 4 bytes).
fn ng_option(block: &mut Vec<u8>, code: u16, value: &[u8]) {
    let value = value.get(..MAX_OPTION).unwrap_or(value);
    block.extend_from_slice(&code.to_le_bytes());
    block.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
    block.extend_from_slice(value);
    block.resize(block.len() + (4 - value.len() % 4) % 4, 0);
}

/// `text` cut to fit one option, at a character boundary.
fn option_text(text: &str) -> &str {
    let mut end = text.len().min(MAX_OPTION);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Writes one block: type, total length, body, total length.
fn ng_block(out: &mut dyn Write, block_type: u32, body: &[u8]) -> io::Result<()> {
    let total = u32::try_from(12 + body.len()).unwrap_or(u32::MAX);
    out.write_all(&block_type.to_le_bytes())?;
    out.write_all(&total.to_le_bytes())?;
    out.write_all(body)?;
    out.write_all(&total.to_le_bytes())
}

/// A pcapng stream: one section (with comments), one interface (the capture's
/// link type, nanosecond timestamps), then enhanced packet blocks.
#[derive(Debug)]
pub struct PcapngWriter<W: Write> {
    out: W,
    packets: u64,
}

impl<W: Write> PcapngWriter<W> {
    /// Writes the section header (with `comments`, each an `opt_comment`, and
    /// hbscope as the writing application) and the interface block.
    ///
    /// # Errors
    /// A write error.
    pub fn new(mut out: W, link: LinkType, snaplen: u32, comments: &[String]) -> io::Result<Self> {
        let mut shb = Vec::with_capacity(64);
        shb.extend_from_slice(&NG_BYTE_ORDER.to_le_bytes());
        shb.extend_from_slice(&1u16.to_le_bytes());
        shb.extend_from_slice(&0u16.to_le_bytes());
        shb.extend_from_slice(&(-1i64).to_le_bytes()); // section length unknown
        for c in comments {
            ng_option(&mut shb, OPT_COMMENT, option_text(c).as_bytes());
        }
        let appl = format!("hbscope {}", env!("CARGO_PKG_VERSION"));
        ng_option(&mut shb, SHB_USERAPPL, appl.as_bytes());
        ng_option(&mut shb, OPT_END, &[]);
        ng_block(&mut out, NG_SHB, &shb)?;
        let mut idb = Vec::with_capacity(32);
        let linktype = u16::try_from(linktype_of(link)).unwrap_or(0);
        idb.extend_from_slice(&linktype.to_le_bytes());
        idb.extend_from_slice(&0u16.to_le_bytes());
        idb.extend_from_slice(&snaplen.to_le_bytes());
        ng_option(&mut idb, IF_TSRESOL, &[9]); // 10^-9 s
        ng_option(&mut idb, OPT_END, &[]);
        ng_block(&mut out, NG_IDB, &idb)?;
        Ok(PcapngWriter { out, packets: 0 })
    }

    /// Appends one packet.
    ///
    /// # Errors
    /// A write error.
    pub fn write(&mut self, rec: &PacketRecord<'_>) -> io::Result<()> {
        // Timestamps before 1970 do not occur in a live capture; 0 stands in.
        let ns = u64::try_from(rec.ts.as_nanos()).unwrap_or(0);
        let caplen = u32::try_from(rec.data.len()).unwrap_or(u32::MAX);
        let mut body = Vec::with_capacity(20 + rec.data.len() + 4);
        body.extend_from_slice(&0u32.to_le_bytes()); // interface 0
        body.extend_from_slice(&u32::try_from(ns >> 32).unwrap_or(0).to_le_bytes());
        body.extend_from_slice(&u32::try_from(ns & 0xffff_ffff).unwrap_or(0).to_le_bytes());
        body.extend_from_slice(&caplen.to_le_bytes());
        body.extend_from_slice(&rec.orig_len.max(caplen).to_le_bytes());
        body.extend_from_slice(rec.data);
        body.resize(body.len() + (4 - rec.data.len() % 4) % 4, 0);
        ng_block(&mut self.out, NG_EPB, &body)?;
        self.packets += 1;
        Ok(())
    }

    /// Packets written so far.
    #[must_use]
    pub fn packets(&self) -> u64 {
        self.packets
    }

    /// Flushes and hands back the writer.
    ///
    /// # Errors
    /// The flush's error.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// Writes `packets` as a nanosecond pcap into `out` (what `--write` writes,
/// in one go): the live screen's `w`. Returns how many were written.
///
/// # Errors
/// A write error.
pub fn write_pcap<'a>(
    out: &mut dyn Write,
    link: LinkType,
    snaplen: u32,
    packets: impl Iterator<Item = PacketRecord<'a>>,
) -> io::Result<usize> {
    out.write_all(&pcap_header(link, snaplen))?;
    let mut n = 0;
    for rec in packets {
        out.write_all(&record_head(&rec))?;
        out.write_all(rec.data)?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// The 24-byte header of a nanosecond pcap file.
fn pcap_header(link: LinkType, snaplen: u32) -> Vec<u8> {
    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&MAGIC_NANOS.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes()); // thiszone
    header.extend_from_slice(&0u32.to_le_bytes()); // sigfigs
    header.extend_from_slice(&snaplen.to_le_bytes());
    header.extend_from_slice(&linktype_of(link).to_le_bytes());
    header
}

/// The 16-byte record header of one packet in a nanosecond pcap file.
fn record_head(rec: &PacketRecord<'_>) -> [u8; 16] {
    let ns = rec.ts.as_nanos();
    let secs = u32::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0);
    let nanos = u32::try_from(ns.rem_euclid(1_000_000_000)).unwrap_or(0);
    let caplen = u32::try_from(rec.data.len()).unwrap_or(u32::MAX);
    let mut head = [0u8; 16];
    head[0..4].copy_from_slice(&secs.to_le_bytes());
    head[4..8].copy_from_slice(&nanos.to_le_bytes());
    head[8..12].copy_from_slice(&caplen.to_le_bytes());
    head[12..16].copy_from_slice(&rec.orig_len.max(caplen).to_le_bytes());
    head
}

/// An open `--write` file.
#[derive(Debug)]
pub struct Savefile {
    out: BufWriter<File>,
    path: PathBuf,
    /// The first write error, reported by the next [`Savefile::flush`];
    /// nothing more is written after it.
    failed: Option<io::Error>,
}

impl Savefile {
    /// Creates `path` (mode 0600, never through a symbolic link) and writes
    /// the pcap header. An existing file is refused unless `force`, and then
    /// only a regular file with a single link is replaced.
    ///
    /// # Errors
    /// A message for `LiveCaptureError::Write`: the path is a symbolic link,
    /// exists (without `force`), is not a regular file, or cannot be created.
    pub fn create(path: &Path, link: LinkType, snaplen: u32, force: bool) -> Result<Self, String> {
        // The open below refuses a link by itself (O_EXCL, O_NOFOLLOW); this
        // only gives the clearer message before "exists" would.
        if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(symlink_refusal(path));
        }
        let nofollow = i32::try_from(rustix::fs::OFlags::NOFOLLOW.bits()).unwrap_or(0);
        let mut opts = OpenOptions::new();
        opts.write(true).mode(0o600).custom_flags(nofollow);
        if force {
            opts.create(true);
        } else {
            opts.create_new(true);
        }
        let file = opts.open(path).map_err(|e| refusal(path, &e))?;
        if force {
            let meta = file.metadata().map_err(|e| e.to_string())?;
            if !meta.is_file() {
                return Err("not a regular file; give the path of a file to write".to_owned());
            }
            if meta.nlink() > 1 {
                return Err(format!(
                    "the file has {} hard links, so replacing it would change another name's \
                     contents; remove it or give another path",
                    meta.nlink()
                ));
            }
            file.set_len(0).map_err(|e| e.to_string())?;
            // An existing file keeps its mode on open: force it.
            file.set_permissions(Permissions::from_mode(0o600))
                .map_err(|e| e.to_string())?;
        }
        let mut out = BufWriter::with_capacity(64 * 1024, file);
        out.write_all(&pcap_header(link, snaplen))
            .and_then(|()| out.flush())
            .map_err(|e| e.to_string())?;
        Ok(Savefile {
            out,
            path: path.to_path_buf(),
            failed: None,
        })
    }

    /// The path it was created at.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one packet (buffered). A write error is kept for the next
    /// [`Savefile::flush`]; the packets after it are not written.
    pub fn write(&mut self, rec: &PacketRecord<'_>) {
        if self.failed.is_some() {
            return;
        }
        let head = record_head(rec);
        if let Err(e) = self
            .out
            .write_all(&head)
            .and_then(|()| self.out.write_all(rec.data))
        {
            self.failed = Some(e);
        }
    }

    /// Writes what is buffered to the file.
    ///
    /// # Errors
    /// The first write error met since the file was created (reported once),
    /// or the flush's own.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(e) = self.failed.take() {
            // Keep refusing further writes: the file now ends at a record boundary
            // at best, and a later packet must not follow a torn one.
            self.failed = Some(io::Error::new(e.kind(), "an earlier write failed"));
            return Err(e);
        }
        self.out.flush()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::capture::FileSource;
    use crate::model::Timestamp;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("hbscope-savefile-{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn rec(data: &[u8], ns: i64) -> PacketRecord<'_> {
        PacketRecord {
            ts: Timestamp(ns),
            caplen: u32::try_from(data.len()).unwrap(),
            orig_len: u32::try_from(data.len()).unwrap(),
            data,
        }
    }

    #[test]
    fn writes_a_nanosecond_pcap_libpcap_reads_back_with_mode_0600() {
        let d = dir("roundtrip");
        let p = d.join("out.pcap");
        let mut s = Savefile::create(&p, LinkType::ETHERNET, 262_144, false).unwrap();
        let frame = [0u8; 60];
        s.write(&rec(&frame, 1_700_000_000_123_456_789));
        s.write(&rec(&frame[..54], 1_700_000_001_000_000_001));
        s.flush().unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let mut f = FileSource::open(&p).unwrap();
        assert_eq!(f.link_type(), LinkType::ETHERNET);
        let a = f.next_packet().unwrap().unwrap();
        assert_eq!(a.ts, Timestamp(1_700_000_000_123_456_789));
        assert_eq!(a.data.len(), 60);
        let b = f.next_packet().unwrap().unwrap();
        assert_eq!(b.ts, Timestamp(1_700_000_001_000_000_001));
        assert_eq!(b.caplen, 54);
        assert!(f.next_packet().unwrap().is_none());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn a_symlink_is_refused_even_with_force_and_its_target_untouched() {
        let d = dir("symlink");
        let target = d.join("victim");
        std::fs::write(&target, b"precious").unwrap();
        std::fs::set_permissions(&target, Permissions::from_mode(0o644)).unwrap();
        let link = d.join("out.pcap");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for force in [false, true] {
            let e = Savefile::create(&link, LinkType::ETHERNET, 65535, force).unwrap_err();
            assert!(e.contains("symbolic link"), "{e}");
        }
        // A dangling link too: it would create the file wherever it points.
        let dangling = d.join("dangling.pcap");
        std::os::unix::fs::symlink(d.join("nowhere"), &dangling).unwrap();
        let e = Savefile::create(&dangling, LinkType::ETHERNET, 65535, false).unwrap_err();
        assert!(e.contains("symbolic link"), "{e}");
        assert!(!d.join("nowhere").exists());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
        let mode = std::fs::metadata(&target).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o644);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn an_existing_file_needs_force_and_is_then_replaced_0600() {
        let d = dir("exists");
        let p = d.join("out.pcap");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, Permissions::from_mode(0o644)).unwrap();
        let e = Savefile::create(&p, LinkType::ETHERNET, 65535, false).unwrap_err();
        assert!(e.contains("already exists") && e.contains("--force"), "{e}");
        assert_eq!(std::fs::read(&p).unwrap(), b"old");
        let mut s = Savefile::create(&p, LinkType::ETHERNET, 65535, true).unwrap();
        s.flush().unwrap();
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 24, "header only");
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // A second name for the same file is refused even with --force.
        let other = d.join("other");
        std::fs::hard_link(&p, &other).unwrap();
        let e = Savefile::create(&p, LinkType::ETHERNET, 65535, true).unwrap_err();
        assert!(e.contains("hard links"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn pcapng_with_comments_reads_back_through_libpcap() {
        let d = dir("pcapng");
        let p = d.join("gap.pcapng");
        let file = create_private(&p).unwrap();
        let comments = vec!["process: pid 42 stopped".to_owned(), "é".repeat(40_000)];
        let mut w = PcapngWriter::new(file, LinkType::ETHERNET, 262_144, &comments).unwrap();
        let frame = [7u8; 61];
        w.write(&rec(&frame, 1_700_000_000_123_456_789)).unwrap();
        w.write(&rec(&frame[..54], 1_700_000_001_000_000_001))
            .unwrap();
        assert_eq!(w.packets(), 2);
        w.finish().unwrap();
        let mode = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let bytes = std::fs::read(&p).unwrap();
        assert!(bytes.windows(23).any(|w| w == b"process: pid 42 stopped"));
        let mut f = FileSource::open(&p).unwrap();
        assert_eq!(f.link_type(), LinkType::ETHERNET);
        let a = f.next_packet().unwrap().unwrap();
        assert_eq!(a.ts, Timestamp(1_700_000_000_123_456_789));
        assert_eq!(a.data, &frame[..]);
        let b = f.next_packet().unwrap().unwrap();
        assert_eq!(b.ts, Timestamp(1_700_000_001_000_000_001));
        assert_eq!(b.caplen, 54);
        assert!(f.next_packet().unwrap().is_none());
        // Never over an existing file.
        let e = create_private(&p).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn option_text_cuts_at_a_character_boundary() {
        let long = "é".repeat(40_000);
        let cut = option_text(&long);
        assert!(cut.len() <= MAX_OPTION && cut.len().is_multiple_of(2));
        assert_eq!(option_text("abc"), "abc");
    }

    #[test]
    fn raw_ip_is_stored_as_linktype_raw() {
        assert_eq!(linktype_of(LinkType::RAW), 101);
        assert_eq!(linktype_of(LinkType::LINUX_SLL2), 276);
        assert_eq!(linktype_of(LinkType::ETHERNET), 1);
    }
}
