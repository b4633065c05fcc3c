//! Building a [`Report`] from the engine: one entry per connection, one per gap.

use std::collections::BTreeMap;

use crate::os::procinfo::{ProcessOwner, ProcessVerdict, ThreadActivity};

use super::*;
use crate::analysis::{
    receiver_window_decided, EndHow, RoleDirection, NEAR_MISS_DEN, NEAR_MISS_NUM,
};
use crate::model::Span;

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
            unseen_sent_bytes: e.unseen_sent_bytes,
            unseen_sent_packets: e.unseen_sent_packets,
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
        broker_log: Vec::new(),
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

/// Builds a connection's heartbeat health: cadence, margin and near-misses
/// per direction, and the broker's kill window for a client still silent at
/// the end.
#[must_use]
pub fn health_report(conn: &Connection) -> HealthReport {
    let (value, _) = conn.heartbeat();
    let limit = conn.limit();
    let expected = limit.map(|l| Span(l.0 / 2));
    let one = |role: Role| {
        let d = conn.dir(conn.dir_of(role));
        let cadence = d.heartbeat_cadence();
        let (count, list) = d.near_misses();
        #[allow(clippy::cast_precision_loss)]
        let ratio = |s: Span| limit.map(|l| round3(s.0 as f64 / l.0 as f64));
        DirectionHealth {
            heartbeat_intervals: cadence.map_or(0, |c| c.0),
            heartbeat_interval_mean_s: cadence.map(|c| secs(c.1 .0)),
            heartbeat_interval_max_s: cadence.map(|c| secs(c.2 .0)),
            #[allow(clippy::cast_precision_loss)]
            cadence_ratio: cadence
                .zip(expected)
                .filter(|(_, e)| e.0 > 0)
                .map(|(c, e)| round3(c.1 .0 as f64 / e.0 as f64)),
            longest_silence_s: secs(d.longest_silence.0),
            margin: ratio(d.longest_silence),
            near_misses: count,
            near_miss_list: list
                .iter()
                .map(|(a, b)| NearMissReport {
                    start: rfc3339(*a),
                    end: rfc3339(*b),
                    silence_s: secs(b.since(*a).0),
                    ratio: ratio(b.since(*a)).unwrap_or(0.0),
                })
                .collect(),
        }
    };
    let directions = HealthDirections {
        broker_to_client: one(Role::Broker),
        client_to_broker: one(Role::Client),
    };
    let near = directions.broker_to_client.near_misses + directions.client_to_broker.near_misses;
    let status = match value {
        None => HealthStatus::Unknown,
        Some(0) => HealthStatus::Disabled,
        Some(_) if !conn.gaps().is_empty() => HealthStatus::Gap,
        Some(_) if near > 0 => HealthStatus::NearMiss,
        Some(_) => HealthStatus::Ok,
    };
    let client = conn.dir(conn.dir_of(Role::Client));
    // Only for a silence already worth watching: at least a near-miss long.
    let broker_kill_window = match (conn.ended().0, limit, client.last_data) {
        (EndHow::CaptureEnd, Some(l), Some(last)) => {
            // The capture's end closed the silence (replay), else the last packet.
            let end = conn.last_seen().max(client.last_activity.unwrap_or(last));
            let silent = end.since(last);
            (silent.0.saturating_mul(NEAR_MISS_DEN) >= l.0.saturating_mul(NEAR_MISS_NUM)).then(
                || KillWindowReport {
                    client_silent_since: rfc3339(last),
                    client_silence_at_end_s: secs(silent.0),
                    from: rfc3339(last.plus(Span(l.0 * 2))),
                    to: rfc3339(last.plus(Span(l.0 * 3))),
                },
            )
        }
        _ => None,
    };
    HealthReport {
        status,
        expected_interval_s: expected.map(|e| secs(e.0)),
        near_miss_threshold_s: limit.map(|l| secs(l.0 * NEAR_MISS_NUM / NEAR_MISS_DEN)),
        directions,
        broker_kill_window,
    }
}

/// The heartbeat health rollup: totals and one entry per client name, with
/// a recommended heartbeat where the observed behaviour calls for one.
#[must_use]
pub fn health_summary(conns: &[&Connection]) -> HealthSummary {
    let mut sum = HealthSummary::default();
    // Grouped by program, as --summary does: names are often argv0:pid:...
    fn program(conn: &Connection) -> Option<&str> {
        conn.client_name_str()
            .map(|n| n.split(':').next().unwrap_or(n))
    }
    // First the totals, and which programs have something to report
    // (heartbeats disabled, gaps, near-misses, a suspected middlebox):
    // only those get an entry, so a capture of 10,000 healthy connections
    // (often as many program names) builds none.
    let mut listed: std::collections::HashMap<Option<&str>, usize> =
        std::collections::HashMap::new();
    for conn in conns {
        let value = conn.heartbeat().0;
        let near: u64 = conn.dirs().iter().map(|d| d.near_misses().0).sum();
        let middlebox = conn.middlebox_suspected().is_some();
        match value {
            None => sum.unknown_connections += 1,
            Some(0) => sum.disabled_connections += 1,
            Some(_) => {}
        }
        sum.near_misses += near;
        if near > 0 {
            sum.connections_with_near_misses += 1;
        }
        if middlebox {
            sum.middlebox_suspected += 1;
        }
        if value == Some(0) || !conn.gaps().is_empty() || near > 0 || middlebox {
            let n = listed.len();
            listed.entry(program(conn)).or_insert(n);
        }
    }
    // Then one entry per listed program, over all its connections, with its
    // longest near-miss for the recommendation.
    let mut by: Vec<(ClientHealthReport, Option<(Span, u16)>)> = Vec::new();
    by.resize_with(listed.len(), || (ClientHealthReport::empty(None), None));
    for (name, &at) in &listed {
        if let Some((e, _)) = by.get_mut(at) {
            e.client = name.map(str::to_owned);
        }
    }
    for conn in conns {
        let Some(&at) = listed.get(&program(conn)) else {
            continue;
        };
        let Some((e, longest_near)) = by.get_mut(at) else {
            continue;
        };
        let value = conn.heartbeat().0;
        e.connections += 1;
        e.gaps += conn.gaps().len();
        if let Some(v) = value {
            if !e.heartbeat_s.contains(&v) {
                e.heartbeat_s.push(v);
                e.heartbeat_s.sort_unstable();
            }
            if v == 0 {
                e.disabled += 1;
            }
        }
        for d in conn.dirs() {
            let (n, list) = d.near_misses();
            e.near_misses += n;
            if let (Some(l), Some(v)) = (conn.limit(), value) {
                #[allow(clippy::cast_precision_loss)]
                let m = round3(d.longest_silence.0 as f64 / l.0 as f64);
                e.worst_margin = Some(e.worst_margin.map_or(m, |w: f64| w.max(m)));
                for (a, b) in list {
                    let s = b.since(*a);
                    let slot = longest_near.get_or_insert((Span(0), v));
                    if s > slot.0 {
                        *slot = (s, v);
                    }
                }
            }
        }
        if let Some(m) = conn.middlebox_suspected() {
            let n = m.idle_timeout_s();
            e.middlebox_idle_timeout_s = Some(e.middlebox_idle_timeout_s.map_or(n, |x| x.min(n)));
        }
    }
    for (e, longest_near) in &mut by {
        if let Some(n) = e.middlebox_idle_timeout_s {
            // Below N/2: a frame every timeout/2 crosses the idle timer twice.
            let rec = u16::try_from(n.saturating_sub(1) / 2)
                .unwrap_or(u16::MAX)
                .max(1);
            e.recommended_heartbeat_s = Some(rec);
            e.recommendation = Some(format!(
                "a middlebox closed idle connections after ~{n} s: a heartbeat below {} s keeps them busy (or raise its idle timeout)",
                n as f64 / 2.0
            ));
        } else if let Some((s, v)) = longest_near.filter(|_| e.gaps == 0) {
            // Keep the longest silence seen under 3/4 of the timeout.
            let need_ms = s.0 / 1_000_000 * NEAR_MISS_DEN / NEAR_MISS_NUM;
            let rec = u16::try_from((need_ms + 999) / 1_000)
                .unwrap_or(u16::MAX)
                .max(v.saturating_add(1));
            e.recommended_heartbeat_s = Some(rec);
            e.recommendation = Some(format!(
                "silences up to {:.3} s came within a quarter of the {v} s timeout: a heartbeat of {rec} s keeps them under 3/4 of it (or find what delays the sender)",
                s.as_secs_f64()
            ));
        }
    }
    // Named first, in name order; the unnamed last.
    let mut entries: Vec<ClientHealthReport> = by.into_iter().map(|(e, _)| e).collect();
    entries.sort_by(|a, b| match (&a.client, &b.client) {
        (Some(x), Some(y)) => x.cmp(y),
        (Some(_), None) => std::cmp::Ordering::Less,
        (None, Some(_)) => std::cmp::Ordering::Greater,
        (None, None) => std::cmp::Ordering::Equal,
    });
    sum.by_client = entries;
    sum
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
        health: health_report(conn),
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
        gaps_not_listed_by_cause: conn
            .gaps_dropped_causes()
            .iter()
            .map(|(c, n)| (c.as_str(), *n))
            .collect(),
        timestamps_disordered: conn.timestamps_disordered(),
        frames_cut: conn.frames_cut(),
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
        unavailable: if conn.tls().is_some() || conn.frames_cut() {
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
        broker_log: None,
        marks: None,
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
    if engine.records_timelines() {
        attach_marks(engine, &mut report);
    }
    report
}

/// Copies each connection's recorded wire events into its entry's `marks`
/// (entries and slots in the same report order).
fn attach_marks(engine: &Engine, report: &mut Report) {
    let mut slots: Vec<_> = engine
        .slots()
        .iter()
        .filter(|s| s.confirmed && s.not_amqp.is_none())
        .collect();
    slots.sort_by_key(|s| (s.conn.first_seen(), s.conn.key()));
    for (entry, slot) in report.connections.iter_mut().zip(slots) {
        let cd = slot.conn.client_dir();
        let bd = cd.reverse();
        entry.marks = Some(WireMarks {
            client_to_broker: slot.timeline.events(cd).copied().collect(),
            broker_to_client: slot.timeline.events(bd).copied().collect(),
            forgotten: (slot.timeline.forgotten(cd), slot.timeline.forgotten(bd)),
        });
    }
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
    // Gaps over the per-connection cap count too.
    for (cause, n) in conns.iter().flat_map(|c| c.gaps_dropped_causes().iter()) {
        *gaps_by_cause.entry(cause.as_str().to_owned()).or_insert(0) +=
            usize::try_from(*n).unwrap_or(usize::MAX);
    }
    let mut summary = Summary {
        connections: conns.len(),
        flagged_connections: conns.iter().filter(|c| !c.gaps().is_empty()).count(),
        gaps: conns
            .iter()
            .map(|c| usize::try_from(c.gaps_found()).unwrap_or(usize::MAX))
            .sum(),
        gaps_by_cause,
        heartbeat_health: health_summary(conns),
        ended_not_listed: None,
    };
    let retired = engine.retired();
    if !retired.is_empty() {
        add_retired(&mut summary, retired);
        summary.ended_not_listed = Some(ended_not_listed(retired));
    }
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
            duplicate_packets: c.duplicate_packets,
            disordered_timestamps: c.disordered_timestamps,
            evicted_flows: c.evicted_flows,
            memory_shed_flows: c.memory_shed_flows,
            ip_fragments: c.ip_fragments,
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
        broker_log: None,
    }
}

/// Adds the connections the engine folded away to `summary`'s totals
/// (the report's and the live screen's header alike).
pub(crate) fn add_retired(summary: &mut Summary, r: &crate::engine::retired::Retired) {
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    summary.connections += n(r.total.connections);
    summary.flagged_connections += n(r.total.flagged);
    summary.gaps += n(r.total.gaps);
    for (cause, count) in &r.gaps_by_cause {
        *summary
            .gaps_by_cause
            .entry((*cause).to_owned())
            .or_insert(0) += n(*count);
    }
}

/// The report's account of the connections the engine folded away.
fn ended_not_listed(r: &crate::engine::retired::Retired) -> EndedNotListed {
    use crate::engine::retired::RetiredCounts;
    let counts = |c: &RetiredCounts| EndedCounts {
        connections: c.connections,
        flagged_connections: c.flagged,
        gaps: c.gaps,
        first_packet: c.first_seen.map(rfc3339),
        last_packet: c.last_seen.map(rfc3339),
    };
    let mut pairs: Vec<_> = r.pairs.iter().collect();
    pairs.sort_by(|a, b| {
        b.counts
            .connections
            .cmp(&a.counts.connections)
            .then_with(|| a.client_ip.cmp(&b.client_ip))
            .then_with(|| a.broker.to_string().cmp(&b.broker.to_string()))
    });
    let (after, max) = r.keep.unwrap_or_default();
    EndedNotListed {
        total: counts(&r.total),
        kept_in_full_s: secs(after.0),
        keep_ended: max as u64,
        gaps_by_cause: r
            .gaps_by_cause
            .iter()
            .map(|(k, v)| ((*k).to_owned(), *v))
            .collect(),
        by_client: pairs
            .into_iter()
            .map(|p| EndedPairReport {
                client_host: p.client_ip.to_string(),
                broker: p.broker.to_string(),
                counts: counts(&p.counts),
            })
            .collect(),
        other_clients: (r.other.connections > 0).then(|| counts(&r.other)),
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
            user: o.user.clone(),
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
            syscall: t.syscall.clone(),
            wchan: t.wchan.clone(),
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
            diagnosis: p.diagnosis.map(|d| DiagnosisReport {
                kind: d.kind,
                detail: d.detail,
                evidence: d.evidence,
            }),
            py_spy: None,
            at_close: p.at_close.map(|a| {
                Box::new(AtCloseReport {
                    at: rfc3339(a.at),
                    gone: a.gone,
                    summary: a.summary,
                    threads: a
                        .threads
                        .into_iter()
                        .map(|t| ThreadAtCloseReport {
                            tid: t.tid,
                            name: t.name,
                            state: t.state.to_string(),
                            syscall: t.syscall,
                            wchan: t.wchan,
                        })
                        .collect(),
                })
            }),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    use crate::analysis::{AnalysisConfig, SilenceEnd, SynLog};
    use crate::model::{Endpoint, FlowKey, Timestamp};
    use crate::proto::amqp::ConnMethod;

    /// A client that speaks every 2.5 s under a 2 s limit (a small gap each
    /// time), `small` times, then goes silent 10 s (5x) until the broker
    /// resets the connection; at most `cap` gaps kept.
    fn many_gaps(small: u32, cap: usize) -> Connection {
        let ep = |port| Endpoint::new(std::net::Ipv4Addr::LOCALHOST.into(), port);
        let (key, cd) = FlowKey::from_packet(ep(40000), ep(5672));
        let cfg = AnalysisConfig {
            max_gaps_per_connection: cap,
            ..AnalysisConfig::default()
        };
        let mut c = Connection::new(key, cd, RoleSource::Port, Timestamp(0), false, cfg);
        let syns = SynLog::default();
        c.on_method(
            Timestamp(0),
            cd,
            &ConnMethod::TuneOk {
                channel_max: 0,
                frame_max: 131_072,
                heartbeat: 2,
            },
        );
        c.on_packet(Timestamp(0), cd);
        c.on_new_bytes(Timestamp(0), cd, 0, 8, &syns);
        let mut t = 0;
        for i in 1..=u64::from(small) {
            t += 2_500_000_000;
            c.on_packet(Timestamp(t), cd);
            c.on_new_bytes(Timestamp(t), cd, i * 8, 8, &syns);
        }
        t += 10_000_000_000;
        c.on_packet(Timestamp(t), cd.reverse());
        c.on_rst(Timestamp(t), cd.reverse(), &syns);
        c.finish(Timestamp(t), &syns);
        c
    }

    /// Over the cap the worst gap and the one that ended the connection are
    /// kept, the others counted with their causes, and reports say so.
    #[test]
    fn over_the_gap_cap_the_worst_gaps_are_kept() {
        let c = many_gaps(1_200, 1_000);
        assert_eq!(c.gaps_found(), 1_201);
        assert_eq!(c.gaps.len(), 1_000);
        assert_eq!(c.gaps_dropped(), 201);
        let last = c.gaps.last().expect("gaps");
        assert_eq!(last.ended_by, SilenceEnd::Rst);
        assert!((last.ratio() - 5.0).abs() < 1e-9);
        let r = connection_report(1, &c);
        assert_eq!(r.gaps_not_listed, 201);
        assert_eq!(r.gaps_not_listed_by_cause.values().sum::<u64>(), 201);
        let lines = super::super::text::caveats(&r);
        assert!(
            lines[0].starts_with("201 more gaps not listed"),
            "{lines:?}"
        );
        // A small cap: the worst by ratio, in time order.
        let c = many_gaps(5, 3);
        assert_eq!(c.gaps_found(), 6);
        assert_eq!(c.gaps.len(), 3);
        assert!(c.gaps.windows(2).all(|w| w[0].start <= w[1].start));
        assert_eq!(c.gaps.last().map(|g| g.ended_by), Some(SilenceEnd::Rst));
        // Under the cap nothing changes.
        let c = many_gaps(5, 1_000);
        assert_eq!((c.gaps.len(), c.gaps_dropped()), (6, 0));
        assert!(connection_report(1, &c).gaps_not_listed_by_cause.is_empty());
    }

    /// A client silent when the capture ends: the window in which RabbitMQ
    /// cuts it is 2-3 timeouts after its last byte.
    #[test]
    fn kill_window_for_a_client_silent_at_the_end() {
        use crate::analysis::{AnalysisConfig, RoleSource, SynLog};
        use crate::model::{Endpoint, FlowKey};
        use crate::proto::amqp::ConnMethod;
        let ep = |p| Endpoint::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), p);
        let (key, cd) = FlowKey::from_packet(ep(40000), ep(5672));
        let syns = SynLog::default();
        let mut c = Connection::new(
            key,
            cd,
            RoleSource::Port,
            Timestamp(0),
            false,
            AnalysisConfig::default(),
        );
        let tune = ConnMethod::TuneOk {
            channel_max: 0,
            frame_max: 131_072,
            heartbeat: 4,
        };
        c.on_method(Timestamp(0), cd, &tune);
        c.on_new_bytes(Timestamp(1_000_000_000), cd, 0, 8, &syns);
        c.on_new_bytes(Timestamp(2_000_000_000), cd.reverse(), 0, 8, &syns);
        c.finish(Timestamp(6_000_000_000), &syns);
        let h = health_report(&c);
        let k = h.broker_kill_window.expect("open at the end");
        assert_eq!(k.from, rfc3339(Timestamp(9_000_000_000)));
        assert_eq!(k.to, rfc3339(Timestamp(13_000_000_000)));
        assert!((k.client_silence_at_end_s - 5.0).abs() < 1e-9);
        assert_eq!(h.status, HealthStatus::Gap);
    }

    #[test]
    fn secs_is_exact_to_the_nanosecond() {
        assert!((secs(11_987_654_321) - 11.987_654_321).abs() < 1e-12);
    }
}
