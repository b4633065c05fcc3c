//! One connection's heartbeat state: handshake, per-direction silences, open
//! and closed gaps, how it ended.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::model::{count, Direction, Endpoint, FlowKey, Span, Timestamp};
use crate::proto::amqp::{CloseInfo, ConnMethod, FrameInfo, FrameKind, PropValue, Properties};

use super::clock::{ConnClock, Undo, DISORDER_TOLERANCE};
use super::*;

/// Where the heartbeat limit came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HeartbeatSource {
    /// Connection.Tune-Ok (client -> broker): what the broker enforces.
    TuneOk,
    /// Connection.Tune (the broker's proposal; Tune-Ok not in the capture).
    Tune,
    /// `--heartbeat` given by the user.
    Override,
    /// Inferred from the idle heartbeat period (timeout/2).
    Inferred,
    /// Not known.
    Unknown,
}

impl HeartbeatSource {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HeartbeatSource::TuneOk => "tune-ok",
            HeartbeatSource::Tune => "tune",
            HeartbeatSource::Override => "override",
            HeartbeatSource::Inferred => "inferred",
            HeartbeatSource::Unknown => "unknown",
        }
    }
}

/// Tunables of the analysis.
#[derive(Debug, Clone, Copy)]
pub struct AnalysisConfig {
    /// `--heartbeat`: used when the negotiation is not in the capture.
    pub heartbeat_override: Option<u16>,
    /// How long before a resumption a new connection counts as its wake-up.
    pub wakeup_window: Span,
    /// Window after a resumption in which frames count as a burst.
    pub burst_window: Span,
    /// Silences kept per direction while the limit is still unknown.
    pub pending_cap: usize,
    /// Gaps kept per connection (later ones are counted, not stored).
    pub max_gaps_per_connection: usize,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            heartbeat_override: None,
            wakeup_window: Span::from_millis(2_000),
            burst_window: Span::from_millis(100),
            pending_cap: 16,
            max_gaps_per_connection: 1_000,
        }
    }
}

/// Per-direction state.
#[derive(Debug, Clone, Default)]
pub struct DirState {
    /// Last time new bytes were seen.
    pub last_activity: Option<Timestamp>,
    /// Last time new bytes were seen (never moved by FIN, RST or the capture's end).
    pub last_data: Option<Timestamp>,
    /// First time anything was seen from this sender.
    pub first_activity: Option<Timestamp>,
    /// New bytes (sequence space) seen.
    pub bytes: u64,
    /// Frames decoded.
    pub frames: u64,
    /// Heartbeat frames decoded.
    pub heartbeats: u64,
    /// Retransmitted segments.
    pub retransmissions: u64,
    /// Bytes never captured (holes proven by ACKs or sequence jumps).
    pub missed_bytes: u64,
    /// Bytes cut by the snapshot length.
    pub snaplen_bytes: u64,
    /// Bytes skipped because the out-of-order buffer cap was hit.
    pub overflow_bytes: u64,
    /// Stream offset up to which missing bytes were already counted as evidence.
    missed_counted_to: u64,
    /// Stream offset up to which bytes the sender's own numbers proved sent
    /// (and the capture never saw) were already counted as evidence.
    sent_counted_to: u64,
    /// The sender's IPv4 IDs (see [`Connection::on_ip_id`]).
    ip_ids: IpIdRun,
    /// Longest silence so far (closed silences, however they ended).
    pub longest_silence: Span,
    /// Longest silence between two new-data segments (comparable with
    /// tshark's inter-packet times).
    pub longest_data_silence: Span,
    /// Evidence accumulating for the current silence.
    pub evidence: Evidence,
    /// The direction's sender closed (FIN) or the connection was reset.
    pub closed: bool,
    /// Highest stream offset + 1 seen as new bytes.
    seen_end: u64,
    /// Last window the sender advertised.
    last_window: Option<u32>,
    /// Last frame was a heartbeat at this time (for interval inference).
    last_hb: Option<Timestamp>,
    /// Intervals between consecutive heartbeat frames (nothing else between):
    /// how many, their sum and the longest (the idle send cadence).
    hb_cadence: (u64, Span, Span),
    /// State most connections never need (boxed: ~80 bytes per direction).
    rare: Option<Box<DirRare>>,
    /// Whether the open silence was already reported as flagged (live).
    pub open_flagged: bool,
}

/// A sender's IPv4 IDs on this connection. Linux gives every packet of a
/// connected TCP socket the next ID of the socket's own counter, so on such
/// a flow an ID that jumps by k > 1 means k - 1 packets were sent that this
/// capture point never saw. Other systems use one counter for the whole host
/// (it jumps whenever the host sends anything else) or random IDs: the IDs
/// are trusted only after [`IP_ID_TRUST_STEPS`] steps of exactly +1 spread
/// over at least [`IP_ID_TRUST_SPAN`], and never again after a jump seen
/// before that.
#[derive(Debug, Clone, Copy, Default)]
struct IpIdRun {
    /// Last non-zero ID (0: none yet).
    last: u16,
    /// Consecutive steps of +1 so far.
    steps: u16,
    /// The previous packet may have been several segments sent as one
    /// (segmentation offload) or merged on receipt: the next step is not judged.
    after_large: bool,
    /// A jump before the IDs were trusted: not a per-connection counter.
    broken: bool,
    /// When the first ID was seen.
    first: Timestamp,
}

/// Steps of exactly +1 before a sender's IPv4 IDs are trusted.
const IP_ID_TRUST_STEPS: u16 = 8;
/// Time those steps must span: a host-wide counter does not stay +1 per
/// packet of one connection for seconds on a host that sends anything else.
const IP_ID_TRUST_SPAN: Span = Span(2_000_000_000);
/// A packet with more payload than one full Ethernet segment may have been
/// sent with segmentation offload (one ID per segment) or merged on receipt.
const IP_ID_LARGE_PAYLOAD: u32 = 1460;

/// The parts of [`DirState`] used only while the limit is unknown or just
/// after a gap.
#[derive(Debug, Clone, Default)]
struct DirRare {
    /// Intervals between consecutive idle heartbeats (bounded ring).
    hb_intervals: VecDeque<Span>,
    /// Index of a gap whose resume burst is being counted, and until when.
    burst: Option<(usize, Timestamp)>,
    /// Silences kept while the limit is unknown.
    pending: Vec<Gap>,
    /// Near-misses: silences ended by data of at least
    /// [`NEAR_MISS_NUM`]/[`NEAR_MISS_DEN`] of the limit, not over it.
    near_misses: u64,
    /// The first [`MAX_NEAR_MISSES`] of them: (start, end).
    near_miss_list: Vec<(Timestamp, Timestamp)>,
}

impl DirState {
    /// Heartbeat send cadence: (intervals measured, their mean, the longest),
    /// over consecutive heartbeat frames with nothing else between.
    #[must_use]
    pub fn heartbeat_cadence(&self) -> Option<(u64, Span, Span)> {
        let (n, sum, max) = self.hb_cadence;
        let mean = sum.0.checked_div(i64::try_from(n).ok()?)?;
        Some((n, Span(mean), max))
    }

    /// Near-misses counted, and the first ones kept: (start, end).
    #[must_use]
    pub fn near_misses(&self) -> (u64, &[(Timestamp, Timestamp)]) {
        self.rare
            .as_ref()
            .map_or((0, &[][..]), |r| (r.near_misses, &r.near_miss_list[..]))
    }

    fn rare(&mut self) -> &mut DirRare {
        self.rare.get_or_insert_with(Box::default)
    }

    fn no_pending(&self) -> bool {
        self.rare.as_ref().is_none_or(|r| r.pending.is_empty())
    }

    fn clear_pending(&mut self) {
        if let Some(r) = self.rare.as_mut() {
            r.pending.clear();
        }
    }
}

/// Connection-level facts from the handshake.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Handshake {
    /// Protocol header seen.
    pub protocol_header: bool,
    /// Broker's server_properties (Connection.Start), only the fields in
    /// [`SERVER_PROPERTIES_KEPT`].
    /// Shared (`Arc`): a broker sends the same table on every connection and
    /// the engine keeps one copy of each distinct table.
    pub server_properties: Option<std::sync::Arc<Properties>>,
    /// Client's client_properties (Connection.Start-Ok; never the SASL response).
    pub client_properties: Option<Properties>,
    /// SASL mechanism the client chose.
    /// Shared (`Arc`): the engine keeps one copy of each distinct name.
    pub mechanism: Option<Arc<str>>,
    /// Broker's Tune: (channel_max, frame_max, heartbeat).
    pub tune: Option<(u16, u32, u16)>,
    /// Client's Tune-Ok: (channel_max, frame_max, heartbeat).
    pub tune_ok: Option<(u16, u32, u16)>,
    /// Virtual host from Connection.Open.
    /// Shared (`Arc`): the engine keeps one copy of each distinct name.
    pub vhost: Option<Arc<str>>,
    /// Connection.Open-Ok seen.
    pub open_ok: bool,
}

/// What the record layer shows of an AMQPS (TLS) connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// Negotiated version (0x0303 = 1.2, 0x0304 = 1.3) from the ServerHello.
    pub version: Option<u16>,
    /// Cipher suite from the ServerHello.
    pub cipher: Option<u16>,
    /// Server name from the ClientHello.
    pub sni: Option<String>,
    /// ALPN protocols the client offered.
    pub alpn: Vec<String>,
    /// The client offered TLS 1.3.
    pub client_offers_tls13: bool,
    /// Length of the record that carries a heartbeat frame.
    pub heartbeat_record_len: Option<u16>,
    /// True when that length comes from the version and cipher, false when
    /// it was learned as the dominant small record size.
    pub heartbeat_len_from_cipher: bool,
    /// Alert records seen (encrypted after the handshake).
    pub alerts: u32,
}

/// A Connection.Close or Channel.Close seen on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseEvent {
    /// When.
    pub at: Timestamp,
    /// Who sent it.
    pub by: Role,
    /// Channel (0 for Connection.Close).
    pub channel: u16,
    /// Reply code and text.
    pub info: CloseInfo,
}

/// A Connection.Blocked or Connection.Unblocked from the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockedEvent {
    /// When.
    pub at: Timestamp,
    /// `true` for Blocked, `false` for Unblocked.
    pub blocked: bool,
    /// The reason the broker gave (Blocked only), e.g. "low on memory".
    pub reason: Option<Arc<str>>,
}

/// How the connection ended, from the first ending event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndHow {
    /// Connection.Close handshake.
    Close,
    /// FIN without Connection.Close.
    Fin,
    /// RST.
    Rst,
    /// A new connection opened on the same 4-tuple (a SYN with a new
    /// initial sequence number) while this one was still open in the
    /// capture: it had ended without the capture seeing how.
    PortReused,
    /// Still open when the capture ended.
    CaptureEnd,
}

impl EndHow {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EndHow::Close => "close",
            EndHow::Fin => "fin",
            EndHow::Rst => "rst",
            EndHow::PortReused => "port-reused",
            EndHow::CaptureEnd => "capture-end",
        }
    }
}

/// The connection ended in a way only a middlebox's idle timeout explains
/// (see [`Connection::middlebox_suspected`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MiddleboxEnd {
    /// The side whose FIN or RST ended the connection, as the capture saw it.
    pub seen_from: Role,
    /// FIN or RST.
    pub how: EndHow,
    /// When.
    pub at: Timestamp,
    /// How long both directions had been idle (no new byte) before it.
    pub idle: Span,
    /// The connection's heartbeat timeout (0 = disabled).
    pub heartbeat: u16,
}

impl MiddleboxEnd {
    /// The middlebox's idle timeout as estimated from the idle period, in
    /// whole seconds (timeouts are configured in seconds).
    #[must_use]
    pub fn idle_timeout_s(&self) -> u64 {
        let ms = u64::try_from(self.idle.0 / 1_000_000).unwrap_or(0);
        ((ms + 500) / 1_000).max(1)
    }

    /// Why the end is blamed on a middlebox.
    #[must_use]
    pub fn reason(&self) -> String {
        let side = self.seen_from.as_str();
        let what = match self.how {
            EndHow::Rst => "reset (RST)",
            _ => "closed (FIN)",
        };
        let beats = if self.heartbeat == 0 {
            "heartbeats are disabled, so nothing crosses an idle connection".to_owned()
        } else if self.idle < Span::from_millis(i64::from(self.heartbeat) * 500) {
            format!(
                "no heartbeat was due yet (timeout {} s: a frame every {:.1} s each way), so no heartbeat check gave up",
                self.heartbeat,
                f64::from(self.heartbeat) / 2.0
            )
        } else {
            format!(
                "less than the heartbeat deadline (timeout {} s), so no heartbeat check gave up",
                self.heartbeat
            )
        };
        let rabbit = if self.seen_from == Role::Broker && self.how == EndHow::Fin {
            "; RabbitMQ never ends a connection with a FIN without Connection.Close"
        } else {
            ""
        };
        format!(
            "the {side} side {what} the connection without Connection.Close after both directions were idle for {:.3} s; {beats}{rabbit}",
            self.idle.as_secs_f64()
        )
    }

    /// What to do about it.
    #[must_use]
    pub fn advice(&self) -> String {
        let n = self.idle_timeout_s();
        #[allow(clippy::cast_precision_loss)]
        let half = n as f64 / 2.0;
        let what = if self.heartbeat == 0 {
            "enable heartbeats"
        } else {
            "set heartbeat"
        };
        format!(
            "a middlebox (proxy, load balancer, NAT, firewall) closes idle connections after ~{n} s: {what} below {half} s (N/2), or raise its idle timeout"
        )
    }
}

/// A FIN or RST comes from an application's own close only if it follows its
/// last action; a middlebox's idle timer fires after at least this much
/// quiet (timeouts are configured in seconds).
const MIDDLEBOX_MIN_IDLE: Span = Span(1_000_000_000);

/// What a gap led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Consequence {
    /// The broker closed the socket (FIN/RST) without Connection.Close.
    BrokerReset,
    /// The broker sent Connection.Close.
    BrokerClosed,
    /// The client closed (Connection.Close or FIN) or reset.
    ClientClosed,
    /// Traffic resumed and the connection went on.
    Survived,
    /// The capture ended during the silence.
    CaptureEnded,
    /// The connection ended unseen during the silence: a new connection
    /// reused its 4-tuple.
    PortReused,
}

impl Consequence {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Consequence::BrokerReset => "broker-reset",
            Consequence::BrokerClosed => "broker-closed",
            Consequence::ClientClosed => "client-closed",
            Consequence::Survived => "survived",
            Consequence::CaptureEnded => "capture-ended",
            Consequence::PortReused => "port-reused",
        }
    }
}

super::cause::display_as_str!(HeartbeatSource, EndHow, Consequence);

/// The analysis state of one AMQP connection.
///
/// Written only by the analysis and the engine (its fields are crate-private);
/// everyone else reads it through the accessors.
#[derive(Debug, Clone)]
pub struct Connection {
    /// The flow.
    pub(crate) key: FlowKey,
    /// Direction in which the client sends.
    pub(crate) client_dir: Direction,
    /// How roles were decided.
    pub(crate) role_source: RoleSource,
    /// First packet.
    pub(crate) first_seen: Timestamp,
    /// Last packet.
    pub(crate) last_seen: Timestamp,
    /// No SYN was seen: the capture joined mid-stream.
    pub(crate) joined_mid_stream: bool,
    /// The snapshot length cut its segments too short to read frames: they
    /// were counted by segment length, and methods (Tune-Ok, Close) were
    /// not read.
    pub(crate) frames_cut: bool,
    /// Handshake facts.
    pub(crate) handshake: Handshake,
    /// Heartbeat value inferred from idle heartbeat periods.
    pub(crate) inferred_heartbeat: Option<u16>,
    /// Per direction state, indexed by [`Direction::index`].
    pub(crate) dirs: [DirState; 2],
    /// Gaps found.
    pub(crate) gaps: Vec<Gap>,
    /// Gaps not stored, closes, Blocked, port reuse, violations, lost
    /// framing: boxed until the first of them (see [`ConnRare`]).
    rare: Option<Box<ConnRare>>,
    /// FIN time per direction.
    pub(crate) fin: [Option<Timestamp>; 2],
    /// RST time per direction.
    pub(crate) rst: [Option<Timestamp>; 2],
    /// Set for AMQP over TLS: what the record layer showed.
    /// Boxed: most connections are plain AMQP and the facts are ~70 bytes.
    pub(crate) tls: Option<Box<TlsInfo>>,
    /// Shared with every connection of the engine rather than copied into each.
    config: Arc<AnalysisConfig>,
    /// Packets stamped out of time order (see [`super::clock`]).
    clock: ConnClock,
}

/// The parts of a [`Connection`] most connections never need (boxed: ~130
/// bytes, and every connection is kept until the report).
#[derive(Debug, Clone, Default)]
struct ConnRare {
    /// Gaps not stored because of the per-connection cap (over the cap the
    /// worst gaps by ratio stay stored, and always those that ended the
    /// connection).
    gaps_dropped: u64,
    /// The causes of the gaps not stored, with their counts.
    gaps_dropped_causes: Vec<(Cause, u64)>,
    /// Connection.Close / Channel.Close seen.
    closes: Vec<CloseEvent>,
    /// Connection.Blocked / Unblocked from the broker.
    blocked: Vec<BlockedEvent>,
    /// A new connection's SYN on the same 4-tuple ended this one: when, and
    /// from which side.
    reused: Option<(Timestamp, Role)>,
    /// Protocol problems noticed (bounded).
    violations: Vec<String>,
    /// Times framing was lost.
    lost_sync: u64,
}

/// [`ConnRare`] with nothing in it.
static NO_CONN_RARE: ConnRare = ConnRare {
    gaps_dropped: 0,
    gaps_dropped_causes: Vec::new(),
    closes: Vec::new(),
    blocked: Vec::new(),
    reused: None,
    violations: Vec::new(),
    lost_sync: 0,
};

/// UTC time of day with milliseconds (as the reports' `clock`), for evidence
/// lines: the analysis does no calendar arithmetic beyond this.
fn time_of_day(ts: Timestamp) -> String {
    let ms = ts.0.div_euclid(1_000_000).rem_euclid(86_400_000);
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1_000 % 60,
        ms % 1_000
    )
}

/// A stream offset as the relative sequence number tshark shows (the first
/// byte is 1; it wraps like the sequence numbers do).
fn rel_seq(offset: u64) -> u32 {
    // Truncation is intended: relative sequence numbers are 32-bit.
    (offset as u32).wrapping_add(1)
}

/// Keeps the first proof of a silence.
fn note_proof(slot: &mut Option<LossProof>, kind: LossProofKind, seen: u32, proved: u32) {
    if slot.is_none() {
        *slot = Some(LossProof { kind, seen, proved });
    }
}

/// The sentence behind a proof of capture loss: which number showed it.
fn proof_text(p: &LossProof, s: &str, peer: &str) -> String {
    let n = count(p.missing(), "byte", "bytes");
    let were = if p.missing() == 1 { "was" } else { "were" };
    let (seen, proved) = (p.seen, p.proved);
    match p.kind {
        LossProofKind::Data => format!(
            "{s}'s data resumed at seq {proved} but the last byte seen was {seen}: {n} {were} sent and not captured"
        ),
        LossProofKind::Ack => format!(
            "{peer}'s ACK {proved} acknowledged {s}'s bytes past the last one seen ({seen}): {n} arrived and {were} not captured"
        ),
        LossProofKind::Sack => format!(
            "{peer}'s SACK block up to {proved} covers {s}'s bytes past the last one seen ({seen}): {n} arrived and {were} not captured"
        ),
        LossProofKind::Hole => format!(
            "the sequence hole {seen}-{proved} was acknowledged past or left open at the end: {n} {were} not captured"
        ),
        LossProofKind::Fin => format!(
            "{s}'s FIN at seq {proved} but the last byte seen was {seen}: {n} {were} sent and not captured"
        ),
        LossProofKind::Rst => format!(
            "{s}'s RST at seq {proved} but the last byte seen was {seen}: {n} {were} sent and not captured"
        ),
        LossProofKind::NextSeq => format!(
            "{s}'s ACK at seq {proved} (its next byte to send) but the last byte seen was {seen}: {n} {were} sent and not captured"
        ),
        LossProofKind::IpId => format!(
            "{s}'s IPv4 ID went from {seen:#06x} to {proved:#06x} after going up by 1 per packet on this connection: {} {were} sent and not captured",
            count(p.missing(), "packet", "packets")
        ),
    }
}

/// The Connection.Start server_properties kept per connection (what reports show).
pub const SERVER_PROPERTIES_KEPT: [&str; 4] = ["product", "version", "platform", "cluster_name"];

const MAX_VIOLATIONS: usize = 32;
/// Connection.Close / Channel.Close events kept per connection.
const MAX_CLOSES: usize = 64;
/// Blocked/Unblocked events kept per connection.
const MAX_BLOCKED: usize = 64;
const HB_RING: usize = 32;
/// A near-miss is a silence of at least 3/4 of the heartbeat timeout.
pub const NEAR_MISS_NUM: i64 = 3;
/// See [`NEAR_MISS_NUM`].
pub const NEAR_MISS_DEN: i64 = 4;
/// Near-misses listed per direction (later ones are counted).
pub const MAX_NEAR_MISSES: usize = 16;

impl Connection {
    /// Starts loading the state a packet of this connection reads (see
    /// [`crate::engine::Engine::process_batch`]).
    pub fn prefetch(&self) {
        crate::prefetch::line(self);
        crate::prefetch::line(&self.last_seen);
        crate::prefetch::line(&self.fin);
        // Read on every packet: gap count, the negotiated heartbeat, the key, the roles.
        crate::prefetch::line(&self.gaps);
        crate::prefetch::line(&self.handshake.tune_ok);
        crate::prefetch::line(&self.key);
        crate::prefetch::line(&self.client_dir);
        for d in &self.dirs {
            // A packet reads most of both directions' 256 bytes: fields spread
            // over them (by the compiler's current layout; a stale choice only
            // asks for a line twice).
            crate::prefetch::line(&d.last_activity);
            crate::prefetch::line(&d.evidence.sender_packets);
            crate::prefetch::line(&d.bytes);
            crate::prefetch::line(&d.longest_silence);
            crate::prefetch::line(&d.closed);
        }
    }

    /// A new connection whose client sends in `client_dir`.
    #[must_use]
    pub fn new(
        key: FlowKey,
        client_dir: Direction,
        role_source: RoleSource,
        first_seen: Timestamp,
        joined_mid_stream: bool,
        config: impl Into<Arc<AnalysisConfig>>,
    ) -> Self {
        Connection {
            key,
            client_dir,
            role_source,
            first_seen,
            last_seen: first_seen,
            joined_mid_stream,
            frames_cut: false,
            handshake: Handshake::default(),
            inferred_heartbeat: None,
            dirs: [DirState::default(), DirState::default()],
            gaps: Vec::new(),
            rare: None,
            fin: [None, None],
            rst: [None, None],
            tls: None,
            config: config.into(),
            clock: ConnClock {
                prev_max: first_seen,
                ..ConnClock::default()
            },
        }
    }

    /// The flow.
    #[must_use]
    pub fn key(&self) -> FlowKey {
        self.key
    }

    /// Direction in which the client sends.
    #[must_use]
    pub fn client_dir(&self) -> Direction {
        self.client_dir
    }

    /// How the roles were decided.
    #[must_use]
    pub fn role_source(&self) -> RoleSource {
        self.role_source
    }

    /// First packet.
    #[must_use]
    pub fn first_seen(&self) -> Timestamp {
        self.first_seen
    }

    /// Last packet.
    #[must_use]
    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }

    /// No SYN was seen: the capture joined mid-stream.
    #[must_use]
    pub fn joined_mid_stream(&self) -> bool {
        self.joined_mid_stream
    }

    /// The analysis settings it shares with the engine's other connections.
    #[must_use]
    pub fn shared_config(&self) -> Arc<AnalysisConfig> {
        Arc::clone(&self.config)
    }

    /// Whether its frames were cut too short to read (counted by segment
    /// length: Tune-Ok, Connection.Close and client properties unseen).
    #[must_use]
    pub fn frames_cut(&self) -> bool {
        self.frames_cut
    }

    /// Marks the connection's frames as cut by the snapshot length.
    pub fn set_frames_cut(&mut self) {
        self.frames_cut = true;
    }

    /// Handshake facts.
    #[must_use]
    pub fn handshake(&self) -> &Handshake {
        &self.handshake
    }

    /// Heartbeat value inferred from idle heartbeat periods.
    #[must_use]
    pub fn inferred_heartbeat(&self) -> Option<u16> {
        self.inferred_heartbeat
    }

    /// The state of the direction `dir`.
    #[must_use]
    pub fn dir(&self, dir: Direction) -> &DirState {
        &self.dirs[dir.index()]
    }

    /// Both directions' state, indexed by [`Direction::index`].
    #[must_use]
    pub fn dirs(&self) -> &[DirState; 2] {
        &self.dirs
    }

    /// Gaps found (at most the per-connection cap).
    #[must_use]
    pub fn gaps(&self) -> &[Gap] {
        &self.gaps
    }

    /// Gaps not stored because of the per-connection cap.
    #[must_use]
    pub fn gaps_dropped(&self) -> u64 {
        self.rare().gaps_dropped
    }

    /// Connection.Close / Channel.Close seen.
    #[must_use]
    pub fn closes(&self) -> &[CloseEvent] {
        &self.rare().closes
    }

    /// Connection.Blocked / Unblocked, in capture order.
    #[must_use]
    pub fn blocked(&self) -> &[BlockedEvent] {
        &self.rare().blocked
    }

    /// The time of `[start, end]` during which the broker had the client
    /// blocked: from each Connection.Blocked to the next Unblocked (or on).
    #[must_use]
    pub fn blocked_within(&self, start: Timestamp, end: Timestamp) -> Span {
        let mut total = 0i64;
        let mut since: Option<Timestamp> = None;
        let mut add = |from: Timestamp, to: Timestamp| {
            let (a, b) = (from.max(start), to.min(end));
            if b > a {
                total += b.since(a).0;
            }
        };
        for e in &self.rare().blocked {
            match (e.blocked, since) {
                (true, None) => since = Some(e.at),
                (false, Some(from)) => {
                    add(from, e.at);
                    since = None;
                }
                _ => {}
            }
        }
        if let Some(from) = since {
            add(from, end);
        }
        Span(total)
    }

    /// The Connection.Blocked in effect during `[start, end]` (the last one
    /// sent before `end`, if not unblocked before `start`) and the Unblocked
    /// that followed it, if any.
    #[must_use]
    pub fn blocked_during(
        &self,
        start: Timestamp,
        end: Timestamp,
    ) -> Option<(&BlockedEvent, Option<&BlockedEvent>)> {
        let blocked = &self.rare().blocked;
        let i = blocked.iter().rposition(|e| e.blocked && e.at <= end)?;
        let un = blocked[i..].iter().find(|e| !e.blocked);
        if un.is_some_and(|u| u.at < start) {
            return None;
        }
        Some((&blocked[i], un))
    }

    /// Protocol problems noticed (bounded).
    #[must_use]
    pub fn violations(&self) -> &[String] {
        &self.rare().violations
    }

    /// Times framing was lost.
    #[must_use]
    pub fn lost_sync(&self) -> u64 {
        self.rare().lost_sync
    }

    /// For AMQP over TLS: what the record layer showed.
    #[must_use]
    pub fn tls(&self) -> Option<&TlsInfo> {
        self.tls.as_deref()
    }

    /// The causes of the gaps not stored because of the cap, with counts.
    #[must_use]
    pub fn gaps_dropped_causes(&self) -> &[(Cause, u64)] {
        &self.rare().gaps_dropped_causes
    }

    /// Packets of this connection stamped out of time order: when not 0,
    /// silences across them were not measured and the verdicts are unreliable.
    #[must_use]
    pub fn timestamps_disordered(&self) -> u64 {
        self.clock.disordered
    }

    /// The largest step back in time among [`Connection::timestamps_disordered`].
    #[must_use]
    pub fn worst_time_jump(&self) -> Span {
        self.clock.worst_jump
    }

    /// Gaps found: stored in [`Connection::gaps`] or counted in
    /// [`Connection::gaps_dropped`].
    #[must_use]
    pub fn gaps_found(&self) -> u64 {
        self.gaps.len() as u64 + self.rare().gaps_dropped
    }

    /// Role of the sender of `dir`.
    #[must_use]
    pub fn role_of(&self, dir: Direction) -> Role {
        if dir == self.client_dir {
            Role::Client
        } else {
            Role::Broker
        }
    }

    /// The direction in which `role` sends.
    #[must_use]
    pub fn dir_of(&self, role: Role) -> Direction {
        match role {
            Role::Client => self.client_dir,
            Role::Broker => self.client_dir.reverse(),
        }
    }

    /// The client endpoint.
    #[must_use]
    pub fn client(&self) -> Endpoint {
        self.key.sender(self.client_dir)
    }

    /// The broker endpoint.
    #[must_use]
    pub fn broker(&self) -> Endpoint {
        self.key.receiver(self.client_dir)
    }

    /// Changes which side is the client (when the protocol header or
    /// Connection.Start shows the port guess was wrong).
    pub fn set_client_dir(&mut self, dir: Direction, source: RoleSource) {
        self.client_dir = dir;
        self.role_source = source;
    }

    /// The heartbeat limit in seconds and where it came from.
    /// Order: Tune-Ok, Tune, `--heartbeat`, inferred.
    #[must_use]
    pub fn heartbeat(&self) -> (Option<u16>, HeartbeatSource) {
        if let Some((_, _, hb)) = self.handshake.tune_ok {
            (Some(hb), HeartbeatSource::TuneOk)
        } else if let Some((_, _, hb)) = self.handshake.tune {
            (Some(hb), HeartbeatSource::Tune)
        } else if let Some(hb) = self.config.heartbeat_override {
            (Some(hb), HeartbeatSource::Override)
        } else if let Some(hb) = self.inferred_heartbeat {
            (Some(hb), HeartbeatSource::Inferred)
        } else {
            (None, HeartbeatSource::Unknown)
        }
    }

    /// The limit as a span; `None` when unknown or disabled (0).
    #[must_use]
    pub fn limit(&self) -> Option<Span> {
        match self.heartbeat().0 {
            Some(0) | None => None,
            Some(s) => Some(Span::from_secs(u64::from(s))),
        }
    }

    fn limit_known(&self) -> bool {
        self.heartbeat().0.is_some()
    }

    fn seen(&mut self, ts: Timestamp) {
        if ts > self.last_seen {
            self.last_seen = ts;
        }
    }

    /// Any packet from the sender of `dir` (called before its other facts).
    /// Checks its timestamp against the connection's latest (see [`super::clock`]).
    #[inline(always)]
    pub fn on_packet(&mut self, ts: Timestamp, dir: Direction) {
        let c = &mut self.clock;
        c.now_early = false;
        c.now_latest = ts > self.last_seen;
        if c.now_latest {
            c.prev_max = self.last_seen;
            if c.undo.is_some() {
                c.undo = None;
            }
        } else if ts.plus(DISORDER_TOLERANCE) < self.last_seen {
            self.time_step_back(ts);
        }
        if (self.clock.restart[0] || self.clock.restart[1]) && !self.clock.now_early {
            self.restart_silences(ts);
        }
        self.seen(ts);
        let p = &mut self.dirs[dir.reverse().index()].evidence;
        p.peer_packets = p.peer_packets.saturating_add(1);
    }

    /// A packet stamped more than [`DISORDER_TOLERANCE`] before the latest.
    #[cold]
    fn time_step_back(&mut self, ts: Timestamp) {
        self.clock.disordered += 1;
        self.clock.worst_jump = self.clock.worst_jump.max(self.last_seen.since(ts));
        if ts.plus(DISORDER_TOLERANCE) < self.clock.prev_max {
            // Stamped too early: it may not end or start a silence.
            self.clock.now_early = true;
            return;
        }
        // The latest packet was stamped too late: undo what it did.
        if let Some(u) = self.clock.undo.take() {
            if u.at == self.last_seen {
                self.undo(*u);
            }
        }
        let now = ts.max(self.clock.prev_max);
        self.last_seen = now;
        for (i, d) in self.dirs.iter().enumerate() {
            if d.last_activity.is_some_and(|a| a > now) {
                self.clock.restart[i] = true;
            }
        }
    }

    /// Silences flagged to restart start again at `ts` (a packet in order,
    /// after an outlier whose true time lies before it).
    fn restart_silences(&mut self, ts: Timestamp) {
        for (i, d) in self.dirs.iter_mut().enumerate() {
            if std::mem::take(&mut self.clock.restart[i]) && !d.closed {
                d.last_activity = Some(ts);
                d.evidence = Evidence {
                    sender_window_before: d.last_window,
                    ..Evidence::default()
                };
                d.open_flagged = false;
            }
        }
    }

    /// Takes back what a packet stamped too late did to silences and gaps.
    fn undo(&mut self, u: Undo) {
        match u.displaced {
            Some(d) => {
                let (i, g) = *d;
                self.gaps.pop();
                self.gaps.insert(i.min(self.gaps.len()), g);
            }
            None => self.gaps.truncate(u.gaps_len),
        }
        // Written only when changed: a write allocates the rare part.
        let r = self.rare();
        if r.gaps_dropped != u.gaps_dropped || r.gaps_dropped_causes != u.dropped_causes {
            let r = self.rare_mut();
            r.gaps_dropped = u.gaps_dropped;
            r.gaps_dropped_causes = u.dropped_causes;
        }
        for ((d, (longest, data)), pending) in
            self.dirs.iter_mut().zip(u.longest).zip(u.pending_len)
        {
            d.longest_silence = longest;
            d.longest_data_silence = data;
            if let Some(r) = d.rare.as_mut() {
                r.burst = None;
                r.pending.truncate(pending);
            }
        }
    }

    /// Remembers the state a packet setting a new latest timestamp changes,
    /// in case it turns out to be stamped too late.
    #[cold]
    fn record_undo(&mut self, ts: Timestamp) {
        if self.clock.undo.as_ref().is_some_and(|u| u.at == ts) {
            return;
        }
        let longest = [0, 1].map(|i| {
            let d = &self.dirs[i];
            (d.longest_silence, d.longest_data_silence)
        });
        self.clock.undo = Some(Box::new(Undo {
            at: ts,
            gaps_len: self.gaps.len(),
            gaps_dropped: self.rare().gaps_dropped,
            dropped_causes: self.rare().gaps_dropped_causes.clone(),
            displaced: None,
            pending_len: [0, 1].map(|i| self.dirs[i].rare.as_ref().map_or(0, |r| r.pending.len())),
            longest,
        }));
    }

    fn rare(&self) -> &ConnRare {
        self.rare.as_deref().unwrap_or(&NO_CONN_RARE)
    }

    fn rare_mut(&mut self) -> &mut ConnRare {
        self.rare.get_or_insert_with(Box::default)
    }

    /// Framing was lost once more.
    pub(crate) fn on_lost_sync(&mut self) {
        self.rare_mut().lost_sync += 1;
    }

    /// The sender of `dir` put `len` new bytes at stream `offset` on the wire.
    #[inline]
    pub fn on_new_bytes(
        &mut self,
        ts: Timestamp,
        dir: Direction,
        offset: u64,
        len: u64,
        syns: &SynLog,
    ) {
        self.seen(ts);
        let d = &mut self.dirs[dir.index()];
        if d.first_activity.is_none() {
            d.first_activity = Some(ts);
        }
        if offset > d.seen_end && d.last_activity.is_some() {
            // Sequence space skipped: bytes the capture never saw were sent
            // during this silence. Counted now (the silence ends here); the
            // hole event that may follow for the same range is not counted again.
            let from = d.seen_end.max(d.missed_counted_to);
            if offset > from {
                d.evidence.capture_missed_bytes += offset - from;
                note_proof(
                    &mut d.evidence.missed_proof,
                    LossProofKind::Data,
                    rel_seq(d.seen_end),
                    rel_seq(offset),
                );
            }
            d.missed_counted_to = d.missed_counted_to.max(offset);
        }
        d.seen_end = d.seen_end.max(offset + len);
        d.bytes += len;
        if d.last_data.is_none_or(|t| t < ts) {
            d.last_data = Some(ts);
        }
        self.end_silence(ts, dir, SilenceEnd::Data, syns);
        let p = &mut self.dirs[dir.reverse().index()].evidence;
        p.peer_new_segments = p.peer_new_segments.saturating_add(1);
        p.peer_new_bytes += len;
    }

    /// The sender of `dir` retransmitted `len` bytes.
    pub fn on_retransmission(&mut self, ts: Timestamp, dir: Direction) {
        self.seen(ts);
        self.dirs[dir.index()].retransmissions += 1;
        let own = &mut self.dirs[dir.index()].evidence;
        own.sender_packets = own.sender_packets.saturating_add(1);
        own.sender_retransmissions = own.sender_retransmissions.saturating_add(1);
        let p = &mut self.dirs[dir.reverse().index()].evidence;
        p.peer_retransmissions = p.peer_retransmissions.saturating_add(1);
    }

    /// The sender of `dir` sent an ACK about the peer's data.
    #[inline(always)]
    pub fn on_ack(
        &mut self,
        ts: Timestamp,
        dir: Direction,
        advanced: bool,
        pure: bool,
        window: u32,
        zero_window: bool,
    ) {
        self.seen(ts);
        let d = &mut self.dirs[dir.index()];
        d.last_window = Some(window);
        // For the other direction's silence this sender is the peer: a zero
        // window keeps that direction from sending anything new.
        let o = &mut self.dirs[dir.reverse().index()].evidence;
        if zero_window {
            o.peer_zero_windows = o.peer_zero_windows.saturating_add(1);
            o.peer_zero_since.get_or_insert(ts);
            o.peer_zero_first.get_or_insert(ts);
        } else if let Some(since) = o.peer_zero_since {
            // Read first: a write would allocate the rare part.
            o.peer_zero_since = None;
            o.peer_zero_window_time = Span(o.peer_zero_window_time.0 + ts.since(since).0);
        }
        let d = &mut self.dirs[dir.index()];
        let ev = &mut d.evidence;
        if advanced && ev.peer_retransmissions > 0 {
            ev.sender_acks_after_peer_retransmission =
                ev.sender_acks_after_peer_retransmission.saturating_add(1);
        }
        let other = &mut self.dirs[dir.reverse().index()].evidence;
        if advanced && other.sender_retransmissions > 0 {
            other.peer_acks_after_sender_retransmission = other
                .peer_acks_after_sender_retransmission
                .saturating_add(1);
        }
        let ev = &mut self.dirs[dir.index()].evidence;
        if pure {
            ev.sender_packets = ev.sender_packets.saturating_add(1);
            ev.sender_pure_acks = ev.sender_pure_acks.saturating_add(1);
            if advanced {
                ev.sender_acks_advancing = ev.sender_acks_advancing.saturating_add(1);
            }
            ev.sender_min_window = Some(ev.sender_min_window.map_or(window, |w| w.min(window)));
            if zero_window {
                ev.sender_zero_windows = ev.sender_zero_windows.saturating_add(1);
            }
        }
    }

    /// The sender of `dir` sent a keep-alive probe.
    pub fn on_keepalive(&mut self, ts: Timestamp, dir: Direction) {
        self.seen(ts);
        let ev = &mut self.dirs[dir.index()].evidence;
        ev.sender_packets = ev.sender_packets.saturating_add(1);
        ev.sender_keepalives = ev.sender_keepalives.saturating_add(1);
    }

    /// Bytes `[offset, offset+len)` of `dir` whose content will never be seen.
    /// Only [`HoleClass::NotCaptured`] is capture loss; a snaplen cut or the
    /// tool's own out-of-order cap lost content, not timing.
    pub fn on_hole(
        &mut self,
        ts: Timestamp,
        dir: Direction,
        offset: u64,
        len: u64,
        class: HoleClass,
    ) {
        self.seen(ts);
        let d = &mut self.dirs[dir.index()];
        match class {
            HoleClass::Snaplen => d.snaplen_bytes += len,
            HoleClass::Overflow => d.overflow_bytes += len,
            HoleClass::NotCaptured => {
                d.missed_bytes += len;
                let end = offset + len;
                let fresh = end.saturating_sub(offset.max(d.missed_counted_to));
                let peer_fresh =
                    end.saturating_sub(offset.max(d.missed_counted_to).max(d.sent_counted_to));
                d.missed_counted_to = d.missed_counted_to.max(end);
                d.evidence.capture_missed_bytes += fresh;
                if fresh > 0 {
                    note_proof(
                        &mut d.evidence.missed_proof,
                        LossProofKind::Hole,
                        rel_seq(offset),
                        rel_seq(end),
                    );
                }
                self.dirs[dir.reverse().index()]
                    .evidence
                    .peer_capture_missed_bytes += peer_fresh;
            }
        }
    }

    /// Bytes `[offset, offset+len)` of `dir`, beyond the highest byte the
    /// capture saw from its sender, were on the wire: `kind` says which
    /// number proves it (see [`LossProofKind`]). Counted once per byte and
    /// class: proofs that the bytes passed the capture point (rule 1 of
    /// [`decide`]) and proofs that they were sent (rule 5).
    pub fn on_unseen(
        &mut self,
        ts: Timestamp,
        dir: Direction,
        offset: u64,
        len: u64,
        kind: LossProofKind,
    ) {
        self.seen(ts);
        let d = &mut self.dirs[dir.index()];
        let end = offset.saturating_add(len);
        // For the peer's silence a byte counts once, whatever proved it.
        let peer_fresh = end.saturating_sub(
            offset
                .max(d.missed_counted_to)
                .max(d.sent_counted_to)
                .max(d.seen_end),
        );
        if kind.passed_capture() {
            let from = offset.max(d.missed_counted_to).max(d.seen_end);
            d.missed_counted_to = d.missed_counted_to.max(end);
            let fresh = end.saturating_sub(from);
            if fresh > 0 {
                d.evidence.capture_missed_bytes += fresh;
                note_proof(
                    &mut d.evidence.missed_proof,
                    kind,
                    rel_seq(from),
                    rel_seq(end),
                );
            }
        } else {
            let from = offset
                .max(d.sent_counted_to)
                .max(d.missed_counted_to)
                .max(d.seen_end);
            d.sent_counted_to = d.sent_counted_to.max(end);
            let fresh = end.saturating_sub(from);
            if fresh > 0 {
                d.evidence.unseen_sent_bytes += fresh;
                note_proof(
                    &mut d.evidence.unseen_proof,
                    kind,
                    rel_seq(from),
                    rel_seq(end),
                );
            }
        }
        self.dirs[dir.reverse().index()]
            .evidence
            .peer_capture_missed_bytes += peer_fresh;
    }

    /// The IPv4 ID of a packet from the sender of `dir` (0 for IPv6, and
    /// for packets sent without a socket's counter), carrying `payload_len`
    /// bytes. Called for every packet, before its other facts. Returns the
    /// IDs before and after a jump on a trusted per-connection counter (see
    /// [`IpIdRun`]): packets were sent that were not seen. The caller
    /// decides with [`Connection::on_ip_id_jump`] whether they count.
    #[inline]
    pub fn on_ip_id(
        &mut self,
        ts: Timestamp,
        dir: Direction,
        id: u16,
        payload_len: u32,
    ) -> Option<(u16, u16)> {
        let r = &mut self.dirs[dir.index()].ip_ids;
        if id == 0 || r.broken {
            return None;
        }
        if r.last == 0 {
            r.last = id;
            r.first = ts;
            r.after_large = payload_len > IP_ID_LARGE_PAYLOAD;
            return None;
        }
        let step = id.wrapping_sub(r.last);
        let judged = !r.after_large;
        r.after_large = payload_len > IP_ID_LARGE_PAYLOAD;
        let from = std::mem::replace(&mut r.last, id);
        if step == 1 {
            r.steps = r.steps.saturating_add(1);
            return None;
        }
        if step == 0 || !judged {
            return None;
        }
        let trusted = r.steps >= IP_ID_TRUST_STEPS && ts.since(r.first) >= IP_ID_TRUST_SPAN;
        if !trusted {
            r.broken = true;
            return None;
        }
        // A step back (more than half the ID space) is not a jump forward.
        (step < 0x8000).then_some((from, id))
    }

    /// The sender of `dir` sent the packets between IPv4 IDs `from` and `to`
    /// (exclusive) and the capture never saw them: counted in the open
    /// silence (rule 5 of [`decide`]). Only for a packet whose sequence
    /// number does not show that nothing new was sent meanwhile (a
    /// retransmission, a keep-alive, a number beyond the last byte seen).
    pub fn on_ip_id_jump(&mut self, dir: Direction, from: u16, to: u16) {
        let e = &mut self.dirs[dir.index()].evidence;
        let missing = to.wrapping_sub(from).wrapping_sub(1);
        e.unseen_sent_packets = e.unseen_sent_packets.saturating_add(u32::from(missing));
        note_proof(
            &mut e.ip_id_proof,
            LossProofKind::IpId,
            u32::from(from),
            u32::from(to),
        );
    }

    /// Packets the capture dropped (libpcap counter) since the last call:
    /// counts against every open silence.
    pub fn on_capture_drops(&mut self, drops: u64) {
        for d in &mut self.dirs {
            d.evidence.capture_drops += drops;
        }
    }

    /// The live capture failed (`code`: the warning saying why): every
    /// silence open now is marked, so it ends as `capture-loss`, never as a
    /// stall whose end nobody saw.
    pub fn on_capture_failed(&mut self, code: &'static str) {
        for d in &mut self.dirs {
            if !d.closed {
                d.evidence.capture_failed = Some(code);
            }
        }
    }

    /// FIN from the sender of `dir`.
    pub fn on_fin(&mut self, ts: Timestamp, dir: Direction, syns: &SynLog) {
        self.seen(ts);
        if self.fin[dir.index()].is_some() {
            return;
        }
        self.fin[dir.index()] = Some(ts);
        self.end_silence(ts, dir, SilenceEnd::Fin, syns);
        self.dirs[dir.index()].closed = true;
    }

    /// RST from the sender of `dir`: ends both directions.
    pub fn on_rst(&mut self, ts: Timestamp, dir: Direction, syns: &SynLog) {
        self.seen(ts);
        if self.rst[dir.index()].is_none() {
            self.rst[dir.index()] = Some(ts);
        }
        for d in [dir, dir.reverse()] {
            if !self.dirs[d.index()].closed {
                self.end_silence(ts, d, SilenceEnd::Rst, syns);
                self.dirs[d.index()].closed = true;
            }
        }
    }

    /// An AMQP frame from the sender of `dir`.
    #[inline(always)]
    pub fn on_frame(&mut self, ts: Timestamp, dir: Direction, frame: &FrameInfo) {
        self.seen(ts);
        let d = &mut self.dirs[dir.index()];
        d.frames += 1;
        if let Some((gi, until)) = d.rare.as_ref().and_then(|r| r.burst) {
            if ts <= until {
                if let Some(g) = self.gaps.get_mut(gi) {
                    g.resume_burst_frames = g.resume_burst_frames.saturating_add(1);
                }
            } else if let Some(r) = d.rare.as_mut() {
                r.burst = None;
            }
        }
        let d = &mut self.dirs[dir.index()];
        if frame.kind == FrameKind::Heartbeat {
            d.heartbeats += 1;
            let peer = &mut self.dirs[dir.reverse().index()].evidence;
            peer.peer_heartbeats = peer.peer_heartbeats.saturating_add(1);
            let known = self.limit_known();
            let d = &mut self.dirs[dir.index()];
            // The intervals only serve inference: not kept once the limit is known.
            if let (Some(prev), false) = (d.last_hb, known) {
                let iv = &mut d.rare().hb_intervals;
                if iv.len() >= HB_RING {
                    iv.pop_front();
                }
                iv.push_back(ts.since(prev));
            }
            if let Some(prev) = d.last_hb {
                let iv = ts.since(prev);
                let c = &mut d.hb_cadence;
                c.0 += 1;
                c.1 = Span(c.1 .0.saturating_add(iv.0));
                c.2 = c.2.max(iv);
            }
            d.last_hb = Some(ts);
            if !self.limit_known() {
                self.infer_heartbeat();
            }
        } else {
            d.last_hb = None;
        }
    }

    /// A decoded connection-level method from the sender of `dir`.
    pub fn on_method(&mut self, ts: Timestamp, dir: Direction, m: &ConnMethod) {
        self.seen(ts);
        let had_limit = self.limit_known();
        let by = self.role_of(dir);
        match m {
            ConnMethod::Start {
                server_properties, ..
            } => {
                if by == Role::Client && self.role_source == RoleSource::Port {
                    self.set_client_dir(dir.reverse(), RoleSource::ConnectionStart);
                }
                // Only the fields reports show: the rest (capabilities,
                // copyright, information) is ~1 KB per connection.
                let kept = server_properties
                    .iter()
                    .filter(|(k, _)| SERVER_PROPERTIES_KEPT.contains(&k.as_str()))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                self.handshake.server_properties = Some(std::sync::Arc::new(kept));
            }
            ConnMethod::StartOk {
                client_properties,
                mechanism,
            } => {
                self.handshake.client_properties = Some(client_properties.clone());
                self.handshake.mechanism = Some(Arc::from(mechanism.as_str()));
            }
            ConnMethod::Tune {
                channel_max,
                frame_max,
                heartbeat,
            } => {
                self.handshake.tune = Some((*channel_max, *frame_max, *heartbeat));
            }
            ConnMethod::TuneOk {
                channel_max,
                frame_max,
                heartbeat,
            } => match self.handshake.tune_ok {
                // The broker starts its heartbeat monitor on the first; a
                // second is a protocol error (RabbitMQ expects Open next).
                Some((_, _, first)) => self.on_violation(format!(
                    "client sent Connection.Tune-Ok again (heartbeat {heartbeat}, frame_max {frame_max}); the first one (heartbeat {first}) decides"
                )),
                None => self.handshake.tune_ok = Some((*channel_max, *frame_max, *heartbeat)),
            },
            ConnMethod::Open { vhost } => self.handshake.vhost = Some(Arc::from(vhost.as_str())),
            ConnMethod::OpenOk => self.handshake.open_ok = true,
            ConnMethod::Close(info) => {
                self.rare_mut().closes.push(CloseEvent {
                    at: ts,
                    by,
                    channel: 0,
                    info: info.clone(),
                });
            }
            ConnMethod::ChannelClose { channel, close } => {
                if self.rare().closes.len() < MAX_CLOSES {
                    self.rare_mut().closes.push(CloseEvent {
                        at: ts,
                        by,
                        channel: *channel,
                        info: close.clone(),
                    });
                }
            }
            ConnMethod::CloseOk => {}
            ConnMethod::Blocked { reason } if self.rare().blocked.len() < MAX_BLOCKED => {
                self.rare_mut().blocked.push(BlockedEvent {
                    at: ts,
                    blocked: true,
                    reason: Some(Arc::from(reason.as_str())),
                });
            }
            ConnMethod::Unblocked if self.rare().blocked.len() < MAX_BLOCKED => {
                self.rare_mut().blocked.push(BlockedEvent {
                    at: ts,
                    blocked: false,
                    reason: None,
                });
            }
            ConnMethod::Blocked { .. } | ConnMethod::Unblocked => {}
        }
        if !had_limit && self.limit_known() {
            self.resolve_pending();
        }
    }

    /// The protocol header came from the sender of `dir`: that is the client.
    pub fn on_protocol_header(&mut self, dir: Direction) {
        self.handshake.protocol_header = true;
        if self.role_source != RoleSource::ProtocolHeader {
            self.set_client_dir(dir, RoleSource::ProtocolHeader);
        }
    }

    /// A SYN from the side `by` opened a new connection on this 4-tuple at
    /// `at` while this one was still open in the capture: it ended unseen.
    /// Call before [`Connection::finish`] with this connection's last packet.
    pub fn on_port_reused(&mut self, at: Timestamp, by: Role) {
        self.rare_mut().reused = Some((at, by));
    }

    /// When a new connection reused this 4-tuple, and from which side.
    #[must_use]
    pub fn port_reused(&self) -> Option<(Timestamp, Role)> {
        self.rare().reused
    }

    /// A protocol problem (bounded list).
    pub fn on_violation(&mut self, detail: String) {
        if self.rare().violations.len() < MAX_VIOLATIONS {
            self.rare_mut().violations.push(detail);
        }
    }

    /// Ends the current silence of `dir` at `ts`.
    fn end_silence(&mut self, ts: Timestamp, dir: Direction, how: SilenceEnd, syns: &SynLog) {
        let limit = self.limit();
        let known = self.limit_known();
        let silent = self.role_of(dir);
        if self.clock.now_early {
            // Stamped too early: its time is not when this side spoke.
            if !self.dirs[dir.index()].closed {
                self.clock.restart[dir.index()] = true;
            }
            return;
        }
        if self.clock.now_latest {
            // What this silence changes, in case its end is stamped too late.
            let d = &self.dirs[dir.index()];
            if let (Some(start), false) = (d.last_activity, d.closed) {
                let silence = ts.since(start);
                let kept = match limit {
                    Some(l) => silence > l,
                    None => !known && silence > Span::from_millis(1_000),
                };
                if kept || silence > d.longest_silence || silence > d.longest_data_silence {
                    self.record_undo(ts);
                }
            }
        }
        // A peer window still closed carries over into the next silence.
        let peer_zero_since =
            (self.dirs[dir.reverse().index()].last_window == Some(0)).then_some(ts);
        let d = &mut self.dirs[dir.index()];
        let before = d.last_window;
        let mut fresh = Evidence {
            sender_window_before: before,
            ..Evidence::default()
        };
        if peer_zero_since.is_some() {
            fresh.peer_zero_since = peer_zero_since;
            fresh.peer_zero_first = peer_zero_since;
        }
        let Some(start) = d.last_activity else {
            d.last_activity = Some(ts);
            d.evidence = fresh;
            return;
        };
        if d.closed {
            return;
        }
        let silence = ts.since(start);
        if silence > d.longest_silence {
            d.longest_silence = silence;
        }
        if how == SilenceEnd::Data && silence > d.longest_data_silence {
            d.longest_data_silence = silence;
        }
        // Most silences end in time: their evidence is dropped unread.
        let gap_limit = match (known, limit) {
            (true, Some(limit)) if silence > limit => Some(limit),
            (false, _) if silence > Span::from_millis(1_000) => Some(Span(0)),
            _ => None,
        };
        let Some(gap_limit) = gap_limit else {
            d.evidence = fresh;
            d.last_activity = Some(ts);
            d.open_flagged = false;
            if let (true, Some(limit)) = (known, limit) {
                if how == SilenceEnd::Data
                    && silence.0.saturating_mul(NEAR_MISS_DEN)
                        >= limit.0.saturating_mul(NEAR_MISS_NUM)
                {
                    let r = self.dirs[dir.index()].rare();
                    r.near_misses += 1;
                    if r.near_miss_list.len() < MAX_NEAR_MISSES {
                        r.near_miss_list.push((start, ts));
                    }
                }
            }
            return;
        };
        if how != SilenceEnd::Data && self.closing_before(start) {
            // Closing: no heartbeat was owed, whatever the silence.
            let d = &mut self.dirs[dir.index()];
            d.evidence = fresh;
            d.last_activity = Some(ts);
            d.open_flagged = false;
            return;
        }
        let d = &mut self.dirs[dir.index()];
        let mut evidence = std::mem::replace(&mut d.evidence, fresh).closed_at(ts);
        d.last_activity = Some(ts);
        d.open_flagged = false;
        if silent == Role::Client {
            // Written only when there is some: a write allocates the rare part.
            let blocked = self.blocked_within(start, ts);
            if blocked.0 != 0 {
                evidence.blocked_time = blocked;
            }
        }
        let wakeup = if silent == Role::Client && matches!(how, SilenceEnd::Data | SilenceEnd::Fin)
        {
            let window = self.config.wakeup_window;
            syns.wakeup(self.key.sender(dir), self.key.receiver(dir), ts, window)
        } else {
            None
        };
        let gap = Gap {
            dir,
            silent,
            start,
            end: ts,
            ended_by: how,
            limit: gap_limit,
            cause: decide(&evidence, silent, silence, gap_limit),
            evidence,
            wakeup,
            resume_burst_frames: 0,
            resumed: None,
        };
        if known {
            self.push_gap(gap);
            if how == SilenceEnd::Data {
                let idx = self.gaps.len().saturating_sub(1);
                let until = ts.plus(self.config.burst_window);
                self.dirs[dir.index()].rare().burst = Some((idx, until));
            }
        } else {
            let pending_cap = self.config.pending_cap;
            let pending = &mut self.dirs[dir.index()].rare().pending;
            if pending.len() < pending_cap {
                pending.push(gap);
            } else if let Some((i, shortest)) =
                pending.iter().enumerate().min_by_key(|(_, g)| g.silence())
            {
                if shortest.silence() < silence {
                    pending[i] = gap;
                }
            }
        }
    }

    /// Stores a gap; over the cap, keeps the worst (by ratio to the limit)
    /// and always the ones that ended the connection, and counts the rest.
    fn push_gap(&mut self, gap: Gap) {
        if self.gaps.len() < self.config.max_gaps_per_connection {
            self.gaps.push(gap);
            return;
        }
        self.rare_mut().gaps_dropped += 1;
        let ends = |g: &Gap| {
            matches!(
                g.ended_by,
                SilenceEnd::Rst | SilenceEnd::Fin | SilenceEnd::CaptureEnd
            )
        };
        let weakest = self
            .gaps
            .iter()
            .enumerate()
            .filter(|(_, g)| !ends(g))
            .min_by(|a, b| a.1.ratio().total_cmp(&b.1.ratio()))
            .map(|(i, g)| (i, g.ratio()));
        let dropped = match weakest {
            Some((i, ratio)) if ends(&gap) || gap.ratio() > ratio => {
                let old = self.gaps.remove(i);
                self.gaps.push(gap);
                if let Some(u) = self.clock.undo.as_mut() {
                    if u.displaced.is_none() && u.gaps_len == self.gaps.len() {
                        u.displaced = Some(Box::new((i, old.clone())));
                    }
                }
                old.cause
            }
            _ => gap.cause,
        };
        let causes = &mut self.rare_mut().gaps_dropped_causes;
        match causes.iter_mut().find(|(c, _)| *c == dropped) {
            Some((_, n)) => *n += 1,
            None => causes.push((dropped, 1)),
        }
    }

    /// Turns silences kept while the limit was unknown into gaps.
    fn resolve_pending(&mut self) {
        if self.dirs.iter().all(DirState::no_pending) {
            // Nothing to add: keep gap indexes stable (the engine refers to them).
            return;
        }
        let Some(limit) = self.limit() else {
            for d in &mut self.dirs {
                d.clear_pending();
            }
            return;
        };
        let mut found: Vec<Gap> = Vec::new();
        for d in &mut self.dirs {
            let Some(r) = d.rare.as_mut() else {
                continue;
            };
            for mut g in r.pending.drain(..) {
                if g.silence() > limit {
                    g.limit = limit;
                    g.cause = decide(&g.evidence, g.silent, g.silence(), limit);
                    found.push(g);
                }
            }
        }
        found.append(&mut self.gaps);
        found.sort_by_key(|g| g.start);
        for g in found {
            self.push_gap(g);
        }
    }

    /// Infers the heartbeat timeout from idle heartbeat periods (timeout/2),
    /// preferring the broker's direction.
    fn infer_heartbeat(&mut self) {
        let order = [self.client_dir.reverse(), self.client_dir];
        for dir in order {
            let Some(iv) = self.dirs[dir.index()]
                .rare
                .as_ref()
                .map(|r| &r.hb_intervals)
            else {
                continue;
            };
            if iv.len() < 4 {
                continue;
            }
            let mut v: Vec<i64> = iv.iter().map(|s| s.0).filter(|n| *n > 0).collect();
            if v.len() < 4 {
                continue;
            }
            v.sort_unstable();
            let median = v[v.len() / 2];
            let close = v
                .iter()
                .filter(|x| (**x - median).abs() * 4 <= median)
                .count();
            if close * 10 < v.len() * 6 {
                continue;
            }
            // timeout = 2 x period, rounded to whole seconds.
            let secs = (2 * median + 500_000_000) / 1_000_000_000;
            let secs = u16::try_from(secs.max(1)).unwrap_or(u16::MAX);
            self.inferred_heartbeat = Some(secs);
            self.resolve_pending();
            return;
        }
    }

    /// Live mode: time moved to `now` without packets. Returns the directions
    /// whose open silence just passed the limit (each reported once per silence).
    pub fn tick(&mut self, now: Timestamp) -> Vec<(Direction, Span)> {
        let mut flagged = Vec::new();
        let Some(limit) = self.limit() else {
            return flagged;
        };
        for dir in [Direction::AtoB, Direction::BtoA] {
            let d = &mut self.dirs[dir.index()];
            if d.closed || d.open_flagged {
                continue;
            }
            if let Some(start) = d.last_activity {
                let silence = now.since(start);
                if silence > limit {
                    d.open_flagged = true;
                    if !self.closing_before(start) {
                        flagged.push((dir, silence));
                    }
                }
            }
        }
        flagged
    }

    /// True when a Connection.Close (channel 0) was sent by either side at
    /// or before `t`. From then on the connection is being shut: neither
    /// side owes the other a heartbeat (the peer answers Close-Ok and the
    /// socket closes), so a silence that begins after it is not a heartbeat
    /// failure unless the side speaks again late (a slow Close-Ok is still
    /// a gap: it ends with data). A capture that misses the FIN (kernel
    /// drops) would otherwise blame whoever stopped talking after a clean
    /// close.
    fn closing_before(&self, t: Timestamp) -> bool {
        self.closes().iter().any(|c| c.channel == 0 && c.at <= t)
    }

    /// The open silence of `dir` as a provisional gap at `now` (live view),
    /// if it is already longer than the limit.
    #[must_use]
    pub fn open_gap(&self, dir: Direction, now: Timestamp) -> Option<Gap> {
        let limit = self.limit()?;
        let d = &self.dirs[dir.index()];
        if d.closed {
            return None;
        }
        let start = d.last_activity?;
        if now.since(start) <= limit || self.closing_before(start) {
            return None;
        }
        let silent = self.role_of(dir);
        let mut evidence = d.evidence.clone().closed_at(now);
        if silent == Role::Client {
            // Written only when there is some: a write allocates the rare part.
            let blocked = self.blocked_within(start, now);
            if blocked.0 != 0 {
                evidence.blocked_time = blocked;
            }
        }
        Some(Gap {
            dir,
            silent,
            start,
            end: now,
            ended_by: SilenceEnd::Open,
            limit,
            cause: decide(&evidence, silent, now.since(start), limit),
            evidence,
            wakeup: None,
            resume_burst_frames: 0,
            resumed: None,
        })
    }

    /// End of input at `end`: silences still open become gaps ended by the
    /// capture's end; pending silences are resolved with what is known.
    pub fn finish(&mut self, end: Timestamp, syns: &SynLog) {
        // No packet is being handled: the last one's timestamp checks are over.
        self.clock.now_early = false;
        self.clock.now_latest = false;
        self.clock.restart = [false, false];
        let how = if self.rare().reused.is_some() {
            SilenceEnd::PortReused
        } else {
            SilenceEnd::CaptureEnd
        };
        for dir in [Direction::AtoB, Direction::BtoA] {
            if !self.dirs[dir.index()].closed && self.dirs[dir.index()].last_activity.is_some() {
                self.end_silence(end, dir, how, syns);
                self.dirs[dir.index()].closed = true;
            }
        }
        self.resolve_pending();
        for d in &mut self.dirs {
            d.clear_pending();
        }
    }

    /// How the connection ended: the first of Connection.Close, FIN or RST.
    #[must_use]
    pub fn ended(&self) -> (EndHow, Option<Role>, Option<Timestamp>) {
        let mut best: Option<(Timestamp, EndHow, Role)> = None;
        let mut consider = |ts: Option<Timestamp>, how: EndHow, by: Role| {
            if let Some(ts) = ts {
                if best.is_none_or(|(b, _, _)| ts < b) {
                    best = Some((ts, how, by));
                }
            }
        };
        for c in self.rare().closes.iter().filter(|c| c.channel == 0) {
            consider(Some(c.at), EndHow::Close, c.by);
        }
        for dir in [Direction::AtoB, Direction::BtoA] {
            consider(self.fin[dir.index()], EndHow::Fin, self.role_of(dir));
            consider(self.rst[dir.index()], EndHow::Rst, self.role_of(dir));
        }
        if let Some((at, by)) = self.rare().reused {
            consider(Some(at), EndHow::PortReused, by);
        }
        match best {
            Some((ts, how, by)) => (how, Some(by), Some(ts)),
            None => (EndHow::CaptureEnd, None, None),
        }
    }

    /// The connection's end as a middlebox's idle timeout, if that is the only
    /// explanation: the first ending event is a FIN or RST without
    /// Connection.Close, after both directions were idle for at least
    /// [`MIDDLEBOX_MIN_IDLE`], and either heartbeats are disabled or the idle
    /// period was shorter than the heartbeat deadline of the side that ended
    /// it. RabbitMQ closes a silent client only 2-3 timeouts after its last
    /// byte (with RST); a client library gives up on a silent broker after
    /// about one timeout. A connection the heartbeats kept busy cannot have
    /// been idle that long, so neither end's heartbeat check explains it.
    #[must_use]
    pub fn middlebox_suspected(&self) -> Option<MiddleboxEnd> {
        let (how, by, at) = self.ended();
        let (Some(by), Some(at)) = (by, at) else {
            return None;
        };
        // With frames cut, a Connection.Close would not have been seen.
        if !matches!(how, EndHow::Fin | EndHow::Rst) || self.frames_cut {
            return None;
        }
        let heartbeat = self.heartbeat().0?;
        let last = self.dirs.iter().filter_map(|d| d.last_data).max()?;
        if last > at {
            return None;
        }
        let idle = at.since(last);
        if idle < MIDDLEBOX_MIN_IDLE {
            return None;
        }
        // The heartbeat check of the side that ended it watches the other
        // side's bytes: RabbitMQ cuts a client silent for 2 timeouts (its
        // monitor needs two missed checks), a client library a broker silent
        // for about one.
        let (watched, deadline) = match by {
            Role::Broker => (Role::Client, 2 * u64::from(heartbeat)),
            Role::Client => (Role::Broker, u64::from(heartbeat)),
        };
        let watched_last = self.dirs[self.dir_of(watched).index()].last_data;
        let watched_silence = watched_last.map_or(idle, |t| at.since(t));
        if heartbeat != 0 && watched_silence >= Span::from_secs(deadline) {
            return None;
        }
        Some(MiddleboxEnd {
            seen_from: by,
            how,
            at,
            idle,
            heartbeat,
        })
    }

    /// What `gap` led to: the first ending event during it (or shortly after) decides.
    #[must_use]
    pub fn consequence(&self, gap: &Gap) -> Consequence {
        let (how, by, at) = self.ended();
        if how == EndHow::PortReused {
            // When it really ended is unknown: only that it was over by the SYN.
            return if gap.ended_by == SilenceEnd::PortReused {
                Consequence::PortReused
            } else {
                Consequence::Survived
            };
        }
        if let (Some(by), Some(at)) = (by, at) {
            if at >= gap.start && at <= gap.end.plus(Span::from_millis(2_000)) {
                return match (by, how) {
                    (Role::Broker, EndHow::Close) => Consequence::BrokerClosed,
                    (Role::Broker, _) => Consequence::BrokerReset,
                    (Role::Client, _) => Consequence::ClientClosed,
                };
            }
        }
        if matches!(gap.ended_by, SilenceEnd::CaptureEnd | SilenceEnd::Open) {
            Consequence::CaptureEnded
        } else {
            Consequence::Survived
        }
    }

    /// Human-readable evidence lines for a gap, with counts.
    #[must_use]
    pub fn evidence_lines(&self, gap: &Gap) -> Vec<String> {
        let s = gap.silent.as_str();
        let p = match gap.silent {
            Role::Client => "broker",
            Role::Broker => "client",
        };
        let e = &gap.evidence;
        let mut lines = vec![format!(
            "{s} sent no new AMQP bytes for {:.3} s (limit {} s, {:.1}x)",
            gap.silence().as_secs_f64(),
            gap.limit.as_secs_f64(),
            gap.ratio()
        )];
        if e.peer_new_segments > 0 {
            lines.push(format!(
                "{p} kept sending: {} ({}, {}) during the silence",
                count(e.peer_new_segments, "new segment", "new segments"),
                count(e.peer_new_bytes, "byte", "bytes"),
                count(e.peer_heartbeats, "heartbeat frame", "heartbeat frames")
            ));
        } else {
            lines.push(format!("{p} sent no new data during the silence either"));
        }
        if e.sender_acks_advancing > 0 {
            lines.push(format!(
                "{s}'s kernel acknowledged {p} data {} (pure ACKs advancing): its host and TCP stack were alive",
                count(e.sender_acks_advancing, "time", "times")
            ));
        } else if e.sender_packets > 0 {
            lines.push(format!(
                "{s} sent {} without new data ({} not advancing, {})",
                count(e.sender_packets, "packet", "packets"),
                count(e.sender_pure_acks, "pure ACK", "pure ACKs"),
                count(e.sender_keepalives, "keep-alive", "keep-alives")
            ));
        } else {
            lines.push(format!(
                "nothing at all from {s} during the silence: no data, no ACKs"
            ));
        }
        if let (Some(min), Some(before)) = (e.sender_min_window, e.sender_window_before) {
            if min < before {
                lines.push(format!("{s}'s receive window shrank from {before} to {min} bytes (unread data piling up)"));
            }
        }
        if e.sender_zero_windows > 0 {
            lines.push(format!(
                "{s} advertised a zero window {}",
                count(e.sender_zero_windows, "time", "times")
            ));
        }
        if gap.cause == Cause::BrokerBlocked {
            lines.extend(self.blocked_lines(gap));
        }
        // A zero window on the segment that ends the silence (an RST often
        // carries one) closed nothing: only a window closed for a while counts.
        if e.peer_zero_windows > 0 && e.peer_zero_window_time.0 > 0 {
            lines.push(format!(
                "{p} advertised a zero window {} during the silence, first at {}: its window was closed for {:.3} s of the {:.3} s, so {s}'s TCP could send no new data (only window probes: {})",
                count(e.peer_zero_windows, "time", "times"),
                time_of_day(e.peer_zero_first.unwrap_or(gap.start)),
                e.peer_zero_window_time.as_secs_f64(),
                gap.silence().as_secs_f64(),
                count(e.sender_keepalives, "keep-alive", "keep-alives")
            ));
        }
        if receiver_window_decided(e, gap.silent, gap.cause) {
            lines.push(format!(
                "the silence is {p}'s: {p}'s application was not reading its socket, its kernel's receive buffer filled and it advertised a zero window ({s} was not stalled)"
            ));
        }
        if e.peer_retransmissions > 0 {
            lines.push(format!(
                "{p} retransmitted {}: its data was not acknowledged{}",
                count(e.peer_retransmissions, "time", "times"),
                if e.sender_zero_windows > 0 {
                    String::new()
                } else if e.sender_acks_after_peer_retransmission == 0 {
                    format!(
                        "; {s} acknowledged nothing after that: {p}'s data was not reaching {s} (or {s}'s ACKs were lost)"
                    )
                } else if e.peer_retransmissions >= 2 {
                    format!(
                        "; {s}'s kernel left it unacknowledged through {} retransmission timeouts (a stalled process's kernel would have ACKed it at once): packets were lost on the way",
                        e.peer_retransmissions
                    )
                } else {
                    String::new()
                }
            ));
        }
        if e.capture_missed_bytes > 0 {
            lines.push(match &e.missed_proof {
                Some(proof) => format!(
                    "the capture missed {} {s} sent during the silence: {}",
                    count(e.capture_missed_bytes, "byte", "bytes"),
                    proof_text(proof, s, p)
                ),
                None => format!(
                    "the capture missed {} {s} sent during the silence",
                    count(e.capture_missed_bytes, "byte", "bytes")
                ),
            });
        }
        for proof in [&e.unseen_proof, &e.ip_id_proof].into_iter().flatten() {
            lines.push(format!(
                "{s} was not silent: {} (missed by the capture, or lost on the way before they reached it)",
                proof_text(proof, s, p)
            ));
        }
        if e.sender_retransmissions > 0 {
            lines.push(format!(
                "{s} retransmitted {} during the silence{}",
                count(e.sender_retransmissions, "time", "times"),
                if e.peer_packets == 0 {
                    format!(
                        " and nothing at all came back from {p}: its TCP could not send new data"
                    )
                } else if e.peer_acks_after_sender_retransmission == 0 {
                    format!(
                        " and {p} acknowledged none of it: {s}'s data was not getting through, so its TCP could not send new data"
                    )
                } else {
                    String::new()
                }
            ));
        }
        if e.peer_capture_missed_bytes > 0 {
            lines.push(format!(
                "the capture missed {} {p} sent during the silence",
                count(e.peer_capture_missed_bytes, "byte", "bytes")
            ));
        }
        if e.capture_drops > 0 {
            lines.push(format!(
                "the capture dropped {} during the silence",
                count(e.capture_drops, "packet", "packets")
            ));
        }
        if let Some(code) = e.capture_failed {
            lines.push(format!(
                "the capture failed during the silence ({code}, see the warnings): what followed was not seen"
            ));
        }
        lines.push(format!(
            "the silence ended by {}",
            match gap.ended_by {
                SilenceEnd::Data => format!("{s} sending again"),
                SilenceEnd::Fin => format!("{s} closing (FIN)"),
                SilenceEnd::Rst => "a connection reset (RST)".to_owned(),
                SilenceEnd::CaptureEnd => "the end of the capture".to_owned(),
                SilenceEnd::PortReused => format!(
                    "the connection's end, unseen: a new connection reused its ports (SYN at {})",
                    self.rare()
                        .reused
                        .map_or_else(|| "?".to_owned(), |(at, _)| time_of_day(at))
                ),
                SilenceEnd::Open => "nothing yet: still silent".to_owned(),
            }
        ));
        if gap.resume_burst_frames > 1 {
            lines.push(format!(
                "on resuming, {s} sent {} frames within {} ms (queued work flushed)",
                gap.resume_burst_frames,
                self.config.burst_window.0 / 1_000_000
            ));
        }
        if let Some((at, from)) = gap.resumed {
            lines.push(format!(
                "{s} came back {:.3} s after the silence began, opening a new connection from {from}",
                at.since(gap.start).as_secs_f64()
            ));
        }
        if let Some(w) = &gap.wakeup {
            lines.push(format!(
                "a new TCP connection {} -> {} started {:.3} s before {s} resumed (woken by an incoming request: the mod_wsgi/eventlet signature)",
                w.from,
                w.to,
                w.before_resume.as_secs_f64()
            ));
        }
        lines
    }

    /// Evidence lines on the broker's Connection.Blocked during a client gap.
    fn blocked_lines(&self, gap: &Gap) -> Vec<String> {
        let mut lines = Vec::new();
        if let Some((b, un)) = self.blocked_during(gap.start, gap.end) {
            lines.push(format!(
                "broker sent Connection.Blocked at {} (reason \"{}\"): RabbitMQ stops reading a blocked publisher's socket and does not check its heartbeats",
                time_of_day(b.at),
                b.reason.as_deref().unwrap_or("")
            ));
            match un {
                Some(u) => lines.push(format!(
                    "broker sent Connection.Unblocked at {} ({:.3} s after Blocked)",
                    time_of_day(u.at),
                    u.at.since(b.at).as_secs_f64()
                )),
                None => lines.push("no Connection.Unblocked followed in the capture".to_owned()),
            }
        }
        lines.push(format!(
            "the client was blocked for {:.3} s of the silence: it was not stalled, the broker's flow control held it (a resource alarm)",
            gap.evidence.blocked_time.as_secs_f64()
        ));
        lines
    }

    /// The client's name: connection_name, else product.
    #[must_use]
    pub fn client_name(&self) -> Option<String> {
        self.client_name_str().map(str::to_owned)
    }

    /// [`Connection::client_name`] without a copy.
    #[must_use]
    pub fn client_name_str(&self) -> Option<&str> {
        let props = self.handshake.client_properties.as_ref()?;
        for key in ["connection_name", "product"] {
            if let Some(PropValue::Text(t)) = props.get(key) {
                return Some(t);
            }
        }
        None
    }

    /// The worst cause among the gaps.
    #[must_use]
    pub fn worst_cause(&self) -> Option<Cause> {
        self.gaps
            .iter()
            .map(|g| g.cause)
            .max_by_key(|c| c.severity())
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};

    fn ep(port: u16) -> Endpoint {
        Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
    }

    const TEN_S: Span = Span(10_000_000_000);
    const TWO_S: Span = Span(2_000_000_000);

    /// Rules 5 and 6 on the evidence of broker-blocked.pcap and
    /// consumer-zero-window.pcap: TCP sends nothing new into a zero window.
    #[test]
    fn zero_window_and_blocked_are_not_the_senders_stall() {
        let silence = Span::from_millis(7_081);
        // broker-blocked: the client's kernel ACKs the broker's heartbeats
        // (a stall by rule 7), but the broker had it blocked and its window was
        // closed for the whole silence.
        let blocked = Evidence {
            sender_acks_advancing: 9,
            ..Evidence::default()
        }
        .with_rare(RareEvidence {
            sender_keepalives: 4,
            peer_zero_windows: 13,
            peer_zero_window_time: silence,
            blocked_time: silence,
            ..RareEvidence::default()
        });
        assert_eq!(
            decide(&blocked, Role::Client, silence, TWO_S),
            Cause::BrokerBlocked
        );
        // The same zero window without Connection.Blocked: the broker was not
        // reading, so the silence is the broker's.
        let not_reading = blocked.clone().with_rare(RareEvidence {
            blocked_time: Span(0),
            ..*blocked
        });
        assert_eq!(
            decide(&not_reading, Role::Client, silence, TWO_S),
            Cause::BrokerStall
        );
        // Blocked only briefly at the start of a long silence: the rest is the
        // client's own.
        let brief = blocked.clone().with_rare(RareEvidence {
            peer_zero_windows: 0,
            peer_zero_window_time: Span(0),
            blocked_time: Span::from_secs(1),
            ..*blocked
        });
        assert_eq!(
            decide(&brief, Role::Client, TEN_S, TWO_S),
            Cause::ClientStall
        );
        // consumer-zero-window, broker-to-client: only probes from the broker
        // into the stopped client's zero window.
        let probes = Evidence {
            sender_pure_acks: 4,
            sender_packets: 8,
            ..Evidence::default()
        }
        .with_rare(RareEvidence {
            sender_keepalives: 4,
            peer_zero_windows: 4,
            peer_zero_window_time: Span::from_millis(4_277),
            ..RareEvidence::default()
        });
        let cause = decide(&probes, Role::Broker, Span::from_millis(4_277), TWO_S);
        assert_eq!(cause, Cause::ClientStall);
        assert!(receiver_window_decided(&probes, Role::Broker, cause));
        // A window closed for a moment does not explain a long silence.
        let short = probes.clone().with_rare(RareEvidence {
            peer_zero_window_time: Span::from_millis(500),
            ..*probes
        });
        assert_eq!(decide(&short, Role::Broker, TEN_S, TWO_S), Cause::Unknown);
    }

    #[test]
    fn blocked_time_counts_blocked_until_unblocked() {
        let (mut c, cd) = conn(2);
        let bd = cd.reverse();
        c.on_method(
            s(2.0),
            bd,
            &ConnMethod::Blocked {
                reason: "low on memory".into(),
            },
        );
        c.on_method(s(6.0), bd, &ConnMethod::Unblocked);
        assert_eq!(c.blocked_within(s(0.0), s(10.0)), Span::from_secs(4));
        assert_eq!(c.blocked_within(s(3.0), s(5.0)), Span::from_secs(2));
        assert_eq!(c.blocked_within(s(7.0), s(9.0)), Span(0));
        assert!(c.blocked_during(s(7.0), s(9.0)).is_none());
        let (b, u) = c.blocked_during(s(3.0), s(9.0)).expect("blocked");
        assert_eq!(b.reason.as_deref(), Some("low on memory"));
        assert_eq!(u.map(|u| u.at), Some(s(6.0)));
    }

    /// The decision rules on the evidence of real captures (see
    /// docs/heartbeat-model.md): a kernel that ACKs proves the host alive, not
    /// that its packets get through.
    #[test]
    fn retransmissions_nobody_answers_are_not_a_stall() {
        // twoend-lost-c2b, broker side: one ACK from the client right after its
        // last byte, then the broker retransmits into the void.
        let broker_side = Evidence {
            sender_acks_advancing: 1,
            sender_packets: 1,
            peer_retransmissions: 5,
            ..Evidence::default()
        };
        assert_eq!(
            decide(&broker_side, Role::Client, TEN_S, TWO_S),
            Cause::PeerUnreachable
        );
        // twoend-lost-c2b, client side: the client's kernel ACKs the broker's
        // heartbeats, but its own retransmissions are never acknowledged.
        let client_side = Evidence {
            sender_acks_advancing: 2,
            sender_retransmissions: 5,
            peer_packets: 7,
            ..Evidence::default()
        };
        assert_eq!(
            decide(&client_side, Role::Client, TEN_S, TWO_S),
            Cause::PeerUnreachable
        );
        // twoend-lost-c2b-brief, broker side: ACKs came back as the loss ended,
        // after four broker retransmissions.
        let brief = Evidence {
            sender_acks_advancing: 2,
            peer_retransmissions: 4,
            ..Evidence::default()
        }
        .with_rare(RareEvidence {
            sender_acks_after_peer_retransmission: 2,
            ..RareEvidence::default()
        });
        assert_eq!(
            decide(&brief, Role::Client, TEN_S, TWO_S),
            Cause::PeerUnreachable
        );
        // A stall with one spurious retransmission that the kernel answered.
        let stall = Evidence {
            sender_acks_advancing: 6,
            peer_retransmissions: 1,
            ..Evidence::default()
        }
        .with_rare(RareEvidence {
            sender_acks_after_peer_retransmission: 3,
            ..RareEvidence::default()
        });
        assert_eq!(
            decide(&stall, Role::Client, TEN_S, TWO_S),
            Cause::ClientStall
        );
        // A stalled reader's full window makes the peer probe: still a stall.
        let full = Evidence {
            peer_retransmissions: 3,
            ..Evidence::default()
        }
        .with_rare(RareEvidence {
            sender_zero_windows: 3,
            ..RareEvidence::default()
        });
        assert_eq!(
            decide(&full, Role::Broker, TEN_S, TWO_S),
            Cause::BrokerStall
        );
        // Retransmissions the peer acknowledged afterwards: the data got through.
        let answered = Evidence {
            sender_acks_advancing: 2,
            sender_retransmissions: 1,
            ..Evidence::default()
        }
        .with_rare(RareEvidence {
            peer_acks_after_sender_retransmission: 1,
            ..RareEvidence::default()
        });
        assert_eq!(
            decide(&answered, Role::Client, TEN_S, TWO_S),
            Cause::ClientStall
        );
    }

    fn conn(hb: u16) -> (Connection, Direction) {
        let (key, cdir) = FlowKey::from_packet(ep(40000), ep(5672));
        let mut c = Connection::new(
            key,
            cdir,
            RoleSource::Port,
            Timestamp(0),
            false,
            AnalysisConfig::default(),
        );
        c.on_method(
            Timestamp(0),
            cdir,
            &ConnMethod::TuneOk {
                channel_max: 0,
                frame_max: 131_072,
                heartbeat: hb,
            },
        );
        (c, cdir)
    }

    fn s(secs: f64) -> Timestamp {
        #[allow(clippy::cast_possible_truncation)]
        Timestamp((secs * 1e9) as i64)
    }

    #[test]
    fn client_stall_from_acks() {
        let syns = SynLog::default();
        let (mut c, cd) = conn(2);
        let bd = cd.reverse();
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        c.on_new_bytes(s(0.0), bd, 0, 8, &syns);
        for i in 1..8 {
            c.on_new_bytes(
                s(f64::from(i)),
                bd,
                u64::try_from(i).unwrap_or(0) * 8,
                8,
                &syns,
            );
            c.on_ack(s(f64::from(i) + 0.04), cd, true, true, 65_000, false);
        }
        c.on_new_bytes(s(9.0), cd, 8, 8, &syns);
        assert_eq!(c.gaps.len(), 1);
        let g = &c.gaps[0];
        assert_eq!(g.cause, Cause::ClientStall);
        assert_eq!(g.silent, Role::Client);
        assert_eq!(g.silence(), Span::from_secs(9));
        assert_eq!(g.evidence.sender_acks_advancing, 7);
        assert!(c
            .evidence_lines(g)
            .iter()
            .any(|l| l.contains("acknowledged broker data 7 times")));
    }

    #[test]
    fn peer_unreachable_when_nothing_and_retransmits() {
        let syns = SynLog::default();
        let (mut c, cd) = conn(2);
        let bd = cd.reverse();
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        c.on_new_bytes(s(1.0), bd, 0, 8, &syns);
        c.on_retransmission(s(1.5), bd);
        c.on_retransmission(s(2.5), bd);
        c.on_rst(s(6.0), bd, &syns);
        let g = c
            .gaps
            .iter()
            .find(|g| g.silent == Role::Client)
            .map(|g| g.cause);
        assert_eq!(g, Some(Cause::PeerUnreachable));
    }

    #[test]
    fn capture_loss_beats_stall() {
        let syns = SynLog::default();
        let (mut c, cd) = conn(2);
        let bd = cd.reverse();
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        c.on_ack(s(1.0), cd, true, true, 100, false);
        c.on_new_bytes(s(5.0), cd, 100, 8, &syns);
        assert_eq!(c.gaps[0].cause, Cause::CaptureLoss);
        let _ = bd;
    }

    /// Rule 5 on the numbers of netns-oneway.pcap with the broker's last
    /// heartbeat and its retransmissions removed: its RST at seq 602 after
    /// the last byte seen at 594 shows 8 bytes sent; its kernel's ACK (a
    /// stall by rule 8) does not make the silence a stall.
    #[test]
    fn bytes_sent_and_not_seen_are_capture_loss_not_a_stall() {
        let syns = SynLog::default();
        let (mut c, cd) = conn(2);
        let bd = cd.reverse();
        c.on_new_bytes(s(0.0), bd, 0, 593, &syns);
        c.on_new_bytes(s(0.5), cd, 0, 8, &syns);
        c.on_ack(s(0.6), bd, true, true, 64, false);
        c.on_unseen(s(5.0), bd, 593, 8, LossProofKind::Rst);
        c.on_rst(s(5.0), bd, &syns);
        let g = c.gaps.iter().find(|g| g.dir == bd).expect("broker gap");
        assert_eq!(g.cause, Cause::CaptureLoss);
        assert_eq!(g.evidence.unseen_sent_bytes, 8);
        let lines = c.evidence_lines(g);
        assert!(
            lines.iter().any(|l| l.contains(
                "broker's RST at seq 602 but the last byte seen was 594: 8 bytes were sent and not captured"
            )),
            "{lines:?}"
        );
        // The client's silence: the broker's bytes missed count for it too (rule 9).
        let g = c.gaps.iter().find(|g| g.dir == cd).expect("client gap");
        assert_eq!(g.evidence.peer_capture_missed_bytes, 8);
        assert_eq!(g.cause, Cause::CaptureLoss);
        // Rules 2-4 come first: bytes sent and never seen next to
        // retransmissions nobody acknowledged are the path's.
        let ev = Evidence {
            peer_retransmissions: 4,
            sender_acks_advancing: 1,
            ..Evidence::default()
        }
        .with_rare(RareEvidence {
            unseen_sent_bytes: 8,
            sender_acks_after_peer_retransmission: 1,
            ..RareEvidence::default()
        });
        assert_eq!(
            decide(&ev, Role::Client, TEN_S, TWO_S),
            Cause::PeerUnreachable
        );
        // Proved twice (a pure ACK, then the RST), counted once.
        let (mut c, cd) = conn(2);
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        c.on_unseen(s(1.0), cd, 8, 8, LossProofKind::NextSeq);
        c.on_unseen(s(4.0), cd, 8, 16, LossProofKind::Rst);
        c.on_rst(s(4.0), cd, &syns);
        assert_eq!(c.gaps[0].evidence.unseen_sent_bytes, 16);
        // A proof that the bytes arrived counts as rule 1 even when a
        // sequence number counted them first.
        let (mut c, cd) = conn(2);
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        c.on_unseen(s(1.0), cd, 8, 8, LossProofKind::NextSeq);
        c.on_unseen(s(2.0), cd, 8, 8, LossProofKind::Ack);
        c.on_new_bytes(s(5.0), cd, 16, 8, &syns);
        let e = &c.gaps[0].evidence;
        assert_eq!((e.capture_missed_bytes, e.unseen_sent_bytes), (8, 8));
        assert_eq!(e.missed_proof.map(|p| p.kind), Some(LossProofKind::Ack));
    }

    /// IPv4 IDs prove packets missing only on a per-connection counter: +1
    /// per packet for 8 steps over 2 s first; a jump before that (a counter
    /// shared by the host) disables them for good; the step after a packet
    /// larger than one Ethernet segment (segmentation offload) is not judged.
    #[test]
    fn ip_id_jumps_count_only_on_a_per_connection_counter() {
        let syns = SynLog::default();
        let run = |ids: &[u16], sizes: &[u32]| {
            let (mut c, cd) = conn(2);
            c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
            for (i, &id) in ids.iter().enumerate() {
                let t = s(0.5 * f64::from(u32::try_from(i).unwrap_or(0)));
                if let Some((from, to)) = c.on_ip_id(t, cd, id, sizes.get(i).copied().unwrap_or(0))
                {
                    c.on_ip_id_jump(cd, from, to);
                }
            }
            c.on_new_bytes(s(30.0), cd, 8, 8, &syns);
            (c.gaps[0].evidence.unseen_sent_packets, c.gaps[0].cause)
        };
        let steady: Vec<u16> = (100..110).collect();
        let mut jump = steady.clone();
        jump.push(115);
        assert_eq!(run(&jump, &[]), (5, Cause::CaptureLoss));
        assert_eq!(run(&steady, &[]).0, 0);
        // Jumps before the counter was trusted: never trusted afterwards.
        let mut early = vec![100, 101, 105];
        early.extend(106..120);
        early.push(130);
        assert_eq!(run(&early, &[]).0, 0);
        // Too few steps, or too short a time, to trust.
        assert_eq!(run(&[100, 101, 102, 110], &[]).0, 0);
        // After a 64 KB segment (offload: one ID per segment sent) the step is not judged.
        let mut sizes = vec![0; 10];
        sizes.push(65_000);
        let mut big = steady.clone();
        big.push(110);
        big.push(155);
        assert_eq!(run(&big, &sizes).0, 0);
        // IPv6 and ID 0 (a SYN-ACK of a listening socket) are not counted.
        assert_eq!(run(&[0; 20], &[]).0, 0);
    }

    #[test]
    fn disabled_heartbeat_never_flags() {
        let syns = SynLog::default();
        let (mut c, cd) = conn(0);
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        c.on_new_bytes(s(100.0), cd, 8, 8, &syns);
        c.finish(s(200.0), &syns);
        assert!(c.gaps.is_empty());
        assert_eq!(c.dirs[cd.index()].longest_silence, Span::from_secs(100));
    }

    #[test]
    fn heartbeat_inferred_from_broker_period_and_pending_resolved() {
        let syns = SynLog::default();
        let (key, cd) = FlowKey::from_packet(ep(40000), ep(5672));
        let mut c = Connection::new(
            key,
            cd,
            RoleSource::Port,
            s(0.0),
            true,
            AnalysisConfig::default(),
        );
        let bd = cd.reverse();
        let hb = FrameInfo {
            kind: FrameKind::Heartbeat,
            channel: 0,
            size: 0,
            offset: 0,
        };
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        // Client silent 10 s before the broker's period is known.
        c.on_new_bytes(s(10.0), cd, 8, 8, &syns);
        for i in 0..8 {
            let t = s(10.0 + 2.0 * f64::from(i));
            c.on_new_bytes(t, bd, u64::try_from(i).unwrap_or(0) * 8, 8, &syns);
            c.on_frame(t, bd, &hb);
        }
        assert_eq!(c.heartbeat(), (Some(4), HeartbeatSource::Inferred));
        assert_eq!(c.gaps.len(), 1);
        assert_eq!(c.gaps[0].limit, Span::from_secs(4));
    }

    #[test]
    fn open_silence_flagged_once_by_tick() {
        let syns = SynLog::default();
        let (mut c, cd) = conn(2);
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        assert!(c.tick(s(1.0)).is_empty());
        assert_eq!(c.tick(s(2.5)).len(), 1);
        assert!(c.tick(s(3.0)).is_empty());
        assert!(c.open_gap(cd, s(3.0)).is_some());
    }

    #[test]
    fn wakeup_found_before_resume() {
        let mut syns = SynLog::default();
        let (mut c, cd) = conn(2);
        c.on_new_bytes(s(0.0), cd, 0, 8, &syns);
        c.on_ack(s(1.0), cd, true, true, 100, false);
        syns.record(s(9.99), ep(50000), ep(8774));
        c.on_fin(s(10.0), cd, &syns);
        let w = c.gaps[0].wakeup.expect("wake-up");
        assert_eq!(w.to.port, 8774);
        assert_eq!(c.gaps[0].ended_by, SilenceEnd::Fin);
    }
}
