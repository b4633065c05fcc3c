//! Causes: the evidence gathered during a silence, the gap it becomes and
//! the rules that decide its cause ([`decide`]).

use serde::Serialize;

use crate::model::{Direction, Endpoint, Span, Timestamp};

/// Why bytes of a stream will never be seen (the analysis' view of a hole).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoleClass {
    /// The snapshot length cut a captured packet: timing known, content not.
    Snaplen,
    /// The capture never saw these bytes: capture loss.
    NotCaptured,
    /// hbscope's own out-of-order buffer cap skipped them.
    Overflow,
}

/// Which side of an AMQP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// The AMQP client (sends the protocol header, receives Connection.Start).
    Client,
    /// The broker.
    Broker,
}

impl Role {
    /// "client" or "broker".
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Client => "client",
            Role::Broker => "broker",
        }
    }

    /// The other side.
    #[must_use]
    pub fn other(self) -> Role {
        match self {
            Role::Client => Role::Broker,
            Role::Broker => Role::Client,
        }
    }

    /// The direction in which this side sends.
    #[must_use]
    pub fn sends(self) -> RoleDirection {
        match self {
            Role::Client => RoleDirection::ClientToBroker,
            Role::Broker => RoleDirection::BrokerToClient,
        }
    }
}

/// A direction named by who sends in it (the reports' names), where
/// [`Direction`] names it by the flow key's endpoints.
///
/// Declared in name order: maps keyed by it list "broker-to-client" first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleDirection {
    /// The broker sends.
    BrokerToClient,
    /// The client sends.
    ClientToBroker,
}

impl RoleDirection {
    /// "client-to-broker" or "broker-to-client".
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RoleDirection::BrokerToClient => "broker-to-client",
            RoleDirection::ClientToBroker => "client-to-broker",
        }
    }
}

/// How the client and broker roles were decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoleSource {
    /// The client sent the AMQP protocol header.
    ProtocolHeader,
    /// The broker sent Connection.Start.
    ConnectionStart,
    /// The broker is the side on an AMQP port.
    Port,
}

impl RoleSource {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RoleSource::ProtocolHeader => "protocol-header",
            RoleSource::ConnectionStart => "connection-start",
            RoleSource::Port => "port",
        }
    }
}

/// Why a silence is believed to have happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Cause {
    /// The client's application stopped sending while its kernel stayed alive.
    ClientStall,
    /// The broker's application stopped sending while its kernel stayed alive.
    BrokerStall,
    /// The silent side sent nothing at all, not even ACKs, while the other retransmitted.
    PeerUnreachable,
    /// The client's silence while the broker had it blocked (Connection.Blocked,
    /// RabbitMQ's flow control): the broker stopped reading the socket.
    BrokerBlocked,
    /// The capture missed data during the silence.
    CaptureLoss,
    /// The evidence does not decide.
    Unknown,
}

impl Cause {
    /// The report name of the cause.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::ClientStall => "client-stall",
            Cause::BrokerStall => "broker-stall",
            Cause::PeerUnreachable => "peer-unreachable",
            Cause::BrokerBlocked => "broker-blocked",
            Cause::CaptureLoss => "capture-loss",
            Cause::Unknown => "unknown",
        }
    }

    /// Severity rank for "worst cause" (higher is worse for the user to act on).
    #[must_use]
    pub fn severity(self) -> u8 {
        match self {
            Cause::ClientStall | Cause::BrokerStall => 5,
            Cause::PeerUnreachable => 4,
            Cause::BrokerBlocked => 3,
            Cause::Unknown => 2,
            Cause::CaptureLoss => 1,
        }
    }
}

/// How a silence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SilenceEnd {
    /// The silent side sent new bytes again.
    Data,
    /// The silent side sent FIN.
    Fin,
    /// An RST ended the connection (from either side).
    Rst,
    /// The capture (or the input) ended while the silence was still open.
    CaptureEnd,
    /// A new connection opened on the same 4-tuple (a SYN) while this one
    /// was still open in the capture: it had ended unseen; the silence is
    /// measured to its last packet.
    PortReused,
    /// Still open at the live "now" (only in snapshots of live analysis).
    Open,
}

impl SilenceEnd {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SilenceEnd::Data => "data",
            SilenceEnd::Fin => "fin",
            SilenceEnd::Rst => "rst",
            SilenceEnd::CaptureEnd => "capture-end",
            SilenceEnd::PortReused => "port-reused",
            SilenceEnd::Open => "open",
        }
    }
}

/// `Display` of the report names: the text views print what the JSON says.
macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.as_str())
            }
        }
    )*};
}
pub(crate) use display_as_str;

display_as_str!(Role, RoleDirection, RoleSource, Cause, SilenceEnd);

/// Which number on the wire proved that the capture missed part of a
/// direction (docs/heartbeat-model.md, rules 1 and 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LossProofKind {
    /// The sender's new data resumed beyond the last byte seen.
    Data,
    /// The receiver's cumulative ACK covers bytes never seen: they arrived.
    Ack,
    /// A SACK block of the receiver covers bytes never seen: they arrived.
    Sack,
    /// A hole in the sequence space acknowledged past, or left open when the
    /// connection or the capture ended.
    Hole,
    /// The sender's FIN lies beyond the last byte seen.
    Fin,
    /// The sender's RST carries a sequence number beyond the last byte seen.
    Rst,
    /// A segment without data (pure ACK) carries the sender's next byte to
    /// send, beyond the last byte seen.
    NextSeq,
    /// The sender's IPv4 ID, which had gone up by one per packet on this
    /// connection, jumped: packets were sent that were not seen.
    IpId,
}

impl LossProofKind {
    /// Proof that the capture missed what passed it (rule 1): the receiver
    /// acknowledged it, or the sender's data resumed past it (TCP resends
    /// lost data from the first unacknowledged byte, so a later byte never
    /// overtakes a loss on the way). The others (rule 5) prove only that the
    /// sender sent it: it may also have been lost before the capture point.
    #[must_use]
    pub fn passed_capture(self) -> bool {
        matches!(
            self,
            LossProofKind::Data | LossProofKind::Ack | LossProofKind::Sack | LossProofKind::Hole
        )
    }
}

/// The proof behind a silence's capture loss, for its evidence line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LossProof {
    /// Which number proved it.
    pub kind: LossProofKind,
    /// The end of what was seen: a relative sequence number (stream offset
    /// + 1, as tshark counts), or the IPv4 ID before the jump.
    pub seen: u32,
    /// The proving number: a relative sequence number, or the IPv4 ID after
    /// the jump.
    pub proved: u32,
}

impl LossProof {
    /// Bytes (sequence proofs) or packets (IPv4 ID) missing between `seen`
    /// and `proved`.
    #[must_use]
    pub fn missing(&self) -> u32 {
        match self.kind {
            LossProofKind::IpId => u32::from(
                u16::try_from(self.proved)
                    .unwrap_or(0)
                    .wrapping_sub(u16::try_from(self.seen).unwrap_or(0))
                    .wrapping_sub(1),
            ),
            _ => self.proved.wrapping_sub(self.seen),
        }
    }
}

/// What the wire showed during one silence of a direction. "Sender" is the
/// silent side, "peer" the other side.
///
/// The counters most packets move are here; what most silences never see
/// (zero windows, capture loss, the proofs, keep-alives, blocked time) is in
/// [`RareEvidence`], read through `Deref` (all zero when absent) and
/// allocated on the first write: every connection carries two of these, and
/// the rare part was two thirds of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Evidence {
    /// Peer segments carrying new data during the silence.
    pub peer_new_segments: u32,
    /// Peer heartbeat frames during the silence.
    pub peer_heartbeats: u32,
    /// Peer bytes of new data.
    pub peer_new_bytes: u64,
    /// Peer retransmitted segments (its data was not acknowledged).
    pub peer_retransmissions: u32,
    /// Any packet at all from the peer.
    pub peer_packets: u32,
    /// Sender retransmissions: it had data out that nobody acknowledged.
    pub sender_retransmissions: u32,
    /// Sender ACKs that advanced over the peer's data (its kernel is alive).
    pub sender_acks_advancing: u32,
    /// Sender pure ACKs of any kind.
    pub sender_pure_acks: u32,
    /// Any packet at all from the sender (ACKs, keep-alives, window updates).
    pub sender_packets: u32,
    /// Smallest window the sender advertised during the silence.
    pub sender_min_window: Option<u32>,
    /// Window the sender advertised just before the silence.
    pub sender_window_before: Option<u32>,
    /// The rest, boxed until first written.
    pub(crate) rare: Rare,
}

/// The parts of [`Evidence`] most silences never see (all zero by default).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RareEvidence {
    /// Sender ACKs advancing over the peer's data after the peer's first
    /// retransmission in this silence: the peer's data did get through.
    pub sender_acks_after_peer_retransmission: u32,
    /// Peer ACKs advancing over the sender's data after the sender's first
    /// retransmission in this silence: the sender's data did get through.
    pub peer_acks_after_sender_retransmission: u32,
    /// Sender segments with a zero window.
    pub sender_zero_windows: u32,
    /// Sender keep-alive probes.
    pub sender_keepalives: u32,
    /// Bytes of the sender's direction the capture never saw in this silence.
    pub capture_missed_bytes: u64,
    /// Bytes of the peer's direction the capture never saw in this silence
    /// (proven either way).
    pub peer_capture_missed_bytes: u64,
    /// Bytes of the sender's direction that its own later numbers (FIN, RST,
    /// the next sequence number of a segment without data) show were sent
    /// in this silence, and that were never seen (rule 5).
    pub unseen_sent_bytes: u64,
    /// Packets of the sender that its IPv4 IDs show were sent in this
    /// silence and never seen (rule 5).
    pub unseen_sent_packets: u32,
    /// The first proof of `capture_missed_bytes` (rule 1).
    pub missed_proof: Option<LossProof>,
    /// The first proof of `unseen_sent_bytes` (rule 5).
    pub unseen_proof: Option<LossProof>,
    /// The first IPv4 ID jump behind `unseen_sent_packets` (rule 5).
    pub ip_id_proof: Option<LossProof>,
    /// Packets dropped by the capture (libpcap counter) during the silence.
    pub capture_drops: u64,
    /// Peer segments (of any kind) advertising a zero window during the
    /// silence: the silent side's TCP could not send new data.
    pub peer_zero_windows: u32,
    /// Time of the silence during which the peer's window was zero (runs
    /// closed so far; [`Evidence::closed_at`] adds the open one).
    pub peer_zero_window_time: Span,
    /// Start of the peer's zero-window run still open, if any.
    pub peer_zero_since: Option<Timestamp>,
    /// First zero-window advertisement of the peer in this silence.
    pub peer_zero_first: Option<Timestamp>,
    /// Time of the silence covered by the broker's Connection.Blocked
    /// (client silences only; filled in when the silence is judged).
    pub blocked_time: Span,
    /// The live capture failed while the silence was open (interface down
    /// or removed, a read error): the warning code saying why. What came
    /// after was never seen.
    pub capture_failed: Option<&'static str>,
}

/// [`RareEvidence`] with nothing in it.
const NO_RARE_EVIDENCE: RareEvidence = RareEvidence {
    sender_acks_after_peer_retransmission: 0,
    peer_acks_after_sender_retransmission: 0,
    sender_zero_windows: 0,
    sender_keepalives: 0,
    capture_missed_bytes: 0,
    peer_capture_missed_bytes: 0,
    unseen_sent_bytes: 0,
    unseen_sent_packets: 0,
    missed_proof: None,
    unseen_proof: None,
    ip_id_proof: None,
    capture_drops: 0,
    peer_zero_windows: 0,
    peer_zero_window_time: Span(0),
    peer_zero_since: None,
    peer_zero_first: None,
    blocked_time: Span(0),
    capture_failed: None,
};

/// A boxed [`RareEvidence`], absent until written: compared and shown by
/// value, so absent equals all zero.
#[derive(Clone, Default)]
pub(crate) struct Rare(Option<Box<RareEvidence>>);

impl Rare {
    fn get(&self) -> &RareEvidence {
        self.0.as_deref().unwrap_or(&NO_RARE_EVIDENCE)
    }
}

impl PartialEq for Rare {
    fn eq(&self, other: &Rare) -> bool {
        self.get() == other.get()
    }
}

impl Eq for Rare {}

impl std::fmt::Debug for Rare {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.get().fmt(f)
    }
}

impl std::ops::Deref for Evidence {
    type Target = RareEvidence;

    fn deref(&self) -> &RareEvidence {
        self.rare.get()
    }
}

impl std::ops::DerefMut for Evidence {
    /// Allocates the rare part: write only what is to be counted.
    fn deref_mut(&mut self) -> &mut RareEvidence {
        self.rare.0.get_or_insert_with(Box::default)
    }
}

impl Evidence {
    /// `self` with `rare` as its rare part.
    #[must_use]
    pub fn with_rare(mut self, rare: RareEvidence) -> Evidence {
        self.rare.0 = (rare != NO_RARE_EVIDENCE).then(|| Box::new(rare));
        self
    }

    /// The evidence of a silence judged at `at`: the peer's open zero-window
    /// run counted up to `at`.
    #[must_use]
    pub fn closed_at(mut self, at: Timestamp) -> Evidence {
        // Read first: a write would allocate the rare part.
        if let Some(since) = self.peer_zero_since {
            self.peer_zero_since = None;
            if at > since {
                self.peer_zero_window_time = Span(self.peer_zero_window_time.0 + at.since(since).0);
            }
        }
        self
    }
}

/// A new TCP connection seen near a client's resumption (the mod_wsgi wake-up signature).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wakeup {
    /// Who opened it.
    pub from: Endpoint,
    /// To where (on the client host for an inbound request).
    pub to: Endpoint,
    /// When its SYN was seen.
    pub at: Timestamp,
    /// How long before the client resumed.
    pub before_resume: Span,
}

/// A silence longer than the limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// Direction that was silent.
    pub dir: Direction,
    /// Role of the silent side.
    pub silent: Role,
    /// Last new byte before the silence.
    pub start: Timestamp,
    /// When the silence ended (or the capture/now).
    pub end: Timestamp,
    /// How it ended.
    pub ended_by: SilenceEnd,
    /// The heartbeat timeout it was judged against.
    pub limit: Span,
    /// The decided cause.
    pub cause: Cause,
    /// What the wire showed.
    pub evidence: Evidence,
    /// A new connection to the client's host just before it resumed.
    pub wakeup: Option<Wakeup>,
    /// Frames the silent side sent within the burst window after resuming.
    pub resume_burst_frames: u32,
    /// When the broker cut the connection during the silence, the client's
    /// next connection to the same broker: (its SYN time, its endpoint).
    pub resumed: Option<(Timestamp, Endpoint)>,
}

impl Gap {
    /// Length of the silence.
    #[must_use]
    pub fn silence(&self) -> Span {
        self.end.since(self.start)
    }

    /// Silence divided by the limit.
    #[must_use]
    pub fn ratio(&self) -> f64 {
        if self.limit.0 <= 0 {
            return 0.0;
        }
        self.silence().as_secs_f64() / self.limit.as_secs_f64()
    }
}

/// Decides the cause of a silence of the `silent` side, `silence` long and
/// judged against `limit`, from its evidence (closed with
/// [`Evidence::closed_at`]).
///
/// Order matters; the rules are numbered as in docs/heartbeat-model.md and
/// the first that matches decides:
/// 1. capture loss inside the silence (bytes of the silent side the capture
///    missed: acknowledged by the peer, or skipped by its resumed data;
///    libpcap drops, or a live capture that failed while it was open):
///    `capture-loss`, no stall is claimed from missing data;
/// 2. the silent side retransmitted and nothing it sent was acknowledged
///    afterwards: `peer-unreachable`;
/// 3. the peer retransmitted and the silent side acknowledged nothing after
///    that (and advertised no zero window): `peer-unreachable`;
/// 4. the peer's data went unacknowledged through two retransmission
///    timeouts (no zero window): `peer-unreachable`;
/// 5. the silent side's own numbers show it sent during the silence what
///    this capture point never saw (its FIN, RST or next sequence number
///    beyond the last byte seen, its IPv4 ID jumping): `capture-loss`;
/// 6. the client was silent while the broker had it blocked
///    (Connection.Blocked, and its zero window), and what is left of the
///    silence outside the blocked time is within the limit: `broker-blocked`;
/// 7. the peer advertised a zero window and what is left of the silence
///    outside the zero-window time is within the limit: the silent side
///    could not send, the silence is the receiver's (the peer's stall);
/// 8. a live kernel (ACKs advancing over the peer's data, or a zero window)
///    with a silent application: the silent side's process stalled;
/// 9. capture loss in the other direction during the silence: `capture-loss`;
/// 10. anything else: `unknown`.
///
/// Rules 2-4 come before the stall rule because an ACK proves that a host is
/// alive, not that its packets get through. Rule 5 comes after them because
/// bytes sent and not seen may have been lost on the way before the capture
/// point: then the path explains the silence. Rules 6-7 come before the
/// stall rule because TCP cannot send into a zero window: a silent side
/// whose peer's window was closed sends at most window probes, however
/// healthy it is.
#[must_use]
pub fn decide(ev: &Evidence, silent: Role, silence: Span, limit: Span) -> Cause {
    if ev.capture_missed_bytes > 0 || ev.capture_drops > 0 || ev.capture_failed.is_some() {
        return Cause::CaptureLoss;
    }
    // Checked before the stall rule: a kernel that ACKs proves the host is
    // alive, not that its packets get through. With one-way loss the silent
    // side's ACKs (or the peer's) are seen, yet its data never arrives.
    if ev.sender_retransmissions > 0 && ev.peer_acks_after_sender_retransmission == 0 {
        // The silent side's TCP retransmitted and nothing it sent was
        // acknowledged afterwards: new data could not go out.
        return Cause::PeerUnreachable;
    }
    if ev.peer_retransmissions > 0
        && ev.sender_acks_after_peer_retransmission == 0
        && ev.sender_zero_windows == 0
    {
        // The peer retransmitted and the silent side never acknowledged
        // anything after that: its host, or the path from it, was gone.
        return Cause::PeerUnreachable;
    }
    if ev.peer_retransmissions >= 2 && ev.sender_zero_windows == 0 {
        // The peer's data went unacknowledged through two retransmission
        // timeouts. A stalled process's kernel ACKs within the delayed-ACK
        // time, so this silence was the path's (or the host's), even if ACKs
        // came back before the silence ended.
        return Cause::PeerUnreachable;
    }
    if ev.unseen_sent_bytes > 0 || ev.unseen_sent_packets > 0 {
        // The silent side was not silent: it sent what this capture point
        // never saw, and no retransmission says the path lost it.
        return Cause::CaptureLoss;
    }
    // The time the silent side could have sent: the silence outside the
    // peer's zero window (TCP sends no new data into it) and, for a client,
    // outside the broker's Blocked (RabbitMQ reads nothing from a blocked
    // publisher and does not check its heartbeats). Only if that is still
    // longer than the limit is the silence the silent side's own.
    let within = |excused: Span| silence.0.saturating_sub(excused.0) <= limit.0;
    if silent == Role::Client
        && ev.blocked_time.0 > 0
        && within(ev.blocked_time.max(ev.peer_zero_window_time))
    {
        return Cause::BrokerBlocked;
    }
    if ev.peer_zero_windows > 0 && within(ev.peer_zero_window_time) {
        // The receiver's window stayed closed: its application was not
        // reading. The silence is the receiver's stall.
        return match silent {
            Role::Client => Cause::BrokerStall,
            Role::Broker => Cause::ClientStall,
        };
    }
    if ev.sender_acks_advancing > 0 || ev.sender_zero_windows > 0 {
        return match silent {
            Role::Client => Cause::ClientStall,
            Role::Broker => Cause::BrokerStall,
        };
    }
    if ev.peer_capture_missed_bytes > 0 {
        return Cause::CaptureLoss;
    }
    Cause::Unknown
}

/// Whether the cause was decided by the receiver's zero window (rule 7 of
/// [`decide`]): the silence is a consequence of the peer's stall.
#[must_use]
pub fn receiver_window_decided(ev: &Evidence, silent: Role, cause: Cause) -> bool {
    ev.peer_zero_windows > 0
        && match silent {
            Role::Client => cause == Cause::BrokerStall,
            Role::Broker => cause == Cause::ClientStall,
        }
}
