//! A streaming pcapng reader, for compressed captures (libpcap reads only
//! files it can open by path).
//!
//! It reads what tcpdump, dumpcap and editcap write: section header blocks
//! (either byte order, several sections), interface description blocks
//! (link type, snapshot length, `if_tsresol`), enhanced and simple packet
//! blocks; other blocks are skipped. As libpcap 1.10 does, every interface
//! must have the first one's link type ([`CaptureError::MixedLinkTypes`]
//! otherwise), and a stream that ends inside a block is
//! [`CaptureError::Truncated`].

use std::io::{self, Read};

use super::{CaptureError, LinkType};
use crate::model::Timestamp;

const SHB: u32 = 0x0a0d_0d0a;
const IDB: u32 = 1;
const SPB: u32 = 3;
const EPB: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Largest block accepted (as libpcap's 16 MiB limit).
const MAX_BLOCK: u32 = 16 << 20;

struct Interface {
    snaplen: u32,
    /// Timestamp units per second.
    units: u64,
}

/// A pcapng stream being read.
pub(super) struct PcapngStream {
    r: Box<dyn Read + Send>,
    swapped: bool,
    ifaces: Vec<Interface>,
    link: LinkType,
    /// The first interface was read (its link type is `link`).
    link_set: bool,
    body: Vec<u8>,
    /// The current packet's bytes are `body[data.0..data.1]`.
    data: (usize, usize),
}

/// One packet's header; its bytes are [`PcapngStream::data`].
pub(super) struct NgRecord {
    pub ts: Timestamp,
    pub caplen: u32,
    pub orig_len: u32,
    /// Bytes the block took in the stream.
    pub stored: u64,
}

/// The DLT value libpcap reports for a LINKTYPE value in a file.
fn dlt(linktype: u16) -> LinkType {
    match linktype {
        101 => LinkType::RAW,
        n => LinkType(i32::from(n)),
    }
}

fn truncated(what: &str) -> CaptureError {
    CaptureError::Truncated {
        detail: format!("pcapng: the stream ends inside {what}"),
    }
}

fn read_err(e: &io::Error) -> CaptureError {
    CaptureError::Read {
        detail: e.to_string(),
    }
}

/// Reads until `buf` is full or the stream ends; returns how many bytes.
fn fill(r: &mut dyn Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        let Some(rest) = buf.get_mut(got..) else {
            break;
        };
        match r.read(rest) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

impl PcapngStream {
    /// Reads the section header and the blocks up to the first interface
    /// description.
    ///
    /// # Errors
    /// [`CaptureError::NotACapture`]-style details as [`CaptureError::Read`]
    /// when the stream is not pcapng; truncation as above.
    pub fn open(r: Box<dyn Read + Send>) -> Result<Self, CaptureError> {
        let mut s = PcapngStream {
            r,
            swapped: false,
            ifaces: Vec::new(),
            link: LinkType::ETHERNET,
            link_set: false,
            body: Vec::new(),
            data: (0, 0),
        };
        loop {
            match s.block()? {
                None => {
                    return Err(CaptureError::Read {
                        detail: "pcapng: no interface description block".into(),
                    })
                }
                Some((_, _)) if !s.ifaces.is_empty() => break,
                Some(_) => {}
            }
        }
        Ok(s)
    }

    /// The first interface's link type.
    pub fn link_type(&self) -> LinkType {
        self.link
    }

    fn u32_at(&self, b: &[u8], i: usize) -> u32 {
        let w = [
            b.get(i).copied().unwrap_or(0),
            b.get(i + 1).copied().unwrap_or(0),
            b.get(i + 2).copied().unwrap_or(0),
            b.get(i + 3).copied().unwrap_or(0),
        ];
        if self.swapped {
            u32::from_be_bytes(w)
        } else {
            u32::from_le_bytes(w)
        }
    }

    fn u16_at(&self, b: &[u8], i: usize) -> u16 {
        let w = [
            b.get(i).copied().unwrap_or(0),
            b.get(i + 1).copied().unwrap_or(0),
        ];
        if self.swapped {
            u16::from_be_bytes(w)
        } else {
            u16::from_le_bytes(w)
        }
    }

    /// Reads one block into `body`, handles section and interface blocks;
    /// returns its type and total length, `None` at the clean end.
    fn block(&mut self) -> Result<Option<(u32, u32)>, CaptureError> {
        let mut head = [0u8; 8];
        let got = fill(&mut self.r, &mut head).map_err(|e| read_err(&e))?;
        if got == 0 {
            return Ok(None);
        }
        if got < 8 {
            return Err(truncated("a block header"));
        }
        let raw_type = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if raw_type == SHB {
            // The byte order comes from the section itself.
            let mut bom = [0u8; 4];
            if fill(&mut self.r, &mut bom).map_err(|e| read_err(&e))? < 4 {
                return Err(truncated("a section header block"));
            }
            self.swapped = match u32::from_le_bytes(bom) {
                BYTE_ORDER_MAGIC => false,
                m if m.swap_bytes() == BYTE_ORDER_MAGIC => true,
                _ => {
                    return Err(CaptureError::Read {
                        detail: "pcapng: bad byte-order magic".into(),
                    })
                }
            };
            let len = self.u32_at(&head, 4);
            if !(28..=MAX_BLOCK).contains(&len) || !len.is_multiple_of(4) {
                return Err(CaptureError::Read {
                    detail: format!("pcapng: bad section header length {len}"),
                });
            }
            self.body.resize(len as usize - 12, 0);
            if fill(&mut self.r, &mut self.body).map_err(|e| read_err(&e))? < self.body.len() {
                return Err(truncated("a section header block"));
            }
            self.ifaces.clear();
            return Ok(Some((SHB, len)));
        }
        let kind = self.u32_at(&head, 0);
        let len = self.u32_at(&head, 4);
        if !(12..=MAX_BLOCK).contains(&len) || !len.is_multiple_of(4) {
            return Err(CaptureError::Read {
                detail: format!("pcapng: bad block length {len}"),
            });
        }
        self.body.resize(len as usize - 8, 0);
        if fill(&mut self.r, &mut self.body).map_err(|e| read_err(&e))? < self.body.len() {
            return Err(truncated("a block"));
        }
        if kind == IDB {
            let b = std::mem::take(&mut self.body);
            let link = dlt(self.u16_at(&b, 0));
            let snaplen = self.u32_at(&b, 4);
            let mut units = 1_000_000u64;
            // Options follow the fixed part; the trailing length is not one.
            let mut i = 8;
            while i + 4 <= b.len().saturating_sub(4) {
                let (code, olen) = (self.u16_at(&b, i), usize::from(self.u16_at(&b, i + 2)));
                if code == 0 {
                    break;
                }
                if code == 9 && olen >= 1 {
                    let v = b.get(i + 4).copied().unwrap_or(6);
                    let exp = u32::from(v & 0x7f);
                    units = if v & 0x80 == 0 {
                        10u64.checked_pow(exp).unwrap_or(1_000_000)
                    } else {
                        1u64.checked_shl(exp).unwrap_or(1_000_000)
                    };
                }
                i += 4 + olen.next_multiple_of(4);
            }
            self.body = b;
            if !self.link_set {
                self.link = link;
                self.link_set = true;
            } else if link != self.link {
                return Err(CaptureError::MixedLinkTypes {
                    detail: format!(
                        "pcapng: an interface has link type {}, the first one {}",
                        link.0, self.link.0
                    ),
                });
            }
            self.ifaces.push(Interface {
                snaplen,
                units: units.max(1),
            });
        }
        Ok(Some((kind, len)))
    }

    /// The next packet; `Ok(None)` at the clean end.
    ///
    /// # Errors
    /// As described in the module documentation.
    pub fn next(&mut self) -> Result<Option<NgRecord>, CaptureError> {
        loop {
            let Some((kind, len)) = self.block()? else {
                return Ok(None);
            };
            match kind {
                EPB => {
                    let b = &self.body;
                    let iface = self.u32_at(b, 0) as usize;
                    let (hi, lo) = (self.u32_at(b, 4), self.u32_at(b, 8));
                    let caplen = self.u32_at(b, 12);
                    let orig_len = self.u32_at(b, 16);
                    let Some(ifc) = self.ifaces.get(iface) else {
                        return Err(CaptureError::Read {
                            detail: format!("pcapng: packet on undeclared interface {iface}"),
                        });
                    };
                    let end = 20 + caplen as usize;
                    if end > b.len() {
                        return Err(CaptureError::Read {
                            detail: "pcapng: packet longer than its block".into(),
                        });
                    }
                    let raw = (u64::from(hi) << 32) | u64::from(lo);
                    let units = ifc.units;
                    let secs = raw / units;
                    let frac = u128::from(raw % units) * 1_000_000_000 / u128::from(units);
                    let ts = Timestamp::from_parts(
                        i64::try_from(secs).unwrap_or(i64::MAX),
                        i64::try_from(frac).unwrap_or(0),
                    );
                    self.data = (20, end);
                    return Ok(Some(NgRecord {
                        ts,
                        caplen,
                        orig_len,
                        stored: u64::from(len),
                    }));
                }
                SPB => {
                    let b = &self.body;
                    let orig_len = self.u32_at(b, 0);
                    let snaplen = self.ifaces.first().map_or(u32::MAX, |i| i.snaplen);
                    let snaplen = if snaplen == 0 { u32::MAX } else { snaplen };
                    let room = u32::try_from(b.len().saturating_sub(8)).unwrap_or(0);
                    let caplen = orig_len.min(snaplen).min(room);
                    self.data = (4, 4 + caplen as usize);
                    return Ok(Some(NgRecord {
                        ts: Timestamp(0),
                        caplen,
                        orig_len,
                        stored: u64::from(len),
                    }));
                }
                _ => {}
            }
        }
    }

    /// The bytes of the packet [`PcapngStream::next`] just returned.
    pub fn data(&self) -> &[u8] {
        self.body.get(self.data.0..self.data.1).unwrap_or(&[])
    }
}
