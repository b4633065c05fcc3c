//! The pipeline's middle: packets in, AMQP connections with their analysis out.
//!
//! ```text
//! PacketRecord -> decode -> flow table -> TcpStream (reassembly)
//!                                      -> Framer x2 (amqp)
//!                                      -> Connection (analysis)
//! ```
//! The engine owns the flow table, the capture counters, the warnings and the
//! [`SynLog`] used for wake-up detection. It is fed one packet at a time and
//! never reads a clock, so replay, live capture and tests drive it the same way.
//!
//! Caps: at most [`EngineConfig::max_flows`] flows (200,000 by default, split
//! between replay threads) are in the flow table at once. A flow leaves the
//! table when it ends (RST, or FIN both ways); its connection's results stay
//! in the engine for the report. At the cap the oldest flow that has not
//! shown AMQP yet is evicted (`flow-evicted` warning, `evicted_flows`
//! counter); when every tracked flow is AMQP, packets of new flows are
//! ignored and the `flow-cap` warning says so.

pub mod dedup;
pub mod flowhash;
mod flowtable;
pub mod retired;
mod timecheck;

use std::collections::VecDeque;
use std::sync::Arc;

use crate::analysis::timeline::{Kinds, Timeline};
use crate::analysis::{
    AnalysisConfig, Cause, Connection, HoleClass, LossProofKind, Role, RoleSource, SilenceEnd,
    SynLog,
};
use crate::capture::{LinkType, PacketRecord};
use crate::decode::defrag::{DefragConfig, Defragmenter};
use crate::decode::{decode, Decoded, IpFragment};
use crate::engine::flowtable::FlowTable;
use crate::engine::retired::Retired;
use crate::model::{count, Direction, Endpoint, FlowKey, TcpSegment, Timestamp};
use crate::prefetch;
use crate::proto::amqp::{
    cut_segment, looks_like_protocol_header, too_cut_to_frame, AmqpEvent, ConnMethod, CutSegment,
    FrameKind, Framer, PropEntry, PropValue, Properties, HEARTBEAT_FRAME_LEN,
};
use crate::proto::tls::{
    heartbeat_record_len, looks_like_client_hello, HeartbeatSizeGuess, RecordReader, TlsEvent,
    CONTENT_ALERT, CONTENT_APPLICATION_DATA,
};
use crate::reassembly::{HoleKind, ReassemblyConfig, SeqProof, StreamEvent, TcpStream};

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// TCP ports on which flows are treated as AMQP even without a protocol header.
    pub amqp_ports: Vec<u16>,
    /// TCP ports on which flows are treated as AMQP over TLS (AMQPS).
    pub tls_ports: Vec<u16>,
    /// Analysis settings.
    pub analysis: AnalysisConfig,
    /// Reassembly caps.
    pub reassembly: ReassemblyConfig,
    /// Most flows tracked at once.
    pub max_flows: usize,
    /// Most bytes held across all flows in TCP out-of-order buffers and
    /// framing buffers (AMQP method frames being buffered, resync buffers,
    /// TLS handshake and resync buffers); split evenly between the engines
    /// of a `--threads` replay. Past it, the flows that have been quiet
    /// longest give their buffers up (warning `memory-budget`): missing
    /// ranges become `overflow` holes, methods being buffered are not
    /// decoded.
    pub max_buffered_bytes: usize,
    /// Wire events kept per connection direction for drawing timelines
    /// (0 = none, the default: reports do not need them; the TUI turns it on).
    pub timeline_events: usize,
    /// Live screen: a connection's timeline is freed once both directions
    /// ended and its last packet is this long before [`Engine::tick`]'s
    /// "now" (it has left the live table for good); `None` keeps them.
    pub timeline_keep_ended: Option<crate::model::Span>,
    /// Live capture: at most this many ended connections that have left
    /// the live table (see [`EngineConfig::timeline_keep_ended`]) are kept
    /// in full; the oldest beyond it, healthy ones first, are folded into
    /// [`Engine::retired`] so memory stays bounded however long the
    /// capture runs. `None` (replay) keeps every connection.
    pub max_ended: Option<usize>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            amqp_ports: vec![5672],
            tls_ports: vec![5671],
            analysis: AnalysisConfig::default(),
            reassembly: ReassemblyConfig::default(),
            max_flows: 200_000,
            max_buffered_bytes: 256 * 1024 * 1024,
            timeline_events: 0,
            timeline_keep_ended: None,
            max_ended: None,
        }
    }
}

/// Counters about the capture itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureCounters {
    /// Packets read.
    pub packets: u64,
    /// Bytes on the wire (original lengths).
    pub wire_bytes: u64,
    /// Bytes captured.
    pub captured_bytes: u64,
    /// Packets cut by the snapshot length.
    pub truncated_packets: u64,
    /// Packets that were not TCP.
    pub non_tcp_packets: u64,
    /// TCP packets of flows that are not AMQP.
    pub other_tcp_packets: u64,
    /// Packets that could not be decoded.
    pub decode_errors: u64,
    /// First packet's timestamp.
    pub first: Option<Timestamp>,
    /// Last packet's timestamp (the latest seen).
    pub last: Option<Timestamp>,
    /// Packets whose timestamp went backwards.
    pub out_of_order_timestamps: u64,
    /// Packets dropped by the kernel (live capture).
    pub dropped: Option<u64>,
    /// Packets of AMQP flows that arrived after the flow closed.
    pub late_packets: u64,
    /// Candidate flows evicted at the flow cap before they showed AMQP.
    pub evicted_flows: u64,
    /// Second copies of a packet dropped before analysis (see `engine::dedup`).
    pub duplicate_packets: u64,
    /// Times a flow gave up its out-of-order buffers to the global memory
    /// budget ([`EngineConfig::max_buffered_bytes`]).
    pub memory_shed_flows: u64,
    /// Packets of the analysed connections stamped out of time order by
    /// more than [`crate::analysis::DISORDER_TOLERANCE`] (set when the
    /// engine finishes; see `analysis::clock`).
    pub disordered_timestamps: u64,
    /// Packets that were fragments of IP datagrams carrying TCP (put back
    /// together by [`crate::decode::defrag`]).
    pub ip_fragments: u64,
}

/// A warning about the input, with how many times it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Stable short code.
    pub code: &'static str,
    /// Human message with the first occurrence's context.
    pub message: String,
    /// Occurrences.
    pub count: u64,
    /// Packets read when it first happened (orders warnings when the
    /// warnings of several shards are combined).
    pub first_packet: u64,
}

/// A connection's number in its engine: given in the order connections
/// were recognised and never reused, so it stays valid when the engine folds
/// ended connections away ([`EngineConfig::max_ended`]), where a position in
/// [`Engine::slots`] would move.
pub type ConnId = u64;

/// One AMQP connection (candidate) with its analysis.
#[derive(Debug)]
pub struct ConnSlot {
    /// See [`ConnSlot::id`].
    id: ConnId,
    /// The analysis.
    pub conn: Connection,
    /// At least one AMQP frame or protocol header was recognised.
    pub confirmed: bool,
    /// Set when the stream turned out not to be AMQP 0-9-1.
    pub not_amqp: Option<String>,
    /// TCP reassembly statistics snapshot (filled at finish).
    pub tcp_retransmissions: [u64; 2],
    /// Recent wire events per direction, for drawing (bounded, see [`Timeline`];
    /// empty unless [`EngineConfig::timeline_events`] is set).
    pub timeline: Timeline,
    gaps_checked: usize,
    /// First bytes each side sent (up to 8), to say what a non-AMQP flow carried.
    first_bytes: [FirstBytes; 2],
    /// The broker answered with its own protocol header: it rejected what the client sent.
    broker_rejected: bool,
    /// The broker's properties were handed to the engine's [`PropertiesPool`].
    properties_shared: bool,
    /// The client's properties and mechanism went through the [`PropertiesPool`].
    client_properties_shared: bool,
    /// The vhost went through the [`PropertiesPool`].
    vhost_shared: bool,
    /// Counted in the `frames-cut` warning.
    cut_counted: bool,
}

impl ConnSlot {
    /// A slot holding nothing yet (what a spare allocation holds).
    fn vacant(like: &Connection) -> Self {
        ConnSlot {
            id: ConnId::MAX,
            conn: Connection::new(
                like.key(),
                like.client_dir(),
                RoleSource::Port,
                like.first_seen(),
                false,
                like.shared_config(),
            ),
            confirmed: false,
            not_amqp: None,
            tcp_retransmissions: [0, 0],
            timeline: Timeline::with_capacity(0),
            gaps_checked: 0,
            first_bytes: [FirstBytes::default(); 2],
            broker_rejected: false,
            properties_shared: false,
            client_properties_shared: false,
            vhost_shared: false,
            cut_counted: false,
        }
    }

    /// The connection's number (see [`ConnId`]).
    #[must_use]
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Starts loading what a packet of this connection reads.
    fn prefetch(&self) {
        prefetch::line(self);
        prefetch::line(&self.not_amqp);
        prefetch::line(&self.confirmed);
        prefetch::line(&self.timeline);
        self.conn.prefetch();
    }
}

/// The first bytes (up to 8) one side sent, kept inline: every candidate
/// flow has two, and a heap `Vec` each would cost more than the bytes.
#[derive(Debug, Clone, Copy, Default)]
struct FirstBytes {
    buf: [u8; 8],
    len: u8,
}

impl FirstBytes {
    fn keep(&mut self, bytes: &[u8]) {
        let have = usize::from(self.len);
        let n = (self.buf.len() - have).min(bytes.len());
        if let (Some(dst), Some(src)) = (self.buf.get_mut(have..have + n), bytes.get(..n)) {
            dst.copy_from_slice(src);
            // n <= 8: the sum fits.
            self.len += n as u8;
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len).min(self.buf.len())]
    }
}

struct Flow {
    tcp: TcpStream,
    proto: Proto,
    slot: SlotRef,
    frame_max_applied: bool,
    /// Per direction: the snapshot length cut its segments too short to read
    /// a frame (see [`step_cut`]); its framer is set aside.
    cut: [bool; 2],
    /// Bytes in `tcp`'s out-of-order buffers and `proto`'s framing buffers
    /// after its last segment (counted in [`Engine::buffered`]).
    held: usize,
    /// The last segment of each direction, to drop second copies.
    dup: dedup::DupGuard,
}

/// A vacant flow table position (never analysed).
impl Default for Flow {
    fn default() -> Self {
        Flow {
            tcp: TcpStream::new(crate::reassembly::ReassemblyConfig::default()),
            proto: Proto::amqp([Framer::new(true), Framer::new(true)]),
            slot: SlotRef::Index(usize::MAX),
            frame_max_applied: false,
            cut: [false; 2],
            held: 0,
            dup: dedup::DupGuard::default(),
        }
    }
}

impl Flow {
    /// Starts loading what a packet of this flow reads.
    fn prefetch(&self) {
        prefetch::line(self);
        prefetch::line(&self.slot);
        self.tcp.prefetch();
        // Addresses only: reading which protocol the flow speaks would wait for its line.
        for f in &self.proto.framers {
            f.prefetch();
        }
    }
}

/// A decoded packet and which engine it is for (decoded ahead of its turn
/// in [`Engine::process_batch`]).
enum Ahead<'a> {
    /// TCP of a flow this engine analyses: segment, key, direction, table hash.
    Owned(TcpSegment<'a>, FlowKey, Direction, u64),
    /// A connection opening on a flow another shard analyses.
    ForeignSyn(TcpSegment<'a>),
    /// Any other TCP of a flow another shard analyses.
    Foreign,
    /// A fragment of an IP datagram carrying TCP (every shard reassembles:
    /// the ports, and so the shard, are known only once it is whole).
    Fragment(IpFragment<'a>),
    NotTcp,
    Error(crate::decode::DecodeError),
}

/// Where a flow's analysis lives: inside the flow until the flow is shown to
/// be AMQP (so flows that never are cost nothing once gone), then in the
/// engine's list of connections, which outlives the flow for the report.
enum SlotRef {
    Pending(Box<ConnSlot>),
    Index(usize),
}

/// Flows recently closed (RST, or FIN both ways), so that their stragglers
/// (the last ACK, a retransmitted FIN) do not open a new candidate flow.
#[derive(Default)]
struct ClosedFlows {
    order: VecDeque<FlowKey>,
    set: std::collections::HashSet<FlowKey>,
}

impl ClosedFlows {
    const CAP: usize = 65_536;

    fn insert(&mut self, key: FlowKey) {
        if self.set.insert(key) {
            self.order.push_back(key);
            if self.order.len() > Self::CAP {
                if let Some(old) = self.order.pop_front() {
                    self.set.remove(&old);
                }
            }
        }
    }

    fn remove(&mut self, key: &FlowKey) {
        // The order entry is left behind; it is skipped when it expires.
        self.set.remove(key);
    }

    fn contains(&self, key: &FlowKey) -> bool {
        self.set.contains(key)
    }
}

/// How a flow's bytes are read: AMQP frames, or (when `tls` is set) TLS
/// records around them. A struct rather than an enum so that the framers'
/// place is known without reading the flow (see [`Flow::prefetch`]).
struct Proto {
    framers: [Framer; 2],
    tls: Option<Box<TlsFlow>>,
}

impl Proto {
    fn amqp(framers: [Framer; 2]) -> Self {
        Proto { framers, tls: None }
    }

    fn tls(t: TlsFlow) -> Self {
        Proto {
            framers: [Framer::new(true), Framer::new(true)],
            tls: Some(Box::new(t)),
        }
    }

    /// Bytes held in framing buffers (both directions).
    fn buffered_bytes(&self) -> usize {
        let tls = self.tls.as_ref().map_or(0, |t| {
            t.readers[0].buffered_bytes() + t.readers[1].buffered_bytes()
        });
        self.framers[0].buffered_bytes() + self.framers[1].buffered_bytes() + tls
    }

    /// Gives up the framing buffers (see [`Framer::shed`]), noting in
    /// `tally` what was dropped; `key` names the flow.
    fn shed(&mut self, key: &FlowKey, tally: &mut ShedTally) {
        for (i, f) in self.framers.iter_mut().enumerate() {
            let shed = f.shed();
            tally.resync_bytes += shed.resync_bytes as u64;
            if let Some((class, method)) = shed.method {
                tally.methods += 1;
                if tally.first_method.is_none() {
                    let dir = if i == 0 {
                        format!("{} -> {}", key.a, key.b)
                    } else {
                        format!("{} -> {}", key.b, key.a)
                    };
                    tally.first_method = Some(format!(
                        "{} from {dir}",
                        crate::proto::amqp::method_name(class, method)
                    ));
                }
            }
        }
        if let Some(t) = self.tls.as_mut() {
            for r in &mut t.readers {
                r.shed();
            }
        }
    }
}

/// `n` bytes as "N MiB" when a whole number of MiB, else "N KiB".
fn size_label(n: usize) -> String {
    const MIB: usize = 1024 * 1024;
    if n >= MIB && n.is_multiple_of(MIB) {
        format!("{} MiB", n / MIB)
    } else {
        format!("{} KiB", n / 1024)
    }
}

/// What [`Engine::shed_buffers`] gave up, for its warning.
#[derive(Default)]
struct ShedTally {
    /// Bytes of TCP out-of-order buffers freed.
    segments_freed: usize,
    /// Bytes of framing buffers freed (held before the flow shed, not what
    /// its given-up segments delivered into them meanwhile).
    framing_freed: usize,
    /// Connection methods being buffered that will not be decoded.
    methods: u64,
    /// The first of them, e.g. "Connection.Start-Ok from a -> b".
    first_method: Option<String>,
    /// Bytes dropped from resync buffers.
    resync_bytes: u64,
}

/// TLS state of an AMQPS flow.
struct TlsFlow {
    readers: [RecordReader; 2],
    /// Learns the heartbeat record size when the cipher does not give it.
    sizes: HeartbeatSizeGuess,
    server_hello: bool,
    app_records: [u64; 2],
    /// The client's AMQP protocol header travels in a record of heartbeat
    /// size: the first such client record is not counted as a heartbeat.
    header_record_skipped: bool,
}

impl TlsFlow {
    fn new(at_start: bool) -> Self {
        TlsFlow {
            readers: [RecordReader::new(at_start), RecordReader::new(at_start)],
            sizes: HeartbeatSizeGuess::default(),
            server_hello: false,
            app_records: [0, 0],
            header_record_skipped: !at_start,
        }
    }
}

/// A client-stall gap whose end the client never showed on its own
/// connection (the broker reset it): its resumption is the client's next
/// connection to the same broker.
struct AwaitingResume {
    slot: usize,
    gap: usize,
    client_ip: std::net::IpAddr,
    broker: Endpoint,
}

/// The packet-to-verdict engine.
pub struct Engine {
    config: EngineConfig,
    /// The link type packets are decoded with now (see [`Engine::set_link`]).
    link: LinkType,
    /// The link type the engine was made for (the report's).
    first_link: LinkType,
    /// Lookups can be started ahead of the packet ([`Engine::process_batch`]).
    flows: FlowTable<Flow>,
    slots: Vec<ConnSlot>,
    syns: SynLog,
    properties: PropertiesPool,
    counters: CaptureCounters,
    warnings: Vec<Warning>,
    awaiting: VecDeque<AwaitingResume>,
    closed: ClosedFlows,
    /// Candidate flows not yet shown to be AMQP, oldest first (for eviction at the cap).
    pending_order: VecDeque<FlowKey>,
    finished: bool,
    /// `config.analysis`, shared by every connection.
    analysis: Arc<AnalysisConfig>,
    /// Which flows this engine analyses when the input is split between threads.
    shard: Shard,
    /// The capture's clock, for packets stamped out of time order.
    clock: timecheck::CaptureClock,
    /// Duplicate fingerprints of flows that just ended (their last packet's copies).
    ended_dups: VecDeque<(FlowKey, dedup::DupGuard)>,
    /// Bytes in all flows' TCP out-of-order and framing buffers (the sum of
    /// their `held`).
    buffered: usize,
    /// Fragmented IP datagrams being put back together.
    defrag: Defragmenter,
    /// The allocation of the last slot moved into the connection list,
    /// for the next flow (see [`promote`]).
    spare_slot: Option<Box<ConnSlot>>,
    /// Slots before this position have their [`ConnId`] (see
    /// [`Engine::number_slots`]).
    numbered: usize,
    /// The next [`ConnId`].
    next_id: ConnId,
    /// Ended connections folded away ([`EngineConfig::max_ended`]).
    retired: Retired,
    /// How many times connections were folded away (observers that keep
    /// something per slot position compare it to know when to realign).
    retire_passes: u64,
}

/// One of `count` engines that read the same input, each analysing the flows
/// whose endpoints hash to its `index` (see [`Engine::new_shard`]).
#[derive(Debug, Clone, Copy)]
struct Shard {
    index: u64,
    count: u64,
}

impl Shard {
    /// Whether this shard analyses the flow between `a` and `b` (either
    /// order: the hash is symmetric, so no canonical key is needed to skip
    /// another shard's packet). Fixed, so every thread of every run splits
    /// flows the same way.
    fn owns(&self, a: &Endpoint, b: &Endpoint) -> bool {
        self.count <= 1 || self.owns_mixed(endpoint_mix(a), endpoint_mix(b))
    }

    /// [`Shard::owns`] from the two [`endpoint_mix`] values.
    fn owns_mixed(&self, a: u64, b: u64) -> bool {
        // The high 32 bits of the sum scaled to 0..count (a multiply and a
        // shift: a division was a sixth of classifying a packet).
        ((a.wrapping_add(b) >> 32) * self.count) >> 32 == self.index
    }
}

/// A well-mixed 64-bit value of an endpoint (splitmix64's finaliser).
fn endpoint_mix(e: &Endpoint) -> u64 {
    let ip = match e.ip {
        std::net::IpAddr::V4(a) => u64::from(u32::from(a)),
        std::net::IpAddr::V6(a) => {
            let v = u128::from(a);
            // Truncations intended: the two halves folded into one word.
            (v as u64) ^ ((v >> 64) as u64) ^ 0x5bd1_e995_5bd1_e995
        }
    };
    mix_ip_port(ip, e.port)
}

/// [`endpoint_mix`] of an address folded to `ip` and port `port`.
fn mix_ip_port(ip: u64, port: u16) -> u64 {
    let mut x = (ip << 16) ^ u64::from(port);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

const AWAITING_CAP: usize = 1024;

/// Warning code for dropped second copies of packets.
pub const DUPLICATES: &str = "duplicate-packets";
/// Warning code for connections captured in one direction only.
pub const ONE_DIRECTION: &str = "one-direction";
/// Warning code for a capture whose packets all carry the same timestamp.
pub const NO_TIMESTAMPS: &str = "no-timestamps";
/// Warning code for TCP segments put back together from IP fragments.
pub const FRAGMENTS: &str = "ip-fragments";
/// Warning code for fragmented datagrams that could not be put back together.
pub const FRAGMENTS_LOST: &str = "ip-fragments-lost";
/// Warning code for streams whose frames the snapshot length cut (see [`step_cut`]).
pub const FRAMES_CUT: &str = "frames-cut";

impl Engine {
    /// A new engine for packets of link type `link`.
    #[must_use]
    pub fn new(config: EngineConfig, link: LinkType) -> Self {
        Engine {
            analysis: Arc::new(config.analysis),
            config,
            link,
            first_link: link,
            flows: FlowTable::default(),
            slots: Vec::new(),
            syns: SynLog::default(),
            properties: PropertiesPool::default(),
            counters: CaptureCounters::default(),
            warnings: Vec::new(),
            awaiting: VecDeque::new(),
            closed: ClosedFlows::default(),
            pending_order: VecDeque::new(),
            finished: false,
            shard: Shard { index: 0, count: 1 },
            clock: timecheck::CaptureClock::default(),
            ended_dups: VecDeque::new(),
            buffered: 0,
            defrag: Defragmenter::new(DefragConfig::default()),
            spare_slot: None,
            numbered: 0,
            next_id: 0,
            retired: Retired::default(),
            retire_passes: 0,
        }
    }

    /// Engine `index` of `count` that all read the same packets: it keeps
    /// every capture-wide fact (counters, connection openings for wake-up
    /// and reconnect detection) but analyses only the flows whose key
    /// hashes to `index`. [`Engine::merge_shards`] combines the finished
    /// engines into the one a single engine would have been, so that
    /// `count` threads can share a big capture. Packet-level warnings
    /// (decode errors) are kept by engine 0 only.
    #[must_use]
    pub fn new_shard(config: EngineConfig, link: LinkType, index: usize, count: usize) -> Self {
        let mut e = Engine::new(config, link);
        let count = count.max(1);
        e.shard.count = count as u64;
        e.shard.index = (index % count) as u64;
        e
    }

    /// Combines the finished engines of one input read by
    /// [`Engine::new_shard`] engines `0..n` (in that order) into one.
    /// Connections are listed shard after shard (reports sort them by first
    /// packet); warnings are combined by code, the message of the earliest
    /// occurrence kept. `None` for an empty list.
    #[must_use]
    pub fn merge_shards(shards: Vec<Engine>) -> Option<Engine> {
        let mut it = shards.into_iter();
        let mut base = it.next()?;
        for other in it {
            let c = &mut base.counters;
            c.other_tcp_packets += other.counters.other_tcp_packets;
            c.late_packets += other.counters.late_packets;
            c.evicted_flows += other.counters.evicted_flows;
            c.duplicate_packets += other.counters.duplicate_packets;
            c.memory_shed_flows += other.counters.memory_shed_flows;
            move_slots(&mut base.slots, other.slots);
            for w in other.warnings {
                match base.warnings.iter_mut().find(|b| b.code == w.code) {
                    Some(b) => {
                        b.count += w.count;
                        if w.first_packet < b.first_packet {
                            b.message = w.message;
                            b.first_packet = w.first_packet;
                        }
                    }
                    None => base.warnings.push(w),
                }
            }
        }
        base.warnings.sort_by_key(|w| w.first_packet);
        // Numbered again in list order: each shard counted from 0.
        for (id, s) in (0..).zip(base.slots.iter_mut()) {
            s.id = id;
        }
        base.numbered = base.slots.len();
        base.next_id = base.slots.len() as ConnId;
        base.shard.count = 1;
        base.shard.index = 0;
        if base.finished {
            base.disorder_warning();
        }
        Some(base)
    }

    /// Capture counters so far.
    #[must_use]
    pub fn counters(&self) -> &CaptureCounters {
        &self.counters
    }

    /// Bytes held in all flows' TCP out-of-order and framing buffers now
    /// (bounded by [`EngineConfig::max_buffered_bytes`], this engine's share
    /// of it when the input is split between threads).
    #[must_use]
    pub fn buffered_bytes(&self) -> usize {
        self.buffered
    }

    /// Warnings so far.
    #[must_use]
    pub fn warnings(&self) -> &[Warning] {
        &self.warnings
    }

    /// The link type the engine was made for (of the first input, when
    /// several parts with different link types are read).
    #[must_use]
    #[allow(clippy::misnamed_getters)] // `link` is the one decoding now.
    pub fn link(&self) -> LinkType {
        self.first_link
    }

    /// Decodes the packets that follow with link type `link` (a merged
    /// input whose parts have different link types switches before each
    /// part's packet; nothing else changes).
    pub fn set_link(&mut self, link: LinkType) {
        self.link = link;
    }

    /// Connection slots shown to be AMQP (0-9-1, or another version that was
    /// then set aside), in the order they were recognised.
    #[must_use]
    pub fn slots(&self) -> &[ConnSlot] {
        &self.slots
    }

    /// The slot of connection `id`, if the engine still keeps it in full.
    #[must_use]
    pub fn slot(&self, id: ConnId) -> Option<&ConnSlot> {
        self.slot_index(id).and_then(|i| self.slots.get(i))
    }

    /// Where connection `id` is in [`Engine::slots`] now, if the engine
    /// still keeps it in full. (Slots are in [`ConnId`] order: numbered in
    /// list order, and folding keeps the order of the rest.)
    #[must_use]
    pub fn slot_index(&self, id: ConnId) -> Option<usize> {
        self.slots.binary_search_by_key(&id, ConnSlot::id).ok()
    }

    /// Ended connections that are no longer kept in full
    /// ([`EngineConfig::max_ended`]); empty unless it is set.
    #[must_use]
    pub fn retired(&self) -> &Retired {
        &self.retired
    }

    /// How many times ended connections were folded away so far: positions
    /// in [`Engine::slots`] moved each time.
    #[must_use]
    pub fn retire_passes(&self) -> u64 {
        self.retire_passes
    }

    /// Gives the slots recognised since the last call their [`ConnId`].
    /// Called after every batch: numbering where a slot joins the list
    /// would touch the packet path.
    fn number_slots(&mut self) {
        while let Some(s) = self.slots.get_mut(self.numbered) {
            s.id = self.next_id;
            self.next_id += 1;
            self.numbered += 1;
        }
    }

    /// True when connections keep their wire events for drawing
    /// ([`EngineConfig::timeline_events`] is set).
    #[must_use]
    pub fn records_timelines(&self) -> bool {
        self.config.timeline_events > 0
    }

    /// The confirmed AMQP 0-9-1 connections, in order of first packet.
    pub fn connections(&self) -> impl Iterator<Item = &Connection> {
        self.slots
            .iter()
            .filter(|s| s.confirmed && s.not_amqp.is_none())
            .map(|s| &s.conn)
    }

    /// Records a warning (deduplicated by code).
    pub fn warn(&mut self, code: &'static str, message: String) {
        if let Some(w) = self.warnings.iter_mut().find(|w| w.code == code) {
            w.count += 1;
        } else {
            self.warnings.push(Warning {
                code,
                message,
                count: 1,
                first_packet: self.counters.packets,
            });
        }
    }

    /// Records a warning about the input as a whole (a read error, say):
    /// once, by engine 0 when several [`Engine::new_shard`] engines read it.
    pub fn warn_input(&mut self, code: &'static str, message: String) {
        if self.shard.index == 0 {
            self.warn(code, message);
        }
    }

    /// Packets the kernel dropped since the last call (live capture): counted
    /// against every open silence, since any of them may hide lost packets.
    ///
    /// Calling it with 0 marks the input as live: the report then shows a
    /// drop count of 0 instead of "not applicable".
    pub fn on_capture_drops(&mut self, new_drops: u64) {
        let total = self.counters.dropped.get_or_insert(0);
        if new_drops == 0 {
            return;
        }
        *total += new_drops;
        for s in &mut self.slots {
            s.conn.on_capture_drops(new_drops);
        }
    }

    /// The live capture failed (`code`: the warning recording why): every
    /// open silence is marked so it ends as `capture-loss` (see
    /// [`crate::analysis::decide`]). Call before [`Engine::finish`].
    pub fn on_capture_failed(&mut self, code: &'static str) {
        for s in &mut self.slots {
            s.conn.on_capture_failed(code);
        }
    }

    /// Feeds one captured packet.
    pub fn process(&mut self, rec: &PacketRecord<'_>) {
        let a = self.classify(rec);
        self.account(rec);
        self.dispatch(&a, u32::MAX);
        self.number_slots();
    }

    /// Decodes `rec` and says which engine's it is (see [`Ahead`]).
    #[inline(always)]
    fn classify<'a>(&self, rec: &PacketRecord<'a>) -> Ahead<'a> {
        let (seg, owned) = match crate::decode::fast_head(self.link, rec.data) {
            Some(head) => {
                let (s, sp, d, dp) = head.endpoints();
                let mix = |ip: [u8; 4], port| mix_ip_port(u64::from(u32::from_be_bytes(ip)), port);
                // Another shard's packet is skipped before the segment is
                // built (the fast path never carries a SYN).
                if self.shard.count > 1 && !self.shard.owns_mixed(mix(s, sp), mix(d, dp)) {
                    return Ahead::Foreign;
                }
                (head.segment(rec.ts), true)
            }
            None => match decode(self.link, rec) {
                Ok(Decoded::Tcp(seg)) => {
                    let owned = self.shard.owns(&seg.src, &seg.dst);
                    (seg, owned)
                }
                Ok(Decoded::NotTcp) => return Ahead::NotTcp,
                Ok(Decoded::Fragment(f)) => return Ahead::Fragment(f),
                Err(e) => return Ahead::Error(e),
            },
        };
        if owned {
            let (key, dir) = FlowKey::from_packet(seg.src, seg.dst);
            let hash = self.flows.hash(&key);
            Ahead::Owned(seg, key, dir, hash)
        } else if seg.flags.syn && !seg.flags.ack {
            Ahead::ForeignSyn(seg)
        } else {
            Ahead::Foreign
        }
    }

    /// Runs a classified packet through the engine; `hint` is its flow's
    /// probable slab position (`u32::MAX`: unknown).
    fn dispatch(&mut self, a: &Ahead<'_>, hint: u32) {
        match a {
            Ahead::Owned(seg, key, dir, hash) => self.on_segment(seg, *key, *dir, *hash, hint),
            Ahead::ForeignSyn(seg) => self.foreign_syn(seg),
            Ahead::Foreign => {}
            Ahead::Fragment(f) => self.on_fragment(f),
            Ahead::NotTcp => self.counters.non_tcp_packets += 1,
            Ahead::Error(e) => self.on_decode_error(e),
        }
    }

    /// Feeds captured packets, in order: the same as [`Engine::process`] on
    /// each, faster when there are many flows. Each packet's flow state is
    /// asked for a few packets ahead, so that the memory loads of several
    /// packets overlap instead of each packet waiting for its own (with
    /// 100,000 connections, most of a packet's time was those waits).
    pub fn process_batch(&mut self, recs: &[PacketRecord<'_>]) {
        /// How many of this engine's packets ahead the index position, the
        /// table entry, the flow's state and its connection are asked for:
        /// each load needs the one before it to have arrived.
        const INDEX_AHEAD: usize = 9;
        const ENTRY_AHEAD: usize = 6;
        const FLOW_AHEAD: usize = 3;
        const SLOT_AHEAD: usize = 2;
        /// Only when connections keep a timeline (the TUI): its events are
        /// a further allocation, found from the connection.
        const TIMELINE_AHEAD: usize = 1;
        let timelines = self.config.timeline_events > 0;
        let ahead: Vec<Ahead<'_>> = recs.iter().map(|rec| self.classify(rec)).collect();
        // The stages count this engine's packets only: another shard's cost
        // next to nothing, so counting them would shorten the lead.
        let owned: Vec<(&FlowKey, u64)> = ahead
            .iter()
            .filter_map(|a| match a {
                Ahead::Owned(_, key, _, hash) => Some((key, *hash)),
                _ => None,
            })
            .collect();
        // Slab positions found at the flow stage, for the later stages.
        let mut hints = vec![u32::MAX; owned.len()];
        let mut k = 0usize;
        for (rec, a) in recs.iter().zip(&ahead) {
            let mut hint = u32::MAX;
            if let Ahead::Owned(..) = a {
                if let Some((_, hash)) = owned.get(k + INDEX_AHEAD) {
                    self.flows.prefetch_index(*hash);
                }
                if let Some((_, hash)) = owned.get(k + ENTRY_AHEAD) {
                    self.flows.prefetch_entry(*hash);
                }
                if let Some((key, hash)) = owned.get(k + FLOW_AHEAD) {
                    if let Some((at, flow)) = self.flows.peek(*hash, key) {
                        flow.prefetch();
                        if let Some(h) = hints.get_mut(k + FLOW_AHEAD) {
                            *h = at;
                        }
                    }
                }
                if let Some(&at) = hints.get(k + SLOT_AHEAD) {
                    if let Some(s) = self.slot_at(at) {
                        s.prefetch();
                    }
                }
                if timelines {
                    if let Some(&at) = hints.get(k + TIMELINE_AHEAD) {
                        if let Some(s) = self.slot_at(at) {
                            s.timeline.prefetch();
                        }
                    }
                }
                hint = hints.get(k).copied().unwrap_or(u32::MAX);
                k += 1;
            }
            self.account(rec);
            self.dispatch(a, hint);
        }
        self.number_slots();
    }

    fn on_decode_error(&mut self, e: &crate::decode::DecodeError) {
        self.counters.decode_errors += 1;
        if self.shard.index == 0 {
            let n = self.counters.packets;
            self.warn("decode-error", format!("packet {n}: {e}"));
        }
    }

    /// Counts a packet in the capture counters.
    fn account(&mut self, rec: &PacketRecord<'_>) {
        let c = &mut self.counters;
        c.packets += 1;
        c.wire_bytes += u64::from(rec.orig_len);
        c.captured_bytes += u64::from(rec.caplen);
        if rec.caplen < rec.orig_len {
            c.truncated_packets += 1;
        }
        if c.first.is_none() {
            c.first = Some(rec.ts);
        }
        match c.last {
            Some(last) if rec.ts < last => {
                c.out_of_order_timestamps += 1;
                self.on_time_step_back(rec.ts, last);
            }
            _ => {
                self.clock.advance(c.last, rec.ts);
                c.last = Some(rec.ts);
            }
        }
    }

    /// A packet stamped before the latest one: beyond the tolerance, one of
    /// the two is out of time order (see `engine::timecheck`).
    #[cold]
    fn on_time_step_back(&mut self, ts: Timestamp, last: Timestamp) {
        let Some(step) = self.clock.step_back(ts, last) else {
            return;
        };
        // Only the capture's end time follows it here: what matters to
        // verdicts is disorder within a connection, counted there (see
        // `Engine::disorder_warning`); packets of different connections
        // written out of order (the synthetic writer does) harm nothing.
        if step.latest_was_late {
            self.counters.last = Some(step.now);
        }
    }

    /// Sets the `timestamp-disorder` warning and counter from the
    /// connections' counts of packets stamped out of time order.
    fn disorder_warning(&mut self) {
        self.warnings.retain(|w| w.code != timecheck::WARNING);
        let mut count = 0u64;
        let mut worst = crate::model::Span(0);
        // The first by first packet, as reports order connections: the same
        // whatever the thread count.
        let mut first: Option<(Timestamp, FlowKey)> = None;
        for c in self.connections() {
            let n = c.timestamps_disordered();
            if n > 0 {
                count += n;
                worst = worst.max(c.worst_time_jump());
                let k = (c.first_seen, c.key);
                if first.is_none_or(|f| k < f) {
                    first = Some(k);
                }
            }
        }
        self.counters.disordered_timestamps = count;
        if let Some((_, key)) = first {
            self.warnings.push(Warning {
                code: timecheck::WARNING,
                message: timecheck::warning_message(worst, key),
                count,
                first_packet: self.counters.packets,
            });
        }
    }

    /// A fragment of an IP datagram: when it completes its datagram, the
    /// datagram's TCP segment goes on as if it had come whole, at this
    /// fragment's time.
    #[cold]
    fn on_fragment(&mut self, f: &IpFragment<'_>) {
        self.counters.ip_fragments += 1;
        let Some(datagram) = self.defrag.add(f) else {
            return;
        };
        let seg = match crate::decode::datagram_segment(&datagram) {
            Ok(Decoded::Tcp(seg)) => seg,
            Ok(_) => return,
            Err(e) => return self.on_decode_error(&e),
        };
        if self.shard.index == 0 {
            match self.warnings.iter_mut().find(|w| w.code == FRAGMENTS) {
                Some(w) => w.count += 1,
                None => {
                    let (src, dst) = (seg.src, seg.dst);
                    let n = self.counters.packets;
                    self.warn(
                        FRAGMENTS,
                        format!(
                            "TCP segments arrived in IP fragments and were put back together (first: {src} -> {dst}, \
                             packet {n}); `count` is how many"
                        ),
                    );
                }
            }
        }
        let a = if self.shard.owns(&seg.src, &seg.dst) {
            let (key, dir) = FlowKey::from_packet(seg.src, seg.dst);
            let hash = self.flows.hash(&key);
            Ahead::Owned(seg, key, dir, hash)
        } else if seg.flags.syn && !seg.flags.ack {
            Ahead::ForeignSyn(seg)
        } else {
            Ahead::Foreign
        };
        self.dispatch(&a, u32::MAX);
    }

    /// Fragmented datagrams never put back together (warned once, at the end).
    fn fragments_lost_warning(&mut self) {
        self.defrag.finish();
        let st = self.defrag.stats();
        let lost = st.expired + st.malformed;
        if lost == 0 || self.shard.index != 0 {
            return;
        }
        let cfg = DefragConfig::default();
        self.warn(
            FRAGMENTS_LOST,
            format!(
                "{lost} fragmented IP datagrams could not be put back together ({} incomplete: fragments missing \
                 from the capture, or past the caps of {} datagrams, {} MiB or {} s; {} with overlapping or \
                 impossible fragments): the analysis never saw their TCP bytes",
                st.expired,
                cfg.max_datagrams,
                cfg.max_bytes / (1024 * 1024),
                cfg.timeout.0 / 1_000_000_000,
                st.malformed
            ),
        );
        if let Some(w) = self.warnings.iter_mut().find(|w| w.code == FRAGMENTS_LOST) {
            w.count = lost;
        }
    }

    /// A second copy of a packet of flow `key`, dropped.
    #[cold]
    fn on_duplicate(&mut self, key: &FlowKey) {
        self.counters.duplicate_packets += 1;
        match self.warnings.iter_mut().find(|w| w.code == DUPLICATES) {
            Some(w) => w.count += 1,
            None => {
                let n = self.counters.packets;
                self.warn(
                    DUPLICATES,
                    format!(
                        "packets captured twice were dropped before analysis (first: {key}, packet {n}): \
                         a capture on `-i any` across a bridge, a mirror port or a capture merged with itself"
                    ),
                );
            }
        }
    }

    /// A flow's segments turned out too cut to read frames (counted once per flow).
    #[cold]
    fn on_frames_cut(&mut self, key: &FlowKey, seg: &TcpSegment<'_>) {
        match self.warnings.iter_mut().find(|w| w.code == FRAMES_CUT) {
            Some(w) => w.count += 1,
            None => {
                let (kept, wire) = (seg.payload.len(), seg.payload_len);
                self.warn(
                    FRAMES_CUT,
                    format!(
                        "the snapshot length cut AMQP frames before they could be read (first: {key}, {kept} of a \
                         segment's {wire} payload bytes captured): these connections are listed from their TCP \
                         streams on AMQP ports, silences measured from packet times and IP lengths; each segment \
                         counts as one frame, a heartbeat when it has a heartbeat's size (8 bytes; under TLS the \
                         dominant small record); Tune-Ok is unreadable, so the heartbeat is `--heartbeat`, \
                         inferred from the heartbeats' period, or unknown; capture with `tcpdump -s 0` to read \
                         frames"
                    ),
                );
            }
        }
    }

    fn is_amqp_port(&self, port: u16) -> bool {
        self.config.amqp_ports.contains(&port) || self.config.tls_ports.contains(&port)
    }

    fn is_tls_port(&self, port: u16) -> bool {
        self.config.tls_ports.contains(&port)
    }

    /// A segment of a flow this engine analyses (key `key`, hash `hash` in
    /// the flow table, probably at slab position `hint`).
    fn on_segment(
        &mut self,
        seg: &TcpSegment<'_>,
        key: FlowKey,
        dir: Direction,
        hash: u64,
        hint: u32,
    ) {
        let ts = seg.ts;
        let fresh_syn = seg.flags.syn && !seg.flags.ack;
        if fresh_syn {
            self.syns.record(ts, seg.src, seg.dst);
            self.closed.remove(&key);
            // A new connection on a 4-tuple still in the table: the old one
            // ended (FIN or RST seen, or unseen when the SYN is not its own
            // SYN again); close it first. Without this the new connection's
            // bytes would land in the old one's sequence space.
            let reuse = self.flows.get_hashed(hash, &key).and_then(|f| {
                let conn = &self.slot_of(f).conn;
                if conn.fin.iter().any(Option::is_some) || conn.rst.iter().any(Option::is_some) {
                    Some(false)
                } else {
                    (!f.tcp.repeats_syn(dir, seg.seq)).then_some(true)
                }
            });
            if let Some(unseen_end) = reuse {
                if let Some(mut flow) = self.flows.remove(&key) {
                    let end = self.slot_of(&flow).conn.last_seen;
                    if unseen_end {
                        let slot = match &mut flow.slot {
                            SlotRef::Pending(b) => &mut **b,
                            SlotRef::Index(i) => &mut self.slots[*i],
                        };
                        let by = slot.conn.role_of(dir);
                        slot.conn.on_port_reused(ts, by);
                    }
                    self.finish_flow(flow, end);
                }
            }
        }
        // One hash lookup per packet of a known flow: the flow table is the
        // biggest random access of the packet path.
        let step = match self.flows.get_mut_hinted(hint, hash, &key) {
            Some(flow) => {
                if flow.dup.is_copy(dir, seg) {
                    self.on_duplicate(&key);
                    return;
                }
                step_flow(
                    flow,
                    &mut self.slots,
                    &mut self.spare_slot,
                    &self.syns,
                    &mut self.properties,
                    seg,
                    dir,
                )
            }
            None => {
                if !self.open_flow(seg, key, dir) {
                    return;
                }
                let Some(flow) = self.flows.get_mut_hashed(hash, &key) else {
                    return;
                };
                flow.dup.is_copy(dir, seg);
                step_flow(
                    flow,
                    &mut self.slots,
                    &mut self.spare_slot,
                    &self.syns,
                    &mut self.properties,
                    seg,
                    dir,
                )
            }
        };
        if let Some(idx) = step.slot {
            self.note_new_gaps(idx);
        }
        if step.cut_started {
            self.on_frames_cut(&key, seg);
        }
        if step.held_delta != 0 {
            self.buffered = self.buffered.saturating_add_signed(step.held_delta);
            if self.buffered > self.budget() {
                self.shed_buffers(ts);
            }
        }
        if step.ended {
            if let Some(flow) = self.flows.remove(&key) {
                self.remember_ended_dups(key, flow.dup);
                self.finish_flow(flow, ts);
                self.closed.insert(key);
            }
        }
    }

    /// The connection of the flow at slab position `at` (for prefetching:
    /// the position may since hold another flow).
    fn slot_at(&self, at: u32) -> Option<&ConnSlot> {
        self.flows.at(at).map(|flow| self.slot_of(flow))
    }

    fn slot_of<'a>(&'a self, flow: &'a Flow) -> &'a ConnSlot {
        match &flow.slot {
            SlotRef::Pending(b) => b,
            SlotRef::Index(i) => &self.slots[*i],
        }
    }

    /// `slot` in a box: the spare one when there is one.
    fn slot_box(&mut self, slot: ConnSlot) -> Box<ConnSlot> {
        match self.spare_slot.take() {
            Some(mut b) => {
                *b = slot;
                b
            }
            None => Box::new(slot),
        }
    }

    /// Starts tracking a flow if it may be AMQP; false when it is ignored.
    fn open_flow(&mut self, seg: &TcpSegment<'_>, key: FlowKey, dir: Direction) -> bool {
        let ts = seg.ts;
        let fresh_syn = seg.flags.syn && !seg.flags.ack;
        let client_dir = if self.is_amqp_port(seg.dst.port) {
            dir
        } else if self.is_amqp_port(seg.src.port) {
            dir.reverse()
        } else if looks_like_protocol_header(seg.payload) {
            dir
        } else {
            self.counters.other_tcp_packets += 1;
            return false;
        };
        if !fresh_syn && self.closed.contains(&key) {
            if self.ended_copy(key, dir, seg) {
                self.on_duplicate(&key);
            } else {
                self.counters.late_packets += 1;
            }
            return false;
        }
        // Split between shards: each holds its share of the cap.
        let cap = self.config.max_flows.div_ceil(self.shard.count as usize);
        if self.flows.len() >= cap && !self.evict_one_pending() {
            self.warn(
                "flow-cap",
                format!(
                    "more than {} concurrent AMQP flows: packets of new flows were ignored (first: {key})",
                    self.config.max_flows
                ),
            );
            return false;
        }
        let at_start = seg.flags.syn;
        let role_source = if self.is_amqp_port(key.receiver(client_dir).port) {
            RoleSource::Port
        } else {
            RoleSource::ProtocolHeader
        };
        let conn = Connection::new(
            key,
            client_dir,
            role_source,
            ts,
            !at_start,
            Arc::clone(&self.analysis),
        );
        let slot = self.slot_box(ConnSlot {
            id: ConnId::MAX,
            conn,
            confirmed: false,
            not_amqp: None,
            tcp_retransmissions: [0, 0],
            timeline: Timeline::with_capacity(self.config.timeline_events),
            gaps_checked: 0,
            first_bytes: [FirstBytes::default(); 2],
            broker_rejected: false,
            properties_shared: false,
            client_properties_shared: false,
            vhost_shared: false,
            cut_counted: false,
        });
        let proto = if self.is_tls_port(seg.src.port) || self.is_tls_port(seg.dst.port) {
            Proto::tls(TlsFlow::new(at_start))
        } else if looks_like_protocol_header(seg.payload) {
            let mut f = [Framer::new(at_start), Framer::new(at_start)];
            f[dir.index()] = Framer::new(true);
            Proto::amqp(f)
        } else {
            Proto::amqp([Framer::new(at_start), Framer::new(at_start)])
        };
        self.flows.insert(
            key,
            Flow {
                tcp: TcpStream::new(self.config.reassembly),
                proto,
                slot: SlotRef::Pending(slot),
                frame_max_applied: false,
                cut: [false; 2],
                held: 0,
                dup: dedup::DupGuard::default(),
            },
        );
        if self.pending_order.len() == self.pending_order.capacity() {
            // Full: drop the keys of flows since shown to be AMQP (or gone)
            // before growing, so the list stays about as long as the pending
            // flows instead of one entry per flow ever opened.
            let flows = &self.flows;
            self.pending_order.retain(|k| {
                flows
                    .get(k)
                    .is_some_and(|f| matches!(f.slot, SlotRef::Pending(_)))
            });
            // At least half free after this, so the scan costs O(1) per flow.
            let n = self.pending_order.len();
            if n * 2 > self.pending_order.capacity() {
                self.pending_order.reserve(n);
            }
        }
        self.pending_order.push_back(key);
        if fresh_syn {
            self.on_reconnect(key.sender(client_dir), key.receiver(client_dir), ts);
        }
        true
    }

    /// A connection opening on a flow another shard analyses: it may still be
    /// the reconnect that ends one of this shard's client stalls (as in
    /// [`Engine::open_flow`]).
    fn foreign_syn(&mut self, seg: &TcpSegment<'_>) {
        // Every engine keeps every opening: wake-ups may come from any flow.
        self.syns.record(seg.ts, seg.src, seg.dst);
        let (client, broker) = if self.is_amqp_port(seg.dst.port) {
            (seg.src, seg.dst)
        } else if self.is_amqp_port(seg.src.port) {
            (seg.dst, seg.src)
        } else if looks_like_protocol_header(seg.payload) {
            (seg.src, seg.dst)
        } else {
            return;
        };
        if !self.awaiting.is_empty() {
            self.on_reconnect(client, broker, seg.ts);
        }
    }

    /// Keeps the duplicate fingerprints of a flow that just ended: copies of
    /// its last packets come after it left the flow table.
    fn remember_ended_dups(&mut self, key: FlowKey, dup: dedup::DupGuard) {
        const KEPT: usize = 16;
        if self.ended_dups.len() >= KEPT {
            self.ended_dups.pop_front();
        }
        self.ended_dups.push_back((key, dup));
    }

    /// Whether a packet of ended flow `key` is a copy of its previous packet
    /// (false when that flow's fingerprints are no longer kept).
    fn ended_copy(&mut self, key: FlowKey, dir: Direction, seg: &TcpSegment<'_>) -> bool {
        self.ended_dups
            .iter_mut()
            .rev()
            .find(|(k, _)| *k == key)
            .is_some_and(|(_, g)| g.is_copy(dir, seg))
    }

    /// This engine's share of [`EngineConfig::max_buffered_bytes`].
    fn budget(&self) -> usize {
        self.config.max_buffered_bytes / usize::try_from(self.shard.count).unwrap_or(1).max(1)
    }

    /// Over the budget ([`EngineConfig::max_buffered_bytes`]): the flows
    /// whose last packet is oldest give up their out-of-order buffers (as
    /// `overflow` holes, see [`TcpStream::shed`]) and framing buffers (see
    /// [`Framer::shed`]) until a quarter of the budget is free.
    fn shed_buffers(&mut self, now: Timestamp) {
        let budget = self.budget();
        let target = budget - budget / 4;
        let mut held: Vec<(Timestamp, FlowKey)> = self
            .flows
            .entries()
            .filter(|(_, f)| f.held > 0)
            .map(|(k, f)| (self.slot_of(f).conn.last_seen, *k))
            .collect();
        held.sort_unstable();
        let (mut flows, mut freed, mut skipped) = (0u64, 0usize, 0u64);
        let mut tally = ShedTally::default();
        for (_, key) in held {
            if self.buffered <= target {
                break;
            }
            let hash = self.flows.hash(&key);
            let Engine {
                flows: table,
                slots,
                syns,
                ..
            } = self;
            let Some(flow) = table.get_mut_hashed(hash, &key) else {
                continue;
            };
            let Flow {
                tcp,
                proto,
                slot: slot_ref,
                held,
                ..
            } = flow;
            let slot: &mut ConnSlot = match slot_ref {
                SlotRef::Pending(b) => b,
                SlotRef::Index(i) => &mut slots[*i],
            };
            // The out-of-order data first: what it delivers lands in the
            // framers, which then give up theirs.
            let (tcp_before, proto_before) = (tcp.buffered_bytes(), proto.buffered_bytes());
            skipped += tcp.shed(&mut |d, ev| feed(now, d, ev, proto, slot, syns));
            proto.shed(&key, &mut tally);
            let (tcp_after, proto_after) = (tcp.buffered_bytes(), proto.buffered_bytes());
            tally.segments_freed += tcp_before.saturating_sub(tcp_after);
            tally.framing_freed += proto_before.saturating_sub(proto_after);
            let left = tcp_after + proto_after;
            freed += held.saturating_sub(left);
            self.buffered = self.buffered.saturating_sub(*held).saturating_add(left);
            *held = left;
            flows += 1;
            if let SlotRef::Index(i) = slot_ref {
                let i = *i;
                self.note_new_gaps(i);
            }
        }
        self.counters.memory_shed_flows += flows;
        let ooo = tally.segments_freed;
        let mut parts = Vec::new();
        if ooo > 0 || skipped > 0 {
            parts.push(format!(
                "{} KiB of out-of-order segments, {} skipped as overflow holes \
                 (`overflow_skipped_bytes` per direction)",
                ooo / 1024,
                count(skipped, "missing byte", "missing bytes")
            ));
        }
        if tally.framing_freed > 0 || tally.methods > 0 {
            let methods = match &tally.first_method {
                Some(first) => format!(
                    ", {} being buffered not decoded (first: {first})",
                    count(tally.methods, "connection method", "connection methods")
                ),
                None => String::new(),
            };
            parts.push(format!(
                "{} KiB of partial frames{methods}",
                tally.framing_freed / 1024
            ));
        }
        if tally.resync_bytes > 0 {
            parts.push(format!(
                "{} of resync buffers dropped",
                count(tally.resync_bytes, "byte", "bytes")
            ));
        }
        self.warn(
            "memory-budget",
            format!(
                "data buffered across all flows (out-of-order segments and partial frames) passed {}: \
                 the buffers of the {} quiet longest were given up ({} KiB freed: {})",
                size_label(budget),
                count(flows, "flow", "flows"),
                freed / 1024,
                parts.join("; ")
            ),
        );
    }

    /// Drops the oldest flow not yet shown to be AMQP; false if there is none.
    fn evict_one_pending(&mut self) -> bool {
        while let Some(key) = self.pending_order.pop_front() {
            let pending = self
                .flows
                .get(&key)
                .is_some_and(|f| matches!(f.slot, SlotRef::Pending(_)));
            if pending {
                if let Some(f) = self.flows.remove(&key) {
                    self.buffered = self.buffered.saturating_sub(f.held);
                }
                self.counters.evicted_flows += 1;
                self.warn(
                    "flow-evicted",
                    format!(
                        "more than {} concurrent flows on AMQP ports: the oldest flows that had shown no AMQP were dropped (first: {key})",
                        self.config.max_flows
                    ),
                );
                return true;
            }
        }
        false
    }

    /// Remembers client-stall gaps ended by a reset, whose resumption can only
    /// be seen as the client's next connection.
    /// Inlined: runs for every packet; most find no new gap.
    #[inline]
    fn note_new_gaps(&mut self, slot_idx: usize) {
        let slot = &mut self.slots[slot_idx];
        // Gaps found, stored or not: over the cap a new gap may replace a
        // stored one (the new ones are last), and a gap undone for a late
        // timestamp lowers the count.
        let found = usize::try_from(slot.conn.gaps_found()).unwrap_or(usize::MAX);
        if found <= slot.gaps_checked {
            slot.gaps_checked = found;
            return;
        }
        self.note_gaps_found(slot_idx, found);
    }

    /// [`Self::note_new_gaps`] when there are `found` gaps, more than checked.
    #[cold]
    #[inline(never)]
    fn note_gaps_found(&mut self, slot_idx: usize, found: usize) {
        let slot = &mut self.slots[slot_idx];
        let len = slot.conn.gaps.len();
        for gi in len.saturating_sub(found - slot.gaps_checked)..len {
            let g = &slot.conn.gaps[gi];
            if g.silent == Role::Client
                && g.cause == Cause::ClientStall
                && g.wakeup.is_none()
                && matches!(
                    g.ended_by,
                    SilenceEnd::Rst | SilenceEnd::CaptureEnd | SilenceEnd::PortReused
                )
            {
                if self.awaiting.len() >= AWAITING_CAP {
                    self.awaiting.pop_front();
                }
                self.awaiting.push_back(AwaitingResume {
                    slot: slot_idx,
                    gap: gi,
                    client_ip: slot.conn.client().ip,
                    broker: slot.conn.broker(),
                });
            }
        }
        slot.gaps_checked = found;
    }

    /// A new connection opened: if it is a client reconnecting to a broker
    /// after a stall that the broker cut, it marks the client's resumption.
    fn on_reconnect(&mut self, client: Endpoint, broker: Endpoint, ts: Timestamp) {
        let window = self.config.analysis.wakeup_window;
        let mut i = 0;
        while i < self.awaiting.len() {
            let a = &self.awaiting[i];
            if a.client_ip == client.ip && a.broker == broker {
                let (slot, gap) = (a.slot, a.gap);
                let wakeup = self.syns.wakeup(client, broker, ts, window);
                if let Some(g) = self.slots[slot].conn.gaps.get_mut(gap) {
                    g.wakeup = wakeup;
                    g.resumed = Some((ts, client));
                }
                self.awaiting.remove(i);
            } else {
                i += 1;
            }
        }
    }

    fn finish_flow(&mut self, mut flow: Flow, end: Timestamp) {
        self.buffered = self.buffered.saturating_sub(flow.held);
        let Engine { slots, syns, .. } = self;
        let Flow {
            tcp,
            proto,
            slot: slot_ref,
            ..
        } = &mut flow;
        let slot: &mut ConnSlot = match slot_ref {
            SlotRef::Pending(b) => b,
            SlotRef::Index(i) => &mut slots[*i],
        };
        tcp.finish(&mut |d, ev| feed(end, d, ev, proto, slot, syns));
        slot.tcp_retransmissions = [
            tcp.stats(Direction::AtoB).retransmitted_segments,
            tcp.stats(Direction::BtoA).retransmitted_segments,
        ];
        slot.conn.finish(end, syns);
        // Packets one way only (a mirror port seeing one direction, asymmetric
        // routing): the direction that was seen, when the other never was.
        let seen = [
            tcp.stats(Direction::AtoB).segments,
            tcp.stats(Direction::BtoA).segments,
        ];
        let one_way = match seen {
            [a, 0] if a > 0 => Some(Direction::AtoB),
            [0, b] if b > 0 => Some(Direction::BtoA),
            _ => None,
        };
        let slot_ref = std::mem::replace(&mut flow.slot, SlotRef::Index(usize::MAX));
        let idx = match slot_ref {
            SlotRef::Index(i) => i,
            SlotRef::Pending(b) if b.confirmed => {
                promote(b, &mut self.slots, &mut self.spare_slot);
                self.slots.len() - 1
            }
            SlotRef::Pending(b) => {
                // Never shown to be AMQP: say what it was, then forget it
                // (its allocation serves the next flow).
                self.describe_rejected(&b);
                self.spare_slot = Some(b);
                return;
            }
        };
        if let Some(s) = self.slots.get(idx) {
            if let Some(what) = s.not_amqp.clone() {
                let key = s.conn.key;
                self.warn("not-amqp-0-9-1", format!("{key}: {what}; not analysed"));
            } else if let Some(dir) = one_way {
                let (client, broker) = (s.conn.client(), s.conn.broker());
                let (seen, unseen) = if dir == s.conn.client_dir {
                    ("client", "broker")
                } else {
                    ("broker", "client")
                };
                self.warn(
                    ONE_DIRECTION,
                    format!(
                        "{client} -> {broker}: only the {seen}'s packets were captured, none from the {unseen}: \
                         without both directions a silence cannot be told from traffic the capture missed, so \
                         its verdicts cannot be relied on; capture where both directions pass (on the client or \
                         broker host, or `-i any`)"
                    ),
                );
            }
        }
        self.note_new_gaps(idx);
    }

    /// A warning for a flow on an AMQP port that never showed AMQP 0-9-1.
    fn describe_rejected(&mut self, s: &ConnSlot) {
        let client = s.conn.client();
        let broker = s.conn.broker();
        if s.conn.tls.is_some() {
            self.warn(
                "not-amqp-0-9-1",
                format!(
                    "{client} -> {broker}: a TLS ClientHello got no TLS answer{}: a TLS client on a plain AMQP port? Not listed",
                    if s.broker_rejected { " (the broker answered with an AMQP protocol header and closed)" } else { "" }
                ),
            );
        } else if s.broker_rejected {
            let first = s.first_bytes[s.conn.client_dir.index()].bytes();
            let sent = if s.conn.frames_cut() && first.is_empty() {
                "an 8-byte protocol header (cut by the snapshot length)".to_owned()
            } else if s.conn.frames_cut() && first.len() < 8 {
                format!(
                    "an 8-byte protocol header of which the snapshot length kept {}",
                    crate::proto::amqp::escape(first)
                )
            } else {
                crate::proto::amqp::escape(first)
            };
            self.warn(
                "not-amqp-0-9-1",
                format!(
                    "{client} -> {broker}: the client sent {sent}, not AMQP 0-9-1; the broker answered with its protocol header and closed. Not listed"
                ),
            );
        } else if let Some(what) = &s.not_amqp {
            let key = s.conn.key;
            self.warn("not-amqp-0-9-1", format!("{key}: {what}; not analysed"));
        } else {
            self.warn(
                "no-amqp-frames",
                format!(
                    "TCP flows on an AMQP port carried no recognisable AMQP 0-9-1 frames and are not listed (first: {} -> {})",
                    client, broker
                ),
            );
        }
    }

    /// End of input: closes every flow at the last packet's time.
    pub fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        let end = self.counters.last.unwrap_or_default();
        let mut flows = self.flows.take_all();
        let mut order: Vec<((u8, usize, Timestamp), usize)> = flows
            .iter()
            .map(|(at, _, f)| {
                let k = match &f.slot {
                    SlotRef::Index(i) => (0, *i, Timestamp::default()),
                    SlotRef::Pending(b) => (1, 0, b.conn.first_seen),
                };
                (k, at)
            })
            .collect();
        order.sort_unstable();
        for (_, at) in order {
            if let Some((_, flow)) = flows.take(at) {
                self.finish_flow(flow, end);
            }
        }
        self.number_slots();
        self.disorder_warning();
        self.fragments_lost_warning();
        let c = &self.counters;
        if c.packets > 1 && c.first.is_some() && c.first == c.last {
            let at = c.first.unwrap_or_default();
            let when = if at == Timestamp(0) {
                "0 (1970-01-01)".to_owned()
            } else {
                format!("{} ns since 1970", at.as_nanos())
            };
            self.warn_input(
                NO_TIMESTAMPS,
                format!(
                    "all {} packets carry the same timestamp, {when}: the capture has no timing, so no \
                     silence can be measured and no verdict given; was it written by a tool that does not \
                     keep capture times?",
                    c.packets
                ),
            );
        }
    }

    /// Live mode: time is `now` though no packet came. Returns open silences
    /// that just passed their limit: (connection, direction, silence).
    /// Frees the timelines of connections that ended more than
    /// [`EngineConfig::timeline_keep_ended`] before `now`, and past
    /// [`EngineConfig::max_ended`] such connections folds the oldest into
    /// [`Engine::retired`].
    pub fn tick(&mut self, now: Timestamp) -> Vec<(ConnId, Direction, crate::model::Span)> {
        self.number_slots();
        let mut out = Vec::new();
        let keep = self.config.timeline_keep_ended;
        let mut gone = 0usize;
        for s in &mut self.slots {
            if !s.confirmed {
                continue;
            }
            for (dir, span) in s.conn.tick(now) {
                out.push((s.id, dir, span));
            }
            if let Some(keep) = keep {
                if s.conn.dirs().iter().all(|d| d.closed) && now.since(s.conn.last_seen()) > keep {
                    s.timeline = Timeline::default();
                    gone += 1;
                }
            }
        }
        if let (Some(keep), Some(max)) = (keep, self.config.max_ended) {
            // Folding moves every slot after the first one folded: do it
            // when an eighth more than `max` have gathered, not every tick.
            if gone > max.saturating_add(max / 8).saturating_add(16) {
                self.retire(now, keep, max);
            }
        }
        out
    }

    /// Folds ended connections that left the live table (last packet more
    /// than `keep` before `now`) into [`Engine::retired`] until `max` of
    /// them are left: those without gaps first, oldest first.
    fn retire(&mut self, now: Timestamp, keep: crate::model::Span, max: usize) {
        // A slot a flow still points at is not folded, ended or not.
        let mut in_flow = vec![false; self.slots.len()];
        for (_, f) in self.flows.entries() {
            if let SlotRef::Index(i) = f.slot {
                if let Some(b) = in_flow.get_mut(i) {
                    *b = true;
                }
            }
        }
        let mut gone: Vec<(u8, Timestamp, usize)> = self
            .slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                !in_flow[*i]
                    && s.conn.dirs().iter().all(|d| d.closed)
                    && now.since(s.conn.last_seen()) > keep
            })
            .map(|(i, s)| (fold_last(&s.conn), s.conn.last_seen(), i))
            .collect();
        if gone.len() <= max {
            return;
        }
        self.retired.keep = Some((keep, max));
        gone.sort_unstable();
        let mut fold = vec![false; self.slots.len()];
        for &(_, _, i) in &gone[..gone.len() - max] {
            fold[i] = true;
        }
        // Old position -> new position (usize::MAX: folded).
        let mut moved = Vec::with_capacity(self.slots.len());
        let mut next = 0usize;
        for &f in &fold {
            moved.push(if f { usize::MAX } else { next });
            next += usize::from(!f);
        }
        let old = std::mem::take(&mut self.slots);
        let mut kept = Vec::with_capacity(next + next / 8 + 64);
        for (s, f) in old.into_iter().zip(&fold) {
            if !*f {
                kept.push(s);
            } else if s.confirmed && s.not_amqp.is_none() {
                self.retired.add(&s.conn);
            }
        }
        self.slots = kept;
        self.numbered = self.slots.len();
        for f in self.flows.values_mut() {
            if let SlotRef::Index(i) = &mut f.slot {
                *i = moved.get(*i).copied().unwrap_or(usize::MAX);
            }
        }
        self.awaiting.retain_mut(|a| match moved.get(a.slot) {
            Some(&to) if to != usize::MAX => {
                a.slot = to;
                true
            }
            _ => false,
        });
        self.retire_passes += 1;
    }
}

/// Which ended connections are folded away last ([`Engine::retire`]):
/// those with gaps (2), then those with something else worth reading in full
/// (near-misses, protocol violations, a suspected middlebox: 1), then the rest.
fn fold_last(c: &Connection) -> u8 {
    if !c.gaps().is_empty() {
        2
    } else if c.violations().is_empty()
        && c.middlebox_suspected().is_none()
        && c.dirs().iter().all(|d| d.near_misses().0 == 0)
    {
        0
    } else {
        1
    }
}

/// Moves a pending slot's analysis into the connection list and keeps its
/// allocation for the next flow's: a slot is over 1 KiB, and allocating and
/// freeing one per connection made the allocator consolidate its small free
/// chunks every time (~2,000 instructions a connection, and slower small
/// allocations after).
fn promote(mut b: Box<ConnSlot>, slots: &mut Vec<ConnSlot>, spare: &mut Option<Box<ConnSlot>>) {
    let vacant = ConnSlot::vacant(&b.conn);
    push_slot(slots, std::mem::replace(&mut *b, vacant));
    *spare = Some(b);
}

/// Appends a slot, growing the list by an eighth instead of doubling it: a
/// slot is ~1.2 KB and lives until the report, so doubling would leave up to
/// half of a 100,000-connection list allocated and unused. (Large blocks
/// grow by `mremap`, without copying.)
fn push_slot(slots: &mut Vec<ConnSlot>, slot: ConnSlot) {
    if slots.len() == slots.capacity() {
        slots.reserve_exact(slots.len() / 8 + 64);
    }
    slots.push(slot);
}

/// Appends `from`'s slots to `to` a block at a time from `from`'s end,
/// shrinking `from` as it goes: the two lists (~1 KB per connection) are
/// never both whole in memory. The order of the moved slots changes; reports
/// sort connections by first packet.
fn move_slots(to: &mut Vec<ConnSlot>, mut from: Vec<ConnSlot>) {
    const BLOCK: usize = 4096;
    while !from.is_empty() {
        let block = from.split_off(from.len().saturating_sub(BLOCK));
        from.shrink_to_fit();
        if to.capacity() - to.len() < block.len() {
            to.reserve_exact(to.len() / 8 + block.len());
        }
        to.extend(block);
    }
}

/// One copy of each distinct broker `server_properties` table: brokers send
/// the same table on every connection (~0.6 KB each once parsed).
/// Cap: [`PropertiesPool::CAP`] distinct tables; later ones stay unshared.
#[derive(Default)]
struct PropertiesPool {
    tables: Vec<Arc<Properties>>,
    /// Shared client-property entries by name.
    entries: Vec<(String, Vec<Arc<PropEntry>>)>,
    /// Shared vhost and SASL mechanism names.
    strings: Vec<Arc<str>>,
}

impl PropertiesPool {
    const CAP: usize = 64;
    /// Distinct client-property names whose values are shared.
    const NAMES_CAP: usize = 64;
    /// Distinct values kept per name (connection_name differs on every
    /// connection: its first few fill this and the rest stay unshared).
    const VALUES_CAP: usize = 16;
    /// Entries larger than this (approximate bytes) are not shared.
    const ENTRY_BYTES_CAP: usize = 2048;

    fn share(&mut self, p: &mut Arc<Properties>) {
        if let Some(same) = self.tables.iter().find(|t| **t == *p) {
            *p = Arc::clone(same);
        } else if self.tables.len() < Self::CAP {
            self.tables.push(Arc::clone(p));
        }
    }

    /// Distinct vhost and mechanism names shared.
    const STRINGS_CAP: usize = 64;
    /// Longer names are not shared.
    const STRING_BYTES_CAP: usize = 256;

    /// Replaces a vhost or mechanism name with an equal shared copy.
    fn share_str(&mut self, s: &mut Arc<str>) {
        if s.len() > Self::STRING_BYTES_CAP {
            return;
        }
        if let Some(same) = self.strings.iter().find(|t| **t == *s) {
            *s = Arc::clone(same);
        } else if self.strings.len() < Self::STRINGS_CAP {
            self.strings.push(Arc::clone(s));
        }
    }

    /// Replaces each entry of a client's properties with an equal shared
    /// copy: clients of one application send the same product, version,
    /// platform and capabilities on every connection.
    fn share_entries(&mut self, p: &mut Properties) {
        for e in p.entries_mut() {
            if entry_bytes(&e.1, Self::ENTRY_BYTES_CAP, 0) > Self::ENTRY_BYTES_CAP {
                continue;
            }
            let i = match self.entries.iter().position(|(k, _)| *k == e.0) {
                Some(i) => i,
                None if self.entries.len() < Self::NAMES_CAP => {
                    self.entries.push((e.0.clone(), Vec::new()));
                    self.entries.len() - 1
                }
                None => continue,
            };
            let Some((_, values)) = self.entries.get_mut(i) else {
                continue;
            };
            if let Some(same) = values.iter().find(|v| ***v == **e) {
                *e = Arc::clone(same);
            } else if values.len() < Self::VALUES_CAP {
                values.push(Arc::clone(e));
            }
        }
    }
}

/// Approximate heap bytes of a property value, counting stops past `cap`.
fn entry_bytes(v: &PropValue, cap: usize, depth: u8) -> usize {
    if depth > 8 {
        return cap + 1;
    }
    match v {
        PropValue::Text(t) => t.len(),
        PropValue::Int(_) | PropValue::Bool(_) | PropValue::Float(_) | PropValue::Null => 0,
        PropValue::Table(t) => {
            let mut n = 0usize;
            for (k, v) in t.iter() {
                n = n.saturating_add(k.len() + 64 + entry_bytes(v, cap, depth + 1));
                if n > cap {
                    break;
                }
            }
            n
        }
        PropValue::Array(a) => {
            let mut n = 0usize;
            for v in a {
                n = n.saturating_add(32 + entry_bytes(v, cap, depth + 1));
                if n > cap {
                    break;
                }
            }
            n
        }
    }
}

/// What one segment did to its flow.
struct Step {
    /// The flow's slot index once it is in the connection list.
    slot: Option<usize>,
    /// Change of the flow's out-of-order buffer bytes.
    held_delta: isize,
    /// RST, or FIN both ways: the flow is over.
    ended: bool,
    /// A connection with frames cut was just shown to be AMQP.
    cut_started: bool,
}

/// Runs one segment through a flow's reassembly, framing and analysis, and
/// moves the flow's slot into `slots` once it is shown to be AMQP.
#[inline(always)]
fn step_flow(
    flow: &mut Flow,
    slots: &mut Vec<ConnSlot>,
    spare: &mut Option<Box<ConnSlot>>,
    syns: &SynLog,
    properties: &mut PropertiesPool,
    seg: &TcpSegment<'_>,
    dir: Direction,
) -> Step {
    let ts = seg.ts;
    let Flow {
        tcp,
        proto,
        frame_max_applied,
        held,
        slot: slot_ref,
        cut,
        ..
    } = flow;
    let slot: &mut ConnSlot = match slot_ref {
        SlotRef::Pending(b) => b,
        SlotRef::Index(i) => &mut slots[*i],
    };
    // A TLS ClientHello on an AMQP port: AMQPS on a non-standard port.
    if proto.tls.is_none() && !slot.confirmed && looks_like_client_hello(seg.payload) {
        *proto = Proto::tls(TlsFlow::new(tcp.syn_seen(dir)));
        slot.not_amqp = None;
    }
    slot.conn.on_packet(ts, dir);
    if let Some((from, to)) = slot.conn.on_ip_id(ts, dir, seg.ip_id, seg.payload_len) {
        // A segment starting right at the end of what was seen shows that
        // nothing new was sent before it: the packets not seen were ACKs.
        if !tcp.starts_at_high(dir, seg) {
            slot.conn.on_ip_id_jump(dir, from, to);
        }
    }
    let mut cut_started = false;
    if seg.payload.len() < seg.payload_len as usize && !cut[dir.index()] {
        start_cut(cut, dir, seg, proto, slot);
    }
    if *cut != [false; 2] {
        step_cut(tcp, cut, dir, seg, proto, slot, syns);
        // Counted once the connection is shown to be AMQP.
        cut_started = slot.confirmed && !std::mem::replace(&mut slot.cut_counted, slot.confirmed);
    } else {
        tcp.on_segment(dir, seg, &mut |d, ev| feed(ts, d, ev, proto, slot, syns));
    }
    let now_held = tcp.buffered_bytes() + proto.buffered_bytes();
    let held_delta = now_held.cast_signed() - held.cast_signed();
    *held = now_held;
    if !*frame_max_applied {
        if let (Some((_, fm, _)), Proto { framers, tls: None }) =
            (slot.conn.handshake.tune_ok, &mut *proto)
        {
            for f in framers.iter_mut() {
                f.set_frame_max(fm);
            }
            *frame_max_applied = true;
        }
    }
    if !slot.properties_shared {
        if let Some(p) = slot.conn.handshake.server_properties.as_mut() {
            properties.share(p);
            slot.properties_shared = true;
        }
    }
    if !slot.client_properties_shared {
        if let Some(p) = slot.conn.handshake.client_properties.as_mut() {
            properties.share_entries(p);
            slot.client_properties_shared = true;
        }
        if let Some(m) = slot.conn.handshake.mechanism.as_mut() {
            properties.share_str(m);
        }
    }
    if !slot.vhost_shared {
        if let Some(v) = slot.conn.handshake.vhost.as_mut() {
            properties.share_str(v);
            slot.vhost_shared = true;
        }
    }
    let conn = &slot.conn;
    let ended = conn.rst.iter().any(Option::is_some) || conn.fin.iter().all(Option::is_some);
    let confirmed = slot.confirmed;
    // Promote: the slot moves into the connection list once shown to be AMQP.
    if confirmed {
        if let SlotRef::Pending(_) = slot_ref {
            let idx = slots.len();
            if let SlotRef::Pending(b) = std::mem::replace(slot_ref, SlotRef::Index(idx)) {
                promote(b, slots, spare);
            }
        }
    }
    Step {
        slot: match slot_ref {
            SlotRef::Index(i) => Some(*i),
            SlotRef::Pending(_) => None,
        },
        held_delta,
        ended,
        cut_started,
    }
}

/// A segment the snapshot length cut: whether its direction's frames can no
/// longer be read (see [`crate::proto::amqp::too_cut_to_frame`]), on a flow
/// on an AMQP port whose reader has recognised nothing in that direction.
/// Sets `cut` and marks the connection.
#[cold]
fn start_cut(
    cut: &mut [bool; 2],
    dir: Direction,
    seg: &TcpSegment<'_>,
    proto: &Proto,
    slot: &mut ConnSlot,
) {
    // A TLS record header is 5 bytes: what its reader can still read.
    let unreadable = match &proto.tls {
        None => {
            too_cut_to_frame(seg.payload.len(), seg.payload_len)
                && !proto.framers[dir.index()].recognised()
        }
        Some(t) => seg.payload.len() < seg.payload_len.min(5) as usize && !t.server_hello,
    };
    // On an AMQP port (the client's cut protocol header may since have named the roles).
    let on_port = slot.conn.role_source == RoleSource::Port || cut[dir.reverse().index()];
    if unreadable && on_port && slot.not_amqp.is_none() {
        cut[dir.index()] = true;
        slot.conn.set_frames_cut();
    }
}

/// One segment of a flow with a direction whose frames are cut: the stream
/// events as usual, except that a cut direction's bytes and holes skip its
/// framer (they would only lose sync); instead each of its segments that is
/// wholly new counts as one frame read from its length ([`cut_segment`]), at
/// the segment's time.
#[cold]
#[inline(never)]
fn step_cut(
    tcp: &mut TcpStream,
    cut: &[bool; 2],
    dir: Direction,
    seg: &TcpSegment<'_>,
    proto: &mut Proto,
    slot: &mut ConnSlot,
    syns: &SynLog,
) {
    let ts = seg.ts;
    // The first new offset of this segment and the new bytes it brought.
    let mut fresh: Option<(u64, u64)> = None;
    tcp.on_segment(dir, seg, &mut |d, ev| {
        if !cut[d.index()] {
            return feed(ts, d, ev, proto, slot, syns);
        }
        match ev {
            StreamEvent::Data { bytes, .. } => slot.first_bytes[d.index()].keep(bytes),
            StreamEvent::Hole { offset, len, kind } => hole_facts(ts, d, offset, len, kind, slot),
            StreamEvent::NewBytes { offset, len } if d == dir => {
                let f = fresh.get_or_insert((offset, 0));
                f.1 += len;
                feed(ts, d, ev, proto, slot, syns);
            }
            other => feed(ts, d, other, proto, slot, syns),
        }
    });
    let Some((offset, len)) = fresh else {
        return;
    };
    if !cut[dir.index()] || len != u64::from(seg.payload_len) {
        return;
    }
    let at_start = offset == 0 && tcp.syn_seen(dir);
    let from_client = dir == slot.conn.client_dir;
    let kept = seg
        .payload
        .get(..seg.payload.len().min(len as usize))
        .unwrap_or(&[]);
    if let Some(t) = proto.tls.as_deref_mut() {
        // A TLS record header (5 bytes) ahead of each record.
        let record = u16::try_from(len.saturating_sub(5)).unwrap_or(u16::MAX);
        let ev = TlsEvent::Record {
            content_type: CONTENT_APPLICATION_DATA,
            len: record,
            offset,
        };
        apply_tls(ts, dir, vec![ev], t, slot);
        return;
    }
    let frame = |kind| {
        AmqpEvent::Frame(crate::proto::amqp::FrameInfo {
            kind,
            channel: 0,
            size: seg.payload_len.saturating_sub(HEARTBEAT_FRAME_LEN),
            offset,
        })
    };
    match cut_segment(at_start, from_client, kept, seg.payload_len) {
        // Not yet AMQP 0-9-1: an AMQP 1.0 client sends 8 bytes too. The
        // broker's answer tells (Connection.Start, or its own header).
        CutSegment::ProtocolHeader => {
            // Only "AMQP" itself names the roles; a length of 8 alone does not.
            if kept.len() >= 4 {
                slot.conn.on_protocol_header(dir);
            }
        }
        CutSegment::Refusal => slot.broker_rejected = true,
        CutSegment::Heartbeat => apply_amqp_event(ts, dir, frame(FrameKind::Heartbeat), slot),
        CutSegment::Other => apply_amqp_event(ts, dir, frame(FrameKind::Body), slot),
        CutSegment::NotAmqp => {
            let what = if kept.is_empty() {
                "cut by the snapshot length".to_owned()
            } else {
                let kept = crate::proto::amqp::escape(kept);
                format!("starts with {kept}, the rest cut by the snapshot length")
            };
            let whose = if from_client { "client" } else { "broker" };
            slot.not_amqp = Some(format!(
                "the {whose}'s first segment ({len} bytes, {what}) does not start AMQP 0-9-1"
            ));
        }
    }
}

/// Routes one reassembly event to the framer and the analysis.
fn feed(
    ts: Timestamp,
    d: Direction,
    ev: StreamEvent<'_>,
    proto: &mut Proto,
    slot: &mut ConnSlot,
    syns: &SynLog,
) {
    let conn = &mut slot.conn;
    let line = &mut slot.timeline;
    match ev {
        StreamEvent::Syn => {}
        StreamEvent::Ack {
            advanced,
            pure,
            window,
            zero_window,
            ..
        } => {
            if pure {
                line.record(d, ts, Kinds::PURE_ACK);
            }
            conn.on_ack(ts, d, advanced, pure, window, zero_window);
        }
        StreamEvent::NewBytes { offset, len } => {
            line.record(d, ts, Kinds::DATA);
            conn.on_new_bytes(ts, d, offset, len, syns);
        }
        StreamEvent::Retransmission { .. } => {
            line.record(d, ts, Kinds::RETRANSMISSION);
            conn.on_retransmission(ts, d);
        }
        StreamEvent::KeepAlive => {
            line.record(d, ts, Kinds::KEEPALIVE);
            conn.on_keepalive(ts, d);
        }
        StreamEvent::Fin => {
            line.record(d, ts, Kinds::FIN);
            conn.on_fin(ts, d, syns);
        }
        StreamEvent::Rst => {
            line.record(d, ts, Kinds::RST);
            conn.on_rst(ts, d, syns);
        }
        StreamEvent::Data { offset, bytes } => {
            slot.first_bytes[d.index()].keep(bytes);
            feed_data(ts, d, offset, bytes, proto, slot);
        }
        StreamEvent::Unseen { offset, len, proof } => {
            let kind = match proof {
                SeqProof::Ack => LossProofKind::Ack,
                SeqProof::Sack => LossProofKind::Sack,
                SeqProof::Fin => LossProofKind::Fin,
                SeqProof::Rst => LossProofKind::Rst,
                SeqProof::NextSeq => LossProofKind::NextSeq,
            };
            if proof != SeqProof::Ack {
                // An ACK's proof is drawn by the hole it fills.
                line.record(d, ts, Kinds::HOLE);
            }
            conn.on_unseen(ts, d, offset, len, kind);
        }
        StreamEvent::Hole { offset, len, kind } => {
            hole_facts(ts, d, offset, len, kind, slot);
            match proto {
                Proto { framers, tls: None } => {
                    let mut events = Vec::new();
                    framers[d.index()].hole(offset, len, &mut |e| events.push(e));
                    apply_amqp(ts, d, events, slot);
                }
                Proto { tls: Some(t), .. } => t.readers[d.index()].hole(offset, len),
            }
        }
    }
}

/// What a hole tells the analysis and the timeline (the framers are told by the caller).
fn hole_facts(
    ts: Timestamp,
    d: Direction,
    offset: u64,
    len: u64,
    kind: HoleKind,
    slot: &mut ConnSlot,
) {
    let class = match kind {
        HoleKind::Snaplen => HoleClass::Snaplen,
        HoleKind::NotCaptured => HoleClass::NotCaptured,
        HoleKind::Overflow => HoleClass::Overflow,
    };
    if class == HoleClass::NotCaptured {
        slot.timeline.record(d, ts, Kinds::HOLE);
    }
    slot.conn.on_hole(ts, d, offset, len, class);
}

/// In-order bytes to the AMQP framer or the TLS record reader.
fn feed_data(
    ts: Timestamp,
    d: Direction,
    offset: u64,
    bytes: &[u8],
    proto: &mut Proto,
    slot: &mut ConnSlot,
) {
    match proto {
        Proto { framers, tls: None } => {
            if slot.not_amqp.is_some() {
                return;
            }
            // Straight from the framer to the analysis: no per-segment Vec.
            framers[d.index()].data(offset, bytes, &mut |e| apply_amqp_event(ts, d, e, slot));
        }
        Proto { tls: Some(t), .. } => {
            let mut events = Vec::new();
            t.readers[d.index()].data(offset, bytes, &mut |e| events.push(e));
            apply_tls(ts, d, events, t, slot);
        }
    }
}

fn apply_amqp(ts: Timestamp, d: Direction, events: Vec<AmqpEvent>, slot: &mut ConnSlot) {
    for e in events {
        apply_amqp_event(ts, d, e, slot);
    }
}

fn apply_amqp_event(ts: Timestamp, d: Direction, e: AmqpEvent, slot: &mut ConnSlot) {
    {
        match e {
            AmqpEvent::ProtocolHeader { .. } => {
                if slot.conn.role_source == RoleSource::Port && slot.conn.role_of(d) == Role::Broker
                {
                    // A broker sends its protocol header only to refuse the
                    // client's: this flow is not an AMQP 0-9-1 connection.
                    slot.broker_rejected = true;
                } else {
                    slot.confirmed = true;
                    slot.conn.on_protocol_header(d);
                }
            }
            AmqpEvent::Frame(f) => {
                slot.confirmed = true;
                let kind = if f.kind == FrameKind::Heartbeat {
                    Kinds::HEARTBEAT
                } else {
                    Kinds::FRAME
                };
                slot.timeline.record(d, ts, kind);
                slot.conn.on_frame(ts, d, &f);
            }
            AmqpEvent::Method(m) => {
                if let ConnMethod::Start { .. } = m {
                    slot.confirmed = true;
                }
                slot.conn.on_method(ts, d, &m);
            }
            AmqpEvent::Violation { offset, detail } => {
                let who = slot.conn.role_of(d).as_str();
                slot.conn
                    .on_violation(format!("{who} stream offset {offset}: {detail}"));
            }
            AmqpEvent::LostSync { offset, reason } => {
                slot.conn.on_lost_sync();
                let who = slot.conn.role_of(d).as_str();
                slot.conn.on_violation(format!(
                    "{who} stream offset {offset}: framing lost: {reason}"
                ));
            }
            AmqpEvent::Synced { .. } => {}
            AmqpEvent::NotAmqp091 { looks_like } => {
                if !slot.confirmed || slot.not_amqp.is_none() {
                    slot.not_amqp = Some(looks_like);
                }
            }
        }
    }
}

/// Turns TLS record facts into connection facts: heartbeat-sized application
/// records count as heartbeat frames (so the timeout can be inferred from
/// their period), other records as other frames.
fn apply_tls(
    ts: Timestamp,
    d: Direction,
    events: Vec<TlsEvent>,
    t: &mut TlsFlow,
    slot: &mut ConnSlot,
) {
    use crate::proto::amqp::{FrameInfo, FrameKind};
    for e in events {
        let info = slot.conn.tls.get_or_insert_with(Box::default);
        match e {
            TlsEvent::ClientHello {
                sni,
                alpn,
                offers_tls13,
            } => {
                info.sni = sni;
                info.alpn = alpn;
                info.client_offers_tls13 = offers_tls13;
                if slot.conn.role_source == RoleSource::Port && slot.conn.role_of(d) != Role::Client
                {
                    slot.conn.set_client_dir(d, RoleSource::ProtocolHeader);
                }
            }
            TlsEvent::ServerHello { version, cipher } => {
                info.version = Some(version);
                info.cipher = Some(cipher);
                if let Some(len) = heartbeat_record_len(version, cipher) {
                    info.heartbeat_record_len = Some(len);
                    info.heartbeat_len_from_cipher = true;
                }
                t.server_hello = true;
                slot.confirmed = true;
            }
            TlsEvent::Record {
                content_type,
                len,
                offset,
            } => {
                if content_type == CONTENT_ALERT {
                    info.alerts = info.alerts.saturating_add(1);
                }
                if content_type != CONTENT_APPLICATION_DATA {
                    continue;
                }
                t.app_records[d.index()] += 1;
                if t.app_records[0] > 0 && t.app_records[1] > 0 {
                    slot.confirmed = true;
                }
                if info.heartbeat_record_len.is_none() {
                    if let Some(l) = t.sizes.learn(d.index(), len) {
                        info.heartbeat_record_len = Some(l);
                        info.heartbeat_len_from_cipher = false;
                    }
                }
                let mut kind = if Some(len) == info.heartbeat_record_len {
                    FrameKind::Heartbeat
                } else {
                    FrameKind::Body
                };
                if kind == FrameKind::Heartbeat
                    && !t.header_record_skipped
                    && slot.conn.role_of(d) == Role::Client
                {
                    t.header_record_skipped = true;
                    kind = FrameKind::Body;
                }
                slot.timeline.record(
                    d,
                    ts,
                    if kind == FrameKind::Heartbeat {
                        Kinds::HEARTBEAT
                    } else {
                        Kinds::FRAME
                    },
                );
                let frame = FrameInfo {
                    kind,
                    channel: 0,
                    size: u32::from(len),
                    offset,
                };
                slot.conn.on_frame(ts, d, &frame);
            }
            TlsEvent::LostSync { offset, reason } => {
                slot.conn.on_lost_sync();
                let who = slot.conn.role_of(d).as_str();
                slot.conn
                    .on_violation(format!("{who} TLS stream offset {offset}: {reason}"));
            }
        }
    }
}
