//! Two-ended replay: the same traffic captured at two points (typically one
//! capture on the client host and one on the broker host) combined into one
//! verdict per silence.
//!
//! This module sits above the engine. Each file runs through its own
//! [`Engine`](crate::engine::Engine) exactly as in a one-file replay; beside
//! it, a [`SegmentLog`] keeps a compact record of every TCP segment (time,
//! direction, seq, ack, length, flags, window). Then:
//!
//! 1. connections are matched across the files by their 4-tuple;
//! 2. segments that are the same on the wire (same direction, seq, ack,
//!    length, flags and window, seen once in each file) give the clock offset
//!    of the second file relative to the first: client-to-broker segments are
//!    late by the one-way delay at the downstream capture and broker-to-client
//!    segments early, so the offset lies between the two medians, and the
//!    capture that sees client-to-broker segments first is the client side;
//! 3. gaps of one connection found in either file that overlap in time (same
//!    direction) are one silence, and get one merged verdict: a segment seen
//!    leaving at the upstream capture and never seen at the downstream one was
//!    lost in the network (`lost-in-network`); when nothing was lost and the
//!    silent side's own capture shows it sent no new bytes, it never sent them
//!    and the single-file cause (usually a stall) is confirmed from both ends.
//!
//! docs/heartbeat-model.md ("Two-ended replay") explains the rules for a
//! support engineer; docs/report-schema.md describes the `merge` object.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use crate::analysis::{Cause, Connection, Consequence, Gap, Role};
use crate::capture::{LinkType, PacketRecord};
use crate::decode::defrag::{DefragConfig, Defragmenter};
use crate::decode::{self, Decoded};
use crate::engine::EngineConfig;
use crate::model::{Direction, FlowKey, Span, TcpSegment, Timestamp};
use crate::report::{
    self, count, CaptureSide, ClockOffsetReport, MergeBasis, MergeReport, MergeSummary,
    MergedCause, MergedConnectionReport, MergedCounts, MergedGapReport, Report, SingleVerdict,
    SourceReport, UnmatchedReport, WindowCounts,
};
use crate::run::replay::{self, AppError, Replay};

/// Segments kept per file for matching (about 40 bytes each, so 4 million
/// segments is about 160 MB). Later segments are not logged: offsets and
/// merged verdicts after that point are missing, and a warning says so.
pub const DEFAULT_SEGMENT_CAP: usize = 4_000_000;

/// Why two captures could not be combined (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// One of the inputs could not be read at all.
    #[error("{0}")]
    Input(#[from] AppError),
    /// The parts of one side could not be read as one capture.
    #[error("{0}")]
    Parts(#[from] crate::run::parts::PartsError),
    /// The same path was given twice.
    #[error(
        "{0} was given twice: two-ended replay needs one capture from each end of the same traffic \
         (e.g. one tcpdump on the client host and one on the broker host)"
    )]
    SameFile(String),
    /// Both files hold exactly the same packets at the same times.
    #[error(
        "{a} and {b} hold the same packets at the same times (a copy of one capture?): two-ended replay \
         needs one capture from each end of the same traffic"
    )]
    Identical {
        /// First file.
        a: String,
        /// Second file.
        b: String,
    },
    /// No AMQP connection appears in both files.
    #[error(
        "no AMQP connection appears in both captures ({a}: {} [{la}]; {b}: {} [{lb}]): \
         they must record the same connections (same client and broker address:port, no NAT between the \
         capture points)",
        report::count(*.na as u64, "connection", "connections"),
        report::count(*.nb as u64, "connection", "connections")
    )]
    NoCommonConnection {
        /// First file.
        a: String,
        /// Its connections.
        na: usize,
        /// Their endpoints.
        la: String,
        /// Second file.
        b: String,
        /// Its connections.
        nb: usize,
        /// Their endpoints.
        lb: String,
    },
    /// Matching connections share no identical segment, so no offset.
    #[error(
        "{a} and {b} list the same connection(s) but share no identical TCP segment, so their clocks \
         cannot be lined up: were they recorded at different times?"
    )]
    NoCommonSegments {
        /// First file.
        a: String,
        /// Second file.
        b: String,
    },
}

#[derive(Debug, Clone, Copy)]
struct Seg {
    ts: Timestamp,
    dir: Direction,
    seq: u32,
    ack: u32,
    len: u32,
    flags: u8,
    window: u16,
    /// First time this sequence range was seen in this file.
    new_data: bool,
}

type Ident = (Direction, u32, u32, u32, u8, u16);

impl Seg {
    fn ident(&self) -> Ident {
        (
            self.dir,
            self.seq,
            self.ack,
            self.len,
            self.flags,
            self.window,
        )
    }
}

#[derive(Debug, Default)]
struct FlowLog {
    segs: Vec<Seg>,
    /// Highest sequence end seen per direction.
    hi: [Option<u32>; 2],
    /// Second copies of a packet are not logged (they would make every
    /// segment ambiguous for matching).
    dup: crate::engine::dedup::DupGuard,
}

/// A compact record of every TCP segment of one capture, per flow, for
/// matching against another capture of the same traffic.
#[derive(Debug)]
pub struct SegmentLog {
    flows: HashMap<FlowKey, FlowLog>,
    logged: usize,
    cap: usize,
    /// Segments not logged because the cap was reached.
    pub refused: u64,
    /// Segments that arrived in IP fragments, put back together as the
    /// engine does (one side may be fragmented and the other not).
    defrag: Defragmenter,
}

impl SegmentLog {
    /// An empty log that keeps at most `cap` segments.
    #[must_use]
    pub fn new(cap: usize) -> Self {
        SegmentLog {
            flows: HashMap::new(),
            logged: 0,
            cap,
            refused: 0,
            defrag: Defragmenter::new(DefragConfig::default()),
        }
    }

    /// Segments logged.
    #[must_use]
    pub fn len(&self) -> usize {
        self.logged
    }

    /// True when nothing was logged.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.logged == 0
    }

    /// Logs the packet if it is a TCP segment (anything else is ignored: the
    /// engine already counted it).
    pub fn observe(&mut self, link: LinkType, rec: &PacketRecord<'_>) {
        match decode::decode(link, rec) {
            Ok(Decoded::Tcp(t)) => self.log(&t),
            Ok(Decoded::Fragment(f)) => {
                if let Some(d) = self.defrag.add(&f) {
                    if let Ok(Decoded::Tcp(t)) = decode::datagram_segment(&d) {
                        self.log(&t);
                    }
                }
            }
            _ => {}
        }
    }

    fn log(&mut self, t: &TcpSegment<'_>) {
        if self.logged >= self.cap {
            self.refused += 1;
            return;
        }
        let (key, dir) = FlowKey::from_packet(t.src, t.dst);
        let flow = self.flows.entry(key).or_default();
        if flow.dup.is_copy(dir, t) {
            return;
        }
        let f = &t.flags;
        let flags = u8::from(f.syn)
            | u8::from(f.ack) << 1
            | u8::from(f.fin) << 2
            | u8::from(f.rst) << 3
            | u8::from(f.psh) << 4;
        let end = t.seq.wrapping_add(t.payload_len);
        let new_data = t.payload_len > 0 && flow.hi[dir.index()].is_none_or(|h| seq_after(end, h));
        if new_data || (t.flags.syn && flow.hi[dir.index()].is_none()) {
            flow.hi[dir.index()] = Some(end);
        }
        flow.segs.push(Seg {
            ts: t.ts,
            dir,
            seq: t.seq,
            ack: t.ack,
            len: t.payload_len,
            flags,
            window: t.window,
            new_data,
        });
        self.logged += 1;
    }
}

/// `a` is later than `b` in sequence space (modulo 2^32).
fn seq_after(a: u32, b: u32) -> bool {
    // The sign of the wrapped difference is the point.
    #[allow(clippy::cast_possible_wrap)]
    let d = a.wrapping_sub(b) as i32;
    d > 0
}

/// One file of a two-ended replay: its finished engine and its segment log.
pub struct SideCapture {
    /// The one-file replay (engine finished).
    pub replay: Replay,
    /// Its segments.
    pub log: SegmentLog,
}

/// Reads `path` through its own engine and logs its segments.
///
/// # Errors
/// [`AppError`] when the input cannot be opened or its link type is unsupported.
pub fn read_side(
    path: &Path,
    config: EngineConfig,
    segment_cap: usize,
) -> Result<SideCapture, AppError> {
    let mut log = SegmentLog::new(segment_cap);
    let replay = replay::replay_observed(path, config, &mut |_| {}, &mut |link, rec| {
        log.observe(link, rec);
    })?;
    // Time order (captures are nearly always in order already) so that a
    // silence's window is found by binary search.
    for f in log.flows.values_mut() {
        f.segs.sort_by_key(|s| s.ts);
    }
    Ok(SideCapture { replay, log })
}

/// Connections of an engine in report order (first packet, then key), as
/// [`report::build`] numbers them (id = index + 1).
fn ordered(side: &SideCapture) -> Vec<&Connection> {
    let mut v: Vec<&Connection> = side.replay.engine.connections().collect();
    v.sort_by_key(|c| (c.first_seen(), c.key()));
    v
}

fn median(v: &mut [i64]) -> Option<i64> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        // Average of the middle two without overflow.
        v[n / 2 - 1] / 2 + v[n / 2] / 2 + (v[n / 2 - 1] % 2 + v[n / 2] % 2) / 2
    })
}

/// The clock offset of the second file relative to the first
/// (`t_second = t_first + estimate`), from segments seen in both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockOffset {
    /// Best estimate: midway between the two directions' median differences.
    pub estimate: Span,
    /// Lowest offset compatible with every matched segment (delays >= 0).
    pub low: Option<Span>,
    /// Highest offset compatible with every matched segment.
    pub high: Option<Span>,
    /// Median of (t_second - t_first) over client-to-broker segments.
    pub median_client_to_broker: Option<Span>,
    /// Median of (t_second - t_first) over broker-to-client segments.
    pub median_broker_to_client: Option<Span>,
    /// Client-to-broker segments matched.
    pub samples_client_to_broker: usize,
    /// Broker-to-client segments matched.
    pub samples_broker_to_client: usize,
    /// Which side the first file was captured on, when the delays tell.
    pub first_is: Option<Role>,
}

impl ClockOffset {
    /// Half the width of the [`low`, `high`] interval: the estimate is within
    /// this of the true offset if no segment took a negative time to travel.
    #[must_use]
    pub fn uncertainty(&self) -> Option<Span> {
        match (self.low, self.high) {
            (Some(l), Some(h)) if h.0 >= l.0 => Some(Span((h.0 - l.0 + 1) / 2)),
            _ => None,
        }
    }

    /// Estimated one-way delay between the capture points (half the
    /// difference of the two directions' medians).
    #[must_use]
    pub fn one_way_delay(&self) -> Option<Span> {
        match (self.median_client_to_broker, self.median_broker_to_client) {
            (Some(a), Some(b)) => Some(Span((a.0 - b.0).abs() / 2)),
            _ => None,
        }
    }
}

/// Estimates the clock offset of `b` relative to `a` from segments that are
/// identical on the wire, for the matched connection pairs.
fn estimate_offset(
    a: &SideCapture,
    b: &SideCapture,
    pairs: &[(&Connection, &Connection)],
) -> (ClockOffset, bool) {
    let mut cb = Vec::new();
    let mut bc = Vec::new();
    let mut all_zero = true;
    for (ca, _) in pairs {
        let (Some(fa), Some(fb)) = (a.log.flows.get(&ca.key()), b.log.flows.get(&ca.key())) else {
            continue;
        };
        let count = |segs: &[Seg]| {
            let mut m: HashMap<Ident, (u32, Timestamp)> = HashMap::new();
            for s in segs {
                let e = m.entry(s.ident()).or_insert((0, s.ts));
                e.0 += 1;
            }
            m
        };
        let ma = count(&fa.segs);
        let mb = count(&fb.segs);
        for (id, (na, ta)) in &ma {
            if *na != 1 {
                continue;
            }
            if let Some((1, tb)) = mb.get(id) {
                let d = tb.0 - ta.0;
                if d != 0 {
                    all_zero = false;
                }
                match ca.role_of(id.0) {
                    Role::Client => cb.push(d),
                    Role::Broker => bc.push(d),
                }
            }
        }
    }
    let identical = all_zero
        && !(cb.is_empty() && bc.is_empty())
        && a.log.len() == b.log.len()
        && a.replay.engine.counters().packets == b.replay.engine.counters().packets;
    let (ncb, nbc) = (cb.len(), bc.len());
    let (min_cb, max_cb) = (cb.iter().min().copied(), cb.iter().max().copied());
    let (min_bc, max_bc) = (bc.iter().min().copied(), bc.iter().max().copied());
    let med_cb = median(&mut cb);
    let med_bc = median(&mut bc);
    let (estimate, first_is, low, high) = match (med_cb, med_bc) {
        (Some(x), Some(y)) => {
            let est = x / 2 + y / 2 + (x % 2 + y % 2) / 2;
            if x > y {
                // First file saw client-to-broker segments first: client side.
                (est, Some(Role::Client), max_bc, min_cb)
            } else if x < y {
                (est, Some(Role::Broker), max_cb, min_bc)
            } else {
                (est, None, None, None)
            }
        }
        (Some(x), None) | (None, Some(x)) => (x, None, None, None),
        (None, None) => (0, None, None, None),
    };
    (
        ClockOffset {
            estimate: Span(estimate),
            low: low.map(Span),
            high: high.map(Span),
            median_client_to_broker: med_cb.map(Span),
            median_broker_to_client: med_bc.map(Span),
            samples_client_to_broker: ncb,
            samples_broker_to_client: nbc,
            first_is,
        },
        identical,
    )
}

fn secs(ns: i64) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let v = ns as f64 / 1e9;
    (v * 1e9).round() / 1e9
}

fn other(role: Role) -> Role {
    role.other()
}

/// For each segment of `up`, whether `down` has a segment identical on the
/// wire (matched one to one, in order).
fn seen_in(up: &FlowLog, down: Option<&FlowLog>) -> Vec<bool> {
    let mut avail: HashMap<Ident, u32> = HashMap::new();
    if let Some(d) = down {
        for s in &d.segs {
            *avail.entry(s.ident()).or_insert(0) += 1;
        }
    }
    up.segs
        .iter()
        .map(|s| match avail.get_mut(&s.ident()) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .collect()
}

/// One file's view of a matched connection, for merging.
struct View<'a> {
    file: &'a str,
    side: Option<Role>,
    conn: &'a Connection,
    flow: Option<&'a FlowLog>,
    /// Per segment of `flow`: also seen in the other file.
    matched: Vec<bool>,
    /// Add to this file's times to get reference times.
    to_ref: i64,
}

impl View<'_> {
    fn side_name(&self) -> CaptureSide {
        CaptureSide::of(self.side)
    }

    /// Counts in [start, end] (reference clock) for silent role `silent`;
    /// `lost` counts segments of `lost_from` not seen in the other file.
    fn window(
        &self,
        start: i64,
        end: i64,
        silent: Role,
        lost_from: Role,
    ) -> (WindowCounts, u32, u32, Option<i64>) {
        let mut w = WindowCounts::default();
        let (mut lost, mut lost_new, mut first_lost) = (0, 0, None);
        let Some(flow) = self.flow else {
            return (w, 0, 0, None);
        };
        let from = flow.segs.partition_point(|s| s.ts.0 + self.to_ref <= start);
        for (s, seen) in flow.segs[from..].iter().zip(&self.matched[from..]) {
            let t = s.ts.0 + self.to_ref;
            if t >= end {
                break;
            }
            let role = self.conn.role_of(s.dir);
            if role == silent {
                w.silent_side_packets += 1;
                if s.new_data {
                    w.silent_side_new_segments += 1;
                    w.silent_side_new_bytes += u64::from(s.len);
                } else if s.len > 0 {
                    w.silent_side_retransmissions += 1;
                }
            } else {
                w.peer_packets += 1;
            }
            if role == lost_from && !seen {
                lost += 1;
                if s.new_data {
                    lost_new += 1;
                }
                first_lost.get_or_insert(t);
            }
        }
        (w, lost, lost_new, first_lost)
    }
}

fn window_line(v: &View<'_>, w: &WindowCounts, silent: Role) -> String {
    let x = silent.as_str();
    let y = other(silent).as_str();
    let what = if w.silent_side_packets == 0 {
        format!("nothing at all from {x}")
    } else if w.silent_side_new_segments == 0 {
        format!(
            "{x} sent no new data ({}: {}, the rest ACKs)",
            count(w.silent_side_packets, "packet", "packets"),
            count(
                w.silent_side_retransmissions,
                "retransmission",
                "retransmissions"
            )
        )
    } else {
        format!(
            "{x} sent {} ({}) and {}, {} in all",
            count(w.silent_side_new_segments, "new segment", "new segments"),
            count(w.silent_side_new_bytes, "byte", "bytes"),
            count(
                w.silent_side_retransmissions,
                "retransmission",
                "retransmissions"
            ),
            count(w.silent_side_packets, "packet", "packets")
        )
    };
    format!(
        "seen at the {} side ({}): {what}; {} from {y}",
        v.side_name(),
        v.file,
        count(w.peer_packets, "packet", "packets")
    )
}

struct Item<'a> {
    view: usize,
    idx: usize,
    gap: &'a Gap,
    start: i64,
    end: i64,
}

/// Merges the gaps of one connection seen in both files.
#[allow(clippy::too_many_lines)]
fn merge_connection(views: &[View<'_>; 2], cover: (i64, i64)) -> Vec<MergedGapReport> {
    let mut items: Vec<Item<'_>> = Vec::new();
    for (vi, v) in views.iter().enumerate() {
        for (gi, g) in v.conn.gaps().iter().enumerate() {
            items.push(Item {
                view: vi,
                idx: gi,
                gap: g,
                start: g.start.0 + v.to_ref,
                end: g.end.0 + v.to_ref,
            });
        }
    }
    items.sort_by_key(|i| (i.start, i.view));
    // Group overlapping silences of the same direction (by silent role).
    let mut groups: Vec<Vec<Item<'_>>> = Vec::new();
    for it in items {
        let found = groups.iter_mut().find(|g| {
            g.iter().all(|o| o.view != it.view)
                && g.iter()
                    .any(|o| o.gap.silent == it.gap.silent && o.start < it.end && it.start < o.end)
        });
        match found {
            Some(g) => g.push(it),
            None => groups.push(vec![it]),
        }
    }
    let mut out = Vec::new();
    for mut g in groups {
        g.sort_by_key(|i| i.view);
        let silent = g[0].gap.silent;
        // Which view is the silent side's own capture (upstream of its data)?
        let own = views.iter().position(|v| v.side == Some(silent));
        let (own_i, peer_i) = match own {
            Some(i) => (i, 1 - i),
            None => (0, 1),
        };
        let (vo, vp) = (&views[own_i], &views[peer_i]);
        let single_of = |vi: usize| g.iter().find(|i| i.view == vi);
        // The silence as the receiving side's capture saw it (where the
        // peer's heartbeat monitor sits), else as the silent side's saw it.
        let Some(basis_item) = single_of(peer_i).or_else(|| single_of(own_i)) else {
            continue;
        };
        let (start, end) = (basis_item.start, basis_item.end);
        let single: Vec<SingleVerdict> = g
            .iter()
            .map(|i| {
                let v = &views[i.view];
                SingleVerdict {
                    file: v.file.to_owned(),
                    side: v.side_name(),
                    gap: i.idx + 1,
                    start: report::rfc3339(i.gap.start),
                    end: report::rfc3339(i.gap.end),
                    silence_s: secs(i.gap.silence().0),
                    cause: i.gap.cause,
                    consequence: v.conn.consequence(i.gap),
                }
            })
            .collect();
        let (cs, ce) = (start.max(cover.0), end.min(cover.1));
        let mut counts = MergedCounts::default();
        let mut lines = Vec::new();
        let x = silent.as_str();
        let y = other(silent).as_str();
        let covered = cs < ce;
        let mut first_lost_x = None;
        let mut first_lost_y = None;
        if covered {
            let (wo, lx, lxn, fx) = vo.window(cs, ce, silent, silent);
            let (wp, ly, _, fy) = vp.window(cs, ce, silent, other(silent));
            // Packets of X seen at the peer side but not at X's own side.
            let (_, extra, _, _) = vp.window(cs, ce, silent, silent);
            counts.at_silent_side = wo;
            counts.at_peer_side = wp;
            counts.lost_from_silent_side = lx;
            counts.lost_new_segments = lxn;
            counts.lost_from_peer = ly;
            counts.seen_only_downstream = extra;
            first_lost_x = fx;
            first_lost_y = fy;
            lines.push(window_line(vo, &wo, silent));
            lines.push(window_line(vp, &wp, silent));
        } else {
            lines.push(
                "only one capture covers this silence: the other started later or ended earlier"
                    .to_owned(),
            );
        }
        if counts.lost_from_silent_side > 0 {
            lines.push(format!(
                "{} ({} with new data) seen leaving at the {x} side never reached the {y} side: lost on the way{}",
                report::count(counts.lost_from_silent_side, &format!("{x} packet"), &format!("{x} packets")),
                counts.lost_new_segments,
                first_lost_x.map_or(String::new(), |t| format!(", first at {}", report::clock(Timestamp(t)))),
            ));
        }
        if counts.lost_from_peer > 0 {
            lines.push(format!(
                "{} seen leaving at the {y} side never reached the {x} side: lost on the way{}",
                report::count(
                    counts.lost_from_peer,
                    &format!("{y} packet"),
                    &format!("{y} packets")
                ),
                first_lost_y.map_or(String::new(), |t| format!(
                    ", first at {}",
                    report::clock(Timestamp(t))
                )),
            ));
        }
        if counts.seen_only_downstream > 0 {
            lines.push(format!(
                "{} reached the {y} side that the {x}-side capture did not record (capture loss there)",
                report::count(counts.seen_only_downstream, &format!("{x} packet"), &format!("{x} packets"))
            ));
        }
        let own_single = single_of(own_i).map(|i| i.gap);
        let peer_single = single_of(peer_i).map(|i| i.gap);
        let fallback = own_single
            .or(peer_single)
            .map_or(Cause::Unknown, |g| g.cause);
        let any_capture_loss = g.iter().any(|i| i.gap.cause == Cause::CaptureLoss);
        let (merged, basis, why) = if !covered {
            (
                fallback.into(),
                MergeBasis::OneCapture,
                "the verdict is the one capture's own".to_owned(),
            )
        } else if any_capture_loss {
            (
                MergedCause::CaptureLoss,
                MergeBasis::CaptureLoss,
                "a capture missed bytes during the silence (see the single-capture verdicts), so missing packets prove nothing".to_owned(),
            )
        } else if counts.lost_from_silent_side > 0 && counts.lost_new_segments > 0 {
            (
                MergedCause::LostInNetwork,
                MergeBasis::LostPackets,
                format!("{x} sent new bytes that never arrived: the network lost them; {x} did not stall"),
            )
        } else if (counts.lost_from_silent_side > 0 || counts.lost_from_peer > 0)
            && counts.at_silent_side.silent_side_retransmissions > 0
        {
            (
                MergedCause::LostInNetwork,
                MergeBasis::LostPackets,
                format!(
                    "{x}'s TCP kept retransmitting and could send no new data because packets were lost between the captures; {x} did not stall"
                ),
            )
        } else if counts.at_silent_side.silent_side_new_segments == 0 {
            // Lost pure ACKs do not explain a silence of X's application:
            // X had nothing unacknowledged to retransmit.
            let c = own_single.map_or(fallback, |g| g.cause);
            let what = if counts.lost_from_silent_side + counts.lost_from_peer > 0 {
                "only packets without new data were lost"
            } else {
                "nothing was lost between the captures"
            };
            (
                c.into(),
                MergeBasis::NeverSent,
                format!(
                    "{what} and {x}'s own capture shows no new bytes and no retransmissions from {x}: it never sent them"
                ),
            )
        } else {
            (
                fallback.into(),
                MergeBasis::SentAndReceived,
                format!("{x}'s new bytes reached the {y} side: the silence is at the edges of the window"),
            )
        };
        lines.push(format!("merged: {why} -> {merged}"));
        let limit = g[0].gap.limit;
        // The receiving side's consequence, unless only the other capture saw
        // how the connection ended.
        let cons: Vec<Consequence> = [(vp, peer_single), (vo, own_single)]
            .iter()
            .filter_map(|(v, g)| g.map(|g| v.conn.consequence(g)))
            .collect();
        let consequence = cons
            .iter()
            .find(|c| !matches!(**c, Consequence::Survived | Consequence::CaptureEnded))
            .or_else(|| cons.first())
            .copied()
            .unwrap_or(Consequence::Survived);
        out.push(MergedGapReport {
            direction: silent.sends(),
            silent_side: silent,
            start: report::rfc3339(Timestamp(start)),
            end: report::rfc3339(Timestamp(end)),
            silence_s: secs(end - start),
            limit_s: secs(limit.0),
            merged_cause: merged,
            basis,
            consequence,
            seen_at: lines,
            counts,
            single,
        });
    }
    out
}

/// A finished two-ended replay.
pub struct TwoEnded {
    /// First file (the reference clock).
    pub a: SideCapture,
    /// Second file.
    pub b: SideCapture,
}

fn endpoints(side: &SideCapture) -> String {
    let v: Vec<String> = ordered(side)
        .iter()
        .take(5)
        .map(|c| format!("{} -> {}", c.client(), c.broker()))
        .collect();
    let n = side.replay.engine.connections().count();
    if n > v.len() {
        format!("{}, ...", v.join(", "))
    } else {
        v.join(", ")
    }
}

/// Reads both files, each through its own engine.
///
/// # Errors
/// [`MergeError`] when an input is unusable or the same path is given twice.
pub fn read_two(a: &Path, b: &Path, config: &EngineConfig) -> Result<TwoEnded, MergeError> {
    let same = a == b || matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    if same {
        return Err(MergeError::SameFile(a.display().to_string()));
    }
    let a = read_side(a, config.clone(), DEFAULT_SEGMENT_CAP)?;
    let b = read_side(b, config.clone(), DEFAULT_SEGMENT_CAP)?;
    Ok(TwoEnded { a, b })
}

/// Reads both sides, each given as one or more parts of one capture
/// (merged in time order as [`crate::run::parts::replay_parts`] does), each
/// side through its own engine.
///
/// # Errors
/// [`MergeError`] when an input is unusable, a side's parts are not one
/// capture, or the same file is on both sides.
pub fn read_sides(
    a: &[std::path::PathBuf],
    b: &[std::path::PathBuf],
    config: &EngineConfig,
) -> Result<TwoEnded, MergeError> {
    if let ([one_a], [one_b]) = (a, b) {
        return read_two(one_a, one_b, config);
    }
    for x in a {
        for y in b {
            let same =
                x == y || matches!((x.canonicalize(), y.canonicalize()), (Ok(p), Ok(q)) if p == q);
            if same {
                return Err(MergeError::SameFile(x.display().to_string()));
            }
        }
    }
    let side = |paths: &[std::path::PathBuf]| -> Result<SideCapture, MergeError> {
        let mut log = SegmentLog::new(DEFAULT_SEGMENT_CAP);
        let replay = crate::run::parts::replay_parts(paths, config.clone(), &mut |link, rec| {
            log.observe(link, rec);
        })?;
        for f in log.flows.values_mut() {
            f.segs.sort_by_key(|s| s.ts);
        }
        Ok(SideCapture { replay, log })
    };
    Ok(TwoEnded {
        a: side(a)?,
        b: side(b)?,
    })
}

/// Builds the report: the first file's one-file report (schema v1, its
/// gaps marked with `merged_cause`) plus the `merge` object.
///
/// # Errors
/// [`MergeError`] when the files share no connection or no segment, or are
/// copies of each other.
#[allow(clippy::too_many_lines)]
pub fn build(two: &TwoEnded) -> Result<Report, MergeError> {
    let (a, b) = (&two.a, &two.b);
    let (fa, fb) = (a.replay.source.as_str(), b.replay.source.as_str());
    let oa = ordered(a);
    let ob = ordered(b);
    // Pair connections by 4-tuple, k-th with k-th when a 4-tuple was reused.
    let mut used = vec![false; ob.len()];
    let mut pairs: Vec<(&Connection, &Connection)> = Vec::new();
    let mut pair_ids: Vec<(usize, usize)> = Vec::new();
    let mut matched_a = vec![false; oa.len()];
    for (ia, ca) in oa.iter().enumerate() {
        if let Some(ib) = (0..ob.len()).find(|&i| !used[i] && ob[i].key() == ca.key()) {
            used[ib] = true;
            matched_a[ia] = true;
            pairs.push((ca, ob[ib]));
            pair_ids.push((ia + 1, ib + 1));
        }
    }
    if pairs.is_empty() {
        return Err(MergeError::NoCommonConnection {
            a: fa.to_owned(),
            na: oa.len(),
            la: endpoints(a),
            b: fb.to_owned(),
            nb: ob.len(),
            lb: endpoints(b),
        });
    }
    let (off, identical) = estimate_offset(a, b, &pairs);
    if identical {
        return Err(MergeError::Identical {
            a: fa.to_owned(),
            b: fb.to_owned(),
        });
    }
    if off.samples_client_to_broker + off.samples_broker_to_client == 0 {
        return Err(MergeError::NoCommonSegments {
            a: fa.to_owned(),
            b: fb.to_owned(),
        });
    }
    let mut warnings = Vec::new();
    let (side_a, side_b) = match off.first_is {
        Some(r) => (Some(r), Some(other(r))),
        None => {
            warnings.push(format!(
                "could not tell which capture is at which end (matched segments: {} client-to-broker, {} broker-to-client, \
                 no difference in delay); assuming {fa} is the client side",
                off.samples_client_to_broker, off.samples_broker_to_client
            ));
            (Some(Role::Client), Some(Role::Broker))
        }
    };
    if off.uncertainty().is_none() && off.first_is.is_some() {
        warnings.push(
            "the matched segments do not agree on one clock offset (a segment would have travelled back in time): \
             the clocks drifted during the capture, or a capture timestamped late; times are approximate"
                .to_owned(),
        );
    }
    for (f, s) in [(fa, a), (fb, b)] {
        if s.log.refused > 0 {
            warnings.push(format!(
                "{f}: only the first {} segments were logged for matching ({} more were not): merged verdicts after that point miss evidence",
                s.log.len(),
                s.log.refused
            ));
        }
    }
    let cnt_a = a.replay.engine.counters();
    let cnt_b = b.replay.engine.counters();
    let shift = off.estimate.0;
    let cover = (
        cnt_a
            .first
            .map_or(i64::MIN, |t| t.0)
            .max(cnt_b.first.map_or(i64::MIN, |t| t.0 - shift)),
        cnt_a
            .last
            .map_or(i64::MAX, |t| t.0)
            .min(cnt_b.last.map_or(i64::MAX, |t| t.0 - shift)),
    );
    let mut connections = Vec::new();
    let mut merged_of_a: HashMap<(usize, usize), MergedCause> = HashMap::new();
    for ((ca, cb), (ia, ib)) in pairs.iter().zip(&pair_ids) {
        let la = a.log.flows.get(&ca.key());
        let lb = b.log.flows.get(&cb.key());
        let views = [
            View {
                file: fa,
                side: side_a,
                conn: ca,
                flow: la,
                matched: la.map_or_else(Vec::new, |l| seen_in(l, lb)),
                to_ref: 0,
            },
            View {
                file: fb,
                side: side_b,
                conn: cb,
                flow: lb,
                matched: lb.map_or_else(Vec::new, |l| seen_in(l, la)),
                to_ref: -shift,
            },
        ];
        let gaps = merge_connection(&views, cover);
        for mg in &gaps {
            for s in &mg.single {
                if s.file == fa {
                    merged_of_a.insert((*ia, s.gap), mg.merged_cause);
                }
            }
        }
        let mut ids = BTreeMap::new();
        ids.insert(fa.to_owned(), *ia);
        ids.insert(fb.to_owned(), *ib);
        connections.push(MergedConnectionReport {
            client: ca.client().to_string(),
            broker: ca.broker().to_string(),
            client_name: ca.client_name().or_else(|| cb.client_name()),
            ids,
            gaps,
        });
    }
    let mut rep = a.replay.report();
    for c in &mut rep.connections {
        for (gi, g) in c.gaps.iter_mut().enumerate() {
            g.merged_cause = merged_of_a.get(&(c.id, gi + 1)).copied();
        }
    }
    let rep_b = b.replay.report();
    let unmatched = |r: &Report, matched: &dyn Fn(usize) -> bool| -> Vec<UnmatchedReport> {
        r.connections
            .iter()
            .filter(|c| !matched(c.id))
            .map(|c| UnmatchedReport {
                id: c.id,
                client: c.client.clone(),
                broker: c.broker.clone(),
                gaps: c.gaps.len(),
            })
            .collect()
    };
    let source =
        |f: &str, side: Option<Role>, r: &Report, s: &SideCapture, um: Vec<UnmatchedReport>| {
            SourceReport {
                file: f.to_owned(),
                // An assumed side is reported as unknown (a warning says what was assumed).
                side: CaptureSide::of(side.filter(|_| off.first_is.is_some())),
                link_type: r.capture.link_type.clone(),
                packets: r.capture.packets,
                first_packet: r.capture.first_packet.clone(),
                last_packet: r.capture.last_packet.clone(),
                connections: r.summary.connections,
                gaps: r.summary.gaps,
                unmatched: um,
                complete: s.replay.complete,
            }
        };
    let um_a = unmatched(&rep, &|id| matched_a.get(id - 1).copied().unwrap_or(false));
    let um_b = unmatched(&rep_b, &|id| used.get(id - 1).copied().unwrap_or(false));
    let sources = vec![
        source(fa, side_a, &rep, a, um_a),
        source(fb, side_b, &rep_b, b, um_b),
    ];
    let mut by_cause = BTreeMap::new();
    for g in connections.iter().flat_map(|c| c.gaps.iter()) {
        *by_cause
            .entry(g.merged_cause.as_str().to_owned())
            .or_insert(0) += 1;
    }
    let us = |s: Option<Span>| s.map(|s| secs(s.0));
    rep.merge = Some(MergeReport {
        reference: fa.to_owned(),
        sources,
        clock_offset: ClockOffsetReport {
            of: fb.to_owned(),
            relative_to: fa.to_owned(),
            estimate_s: secs(off.estimate.0),
            low_s: us(off.low),
            high_s: us(off.high),
            uncertainty_s: us(off.uncertainty()),
            one_way_delay_s: us(off.one_way_delay()),
            samples_client_to_broker: off.samples_client_to_broker,
            samples_broker_to_client: off.samples_broker_to_client,
        },
        summary: MergeSummary {
            matched_connections: connections.len(),
            gaps: connections.iter().map(|c| c.gaps.len()).sum(),
            gaps_by_merged_cause: by_cause,
        },
        connections,
        warnings,
    });
    Ok(rep)
}

/// Reads two captures of the same traffic and builds the merged report.
///
/// # Errors
/// [`MergeError`]: an unusable input, the same file twice, or captures that
/// share no connection.
pub fn replay_two(a: &Path, b: &Path, config: &EngineConfig) -> Result<Report, MergeError> {
    build(&read_two(a, b, config)?)
}

/// [`read_sides`] and [`build`]: the merged report of a client side and a
/// broker side, each one or more parts.
///
/// # Errors
/// As [`read_sides`] and [`build`].
pub fn replay_sides(
    a: &[std::path::PathBuf],
    b: &[std::path::PathBuf],
    config: &EngineConfig,
) -> Result<Report, MergeError> {
    build(&read_sides(a, b, config)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [3, 1, 2]), Some(2));
        assert_eq!(median(&mut [4, 1, 2, 3]), Some(2));
        assert_eq!(median(&mut [-3, -1]), Some(-2));
    }

    #[test]
    fn sequence_order_wraps() {
        assert!(seq_after(5, 1));
        assert!(!seq_after(1, 5));
        assert!(seq_after(3, u32::MAX - 2));
    }
}
