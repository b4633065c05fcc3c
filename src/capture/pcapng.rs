//! A streaming pcapng reader, for compressed captures (libpcap reads only
//! files it can open by path); the blocks `live --write FILE.pcapng` writes
//! ([`section_header`], [`interface_description`], [`packet_header`]), and
//! hbscope's own text blocks ([`custom_text_block`], read back by
//! [`custom_texts`]).
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

// ---- writing, and hbscope's own text blocks ----------------------------------------------

/// The Private Enterprise Number hbscope's custom blocks carry: 32473, the
/// number IANA reserves for examples and documentation (RFC 5612), as
/// hbscope has none of its own. A block is hbscope's only with this number
/// *and* a section written by hbscope (`shb_userappl` "hbscope ...").
pub const HBSCOPE_PEN: u32 = 32473;
/// Custom block type, copyable (editors keep it when they rewrite a file).
pub const CUSTOM_BLOCK: u32 = 0x0000_0BAD;
/// Most hbscope text blocks read back from one file.
pub const MAX_TEXTS: usize = 10_000;

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

/// A block of `kind` around `body` (padded to 32 bits), little-endian.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(body.len() + 16);
    b.extend_from_slice(&kind.to_le_bytes());
    b.extend_from_slice(&[0; 4]);
    b.extend_from_slice(body);
    pad4(&mut b);
    let total = u32::try_from(b.len() + 4).unwrap_or(u32::MAX);
    b[4..8].copy_from_slice(&total.to_le_bytes());
    b.extend_from_slice(&total.to_le_bytes());
    b
}

fn option(out: &mut Vec<u8>, code: u16, value: &[u8]) {
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&u16::try_from(value.len()).unwrap_or(0).to_le_bytes());
    out.extend_from_slice(value);
    pad4(out);
}

/// Longest option value: option lengths are 16 bits, values padded to 32.
const MAX_OPTION: usize = 65_532;

/// `text` cut to fit one option, at a character boundary.
fn option_text(text: &str) -> &str {
    let mut end = text.len().min(MAX_OPTION);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A section header block (little-endian, unknown section length) whose
/// `shb_userappl` is `app`, with each of `comments` as an `opt_comment`
/// (cut to 65,532 bytes at a character boundary).
#[must_use]
pub fn section_header(app: &str, comments: &[String]) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&BYTE_ORDER_MAGIC.to_le_bytes());
    body.extend_from_slice(&1u16.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&(-1i64).to_le_bytes());
    for c in comments {
        option(&mut body, 1, option_text(c).as_bytes());
    }
    option(&mut body, 4, app.as_bytes());
    option(&mut body, 0, &[]);
    block(SHB, &body)
}

/// An interface description block: `linktype` (a LINKTYPE_ value),
/// `snaplen`, nanosecond timestamps (`if_tsresol` 9).
#[must_use]
pub fn interface_description(linktype: u16, snaplen: u32) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&linktype.to_le_bytes());
    body.extend_from_slice(&0u16.to_le_bytes());
    body.extend_from_slice(&snaplen.to_le_bytes());
    option(&mut body, 9, &[9]);
    option(&mut body, 0, &[]);
    block(IDB, &body)
}

/// The header of an enhanced packet block on interface 0 (nanosecond
/// timestamps); the caller writes `data`, then [`packet_trailer`].
#[must_use]
pub fn packet_header(ts: Timestamp, data_len: usize, orig_len: u32) -> [u8; 28] {
    let caplen = u32::try_from(data_len).unwrap_or(u32::MAX);
    let total = u32::try_from(32 + data_len.div_ceil(4) * 4).unwrap_or(u32::MAX);
    let ns = u64::try_from(ts.as_nanos()).unwrap_or(0);
    let mut h = [0u8; 28];
    h[0..4].copy_from_slice(&EPB.to_le_bytes());
    h[4..8].copy_from_slice(&total.to_le_bytes());
    // h[8..12]: interface 0
    h[12..16].copy_from_slice(&u32::try_from(ns >> 32).unwrap_or(0).to_le_bytes());
    h[16..20].copy_from_slice(&u32::try_from(ns & 0xffff_ffff).unwrap_or(0).to_le_bytes());
    h[20..24].copy_from_slice(&caplen.to_le_bytes());
    h[24..28].copy_from_slice(&orig_len.max(caplen).to_le_bytes());
    h
}

/// What follows an enhanced packet block's `data_len` bytes: padding and the
/// trailing length.
#[must_use]
pub fn packet_trailer(data_len: usize) -> Vec<u8> {
    let pad = data_len.div_ceil(4) * 4 - data_len;
    let total = u32::try_from(32 + data_len + pad).unwrap_or(u32::MAX);
    let mut t = vec![0u8; pad];
    t.extend_from_slice(&total.to_le_bytes());
    t
}

/// A custom block carrying `text` (UTF-8): [`HBSCOPE_PEN`], then the text's
/// length (u32) and the text. `hbscope live --write FILE.pcapng` stores each
/// process sample and diagnosis this way (JSON text); a flight recorder can
/// store its own notes the same way. Readers that do not know the block skip
/// it; Wireshark shows it as a custom block.
#[must_use]
pub fn custom_text_block(text: &str) -> Vec<u8> {
    let mut body = Vec::with_capacity(text.len() + 8);
    body.extend_from_slice(&HBSCOPE_PEN.to_le_bytes());
    body.extend_from_slice(&u32::try_from(text.len()).unwrap_or(0).to_le_bytes());
    body.extend_from_slice(text.as_bytes());
    block(CUSTOM_BLOCK, &body)
}

/// The texts of hbscope's custom blocks in the pcapng file at `path`, in
/// file order (at most [`MAX_TEXTS`]). Empty when the file is not pcapng,
/// was not written by hbscope (its first section's `shb_userappl` does not
/// start with "hbscope"), or has none; reading stops quietly at a damaged
/// block, keeping the texts before it.
#[must_use]
pub fn custom_texts(path: &std::path::Path) -> Vec<String> {
    use std::io::BufReader;
    let Ok(f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let mut r = BufReader::with_capacity(256 * 1024, f);
    let mut out = Vec::new();
    let mut head = [0u8; 8];
    let mut first = true;
    let mut swapped = false;
    loop {
        if fill(&mut r, &mut head).ok() != Some(8) {
            break;
        }
        let raw_kind = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
        if first && raw_kind != SHB {
            break;
        }
        let mut body_head = [0u8; 4];
        if raw_kind == SHB {
            if fill(&mut r, &mut body_head).ok() != Some(4) {
                break;
            }
            swapped = u32::from_le_bytes(body_head) != BYTE_ORDER_MAGIC;
        }
        let u32_of = |b: [u8; 4]| {
            if swapped {
                u32::from_be_bytes(b)
            } else {
                u32::from_le_bytes(b)
            }
        };
        let kind = u32_of([head[0], head[1], head[2], head[3]]);
        let len = u32_of([head[4], head[5], head[6], head[7]]);
        if len < 12 || len % 4 != 0 || len > MAX_BLOCK {
            break;
        }
        let rest = (len - 8) as usize;
        if kind == SHB || kind == CUSTOM_BLOCK || kind == CUSTOM_BLOCK | 0x4000_0000 {
            let mut body = vec![0u8; rest];
            let have = if kind == SHB {
                body[..4].copy_from_slice(&body_head);
                fill(&mut r, &mut body[4..]).ok().map(|n| n + 4)
            } else {
                fill(&mut r, &mut body).ok()
            };
            if have != Some(rest) {
                break;
            }
            let word = |at: usize| {
                body.get(at..at + 4)
                    .and_then(|s| s.try_into().ok())
                    .map(u32_of)
            };
            if kind == SHB {
                if first {
                    // Options start after magic, version and section length (16 bytes).
                    let opts = body.get(16..rest.saturating_sub(4)).unwrap_or(&[]);
                    let app = shb_userappl(opts, swapped);
                    if !app.is_some_and(|a| a.starts_with("hbscope")) {
                        break;
                    }
                }
                first = false;
                continue;
            }
            if word(0) == Some(HBSCOPE_PEN) {
                if let Some(n) = word(4).map(|n| n as usize) {
                    if let Some(t) = body.get(8..8 + n) {
                        if let Ok(s) = std::str::from_utf8(t) {
                            out.push(s.to_owned());
                            if out.len() >= MAX_TEXTS {
                                break;
                            }
                        }
                    }
                }
            }
        } else if r.seek_relative(i64::from(len - 8)).is_err() {
            break;
        }
    }
    out
}

/// The `shb_userappl` option (code 4) among a section header's options.
fn shb_userappl(mut opts: &[u8], swapped: bool) -> Option<String> {
    while opts.len() >= 4 {
        let u16_of = |b: [u8; 2]| {
            if swapped {
                u16::from_be_bytes(b)
            } else {
                u16::from_le_bytes(b)
            }
        };
        let code = u16_of([opts[0], opts[1]]);
        let len = usize::from(u16_of([opts[2], opts[3]]));
        let value = opts.get(4..4 + len)?;
        if code == 0 {
            return None;
        }
        if code == 4 {
            return Some(String::from_utf8_lossy(value).into_owned());
        }
        opts = opts.get(4 + len.div_ceil(4) * 4..)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_text_cuts_at_a_character_boundary() {
        let long = "é".repeat(40_000);
        let cut = option_text(&long);
        assert!(cut.len() <= MAX_OPTION && cut.len().is_multiple_of(2));
        assert_eq!(option_text("abc"), "abc");
    }
}
