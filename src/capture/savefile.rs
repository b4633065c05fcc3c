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
//! `a1b23c4d`), what libpcap writes for a nanosecond capture, or pcapng
//! (nanosecond `if_tsresol`) when the path ends in `.pcapng`; pcapng can also
//! carry text notes ([`Savefile::annotate`]: the process samples and
//! diagnoses of live mode). The file is valid after every
//! [`Savefile::flush`]. Packets are buffered whole and
//! written whole: when a write fails (a full disk), the file is cut back to
//! the end of the last packet written, so it stays a valid capture of the
//! packets before, and nothing more is written.
//!
//! [`PcapngWriter`] writes pcapng (nanosecond timestamps, comments in the
//! section header) for the flight recorder's per-gap files, into a file
//! made by [`create_private`] (`O_CREAT|O_EXCL`, mode 0600: never an
//! existing file, never through a symbolic link). Both use the block
//! builders of `capture/pcapng.rs`.

use std::fs::{File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::{pcapng, LinkType, PacketRecord};

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

/// Bytes of whole records buffered before they are written.
const BUFFER: usize = 64 * 1024;

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
        let app = format!("hbscope {}", env!("CARGO_PKG_VERSION"));
        out.write_all(&pcapng::section_header(&app, comments))?;
        let linktype = u16::try_from(linktype_of(link)).unwrap_or(0);
        out.write_all(&pcapng::interface_description(linktype, snaplen))?;
        Ok(PcapngWriter { out, packets: 0 })
    }

    /// Appends one packet.
    ///
    /// # Errors
    /// A write error.
    pub fn write(&mut self, rec: &PacketRecord<'_>) -> io::Result<()> {
        self.out
            .write_all(&pcapng::packet_header(rec.ts, rec.data.len(), rec.orig_len))?;
        self.out.write_all(rec.data)?;
        self.out
            .write_all(&pcapng::packet_trailer(rec.data.len()))?;
        self.packets += 1;
        Ok(())
    }

    /// Appends one of hbscope's text notes ([`pcapng::custom_text_block`]),
    /// which `replay` reads back ([`pcapng::custom_texts`]).
    ///
    /// # Errors
    /// A write error.
    pub fn note(&mut self, text: &str) -> io::Result<()> {
        self.out.write_all(&pcapng::custom_text_block(text))
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
    file: File,
    /// Whole records not yet written.
    buf: Vec<u8>,
    /// Records in `buf`.
    buffered: u64,
    /// Bytes of the file written in full: the pcap header and whole records.
    done: u64,
    /// Packets written to the file.
    saved: u64,
    path: PathBuf,
    /// pcapng (the path ends in `.pcapng`), else classic pcap.
    ng: bool,
    /// The first write error, reported by the next [`Savefile::flush`];
    /// nothing more is written after it.
    failed: Option<io::Error>,
    /// Whether writing stopped on an error (reported or not).
    stopped: bool,
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
        let mut file = file;
        let ng = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("pcapng"));
        let header = if ng {
            let mut h =
                pcapng::section_header(&format!("hbscope {}", env!("CARGO_PKG_VERSION")), &[]);
            h.extend(pcapng::interface_description(
                u16::try_from(linktype_of(link)).unwrap_or(0),
                snaplen,
            ));
            h
        } else {
            pcap_header(link, snaplen)
        };
        file.write_all(&header).map_err(|e| e.to_string())?;
        Ok(Savefile {
            file,
            buf: Vec::with_capacity(BUFFER),
            buffered: 0,
            done: header.len() as u64,
            saved: 0,
            path: path.to_path_buf(),
            ng,
            failed: None,
            stopped: false,
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
        if self.stopped {
            return;
        }
        if self.ng {
            self.buf
                .extend(pcapng::packet_header(rec.ts, rec.data.len(), rec.orig_len));
            self.buf.extend_from_slice(rec.data);
            self.buf.extend(pcapng::packet_trailer(rec.data.len()));
        } else {
            self.buf.extend_from_slice(&record_head(rec));
            self.buf.extend_from_slice(rec.data);
        }
        self.buffered += 1;
        if self.buf.len() >= BUFFER {
            self.spill();
        }
    }

    /// Adds a text note to a pcapng file as an hbscope custom block
    /// ([`pcapng::custom_text_block`]), between the packets written before
    /// and after it; `false` for a classic pcap file, which cannot carry one.
    /// A write error is kept for the next [`Savefile::flush`].
    pub fn annotate(&mut self, text: &str) -> bool {
        if !self.ng {
            return false;
        }
        if !self.stopped {
            self.buf.extend(pcapng::custom_text_block(text));
            if self.buf.len() >= BUFFER {
                self.spill();
            }
        }
        true
    }

    /// Writes the buffered records. On an error the file is cut back to the
    /// last whole record and writing stops.
    fn spill(&mut self) {
        if self.buf.is_empty() || self.stopped {
            return;
        }
        match self.file.write_all(&self.buf) {
            Ok(()) => {
                self.done += self.buf.len() as u64;
                self.saved += self.buffered;
            }
            Err(e) => {
                // A torn record would make the file end "cut short"; cut it
                // back so what is there reads as a whole capture.
                let cut = self.file.set_len(self.done);
                let kept = if cut.is_ok() {
                    "the file holds every packet before it"
                } else {
                    "the last packet in the file may be cut short"
                };
                self.failed = Some(io::Error::new(
                    e.kind(),
                    format!(
                        "{e}: saving stopped after {} packets ({} bytes); {kept}, and the capture \
                         and its report go on without it",
                        self.saved, self.done
                    ),
                ));
                self.stopped = true;
            }
        }
        self.buf.clear();
        self.buffered = 0;
        if self.buf.capacity() > 2 * BUFFER {
            // One packet larger than the buffer grew it: give that back.
            self.buf.shrink_to(BUFFER);
        }
    }

    /// Writes what is buffered to the file.
    ///
    /// # Errors
    /// The write error that stopped the saving, reported once (the flushes
    /// after it succeed and write nothing; see [`Savefile::complete`]).
    pub fn flush(&mut self) -> io::Result<()> {
        self.spill();
        match self.failed.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Whether every packet given was written (no write failed).
    #[must_use]
    pub fn complete(&self) -> bool {
        !self.stopped
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
    fn pcapng_with_notes_reads_back_through_libpcap_and_custom_texts() {
        let d = dir("pcapng");
        let p = d.join("out.pcapng");
        let mut s = Savefile::create(&p, LinkType::ETHERNET, 262_144, false).unwrap();
        let frame = [7u8; 61];
        s.write(&rec(&frame, 1_700_000_000_123_456_789));
        assert!(s.annotate("{\"note\": 1}"));
        s.write(&rec(&frame[..54], 1_700_000_001_000_000_001));
        assert!(s.annotate("é two"));
        s.flush().unwrap();
        let mut f = FileSource::open(&p).unwrap();
        assert_eq!(f.link_type(), LinkType::ETHERNET);
        let a = f.next_packet().unwrap().unwrap();
        assert_eq!(a.ts, Timestamp(1_700_000_000_123_456_789));
        assert_eq!(a.data, &frame[..]);
        let b = f.next_packet().unwrap().unwrap();
        assert_eq!((b.ts, b.caplen), (Timestamp(1_700_000_001_000_000_001), 54));
        assert!(f.next_packet().unwrap().is_none());
        assert_eq!(
            pcapng::custom_texts(&p),
            vec!["{\"note\": 1}".to_owned(), "é two".to_owned()]
        );
        // A classic pcap file takes no note, and has none.
        let q = d.join("out.pcap");
        let mut s = Savefile::create(&q, LinkType::ETHERNET, 262_144, false).unwrap();
        assert!(!s.annotate("x"));
        s.flush().unwrap();
        assert!(pcapng::custom_texts(&q).is_empty());
        let _ = std::fs::remove_dir_all(&d);
    }

    #[test]
    fn damaged_pcapng_notes_never_panic() {
        let d = dir("damaged");
        let p = d.join("ok.pcapng");
        let mut s = Savefile::create(&p, LinkType::ETHERNET, 65535, false).unwrap();
        s.write(&rec(&[1u8; 40], 1_000_000_000));
        s.annotate("note one");
        s.annotate("note two");
        s.flush().unwrap();
        let good = std::fs::read(&p).unwrap();
        let q = d.join("bad.pcapng");
        // Every truncation, and every byte set to 0xff in turn.
        for cut in 0..good.len() {
            std::fs::write(&q, &good[..cut]).unwrap();
            let n = pcapng::custom_texts(&q);
            assert!(n.len() <= 2);
        }
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] = 0xff;
            std::fs::write(&q, &bad).unwrap();
            let _ = pcapng::custom_texts(&q);
        }
        assert_eq!(pcapng::custom_texts(&p).len(), 2);
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
    fn raw_ip_is_stored_as_linktype_raw() {
        assert_eq!(linktype_of(LinkType::RAW), 101);
        assert_eq!(linktype_of(LinkType::LINUX_SLL2), 276);
        assert_eq!(linktype_of(LinkType::ETHERNET), 1);
    }
}
