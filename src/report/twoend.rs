//! The two-ended part of a report (the `merge` object): plain data types,
//! filled in by `run::twoend`.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::analysis::{display_as_str, Cause, Consequence, Role, RoleDirection};

/// Which end of the connection a capture was taken at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CaptureSide {
    /// At the client.
    Client,
    /// At the broker.
    Broker,
    /// Not detected.
    Unknown,
}

impl CaptureSide {
    /// `Unknown` for `None`.
    #[must_use]
    pub fn of(role: Option<Role>) -> Self {
        match role {
            Some(Role::Client) => CaptureSide::Client,
            Some(Role::Broker) => CaptureSide::Broker,
            None => CaptureSide::Unknown,
        }
    }

    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            CaptureSide::Client => "client",
            CaptureSide::Broker => "broker",
            CaptureSide::Unknown => "unknown",
        }
    }
}

/// A merged verdict: a single-capture cause both ends agree on, or a loss
/// only two captures can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergedCause {
    /// [`Cause::ClientStall`].
    ClientStall,
    /// [`Cause::BrokerStall`].
    BrokerStall,
    /// [`Cause::PeerUnreachable`].
    PeerUnreachable,
    /// [`Cause::BrokerBlocked`].
    BrokerBlocked,
    /// [`Cause::CaptureLoss`].
    CaptureLoss,
    /// [`Cause::Unknown`].
    Unknown,
    /// Packets left one capture point and never reached the other.
    LostInNetwork,
}

impl From<Cause> for MergedCause {
    fn from(c: Cause) -> Self {
        match c {
            Cause::ClientStall => MergedCause::ClientStall,
            Cause::BrokerStall => MergedCause::BrokerStall,
            Cause::PeerUnreachable => MergedCause::PeerUnreachable,
            Cause::BrokerBlocked => MergedCause::BrokerBlocked,
            Cause::CaptureLoss => MergedCause::CaptureLoss,
            Cause::Unknown => MergedCause::Unknown,
        }
    }
}

impl MergedCause {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MergedCause::ClientStall => Cause::ClientStall.as_str(),
            MergedCause::BrokerStall => Cause::BrokerStall.as_str(),
            MergedCause::PeerUnreachable => Cause::PeerUnreachable.as_str(),
            MergedCause::BrokerBlocked => Cause::BrokerBlocked.as_str(),
            MergedCause::CaptureLoss => Cause::CaptureLoss.as_str(),
            MergedCause::Unknown => Cause::Unknown.as_str(),
            MergedCause::LostInNetwork => "lost-in-network",
        }
    }
}

/// Which rule decided a merged verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MergeBasis {
    /// A capture missed bytes: missing packets prove nothing.
    CaptureLoss,
    /// Packets seen leaving one end never reached the other.
    LostPackets,
    /// The silent side's own capture shows it never sent.
    NeverSent,
    /// The new bytes were sent and received: the silence is at the window's edges.
    SentAndReceived,
    /// Only one capture covers the silence.
    OneCapture,
}

impl MergeBasis {
    /// Report name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            MergeBasis::CaptureLoss => "capture-loss",
            MergeBasis::LostPackets => "lost-packets",
            MergeBasis::NeverSent => "never-sent",
            MergeBasis::SentAndReceived => "sent-and-received",
            MergeBasis::OneCapture => "one-capture",
        }
    }
}

display_as_str!(CaptureSide, MergedCause, MergeBasis);

/// Per capture and per direction, what a window of time shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WindowCounts {
    /// Packets from the silent side.
    pub silent_side_packets: u32,
    /// Of them, segments with new data (first time this capture saw the range).
    pub silent_side_new_segments: u32,
    /// Bytes of that new data.
    pub silent_side_new_bytes: u64,
    /// Of them, segments re-sending data.
    pub silent_side_retransmissions: u32,
    /// Packets from the other side.
    pub peer_packets: u32,
}

/// The numbers behind a merged verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct MergedCounts {
    /// What the silent side's own capture shows during the silence.
    pub at_silent_side: WindowCounts,
    /// What the other side's capture shows during the silence.
    pub at_peer_side: WindowCounts,
    /// Packets of the silent side seen leaving at its own capture and never
    /// seen at the peer's capture.
    pub lost_from_silent_side: u32,
    /// Of them, packets with new data.
    pub lost_new_segments: u32,
    /// Packets of the peer seen leaving at its own capture and never seen at
    /// the silent side's capture.
    pub lost_from_peer: u32,
    /// Packets seen downstream that the upstream capture did not see (capture
    /// loss at the upstream capture point).
    pub seen_only_downstream: u32,
}

/// One file's verdict on a silence.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SingleVerdict {
    /// The file.
    pub file: String,
    /// "client" | "broker" | "unknown": where it was captured.
    pub side: CaptureSide,
    /// 1-based gap number in that file's connection.
    pub gap: usize,
    /// Start, in that file's own clock.
    pub start: String,
    /// End, in that file's own clock.
    pub end: String,
    /// Silence in seconds.
    pub silence_s: f64,
    /// The file's single-capture cause.
    pub cause: Cause,
    /// The file's consequence.
    pub consequence: Consequence,
}

/// One silence with its merged verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedGapReport {
    /// "client-to-broker" | "broker-to-client".
    pub direction: RoleDirection,
    /// "client" | "broker".
    pub silent_side: Role,
    /// Start of the silence as the receiving side's capture saw it (the
    /// silent side's capture when only it has the gap), in the reference clock.
    pub start: String,
    /// End of that silence, in the reference clock.
    pub end: String,
    /// Silence in seconds (end - start).
    pub silence_s: f64,
    /// Heartbeat timeout in seconds.
    pub limit_s: f64,
    /// "lost-in-network" or a single-capture cause confirmed by both ends.
    pub merged_cause: MergedCause,
    /// Which rule decided: "capture-loss" | "lost-packets" | "never-sent" |
    /// "sent-and-received" | "one-capture".
    pub basis: MergeBasis,
    /// Consequence (from the peer side's file when it has the gap).
    pub consequence: Consequence,
    /// What each capture shows, and the conclusion, as lines.
    pub seen_at: Vec<String>,
    /// The numbers behind the lines.
    pub counts: MergedCounts,
    /// Each file's own verdict on this silence (one or two entries).
    pub single: Vec<SingleVerdict>,
}

/// A connection found in both files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergedConnectionReport {
    /// Client "ip:port".
    pub client: String,
    /// Broker "ip:port".
    pub broker: String,
    /// connection_name, else product.
    pub client_name: Option<String>,
    /// Its id in each file's report, by file.
    pub ids: BTreeMap<String, usize>,
    /// One entry per silence.
    pub gaps: Vec<MergedGapReport>,
}

/// A connection found in only one file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UnmatchedReport {
    /// Its id in that file's report.
    pub id: usize,
    /// Client "ip:port".
    pub client: String,
    /// Broker "ip:port".
    pub broker: String,
    /// Its gaps (single-capture verdicts only).
    pub gaps: usize,
}

/// One input file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceReport {
    /// The path.
    pub file: String,
    /// "client" | "broker" | "unknown": which end it was captured at.
    pub side: CaptureSide,
    /// Link type name.
    pub link_type: String,
    /// Packets read.
    pub packets: u64,
    /// First packet, in its own clock.
    pub first_packet: Option<String>,
    /// Last packet, in its own clock.
    pub last_packet: Option<String>,
    /// AMQP connections in it.
    pub connections: usize,
    /// Gaps in it (single-capture verdicts).
    pub gaps: usize,
    /// Connections that are not in the other file.
    pub unmatched: Vec<UnmatchedReport>,
    /// False when the file was cut short.
    pub complete: bool,
}

/// The clock offset as reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ClockOffsetReport {
    /// The file whose clock is measured.
    pub of: String,
    /// The reference file.
    pub relative_to: String,
    /// `t_of = t_relative_to + estimate_s`.
    pub estimate_s: f64,
    /// Lowest offset compatible with all matched segments.
    pub low_s: Option<f64>,
    /// Highest offset compatible with all matched segments.
    pub high_s: Option<f64>,
    /// Half of high - low.
    pub uncertainty_s: Option<f64>,
    /// Estimated one-way delay between the two capture points.
    pub one_way_delay_s: Option<f64>,
    /// Matched client-to-broker segments.
    pub samples_client_to_broker: usize,
    /// Matched broker-to-client segments.
    pub samples_broker_to_client: usize,
}

/// Totals over merged verdicts.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeSummary {
    /// Connections found in both files.
    pub matched_connections: usize,
    /// Merged silences (one per silence, whichever file showed it).
    pub gaps: usize,
    /// Merged silences per merged cause.
    pub gaps_by_merged_cause: BTreeMap<String, usize>,
}

/// The two-ended part of a report (the `merge` object).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MergeReport {
    /// The file whose clock all merged times use (the first file).
    pub reference: String,
    /// Both inputs, first file first.
    pub sources: Vec<SourceReport>,
    /// The second file's clock relative to the first.
    pub clock_offset: ClockOffsetReport,
    /// Totals.
    pub summary: MergeSummary,
    /// Connections in both files, with their merged silences.
    pub connections: Vec<MergedConnectionReport>,
    /// Things the reader should know (side not detected, log cap hit, ...).
    pub warnings: Vec<String>,
}
