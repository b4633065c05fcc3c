//! Building a [`Report`] from the engine: one entry per connection, one per gap.

use std::collections::BTreeMap;

use crate::os::procinfo::{ProcessOwner, ProcessVerdict, ThreadActivity};

use super::*;
use crate::analysis::{receiver_window_decided, RoleDirection};

fn dir_name(conn: &Connection, dir: Direction) -> RoleDirection {
    conn.role_of(dir).sends()
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
        silent_side: g.silent,
        start: rfc3339(g.start),
        end: rfc3339(g.end),
        silence_s: secs(g.silence().0),
        limit_s: secs(g.limit.0),
        ratio: round3(g.ratio()),
        ended_by: g.ended_by,
        cause: g.cause,
        consequence_of: if receiver_window_decided(e, g.silent, g.cause) {
            // The receiver's own gap overlapping this one.
            conn.gaps()
                .iter()
                .position(|h| h.dir == g.dir.reverse() && h.start < g.end && g.start < h.end)
        } else {
            None
        },
        consequence: conn.consequence(g),
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
            peer_zero_windows: e.peer_zero_windows,
            peer_zero_window_s: secs(e.peer_zero_window_time.0),
            blocked_s: secs(e.blocked_time.0),
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

/// Builds one connection's report entry.
#[must_use]
pub fn connection_report(id: usize, conn: &Connection) -> ConnectionReport {
    let (value, source) = conn.heartbeat();
    let (how, by, at) = conn.ended();
    let close = conn
        .closes()
        .iter()
        .find(|c| c.channel == 0 && Some(c.at) == at);
    let state = ConnectionState::of(how, by);
    let middlebox = conn.middlebox_suspected();
    let mut directions = BTreeMap::new();
    for dir in [Direction::AtoB, Direction::BtoA] {
        let d = conn.dir(dir);
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
        roles_from: conn.role_source(),
        first_seen: rfc3339(conn.first_seen()),
        last_seen: rfc3339(conn.last_seen()),
        joined_mid_stream: conn.joined_mid_stream(),
        heartbeat: HeartbeatReport {
            value_s: value,
            source,
            broker_proposed_s: conn.handshake().tune.map(|t| t.2),
            negotiated_s: conn.handshake().tune_ok.map(|t| t.2),
            inferred_s: conn.inferred_heartbeat(),
        },
        frame_max: conn
            .handshake()
            .tune_ok
            .or(conn.handshake().tune)
            .map(|t| t.1),
        vhost: conn.handshake().vhost.as_deref().map(str::to_owned),
        client_properties: conn.handshake().client_properties.clone(),
        server_properties: conn
            .handshake()
            .server_properties
            .as_deref()
            .map(server_subset),
        auth_mechanism: conn.handshake().mechanism.as_deref().map(str::to_owned),
        state,
        ended: EndedReport {
            by: if middlebox.is_some() {
                Some(EndedBy::MiddleboxSuspected)
            } else {
                by.map(EndedBy::from)
            },
            how,
            at: at.map(rfc3339),
            reply_code: close.map(|c| c.info.reply_code),
            reply_text: close.map(|c| c.info.reply_text.clone()),
            seen_from: middlebox.map(|m| m.seen_from),
            reason: middlebox.map(|m| m.reason()),
            idle_period_s: middlebox.map(|m| secs(m.idle.0)),
            idle_timeout_s: middlebox.map(|m| m.idle_timeout_s()),
            advice: middlebox.map(|m| m.advice()),
        },
        directions,
        closes: conn
            .closes()
            .iter()
            .map(|c| CloseReport {
                at: rfc3339(c.at),
                by: c.by,
                channel: c.channel,
                reply_code: c.info.reply_code,
                reply_text: c.info.reply_text.clone(),
            })
            .collect(),
        blocked: conn
            .blocked()
            .iter()
            .map(|e| (rfc3339(e.at), e.blocked))
            .collect(),
        blocked_events: conn
            .blocked()
            .iter()
            .map(|e| BlockedEventReport {
                at: rfc3339(e.at),
                event: if e.blocked { "blocked" } else { "unblocked" },
                reason: e.reason.as_deref().map(str::to_owned),
            })
            .collect(),
        violations: conn.violations().to_vec(),
        gaps: conn.gaps().iter().map(|g| gap_report(conn, g)).collect(),
        gaps_not_listed: conn.gaps_dropped(),
        tls: conn.tls().map(|t| TlsReport {
            version: t.version.map(crate::proto::tls::version_name),
            cipher: t.cipher.map(|c| format!("0x{c:04x}")),
            sni: t.sni.clone(),
            alpn: t.alpn.clone(),
            heartbeat_record_len: t.heartbeat_record_len,
            heartbeat_record_len_from: t.heartbeat_record_len.map(|_| {
                if t.heartbeat_len_from_cipher {
                    RecordLenFrom::Cipher
                } else {
                    RecordLenFrom::DominantSize
                }
            }),
            alerts: t.alerts,
        }),
        unavailable: if conn.tls().is_some() {
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
pub(super) fn sorted_connections(engine: &Engine) -> Vec<&Connection> {
    let mut conns: Vec<&Connection> = engine.connections().collect();
    conns.sort_by_key(|c| (c.first_seen(), c.key()));
    conns
}

/// The report without its connection entries (the summary counts them).
pub(super) fn head(engine: &Engine, source: &str, complete: bool, conns: &[&Connection]) -> Report {
    let c = engine.counters();
    let mut gaps_by_cause = BTreeMap::new();
    for g in conns.iter().flat_map(|c| c.gaps().iter()) {
        *gaps_by_cause
            .entry(g.cause.as_str().to_owned())
            .or_insert(0) += 1;
    }
    let summary = Summary {
        connections: conns.len(),
        flagged_connections: conns.iter().filter(|c| !c.gaps().is_empty()).count(),
        gaps: conns.iter().map(|c| c.gaps().len()).sum(),
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

// What the host told about processes (`os::procinfo`), as report entries: the
// one place where those types become report types.

impl From<&ProcessOwner> for ProcessOwnerReport {
    fn from(o: &ProcessOwner) -> Self {
        ProcessOwnerReport {
            pid: o.pid,
            command: o.command.clone(),
            cmdline: o.cmdline.clone(),
            uid: o.uid,
        }
    }
}

impl From<&ThreadActivity> for ThreadReport {
    fn from(t: &ThreadActivity) -> Self {
        ThreadReport {
            tid: t.tid,
            name: t.name.clone(),
            state_samples: t.state_samples.clone(),
            cpu_s: t.cpu_s,
        }
    }
}

impl ProcessReport {
    /// The report entry of `side`'s process verdict.
    #[must_use]
    pub fn new(side: Role, p: ProcessVerdict) -> Self {
        ProcessReport {
            side,
            verdict: p.verdict,
            reason: p.reason,
            pid: p.pid,
            command: p.command,
            connection_name: p.connection_name,
            state_samples: p.state_samples,
            sampled_s: p.sampled_s,
            cpu_s_during_silence: p.cpu_s_during_silence,
            cpu_share: p.cpu_share,
            voluntary_ctxt_switches: p.voluntary_ctxt_switches,
            nonvoluntary_ctxt_switches: p.nonvoluntary_ctxt_switches,
            socket_rx_queue_max: p.socket_rx_queue_max,
            socket_tx_queue_max: p.socket_tx_queue_max,
            threads: p.threads.iter().map(ThreadReport::from).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secs_is_exact_to_the_nanosecond() {
        assert!((secs(11_987_654_321) - 11.987_654_321).abs() < 1e-12);
    }
}
