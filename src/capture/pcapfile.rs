//! Classic pcap files read without libpcap, for speed.
//!
//! libpcap reads a savefile with two `fread`s per record into its own buffer
//! (~480 instructions per packet, 13-15% of a whole replay). This reader
//! fills a 1 MiB buffer with large reads and hands out slices of it.
//!
//! It takes only files it reads exactly as libpcap does: the pcap 2.4 format,
//! microsecond or nanosecond magic in either byte order, and a link type in
//! [`SAME_AS_DLT`], whose LINKTYPE value libpcap reports unchanged as the
//! DLT. Anything else (pcapng, older versions, the "modified" format, FCS
//! bits in the link type) stays with libpcap. It applies libpcap 1.10's
//! record checks with libpcap's messages (a capture length over 262,144 is an
//! error; one over the file's snapshot length is cut to it; a file ending
//! inside a record is truncated), so the rest of hbscope sees the same
//! records and the same errors; a unit test compares both readers on every
//! shipped capture.

use std::io::{self, Read};

use super::{CaptureError, LinkType};
use crate::model::Timestamp;

/// Link types whose LINKTYPE number libpcap reports as the same DLT number.
const SAME_AS_DLT: [u32; 7] = [0, 1, 108, 113, 228, 229, 276];
/// libpcap's largest capture length for these link types (`MAXIMUM_SNAPLEN`).
const MAX_SNAPLEN: u32 = 262_144;
/// Buffer size: several maximum-size records.
const BUF_BYTES: usize = 1 << 20;
const RECORD_HEADER: usize = 16;

/// One record: timestamp, captured length (after the snapshot-length cut),
/// original length, and where its bytes are in the buffer.
pub(super) struct Record {
    pub ts: Timestamp,
    pub caplen: u32,
    pub orig_len: u32,
    /// Bytes the record takes in the file (header + stored bytes).
    pub stored: u64,
    start: usize,
}

/// A classic pcap file being read.
pub(super) struct PcapFile {
    file: Box<dyn Read + Send>,
    buf: Vec<u8>,
    /// Unread bytes are `buf[start..end]`.
    start: usize,
    end: usize,
    eof: bool,
    swapped: bool,
    nanos: bool,
    snaplen: u32,
    link: LinkType,
}

impl PcapFile {
    /// Reads the file header; `None` when the file is not one this reader
    /// takes (libpcap then reads it).
    pub fn open(mut file: Box<dyn Read + Send>) -> io::Result<Option<Self>> {
        let mut head = [0u8; 24];
        if file.read_exact(&mut head).is_err() {
            return Ok(None);
        }
        let magic = [head[0], head[1], head[2], head[3]];
        let (swapped, nanos) = match magic {
            [0xd4, 0xc3, 0xb2, 0xa1] => (false, false),
            [0x4d, 0x3c, 0xb2, 0xa1] => (false, true),
            [0xa1, 0xb2, 0xc3, 0xd4] => (true, false),
            [0xa1, 0xb2, 0x3c, 0x4d] => (true, true),
            _ => return Ok(None),
        };
        let u16_at = |i: usize| {
            let b = [head[i], head[i + 1]];
            if swapped {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let u32_at = |i: usize| {
            let b = [head[i], head[i + 1], head[i + 2], head[i + 3]];
            if swapped {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let (major, minor) = (u16_at(4), u16_at(6));
        let snaplen = u32_at(16);
        let linktype = u32_at(20);
        if (major, minor) != (2, 4) || !SAME_AS_DLT.contains(&linktype) {
            return Ok(None);
        }
        // As libpcap: a snapshot length of 0 or over the maximum means the maximum.
        let snaplen = if snaplen == 0 || snaplen > MAX_SNAPLEN {
            MAX_SNAPLEN
        } else {
            snaplen
        };
        let Ok(link) = i32::try_from(linktype) else {
            return Ok(None);
        };
        Ok(Some(PcapFile {
            file,
            buf: vec![0; BUF_BYTES],
            start: 0,
            end: 0,
            eof: false,
            swapped,
            nanos,
            snaplen,
            link: LinkType(link),
        }))
    }

    /// The file's link type.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    /// Makes at least `n` unread bytes available unless the file ends first;
    /// returns how many are available.
    #[inline]
    fn fill(&mut self, n: usize) -> io::Result<usize> {
        // Inlined: twice per record, and the bytes are almost always there.
        if self.end - self.start >= n || self.eof {
            return Ok(self.end - self.start);
        }
        self.refill(n)
    }

    /// [`Self::fill`] when the buffer has too few bytes: moves them to its
    /// start and reads on.
    #[cold]
    #[inline(never)]
    fn refill(&mut self, n: usize) -> io::Result<usize> {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
        while self.end < n && !self.eof {
            let Some(room) = self.buf.get_mut(self.end..) else {
                break;
            };
            match self.file.read(room) {
                Ok(0) => self.eof = true,
                Ok(got) => self.end += got,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.end - self.start)
    }

    /// The next record; `Ok(None)` at the clean end of the file.
    #[inline(always)]
    pub fn next(&mut self) -> Result<Option<Record>, CaptureError> {
        let read = |e: io::Error| CaptureError::Read {
            detail: e.to_string(),
        };
        let have = self.fill(RECORD_HEADER).map_err(read)?;
        if have == 0 {
            return Ok(None);
        }
        if have < RECORD_HEADER {
            return Err(CaptureError::Truncated {
                detail: format!(
                    "libpcap: truncated dump file; tried to read {RECORD_HEADER} header bytes, only got {have}"
                ),
            });
        }
        let h = self
            .buf
            .get(self.start..self.start + RECORD_HEADER)
            .unwrap_or(&[]);
        let word = |i: usize| {
            let b = [
                h.get(i).copied().unwrap_or(0),
                h.get(i + 1).copied().unwrap_or(0),
                h.get(i + 2).copied().unwrap_or(0),
                h.get(i + 3).copied().unwrap_or(0),
            ];
            if self.swapped {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        // pcap's timeval fields are signed 32-bit; the casts reinterpret them.
        let sec = i64::from(word(0) as i32);
        let frac = i64::from(word(4) as i32);
        let (caplen, orig_len) = (word(8), word(12));
        if caplen > MAX_SNAPLEN {
            return Err(CaptureError::Read {
                detail: format!(
                    "libpcap: invalid packet capture length {caplen}, bigger than snaplen of {}",
                    self.snaplen
                ),
            });
        }
        let stored = caplen as usize;
        let have = self.fill(RECORD_HEADER + stored).map_err(read)?;
        if have < RECORD_HEADER + stored {
            return Err(CaptureError::Truncated {
                detail: format!(
                    "libpcap: truncated dump file; tried to read {caplen} captured bytes, only got {}",
                    have - RECORD_HEADER
                ),
            });
        }
        let start = self.start + RECORD_HEADER;
        self.start = start + stored;
        Ok(Some(Record {
            ts: Timestamp::from_parts(sec, if self.nanos { frac } else { frac * 1000 }),
            // libpcap reads a record longer than the snapshot length and cuts it.
            caplen: caplen.min(self.snaplen),
            orig_len,
            stored: (RECORD_HEADER + stored) as u64,
            start,
        }))
    }

    /// The records that follow, up to `max`, read without moving the
    /// buffer: every one stays readable with [`PcapFile::data`] until the
    /// next call of this or [`PcapFile::next`]. Empty at the clean end of
    /// the file. An error comes only when no record was read before it (the
    /// next call meets it again).
    pub fn next_batch(&mut self, max: usize, out: &mut Vec<Record>) -> Result<(), CaptureError> {
        out.clear();
        // The first record may refill (and move) the buffer; the rest only
        // take what is already in it.
        match self.next()? {
            Some(r) => out.push(r),
            None => return Ok(()),
        }
        while out.len() < max {
            let unread = self.buf.get(self.start..self.end).unwrap_or(&[]);
            let Some(h) = unread.get(..RECORD_HEADER) else {
                break;
            };
            let word = |i: usize| {
                let b = [h[i], h[i + 1], h[i + 2], h[i + 3]];
                if self.swapped {
                    u32::from_be_bytes(b)
                } else {
                    u32::from_le_bytes(b)
                }
            };
            let caplen = word(8) as usize;
            if unread.len() < RECORD_HEADER + caplen || caplen > MAX_SNAPLEN as usize {
                // Not whole in the buffer, or an error: the next call's first
                // record reads it (and reports the error) as `next` does.
                break;
            }
            match self.next()? {
                Some(r) => out.push(r),
                None => break,
            }
        }
        Ok(())
    }

    /// The captured bytes of `rec`, the record [`PcapFile::next`] just returned.
    pub fn data(&self, rec: &Record) -> &[u8] {
        self.buf
            .get(rec.start..rec.start + rec.caplen as usize)
            .unwrap_or(&[])
    }
}
