//! TCP reassembly: one [`TcpStream`] per connection, turning decoded segments
//! into per-direction stream events (new bytes, in-order data, holes,
//! retransmissions, ACK/window evidence, SYN/FIN/RST).
//!
//! # Offsets
//!
//! Every direction has a *base* sequence number: ISN+1 when its SYN was seen,
//! otherwise the sequence number of the first segment from that sender that
//! occupies sequence space (payload or FIN; pure ACKs do not fix the base, so a
//! zero-length keep-alive at `next-1` cannot shift it). Sequence numbers are
//! extended to `u64` stream offsets from the base by taking the signed 32-bit
//! difference to the highest offset seen so far (like smoltcp's `SeqNumber`), so
//! streams may cross the 2^32 wrap any number of times. Payload lying before the
//! base is never delivered and never produces an event; it is counted in
//! [`DirectionStats::before_base_bytes`].
//!
//! # What counts as activity
//!
//! [`StreamEvent::NewBytes`] is emitted the first time a range of sequence space
//! is seen from a sender, whether or not its content was captured and whether or
//! not it arrived in order. Bytes below the in-order delivery point (delivered,
//! or skipped as a hole) are "settled": a segment carrying them later is a
//! [`StreamEvent::Retransmission`], even if the capture had declared them
//! missing. Pure ACKs, window updates and keep-alives are not activity.
//!
//! # Capture loss
//!
//! A cumulative ACK proves the receiver had every byte below it. When a sender
//! ACKs peer sequence space that the capture never saw (a gap below the ACK in
//! the peer's out-of-order buffer, or anything beyond the highest byte the
//! capture saw from the peer), the gap is emitted as
//! [`HoleKind::NotCaptured`] for the peer's direction right after the
//! [`StreamEvent::Ack`], and buffered data behind it is delivered. [`TcpStream::finish`]
//! does the same for gaps still open at the end of the input (up to the FIN when
//! one was seen).
//!
//! Before that, whenever a number on the wire lies beyond the highest byte the
//! capture saw from a sender, [`StreamEvent::Unseen`] says which number proves
//! it ([`SeqProof`]): the receiver's cumulative ACK or a SACK block (the bytes
//! arrived), or the sender's own FIN, RST or the sequence number of a segment
//! without data (its next byte to send: the bytes were sent). Only the ACK
//! skips the range as a hole: a range proven by a sequence number or a SACK
//! block may still arrive (a retransmission, or a capture that reordered), and
//! is then ordinary new bytes. Comparing these numbers costs one integer
//! comparison per segment.
//!
//! # Caps (design note)
//!
//! Out-of-order payload is copied into a per-direction `BTreeMap` keyed by
//! stream offset, so memory is bounded by [`ReassemblyConfig`]:
//! `max_out_of_order_bytes` captured bytes (default 1 MiB) and
//! `max_out_of_order_segments` entries (default 256) per direction. When storing
//! a new out-of-order chunk would exceed either cap, the stream gives up on the
//! *oldest* gap instead of dropping the new data: it emits
//! `Hole { kind: Overflow }` from the delivery point up to the earliest buffered
//! chunk (or up to the new chunk when that is earlier or the buffer is empty),
//! delivers everything that became contiguous, and retries. Each step frees at
//! least one entry, so the loop ends, and data keeps flowing to the framer,
//! which only has to resynchronise once after the hole. Bytes that arrive later
//! for a skipped range are reported as retransmissions. A single chunk larger
//! than the byte cap is never stored: the stream skips to it and delivers it
//! directly. Lookups are `O(log n)`, so many small out-of-order segments do not
//! cost `O(n^2)`.

use std::collections::BTreeMap;

use crate::model::{Direction, TcpSegment};

/// Approximate heap overhead of one buffered out-of-order entry (B-tree node
/// share plus `Vec` header), used by [`TcpStream::buffered_bytes`].
const ENTRY_OVERHEAD: usize = 64;

/// Largest window-scale shift allowed by RFC 7323; larger values are clamped.
const MAX_WINDOW_SHIFT: u8 = 14;

/// Limits of the out-of-order buffer, per direction.
///
/// When a cap would be exceeded the stream emits [`HoleKind::Overflow`] up to
/// the earliest buffered chunk and delivers what follows (see the module docs),
/// so memory stays bounded by roughly
/// `max_out_of_order_bytes + max_out_of_order_segments * 64` bytes per direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReassemblyConfig {
    /// Captured out-of-order payload bytes kept per direction (default 1 MiB).
    pub max_out_of_order_bytes: usize,
    /// Out-of-order chunks kept per direction (default 256). Adjacent chunks
    /// arriving in ascending order are merged and count once.
    pub max_out_of_order_segments: usize,
}

impl Default for ReassemblyConfig {
    fn default() -> Self {
        ReassemblyConfig {
            max_out_of_order_bytes: 1 << 20,
            max_out_of_order_segments: 256,
        }
    }
}

/// Why a range of a direction's stream will never be delivered as data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoleKind {
    /// The packet was captured but the snapshot length cut its payload: the bytes were on the wire at that time, content unknown.
    Snaplen,
    /// Sequence space the capture never saw (proved when the peer ACKs past it, or still missing at finish()).
    NotCaptured,
    /// Skipped because the out-of-order buffer cap was hit.
    Overflow,
}

/// What proves that sequence space of a direction was on the wire although
/// the capture never saw it (see [`StreamEvent::Unseen`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqProof {
    /// The receiver's cumulative ACK covers it: the bytes arrived.
    Ack,
    /// A SACK block of the receiver covers it: the bytes arrived.
    Sack,
    /// The sender's FIN lies beyond it: the bytes were sent.
    Fin,
    /// The sender's RST carries a later sequence number: the bytes were sent.
    Rst,
    /// A segment of the sender without data (a pure ACK, a window update)
    /// carries a later sequence number, its next byte to send: the bytes were sent.
    NextSeq,
}

impl SeqProof {
    /// The receiver got the bytes: a capture point on the path saw them
    /// pass (or should have). The others prove only that they were sent:
    /// they may also have been lost before they reached the capture point.
    #[must_use]
    pub fn received(self) -> bool {
        matches!(self, SeqProof::Ack | SeqProof::Sack)
    }
}

/// Largest distance, in bytes, from the peer's last acknowledgement (or the
/// highest byte seen) at which a sequence number or a SACK edge is taken as
/// proof: the largest TCP window (2^30, RFC 7323). Anything further is a
/// number from another connection, not bytes of this one.
const MAX_PROOF_SPAN: u64 = 1 << 30;

/// One fact about one direction of a connection, produced by [`TcpStream`].
///
/// Offsets are stream offsets of the event's direction (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent<'a> {
    /// SYN (or SYN-ACK) seen from this direction's sender. Emitted for every
    /// segment carrying SYN, retransmitted SYNs included.
    Syn,
    /// The sender's ACK field, i.e. evidence that the SENDER's kernel is alive and
    /// acknowledging the PEER's data.
    Ack {
        /// Peer-direction stream offset acknowledged; `None` when the peer's base
        /// is unknown (nothing seen from the peer yet) or the ACK lies before it.
        acked: Option<u64>,
        /// The ACK moved forward versus the sender's previous ACK (`false` for the
        /// sender's first ACK).
        advanced: bool,
        /// The segment carries no payload and no SYN/FIN/RST.
        pure: bool,
        /// Advertised window in bytes: scaled when both SYNs carried the window
        /// scale option (RFC 7323; never on SYN segments), raw otherwise.
        window: u32,
        /// The advertised window is zero.
        zero_window: bool,
    },
    /// First sight of sequence space `[offset, offset+len)` from this sender, whether
    /// or not its content was captured and whether or not it is in order. This is
    /// "activity": the analysis measures silences from these events.
    NewBytes {
        /// First offset.
        offset: u64,
        /// Length in bytes (never 0).
        len: u64,
    },
    /// Payload lying entirely in sequence space already seen (a retransmission; not
    /// fed again). For partial overlaps the seen part is reported here and the
    /// unseen part as [`StreamEvent::NewBytes`]. A retransmitted bare FIN is reported
    /// with `len == 0` at the FIN's offset.
    Retransmission {
        /// First offset.
        offset: u64,
        /// Length in bytes.
        len: u64,
    },
    /// In-order payload bytes for the framer, contiguous with everything
    /// delivered before (`offset` = next expected).
    Data {
        /// Offset of `bytes[0]`.
        offset: u64,
        /// The bytes (never empty).
        bytes: &'a [u8],
    },
    /// In-order content gap: bytes `[offset, offset+len)` will never be delivered;
    /// the framer must skip them.
    Hole {
        /// First skipped offset (= next expected).
        offset: u64,
        /// Skipped length (never 0).
        len: u64,
        /// Why the bytes are missing.
        kind: HoleKind,
    },
    /// Sequence space `[offset, offset+len)` beyond the highest byte seen from
    /// this direction's sender, which `proof` shows was on the wire although
    /// the capture never saw it. Emitted once per range and proof class
    /// (received: ACK, SACK; sent: FIN, RST, next sequence number), before the
    /// event of the segment that proves it (the `Hole` an ACK fills, the
    /// `Fin`, the `Rst`).
    Unseen {
        /// First unseen offset (the end of what was seen).
        offset: u64,
        /// Length in bytes (never 0).
        len: u64,
        /// Which number proves it.
        proof: SeqProof,
    },
    /// TCP keep-alive probe (seq = next-1, 0 or 1 byte, nothing new). As in
    /// Wireshark's heuristic, a 1-byte retransmission of the last byte seen is
    /// indistinguishable from a probe and is reported as one.
    KeepAlive,
    /// FIN from this direction's sender (first time; retransmitted FINs are Retransmission).
    Fin,
    /// RST from this direction's sender (first time; later RSTs are only counted).
    Rst,
}

/// Per-direction counters for reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Segments received from this sender.
    pub segments: u64,
    /// Segments that carried at least one already-seen byte (or a repeated FIN).
    pub retransmitted_segments: u64,
    /// Already-seen payload bytes received again.
    pub retransmitted_bytes: u64,
    /// Total length of [`StreamEvent::NewBytes`] events.
    pub new_bytes: u64,
    /// Bytes delivered as [`StreamEvent::Data`].
    pub bytes_delivered: u64,
    /// Hole bytes of kind [`HoleKind::Snaplen`].
    pub hole_bytes_snaplen: u64,
    /// Hole bytes of kind [`HoleKind::NotCaptured`].
    pub hole_bytes_not_captured: u64,
    /// Hole bytes of kind [`HoleKind::Overflow`].
    pub hole_bytes_overflow: u64,
    /// Segments whose payload was (at least partly) buffered out of order.
    pub out_of_order_segments: u64,
    /// Times a buffer cap forced an overflow skip.
    pub overflow_events: u64,
    /// Highest sequence-space offset seen (exclusive end; includes the FIN's slot).
    pub highest_offset: u64,
    /// Keep-alive probes seen.
    pub keepalives: u64,
    /// Segments carrying SYN.
    pub syn_segments: u64,
    /// Segments carrying RST.
    pub rst_segments: u64,
    /// Payload bytes lying before the base (ignored).
    pub before_base_bytes: u64,
    /// Payload bytes at or after the FIN's offset (ignored).
    pub after_fin_bytes: u64,
}

impl DirectionStats {
    /// Hole bytes of one kind.
    #[must_use]
    pub fn hole_bytes(&self, kind: HoleKind) -> u64 {
        match kind {
            HoleKind::Snaplen => self.hole_bytes_snaplen,
            HoleKind::NotCaptured => self.hole_bytes_not_captured,
            HoleKind::Overflow => self.hole_bytes_overflow,
        }
    }
}

/// A buffered out-of-order range: captured bytes or a snaplen-cut range.
#[derive(Debug)]
enum Chunk {
    Bytes(Vec<u8>),
    Snaplen(u64),
}

impl Chunk {
    fn len(&self) -> u64 {
        match self {
            Chunk::Bytes(b) => b.len() as u64,
            Chunk::Snaplen(n) => *n,
        }
    }

    fn heap_bytes(&self) -> usize {
        match self {
            Chunk::Bytes(b) => b.len(),
            Chunk::Snaplen(_) => 0,
        }
    }
}

/// State of one direction (one sender).
#[derive(Debug, Default)]
struct Half {
    /// Sequence number of stream offset 0.
    base: Option<u32>,
    syn_seen: bool,
    /// Window scale announced in this sender's SYN.
    wscale: Option<u8>,
    /// In-order delivery point: everything below is delivered or skipped.
    next: u64,
    /// Highest sequence-space offset seen, exclusive (≥ `next`).
    high: u64,
    /// Offset of the FIN's sequence slot.
    fin: Option<u64>,
    rst_seen: bool,
    /// This sender's last (highest) ACK number.
    last_ack: Option<u32>,
    /// Offset up to which this sender's own numbers (FIN, RST, next sequence
    /// number) proved bytes sent that the capture never saw.
    sent_proven: u64,
    /// Offset up to which the peer's SACK blocks proved bytes received.
    sack_proven: u64,
    /// Out-of-order chunks, non-overlapping, all starting above `next`.
    ooo: BTreeMap<u64, Chunk>,
    /// Captured bytes held in `ooo`.
    ooo_bytes: usize,
    stats: DirectionStats,
}

/// Signed distance from `b` to `a` in sequence space (RFC 793 comparison).
fn seq_diff(a: u32, b: u32) -> i64 {
    // The cast reinterprets the wrapped difference as a signed 32-bit value.
    i64::from(a.wrapping_sub(b) as i32)
}

impl Half {
    /// Stream offset (possibly negative: before the base) of sequence number `seq`,
    /// extended from the highest offset seen.
    fn offset_of(&self, seq: u32) -> Option<i64> {
        let base = self.base?;
        // Truncation is intended: only the low 32 bits matter for the reference seq.
        let ref_seq = base.wrapping_add(self.high as u32);
        let high = i64::try_from(self.high).unwrap_or(i64::MAX);
        Some(high.saturating_add(seq_diff(seq, ref_seq)))
    }

    fn emit_hole(
        &mut self,
        dir: Direction,
        len: u64,
        kind: HoleKind,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        if len == 0 {
            return;
        }
        match kind {
            HoleKind::Snaplen => self.stats.hole_bytes_snaplen += len,
            HoleKind::NotCaptured => self.stats.hole_bytes_not_captured += len,
            HoleKind::Overflow => self.stats.hole_bytes_overflow += len,
        }
        sink(
            dir,
            StreamEvent::Hole {
                offset: self.next,
                len,
                kind,
            },
        );
        self.next += len;
        self.high = self.high.max(self.next);
    }

    fn emit_data(
        &mut self,
        dir: Direction,
        bytes: &[u8],
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        if bytes.is_empty() {
            return;
        }
        self.stats.bytes_delivered += bytes.len() as u64;
        sink(
            dir,
            StreamEvent::Data {
                offset: self.next,
                bytes,
            },
        );
        self.next += bytes.len() as u64;
        self.high = self.high.max(self.next);
    }

    /// Delivers buffered chunks that are contiguous with `next`.
    #[inline(always)]
    fn drain(&mut self, dir: Direction, sink: &mut dyn FnMut(Direction, StreamEvent<'_>)) {
        while let Some(entry) = self.ooo.first_entry() {
            let start = *entry.key();
            if start > self.next {
                break;
            }
            let chunk = entry.remove();
            self.ooo_bytes -= chunk.heap_bytes();
            // Chunks never start below `next`; trim defensively if one does.
            let skip = self.next - start;
            match chunk {
                Chunk::Bytes(b) => {
                    let from = usize::try_from(skip).unwrap_or(usize::MAX).min(b.len());
                    self.emit_data(dir, &b[from..], sink);
                }
                Chunk::Snaplen(n) => {
                    self.emit_hole(dir, n.saturating_sub(skip), HoleKind::Snaplen, sink);
                }
            }
        }
    }

    /// Skips every gap below `end` as a hole of `kind`, delivering buffered data
    /// between and after the gaps.
    fn fill_to(
        &mut self,
        dir: Direction,
        end: u64,
        kind: HoleKind,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        self.drain(dir, sink);
        while self.next < end {
            let gap_end = match self.ooo.first_key_value() {
                Some((&start, _)) => start.min(end),
                None => end,
            };
            self.emit_hole(dir, gap_end - self.next, kind, sink);
            self.drain(dir, sink);
        }
    }

    /// Places a new chunk starting at `start ≥ next`: delivers it when in order,
    /// otherwise buffers it, applying the caps. Returns whether it was buffered.
    fn place(
        &mut self,
        dir: Direction,
        start: u64,
        chunk: ChunkRef<'_>,
        config: &ReassemblyConfig,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) -> bool {
        loop {
            if start <= self.next {
                let skip = self.next - start;
                match chunk {
                    ChunkRef::Bytes(b) => {
                        let from = usize::try_from(skip).unwrap_or(usize::MAX).min(b.len());
                        self.emit_data(dir, &b[from..], sink);
                    }
                    ChunkRef::Snaplen(n) => {
                        self.emit_hole(dir, n.saturating_sub(skip), HoleKind::Snaplen, sink);
                    }
                }
                self.drain(dir, sink);
                return false;
            }
            // Merge with a directly preceding byte chunk (ascending arrival): no new entry.
            if let ChunkRef::Bytes(b) = chunk {
                if self.ooo_bytes + b.len() <= config.max_out_of_order_bytes {
                    if let Some((&pstart, Chunk::Bytes(prev))) =
                        self.ooo.range_mut(..start).next_back()
                    {
                        if pstart + prev.len() as u64 == start {
                            prev.extend_from_slice(b);
                            self.ooo_bytes += b.len();
                            return true;
                        }
                    }
                }
            }
            let heap = match chunk {
                ChunkRef::Bytes(b) => b.len(),
                ChunkRef::Snaplen(_) => 0,
            };
            if self.ooo.len() < config.max_out_of_order_segments
                && self.ooo_bytes + heap <= config.max_out_of_order_bytes
            {
                let owned = match chunk {
                    ChunkRef::Bytes(b) => Chunk::Bytes(b.to_vec()),
                    ChunkRef::Snaplen(n) => Chunk::Snaplen(n),
                };
                self.ooo.insert(start, owned);
                self.ooo_bytes += heap;
                return true;
            }
            // Cap hit: give up on the oldest gap (up to the earliest chunk, the new one included).
            self.stats.overflow_events += 1;
            let target = match self.ooo.first_key_value() {
                Some((&first, _)) => first.min(start),
                None => start,
            };
            self.emit_hole(dir, target - self.next, HoleKind::Overflow, sink);
            self.drain(dir, sink);
        }
    }

    /// Splits `[s, e)` (with `s ≥ next`) into ranges not yet seen (`new`) and ranges
    /// already buffered (`old`).
    fn split_seen(&self, s: u64, e: u64, new: &mut Vec<(u64, u64)>, old: &mut Vec<(u64, u64)>) {
        let mut cur = s;
        // The chunk starting before `s` may cover its beginning.
        if let Some((&ps, c)) = self.ooo.range(..s).next_back() {
            let pe = ps + c.len();
            if pe > s {
                let oe = pe.min(e);
                old.push((s, oe));
                cur = oe;
            }
        }
        for (&cs, c) in self.ooo.range(s..e) {
            if cur >= e {
                break;
            }
            if cs > cur {
                new.push((cur, cs));
            }
            let ce = (cs + c.len()).min(e);
            if ce > cs.max(cur) {
                old.push((cs.max(cur), ce));
            }
            cur = cur.max(ce);
        }
        if cur < e {
            new.push((cur, e));
        }
    }
}

/// A borrowed chunk before it is delivered or copied into the buffer.
#[derive(Clone, Copy)]
enum ChunkRef<'a> {
    Bytes(&'a [u8]),
    Snaplen(u64),
}

/// Reassembly state for both directions of ONE connection.
///
/// Feed every segment of the connection, in capture order, to
/// [`TcpStream::on_segment`], then call [`TcpStream::finish`] at end of input.
/// Never panics; memory is bounded by the [`ReassemblyConfig`] caps.
#[derive(Debug)]
pub struct TcpStream {
    config: ReassemblyConfig,
    halves: [Half; 2],
}

/// Ranges `[start, end)` of stream offsets.
type Parts = Vec<(u64, u64)>;

thread_local! {
    /// Scratch buffers for the new and already-seen parts of a segment,
    /// reused across segments and shared by all streams of the thread (in
    /// every stream they would cost ~50 bytes plus their heap per connection).
    /// Taken out for the call and put back after, so a nested call simply
    /// gets fresh ones.
    static PARTS: std::cell::Cell<(Parts, Parts)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

impl TcpStream {
    /// A stream with no segments seen yet.
    #[must_use]
    pub fn new(config: ReassemblyConfig) -> Self {
        TcpStream {
            config,
            halves: [Half::default(), Half::default()],
        }
    }

    /// Starts loading the sequence state of both directions (see
    /// [`crate::engine::Engine::process_batch`]).
    pub fn prefetch(&self) {
        for h in &self.halves {
            crate::prefetch::line(h);
            crate::prefetch::line(&h.next);
            crate::prefetch::line(&h.last_ack);
            crate::prefetch::line(&h.stats);
            crate::prefetch::line(&h.stats.highest_offset);
            crate::prefetch::line(&h.syn_seen);
        }
    }

    /// Processes one segment. `dir` is the packet's direction relative to the
    /// connection's `FlowKey`.
    ///
    /// Events, in order: `Syn`, `Ack` (sender's direction), `Hole{NotCaptured}`
    /// and data it releases for the PEER's direction (when the ACK proves capture
    /// loss), then for the sender's direction `NewBytes`, `Retransmission`,
    /// `Data`/`Hole` deliveries, `KeepAlive`, `Fin`, `Rst`. Payload of RST
    /// segments is not stream data and is ignored.
    pub fn on_segment(
        &mut self,
        dir: Direction,
        seg: &TcpSegment<'_>,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        let si = dir.index();
        let flags = seg.flags;
        self.halves[si].stats.segments += 1;

        // SYN: fixes the base (unless bytes were already placed) and the window scale.
        if flags.syn {
            let s = &mut self.halves[si];
            s.stats.syn_segments += 1;
            let untouched = s.high == 0 && s.next == 0 && s.ooo.is_empty() && s.fin.is_none();
            if s.base.is_none() || (!s.syn_seen && untouched) {
                s.base = Some(seg.seq.wrapping_add(1));
            }
            if !s.syn_seen {
                s.wscale = seg.window_scale.map(|w| w.min(MAX_WINDOW_SHIFT));
            }
            s.syn_seen = true;
            sink(dir, StreamEvent::Syn);
        }

        if flags.ack {
            self.on_ack(dir, seg, sink);
        }

        let s = &mut self.halves[si];
        let captured_len = seg.payload.len().min(seg.payload_len as usize);
        let payload = &seg.payload[..captured_len];
        let plen = u64::from(seg.payload_len);
        if s.base.is_none() && !flags.rst && (plen > 0 || flags.fin) {
            s.base = Some(seg.seq);
        }
        let data_seq = seg.seq.wrapping_add(u32::from(flags.syn));
        let off = s.offset_of(data_seq);

        // Keep-alive: seq = next-1, 0 or 1 byte, no SYN/FIN/RST.
        let keepalive = !flags.syn
            && !flags.fin
            && !flags.rst
            && plen <= 1
            && off.is_some_and(|o| o == i64::try_from(s.high).unwrap_or(i64::MAX) - 1);

        if keepalive {
            s.stats.keepalives += 1;
        } else if let (Some(off), false) = (off, flags.rst) {
            let saw_payload = plen > 0 && self.on_payload(dir, off, payload, plen, sink);
            if flags.fin {
                self.on_fin(dir, off.saturating_add_unsigned(plen), saw_payload, sink);
            } else if plen == 0 && !flags.syn {
                // A segment without data carries the sender's next byte to send.
                self.prove_sent(dir, off, SeqProof::NextSeq, sink);
            }
        }

        // An RST from a sender still opening (its SYN seen, nothing else,
        // no SYN from the peer) answers a segment of another connection on
        // the same 4-tuple (RFC 793: in SYN-SENT an unacceptable ACK gets an
        // RST with that ACK's number, and the connection attempt goes on).
        let stray_rst = flags.rst && self.opening(dir) && off != Some(0);
        if flags.rst && !stray_rst {
            if let Some(off) = off {
                self.prove_sent(dir, off, SeqProof::Rst, sink);
            }
        }
        let s = &mut self.halves[si];
        if keepalive {
            sink(dir, StreamEvent::KeepAlive);
        }
        if flags.rst {
            s.stats.rst_segments += 1;
            if !s.rst_seen && !stray_rst {
                s.rst_seen = true;
                sink(dir, StreamEvent::Rst);
            }
        }
        self.sync_stats();
    }

    /// The sender of `dir` sent its SYN and nothing else, and no SYN came
    /// from its peer yet (SYN-SENT as far as the capture knows).
    fn opening(&self, dir: Direction) -> bool {
        let (s, p) = (
            &self.halves[dir.index()],
            &self.halves[dir.reverse().index()],
        );
        s.syn_seen && s.high == 0 && s.fin.is_none() && !p.syn_seen
    }

    /// The sender's own number `off` (FIN, RST, next sequence number) lies
    /// beyond the highest byte seen: emits [`StreamEvent::Unseen`] once for
    /// the new part. Nothing is skipped: the bytes may still arrive. Runs for
    /// every segment without data: one comparison unless it proves something.
    #[inline]
    fn prove_sent(
        &mut self,
        dir: Direction,
        off: i64,
        proof: SeqProof,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        let s = &self.halves[dir.index()];
        let Ok(off) = u64::try_from(off) else {
            return;
        };
        if off > s.high.max(s.sent_proven) {
            self.prove_sent_beyond(dir, off, proof, sink);
        }
    }

    /// [`TcpStream::prove_sent`] for a number beyond what was seen.
    #[cold]
    fn prove_sent_beyond(
        &mut self,
        dir: Direction,
        off: u64,
        proof: SeqProof,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        let reference = self.peer_ack_offset(dir);
        let s = &mut self.halves[dir.index()];
        let off = s.fin.map_or(off, |f| off.min(f));
        let from = s.high.max(s.sent_proven);
        if off > from && off - reference.unwrap_or(s.high).min(s.high) <= MAX_PROOF_SPAN {
            s.sent_proven = off;
            sink(
                dir,
                StreamEvent::Unseen {
                    offset: from,
                    len: off - from,
                    proof,
                },
            );
        }
    }

    /// The peer's last acknowledgement of `dir`'s data, as a stream offset of `dir`.
    fn peer_ack_offset(&self, dir: Direction) -> Option<u64> {
        let ack = self.halves[dir.reverse().index()].last_ack?;
        let off = self.halves[dir.index()].offset_of(ack)?;
        u64::try_from(off).ok()
    }

    /// Copies derived values into the public counters.
    fn sync_stats(&mut self) {
        for h in &mut self.halves {
            h.stats.highest_offset = h.high;
        }
    }

    /// The sender's ACK: emits `Ack` and proves capture loss in the peer's direction.
    fn on_ack(
        &mut self,
        dir: Direction,
        seg: &TcpSegment<'_>,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        let (si, pi) = (dir.index(), dir.reverse().index());
        let acked_off = self.halves[pi].offset_of(seg.ack);
        let mut acked = acked_off.and_then(|o| u64::try_from(o).ok());
        // Before its own SYN, a sender whose peer is still opening can only
        // acknowledge that SYN: any other number acknowledges another
        // connection on the same 4-tuple (a challenge ACK of the old one).
        if !self.halves[si].syn_seen && self.opening(dir.reverse()) && acked != Some(0) {
            acked = None;
        }
        let s = &mut self.halves[si];
        let advanced = s.last_ack.is_some_and(|last| seq_diff(seg.ack, last) > 0);
        if advanced || s.last_ack.is_none() {
            s.last_ack = Some(seg.ack);
        }
        let shift = match (s.wscale, self.halves[pi].wscale) {
            (Some(own), Some(_)) if !seg.flags.syn => own,
            _ => 0,
        };
        let window = u32::from(seg.window) << shift;
        let pure = seg.payload_len == 0 && !seg.flags.syn && !seg.flags.fin && !seg.flags.rst;
        sink(
            dir,
            StreamEvent::Ack {
                acked,
                advanced,
                pure,
                window,
                zero_window: seg.window == 0,
            },
        );
        let Some(ack) = acked else {
            return;
        };
        let p = &mut self.halves[pi];
        // The ACK covers the FIN's slot too; only data space can be a hole.
        let end = p.fin.map_or(ack, |f| ack.min(f));
        if end > p.next {
            // `high` >= `next`: only an ACK past the delivery point can be past it.
            if end > p.high {
                sink(
                    dir.reverse(),
                    StreamEvent::Unseen {
                        offset: p.high,
                        len: end - p.high,
                        proof: SeqProof::Ack,
                    },
                );
            }
            p.fill_to(dir.reverse(), end, HoleKind::NotCaptured, sink);
        }
        // SACK blocks lie above the cumulative ACK, within the window.
        let Some(right) = seg.sack_right else {
            return;
        };
        let Some(edge) = p.offset_of(right).and_then(|o| u64::try_from(o).ok()) else {
            return;
        };
        let edge = p.fin.map_or(edge, |f| edge.min(f));
        let from = p.high.max(p.sack_proven);
        if edge > from && edge - ack <= MAX_PROOF_SPAN {
            p.sack_proven = edge;
            sink(
                dir.reverse(),
                StreamEvent::Unseen {
                    offset: from,
                    len: edge - from,
                    proof: SeqProof::Sack,
                },
            );
        }
    }

    /// Classifies and places payload at stream offset `off` (may be negative).
    /// Returns whether any payload event (NewBytes/Retransmission) was emitted.
    fn on_payload(
        &mut self,
        dir: Direction,
        off: i64,
        payload: &[u8],
        plen: u64,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) -> bool {
        let config = self.config;
        let s = &mut self.halves[dir.index()];
        let (mut new, mut old) = PARTS.take();
        new.clear();
        old.clear();

        // Clip to [0, fin).
        let seg_start = off;
        let seg_end = off.saturating_add_unsigned(plen);
        let s0 = u64::try_from(seg_start.max(0)).unwrap_or(0);
        let mut e0 = u64::try_from(seg_end.max(0)).unwrap_or(0);
        if seg_start < 0 {
            s.stats.before_base_bytes += seg_start.unsigned_abs().min(plen);
        }
        if let Some(fin) = s.fin {
            if e0 > fin {
                s.stats.after_fin_bytes += e0 - fin.max(s0);
                e0 = fin.max(s0).min(e0);
            }
        }
        if s0 >= e0 {
            PARTS.set((new, old));
            return false;
        }
        // Below the delivery point everything is settled (retransmitted).
        if s0 < s.next {
            old.push((s0, e0.min(s.next)));
        }
        let s1 = s0.max(s.next);
        if s1 < e0 {
            s.split_seen(s1, e0, &mut new, &mut old);
        }

        for &(a, b) in &new {
            s.stats.new_bytes += b - a;
            s.high = s.high.max(b);
            sink(
                dir,
                StreamEvent::NewBytes {
                    offset: a,
                    len: b - a,
                },
            );
        }
        if !old.is_empty() {
            s.stats.retransmitted_segments += 1;
        }
        for &(a, b) in &old {
            s.stats.retransmitted_bytes += b - a;
            sink(
                dir,
                StreamEvent::Retransmission {
                    offset: a,
                    len: b - a,
                },
            );
        }
        let emitted = !new.is_empty() || !old.is_empty();

        // Offsets of the captured part within the stream: [seg_start, cap_end).
        let cap_end = seg_start.saturating_add_unsigned(payload.len() as u64);
        let mut buffered = false;
        for &(a, b) in &new {
            let ai = i64::try_from(a).unwrap_or(i64::MAX);
            let bi = i64::try_from(b).unwrap_or(i64::MAX);
            // Captured portion of this part.
            let ca = ai;
            let cb = bi.min(cap_end).max(ai);
            if cb > ca {
                let from = usize::try_from(ca - seg_start).unwrap_or(usize::MAX);
                let to = usize::try_from(cb - seg_start).unwrap_or(usize::MAX);
                if let Some(bytes) = payload.get(from..to) {
                    buffered |= s.place(dir, a, ChunkRef::Bytes(bytes), &config, sink);
                }
            }
            if bi > cb {
                let start = u64::try_from(cb).unwrap_or(0);
                buffered |= s.place(dir, start, ChunkRef::Snaplen(b - start), &config, sink);
            }
        }
        if buffered {
            s.stats.out_of_order_segments += 1;
        }
        PARTS.set((new, old));
        emitted
    }

    /// Records a FIN at stream offset `fin` (may be negative for a bogus FIN).
    fn on_fin(
        &mut self,
        dir: Direction,
        fin: i64,
        saw_payload: bool,
        sink: &mut dyn FnMut(Direction, StreamEvent<'_>),
    ) {
        let s = &mut self.halves[dir.index()];
        if let Some(first) = s.fin {
            if !saw_payload {
                s.stats.retransmitted_segments += 1;
                sink(
                    dir,
                    StreamEvent::Retransmission {
                        offset: first,
                        len: 0,
                    },
                );
            }
            return;
        }
        let Ok(fin) = u64::try_from(fin) else {
            return;
        };
        // A FIN below the delivery point (inside a skipped hole) is kept where data ends.
        let fin = fin.max(s.next);
        let from = s.high.max(s.sent_proven);
        if fin > from && fin - s.high <= MAX_PROOF_SPAN {
            s.sent_proven = fin;
            sink(
                dir,
                StreamEvent::Unseen {
                    offset: from,
                    len: fin - from,
                    proof: SeqProof::Fin,
                },
            );
        }
        s.fin = Some(fin);
        s.high = s.high.max(fin + 1);
        // Buffered data past the FIN can never be delivered: drop it.
        let mut beyond = s.ooo.split_off(&fin);
        for c in beyond.values() {
            s.stats.after_fin_bytes += c.len();
            s.ooo_bytes -= c.heap_bytes();
        }
        beyond.clear();
        if let Some((&start, chunk)) = s.ooo.iter_mut().next_back() {
            let keep = fin - start;
            if chunk.len() > keep {
                s.stats.after_fin_bytes += chunk.len() - keep;
                match chunk {
                    Chunk::Bytes(b) => {
                        let cut = usize::try_from(keep).unwrap_or(usize::MAX).min(b.len());
                        s.ooo_bytes -= b.len() - cut;
                        b.truncate(cut);
                    }
                    Chunk::Snaplen(n) => *n = keep,
                }
            }
        }
        sink(dir, StreamEvent::Fin);
    }

    /// End of input: report still-missing out-of-order ranges as holes
    /// ([`HoleKind::NotCaptured`]) and deliver buffered data after them. When a FIN
    /// was seen, the stream is completed up to it. Idempotent.
    pub fn finish(&mut self, sink: &mut dyn FnMut(Direction, StreamEvent<'_>)) {
        for dir in [Direction::AtoB, Direction::BtoA] {
            let h = &mut self.halves[dir.index()];
            let end = match h.fin {
                Some(fin) => fin,
                None => h
                    .ooo
                    .last_key_value()
                    .map_or(h.next, |(&start, c)| start + c.len()),
            };
            h.fill_to(dir, end, HoleKind::NotCaptured, sink);
        }
        self.sync_stats();
    }

    /// Per-direction counters (retransmitted segments/bytes, hole bytes by kind,
    /// out-of-order segments buffered, overflow events, highest offset seen, bytes
    /// delivered) for reports.
    #[must_use]
    pub fn stats(&self, dir: Direction) -> &DirectionStats {
        &self.halves[dir.index()].stats
    }

    /// Whether a SYN with sequence number `seq` from `dir` repeats the SYN
    /// that opened this direction, before anything else was sent: a
    /// retransmission. Any other SYN opens a new connection on the 4-tuple.
    #[must_use]
    pub fn repeats_syn(&self, dir: Direction, seq: u32) -> bool {
        let h = &self.halves[dir.index()];
        h.syn_seen && h.base == Some(seq.wrapping_add(1)) && h.high == 0 && h.fin.is_none()
    }

    /// Whether `seg`, sent in `dir`, starts exactly at the end of the
    /// sequence space seen from its sender (new data right after the last
    /// byte, or a segment without data carrying the next byte to send): its
    /// sender had sent nothing beyond what was seen.
    #[must_use]
    pub fn starts_at_high(&self, dir: Direction, seg: &TcpSegment<'_>) -> bool {
        let h = &self.halves[dir.index()];
        let seq = seg.seq.wrapping_add(u32::from(seg.flags.syn));
        h.offset_of(seq) == i64::try_from(h.high).ok()
    }

    /// Whether a SYN was seen for the direction (connection joined mid-stream otherwise).
    #[must_use]
    pub fn syn_seen(&self, dir: Direction) -> bool {
        self.halves[dir.index()].syn_seen
    }

    /// Whether a FIN was seen from the direction's sender.
    #[must_use]
    pub fn fin_seen(&self, dir: Direction) -> bool {
        self.halves[dir.index()].fin.is_some()
    }

    /// Gives up every out-of-order buffer (the engine's global memory
    /// budget): the missing ranges before and between the buffered chunks
    /// become `overflow` holes and the buffered data is delivered, so the
    /// buffers are empty afterwards. Returns the hole bytes skipped.
    pub fn shed(&mut self, sink: &mut dyn FnMut(Direction, StreamEvent<'_>)) -> u64 {
        let mut skipped = 0;
        for dir in [Direction::AtoB, Direction::BtoA] {
            let h = &mut self.halves[dir.index()];
            let Some(end) = h.ooo.last_key_value().map(|(&at, c)| at + c.len()) else {
                continue;
            };
            let before = h.stats.hole_bytes_overflow;
            h.stats.overflow_events += 1;
            h.fill_to(dir, end, HoleKind::Overflow, sink);
            skipped += h.stats.hole_bytes_overflow - before;
        }
        skipped
    }

    /// Approximate heap bytes held (for memory caps): buffered out-of-order
    /// payload plus a per-entry overhead estimate.
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.halves
            .iter()
            .map(|h| h.ooo_bytes + h.ooo.len() * ENTRY_OVERHEAD)
            .sum()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::model::{Endpoint, TcpFlags, Timestamp};
    use std::net::{IpAddr, Ipv4Addr};
    use Direction::{AtoB, BtoA};

    /// Owned copy of a [`StreamEvent`] for assertions.
    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Ev {
        Syn,
        Ack {
            acked: Option<u64>,
            advanced: bool,
            pure: bool,
            window: u32,
            zero_window: bool,
        },
        New(u64, u64),
        Re(u64, u64),
        Data(u64, Vec<u8>),
        Hole(u64, u64, HoleKind),
        Unseen(u64, u64, SeqProof),
        Ka,
        Fin,
        Rst,
    }

    fn own(e: StreamEvent<'_>) -> Ev {
        match e {
            StreamEvent::Syn => Ev::Syn,
            StreamEvent::Ack {
                acked,
                advanced,
                pure,
                window,
                zero_window,
            } => Ev::Ack {
                acked,
                advanced,
                pure,
                window,
                zero_window,
            },
            StreamEvent::NewBytes { offset, len } => Ev::New(offset, len),
            StreamEvent::Retransmission { offset, len } => Ev::Re(offset, len),
            StreamEvent::Data { offset, bytes } => Ev::Data(offset, bytes.to_vec()),
            StreamEvent::Hole { offset, len, kind } => Ev::Hole(offset, len, kind),
            StreamEvent::Unseen { offset, len, proof } => Ev::Unseen(offset, len, proof),
            StreamEvent::KeepAlive => Ev::Ka,
            StreamEvent::Fin => Ev::Fin,
            StreamEvent::Rst => Ev::Rst,
        }
    }

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    /// A data/ACK-less segment; adjust fields with struct update syntax.
    fn seg(seq: u32, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            ts: Timestamp(0),
            src: ep(1),
            dst: ep(2),
            seq,
            ack: 0,
            flags: TcpFlags::default(),
            window: 1000,
            window_scale: None,
            payload,
            ip_id: 0,
            tsval: None,
            sack_right: None,
            payload_len: u32::try_from(payload.len()).unwrap(),
        }
    }

    fn acking(seq: u32, ack: u32, payload: &[u8]) -> TcpSegment<'_> {
        TcpSegment {
            ack,
            flags: TcpFlags {
                ack: true,
                ..TcpFlags::default()
            },
            ..seg(seq, payload)
        }
    }

    fn syn(seq: u32, ack: Option<u32>, wscale: Option<u8>) -> TcpSegment<'static> {
        TcpSegment {
            ack: ack.unwrap_or(0),
            flags: TcpFlags {
                syn: true,
                ack: ack.is_some(),
                ..TcpFlags::default()
            },
            window_scale: wscale,
            ..seg(seq, &[])
        }
    }

    fn with_flags(mut s: TcpSegment<'_>, f: impl FnOnce(&mut TcpFlags)) -> TcpSegment<'_> {
        f(&mut s.flags);
        s
    }

    struct H {
        st: TcpStream,
    }

    impl H {
        fn new() -> Self {
            H::with(ReassemblyConfig::default())
        }
        fn with(config: ReassemblyConfig) -> Self {
            H {
                st: TcpStream::new(config),
            }
        }
        fn feed(&mut self, dir: Direction, s: &TcpSegment<'_>) -> Vec<(Direction, Ev)> {
            let mut out = Vec::new();
            self.st
                .on_segment(dir, s, &mut |d, e| out.push((d, own(e))));
            out
        }
        fn finish(&mut self) -> Vec<(Direction, Ev)> {
            let mut out = Vec::new();
            self.st.finish(&mut |d, e| out.push((d, own(e))));
            out
        }
        /// Handshake: A ISN 1000, B ISN 5000 (bases 1001 / 5001).
        fn handshake(&mut self) {
            self.feed(AtoB, &syn(1000, None, None));
            self.feed(BtoA, &syn(5000, Some(1001), None));
            self.feed(AtoB, &acking(1001, 5001, &[]));
        }
    }

    fn only(dir: Direction, evs: &[(Direction, Ev)]) -> Vec<Ev> {
        evs.iter()
            .filter(|(d, _)| *d == dir)
            .map(|(_, e)| e.clone())
            .filter(|e| !matches!(e, Ev::Ack { .. }))
            .collect()
    }

    #[test]
    fn handshake_sets_base_and_orders_events() {
        let mut h = H::new();
        assert_eq!(h.feed(AtoB, &syn(1000, None, None)), vec![(AtoB, Ev::Syn)]);
        let ev = h.feed(BtoA, &syn(5000, Some(1001), None));
        assert_eq!(
            ev,
            vec![
                (BtoA, Ev::Syn),
                (
                    BtoA,
                    Ev::Ack {
                        acked: Some(0),
                        advanced: false,
                        pure: false,
                        window: 1000,
                        zero_window: false
                    }
                ),
            ]
        );
        let s = with_flags(acking(1001, 5001, b"hello"), |f| f.fin = true);
        let ev = h.feed(AtoB, &s);
        assert_eq!(
            ev,
            vec![
                (
                    AtoB,
                    Ev::Ack {
                        acked: Some(0),
                        advanced: false,
                        pure: false,
                        window: 1000,
                        zero_window: false
                    }
                ),
                (AtoB, Ev::New(0, 5)),
                (AtoB, Ev::Data(0, b"hello".to_vec())),
                (AtoB, Ev::Fin),
            ]
        );
        assert!(h.st.syn_seen(AtoB) && h.st.syn_seen(BtoA));
        assert!(h.st.fin_seen(AtoB));
        assert_eq!(h.st.stats(AtoB).highest_offset, 6);
    }

    #[test]
    fn mid_stream_base_is_first_payload_seq_not_pure_ack() {
        let mut h = H::new();
        // A keep-alive-like zero-length segment at next-1 must not fix the base.
        assert!(only(AtoB, &h.feed(AtoB, &seg(776, &[]))).is_empty());
        let ev = h.feed(AtoB, &seg(777, b"abc"));
        assert_eq!(
            only(AtoB, &ev),
            vec![Ev::New(0, 3), Ev::Data(0, b"abc".to_vec())]
        );
        assert!(!h.st.syn_seen(AtoB));
    }

    #[test]
    fn data_before_base_is_ignored() {
        let mut h = H::new();
        h.handshake();
        // Offsets -11..9: 11 bytes before the base, 9 new.
        let payload: Vec<u8> = (0..20).collect();
        let ev = h.feed(AtoB, &seg(990, &payload));
        assert_eq!(
            only(AtoB, &ev),
            vec![Ev::New(0, 9), Ev::Data(0, payload[11..].to_vec())]
        );
        assert_eq!(h.st.stats(AtoB).before_base_bytes, 11);
        // Entirely before the base: nothing.
        assert!(only(AtoB, &h.feed(AtoB, &seg(900, b"xyz"))).is_empty());

        // Mid-stream join: an earlier segment than the first one seen.
        let mut h = H::new();
        h.feed(AtoB, &seg(5000, b"later"));
        assert!(only(AtoB, &h.feed(AtoB, &seg(4000, &[7; 100]))).is_empty());
        assert_eq!(h.st.stats(AtoB).before_base_bytes, 100);
    }

    #[test]
    fn sequence_wrap_keeps_offsets_contiguous() {
        let mut h = H::new();
        let isn = u32::MAX - 2; // base = u32::MAX - 1
        h.feed(AtoB, &syn(isn, None, None));
        h.feed(BtoA, &syn(7, Some(isn.wrapping_add(1)), None));
        let mut data = Vec::new();
        let mut seq = isn.wrapping_add(1);
        for i in 0..5u8 {
            let p = [i; 3];
            let ev = h.feed(AtoB, &seg(seq, &p));
            assert_eq!(
                only(AtoB, &ev),
                vec![
                    Ev::New(u64::from(i) * 3, 3),
                    Ev::Data(u64::from(i) * 3, p.to_vec())
                ]
            );
            data.extend_from_slice(&p);
            seq = seq.wrapping_add(3);
        }
        // The ACK after the wrap maps to offset 15.
        let ev = h.feed(BtoA, &acking(8, seq, &[]));
        assert!(matches!(
            ev[0],
            (
                BtoA,
                Ev::Ack {
                    acked: Some(15),
                    advanced: true,
                    ..
                }
            )
        ));
        // A retransmission from before the wrap is recognised.
        let ev = h.feed(AtoB, &seg(isn.wrapping_add(1), &[0; 3]));
        assert_eq!(only(AtoB, &ev), vec![Ev::Re(0, 3)]);
    }

    #[test]
    fn snaplen_in_order_gives_data_then_hole() {
        let mut h = H::new();
        h.handshake();
        let s = TcpSegment {
            ip_id: 0,
            tsval: None,
            sack_right: None,
            payload_len: 10,
            ..seg(1001, b"abcd")
        };
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &s)),
            vec![
                Ev::New(0, 10),
                Ev::Data(0, b"abcd".to_vec()),
                Ev::Hole(4, 6, HoleKind::Snaplen)
            ]
        );
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1011, b"z"))),
            vec![Ev::New(10, 1), Ev::Data(10, b"z".to_vec())]
        );
        assert_eq!(h.st.stats(AtoB).hole_bytes(HoleKind::Snaplen), 6);
        // Captured bytes beyond payload_len (e.g. Ethernet padding) are ignored.
        let s = TcpSegment {
            ip_id: 0,
            tsval: None,
            sack_right: None,
            payload_len: 2,
            ..seg(1012, b"xy\0\0\0")
        };
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &s)),
            vec![Ev::New(11, 2), Ev::Data(11, b"xy".to_vec())]
        );
    }

    #[test]
    fn snaplen_out_of_order_is_delivered_in_order() {
        let mut h = H::new();
        h.handshake();
        let cut = TcpSegment {
            ip_id: 0,
            tsval: None,
            sack_right: None,
            payload_len: 10,
            ..seg(1011, b"klm")
        };
        assert_eq!(only(AtoB, &h.feed(AtoB, &cut)), vec![Ev::New(10, 10)]);
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1001, b"0123456789"))),
            vec![
                Ev::New(0, 10),
                Ev::Data(0, b"0123456789".to_vec()),
                Ev::Data(10, b"klm".to_vec()),
                Ev::Hole(13, 7, HoleKind::Snaplen),
            ]
        );
        assert_eq!(h.st.stats(AtoB).out_of_order_segments, 1);
    }

    #[test]
    fn out_of_order_is_buffered_and_delivered_when_gap_fills() {
        let mut h = H::new();
        h.handshake();
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1021, b"cc"))),
            vec![Ev::New(20, 2)]
        );
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1011, &[b'b'; 10]))),
            vec![Ev::New(10, 10)]
        );
        assert!(h.st.buffered_bytes() >= 12);
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1001, &[b'a'; 10]))),
            vec![
                Ev::New(0, 10),
                Ev::Data(0, vec![b'a'; 10]),
                Ev::Data(10, vec![b'b'; 10]),
                Ev::Data(20, b"cc".to_vec()),
            ]
        );
        assert_eq!(h.st.buffered_bytes(), 0);
        assert_eq!(h.st.stats(AtoB).bytes_delivered, 22);
    }

    #[test]
    fn retransmissions_are_not_fed_again() {
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &seg(1001, b"0123456789"));
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1001, b"0123456789"))),
            vec![Ev::Re(0, 10)]
        );
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1006, b"56789ABCDE"))),
            vec![
                Ev::New(10, 5),
                Ev::Re(5, 5),
                Ev::Data(10, b"ABCDE".to_vec())
            ]
        );
        let st = h.st.stats(AtoB);
        assert_eq!((st.retransmitted_segments, st.retransmitted_bytes), (2, 15));
    }

    #[test]
    fn overlap_with_buffered_keeps_first_copy_and_splits_new_parts() {
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &seg(1021, &[b'x'; 10])); // [20,30) buffered
        let ev = h.feed(AtoB, &seg(1011, &[b'y'; 30])); // [10,40)
        assert_eq!(
            only(AtoB, &ev),
            vec![Ev::New(10, 10), Ev::New(30, 10), Ev::Re(20, 10)]
        );
        let ev = h.feed(AtoB, &seg(1001, &[b'z'; 10]));
        assert_eq!(
            only(AtoB, &ev),
            vec![
                Ev::New(0, 10),
                Ev::Data(0, vec![b'z'; 10]),
                Ev::Data(10, vec![b'y'; 10]),
                // [30,40) arrived right after the buffered [20,30) and was merged into it.
                Ev::Data(20, [[b'x'; 10], [b'y'; 10]].concat()),
            ]
        );
    }

    #[test]
    fn segment_cap_skips_oldest_gap_as_overflow() {
        let mut h = H::with(ReassemblyConfig {
            max_out_of_order_bytes: 1 << 20,
            max_out_of_order_segments: 2,
        });
        h.handshake();
        h.feed(AtoB, &seg(1011, b"AAAAA")); // [10,15)
        h.feed(AtoB, &seg(1021, b"BBBBB")); // [20,25)
        let ev = h.feed(AtoB, &seg(1031, b"CCCCC")); // [30,35): cap hit
        assert_eq!(
            only(AtoB, &ev),
            vec![
                Ev::New(30, 5),
                Ev::Hole(0, 10, HoleKind::Overflow),
                Ev::Data(10, b"AAAAA".to_vec()),
            ]
        );
        let st = h.st.stats(AtoB);
        assert_eq!((st.overflow_events, st.hole_bytes_overflow), (1, 10));
        // Late bytes for the skipped range are retransmissions.
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1001, &[0; 10]))),
            vec![Ev::Re(0, 10)]
        );
        let ev = h.finish();
        assert_eq!(
            only(AtoB, &ev),
            vec![
                Ev::Hole(15, 5, HoleKind::NotCaptured),
                Ev::Data(20, b"BBBBB".to_vec()),
                Ev::Hole(25, 5, HoleKind::NotCaptured),
                Ev::Data(30, b"CCCCC".to_vec()),
            ]
        );
    }

    #[test]
    fn byte_cap_bounds_memory() {
        let mut h = H::with(ReassemblyConfig {
            max_out_of_order_bytes: 8,
            max_out_of_order_segments: 256,
        });
        h.handshake();
        // Larger than the whole cap: skipped to and delivered directly.
        let ev = h.feed(AtoB, &seg(1011, &[1; 20]));
        assert_eq!(
            only(AtoB, &ev),
            vec![
                Ev::New(10, 20),
                Ev::Hole(0, 10, HoleKind::Overflow),
                Ev::Data(10, vec![1; 20]),
            ]
        );
        // Many out-of-order segments never hold more than the cap.
        let mut seq = 1031u32;
        for _ in 0..1000 {
            seq += 10;
            h.feed(AtoB, &seg(seq, &[2; 3]));
            assert!(h.st.buffered_bytes() <= 8 + 3 * ENTRY_OVERHEAD);
        }
        assert!(h.st.stats(AtoB).overflow_events > 0);
    }

    #[test]
    fn fin_once_and_data_after_fin_ignored() {
        let mut h = H::new();
        h.handshake();
        let fin = with_flags(seg(1001, b"bye"), |f| f.fin = true);
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &fin)),
            vec![Ev::New(0, 3), Ev::Data(0, b"bye".to_vec()), Ev::Fin]
        );
        let bare = with_flags(seg(1004, &[]), |f| f.fin = true);
        assert_eq!(only(AtoB, &h.feed(AtoB, &bare)), vec![Ev::Re(3, 0)]);
        assert_eq!(only(AtoB, &h.feed(AtoB, &fin)), vec![Ev::Re(0, 3)]);
        assert!(only(AtoB, &h.feed(AtoB, &seg(1004, b"more"))).is_empty());
        assert_eq!(h.st.stats(AtoB).after_fin_bytes, 4);
        // The peer ACKing the FIN is not capture loss.
        let ev = h.feed(BtoA, &acking(5001, 1005, &[]));
        assert!(only(AtoB, &ev).is_empty());
        assert!(h.finish().is_empty());
    }

    #[test]
    fn fin_drops_buffered_data_beyond_it() {
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &seg(1011, &[9; 10])); // [10,20)
        let fin = with_flags(seg(1006, b"fghij"), |f| f.fin = true); // data [5,10), FIN at 10
        let ev = h.feed(AtoB, &fin);
        assert_eq!(only(AtoB, &ev), vec![Ev::New(5, 5), Ev::Fin]);
        assert_eq!(h.st.buffered_bytes(), 5 + ENTRY_OVERHEAD);
        assert_eq!(
            only(AtoB, &h.finish()),
            vec![
                Ev::Hole(0, 5, HoleKind::NotCaptured),
                Ev::Data(5, b"fghij".to_vec()),
            ]
        );
    }

    #[test]
    fn zero_length_and_keepalives_are_not_activity() {
        let mut h = H::new();
        h.handshake();
        // Keep-alive right after the handshake: seq = ISN.
        let ev = h.feed(AtoB, &acking(1000, 5001, &[]));
        assert_eq!(only(AtoB, &ev), vec![Ev::Ka]);
        h.feed(AtoB, &seg(1001, b"abc"));
        // Pure ACK / window update: only Ack.
        let ev = h.feed(AtoB, &acking(1004, 5001, &[]));
        assert_eq!(ev.len(), 1);
        assert!(matches!(ev[0], (AtoB, Ev::Ack { pure: true, .. })));
        // 0- and 1-byte probes at next-1.
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &acking(1003, 5001, &[]))),
            vec![Ev::Ka]
        );
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &acking(1003, 5001, b"c"))),
            vec![Ev::Ka]
        );
        let st = h.st.stats(AtoB);
        assert_eq!(
            (st.keepalives, st.new_bytes, st.retransmitted_segments),
            (3, 3, 0)
        );
    }

    #[test]
    fn window_is_scaled_only_when_both_syns_carry_the_option() {
        let mut h = H::new();
        h.feed(AtoB, &syn(1000, None, Some(7)));
        let ev = h.feed(BtoA, &syn(5000, Some(1001), Some(2)));
        // SYN windows are never scaled.
        assert!(matches!(ev[1].1, Ev::Ack { window: 1000, .. }));
        let ev = h.feed(AtoB, &acking(1001, 5001, &[]));
        assert!(matches!(
            ev[0].1,
            Ev::Ack {
                window: 128_000,
                ..
            }
        ));
        let ev = h.feed(
            BtoA,
            &TcpSegment {
                window: 0,
                ..acking(5001, 1001, &[])
            },
        );
        assert!(matches!(
            ev[0].1,
            Ev::Ack {
                window: 0,
                zero_window: true,
                ..
            }
        ));
        let ev = h.feed(BtoA, &acking(5001, 1001, &[]));
        assert!(matches!(ev[0].1, Ev::Ack { window: 4000, .. }));

        // Only one side offered scaling: raw.
        let mut h = H::new();
        h.feed(AtoB, &syn(1000, None, Some(7)));
        h.feed(BtoA, &syn(5000, Some(1001), None));
        let ev = h.feed(AtoB, &acking(1001, 5001, &[]));
        assert!(matches!(ev[0].1, Ev::Ack { window: 1000, .. }));

        // Mid-stream: raw; shift clamped to 14.
        let mut h = H::new();
        let ev = h.feed(AtoB, &acking(1, 1, &[]));
        assert!(matches!(ev[0].1, Ev::Ack { window: 1000, .. }));
        let mut h = H::new();
        h.feed(AtoB, &syn(1000, None, Some(200)));
        h.feed(BtoA, &syn(5000, Some(1001), Some(14)));
        let ev = h.feed(
            AtoB,
            &TcpSegment {
                window: 1,
                ..acking(1001, 5001, &[])
            },
        );
        assert!(matches!(ev[0].1, Ev::Ack { window: 16384, .. }));
    }

    #[test]
    fn ack_fields_and_unknown_peer_base() {
        let mut h = H::new();
        // Nothing seen from B yet: acked unknown.
        let ev = h.feed(AtoB, &acking(100, 7000, b"x"));
        assert_eq!(
            ev[0],
            (
                AtoB,
                Ev::Ack {
                    acked: None,
                    advanced: false,
                    pure: false,
                    window: 1000,
                    zero_window: false
                }
            )
        );
        h.feed(BtoA, &acking(7000, 101, b"0123456789"));
        let ev = h.feed(AtoB, &acking(101, 7005, &[]));
        assert!(matches!(
            ev[0].1,
            Ev::Ack {
                acked: Some(5),
                advanced: true,
                pure: true,
                ..
            }
        ));
        // Duplicate and older ACKs do not advance.
        let ev = h.feed(AtoB, &acking(101, 7005, &[]));
        assert!(matches!(
            ev[0].1,
            Ev::Ack {
                advanced: false,
                ..
            }
        ));
        let ev = h.feed(AtoB, &acking(101, 7002, &[]));
        assert!(matches!(
            ev[0].1,
            Ev::Ack {
                acked: Some(2),
                advanced: false,
                ..
            }
        ));
        // An ACK before the peer's base.
        let ev = h.feed(AtoB, &acking(101, 6990, &[]));
        assert!(matches!(ev[0].1, Ev::Ack { acked: None, .. }));
    }

    #[test]
    fn ack_past_seen_data_proves_capture_loss() {
        let mut h = H::new();
        h.handshake();
        h.feed(BtoA, &acking(5001, 1001, &[b'a'; 10])); // [0,10)
        h.feed(BtoA, &acking(5021, 1001, &[b'c'; 10])); // [20,30), [10,20) lost
        let ev = h.feed(AtoB, &acking(1001, 5041, &[]));
        assert!(matches!(
            ev[0],
            (
                AtoB,
                Ev::Ack {
                    acked: Some(40),
                    ..
                }
            )
        ));
        assert_eq!(
            ev[1..].to_vec(),
            vec![
                (BtoA, Ev::Unseen(30, 10, SeqProof::Ack)),
                (BtoA, Ev::Hole(10, 10, HoleKind::NotCaptured)),
                (BtoA, Ev::Data(20, vec![b'c'; 10])),
                (BtoA, Ev::Hole(30, 10, HoleKind::NotCaptured)),
            ]
        );
        // No NewBytes ever comes from an ACK.
        assert!(!ev.iter().any(|(_, e)| matches!(e, Ev::New(..))));
        assert_eq!(h.st.stats(BtoA).hole_bytes_not_captured, 20);
        assert_eq!(h.st.stats(BtoA).new_bytes, 20);
        // The lost bytes showing up late are settled: retransmission.
        let ev = h.feed(BtoA, &acking(5011, 1001, &[b'b'; 10]));
        assert_eq!(only(BtoA, &ev), vec![Ev::Re(10, 10)]);
        // Next data continues after the proven hole.
        let ev = h.feed(BtoA, &acking(5041, 1001, b"d"));
        assert_eq!(
            only(BtoA, &ev),
            vec![Ev::New(40, 1), Ev::Data(40, b"d".to_vec())]
        );
    }

    /// The sender's own numbers beyond the last byte seen prove bytes sent:
    /// an RST, a bare FIN, a segment without data; each range once, nothing
    /// skipped (the bytes may still arrive).
    #[test]
    fn later_sequence_numbers_prove_bytes_sent() {
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &acking(1001, 5001, &[b'a'; 8])); // [0,8)
                                                       // A pure ACK whose sequence number is 8 bytes on: [8,16) sent unseen.
        let ev = h.feed(AtoB, &acking(1017, 5001, &[]));
        assert_eq!(only(AtoB, &ev), vec![Ev::Unseen(8, 8, SeqProof::NextSeq)]);
        // The same number again proves nothing new.
        assert!(only(AtoB, &h.feed(AtoB, &acking(1017, 5001, &[]))).is_empty());
        // The bytes arriving late are new bytes, not retransmissions.
        let ev = h.feed(AtoB, &acking(1009, 5001, &[b'b'; 8]));
        assert_eq!(
            only(AtoB, &ev),
            vec![Ev::New(8, 8), Ev::Data(8, vec![b'b'; 8])]
        );
        // An RST further on: [16,24) sent unseen, then the RST.
        let rst = with_flags(acking(1025, 5001, &[]), |f| f.rst = true);
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &rst)),
            vec![Ev::Unseen(16, 8, SeqProof::Rst), Ev::Rst]
        );
        // A bare FIN beyond the last byte seen.
        let mut h = H::new();
        h.handshake();
        let fin = with_flags(acking(1011, 5001, &[]), |f| f.fin = true);
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &fin)),
            vec![Ev::Unseen(0, 10, SeqProof::Fin), Ev::Fin]
        );
        // A keep-alive (next-1) and an RST at the next byte prove nothing.
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &acking(1001, 5001, &[b'a'; 8]));
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &acking(1008, 5001, &[]))),
            vec![Ev::Ka]
        );
        let rst = with_flags(acking(1009, 5001, &[]), |f| f.rst = true);
        assert_eq!(only(AtoB, &h.feed(AtoB, &rst)), vec![Ev::Rst]);
        // A number from another connection (half the sequence space away) is no proof.
        let mut h = H::new();
        h.handshake();
        let far = acking(1001u32.wrapping_add(0x7000_0000), 5001, &[]);
        assert!(only(AtoB, &h.feed(AtoB, &far)).is_empty());
    }

    /// A SACK block past the highest byte seen proves bytes received, once;
    /// nothing is skipped (the bytes below its left edge may come later).
    #[test]
    fn sack_block_past_seen_data_proves_bytes_received() {
        let mut h = H::new();
        h.handshake();
        h.feed(BtoA, &acking(5001, 1001, &[b'a'; 10])); // [0,10)
        let sack = TcpSegment {
            sack_right: Some(5041),
            ..acking(1001, 5011, &[])
        };
        let ev = h.feed(AtoB, &sack);
        assert_eq!(only(BtoA, &ev), vec![Ev::Unseen(10, 30, SeqProof::Sack)]);
        assert!(only(BtoA, &h.feed(AtoB, &sack)).is_empty());
        // The range arrives after all: new bytes, delivered.
        let ev = h.feed(BtoA, &acking(5011, 1001, &[b'b'; 30]));
        assert_eq!(
            only(BtoA, &ev),
            vec![Ev::New(10, 30), Ev::Data(10, vec![b'b'; 30])]
        );
    }

    /// A 4-tuple reused while the capture still holds the old connection:
    /// the old peer's challenge ACK and the opener's RST answering it (RFC
    /// 793, SYN-SENT) belong to the old connection, not to the new one.
    #[test]
    fn stray_ack_and_rst_while_opening_are_not_this_connection() {
        let mut h = H::new();
        h.feed(AtoB, &syn(1000, None, None));
        let challenge = acking(77_000, 999_999, &[]);
        let ev = h.feed(BtoA, &challenge);
        assert!(
            matches!(ev[0], (BtoA, Ev::Ack { acked: None, .. })),
            "{ev:?}"
        );
        assert_eq!(ev.len(), 1, "{ev:?}");
        let rst = with_flags(seg(999_999, &[]), |f| f.rst = true);
        assert!(only(AtoB, &h.feed(AtoB, &rst)).is_empty());
        assert_eq!(h.st.stats(AtoB).rst_segments, 1);
        // The SYN retransmitted, answered: the connection goes on.
        h.feed(AtoB, &syn(1000, None, None));
        h.feed(BtoA, &syn(5000, Some(1001), None));
        let ev = h.feed(AtoB, &acking(1001, 5001, b"AMQP"));
        assert_eq!(
            only(AtoB, &ev),
            vec![Ev::New(0, 4), Ev::Data(0, b"AMQP".to_vec())]
        );
    }

    #[test]
    fn finish_reports_missing_ranges_and_is_idempotent() {
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &seg(1006, b"fg")); // [5,7)
        let fin = with_flags(seg(1011, b"k"), |f| f.fin = true); // [10,11), FIN at 11
        h.feed(AtoB, &fin);
        let ev = h.finish();
        assert_eq!(
            only(AtoB, &ev),
            vec![
                Ev::Hole(0, 5, HoleKind::NotCaptured),
                Ev::Data(5, b"fg".to_vec()),
                Ev::Hole(7, 3, HoleKind::NotCaptured),
                Ev::Data(10, b"k".to_vec()),
            ]
        );
        assert!(h.finish().is_empty());
        // FIN with nothing captured before it: the whole range is a hole.
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &with_flags(seg(1101, &[]), |f| f.fin = true));
        assert_eq!(
            only(AtoB, &h.finish()),
            vec![Ev::Hole(0, 100, HoleKind::NotCaptured)]
        );
    }

    #[test]
    fn rst_once_and_its_payload_ignored() {
        let mut h = H::new();
        h.handshake();
        let rst = with_flags(seg(1001, b"diag"), |f| f.rst = true);
        assert_eq!(only(AtoB, &h.feed(AtoB, &rst)), vec![Ev::Rst]);
        assert!(only(AtoB, &h.feed(AtoB, &rst)).is_empty());
        assert_eq!(h.st.stats(AtoB).rst_segments, 2);
        assert_eq!(h.st.stats(AtoB).new_bytes, 0);
    }

    #[test]
    fn retransmitted_syn_after_data_keeps_base() {
        let mut h = H::new();
        h.handshake();
        h.feed(AtoB, &seg(1001, b"ab"));
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &syn(1000, None, None))),
            vec![Ev::Syn]
        );
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &seg(1003, b"c"))),
            vec![Ev::New(2, 1), Ev::Data(2, b"c".to_vec())]
        );
        assert_eq!(h.st.stats(AtoB).syn_segments, 2);
    }

    #[test]
    fn syn_with_payload_starts_at_isn_plus_one() {
        let mut h = H::new();
        let s = TcpSegment {
            payload: b"tfo",
            ip_id: 0,
            tsval: None,
            sack_right: None,
            payload_len: 3,
            ..syn(1000, None, None)
        };
        assert_eq!(
            only(AtoB, &h.feed(AtoB, &s)),
            vec![Ev::Syn, Ev::New(0, 3), Ev::Data(0, b"tfo".to_vec())]
        );
    }

    #[test]
    fn many_small_out_of_order_segments_are_fast() {
        let mut h = H::with(ReassemblyConfig {
            max_out_of_order_bytes: 1 << 20,
            max_out_of_order_segments: 1 << 20,
        });
        h.handshake();
        let n = 50_000u32;
        // Reverse order: every segment but the last is out of order.
        for i in (1..n).rev() {
            h.feed(AtoB, &seg(1001 + i, &[1]));
        }
        let ev = h.feed(AtoB, &seg(1001, &[1]));
        let delivered: usize = ev
            .iter()
            .map(|(_, e)| match e {
                Ev::Data(_, b) => b.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(delivered, n as usize);
        assert_eq!(h.st.buffered_bytes(), 0);
    }

    #[test]
    fn ascending_out_of_order_segments_merge_into_one_entry() {
        let mut h = H::with(ReassemblyConfig {
            max_out_of_order_bytes: 1 << 20,
            max_out_of_order_segments: 1,
        });
        h.handshake();
        for i in 0..100u32 {
            h.feed(AtoB, &seg(1011 + i, &[3]));
        }
        assert_eq!(h.st.stats(AtoB).overflow_events, 0);
        let ev = h.feed(AtoB, &seg(1001, &[4; 10]));
        assert_eq!(only(AtoB, &ev).len(), 3);
    }
}
