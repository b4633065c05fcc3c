//! The report's plain data types: what docs/report-schema.md documents.
//! They depend on nothing above the analysis; `build` fills them in.

use std::collections::BTreeMap;

use serde::Serialize;

use super::*;
use crate::analysis::{
    display_as_str, Cause, Consequence, EndHow, HeartbeatSource, RoleDirection, SilenceEnd,
};
pub use crate::os::procinfo::Activity;
pub use crate::os::threads::DiagnosisKind;

/// Version of the JSON schema; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// The whole report.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Report {
    /// Schema version ([`SCHEMA_VERSION`]).
    pub schema_version: u32,
    /// The tool that wrote it.
    pub tool: ToolInfo,
    /// Facts about the capture.
    pub capture: CaptureFacts,
    /// Counts over all connections.
    pub summary: Summary,
    /// AMQP 0-9-1 connections, in order of first packet.
    pub connections: Vec<ConnectionReport>,
    /// Two-ended replay only: the second capture, the clock offset and one
    /// merged verdict per silence ([`crate::run::twoend`]); absent for one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergeReport>,
    /// `--broker-log` only: the RabbitMQ log as a whole (files, clock offset,
    /// alarms, connections only the log names); absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_log: Option<BrokerLogReport>,
}

/// One RabbitMQ log entry (a timestamped line with its continuation lines).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogLineReport {
    /// Its time as the log wrote it (the broker's clock), RFC 3339 UTC.
    pub at: String,
    /// The same instant in the capture's clock (`at` minus the estimated
    /// log-to-capture offset); absent when no offset could be estimated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture_time: Option<String>,
    /// "info", "warning", "error", ... as logged.
    pub level: String,
    /// The message, continuation lines joined with a space.
    pub text: String,
}

/// A connection's lines in the broker log.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnectionLogReport {
    /// The broker's Erlang process for the connection, e.g. "<0.880.0>".
    pub process: String,
    /// All its lines, in log order.
    pub lines: Vec<LogLineReport>,
}

/// A connection the log names that no capture connection matched.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LogOnlyConnectionReport {
    /// Client "ip:port" as the log names it.
    pub client: String,
    /// Broker "ip:port" as the log names it.
    pub broker: String,
    /// The broker's Erlang process.
    pub process: String,
    /// Its lines.
    pub lines: Vec<LogLineReport>,
}

/// The broker log joined to the capture (`--broker-log`).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BrokerLogReport {
    /// The log files read.
    pub files: Vec<String>,
    /// log time - capture time in seconds: the median over the joined
    /// connections of (the log's first line of a connection - its first
    /// packet); absent when no connection was joined.
    pub clock_offset_s: Option<f64>,
    /// Capture connections found in the log.
    pub joined_connections: usize,
    /// Lines about the broker as a whole: memory and disk alarms set and
    /// cleared, blocked connections.
    pub alarms: Vec<LogLineReport>,
    /// Connections the log names that are not in the capture.
    pub log_only: Vec<LogOnlyConnectionReport>,
}

/// The wire events of one connection kept for drawing its timeline: only
/// when the engine recorded them (the HTML report; at most
/// [`crate::analysis::timeline::Timeline::CAP`] per direction, the most
/// recent). Not part of the JSON report: the JSON has the counts.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WireMarks {
    /// Client-to-broker events, oldest first.
    pub client_to_broker: Vec<crate::analysis::timeline::TimelineEvent>,
    /// Broker-to-client events, oldest first.
    pub broker_to_client: Vec<crate::analysis::timeline::TimelineEvent>,
    /// Older events not kept (client-to-broker, broker-to-client).
    pub forgotten: (u64, u64),
}

/// Tool name and version.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ToolInfo {
    /// "hbscope".
    pub name: &'static str,
    /// Crate version.
    pub version: &'static str,
}

/// Facts about the input.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CaptureFacts {
    /// File path, "-" for stdin, or interface name.
    pub source: String,
    /// Link type name (EN10MB, LINUX_SLL2, ...).
    pub link_type: String,
    /// Packets read.
    pub packets: u64,
    /// Bytes on the wire.
    pub wire_bytes: u64,
    /// Packets cut by the snapshot length.
    pub truncated_packets: u64,
    /// Packets that were not TCP.
    pub non_tcp_packets: u64,
    /// Packets that could not be decoded.
    pub decode_errors: u64,
    /// Second copies of packets dropped before analysis (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub duplicate_packets: u64,
    /// Packets stamped out of time order (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub disordered_timestamps: u64,
    /// Flows dropped at the flow cap before they showed AMQP (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub evicted_flows: u64,
    /// Times a flow gave up its buffers to the memory budget (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub memory_shed_flows: u64,
    /// Packets that were fragments of IP datagrams carrying TCP, put back
    /// together before analysis (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub ip_fragments: u64,
    /// Packets dropped by the kernel (live capture only; null for files).
    pub dropped_packets: Option<u64>,
    /// First packet time.
    pub first_packet: Option<String>,
    /// Last packet time.
    pub last_packet: Option<String>,
    /// Seconds between first and last packet.
    pub duration_s: Option<f64>,
    /// False when the input ended in the middle of a record (file cut short).
    pub complete: bool,
    /// Warnings about the input.
    pub warnings: Vec<WarningReport>,
}

/// One warning.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WarningReport {
    /// Stable code.
    pub code: String,
    /// Message (first occurrence).
    pub message: String,
    /// Occurrences.
    pub count: u64,
}

/// Totals.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    /// AMQP connections (those in `ended_not_listed` included).
    pub connections: usize,
    /// Connections with at least one gap (those in `ended_not_listed` included).
    pub flagged_connections: usize,
    /// Gaps (of the connections in `ended_not_listed` too).
    pub gaps: usize,
    /// Gaps per cause name (of the connections in `ended_not_listed` too).
    pub gaps_by_cause: BTreeMap<String, usize>,
    /// Heartbeat health over the listed connections, and per client name.
    pub heartbeat_health: HealthSummary,
    /// Live capture: ended connections no longer kept in full (`--keep-ended`),
    /// counted instead of listed; absent when every connection is listed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ended_not_listed: Option<EndedNotListed>,
}

/// Ended connections a long live capture counted instead of listing
/// (`hbscope live --keep-ended`): once an ended connection has left the live
/// table and more than that many are kept, the oldest, those without gaps
/// first, are folded into these counts.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndedNotListed {
    /// All of them.
    #[serde(flatten)]
    pub total: EndedCounts,
    /// Ended connections were kept in full for this many seconds after
    /// their last packet (while the live table shows them)...
    pub kept_in_full_s: f64,
    /// ...and past that, at most this many (`--keep-ended`).
    pub keep_ended: u64,
    /// Their gaps per cause name.
    pub gaps_by_cause: BTreeMap<String, u64>,
    /// By client host and broker, most connections first (at most 256
    /// pairs are counted apart; the rest are in `other_clients`).
    pub by_client: Vec<EndedPairReport>,
    /// Connections of the pairs past the first 256, when there were any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_clients: Option<EndedCounts>,
}

/// Counts of ended connections that are not listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndedCounts {
    /// Connections.
    pub connections: u64,
    /// Of them, connections with at least one gap.
    pub flagged_connections: u64,
    /// Their gaps.
    pub gaps: u64,
    /// Earliest first packet (RFC 3339, UTC).
    pub first_packet: Option<String>,
    /// Latest last packet (RFC 3339, UTC).
    pub last_packet: Option<String>,
}

/// One client host's ended connections to one broker that are not listed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndedPairReport {
    /// The client's address (its ports differ from connection to connection).
    pub client_host: String,
    /// The broker, "ip:port".
    pub broker: String,
    /// What was counted.
    #[serde(flatten)]
    pub counts: EndedCounts,
}

/// Heartbeat health over all connections.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct HealthSummary {
    /// Connections with heartbeats disabled (0).
    pub disabled_connections: usize,
    /// Connections whose heartbeat value is unknown.
    pub unknown_connections: usize,
    /// Near-misses over all connections and directions.
    pub near_misses: u64,
    /// Connections with at least one near-miss.
    pub connections_with_near_misses: usize,
    /// Connections whose end is `middlebox-suspected`.
    pub middlebox_suspected: usize,
    /// One entry per client program (the client name up to its first ':',
    /// as `--summary` groups), in name order, unnamed clients last; only
    /// clients with something to report (heartbeats disabled, gaps,
    /// near-misses or a suspected middlebox).
    pub by_client: Vec<ClientHealthReport>,
}

/// Heartbeat health of the connections of one client program.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ClientHealthReport {
    /// The client name (connection_name, else product) up to its first ':'
    /// (oslo.messaging's `argv0:pid:uuid` groups by program); null when the
    /// capture has neither.
    pub client: Option<String>,
    /// Connections.
    pub connections: usize,
    /// Distinct heartbeat timeouts, in seconds (0 = disabled), sorted.
    pub heartbeat_s: Vec<u16>,
    /// Connections with heartbeats disabled.
    pub disabled: usize,
    /// Gaps.
    pub gaps: usize,
    /// Near-misses.
    pub near_misses: u64,
    /// Largest longest-silence / timeout over its connections and directions.
    pub worst_margin: Option<f64>,
    /// Smallest idle timeout estimated from `middlebox-suspected` ends.
    pub middlebox_idle_timeout_s: Option<u64>,
    /// A heartbeat timeout that fits what was observed, when something calls for one.
    pub recommended_heartbeat_s: Option<u16>,
    /// Why (null without a recommendation).
    pub recommendation: Option<String>,
}

impl ClientHealthReport {
    /// An entry for `client` with nothing counted yet.
    #[must_use]
    pub fn empty(client: Option<String>) -> Self {
        ClientHealthReport {
            client,
            connections: 0,
            heartbeat_s: Vec::new(),
            disabled: 0,
            gaps: 0,
            near_misses: 0,
            worst_margin: None,
            middlebox_idle_timeout_s: None,
            recommended_heartbeat_s: None,
            recommendation: None,
        }
    }
}

/// Whether a connection's heartbeats kept it healthy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum HealthStatus {
    /// Every silence stayed below 3/4 of the timeout.
    Ok,
    /// No gap, but silences of at least 3/4 of the timeout.
    NearMiss,
    /// At least one gap.
    Gap,
    /// Heartbeats disabled (0).
    Disabled,
    /// The heartbeat value is unknown.
    Unknown,
}

impl HealthStatus {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            HealthStatus::Ok => "ok",
            HealthStatus::NearMiss => "near-miss",
            HealthStatus::Gap => "gap",
            HealthStatus::Disabled => "disabled",
            HealthStatus::Unknown => "unknown",
        }
    }
}

/// Heartbeat health of one connection, gap or not.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthReport {
    /// "ok" | "near-miss" | "gap" | "disabled" | "unknown".
    pub status: HealthStatus,
    /// The idle send interval each side should keep: timeout / 2 (omitted
    /// when disabled or unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expected_interval_s: Option<f64>,
    /// A silence at least this long is a near-miss: 0.75 x the timeout
    /// (omitted when disabled or unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub near_miss_threshold_s: Option<f64>,
    /// Per direction.
    pub directions: HealthDirections,
    /// Still open at the end of the capture with the client silent for at
    /// least the near-miss threshold: when RabbitMQ would cut it for missed
    /// heartbeats (absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_kill_window: Option<KillWindowReport>,
}

/// [`DirectionHealth`] of both directions: serialised as the map
/// `{"broker-to-client": .., "client-to-broker": ..}` (a struct, not a
/// `BTreeMap`: a map's node would cost ~1 KB per connection in a report).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HealthDirections {
    /// The broker's direction.
    #[serde(rename = "broker-to-client")]
    pub broker_to_client: DirectionHealth,
    /// The client's direction.
    #[serde(rename = "client-to-broker")]
    pub client_to_broker: DirectionHealth,
}

impl HealthDirections {
    /// The health of `dir`.
    #[must_use]
    pub fn get(&self, dir: RoleDirection) -> &DirectionHealth {
        match dir {
            RoleDirection::BrokerToClient => &self.broker_to_client,
            RoleDirection::ClientToBroker => &self.client_to_broker,
        }
    }

    /// Both, in name order (as the JSON lists them).
    pub fn iter(&self) -> impl Iterator<Item = (RoleDirection, &DirectionHealth)> {
        [RoleDirection::BrokerToClient, RoleDirection::ClientToBroker]
            .into_iter()
            .map(move |d| (d, self.get(d)))
    }
}

/// Heartbeat health of one direction.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DirectionHealth {
    /// Intervals measured between consecutive heartbeat frames (nothing
    /// else between; omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub heartbeat_intervals: u64,
    /// Their mean, in seconds (omitted without any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_mean_s: Option<f64>,
    /// The longest of them (omitted without any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub heartbeat_interval_max_s: Option<f64>,
    /// Mean interval / expected interval (1.0 = on time; omitted without
    /// intervals or a timeout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cadence_ratio: Option<f64>,
    /// Longest silence, however it ended.
    pub longest_silence_s: f64,
    /// Longest silence / timeout (>= 1 is a gap; omitted when disabled or unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub margin: Option<f64>,
    /// Silences ended by data of at least 0.75 x the timeout, not over it
    /// (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub near_misses: u64,
    /// The first 16 of them (omitted when empty).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub near_miss_list: Vec<NearMissReport>,
}

/// One near-miss.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct NearMissReport {
    /// Last new byte before it.
    pub start: String,
    /// The next new byte.
    pub end: String,
    /// Seconds.
    pub silence_s: f64,
    /// silence / timeout.
    pub ratio: f64,
}

/// When RabbitMQ would cut a client silent at the end of the capture.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct KillWindowReport {
    /// The client's last new byte.
    pub client_silent_since: String,
    /// Its silence when the capture ended, in seconds.
    pub client_silence_at_end_s: f64,
    /// 2 timeouts after the last byte: the earliest cut.
    pub from: String,
    /// 3 timeouts after: the latest.
    pub to: String,
}

impl Summary {
    /// "N flagged, N gaps" plus ": cause N, ..." when there are gaps, as the
    /// text report and the TUI header say it.
    #[must_use]
    pub fn gaps_text(&self) -> String {
        let causes: Vec<String> = self
            .gaps_by_cause
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let mut t = format!(
            "{} flagged, {}",
            self.flagged_connections,
            count(self.gaps as u64, "gap", "gaps")
        );
        if !causes.is_empty() {
            t.push_str(": ");
            t.push_str(&causes.join(", "));
        }
        t
    }
}

/// Heartbeat facts of a connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct HeartbeatReport {
    /// The timeout in seconds used for gaps (0 = disabled), null when unknown.
    pub value_s: Option<u16>,
    /// "tune-ok" | "tune" | "inferred" | "override" | "unknown".
    pub source: HeartbeatSource,
    /// Broker's proposal (Connection.Tune).
    pub broker_proposed_s: Option<u16>,
    /// Client's answer (Connection.Tune-Ok).
    pub negotiated_s: Option<u16>,
    /// Value inferred from the idle heartbeat period.
    pub inferred_s: Option<u16>,
}

/// Who ended the connection, in the report's `ended.by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EndedBy {
    /// The client (its Close, FIN or RST came first).
    Client,
    /// The broker.
    Broker,
    /// A FIN or RST that only a middlebox's idle timeout explains
    /// ([`crate::analysis::Connection::middlebox_suspected`]); `seen_from`
    /// says which side it came from.
    MiddleboxSuspected,
}

impl EndedBy {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Client => "client",
            EndedBy::Broker => "broker",
            EndedBy::MiddleboxSuspected => "middlebox-suspected",
        }
    }
}

impl From<Role> for EndedBy {
    fn from(r: Role) -> Self {
        match r {
            Role::Client => EndedBy::Client,
            Role::Broker => EndedBy::Broker,
        }
    }
}

/// How the connection ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndedReport {
    /// "client" | "broker" | "middlebox-suspected" | null (still open at capture end).
    pub by: Option<EndedBy>,
    /// "close" | "fin" | "rst" | "port-reused" | "capture-end".
    pub how: EndHow,
    /// When.
    pub at: Option<String>,
    /// Connection.Close reply code when `how` is "close".
    pub reply_code: Option<u16>,
    /// Connection.Close reply text.
    pub reply_text: Option<String>,
    /// Middlebox suspected: the side the FIN or RST came from, as captured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seen_from: Option<Role>,
    /// Middlebox suspected: why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Middlebox suspected: seconds both directions were idle before the end.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_period_s: Option<f64>,
    /// Middlebox suspected: its idle timeout as estimated (whole seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub idle_timeout_s: Option<u64>,
    /// Middlebox suspected: what to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
}

/// Per-direction counters.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct DirectionReport {
    /// New bytes sent.
    pub bytes: u64,
    /// AMQP frames.
    pub frames: u64,
    /// Heartbeat frames.
    pub heartbeats: u64,
    /// Retransmitted segments.
    pub retransmissions: u64,
    /// Bytes the capture never saw.
    pub missed_bytes: u64,
    /// Bytes cut by the snapshot length.
    pub snaplen_cut_bytes: u64,
    /// Bytes whose content hbscope skipped because its out-of-order cap was hit.
    pub overflow_skipped_bytes: u64,
    /// Longest silence in seconds, however it ended.
    pub longest_silence_s: f64,
    /// Longest silence between two new-data segments, in seconds.
    pub longest_data_silence_s: f64,
}

/// A Connection.Close / Channel.Close.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CloseReport {
    /// When.
    pub at: String,
    /// "client" | "broker".
    pub by: Role,
    /// 0 for Connection.Close.
    pub channel: u16,
    /// Reply code.
    pub reply_code: u16,
    /// Reply text.
    pub reply_text: String,
}

/// The wake-up connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WakeupReport {
    /// "ip:port" that opened it.
    pub from: String,
    /// "ip:port" it went to.
    pub to: String,
    /// When its SYN was seen.
    pub at: String,
    /// Seconds before the client resumed.
    pub before_resume_s: f64,
}

/// The client's next connection after the broker cut this one.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ResumedReport {
    /// When its SYN was seen.
    pub at: String,
    /// "ip:port" of the new connection's client side.
    pub from: String,
}

/// Evidence counts behind a verdict.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EvidenceCounts {
    /// Peer segments with new data during the silence.
    pub peer_new_segments: u32,
    /// Peer heartbeat frames.
    pub peer_heartbeats: u32,
    /// Peer retransmissions.
    pub peer_retransmissions: u32,
    /// Any packets from the peer.
    pub peer_packets: u32,
    /// Silent side's own retransmissions.
    pub silent_side_retransmissions: u32,
    /// Silent side's ACKs advancing over the peer's data.
    pub silent_side_acks_advancing: u32,
    /// Of those, the ones after the peer's first retransmission.
    pub silent_side_acks_after_peer_retransmission: u32,
    /// Peer ACKs advancing over the silent side's data after its first retransmission.
    pub peer_acks_after_silent_side_retransmission: u32,
    /// Any packets from the silent side.
    pub silent_side_packets: u32,
    /// Silent side's smallest advertised window.
    pub silent_side_min_window: Option<u32>,
    /// Silent side's zero-window segments.
    pub silent_side_zero_windows: u32,
    /// Bytes of the silent side the capture missed.
    pub capture_missed_bytes: u64,
    /// Bytes of the peer the capture missed.
    pub peer_capture_missed_bytes: u64,
    /// Packets the capture dropped.
    pub capture_drops: u64,
    /// Bytes the silent side's own later numbers (FIN, RST, next sequence
    /// number) show it sent and this capture never saw (absent when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub unseen_sent_bytes: u64,
    /// Packets the silent side's IPv4 IDs show it sent and this capture
    /// never saw (absent when 0).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub unseen_sent_packets: u32,
    /// Peer segments advertising a zero window during the silence (absent when 0).
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub peer_zero_windows: u32,
    /// Seconds of the silence during which the peer's window was zero (absent when 0).
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub peer_zero_window_s: f64,
    /// Seconds of the silence during which the broker had the client blocked
    /// (Connection.Blocked; absent when 0).
    #[serde(skip_serializing_if = "is_zero_f64")]
    pub blocked_s: f64,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

/// One gap.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GapReport {
    /// "client-to-broker" | "broker-to-client".
    pub direction: RoleDirection,
    /// "client" | "broker".
    pub silent_side: Role,
    /// Last new byte before the silence.
    pub start: String,
    /// End of the silence.
    pub end: String,
    /// Silence in seconds.
    pub silence_s: f64,
    /// Heartbeat timeout in seconds.
    pub limit_s: f64,
    /// silence / limit.
    pub ratio: f64,
    /// "data" | "fin" | "rst" | "capture-end" | "port-reused" | "open".
    pub ended_by: SilenceEnd,
    /// "client-stall" | "broker-stall" | "peer-unreachable" | "broker-blocked" |
    /// "capture-loss" | "unknown".
    pub cause: Cause,
    /// When the silence was the receiver's zero window: the 0-based index in
    /// this connection's `gaps` of the receiver's own gap it is a consequence
    /// of (absent otherwise, or when the receiver had no gap).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub consequence_of: Option<usize>,
    /// "broker-reset" | "broker-closed" | "client-closed" | "survived" | "capture-ended" |
    /// "port-reused".
    pub consequence: Consequence,
    /// Human evidence lines.
    pub evidence: Vec<String>,
    /// The numbers behind them.
    pub counts: EvidenceCounts,
    /// Frames sent in a burst right after resuming.
    pub resume_burst_frames: u32,
    /// Incoming connection just before the client resumed.
    pub wakeup: Option<WakeupReport>,
    /// Client's next connection after the broker cut this one.
    pub resumed: Option<ResumedReport>,
    /// Live capture only: what the silent side's process was doing during
    /// the silence (absent in replay).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub process: Option<ProcessReport>,
    /// Two-ended replay only: the merged verdict of the silence this gap is
    /// part of (see `merge.connections[].gaps[]`); absent for one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merged_cause: Option<MergedCause>,
    /// `--broker-log` only: the connection's log lines (and broker-wide
    /// alarm lines) stamped, in the capture's clock, from the silence's start
    /// to one heartbeat timeout after its end (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub broker_log: Vec<LogLineReport>,
}

/// The process that owns one end of a connection (live capture on that host).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ProcessOwnerReport {
    /// Process id.
    pub pid: i32,
    /// Command name (`comm`) of the process.
    pub command: String,
    /// Full command line, when readable (bounded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cmdline: Option<String>,
    /// Owner's user id.
    pub uid: u32,
    /// The user id's name in the host's `/etc/passwd`, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// One thread of the silent process during a silence.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ThreadReport {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// One state letter per sample during the silence (S, R, D, T, t, Z, X = gone).
    pub state_samples: String,
    /// CPU seconds (user + system) used during the silence.
    pub cpu_s: f64,
    /// Live, per-thread sampling: the system call it was last seen in during
    /// the silence and what it waits on, e.g. "accept4 on 127.0.0.1:8774
    /// (listening)", "read on FIFO /tmp/x", "running".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// The kernel function it last slept in (`/proc/PID/task/TID/wchan`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wchan: Option<String>,
}

/// Why the silent process left its heartbeats unsent (live only).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct DiagnosisReport {
    /// "blocked-outside-event-loop" | "cpu-bound" | "stopped" | "disk-wait" |
    /// "lock-wait" | "exited" | "unknown".
    pub kind: DiagnosisKind,
    /// One sentence naming the thread, the system call and the descriptor.
    pub detail: String,
    /// The facts it rests on, one per line.
    pub evidence: Vec<String>,
}

/// What the silent side's process was doing during a silence (live only).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ProcessReport {
    /// "client" | "broker": whose process this is.
    pub side: Role,
    /// "blocked-idle" | "busy" | "stopped" | "io-wait" | "exited" |
    /// "undetermined" | "not-attributable".
    pub verdict: Activity,
    /// One sentence: why this verdict, or why there is none.
    pub reason: String,
    /// Process id (absent when not attributable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    /// Command name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// oslo.messaging / client connection_name from Connection.Start-Ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection_name: Option<String>,
    /// One state letter per ~1 s sample of the process during the silence
    /// (S sleeping, R running, D uninterruptible/io, T stopped, t traced,
    /// Z zombie, X gone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_samples: Option<String>,
    /// Wall seconds covered by the samples used for CPU figures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sampled_s: Option<f64>,
    /// CPU seconds (user + system, all threads) used during the silence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_s_during_silence: Option<f64>,
    /// CPU seconds per wall second during the silence (1.0 = one core busy).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_share: Option<f64>,
    /// Voluntary context switches during the silence (main thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub voluntary_ctxt_switches: Option<u64>,
    /// Involuntary context switches during the silence (main thread).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nonvoluntary_ctxt_switches: Option<u64>,
    /// Largest unread byte count in the socket's receive queue during the silence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_rx_queue_max: Option<u32>,
    /// Largest unsent byte count in the socket's send queue during the silence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub socket_tx_queue_max: Option<u32>,
    /// Per-thread samples (at most 16 threads).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadReport>,
    /// Why the process left its heartbeats unsent, from per-thread system
    /// call samples taken while the gap was open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diagnosis: Option<DiagnosisReport>,
    /// `live --py-spy`: `py-spy dump` of the process taken when the gap
    /// opened (its Python stacks, from the "Python v" line on), or why there
    /// is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub py_spy: Option<String>,
    /// Live: what the threads were doing when the gap closed (one sample
    /// taken then, not part of the diagnosis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_close: Option<Box<AtCloseReport>>,
}

/// The process's threads when its gap closed (live only).
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct AtCloseReport {
    /// When the sample was taken.
    pub at: String,
    /// The process was gone.
    pub gone: bool,
    /// One sentence: the thread on the AMQP socket (else a running one, else
    /// the main thread), its state and call, and the other threads' states.
    pub summary: String,
    /// At most 16 threads.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadAtCloseReport>,
}

/// One thread when the gap closed.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct ThreadAtCloseReport {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// State letter: S, R, D, T, t, Z, ...
    pub state: String,
    /// The system call and what it waits on, "running", or why it could not
    /// be read; absent when not in a system call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub syscall: Option<String>,
    /// The kernel function it slept in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wchan: Option<String>,
}

impl ProcessReport {
    /// A report with a side, verdict and reason and no samples yet.
    #[must_use]
    pub fn unsampled(side: Role, verdict: Activity, reason: String) -> Self {
        ProcessReport::new(
            side,
            crate::os::procinfo::ProcessVerdict::unsampled(verdict, reason),
        )
    }
}

/// One AMQP connection.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ConnectionReport {
    /// 1-based id in this report.
    pub id: usize,
    /// Client "ip:port".
    pub client: String,
    /// Broker "ip:port".
    pub broker: String,
    /// connection_name, else product.
    pub client_name: Option<String>,
    /// "protocol-header" | "connection-start" | "port".
    pub roles_from: RoleSource,
    /// First packet.
    pub first_seen: String,
    /// Last packet.
    pub last_seen: String,
    /// No SYN seen.
    pub joined_mid_stream: bool,
    /// Heartbeat.
    pub heartbeat: HeartbeatReport,
    /// Negotiated frame_max.
    pub frame_max: Option<u32>,
    /// Virtual host.
    pub vhost: Option<String>,
    /// Client properties (never the SASL response).
    pub client_properties: Option<Properties>,
    /// Broker properties: product, version, platform, cluster_name.
    pub server_properties: Option<Properties>,
    /// SASL mechanism chosen (the response is never reported).
    pub auth_mechanism: Option<String>,
    /// "open" | "closed" | "reset-by-broker" | "reset-by-client".
    pub state: ConnectionState,
    /// How it ended.
    pub ended: EndedReport,
    /// Heartbeat health, gap or not.
    pub health: HealthReport,
    /// Per direction counters.
    pub directions: BTreeMap<RoleDirection, DirectionReport>,
    /// Connection.Close and Channel.Close seen.
    pub closes: Vec<CloseReport>,
    /// Connection.Blocked / Unblocked: (time, blocked?).
    pub blocked: Vec<(String, bool)>,
    /// Connection.Blocked / Unblocked with the broker's reason (absent when none).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub blocked_events: Vec<BlockedEventReport>,
    /// Protocol problems.
    pub violations: Vec<String>,
    /// Gaps.
    pub gaps: Vec<GapReport>,
    /// Gaps beyond the per-connection cap (counted, not listed; the worst
    /// gaps by ratio and those that ended the connection are listed).
    pub gaps_not_listed: u64,
    /// The causes of the gaps not listed, with their counts (omitted when none).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub gaps_not_listed_by_cause: BTreeMap<&'static str, u64>,
    /// Packets of this connection stamped out of time order: silences across
    /// them were not measured and its verdicts are unreliable (omitted when 0).
    #[serde(skip_serializing_if = "is_zero")]
    pub timestamps_disordered: u64,
    /// The snapshot length cut this connection's segments too short to read
    /// frames: it was found by its TCP stream on an AMQP port, frames and
    /// heartbeats are counted by segment length (an 8-byte segment is a
    /// heartbeat frame), and no method was read (omitted when false).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub frames_cut: bool,
    /// Live capture only: the process owning the client's socket on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_process: Option<ProcessOwnerReport>,
    /// Live capture only: the process owning the broker's socket on this host.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_process: Option<ProcessOwnerReport>,
    /// AMQP over TLS: what the record layer showed; null for plain AMQP.
    pub tls: Option<TlsReport>,
    /// Facts the capture cannot give for this connection (e.g. under TLS).
    pub unavailable: Vec<&'static str>,
    /// `--broker-log` only: the connection's lines in the broker log (absent
    /// when the log does not name it, or without `--broker-log`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broker_log: Option<ConnectionLogReport>,
    /// Wire events for drawing (HTML only; never serialised).
    #[serde(skip)]
    pub marks: Option<WireMarks>,
}

/// A Connection.Blocked or Connection.Unblocked from the broker.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BlockedEventReport {
    /// When.
    pub at: String,
    /// "blocked" | "unblocked".
    pub event: &'static str,
    /// The broker's reason (Blocked only), e.g. "low on memory".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// TLS facts of an AMQPS connection (read without keys).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct TlsReport {
    /// "1.2", "1.3", or null when the ServerHello was not in the capture.
    pub version: Option<String>,
    /// Cipher suite number, e.g. "0x1301".
    pub cipher: Option<String>,
    /// Server name (SNI) from the ClientHello.
    pub sni: Option<String>,
    /// ALPN protocols offered.
    pub alpn: Vec<String>,
    /// Record length that carries one heartbeat frame.
    pub heartbeat_record_len: Option<u16>,
    /// "cipher" (from version and cipher) or "dominant-size" (learned) or null.
    pub heartbeat_record_len_from: Option<RecordLenFrom>,
    /// Alert records seen.
    pub alerts: u32,
}

/// For `skip_serializing_if`: counters that are 0 on clean captures are left
/// out, so reports of clean captures keep their shape.
#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A connection's `state` in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConnectionState {
    /// Still open at the end of the capture.
    Open,
    /// Closed (Connection.Close or FIN).
    Closed,
    /// The broker sent RST.
    ResetByBroker,
    /// The client (or an unknown side) sent RST.
    ResetByClient,
}

impl ConnectionState {
    /// The state of a connection that ended `how`, `by` whom.
    #[must_use]
    pub fn of(how: EndHow, by: Option<Role>) -> Self {
        match (how, by) {
            (EndHow::CaptureEnd, _) => ConnectionState::Open,
            (EndHow::Rst, Some(Role::Broker)) => ConnectionState::ResetByBroker,
            (EndHow::Rst, _) => ConnectionState::ResetByClient,
            _ => ConnectionState::Closed,
        }
    }

    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Open => "open",
            ConnectionState::Closed => "closed",
            ConnectionState::ResetByBroker => "reset-by-broker",
            ConnectionState::ResetByClient => "reset-by-client",
        }
    }
}

/// Where a TLS connection's heartbeat record length came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RecordLenFrom {
    /// Computed from the version and cipher suite.
    Cipher,
    /// Learned as the dominant small record size.
    DominantSize,
}

impl RecordLenFrom {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            RecordLenFrom::Cipher => "cipher",
            RecordLenFrom::DominantSize => "dominant-size",
        }
    }
}

display_as_str!(ConnectionState, RecordLenFrom, EndedBy, HealthStatus);

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Each enum's JSON name (serde) is its `Display` (the text views): the
    /// two spellings can never drift apart.
    fn same<T: Serialize + std::fmt::Display>(values: &[T]) {
        for v in values {
            let json = serde_json::to_value(v).unwrap();
            assert_eq!(json, serde_json::Value::String(v.to_string()));
        }
    }

    #[test]
    fn json_names_are_the_display_names() {
        use crate::analysis::RoleSource;
        same(&[Role::Client, Role::Broker]);
        same(&[RoleDirection::ClientToBroker, RoleDirection::BrokerToClient]);
        same(&[
            RoleSource::ProtocolHeader,
            RoleSource::ConnectionStart,
            RoleSource::Port,
        ]);
        same(&[
            Cause::ClientStall,
            Cause::BrokerStall,
            Cause::PeerUnreachable,
            Cause::BrokerBlocked,
            Cause::CaptureLoss,
            Cause::Unknown,
        ]);
        same(&[
            SilenceEnd::Data,
            SilenceEnd::Fin,
            SilenceEnd::Rst,
            SilenceEnd::CaptureEnd,
            SilenceEnd::PortReused,
            SilenceEnd::Open,
        ]);
        same(&[
            HeartbeatSource::TuneOk,
            HeartbeatSource::Tune,
            HeartbeatSource::Override,
            HeartbeatSource::Inferred,
            HeartbeatSource::Unknown,
        ]);
        same(&[
            EndHow::Close,
            EndHow::Fin,
            EndHow::Rst,
            EndHow::PortReused,
            EndHow::CaptureEnd,
        ]);
        same(&[
            Consequence::BrokerReset,
            Consequence::BrokerClosed,
            Consequence::ClientClosed,
            Consequence::Survived,
            Consequence::CaptureEnded,
            Consequence::PortReused,
        ]);
        same(&[
            ConnectionState::Open,
            ConnectionState::Closed,
            ConnectionState::ResetByBroker,
            ConnectionState::ResetByClient,
        ]);
        same(&[RecordLenFrom::Cipher, RecordLenFrom::DominantSize]);
        same(&[
            HealthStatus::Ok,
            HealthStatus::NearMiss,
            HealthStatus::Gap,
            HealthStatus::Disabled,
            HealthStatus::Unknown,
        ]);
        same(&[
            EndedBy::Client,
            EndedBy::Broker,
            EndedBy::MiddleboxSuspected,
        ]);
        same(&[
            Activity::BlockedIdle,
            Activity::Busy,
            Activity::Stopped,
            Activity::IoWait,
            Activity::Exited,
            Activity::Undetermined,
            Activity::NotAttributable,
        ]);
        same(&[
            CaptureSide::Client,
            CaptureSide::Broker,
            CaptureSide::Unknown,
        ]);
        same(&[
            MergedCause::ClientStall,
            MergedCause::BrokerStall,
            MergedCause::PeerUnreachable,
            MergedCause::BrokerBlocked,
            MergedCause::CaptureLoss,
            MergedCause::Unknown,
            MergedCause::LostInNetwork,
        ]);
        same(&[
            MergeBasis::CaptureLoss,
            MergeBasis::LostPackets,
            MergeBasis::NeverSent,
            MergeBasis::SentAndReceived,
            MergeBasis::OneCapture,
        ]);
    }

    #[test]
    fn directions_map_keeps_name_order() {
        let mut m = BTreeMap::new();
        m.insert(RoleDirection::ClientToBroker, 1);
        m.insert(RoleDirection::BrokerToClient, 2);
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"broker-to-client":2,"client-to-broker":1}"#
        );
    }

    #[test]
    fn connection_state_of_its_end() {
        assert_eq!(
            ConnectionState::of(EndHow::CaptureEnd, None),
            ConnectionState::Open
        );
        assert_eq!(
            ConnectionState::of(EndHow::Rst, Some(Role::Broker)),
            ConnectionState::ResetByBroker
        );
        assert_eq!(
            ConnectionState::of(EndHow::Rst, None),
            ConnectionState::ResetByClient
        );
        assert_eq!(
            ConnectionState::of(EndHow::Fin, Some(Role::Client)),
            ConnectionState::Closed
        );
    }
}
