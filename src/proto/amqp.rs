//! AMQP 0-9-1 framing for one direction of a connection, and the
//! connection-class methods the analysis needs.
//!
//! The [`Framer`] reads the 7-byte frame header itself (type, channel, size),
//! skips payloads without copying them and checks the 0xCE frame end. Only
//! connection-class method frames (and `Channel.Close`) are buffered and handed
//! to `amq-protocol`; this is the only module that touches that crate.
//!
//! Caps: a frame larger than the frame-size cap (negotiated `frame_max`, or
//! [`DEFAULT_FRAME_CAP`] before negotiation) is a framing error, after which
//! the framer hunts for the next plausible frame boundary. The hunt buffer is
//! capped at [`HUNT_BUFFER_CAP`] bytes; older bytes are dropped when it fills.
//!
//! The Start-Ok `response` (the SASL PLAIN credentials) is dropped inside
//! this module: it never reaches any other type.

use amq_protocol::protocol::{channel, connection, parse_class, AMQPClass};
use amq_protocol::types::{AMQPValue, FieldTable};
use serde::Serialize;
use std::sync::Arc;

/// The protocol header a 0-9-1 client sends first.
pub const PROTOCOL_HEADER_091: &[u8; 8] = b"AMQP\x00\x00\x09\x01";
/// Frame-size cap used before `frame_max` is negotiated (or when it is 0 = unlimited).
pub const DEFAULT_FRAME_CAP: u32 = 1 << 20;
/// Largest method frame buffered for decoding (connection methods are small).
pub const METHOD_BUFFER_CAP: u32 = 64 * 1024;
/// Bytes kept while hunting for a frame boundary after losing sync.
pub const HUNT_BUFFER_CAP: usize = 256 * 1024;
/// Bytes reserved for a method payload before more of it arrives.
const METHOD_BUFFER_START: usize = 512;
/// Largest frame accepted as a resynchronisation candidate.
const HUNT_FRAME_CAP: u32 = 128 * 1024;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;

/// A value from an AMQP field table (client or server properties), reduced
/// to what a report needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PropValue {
    /// Text (short or long string; long strings decoded lossily as UTF-8).
    Text(String),
    /// Any integer type.
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// Float or double.
    Float(f64),
    /// Nested table.
    Table(Properties),
    /// Array.
    Array(Vec<PropValue>),
    /// Void / other types not worth showing.
    Null,
}

/// One entry of a [`Properties`] table: a name and its value.
pub type PropEntry = (String, PropValue);

/// A field table reduced to names and [`PropValue`]s, sorted by name, each
/// name once (when a table repeats a name, the last value wins, as in a map).
///
/// A sorted boxed slice rather than a `BTreeMap`: a map's node is ~630 bytes
/// however few entries it holds, and every connection keeps its client's table.
/// Each entry is behind an `Arc` so that connections whose clients send the
/// same name and value (product, version, platform, capabilities) can share
/// one copy (see [`Properties::entries_mut`]); only the entries that differ
/// (such as connection_name) cost memory per connection.
/// Serialises as a JSON object in name order, like the map did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Properties(Box<[Arc<PropEntry>]>);

impl Properties {
    /// The value of `name`.
    #[must_use]
    pub fn get(&self, name: &str) -> Option<&PropValue> {
        self.0
            .binary_search_by(|e| e.0.as_str().cmp(name))
            .ok()
            .and_then(|i| self.0.get(i))
            .map(|e| &e.1)
    }

    /// Entries in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&String, &PropValue)> + '_ {
        self.0.iter().map(|e| (&e.0, &e.1))
    }

    /// Number of entries.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the table has no entries.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The shared entries, for replacing one with an equal shared copy
    /// (the order and the values must stay the same).
    pub fn entries_mut(&mut self) -> &mut [Arc<PropEntry>] {
        &mut self.0
    }
}

impl FromIterator<(String, PropValue)> for Properties {
    fn from_iter<I: IntoIterator<Item = (String, PropValue)>>(iter: I) -> Self {
        let mut v: Vec<(String, PropValue)> = iter.into_iter().collect();
        // Stable: among equal names the last one stays last, and wins below.
        v.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out: Vec<Arc<PropEntry>> = Vec::with_capacity(v.len());
        for e in v {
            match out.last_mut() {
                Some(last) if last.0 == e.0 => *last = Arc::new(e),
                _ => out.push(Arc::new(e)),
            }
        }
        Properties(out.into_boxed_slice())
    }
}

fn entry_refs(e: &Arc<PropEntry>) -> (&String, &PropValue) {
    (&e.0, &e.1)
}

impl<'a> IntoIterator for &'a Properties {
    type Item = (&'a String, &'a PropValue);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, Arc<PropEntry>>,
        fn(&'a Arc<PropEntry>) -> (&'a String, &'a PropValue),
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(entry_refs)
    }
}

impl Serialize for Properties {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|e| (&e.0, &e.1)))
    }
}

fn convert_value(v: &AMQPValue, depth: u8) -> PropValue {
    if depth > 8 {
        return PropValue::Null;
    }
    match v {
        AMQPValue::Boolean(b) => PropValue::Bool(*b),
        AMQPValue::ShortShortInt(i) => PropValue::Int(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => PropValue::Int(i64::from(*i)),
        AMQPValue::ShortInt(i) => PropValue::Int(i64::from(*i)),
        AMQPValue::ShortUInt(i) => PropValue::Int(i64::from(*i)),
        AMQPValue::LongInt(i) => PropValue::Int(i64::from(*i)),
        AMQPValue::LongUInt(i) => PropValue::Int(i64::from(*i)),
        AMQPValue::LongLongInt(i) => PropValue::Int(*i),
        AMQPValue::Timestamp(t) => PropValue::Int(i64::try_from(*t).unwrap_or(i64::MAX)),
        AMQPValue::Float(f) => PropValue::Float(f64::from(*f)),
        AMQPValue::Double(f) => PropValue::Float(*f),
        AMQPValue::ShortString(s) => PropValue::Text(s.as_str().to_owned()),
        AMQPValue::LongString(s) => {
            PropValue::Text(String::from_utf8_lossy(s.as_bytes()).into_owned())
        }
        AMQPValue::FieldTable(t) => PropValue::Table(convert_table(t, depth + 1)),
        AMQPValue::FieldArray(a) => PropValue::Array(
            a.as_slice()
                .iter()
                .map(|v| convert_value(v, depth + 1))
                .collect(),
        ),
        AMQPValue::DecimalValue(_) | AMQPValue::ByteArray(_) | AMQPValue::Void => PropValue::Null,
    }
}

fn convert_table(t: &FieldTable, depth: u8) -> Properties {
    t.inner()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), convert_value(v, depth)))
        .collect()
}

/// The methods the analysis cares about, already stripped of secrets.
#[derive(Debug, Clone, PartialEq)]
pub enum ConnMethod {
    /// Connection.Start (broker -> client).
    Start {
        /// Protocol version the broker speaks.
        version: (u8, u8),
        /// Broker's server_properties.
        server_properties: Properties,
        /// SASL mechanisms offered.
        mechanisms: String,
    },
    /// Connection.Start-Ok (client -> broker). The SASL response is deliberately absent.
    StartOk {
        /// Client's client_properties (product, version, platform, connection_name, ...).
        client_properties: Properties,
        /// SASL mechanism chosen.
        mechanism: String,
    },
    /// Connection.Tune (broker's proposal).
    Tune {
        /// channel-max.
        channel_max: u16,
        /// frame-max.
        frame_max: u32,
        /// heartbeat, seconds.
        heartbeat: u16,
    },
    /// Connection.Tune-Ok (the value the broker's monitor uses).
    TuneOk {
        /// channel-max.
        channel_max: u16,
        /// frame-max.
        frame_max: u32,
        /// heartbeat, seconds.
        heartbeat: u16,
    },
    /// Connection.Open.
    Open {
        /// Virtual host.
        vhost: String,
    },
    /// Connection.Open-Ok.
    OpenOk,
    /// Connection.Close.
    Close(CloseInfo),
    /// Connection.Close-Ok.
    CloseOk,
    /// Connection.Blocked (broker resource alarm).
    Blocked {
        /// Reason given by the broker.
        reason: String,
    },
    /// Connection.Unblocked.
    Unblocked,
    /// Channel.Close on a channel.
    ChannelClose {
        /// Channel number.
        channel: u16,
        /// Reason.
        close: CloseInfo,
    },
}

/// Reply code and text of a Connection.Close or Channel.Close.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CloseInfo {
    /// AMQP reply code (320 connection-forced, 501 frame-error, ...).
    pub reply_code: u16,
    /// Reply text.
    pub reply_text: String,
    /// Class of the method that caused it (0 if none).
    pub class_id: u16,
    /// Method that caused it (0 if none).
    pub method_id: u16,
}

/// Kind of an AMQP frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Method frame with its class and method ids.
    Method {
        /// Class id.
        class_id: u16,
        /// Method id.
        method_id: u16,
    },
    /// Content header frame.
    Header,
    /// Content body frame.
    Body,
    /// Heartbeat frame.
    Heartbeat,
}

/// One frame seen on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameInfo {
    /// Frame type.
    pub kind: FrameKind,
    /// Channel number.
    pub channel: u16,
    /// Payload size from the frame header.
    pub size: u32,
    /// Stream offset of the frame's first byte.
    pub offset: u64,
}

/// What the framer found in the byte stream of one direction.
#[derive(Debug, Clone, PartialEq)]
pub enum AmqpEvent {
    /// A protocol header `AMQP` + 4 bytes.
    ProtocolHeader {
        /// The four version bytes after "AMQP".
        version: [u8; 4],
    },
    /// A complete frame (its frame-end byte checked, unless it lay in a hole).
    Frame(FrameInfo),
    /// A decoded connection-level method (follows its `Frame`).
    Method(ConnMethod),
    /// A frame that breaks the rules but does not lose sync (e.g. heartbeat on a channel).
    Violation {
        /// Stream offset of the frame.
        offset: u64,
        /// What is wrong.
        detail: String,
    },
    /// Framing was lost at `offset`; the framer now hunts for a frame boundary.
    LostSync {
        /// Stream offset where framing broke.
        offset: u64,
        /// Why.
        reason: String,
    },
    /// Framing found again after hunting.
    Synced {
        /// Stream offset of the first frame after the hunt.
        offset: u64,
        /// Bytes skipped while hunting (including holes).
        skipped: u64,
    },
    /// The stream starts with something that is not AMQP 0-9-1.
    NotAmqp091 {
        /// What it looks like (TLS, AMQP 1.0, ...).
        looks_like: String,
    },
}

#[derive(Debug)]
enum State {
    /// Nothing read yet: a protocol header may come.
    Start,
    /// Reading a frame header.
    Header { buf: [u8; 7], have: usize },
    /// Reading the first 4 bytes of a method payload to learn class/method.
    MethodIds {
        frame: FrameInfo,
        buf: [u8; 4],
        have: usize,
    },
    /// Buffering a method payload to decode it.
    Buffer { frame: FrameInfo, buf: Vec<u8> },
    /// Skipping `remaining` payload bytes.
    Skip { frame: FrameInfo, remaining: u64 },
    /// Expecting the frame-end byte.
    End {
        frame: FrameInfo,
        method: Option<Vec<u8>>,
    },
    /// Reading the rest of a protocol header.
    ProtoHeader { buf: [u8; 8], have: usize },
    /// Lost: looking for a frame boundary in `buf` (which starts at `buf_offset`).
    Hunt {
        buf: Vec<u8>,
        buf_offset: u64,
        since: u64,
    },
    /// The stream is not AMQP 0-9-1: ignore the rest.
    Ignored,
}

/// Statistics of one framer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerStats {
    /// Frames read.
    pub frames: u64,
    /// Heartbeat frames read.
    pub heartbeats: u64,
    /// Times sync was lost.
    pub lost_sync: u64,
    /// Bytes skipped while hunting.
    pub hunted_bytes: u64,
}

/// What [`Framer::shed`] gave up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FramerShed {
    /// Bytes of buffer memory freed.
    pub freed: usize,
    /// The class and method ids of a connection method that will not be
    /// decoded (it was being buffered).
    pub method: Option<(u16, u16)>,
    /// Bytes dropped from the resync (hunt) buffer.
    pub resync_bytes: usize,
}

/// The class and method ids of a method frame.
fn method_ids(kind: FrameKind) -> Option<(u16, u16)> {
    match kind {
        FrameKind::Method {
            class_id,
            method_id,
        } => Some((class_id, method_id)),
        _ => None,
    }
}

/// The name of a connection-class method (or Channel.Close) the framer
/// decodes, as the AMQP 0-9-1 specification spells it.
#[must_use]
pub fn method_name(class_id: u16, method_id: u16) -> String {
    let name = match (class_id, method_id) {
        (10, 10) => "Connection.Start",
        (10, 11) => "Connection.Start-Ok",
        (10, 20) => "Connection.Secure",
        (10, 21) => "Connection.Secure-Ok",
        (10, 30) => "Connection.Tune",
        (10, 31) => "Connection.Tune-Ok",
        (10, 40) => "Connection.Open",
        (10, 41) => "Connection.Open-Ok",
        (10, 50) => "Connection.Close",
        (10, 51) => "Connection.Close-Ok",
        (10, 60) => "Connection.Blocked",
        (10, 61) => "Connection.Unblocked",
        (10, 70) => "Connection.Update-Secret",
        (10, 71) => "Connection.Update-Secret-Ok",
        (20, 40) => "Channel.Close",
        (c, m) => return format!("method {c}.{m}"),
    };
    name.to_owned()
}

/// Splits one direction's byte stream into AMQP frames.
#[derive(Debug)]
pub struct Framer {
    state: State,
    frame_cap: u32,
    stats: FramerStats,
    synced_once: bool,
}

impl Framer {
    /// A framer for a stream whose first byte is the stream's real start
    /// (`at_start`, e.g. the SYN was seen) or joined mid-stream (it hunts).
    #[must_use]
    pub fn new(at_start: bool) -> Self {
        Framer {
            state: if at_start {
                State::Start
            } else {
                State::Hunt {
                    buf: Vec::new(),
                    buf_offset: 0,
                    since: 0,
                }
            },
            frame_cap: DEFAULT_FRAME_CAP,
            stats: FramerStats::default(),
            synced_once: false,
        }
    }

    /// Sets the frame-size cap from a negotiated frame_max (0 = no limit -> default cap).
    pub fn set_frame_max(&mut self, frame_max: u32) {
        self.frame_cap = if frame_max == 0 {
            DEFAULT_FRAME_CAP
        } else {
            frame_max.max(4096)
        };
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> FramerStats {
        self.stats
    }

    /// Whether at least one frame or header was recognised.
    #[must_use]
    pub fn recognised(&self) -> bool {
        self.synced_once
    }

    /// Whether the stream was found not to be AMQP 0-9-1.
    #[must_use]
    pub fn ignored(&self) -> bool {
        matches!(self.state, State::Ignored)
    }

    /// Starts loading the framer's state (both of its cache lines).
    pub fn prefetch(&self) {
        crate::prefetch::line(&self.state);
        crate::prefetch::line(&self.stats);
        crate::prefetch::line(&self.synced_once);
    }

    /// Bytes held in buffers (for memory accounting).
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        match &self.state {
            State::Buffer { buf, .. } | State::Hunt { buf, .. } => buf.capacity(),
            State::End {
                method: Some(m), ..
            } => m.capacity(),
            _ => 0,
        }
    }

    /// Gives up what the framer buffers (for the engine's memory budget): a
    /// connection method being buffered is skipped instead (its frame is
    /// still counted, its content not decoded) and the resync buffer is
    /// emptied (hunting goes on from the next bytes). Says what was dropped.
    pub fn shed(&mut self) -> FramerShed {
        let mut shed = FramerShed {
            freed: self.buffered_bytes(),
            ..FramerShed::default()
        };
        let state = std::mem::replace(&mut self.state, State::Ignored);
        self.state = match state {
            State::Buffer { frame, buf, .. } => {
                shed.method = method_ids(frame.kind);
                State::Skip {
                    frame,
                    remaining: u64::from(frame.size).saturating_sub(buf.len() as u64),
                }
            }
            State::End {
                frame,
                method: Some(_),
            } => {
                shed.method = method_ids(frame.kind);
                State::End {
                    frame,
                    method: None,
                }
            }
            State::Hunt {
                buf,
                buf_offset,
                since,
            } => {
                shed.resync_bytes = buf.len();
                State::Hunt {
                    buf: Vec::new(),
                    buf_offset: buf_offset + buf.len() as u64,
                    since,
                }
            }
            other => other,
        };
        shed.freed -= self.buffered_bytes().min(shed.freed);
        shed
    }

    /// Feeds in-order bytes starting at stream `offset`.
    pub fn data(&mut self, offset: u64, bytes: &[u8], out: &mut dyn FnMut(AmqpEvent)) {
        match self.state {
            State::Ignored => {}
            State::Hunt { .. } => self.hunt_with(offset, bytes, out),
            _ => {
                let used = self.run(offset, bytes, out);
                if used < bytes.len() && matches!(self.state, State::Hunt { .. }) {
                    self.hunt_with(offset + used as u64, &bytes[used..], out);
                }
            }
        }
    }

    /// Runs the in-sync state machine until `bytes` are used up or sync is
    /// lost (state becomes `Hunt`/`Ignored`); returns the bytes consumed.
    fn run(&mut self, offset: u64, bytes: &[u8], out: &mut dyn FnMut(AmqpEvent)) -> usize {
        let mut pos = 0usize;
        while pos < bytes.len() {
            if let State::Header { have: 0, .. } = self.state {
                if let Some(used) = self.whole_frame(offset + pos as u64, &bytes[pos..], out) {
                    pos += used;
                    continue;
                }
            }
            let state = std::mem::replace(&mut self.state, State::Ignored);
            let (next, used) = self.step(state, offset + pos as u64, &bytes[pos..], out);
            self.state = next;
            pos += used;
            if matches!(self.state, State::Hunt { .. } | State::Ignored) {
                break;
            }
        }
        pos.min(bytes.len())
    }

    /// At a frame boundary, a whole content header, body or heartbeat frame
    /// that `rest` holds through its frame-end byte is emitted in one go,
    /// without the Header -> Skip -> End steps (most frames of a busy
    /// connection). Returns the bytes used, or `None` (nothing done) for
    /// anything else, which the state machine then reads as before: method
    /// frames, frames cut by the segment's end, and every error.
    fn whole_frame(
        &mut self,
        here: u64,
        rest: &[u8],
        out: &mut dyn FnMut(AmqpEvent),
    ) -> Option<usize> {
        let h: &[u8; 7] = rest.get(..7)?.try_into().ok()?;
        let kind = match h[0] {
            FRAME_HEADER => FrameKind::Header,
            FRAME_BODY => FrameKind::Body,
            FRAME_HEARTBEAT => FrameKind::Heartbeat,
            _ => return None,
        };
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
        if size > self.frame_cap {
            return None;
        }
        let end = 7usize.checked_add(usize::try_from(size).ok()?)?;
        if *rest.get(end)? != FRAME_END {
            return None;
        }
        let frame = FrameInfo {
            kind,
            channel: u16::from_be_bytes([h[1], h[2]]),
            size,
            offset: here,
        };
        self.emit_frame(frame, None, out);
        Some(end + 1)
    }

    /// Hunts for a frame boundary in the hunt buffer plus `bytes`; when one is
    /// found, continues in sync from there (iteratively, never recursively).
    fn hunt_with(&mut self, offset: u64, bytes: &[u8], out: &mut dyn FnMut(AmqpEvent)) {
        let State::Hunt {
            mut buf,
            mut buf_offset,
            mut since,
        } = std::mem::replace(&mut self.state, State::Ignored)
        else {
            return;
        };
        if buf.is_empty() {
            buf_offset = offset;
        }
        buf.extend_from_slice(bytes);
        loop {
            let mut i = 0usize;
            let mut found = None;
            while i < buf.len() {
                match candidate(&buf[i..]) {
                    Candidate::No => i += 1,
                    Candidate::NeedMore => break,
                    Candidate::Yes => {
                        found = Some(i);
                        break;
                    }
                }
            }
            let Some(i) = found else {
                // Keep only what may still start a frame, within the cap.
                let mut drop = i;
                if buf.len() - drop > HUNT_BUFFER_CAP {
                    drop = buf.len() - HUNT_BUFFER_CAP / 2;
                }
                buf.drain(..drop.min(buf.len()));
                // A large delivery (a reassembly buffer given up at once) grew
                // the buffer past the cap: give the memory back, not just the bytes.
                if buf.capacity() > HUNT_BUFFER_CAP {
                    buf.shrink_to(HUNT_BUFFER_CAP);
                }
                buf_offset += drop as u64;
                self.state = State::Hunt {
                    buf,
                    buf_offset,
                    since,
                };
                return;
            };
            let at = buf_offset + i as u64;
            let skipped = at.saturating_sub(since);
            self.stats.hunted_bytes += skipped;
            self.synced_once = true;
            out(AmqpEvent::Synced {
                offset: at,
                skipped,
            });
            self.state = State::Header {
                buf: [0; 7],
                have: 0,
            };
            let tail = buf.split_off(i);
            let used = self.run(at, &tail, out).max(1);
            match &self.state {
                State::Hunt { since: s, .. } if used < tail.len() => {
                    since = *s;
                    buf = tail[used..].to_vec();
                    buf_offset = at + used as u64;
                }
                State::Hunt { since: s, .. } => {
                    self.state = State::Hunt {
                        buf: Vec::new(),
                        buf_offset: at + tail.len() as u64,
                        since: *s,
                    };
                    return;
                }
                _ => return,
            }
        }
    }

    /// Tells the framer that bytes `[offset, offset+len)` will never arrive.
    pub fn hole(&mut self, offset: u64, len: u64, out: &mut dyn FnMut(AmqpEvent)) {
        if len == 0 {
            return;
        }
        let state = std::mem::replace(&mut self.state, State::Ignored);
        self.state = match state {
            State::Ignored => State::Ignored,
            State::Skip { frame, remaining } if len < remaining => State::Skip {
                frame,
                remaining: remaining - len,
            },
            State::Skip { frame, remaining } if len == remaining => State::End {
                frame,
                method: None,
            },
            State::Skip { frame, remaining } if len == remaining + 1 => {
                // The hole swallowed the frame-end byte: accept the frame unchecked.
                self.emit_frame(frame, None, out);
                State::Header {
                    buf: [0; 7],
                    have: 0,
                }
            }
            State::Buffer { frame, buf, .. } => {
                let need = u64::from(frame.size).saturating_sub(buf.len() as u64);
                if len < need {
                    // The method cannot be decoded any more: skip the rest
                    // instead of buffering it.
                    State::Skip {
                        frame,
                        remaining: need - len,
                    }
                } else if len == need {
                    State::End {
                        frame,
                        method: None,
                    }
                } else if len == need + 1 {
                    self.emit_frame(frame, None, out);
                    State::Header {
                        buf: [0; 7],
                        have: 0,
                    }
                } else {
                    self.lose(offset, "capture hole across a frame boundary", out)
                }
            }
            State::Hunt { since, .. } => State::Hunt {
                buf: Vec::new(),
                buf_offset: offset + len,
                since,
            },
            State::Header { have: 0, .. }
            | State::Start
            | State::Skip { .. }
            | State::MethodIds { .. }
            | State::Header { .. }
            | State::End { .. }
            | State::ProtoHeader { .. } => {
                self.lose(offset, "capture hole across a frame boundary", out)
            }
        };
        if let State::Hunt {
            buf, buf_offset, ..
        } = &mut self.state
        {
            if buf.is_empty() {
                *buf_offset = offset + len;
            }
        }
    }

    fn lose(&mut self, offset: u64, reason: &str, out: &mut dyn FnMut(AmqpEvent)) -> State {
        self.stats.lost_sync += 1;
        out(AmqpEvent::LostSync {
            offset,
            reason: reason.to_owned(),
        });
        State::Hunt {
            buf: Vec::new(),
            buf_offset: offset,
            since: offset,
        }
    }

    fn emit_frame(
        &mut self,
        frame: FrameInfo,
        method: Option<&[u8]>,
        out: &mut dyn FnMut(AmqpEvent),
    ) {
        self.stats.frames += 1;
        self.synced_once = true;
        if frame.kind == FrameKind::Heartbeat {
            self.stats.heartbeats += 1;
            if frame.channel != 0 {
                out(AmqpEvent::Violation {
                    offset: frame.offset,
                    detail: format!("heartbeat frame on channel {} (must be 0; a broker answers 501 frame-error)", frame.channel),
                });
            }
            if frame.size != 0 {
                out(AmqpEvent::Violation {
                    offset: frame.offset,
                    detail: format!(
                        "heartbeat frame carries {} payload bytes (must be empty)",
                        frame.size
                    ),
                });
            }
        }
        out(AmqpEvent::Frame(frame));
        if let Some(payload) = method {
            if let Some(m) = decode_method(frame.channel, payload) {
                if let ConnMethod::Tune { frame_max, .. } | ConnMethod::TuneOk { frame_max, .. } =
                    &m
                {
                    self.set_frame_max(*frame_max);
                }
                out(AmqpEvent::Method(m));
            }
        }
    }

    /// Starts a frame from a complete 7-byte header.
    fn begin_frame(&mut self, h: [u8; 7], offset: u64, out: &mut dyn FnMut(AmqpEvent)) -> State {
        let ftype = h[0];
        let channel = u16::from_be_bytes([h[1], h[2]]);
        let size = u32::from_be_bytes([h[3], h[4], h[5], h[6]]);
        let kind = match ftype {
            FRAME_METHOD => FrameKind::Method {
                class_id: 0,
                method_id: 0,
            },
            FRAME_HEADER => FrameKind::Header,
            FRAME_BODY => FrameKind::Body,
            FRAME_HEARTBEAT => FrameKind::Heartbeat,
            other => return self.lose(offset, &format!("unknown frame type {other}"), out),
        };
        if size > self.frame_cap {
            return self.lose(
                offset,
                &format!(
                    "frame claims {size} bytes, more than the frame-size cap {}",
                    self.frame_cap
                ),
                out,
            );
        }
        let frame = FrameInfo {
            kind,
            channel,
            size,
            offset,
        };
        if ftype == FRAME_METHOD {
            if size < 4 {
                return self.lose(
                    offset,
                    "method frame shorter than its class and method ids",
                    out,
                );
            }
            State::MethodIds {
                frame,
                buf: [0; 4],
                have: 0,
            }
        } else if size == 0 {
            State::End {
                frame,
                method: None,
            }
        } else {
            State::Skip {
                frame,
                remaining: u64::from(size),
            }
        }
    }

    /// One step of the state machine; returns the next state and bytes used.
    fn step(
        &mut self,
        state: State,
        here: u64,
        rest: &[u8],
        out: &mut dyn FnMut(AmqpEvent),
    ) -> (State, usize) {
        match state {
            State::Ignored => (State::Ignored, rest.len()),
            State::Start => {
                if rest[0] == b'A' {
                    (
                        State::ProtoHeader {
                            buf: [0; 8],
                            have: 0,
                        },
                        0,
                    )
                } else if rest[0] == 0x16 {
                    out(AmqpEvent::NotAmqp091 {
                        looks_like: "TLS handshake (AMQPS?)".into(),
                    });
                    (State::Ignored, rest.len())
                } else {
                    (
                        State::Header {
                            buf: [0; 7],
                            have: 0,
                        },
                        0,
                    )
                }
            }
            State::ProtoHeader { mut buf, mut have } => {
                let n = (8 - have).min(rest.len());
                buf[have..have + n].copy_from_slice(&rest[..n]);
                have += n;
                if have < 8 {
                    return (State::ProtoHeader { buf, have }, n);
                }
                if &buf[..4] != b"AMQP" {
                    let st = self.lose(
                        here,
                        "stream does not start with an AMQP protocol header",
                        out,
                    );
                    return (st, n);
                }
                let version = [buf[4], buf[5], buf[6], buf[7]];
                out(AmqpEvent::ProtocolHeader { version });
                if &buf != PROTOCOL_HEADER_091 {
                    let what = match version {
                        [0, 1, 0, 0] | [3, 1, 0, 0] => "AMQP 1.0".to_owned(),
                        [0, 0, 9, 0] => "AMQP 0-9".to_owned(),
                        [1, 1, 0, 9] | [1, 1, 8, 0] => "AMQP 0-8".to_owned(),
                        v => format!("AMQP version {}.{}.{}.{}", v[0], v[1], v[2], v[3]),
                    };
                    out(AmqpEvent::NotAmqp091 {
                        looks_like: format!(
                            "{what} protocol header {}; hbscope analyses AMQP 0-9-1 only",
                            crate::proto::amqp::escape(&buf)
                        ),
                    });
                    return (State::Ignored, n);
                }
                self.synced_once = true;
                (
                    State::Header {
                        buf: [0; 7],
                        have: 0,
                    },
                    n,
                )
            }
            State::Header { mut buf, mut have } => {
                let n = (7 - have).min(rest.len());
                buf[have..have + n].copy_from_slice(&rest[..n]);
                have += n;
                if have < 7 {
                    return (State::Header { buf, have }, n);
                }
                let start = here + n as u64 - 7;
                (self.begin_frame(buf, start, out), n)
            }
            State::MethodIds {
                mut frame,
                mut buf,
                mut have,
            } => {
                let n = (4 - have).min(rest.len());
                buf[have..have + n].copy_from_slice(&rest[..n]);
                have += n;
                if have < 4 {
                    return (State::MethodIds { frame, buf, have }, n);
                }
                let class_id = u16::from_be_bytes([buf[0], buf[1]]);
                let method_id = u16::from_be_bytes([buf[2], buf[3]]);
                frame.kind = FrameKind::Method {
                    class_id,
                    method_id,
                };
                let wanted = class_id == 10 || (class_id == 20 && method_id == 40);
                let remaining = u64::from(frame.size) - 4;
                if wanted && frame.size <= METHOD_BUFFER_CAP {
                    // Grown as the payload arrives (State::Buffer): a header
                    // claiming 64 KiB must not reserve it before it comes.
                    let mut v = Vec::with_capacity((frame.size as usize).min(METHOD_BUFFER_START));
                    v.extend_from_slice(&buf);
                    if remaining == 0 {
                        return (
                            State::End {
                                frame,
                                method: Some(v),
                            },
                            n,
                        );
                    }
                    (State::Buffer { frame, buf: v }, n)
                } else if remaining == 0 {
                    (
                        State::End {
                            frame,
                            method: None,
                        },
                        n,
                    )
                } else {
                    (State::Skip { frame, remaining }, n)
                }
            }
            State::Buffer { frame, mut buf } => {
                let need = (frame.size as usize).saturating_sub(buf.len());
                let n = need.min(rest.len());
                if buf.capacity() - buf.len() < n {
                    // Doubling, but never past the frame's size.
                    let want = (buf.len() + n)
                        .max(buf.capacity() * 2)
                        .min(frame.size as usize);
                    buf.reserve_exact(want - buf.len());
                }
                buf.extend_from_slice(&rest[..n]);
                if buf.len() < frame.size as usize {
                    return (State::Buffer { frame, buf }, n);
                }
                (
                    State::End {
                        frame,
                        method: Some(buf),
                    },
                    n,
                )
            }
            State::Skip { frame, remaining } => {
                let n = usize::try_from(remaining)
                    .unwrap_or(usize::MAX)
                    .min(rest.len());
                let remaining = remaining - n as u64;
                if remaining == 0 {
                    (
                        State::End {
                            frame,
                            method: None,
                        },
                        n,
                    )
                } else {
                    (State::Skip { frame, remaining }, n)
                }
            }
            State::End { frame, method } => {
                if rest[0] != FRAME_END {
                    let st = self.lose(
                        here,
                        &format!("frame end byte is 0x{:02X}, expected 0xCE", rest[0]),
                        out,
                    );
                    return (st, 0);
                }
                self.emit_frame(frame, method.as_deref(), out);
                (
                    State::Header {
                        buf: [0; 7],
                        have: 0,
                    },
                    1,
                )
            }
            State::Hunt {
                buf,
                buf_offset,
                since,
            } => (
                State::Hunt {
                    buf,
                    buf_offset,
                    since,
                },
                0,
            ),
        }
    }
}

enum Candidate {
    No,
    NeedMore,
    Yes,
}

/// Whether `b` plausibly starts with an AMQP frame (checked through its frame end).
fn candidate(b: &[u8]) -> Candidate {
    if b.is_empty() {
        return Candidate::NeedMore;
    }
    let t = b[0];
    if !matches!(
        t,
        FRAME_METHOD | FRAME_HEADER | FRAME_BODY | FRAME_HEARTBEAT
    ) {
        return Candidate::No;
    }
    if b.len() < 7 {
        return Candidate::NeedMore;
    }
    let channel = u16::from_be_bytes([b[1], b[2]]);
    let size = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
    match t {
        FRAME_HEARTBEAT if channel != 0 || size != 0 => return Candidate::No,
        FRAME_METHOD if size < 4 => return Candidate::No,
        FRAME_HEADER if size < 14 || channel == 0 => return Candidate::No,
        FRAME_BODY if channel == 0 => return Candidate::No,
        _ => {}
    }
    if size > HUNT_FRAME_CAP {
        return Candidate::No;
    }
    let end = 7 + size as usize;
    if b.len() <= end {
        return Candidate::NeedMore;
    }
    if b[end] != FRAME_END {
        return Candidate::No;
    }
    if t == FRAME_METHOD || t == FRAME_HEADER {
        let class = u16::from_be_bytes([b[7], b[8]]);
        if !matches!(class, 10 | 20 | 30 | 40 | 50 | 60 | 85 | 90) {
            return Candidate::No;
        }
    }
    Candidate::Yes
}

/// Method payloads decoded lately, with what they decoded to.
struct RecentMethods {
    entries: Vec<(Box<[u8]>, ConnMethod)>,
    /// Entry replaced next when full.
    next: usize,
}

impl RecentMethods {
    const CAP: usize = 8;
    /// Larger payloads are not kept.
    const BYTES_CAP: usize = 4096;
}

thread_local! {
    /// A broker sends the same Connection.Start (its properties table is the
    /// largest thing parsed per connection), Tune and Open-Ok on every
    /// connection, and one application's clients the same Tune-Ok and Open:
    /// with 100,000 connections, parsing them again each time was a fifth of
    /// a replay. Per thread, like the rest of a replay's state.
    static RECENT: std::cell::RefCell<RecentMethods> =
        const { std::cell::RefCell::new(RecentMethods { entries: Vec::new(), next: 0 }) };
}

/// Decodes a buffered method payload (class id onwards), reusing the
/// decoding of an identical recent payload.
fn decode_method(channel_id: u16, payload: &[u8]) -> Option<ConnMethod> {
    if payload.len() > RecentMethods::BYTES_CAP {
        return decode_method_fresh(channel_id, payload);
    }
    let hit = RECENT.with(|r| {
        r.borrow()
            .entries
            .iter()
            .find(|(p, _)| **p == *payload)
            .map(|(_, m)| m.clone())
    });
    if hit.is_some() {
        return hit;
    }
    let m = decode_method_fresh(channel_id, payload)?;
    // Only methods whose decoding depends on the payload alone, and that
    // repeat from one connection to the next.
    if matches!(
        m,
        ConnMethod::Start { .. }
            | ConnMethod::Tune { .. }
            | ConnMethod::TuneOk { .. }
            | ConnMethod::Open { .. }
            | ConnMethod::OpenOk
    ) {
        RECENT.with(|r| {
            let mut r = r.borrow_mut();
            let entry = (Box::from(payload), m.clone());
            if r.entries.len() < RecentMethods::CAP {
                r.entries.push(entry);
            } else {
                let at = r.next % RecentMethods::CAP;
                if let Some(slot) = r.entries.get_mut(at) {
                    *slot = entry;
                }
                r.next = at + 1;
            }
        });
    }
    Some(m)
}

/// Decodes a buffered method payload (class id onwards) with amq-protocol.
fn decode_method_fresh(channel_id: u16, payload: &[u8]) -> Option<ConnMethod> {
    let (_, class) = parse_class(payload).ok()?;
    match class {
        AMQPClass::Connection(m) => Some(match m {
            connection::AMQPMethod::Start(s) => ConnMethod::Start {
                version: (s.version_major, s.version_minor),
                server_properties: convert_table(&s.server_properties, 0),
                mechanisms: String::from_utf8_lossy(s.mechanisms.as_bytes()).into_owned(),
            },
            connection::AMQPMethod::StartOk(s) => ConnMethod::StartOk {
                client_properties: convert_table(&s.client_properties, 0),
                mechanism: s.mechanism.as_str().to_owned(),
            },
            connection::AMQPMethod::Tune(t) => ConnMethod::Tune {
                channel_max: t.channel_max,
                frame_max: t.frame_max,
                heartbeat: t.heartbeat,
            },
            connection::AMQPMethod::TuneOk(t) => ConnMethod::TuneOk {
                channel_max: t.channel_max,
                frame_max: t.frame_max,
                heartbeat: t.heartbeat,
            },
            connection::AMQPMethod::Open(o) => ConnMethod::Open {
                vhost: o.virtual_host.as_str().to_owned(),
            },
            connection::AMQPMethod::OpenOk(_) => ConnMethod::OpenOk,
            connection::AMQPMethod::Close(c) => ConnMethod::Close(CloseInfo {
                reply_code: c.reply_code,
                reply_text: c.reply_text.as_str().to_owned(),
                class_id: c.class_id,
                method_id: c.method_id,
            }),
            connection::AMQPMethod::CloseOk(_) => ConnMethod::CloseOk,
            connection::AMQPMethod::Blocked(b) => ConnMethod::Blocked {
                reason: b.reason.as_str().to_owned(),
            },
            connection::AMQPMethod::Unblocked(_) => ConnMethod::Unblocked,
            _ => return None,
        }),
        AMQPClass::Channel(channel::AMQPMethod::Close(c)) => Some(ConnMethod::ChannelClose {
            channel: channel_id,
            close: CloseInfo {
                reply_code: c.reply_code,
                reply_text: c.reply_text.as_str().to_owned(),
                class_id: c.class_id,
                method_id: c.method_id,
            },
        }),
        _ => None,
    }
}

/// Bytes as a short quoted string with escapes, for messages.
#[must_use]
pub fn escape(b: &[u8]) -> String {
    let text: String = b
        .iter()
        .flat_map(|c| std::ascii::escape_default(*c))
        .map(char::from)
        .collect();
    format!("\"{text}\"")
}

/// Whether `payload` starts like an AMQP protocol header (any version).
#[must_use]
pub fn looks_like_protocol_header(payload: &[u8]) -> bool {
    payload.len() >= 4 && &payload[..4] == b"AMQP"
}

/// Bytes of a heartbeat frame on the wire (header, no payload, frame end),
/// the same as a protocol header's.
pub const HEARTBEAT_FRAME_LEN: u32 = 8;

/// Whether a segment of `wire_len` payload bytes of which `kept` were
/// captured is cut too short for a [`Framer`] to read any frame in it:
/// fewer than [`HEARTBEAT_FRAME_LEN`] bytes kept (a heartbeat frame needs all
/// eight, a frame header seven plus its frame end).
#[must_use]
pub fn too_cut_to_frame(kept: usize, wire_len: u32) -> bool {
    let wire = usize::try_from(wire_len).unwrap_or(usize::MAX);
    wire > 0 && kept < wire.min(HEARTBEAT_FRAME_LEN as usize)
}

/// What one TCP segment of an AMQP stream is, read from its length on the
/// wire and the few bytes the snapshot length kept, when its frames cannot
/// be read (see [`too_cut_to_frame`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CutSegment {
    /// The client's first 8 bytes: the protocol header.
    ProtocolHeader,
    /// The broker's first 8 bytes: its protocol header, refusing the client's.
    Refusal,
    /// 8 bytes whose kept part agrees with a heartbeat frame.
    Heartbeat,
    /// Anything else: one or more frames, or part of one.
    Other,
    /// The stream's first bytes are not AMQP 0-9-1 (e.g. `GET /`, or a
    /// client's first segment that is not 8 bytes long).
    NotAmqp,
}

/// Reads a cut segment: `at_start` when it is the first segment of a stream
/// whose start was seen, `from_client` for the client's direction, `kept` the
/// captured bytes, `wire_len` its payload length from the IP header.
#[must_use]
pub fn cut_segment(at_start: bool, from_client: bool, kept: &[u8], wire_len: u32) -> CutSegment {
    const HEARTBEAT: [u8; 8] = [FRAME_HEARTBEAT, 0, 0, 0, 0, 0, 0, FRAME_END];
    // The kept bytes and `start` agree as far as both go.
    let agrees = |start: &[u8]| kept.iter().zip(start).all(|(a, b)| a == b);
    if at_start && from_client {
        // A client sends its protocol header alone, then waits for Start.
        return if agrees(PROTOCOL_HEADER_091) && wire_len == HEARTBEAT_FRAME_LEN {
            CutSegment::ProtocolHeader
        } else {
            CutSegment::NotAmqp
        };
    }
    if at_start {
        // The broker's first bytes: Connection.Start, or its protocol header
        // refusing the client's.
        return if wire_len == HEARTBEAT_FRAME_LEN && agrees(b"AMQP") {
            CutSegment::Refusal
        } else if agrees(&[FRAME_METHOD]) {
            CutSegment::Other
        } else {
            CutSegment::NotAmqp
        };
    }
    if wire_len == HEARTBEAT_FRAME_LEN && agrees(&HEARTBEAT) {
        CutSegment::Heartbeat
    } else {
        CutSegment::Other
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn cut_segments_are_read_from_their_length_and_kept_bytes() {
        use CutSegment::*;
        assert!(too_cut_to_frame(0, 8));
        assert!(too_cut_to_frame(7, 8));
        assert!(!too_cut_to_frame(8, 8));
        assert!(too_cut_to_frame(6, 500));
        assert!(!too_cut_to_frame(6, 6), "a whole short segment is not cut");
        assert!(!too_cut_to_frame(0, 0));
        let hb = [8u8, 0, 0, 0, 0, 0];
        assert_eq!(cut_segment(false, false, &hb, 8), Heartbeat);
        assert_eq!(cut_segment(false, true, &[], 8), Heartbeat);
        assert_eq!(cut_segment(false, true, &[1, 0, 0, 0, 0, 0], 8), Other);
        assert_eq!(cut_segment(false, true, &hb, 21), Other);
        assert_eq!(cut_segment(true, true, b"AMQP\x00\x00", 8), ProtocolHeader);
        assert_eq!(cut_segment(true, true, &[], 8), ProtocolHeader);
        assert_eq!(cut_segment(true, true, b"GET / ", 8), NotAmqp);
        assert_eq!(cut_segment(true, true, &[], 78), NotAmqp, "an HTTP request");
        assert_eq!(
            cut_segment(true, true, b"AMQP\x00\x01", 8),
            NotAmqp,
            "AMQP 1.0"
        );
        assert_eq!(cut_segment(true, false, &[1, 0, 0, 0, 1, 0xf5], 509), Other);
        assert_eq!(cut_segment(true, false, &[], 509), Other);
        assert_eq!(cut_segment(true, false, b"HTTP/1", 100), NotAmqp);
        assert_eq!(cut_segment(true, false, b"AMQP\x00\x00", 8), Refusal);
        assert_eq!(cut_segment(true, false, &[], 8), Refusal);
    }

    fn frames(input: &[&[u8]], at_start: bool) -> Vec<AmqpEvent> {
        let mut f = Framer::new(at_start);
        let mut ev = Vec::new();
        let mut off = 0u64;
        for chunk in input {
            f.data(off, chunk, &mut |e| ev.push(e));
            off += chunk.len() as u64;
        }
        ev
    }

    const HB: &[u8] = &[8, 0, 0, 0, 0, 0, 0, 0xCE];

    fn method_frame(channel: u16, payload: &[u8]) -> Vec<u8> {
        let mut v = vec![1];
        v.extend_from_slice(&channel.to_be_bytes());
        v.extend_from_slice(&u32::try_from(payload.len()).unwrap().to_be_bytes());
        v.extend_from_slice(payload);
        v.push(0xCE);
        v
    }

    fn tune_ok(hb: u16) -> Vec<u8> {
        let mut p = vec![0, 10, 0, 31];
        p.extend_from_slice(&2047u16.to_be_bytes());
        p.extend_from_slice(&131_072u32.to_be_bytes());
        p.extend_from_slice(&hb.to_be_bytes());
        method_frame(0, &p)
    }

    fn body(channel: u16, n: usize) -> Vec<u8> {
        let mut v = vec![3];
        v.extend_from_slice(&channel.to_be_bytes());
        v.extend_from_slice(&u32::try_from(n).unwrap().to_be_bytes());
        v.extend(std::iter::repeat_n(0xCEu8, n));
        v.push(0xCE);
        v
    }

    fn count_hb(ev: &[AmqpEvent]) -> usize {
        ev.iter()
            .filter(|e| matches!(e, AmqpEvent::Frame(f) if f.kind == FrameKind::Heartbeat))
            .count()
    }

    #[test]
    fn header_then_tune_ok_then_heartbeats() {
        let mut s = PROTOCOL_HEADER_091.to_vec();
        s.extend(tune_ok(4));
        s.extend(HB);
        s.extend(HB);
        let ev = frames(&[&s], true);
        assert!(matches!(ev[0], AmqpEvent::ProtocolHeader { .. }));
        assert!(ev.contains(&AmqpEvent::Method(ConnMethod::TuneOk {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 4
        })));
        assert_eq!(count_hb(&ev), 2);
    }

    #[test]
    fn byte_at_a_time_equals_whole() {
        let mut s = PROTOCOL_HEADER_091.to_vec();
        s.extend(tune_ok(60));
        s.extend(body(1, 300));
        s.extend(HB);
        let whole = frames(&[&s], true);
        let pieces: Vec<&[u8]> = s.chunks(1).collect();
        assert_eq!(frames(&pieces, true), whole);
        let pieces: Vec<&[u8]> = s.chunks(5).collect();
        assert_eq!(frames(&pieces, true), whole);
    }

    /// The whole-frame fast path and the byte-level state machine give the
    /// same events, errors included: odd heartbeats, a bad frame end, an
    /// unknown frame type, a frame over the cap, and the hunting after them.
    #[test]
    fn whole_frames_equal_pieces_with_errors() {
        let mut s = PROTOCOL_HEADER_091.to_vec();
        s.extend(tune_ok(60));
        s.extend(body(1, 300));
        s.extend([8, 0, 3, 0, 0, 0, 2, 7, 7, 0xCE]); // heartbeat on channel 3 with 2 bytes
        s.extend([2, 0, 1, 0, 0, 0, 1, 9, 0xCE]); // content header
        s.extend([3, 0, 1, 0, 0, 0, 2, 1, 2, 0x00]); // bad frame end
        s.extend(HB);
        s.extend(body(2, 10));
        s.extend([9, 0, 0, 0, 0, 0, 0, 0xCE]); // unknown type
        s.extend(HB);
        s.extend(HB);
        s.extend([3, 0, 1, 0x7f, 0, 0, 0, 0xCE]); // over the cap
        s.extend(HB);
        s.extend(HB);
        s.extend(body(1, 5));
        let whole = frames(&[&s], true);
        assert!(count_hb(&whole) >= 3, "{whole:?}");
        for n in [1, 3, 8, 13] {
            let pieces: Vec<&[u8]> = s.chunks(n).collect();
            assert_eq!(frames(&pieces, true), whole, "chunks of {n}");
        }
    }

    #[test]
    fn amqp_1_0_header_is_not_091() {
        let ev = frames(&[b"AMQP\x00\x01\x00\x00"], true);
        assert!(ev.iter().any(|e| matches!(e, AmqpEvent::NotAmqp091 { .. })));
    }

    #[test]
    fn huge_frame_size_loses_sync_instead_of_waiting() {
        let mut s = vec![3, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0];
        s.extend(HB);
        s.extend(HB);
        let ev = frames(&[&s], true);
        assert!(matches!(ev[0], AmqpEvent::LostSync { .. }));
        assert!(ev.iter().any(|e| matches!(e, AmqpEvent::Synced { .. })));
        assert_eq!(count_hb(&ev), 2);
    }

    #[test]
    fn mid_stream_join_resyncs_on_heartbeat() {
        let mut s = body(1, 50)[20..].to_vec();
        s.extend(HB);
        s.extend(body(1, 10));
        let ev = frames(&[&s], false);
        assert!(
            matches!(ev[0], AmqpEvent::Synced { offset: 38, .. }),
            "{ev:?}"
        );
        assert_eq!(count_hb(&ev), 1);
    }

    #[test]
    fn hole_inside_body_keeps_sync() {
        let b = body(1, 100);
        let mut f = Framer::new(true);
        let mut ev = Vec::new();
        f.data(0, &b[..20], &mut |e| ev.push(e));
        f.hole(20, 50, &mut |e| ev.push(e));
        f.data(70, &b[70..], &mut |e| ev.push(e));
        f.data(b.len() as u64, HB, &mut |e| ev.push(e));
        assert_eq!(count_hb(&ev), 1);
        assert!(!ev.iter().any(|e| matches!(e, AmqpEvent::LostSync { .. })));
    }

    #[test]
    fn snaplen_hole_inside_buffered_method_keeps_sync() {
        // A Tune-Ok cut after 14 bytes (snaplen), the rest of its payload
        // missing, then its frame end and a heartbeat.
        let t = tune_ok(4);
        for (cut, tail_in_hole) in [(14usize, 0usize), (12, 0), (14, 1)] {
            let mut f = Framer::new(true);
            let mut ev = Vec::new();
            f.data(0, &t[..cut], &mut |e| ev.push(e));
            let hole_end = 19 + tail_in_hole;
            f.hole(cut as u64, (hole_end - cut) as u64, &mut |e| ev.push(e));
            f.data(hole_end as u64, &t[hole_end..], &mut |e| ev.push(e));
            f.data(t.len() as u64, HB, &mut |e| ev.push(e));
            assert!(
                !ev.iter().any(|e| matches!(e, AmqpEvent::LostSync { .. })),
                "cut {cut}: {ev:?}"
            );
            assert_eq!(count_hb(&ev), 1);
        }
    }

    #[test]
    fn a_method_buffer_grows_with_its_payload_never_past_the_frame() {
        // A Start-Ok claiming 60,000 bytes: 11 bytes on the wire must not
        // reserve 60 KB.
        let mut p = vec![0, 10, 0, 11];
        p.resize(60_000, b'x');
        let frame = method_frame(0, &p);
        let mut f = Framer::new(true);
        f.data(0, &frame[..11], &mut |_| {});
        assert!(
            f.buffered_bytes() <= METHOD_BUFFER_START,
            "{}",
            f.buffered_bytes()
        );
        let mut at = 11;
        while at < 7 + 59_000 {
            f.data(at as u64, &frame[at..at + 1000], &mut |_| {});
            at += 1000;
            assert!(f.buffered_bytes() <= 60_000, "{}", f.buffered_bytes());
            assert!(f.buffered_bytes() >= at - 7);
        }
    }

    #[test]
    fn shedding_a_buffered_method_skips_it_and_keeps_sync() {
        let mut p = vec![0, 10, 0, 11];
        p.resize(30_000, b'x');
        let mut s = method_frame(0, &p);
        s.extend(HB);
        let mut f = Framer::new(true);
        let mut ev = Vec::new();
        f.data(0, &s[..20_000], &mut |e| ev.push(e));
        assert!(f.buffered_bytes() >= 20_000 - 7);
        let shed = f.shed();
        assert_eq!(shed.method, Some((10, 11)));
        assert!(shed.freed >= 20_000 - 7, "{shed:?}");
        assert_eq!(f.buffered_bytes(), 0);
        assert_eq!(method_name(10, 11), "Connection.Start-Ok");
        f.data(20_000, &s[20_000..], &mut |e| ev.push(e));
        assert!(
            !ev.iter()
                .any(|e| matches!(e, AmqpEvent::LostSync { .. } | AmqpEvent::Method(_))),
            "{ev:?}"
        );
        let methods = ev
            .iter()
            .filter(|e| matches!(e, AmqpEvent::Frame(fr) if matches!(fr.kind, FrameKind::Method { .. })))
            .count();
        assert_eq!(methods, 1, "the frame still counts");
        assert_eq!(count_hb(&ev), 1);
    }

    #[test]
    fn shedding_the_resync_buffer_keeps_hunting() {
        let mut f = Framer::new(false);
        let junk = vec![0x41u8; 10_000];
        f.data(0, &junk, &mut |_| {});
        let shed = f.shed();
        assert_eq!(shed.method, None);
        assert_eq!(f.buffered_bytes(), 0);
        let mut ev = Vec::new();
        let mut s = body(1, 20);
        s.extend(HB);
        f.data(10_000, &s, &mut |e| ev.push(e));
        assert_eq!(count_hb(&ev), 1, "{ev:?}");
    }

    #[test]
    fn hole_over_header_hunts_then_recovers() {
        let mut f = Framer::new(true);
        let mut ev = Vec::new();
        f.data(0, HB, &mut |e| ev.push(e));
        f.hole(8, 30, &mut |e| ev.push(e));
        f.data(38, &body(2, 5)[3..], &mut |e| ev.push(e));
        f.data(38 + 10, HB, &mut |e| ev.push(e));
        assert!(ev.iter().any(|e| matches!(e, AmqpEvent::LostSync { .. })));
        assert_eq!(count_hb(&ev), 2, "{ev:?}");
    }

    #[test]
    fn heartbeat_on_channel_is_violation() {
        let ev = frames(&[&[8, 0, 1, 0, 0, 0, 0, 0xCE]], true);
        assert!(ev.iter().any(|e| matches!(e, AmqpEvent::Violation { .. })));
    }

    #[test]
    fn start_ok_response_is_dropped() {
        let mut p = vec![0, 10, 0, 11];
        p.extend_from_slice(&[0, 0, 0, 0]); // empty client_properties table
        p.extend_from_slice(&[5]);
        p.extend_from_slice(b"PLAIN");
        let resp = b"\x00guest\x00s3cr3t-pw";
        p.extend_from_slice(&u32::try_from(resp.len()).unwrap().to_be_bytes());
        p.extend_from_slice(resp);
        p.extend_from_slice(&[5]);
        p.extend_from_slice(b"en_US");
        let ev = frames(&[&method_frame(0, &p)], true);
        let dbg = format!("{ev:?}");
        assert!(dbg.contains("StartOk"), "{dbg}");
        assert!(!dbg.contains("s3cr3t"));
    }
}
