//! Reports: the stable JSON schema (docs/report-schema.md) and the text view.
//!
//! A [`Report`] is built once from a finished (or snapshotted) [`Engine`] and
//! then rendered; rendering never looks at the engine again. Timestamps are
//! RFC 3339 with nanoseconds in UTC; this module is the only one using `chrono`.
//! Nothing here can print the SASL response: the analysis never had it.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::amqp::{PropValue, Properties};
use crate::analysis::{Connection, Gap, Role, RoleSource};
use crate::engine::Engine;
use crate::model::{Direction, Timestamp};

/// Version of the JSON schema; bumped on incompatible changes.
pub const SCHEMA_VERSION: u32 = 1;

/// Formats a capture timestamp as RFC 3339 UTC with nanoseconds.
#[must_use]
pub fn rfc3339(ts: Timestamp) -> String {
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(secs, nanos).map_or_else(
        || format!("{}ns", ts.0),
        |d| d.to_rfc3339_opts(SecondsFormat::Nanos, true),
    )
}

/// Time of day with milliseconds, for compact text.
#[must_use]
pub fn clock(ts: Timestamp) -> String {
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .map_or_else(|| "?".into(), |d| d.format("%H:%M:%S%.3f").to_string())
}

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
    /// merged verdict per silence ([`crate::merge`]); absent for one file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<crate::merge::MergeReport>,
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
    /// AMQP connections.
    pub connections: usize,
    /// Connections with at least one gap.
    pub flagged_connections: usize,
    /// Gaps.
    pub gaps: usize,
    /// Gaps per cause name.
    pub gaps_by_cause: BTreeMap<String, usize>,
}

impl Summary {
    /// "N flagged, N gap(s)" plus ": cause N, ..." when there are gaps, as the
    /// text report and the TUI header say it.
    #[must_use]
    pub fn gaps_text(&self) -> String {
        let causes: Vec<String> = self
            .gaps_by_cause
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        let mut t = format!("{} flagged, {} gap(s)", self.flagged_connections, self.gaps);
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
    pub source: &'static str,
    /// Broker's proposal (Connection.Tune).
    pub broker_proposed_s: Option<u16>,
    /// Client's answer (Connection.Tune-Ok).
    pub negotiated_s: Option<u16>,
    /// Value inferred from the idle heartbeat period.
    pub inferred_s: Option<u16>,
}

/// How the connection ended.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EndedReport {
    /// "client" | "broker" | null (still open at capture end).
    pub by: Option<&'static str>,
    /// "close" | "fin" | "rst" | "capture-end".
    pub how: &'static str,
    /// When.
    pub at: Option<String>,
    /// Connection.Close reply code when `how` is "close".
    pub reply_code: Option<u16>,
    /// Connection.Close reply text.
    pub reply_text: Option<String>,
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
    pub by: &'static str,
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
}

/// One gap.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct GapReport {
    /// "client-to-broker" | "broker-to-client".
    pub direction: &'static str,
    /// "client" | "broker".
    pub silent_side: &'static str,
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
    /// "data" | "fin" | "rst" | "capture-end" | "open".
    pub ended_by: &'static str,
    /// "client-stall" | "broker-stall" | "peer-unreachable" | "capture-loss" | "unknown".
    pub cause: &'static str,
    /// "broker-reset" | "broker-closed" | "client-closed" | "survived" | "capture-ended".
    pub consequence: &'static str,
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
    pub merged_cause: Option<&'static str>,
}

/// The process that owns one end of a connection (live capture on that host).
#[derive(Debug, Clone, Serialize, PartialEq)]
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
}

/// One thread of the silent process during a silence.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ThreadReport {
    /// Thread id.
    pub tid: i32,
    /// Thread name (`comm`).
    pub name: String,
    /// One state letter per sample during the silence (S, R, D, T, t, Z, X = gone).
    pub state_samples: String,
    /// CPU seconds (user + system) used during the silence.
    pub cpu_s: f64,
}

/// What the silent side's process was doing during a silence (live only).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ProcessReport {
    /// "client" | "broker": whose process this is.
    pub side: &'static str,
    /// "blocked-idle" | "busy" | "stopped" | "io-wait" | "exited" |
    /// "undetermined" | "not-attributable".
    pub verdict: &'static str,
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
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub threads: Vec<ThreadReport>,
}

impl ProcessReport {
    /// A report with a side, verdict and reason and no samples yet.
    #[must_use]
    pub fn unsampled(side: &'static str, verdict: &'static str, reason: String) -> Self {
        ProcessReport {
            side,
            verdict,
            reason,
            pid: None,
            command: None,
            connection_name: None,
            state_samples: None,
            sampled_s: None,
            cpu_s_during_silence: None,
            cpu_share: None,
            voluntary_ctxt_switches: None,
            nonvoluntary_ctxt_switches: None,
            socket_rx_queue_max: None,
            socket_tx_queue_max: None,
            threads: Vec::new(),
        }
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
    pub roles_from: &'static str,
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
    pub state: &'static str,
    /// How it ended.
    pub ended: EndedReport,
    /// Per direction counters.
    pub directions: BTreeMap<&'static str, DirectionReport>,
    /// Connection.Close and Channel.Close seen.
    pub closes: Vec<CloseReport>,
    /// Connection.Blocked / Unblocked: (time, blocked?).
    pub blocked: Vec<(String, bool)>,
    /// Protocol problems.
    pub violations: Vec<String>,
    /// Gaps.
    pub gaps: Vec<GapReport>,
    /// Gaps beyond the per-connection cap (counted, not listed).
    pub gaps_not_listed: u64,
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
    pub heartbeat_record_len_from: Option<&'static str>,
    /// Alert records seen.
    pub alerts: u32,
}

fn dir_name(conn: &Connection, dir: Direction) -> &'static str {
    match conn.role_of(dir) {
        Role::Client => "client-to-broker",
        Role::Broker => "broker-to-client",
    }
}

fn secs(ns: i64) -> f64 {
    // Keep reports stable: nanosecond precision, no float noise past it.
    #[allow(clippy::cast_precision_loss)]
    let v = ns as f64 / 1e9;
    (v * 1e9).round() / 1e9
}

fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

/// Builds the gap's report entry.
#[must_use]
pub fn gap_report(conn: &Connection, g: &Gap) -> GapReport {
    let e = &g.evidence;
    GapReport {
        direction: dir_name(conn, g.dir),
        silent_side: g.silent.as_str(),
        start: rfc3339(g.start),
        end: rfc3339(g.end),
        silence_s: secs(g.silence().0),
        limit_s: secs(g.limit.0),
        ratio: round3(g.ratio()),
        ended_by: g.ended_by.as_str(),
        cause: g.cause.as_str(),
        consequence: conn.consequence(g).as_str(),
        evidence: conn.evidence_lines(g),
        counts: EvidenceCounts {
            peer_new_segments: e.peer_new_segments,
            peer_heartbeats: e.peer_heartbeats,
            peer_retransmissions: e.peer_retransmissions,
            peer_packets: e.peer_packets,
            silent_side_retransmissions: e.sender_retransmissions,
            silent_side_acks_advancing: e.sender_acks_advancing,
            silent_side_acks_after_peer_retransmission: e.sender_acks_after_peer_retransmission,
            peer_acks_after_silent_side_retransmission: e.peer_acks_after_sender_retransmission,
            silent_side_packets: e.sender_packets,
            silent_side_min_window: e.sender_min_window,
            silent_side_zero_windows: e.sender_zero_windows,
            capture_missed_bytes: e.capture_missed_bytes,
            peer_capture_missed_bytes: e.peer_capture_missed_bytes,
            capture_drops: e.capture_drops,
        },
        resume_burst_frames: g.resume_burst_frames,
        wakeup: g.wakeup.map(|w| WakeupReport {
            from: w.from.to_string(),
            to: w.to.to_string(),
            at: rfc3339(w.at),
            before_resume_s: secs(w.before_resume.0),
        }),
        resumed: g.resumed.map(|(at, from)| ResumedReport {
            at: rfc3339(at),
            from: from.to_string(),
        }),
        process: None,
        merged_cause: None,
    }
}

fn server_subset(p: &Properties) -> Properties {
    p.iter()
        .filter(|(k, _)| {
            matches!(
                k.as_str(),
                "product" | "version" | "platform" | "cluster_name"
            )
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The report's `state` of a connection that ended `how`, `by` whom:
/// "open" | "closed" | "reset-by-broker" | "reset-by-client".
#[must_use]
pub fn state_name(how: crate::analysis::EndHow, by: Option<Role>) -> &'static str {
    match (how, by) {
        (crate::analysis::EndHow::CaptureEnd, _) => "open",
        (crate::analysis::EndHow::Rst, Some(Role::Broker)) => "reset-by-broker",
        (crate::analysis::EndHow::Rst, _) => "reset-by-client",
        _ => "closed",
    }
}

/// Builds one connection's report entry.
#[must_use]
pub fn connection_report(id: usize, conn: &Connection) -> ConnectionReport {
    let (value, source) = conn.heartbeat();
    let (how, by, at) = conn.ended();
    let close = conn
        .closes
        .iter()
        .find(|c| c.channel == 0 && Some(c.at) == at);
    let state = state_name(how, by);
    let mut directions = BTreeMap::new();
    for dir in [Direction::AtoB, Direction::BtoA] {
        let d = &conn.dirs[dir.index()];
        directions.insert(
            dir_name(conn, dir),
            DirectionReport {
                bytes: d.bytes,
                frames: d.frames,
                heartbeats: d.heartbeats,
                retransmissions: d.retransmissions,
                missed_bytes: d.missed_bytes,
                snaplen_cut_bytes: d.snaplen_bytes,
                overflow_skipped_bytes: d.overflow_bytes,
                longest_silence_s: secs(d.longest_silence.0),
                longest_data_silence_s: secs(d.longest_data_silence.0),
            },
        );
    }
    ConnectionReport {
        id,
        client: conn.client().to_string(),
        broker: conn.broker().to_string(),
        client_name: conn.client_name(),
        roles_from: match conn.role_source {
            RoleSource::ProtocolHeader => "protocol-header",
            RoleSource::ConnectionStart => "connection-start",
            RoleSource::Port => "port",
        },
        first_seen: rfc3339(conn.first_seen),
        last_seen: rfc3339(conn.last_seen),
        joined_mid_stream: conn.joined_mid_stream,
        heartbeat: HeartbeatReport {
            value_s: value,
            source: source.as_str(),
            broker_proposed_s: conn.handshake.tune.map(|t| t.2),
            negotiated_s: conn.handshake.tune_ok.map(|t| t.2),
            inferred_s: conn.inferred_heartbeat,
        },
        frame_max: conn.handshake.tune_ok.or(conn.handshake.tune).map(|t| t.1),
        vhost: conn.handshake.vhost.as_deref().map(str::to_owned),
        client_properties: conn.handshake.client_properties.clone(),
        server_properties: conn
            .handshake
            .server_properties
            .as_deref()
            .map(server_subset),
        auth_mechanism: conn.handshake.mechanism.as_deref().map(str::to_owned),
        state,
        ended: EndedReport {
            by: by.map(Role::as_str),
            how: how.as_str(),
            at: at.map(rfc3339),
            reply_code: close.map(|c| c.info.reply_code),
            reply_text: close.map(|c| c.info.reply_text.clone()),
        },
        directions,
        closes: conn
            .closes
            .iter()
            .map(|c| CloseReport {
                at: rfc3339(c.at),
                by: c.by.as_str(),
                channel: c.channel,
                reply_code: c.info.reply_code,
                reply_text: c.info.reply_text.clone(),
            })
            .collect(),
        blocked: conn
            .blocked
            .iter()
            .map(|(t, b)| (rfc3339(*t), *b))
            .collect(),
        violations: conn.violations.clone(),
        gaps: conn.gaps.iter().map(|g| gap_report(conn, g)).collect(),
        gaps_not_listed: conn.gaps_dropped,
        tls: conn.tls.as_ref().map(|t| TlsReport {
            version: t.version.map(crate::tls::version_name),
            cipher: t.cipher.map(|c| format!("0x{c:04x}")),
            sni: t.sni.clone(),
            alpn: t.alpn.clone(),
            heartbeat_record_len: t.heartbeat_record_len,
            heartbeat_record_len_from: t.heartbeat_record_len.map(|_| {
                if t.heartbeat_len_from_cipher {
                    "cipher"
                } else {
                    "dominant-size"
                }
            }),
            alerts: t.alerts,
        }),
        unavailable: if conn.tls.is_some() {
            vec![
                "client_properties",
                "server_properties",
                "tune",
                "close_reply_codes",
                "frame_types",
            ]
        } else {
            Vec::new()
        },
        client_process: None,
        broker_process: None,
    }
}

/// Builds the report from an engine (finished, or live snapshot).
#[must_use]
pub fn build(engine: &Engine, source: &str, complete: bool) -> Report {
    let conns = sorted_connections(engine);
    let mut report = head(engine, source, complete, &conns);
    report.connections = conns
        .into_iter()
        .enumerate()
        .map(|(i, conn)| connection_report(i + 1, conn))
        .collect();
    report
}

/// The confirmed connections in report order: by first packet, whatever
/// order they were recognised in.
fn sorted_connections(engine: &Engine) -> Vec<&Connection> {
    let mut conns: Vec<&Connection> = engine.connections().collect();
    conns.sort_by_key(|c| (c.first_seen, c.key));
    conns
}

/// The report without its connection entries (the summary counts them).
fn head(engine: &Engine, source: &str, complete: bool, conns: &[&Connection]) -> Report {
    let c = engine.counters();
    let mut gaps_by_cause = BTreeMap::new();
    for g in conns.iter().flat_map(|c| c.gaps.iter()) {
        *gaps_by_cause
            .entry(g.cause.as_str().to_owned())
            .or_insert(0) += 1;
    }
    let summary = Summary {
        connections: conns.len(),
        flagged_connections: conns.iter().filter(|c| !c.gaps.is_empty()).count(),
        gaps: conns.iter().map(|c| c.gaps.len()).sum(),
        gaps_by_cause,
    };
    Report {
        schema_version: SCHEMA_VERSION,
        tool: ToolInfo {
            name: "hbscope",
            version: env!("CARGO_PKG_VERSION"),
        },
        capture: CaptureFacts {
            source: source.to_owned(),
            link_type: engine.link().name(),
            packets: c.packets,
            wire_bytes: c.wire_bytes,
            truncated_packets: c.truncated_packets,
            non_tcp_packets: c.non_tcp_packets,
            decode_errors: c.decode_errors,
            dropped_packets: c.dropped,
            first_packet: c.first.map(rfc3339),
            last_packet: c.last.map(rfc3339),
            duration_s: match (c.first, c.last) {
                (Some(a), Some(b)) => Some(secs(b.since(a).0)),
                _ => None,
            },
            complete,
            warnings: engine
                .warnings()
                .iter()
                .map(|w| WarningReport {
                    code: w.code.to_owned(),
                    message: w.message.clone(),
                    count: w.count,
                })
                .collect(),
        },
        summary,
        connections: Vec::new(),
        merge: None,
    }
}

/// Writes the JSON report of `engine` to `w` one connection entry at a time:
/// the same bytes as [`write_json`] of [`build`], without ever holding all
/// the entries (about 1.5 KB each) next to the engine. Returns the summary.
///
/// # Errors
/// Any write error, wrapped by serde_json.
pub fn write_json_streamed<W: std::io::Write>(
    engine: &Engine,
    source: &str,
    complete: bool,
    w: W,
) -> Result<Summary, serde_json::Error> {
    write_json_threads(engine, source, complete, 1, w)
}

/// Connection entries written per block in [`write_json_threads`].
const ENTRY_BLOCK: usize = 512;

/// As [`write_json_streamed`], with the connection entries turned into text
/// by `threads` threads (each a block of entries at a time; at most two
/// blocks per thread wait to be written, so memory stays bounded) while
/// this one writes them in order: the same bytes for any `threads`.
///
/// # Errors
/// Any write error, wrapped by serde_json.
pub fn write_json_threads<W: std::io::Write>(
    engine: &Engine,
    source: &str,
    complete: bool,
    threads: usize,
    mut w: W,
) -> Result<Summary, serde_json::Error> {
    let conns = sorted_connections(engine);
    let head = head(engine, source, complete, &conns);
    // The report without entries, cut where they go: between the brackets
    // of the top-level `"connections": []` (its key is unescaped only there).
    let outline = serde_json::to_string_pretty(&head)?;
    const EMPTY: &str = "\n  \"connections\": []";
    let cut = outline
        .find(EMPTY)
        .map(|at| at + EMPTY.len() - 1)
        .ok_or_else(|| {
            serde_json::Error::io(std::io::Error::other("report outline without connections"))
        })?;
    let (before, after) = outline.split_at(cut);
    let io = serde_json::Error::io;
    w.write_all(before.as_bytes()).map_err(io)?;
    let blocks: Vec<&[&Connection]> = conns.chunks(ENTRY_BLOCK).collect();
    let threads = threads.clamp(1, 8).min(blocks.len().max(1));
    if threads <= 1 {
        let mut buf = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            buf.clear();
            entries_text(block, b * ENTRY_BLOCK, &mut buf)?;
            w.write_all(&buf).map_err(io)?;
        }
    } else {
        std::thread::scope(|scope| -> Result<(), serde_json::Error> {
            let blocks = &blocks;
            let receivers: Vec<_> = (0..threads)
                .map(|t| {
                    let (tx, rx) = std::sync::mpsc::sync_channel(2);
                    scope.spawn(move || {
                        for b in (t..blocks.len()).step_by(threads) {
                            let mut buf = Vec::new();
                            let r =
                                entries_text(blocks[b], b * ENTRY_BLOCK, &mut buf).map(|()| buf);
                            let failed = r.is_err();
                            if tx.send(r).is_err() || failed {
                                return;
                            }
                        }
                    });
                    rx
                })
                .collect();
            for b in 0..blocks.len() {
                let Some(rx) = receivers.get(b % threads) else {
                    break;
                };
                let buf = rx
                    .recv()
                    .map_err(|_| io(std::io::Error::other("a report thread stopped")))??;
                w.write_all(&buf).map_err(io)?;
            }
            Ok(())
        })?;
    }
    if !conns.is_empty() {
        w.write_all(b"\n  ").map_err(io)?;
    }
    w.write_all(after.as_bytes()).map_err(io)?;
    w.write_all(b"\n").map_err(io)?;
    w.flush().map_err(io)?;
    Ok(head.summary)
}

/// Appends the entries of `conns` (numbered from `skip + 1`) as they appear
/// inside the report's `connections` array, each with the separator before it.
fn entries_text(
    conns: &[&Connection],
    skip: usize,
    buf: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    for (k, conn) in conns.iter().enumerate() {
        let id = skip + k + 1;
        buf.extend_from_slice(if id == 1 { b"\n    " } else { b",\n    " });
        let mut ser = serde_json::Serializer::with_formatter(&mut *buf, Nested::at(2));
        connection_report(id, conn).serialize(&mut ser)?;
    }
    Ok(())
}

/// serde_json's pretty printing (two-space indent) of a value that sits
/// `level` levels deep in a pretty-printed document: the same bytes as the
/// value has there.
struct Nested {
    level: usize,
    has_value: bool,
}

impl Nested {
    fn at(level: usize) -> Self {
        Nested {
            level,
            has_value: false,
        }
    }

    fn newline_indent<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        // One write for the usual depths (an entry is at most ~8 deep).
        const LINE: &[u8; 33] = b"\n                                ";
        match LINE.get(..1 + 2 * self.level) {
            Some(s) => w.write_all(s),
            None => {
                w.write_all(b"\n")?;
                for _ in 0..self.level {
                    w.write_all(b"  ")?;
                }
                Ok(())
            }
        }
    }
}

impl Nested {
    /// `[` or `{`: one level deeper, nothing in it yet.
    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// `]` or `}`, on a line of its own when something was in it.
    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level = self.level.saturating_sub(1);
        if self.has_value {
            self.newline_indent(w)?;
        }
        w.write_all(bracket)
    }

    /// Before an array value or an object key: a comma after the first, a new line.
    fn item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline_indent(w)
    }
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Renders the report as pretty JSON.
///
/// # Errors
/// Only if serialisation fails, which the report's types do not allow in practice.
pub fn to_json(report: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

/// Writes the JSON report (as [`to_json`], plus a final newline) straight to
/// `w`, without building the text in memory (20 MB for 10,000 connections).
///
/// # Errors
/// Any write error, wrapped by serde_json.
pub fn write_json<W: std::io::Write>(report: &Report, mut w: W) -> Result<(), serde_json::Error> {
    serde_json::to_writer_pretty(&mut w, report)?;
    w.write_all(b"\n").map_err(serde_json::Error::io)?;
    w.flush().map_err(serde_json::Error::io)
}

fn prop_text(p: &Properties, key: &str) -> Option<String> {
    match p.get(key) {
        Some(PropValue::Text(t)) => Some(t.clone()),
        Some(PropValue::Int(i)) => Some(i.to_string()),
        _ => None,
    }
}

/// One line about a gap's process verdict, for text output.
#[must_use]
pub fn process_text(p: &ProcessReport) -> String {
    let mut o = String::new();
    if let (Some(pid), Some(cmd)) = (p.pid, &p.command) {
        let _ = write!(o, "{} pid {pid} ({cmd}) ", p.side);
    } else {
        let _ = write!(o, "{} ", p.side);
    }
    let _ = write!(o, "{}: {}", p.verdict, p.reason);
    if let Some(s) = &p.state_samples {
        let _ = write!(o, "; states {s}");
    }
    if let Some(rx) = p.socket_rx_queue_max.filter(|v| *v > 0) {
        let _ = write!(o, "; {rx} unread bytes in its socket");
    }
    o
}

/// Renders the report as text for a terminal or a ticket.
#[must_use]
pub fn to_text(report: &Report) -> String {
    let mut o = String::new();
    let c = &report.capture;
    let _ = writeln!(
        o,
        "hbscope {} - {} ({}, {} packets{}{})",
        report.tool.version,
        c.source,
        c.link_type,
        c.packets,
        c.duration_s
            .map_or(String::new(), |d| format!(", {d:.3} s")),
        c.first_packet
            .as_ref()
            .map_or(String::new(), |f| format!(", from {f}")),
    );
    if !c.complete {
        let _ = writeln!(
            o,
            "warning: the capture file is cut short; reporting what was read"
        );
    }
    for w in &c.warnings {
        let times = if w.count > 1 {
            format!(" (x{})", w.count)
        } else {
            String::new()
        };
        let _ = writeln!(o, "warning: {}{times}", w.message);
    }
    let s = &report.summary;
    let _ = writeln!(o, "{} AMQP connection(s), {}", s.connections, s.gaps_text());
    if report.connections.is_empty() {
        let _ = writeln!(
            o,
            "no AMQP 0-9-1 traffic found: hbscope looks at TCP ports 5672 (AMQP) and 5671 (AMQPS) and for the \
             AMQP protocol header on any port; add other ports with --port / --tls-port"
        );
    }
    for conn in &report.connections {
        let _ = writeln!(o);
        let name = conn
            .client_name
            .clone()
            .unwrap_or_else(|| "(no client properties in capture)".into());
        let _ = writeln!(
            o,
            "[{}] {} -> {}  {}",
            conn.id, conn.client, conn.broker, name
        );
        if let Some(p) = &conn.client_properties {
            let bits: Vec<String> = ["product", "version", "platform"]
                .iter()
                .filter_map(|k| prop_text(p, k).map(|v| format!("{k}={v}")))
                .collect();
            if !bits.is_empty() {
                let _ = writeln!(o, "    client: {}", bits.join(" "));
            }
        }
        if let Some(t) = &conn.tls {
            let _ = writeln!(
                o,
                "    tls: version {} cipher {}{}; heartbeat record {} bytes{}",
                t.version.as_deref().unwrap_or("?"),
                t.cipher.as_deref().unwrap_or("?"),
                t.sni
                    .as_ref()
                    .map_or(String::new(), |s| format!(" sni {s}")),
                t.heartbeat_record_len
                    .map_or("?".to_owned(), |l| l.to_string()),
                t.heartbeat_record_len_from
                    .map_or(String::new(), |f| format!(" (from {f})")),
            );
        }
        for (side, p) in [
            ("client", &conn.client_process),
            ("broker", &conn.broker_process),
        ] {
            if let Some(p) = p {
                let _ = writeln!(o, "    {side} process: pid {} ({})", p.pid, p.command);
            }
        }
        let hb = &conn.heartbeat;
        let hb_text = match hb.value_s {
            Some(0) => "disabled (0): silences are never flagged".to_owned(),
            Some(v) => format!("{v} s"),
            None => {
                "unknown (no Tune in capture and no steady heartbeat period; use --heartbeat SECS)"
                    .into()
            }
        };
        let mut extra = Vec::new();
        if let Some(p) = hb.broker_proposed_s {
            extra.push(format!("broker proposed {p}"));
        }
        if let Some(n) = hb.negotiated_s {
            extra.push(format!("client answered {n}"));
        }
        let _ = writeln!(
            o,
            "    heartbeat: {hb_text} [{}{}]",
            hb.source,
            if extra.is_empty() {
                String::new()
            } else {
                format!("; {}", extra.join(", "))
            }
        );
        let ended = &conn.ended;
        let end_text = match (ended.how, ended.by) {
            ("capture-end", _) => "still open at the end of the capture".to_owned(),
            ("close", Some(by)) => format!(
                "{by} sent Connection.Close {} {}",
                ended.reply_code.map_or(String::new(), |c| c.to_string()),
                ended.reply_text.clone().unwrap_or_default()
            ),
            ("fin", Some(by)) => format!("{by} closed the socket (FIN) without Connection.Close"),
            ("rst", Some(by)) => {
                format!("{by} reset the connection (RST) without Connection.Close")
            }
            (how, _) => how.to_owned(),
        };
        let _ = writeln!(
            o,
            "    ended: {end_text}{}",
            ended
                .at
                .as_ref()
                .map_or(String::new(), |a| format!(" at {a}"))
        );
        for (name, d) in &conn.directions {
            let _ = writeln!(
                o,
                "    {name}: {} bytes, {} frames, {} heartbeats, {} retransmissions, longest silence {:.3} s",
                d.bytes, d.frames, d.heartbeats, d.retransmissions, d.longest_silence_s
            );
        }
        for v in conn.violations.iter().take(5) {
            let _ = writeln!(o, "    protocol: {v}");
        }
        if conn.gaps.is_empty() {
            let _ = writeln!(o, "    no gaps");
        }
        for (i, g) in conn.gaps.iter().enumerate() {
            let _ = writeln!(
                o,
                "    gap {}: {} silent {:.3} s (limit {} s, {:.1}x) from {} to {}, ended by {}",
                i + 1,
                g.direction,
                g.silence_s,
                g.limit_s,
                g.ratio,
                g.start,
                g.end,
                g.ended_by
            );
            let _ = writeln!(
                o,
                "      cause: {}   consequence: {}",
                g.cause, g.consequence
            );
            for line in &g.evidence {
                let _ = writeln!(o, "      - {line}");
            }
            if let Some(p) = &g.process {
                let _ = writeln!(o, "      process: {}", process_text(p));
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_keeps_nanoseconds() {
        assert_eq!(
            rfc3339(Timestamp(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000000Z");
    }

    #[test]
    fn secs_is_exact_to_the_nanosecond() {
        assert!((secs(11_987_654_321) - 11.987_654_321).abs() < 1e-12);
    }
}
