//! TLS record layer for AMQPS (AMQP over TLS), without keys.
//!
//! What hbscope needs from an encrypted connection is mostly in clear: every
//! record carries its content type, version and length, so the byte timeline
//! (silences, gaps, causes) works exactly as for plain AMQP. A heartbeat frame
//! is 8 bytes of plaintext, so with a given version and cipher its record has a
//! fixed length ([`heartbeat_record_len`]); those records are counted as
//! heartbeats, which lets the analysis infer the heartbeat timeout from their
//! period. The ClientHello (SNI, ALPN, offered versions) and ServerHello
//! (version, cipher) are read when visible; nothing is decrypted.
//!
//! Caps: a handshake message is buffered up to [`HANDSHAKE_BUFFER_CAP`] bytes;
//! a record longer than [`MAX_RECORD_LEN`] or with an unknown content type
//! loses sync, after which the reader hunts for a plausible record header.

/// Largest record accepted: 2^14 plaintext + 2048 expansion (TLS 1.2 limit).
pub const MAX_RECORD_LEN: u16 = 16_384 + 2_048;
/// Bytes of handshake messages kept to read the hellos.
pub const HANDSHAKE_BUFFER_CAP: usize = 16 * 1024;
/// Bytes kept while hunting for a record boundary.
const HUNT_CAP: usize = 64 * 1024;

const CT_CCS: u8 = 20;
const CT_ALERT: u8 = 21;
const CT_HANDSHAKE: u8 = 22;
const CT_APPDATA: u8 = 23;
const CT_HEARTBEAT: u8 = 24;

/// Whether `payload` starts like a TLS handshake record (a ClientHello).
#[must_use]
pub fn looks_like_client_hello(payload: &[u8]) -> bool {
    payload.len() >= 6
        && payload[0] == CT_HANDSHAKE
        && payload[1] == 3
        && payload[2] <= 4
        && payload[5] == 1
}

/// Length of the TLS record that carries one 8-byte AMQP heartbeat frame,
/// for a negotiated `version` (0x0303 = TLS 1.2, 0x0304 = TLS 1.3) and
/// `cipher` suite; `None` when the suite is not one whose overhead is known.
#[must_use]
pub fn heartbeat_record_len(version: u16, cipher: u16) -> Option<u16> {
    match version {
        // TLS 1.3: plaintext + 1 content-type byte + 16-byte AEAD tag.
        0x0304 => match cipher {
            0x1301..=0x1304 => Some(8 + 1 + 16),
            _ => None,
        },
        0x0303 => match cipher {
            // AES-GCM: 8-byte explicit nonce + 16-byte tag.
            0x009C..=0x00A7 | 0xC02B..=0xC032 => Some(8 + 8 + 16),
            // ChaCha20-Poly1305: no explicit nonce.
            0xCCA8..=0xCCAE => Some(8 + 16),
            _ => None,
        },
        _ => None,
    }
}

/// TLS record content type of an alert.
pub const CONTENT_ALERT: u8 = 21;
/// TLS record content type of application data (what carries AMQP frames).
pub const CONTENT_APPLICATION_DATA: u8 = 23;

/// Application-data records up to this length are candidates for a heartbeat
/// record (an 8-byte frame plus at most 56 bytes of record overhead).
pub const SMALL_RECORD_MAX: u16 = 64;
/// A learned heartbeat record is at most this long: 8 bytes of frame plus the
/// largest overhead of the AEAD suites seen (explicit nonce 8 + tag 16 = 32).
pub const HEARTBEAT_RECORD_MAX: u16 = 48;
/// Distinct small sizes remembered per direction.
const SMALL_SIZES_KEPT: usize = 8;
/// Records of one size needed before it can be the heartbeat size.
const DOMINANT_MIN_RECORDS: u32 = 4;

/// Learns the record length that carries one heartbeat frame when the
/// cipher does not say it: per direction, the small application-data size
/// that dominates (at least [`DOMINANT_MIN_RECORDS`] records, more than half
/// of the small ones, at most [`HEARTBEAT_RECORD_MAX`] bytes). An idle AMQP
/// connection sends little else.
#[derive(Debug, Clone, Default)]
pub struct HeartbeatSizeGuess {
    /// Per direction: (record length, count), at most [`SMALL_SIZES_KEPT`].
    sizes: [Vec<(u16, u32)>; 2],
}

impl HeartbeatSizeGuess {
    /// Counts an application-data record of `len` bytes in direction `dir`
    /// (0 or 1); the heartbeat record length once one size dominates.
    pub fn learn(&mut self, dir: usize, len: u16) -> Option<u16> {
        if len > SMALL_RECORD_MAX {
            return None;
        }
        let sizes = self.sizes.get_mut(dir)?;
        if let Some(e) = sizes.iter_mut().find(|(l, _)| *l == len) {
            e.1 = e.1.saturating_add(1);
        } else if sizes.len() < SMALL_SIZES_KEPT {
            sizes.push((len, 1));
        }
        let total: u32 = sizes.iter().map(|(_, c)| *c).sum();
        sizes
            .iter()
            .filter(|(l, c)| {
                *c >= DOMINANT_MIN_RECORDS && *l <= HEARTBEAT_RECORD_MAX && c * 2 > total
            })
            .map(|(l, _)| *l)
            .next()
    }
}

/// Human name of a TLS version number.
#[must_use]
pub fn version_name(v: u16) -> String {
    match v {
        0x0301 => "1.0".into(),
        0x0302 => "1.1".into(),
        0x0303 => "1.2".into(),
        0x0304 => "1.3".into(),
        other => format!("0x{other:04x}"),
    }
}

/// What the record reader found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsEvent {
    /// A record header (the whole record may still be arriving).
    Record {
        /// Content type (20 CCS, 21 alert, 22 handshake, 23 application data).
        content_type: u8,
        /// Record length.
        len: u16,
        /// Stream offset of the record header.
        offset: u64,
    },
    /// ClientHello facts.
    ClientHello {
        /// Server name indication.
        sni: Option<String>,
        /// ALPN protocols offered.
        alpn: Vec<String>,
        /// Offers TLS 1.3 (supported_versions contains 0x0304).
        offers_tls13: bool,
    },
    /// ServerHello facts.
    ServerHello {
        /// Negotiated version (supported_versions extension, else the legacy field).
        version: u16,
        /// Chosen cipher suite.
        cipher: u16,
    },
    /// Framing lost (bad header); hunting for the next record.
    LostSync {
        /// Where.
        offset: u64,
        /// Why.
        reason: String,
    },
}

#[derive(Debug)]
enum State {
    Header { buf: [u8; 5], have: usize },
    Body { content_type: u8, remaining: u16 },
    Hunt { buf: Vec<u8>, buf_offset: u64 },
}

/// Splits one direction's byte stream into TLS records.
#[derive(Debug)]
pub struct RecordReader {
    state: State,
    handshake: Vec<u8>,
    handshake_done: bool,
    records: u64,
}

impl Default for RecordReader {
    fn default() -> Self {
        Self::new(true)
    }
}

impl RecordReader {
    /// A reader for a stream seen from its start (`at_start`), or joined mid-stream.
    #[must_use]
    pub fn new(at_start: bool) -> Self {
        RecordReader {
            state: if at_start {
                State::Header {
                    buf: [0; 5],
                    have: 0,
                }
            } else {
                State::Hunt {
                    buf: Vec::new(),
                    buf_offset: 0,
                }
            },
            handshake: Vec::new(),
            handshake_done: !at_start,
            records: 0,
        }
    }

    /// Records seen.
    #[must_use]
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes held in buffers (for memory accounting): the handshake
    /// messages being read and the resync buffer.
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        let hunt = match &self.state {
            State::Hunt { buf, .. } => buf.capacity(),
            _ => 0,
        };
        self.handshake.capacity() + hunt
    }

    /// Gives up what the reader buffers (for the engine's memory budget):
    /// the hellos are not read if not read yet, and hunting goes on from
    /// the next bytes. Returns the bytes freed.
    pub fn shed(&mut self) -> usize {
        let before = self.buffered_bytes();
        if !self.handshake.is_empty() || self.handshake.capacity() > 0 {
            self.handshake = Vec::new();
            self.handshake_done = true;
        }
        if let State::Hunt { buf, buf_offset } = &mut self.state {
            *buf_offset += buf.len() as u64;
            *buf = Vec::new();
        }
        before - self.buffered_bytes().min(before)
    }

    /// Feeds in-order bytes at stream `offset`.
    pub fn data(&mut self, offset: u64, bytes: &[u8], out: &mut dyn FnMut(TlsEvent)) {
        // Re-synchronising hands the rest of the hunt buffer back here: a
        // loop, not recursion, so hostile input cannot grow the stack.
        let mut pending = None;
        self.feed(offset, bytes, out, &mut pending);
        while let Some((at, tail)) = pending.take() {
            self.feed(at, &tail, out, &mut pending);
        }
    }

    fn feed(
        &mut self,
        offset: u64,
        bytes: &[u8],
        out: &mut dyn FnMut(TlsEvent),
        pending: &mut Option<(u64, Vec<u8>)>,
    ) {
        let mut pos = 0usize;
        while pos < bytes.len() {
            let here = offset + pos as u64;
            let rest = &bytes[pos..];
            match &mut self.state {
                State::Header { buf, have } => {
                    let n = (5 - *have).min(rest.len());
                    buf[*have..*have + n].copy_from_slice(&rest[..n]);
                    *have += n;
                    pos += n;
                    if *have == 5 {
                        let h = *buf;
                        let start = here + n as u64 - 5;
                        if valid_header(&h) {
                            let len = u16::from_be_bytes([h[3], h[4]]);
                            self.records += 1;
                            out(TlsEvent::Record {
                                content_type: h[0],
                                len,
                                offset: start,
                            });
                            self.state = if len == 0 {
                                State::Header {
                                    buf: [0; 5],
                                    have: 0,
                                }
                            } else {
                                State::Body {
                                    content_type: h[0],
                                    remaining: len,
                                }
                            };
                        } else {
                            out(TlsEvent::LostSync {
                                offset: start,
                                reason: format!("invalid TLS record header {h:02x?}"),
                            });
                            self.state = State::Hunt {
                                buf: h[1..].to_vec(),
                                buf_offset: start + 1,
                            };
                        }
                    }
                }
                State::Body {
                    content_type,
                    remaining,
                } => {
                    let n = usize::from(*remaining).min(rest.len());
                    if *content_type == CT_HANDSHAKE && !self.handshake_done {
                        let room = HANDSHAKE_BUFFER_CAP.saturating_sub(self.handshake.len());
                        self.handshake.extend_from_slice(&rest[..n.min(room)]);
                    }
                    *remaining -= u16::try_from(n).unwrap_or(*remaining);
                    pos += n;
                    if *remaining == 0 {
                        self.state = State::Header {
                            buf: [0; 5],
                            have: 0,
                        };
                        if !self.handshake_done {
                            self.parse_handshake(out);
                        }
                    }
                }
                State::Hunt { buf, buf_offset } => {
                    if buf.is_empty() {
                        *buf_offset = here;
                    }
                    buf.extend_from_slice(rest);
                    pos = bytes.len();
                    let found = (0..buf.len().saturating_sub(4)).find(|&i| {
                        let h = [buf[i], buf[i + 1], buf[i + 2], buf[i + 3], buf[i + 4]];
                        valid_header(&h) && h[0] == CT_APPDATA
                    });
                    match found {
                        Some(i) => {
                            let tail = buf.split_off(i);
                            let at = *buf_offset + i as u64;
                            self.state = State::Header {
                                buf: [0; 5],
                                have: 0,
                            };
                            *pending = Some((at, tail));
                            return;
                        }
                        None => {
                            let keep = 4.min(buf.len());
                            let drop = buf.len() - keep;
                            buf.drain(..drop);
                            *buf_offset += drop as u64;
                            if buf.len() > HUNT_CAP {
                                buf.clear();
                            }
                            // A large delivery grew it: give the memory back.
                            if buf.capacity() > HUNT_CAP {
                                buf.shrink_to(HUNT_CAP);
                            }
                        }
                    }
                }
            }
        }
    }

    /// Bytes `[offset, offset+len)` will never arrive.
    pub fn hole(&mut self, offset: u64, len: u64) {
        match &mut self.state {
            State::Body { remaining, .. } if u64::from(*remaining) > len => {
                *remaining -= u16::try_from(len).unwrap_or(0);
            }
            State::Body { remaining, .. } if u64::from(*remaining) == len => {
                self.state = State::Header {
                    buf: [0; 5],
                    have: 0,
                };
            }
            _ => {
                self.handshake_done = true;
                self.state = State::Hunt {
                    buf: Vec::new(),
                    buf_offset: offset + len,
                };
            }
        }
    }

    fn parse_handshake(&mut self, out: &mut dyn FnMut(TlsEvent)) {
        // Handshake message: type(1) len(3) body.
        while self.handshake.len() >= 4 {
            let mlen = usize::from(self.handshake[1]) << 16
                | usize::from(self.handshake[2]) << 8
                | usize::from(self.handshake[3]);
            if self.handshake.len() < 4 + mlen {
                if 4 + mlen > HANDSHAKE_BUFFER_CAP {
                    self.handshake_done = true;
                    self.handshake.clear();
                }
                return;
            }
            let body = self.handshake[4..4 + mlen].to_vec();
            let htype = self.handshake[0];
            self.handshake.drain(..4 + mlen);
            match htype {
                1 => {
                    if let Some(ev) = parse_client_hello(&body) {
                        out(ev);
                    }
                    self.handshake_done = true;
                }
                2 => {
                    if let Some(ev) = parse_server_hello(&body) {
                        out(ev);
                    }
                    self.handshake_done = true;
                }
                _ => {}
            }
            if self.handshake_done {
                self.handshake = Vec::new();
                return;
            }
        }
    }
}

fn valid_header(h: &[u8; 5]) -> bool {
    matches!(
        h[0],
        CT_CCS | CT_ALERT | CT_HANDSHAKE | CT_APPDATA | CT_HEARTBEAT
    ) && h[1] == 3
        && h[2] <= 4
        && u16::from_be_bytes([h[3], h[4]]) <= MAX_RECORD_LEN
}

/// A cursor over a byte slice that never panics.
struct Cur<'a> {
    b: &'a [u8],
}

impl<'a> Cur<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.b.len() < n {
            return None;
        }
        let (a, rest) = self.b.split_at(n);
        self.b = rest;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|s| s[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|s| u16::from_be_bytes([s[0], s[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(usize::from(n))
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

fn extensions(c: &mut Cur<'_>) -> Vec<(u16, Vec<u8>)> {
    let mut out = Vec::new();
    let Some(ext) = c.vec16() else { return out };
    let mut e = Cur { b: ext };
    while let (Some(t), Some(body)) = (e.u16(), e.vec16()) {
        out.push((t, body.to_vec()));
    }
    out
}

fn parse_client_hello(body: &[u8]) -> Option<TlsEvent> {
    let mut c = Cur { b: body };
    c.take(2 + 32)?; // legacy version + random
    c.vec8()?; // session id
    c.vec16()?; // cipher suites
    c.vec8()?; // compression
    let mut sni = None;
    let mut alpn = Vec::new();
    let mut offers_tls13 = false;
    for (t, b) in extensions(&mut c) {
        let mut e = Cur { b: &b };
        match t {
            0 => {
                if let Some(list) = e.vec16() {
                    let mut l = Cur { b: list };
                    if let (Some(0), Some(name)) = (l.u8(), l.vec16()) {
                        sni = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
            16 => {
                if let Some(list) = e.vec16() {
                    let mut l = Cur { b: list };
                    while let Some(p) = l.vec8() {
                        alpn.push(String::from_utf8_lossy(p).into_owned());
                    }
                }
            }
            43 => {
                if let Some(list) = e.vec8() {
                    offers_tls13 = list.chunks_exact(2).any(|v| v == [3, 4]);
                }
            }
            _ => {}
        }
    }
    Some(TlsEvent::ClientHello {
        sni,
        alpn,
        offers_tls13,
    })
}

fn parse_server_hello(body: &[u8]) -> Option<TlsEvent> {
    let mut c = Cur { b: body };
    let legacy = c.u16()?;
    c.take(32)?;
    c.vec8()?;
    let cipher = c.u16()?;
    c.u8()?;
    let mut version = legacy;
    for (t, b) in extensions(&mut c) {
        if t == 43 && b.len() == 2 {
            version = u16::from_be_bytes([b[0], b[1]]);
        }
    }
    Some(TlsEvent::ServerHello { version, cipher })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_size_is_the_dominant_small_record() {
        let mut g = HeartbeatSizeGuess::default();
        // Three heartbeat-sized records and a big one: not yet (needs four).
        for len in [37, 37, 300, 37] {
            assert_eq!(g.learn(0, len), None);
        }
        assert_eq!(g.learn(0, 37), Some(37));
        // The other direction learns on its own.
        assert_eq!(g.learn(1, 37), None);
        // Sizes above the heartbeat maximum never win.
        let mut big = HeartbeatSizeGuess::default();
        for _ in 0..10 {
            assert_eq!(big.learn(0, HEARTBEAT_RECORD_MAX + 1), None);
        }
    }

    fn record(ct: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![ct, 3, 3];
        v.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    fn server_hello(version_ext: Option<u16>, cipher: u16) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&[0; 32]);
        b.push(0);
        b.extend_from_slice(&cipher.to_be_bytes());
        b.push(0);
        let mut ext = Vec::new();
        if let Some(v) = version_ext {
            ext.extend_from_slice(&43u16.to_be_bytes());
            ext.extend_from_slice(&2u16.to_be_bytes());
            ext.extend_from_slice(&v.to_be_bytes());
        }
        b.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
        b.extend(ext);
        let mut m = vec![2, 0, 0, u8::try_from(b.len()).unwrap()];
        m.extend(b);
        record(CT_HANDSHAKE, &m)
    }

    fn events(stream: &[u8], chunk: usize) -> Vec<TlsEvent> {
        let mut r = RecordReader::new(true);
        let mut ev = Vec::new();
        let mut off = 0u64;
        for c in stream.chunks(chunk.max(1)) {
            r.data(off, c, &mut |e| ev.push(e));
            off += c.len() as u64;
        }
        ev
    }

    #[test]
    fn server_hello_tls13_and_heartbeat_len() {
        let mut s = server_hello(Some(0x0304), 0x1301);
        s.extend(record(CT_APPDATA, &[0; 25]));
        for chunk in [1, 3, 1000] {
            let ev = events(&s, chunk);
            assert!(ev.contains(&TlsEvent::ServerHello {
                version: 0x0304,
                cipher: 0x1301
            }));
            assert!(ev.iter().any(|e| matches!(
                e,
                TlsEvent::Record {
                    content_type: 23,
                    len: 25,
                    ..
                }
            )));
        }
        assert_eq!(heartbeat_record_len(0x0304, 0x1301), Some(25));
        assert_eq!(heartbeat_record_len(0x0303, 0xC02F), Some(32));
    }

    #[test]
    fn garbage_loses_sync_then_finds_app_data() {
        let mut s = vec![0xFF, 0, 1, 2, 3, 4];
        s.extend(record(CT_APPDATA, &[7; 32]));
        let ev = events(&s, 1000);
        assert!(matches!(ev[0], TlsEvent::LostSync { .. }));
        assert!(ev
            .iter()
            .any(|e| matches!(e, TlsEvent::Record { len: 32, .. })));
    }

    #[test]
    fn shedding_gives_up_the_handshake_and_resync_buffers() {
        // A handshake record cut before its end: its first bytes are held.
        let hello = server_hello(Some(0x0304), 0x1301);
        let mut r = RecordReader::new(true);
        let mut ev = Vec::new();
        r.data(0, &hello[..hello.len() - 10], &mut |e| ev.push(e));
        assert!(r.buffered_bytes() > 0);
        assert!(r.shed() > 0);
        assert_eq!(r.buffered_bytes(), 0);
        // The hello is not read any more, records still are.
        let mut off = (hello.len() - 10) as u64;
        r.data(off, &hello[hello.len() - 10..], &mut |e| ev.push(e));
        off = hello.len() as u64;
        r.data(off, &record(CT_APPDATA, &[0; 25]), &mut |e| ev.push(e));
        assert!(!ev.iter().any(|e| matches!(e, TlsEvent::ServerHello { .. })));
        assert!(ev
            .iter()
            .any(|e| matches!(e, TlsEvent::Record { len: 25, .. })));
        // Hunting: a large delivery of junk is not kept.
        let mut h = RecordReader::new(false);
        h.data(0, &vec![0xFFu8; 200_000], &mut |_| {});
        assert!(h.buffered_bytes() <= HUNT_CAP, "{}", h.buffered_bytes());
        h.shed();
        assert_eq!(h.buffered_bytes(), 0);
    }

    #[test]
    fn client_hello_detection() {
        assert!(looks_like_client_hello(&[22, 3, 1, 0, 200, 1]));
        assert!(!looks_like_client_hello(b"AMQP\x00\x00\x09\x01"));
    }

    #[test]
    fn truncated_hellos_never_panic() {
        let s = server_hello(Some(0x0304), 0x1301);
        for cut in 0..s.len() {
            let _ = parse_server_hello(&s[9..cut.max(9)]);
            let _ = parse_client_hello(&s[9..cut.max(9)]);
        }
    }
}
