//! The text rendering, for a terminal or a ticket.

use std::fmt::Write as _;

use super::*;
use crate::analysis::{EndHow, RoleDirection};
use crate::report::sanitize::text as clean;

fn prop_text(p: &Properties, key: &str) -> Option<String> {
    match p.get(key) {
        Some(PropValue::Text(t)) => Some(clean(t).into_owned()),
        Some(PropValue::Int(i)) => Some(i.to_string()),
        _ => None,
    }
}

/// One line about a gap's process verdict, for text output.
#[must_use]
pub fn process_text(p: &ProcessReport) -> String {
    let mut o = String::new();
    if let (Some(pid), Some(cmd)) = (p.pid, &p.command) {
        let _ = write!(o, "{} pid {pid} ({}) ", p.side, clean(cmd));
    } else {
        let _ = write!(o, "{} ", p.side);
    }
    let _ = write!(o, "{}: {}", p.verdict, clean(&p.reason));
    if let Some(s) = &p.state_samples {
        let _ = write!(o, "; states {s}");
    }
    if let Some(rx) = p.socket_rx_queue_max.filter(|v| *v > 0) {
        let _ = write!(
            o,
            "; {} in its socket",
            count(rx, "unread byte", "unread bytes")
        );
    }
    if let Some(d) = &p.diagnosis {
        let _ = write!(o, "; diagnosis {}: {}", d.kind, clean(&d.detail));
    }
    o
}

/// The evidence lines of a process diagnosis, each on its own line with
/// `indent` (empty without a diagnosis).
#[must_use]
pub fn diagnosis_evidence_text(p: &ProcessReport, indent: &str) -> String {
    let mut o = String::new();
    if let Some(d) = &p.diagnosis {
        for e in &d.evidence {
            let _ = write!(o, "\n{indent}- {}", clean(e));
        }
    }
    o
}

/// The at-close line of a process report (what its threads were doing when
/// the gap closed), on its own line with `indent` (empty without one).
#[must_use]
pub fn at_close_text(p: &ProcessReport, indent: &str) -> String {
    p.at_close.as_ref().map_or(String::new(), |a| {
        format!("\n{indent}at close: {}", clean(&a.summary))
    })
}

/// The heartbeat health lines of a connection (text report).
fn health_text(o: &mut String, conn: &ConnectionReport, z: Zone) {
    let h = &conn.health;
    match (h.status, conn.heartbeat.value_s) {
        (HealthStatus::Disabled, _) => {
            let _ = writeln!(
                o,
                "    health: disabled (heartbeat 0): a dead peer goes unnoticed and nothing keeps an idle connection's middlebox timers alive"
            );
            return;
        }
        (HealthStatus::Unknown, _) | (_, None) => {
            let _ = writeln!(o, "    health: unknown (no heartbeat value)");
            return;
        }
        (status, Some(v)) => {
            let _ = writeln!(
                o,
                "    health: {status} (timeout {v} s: a frame every {:.3} s each way when idle; near-miss from {:.3} s, 0.75x)",
                h.expected_interval_s.unwrap_or(0.0),
                h.near_miss_threshold_s.unwrap_or(0.0)
            );
        }
    }
    for (name, d) in h.directions.iter() {
        let mut line = format!("      {name}: ");
        match (d.heartbeat_interval_mean_s, d.heartbeat_interval_max_s) {
            (Some(mean), Some(max)) => {
                let _ = write!(
                    line,
                    "heartbeats every {mean:.3} s on average ({:.2}x expected, longest {max:.3} s)",
                    d.cadence_ratio.unwrap_or(0.0)
                );
            }
            _ => line.push_str("no consecutive idle heartbeats"),
        }
        let _ = write!(
            line,
            "; longest silence {:.3} s ({:.2}x)",
            d.longest_silence_s,
            d.margin.unwrap_or(0.0)
        );
        if d.near_misses > 0 {
            let list: Vec<String> = d
                .near_miss_list
                .iter()
                .map(|n| {
                    format!(
                        "{:.3} s ({:.2}x) from {}",
                        n.silence_s,
                        n.ratio,
                        z.time(&n.start)
                    )
                })
                .collect();
            let _ = write!(
                line,
                "; {}: {}",
                count(d.near_misses, "near-miss", "near-misses"),
                list.join(", ")
            );
        }
        let _ = writeln!(o, "{line}");
    }
    if let Some(k) = &h.broker_kill_window {
        let _ = writeln!(
            o,
            "      client silent since {} ({:.3} s at the end of the capture): RabbitMQ cuts it between {} and {} (2-3 timeouts after its last byte)",
            z.time(&k.client_silent_since),
            k.client_silence_at_end_s,
            z.time(&k.from),
            z.time(&k.to)
        );
    }
}

/// The heartbeat health rollup (text, HTML, Markdown, summary): one line of
/// totals and one per recommended heartbeat; only what calls for attention,
/// so nothing at all for healthy connections.
#[must_use]
pub fn health_summary_lines(s: &HealthSummary) -> (Option<String>, Vec<String>) {
    let mut bits = Vec::new();
    if s.disabled_connections > 0 {
        bits.push(format!(
            "{} with heartbeats disabled",
            s.disabled_connections
        ));
    }
    if s.near_misses > 0 {
        bits.push(format!(
            "{} on {}",
            count(s.near_misses, "near-miss", "near-misses"),
            count(
                s.connections_with_near_misses as u64,
                "connection",
                "connections"
            )
        ));
    }
    if s.middlebox_suspected > 0 {
        bits.push(format!(
            "{} ended by a suspected middlebox",
            s.middlebox_suspected
        ));
    }
    let head = (!bits.is_empty()).then(|| format!("heartbeat health: {}", bits.join(", ")));
    let recs = s
        .by_client
        .iter()
        .filter_map(|c| {
            let (rec, why) = (c.recommended_heartbeat_s?, c.recommendation.as_ref()?);
            Some(format!(
                "{}: recommended heartbeat {rec} s: {why}",
                clean(c.client.as_deref().unwrap_or("(unnamed clients)"))
            ))
        })
        .collect();
    (head, recs)
}

/// Most client hosts named in [`ended_not_listed_lines`]; the rest are summed.
const ENDED_PAIRS_SHOWN: usize = 10;

/// What a long live capture counted instead of listing (text, HTML,
/// Markdown, summary): one line of totals, then one per client host and
/// broker, most connections first. Empty when every connection is listed.
#[must_use]
pub fn ended_not_listed_lines(s: &Summary) -> Vec<String> {
    let Some(e) = &s.ended_not_listed else {
        return Vec::new();
    };
    let counts = |c: &EndedCounts| {
        let mut t = format!(
            "{}, {} flagged, {}",
            count(c.connections, "connection", "connections"),
            c.flagged_connections,
            count(c.gaps, "gap", "gaps")
        );
        if let (Some(a), Some(b)) = (&c.first_packet, &c.last_packet) {
            let _ = write!(t, ", {a} to {b}");
        }
        t
    };
    let causes: Vec<String> = e
        .gaps_by_cause
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let mut lines = vec![format!(
        "not listed: {}{}: ended connections stay listed for {} s after their last packet, then at most {} \
         of them (--keep-ended), those with gaps or near-misses longest; the oldest beyond are counted here \
         to keep memory bounded",
        counts(&e.total),
        if causes.is_empty() {
            String::new()
        } else {
            format!(" ({})", causes.join(", "))
        },
        e.kept_in_full_s,
        e.keep_ended
    )];
    for p in e.by_client.iter().take(ENDED_PAIRS_SHOWN) {
        lines.push(format!(
            "{} -> {}: {}",
            p.client_host,
            p.broker,
            counts(&p.counts)
        ));
    }
    let rest: u64 = e
        .by_client
        .iter()
        .skip(ENDED_PAIRS_SHOWN)
        .map(|p| p.counts.connections)
        .sum::<u64>()
        + e.other_clients.as_ref().map_or(0, |o| o.connections);
    if rest > 0 {
        lines.push(format!(
            "other client hosts: {}",
            count(rest, "connection", "connections")
        ));
    }
    lines
}

fn health_summary_text(o: &mut String, s: &HealthSummary) {
    let (head, recs) = health_summary_lines(s);
    if let Some(h) = head {
        let _ = writeln!(o, "{h}");
    }
    for r in recs {
        let _ = writeln!(o, "  {r}");
    }
}

/// A connection's health facts worth a line outside the text report (HTML,
/// Markdown): near-misses and a suspected middlebox.
#[must_use]
pub fn health_notes(conn: &ConnectionReport) -> Vec<String> {
    let mut notes = Vec::new();
    for (name, d) in conn.health.directions.iter() {
        if d.near_misses > 0 {
            let worst = d
                .near_miss_list
                .iter()
                .map(|n| n.ratio)
                .fold(0.0_f64, f64::max);
            notes.push(format!(
                "{name}: {}, up to {worst:.2}x the timeout",
                count(d.near_misses, "near-miss", "near-misses")
            ));
        }
    }
    if let Some(k) = &conn.health.broker_kill_window {
        notes.push(format!(
            "client silent since {} ({:.3} s at the end): RabbitMQ cuts it between {} and {}",
            k.client_silent_since, k.client_silence_at_end_s, k.from, k.to
        ));
    }
    let e = &conn.ended;
    if let (Some(EndedBy::MiddleboxSuspected), Some(r)) = (e.by, &e.reason) {
        notes.push(format!("middlebox suspected: {r}"));
        if let Some(a) = &e.advice {
            notes.push(format!("advice: {a}"));
        }
    }
    notes
}

/// One direction's counters as a text line: counts in the right number,
/// and a direction that sent nothing said to be silent for the whole capture.
fn direction_text(name: RoleDirection, d: &DirectionReport) -> String {
    if d.bytes == 0 && d.frames == 0 {
        return format!(
            "{name}: no AMQP bytes: silent for the whole capture{}",
            if d.retransmissions > 0 {
                format!(
                    " ({})",
                    count(d.retransmissions, "retransmission", "retransmissions")
                )
            } else {
                String::new()
            }
        );
    }
    format!(
        "{name}: {}, {}, {}, {}, longest silence {:.3} s",
        count(d.bytes, "byte", "bytes"),
        count(d.frames, "frame", "frames"),
        count(d.heartbeats, "heartbeat", "heartbeats"),
        count(d.retransmissions, "retransmission", "retransmissions"),
        d.longest_silence_s
    )
}

/// How a connection ended, in words ("client sent Connection.Close 200 Goodbye").
fn ended_text(ended: &EndedReport, frames_cut: bool) -> String {
    match (ended.how, ended.by) {
        (_, Some(EndedBy::MiddleboxSuspected)) => "middlebox suspected".to_owned(),
        (EndHow::CaptureEnd, _) => "still open at the end of the capture".to_owned(),
        (EndHow::Close, Some(by)) => {
            let mut t = format!("{by} sent Connection.Close");
            if let Some(c) = ended.reply_code {
                let _ = write!(t, " {c}");
            }
            let text = clean(ended.reply_text.as_deref().unwrap_or_default());
            if !text.is_empty() {
                let _ = write!(t, " {text}");
            }
            t
        }
        // Cut frames: a Connection.Close before it would not have been read.
        (EndHow::Fin, Some(by)) if frames_cut => {
            format!("{by} closed the socket (FIN; frames cut: a Connection.Close would not show)")
        }
        (EndHow::Rst, Some(by)) if frames_cut => {
            format!("{by} reset the connection (RST; frames cut: a Connection.Close would not show)")
        }
        (EndHow::Fin, Some(by)) => {
            format!("{by} closed the socket (FIN) without Connection.Close")
        }
        (EndHow::Rst, Some(by)) => {
            format!("{by} reset the connection (RST) without Connection.Close")
        }
        (EndHow::PortReused, Some(by)) => format!(
            "port reused: this connection had ended unseen when {by} opened a new one on the same ports (SYN)"
        ),
        (how, None) => how.to_string(),
    }
}

/// One broker log line for text: its time as logged, level, message.
fn log_line_text(l: &LogLineReport, z: Zone) -> String {
    format!("{} [{}] {}", z.time(&l.at), clean(&l.level), clean(&l.text))
}

/// The broker log's own section (files, clock offset, alarms, connections
/// only the log names), after the connections.
fn broker_log_text(o: &mut String, b: &BrokerLogReport, z: Zone) {
    let files: Vec<String> = b.files.iter().map(|f| clean(f).into_owned()).collect();
    let _ = writeln!(o, "\nbroker log: {}", files.join(", "));
    match b.clock_offset_s {
        Some(off) => {
            let _ = writeln!(
                o,
                "  clock: log = capture {off:+.6} s (median over {})",
                count(
                    b.joined_connections as u64,
                    "joined connection",
                    "joined connections"
                )
            );
        }
        None => {
            let _ = writeln!(o, "  no capture connection appears in the log");
        }
    }
    for a in &b.alarms {
        let _ = writeln!(o, "  alarm: {}", log_line_text(a, z));
    }
    for l in &b.log_only {
        let _ = writeln!(
            o,
            "  only in the log: {} -> {} ({}, {})",
            l.client,
            l.broker,
            clean(&l.process),
            count(l.lines.len() as u64, "line", "lines")
        );
        if let Some(last) = l.lines.last() {
            let _ = writeln!(o, "    last: {}", log_line_text(last, z));
        }
    }
}

/// Renders the report as text for a terminal or a ticket (times in UTC).
#[must_use]
pub fn to_text(report: &Report) -> String {
    to_text_in(report, Zone::Utc)
}

/// Renders the report as text with clock times in zone `z`.
#[must_use]
pub fn to_text_in(report: &Report, z: Zone) -> String {
    let mut o = String::new();
    let c = &report.capture;
    let _ = writeln!(
        o,
        "hbscope {} - {} ({}, {}{}{})",
        report.tool.version,
        clean(&c.source),
        c.link_type,
        count(c.packets, "packet", "packets"),
        c.duration_s
            .map_or(String::new(), |d| format!(", {d:.3} s")),
        c.first_packet
            .as_ref()
            .map_or(String::new(), |f| format!(", from {}", z.time(f))),
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
        let _ = writeln!(o, "warning: {}{times}", clean(&w.message));
    }
    let s = &report.summary;
    let _ = writeln!(
        o,
        "{}, {}",
        count(s.connections as u64, "AMQP connection", "AMQP connections"),
        s.gaps_text()
    );
    health_summary_text(&mut o, &s.heartbeat_health);
    for (i, line) in ended_not_listed_lines(s).iter().enumerate() {
        let indent = if i == 0 { "" } else { "  " };
        let _ = writeln!(o, "{indent}{line}");
    }
    if report.connections.is_empty() && s.ended_not_listed.is_none() {
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
            .as_deref()
            .map_or_else(|| "(no client properties in capture)".into(), clean);
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
                    .map_or(String::new(), |s| format!(" sni {}", clean(s))),
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
                let _ = writeln!(
                    o,
                    "    {side} process: pid {} ({})",
                    p.pid,
                    clean(&p.command)
                );
            }
        }
        let hb = &conn.heartbeat;
        let hb_text = match hb.value_s {
            Some(0) => "disabled (0): silences are never flagged".to_owned(),
            Some(v) if conn.frames_cut && hb.source == crate::analysis::HeartbeatSource::Inferred => {
                let what = if conn.tls.is_some() {
                    "heartbeat-sized records"
                } else {
                    "8-byte segments"
                };
                format!("{v} s (from the period of {what}: frames cut by the snapshot length)")
            }
            Some(v) => format!("{v} s"),
            None if conn.frames_cut => {
                "unknown (frames cut by the snapshot length: Tune-Ok unreadable, no steady period of \
                 8-byte segments; use --heartbeat SECS)"
                    .into()
            }
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
        let _ = writeln!(
            o,
            "    ended: {}{}",
            ended_text(ended, conn.frames_cut),
            ended
                .at
                .as_ref()
                .map_or(String::new(), |a| format!(" at {}", z.time(a)))
        );
        if let Some(r) = &ended.reason {
            let _ = writeln!(o, "      {}", clean(r));
        }
        if let Some(a) = &ended.advice {
            let _ = writeln!(o, "    advice: {a}");
        }
        if let Some(l) = &conn.broker_log {
            let _ = writeln!(
                o,
                "    broker log: process {}, {}{}",
                clean(&l.process),
                count(l.lines.len() as u64, "line", "lines"),
                l.lines.last().map_or(String::new(), |x| format!(
                    "; last: {}",
                    log_line_text(x, z)
                ))
            );
        }
        for (name, d) in &conn.directions {
            let _ = writeln!(o, "    {}", direction_text(*name, d));
        }
        health_text(&mut o, conn, z);
        if !conn.blocked_events.is_empty() {
            let events: Vec<String> = conn
                .blocked_events
                .iter()
                .map(|e| match &e.reason {
                    Some(r) => format!("{} at {} ({})", e.event, z.time(&e.at), clean(r)),
                    None => format!("{} at {}", e.event, z.time(&e.at)),
                })
                .collect();
            let _ = writeln!(o, "    flow control: {}", events.join(", "));
        }
        for v in conn.violations.iter().take(5) {
            let _ = writeln!(o, "    protocol: {}", clean(v));
        }
        for line in caveats(conn) {
            let _ = writeln!(o, "    {line}");
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
                z.time(&g.start),
                z.time(&g.end),
                g.ended_by
            );
            let _ = writeln!(
                o,
                "      cause: {}   consequence: {}{}",
                g.cause,
                g.consequence,
                g.consequence_of.map_or(String::new(), |j| format!(
                    "   (the receiver's window: a consequence of gap {})",
                    j + 1
                ))
            );
            for line in &g.evidence {
                let _ = writeln!(o, "      - {}", clean(line));
            }
            if let Some(p) = &g.process {
                let _ = writeln!(
                    o,
                    "      process: {}{}{}",
                    process_text(p),
                    diagnosis_evidence_text(p, "        "),
                    at_close_text(p, "        ")
                );
                if let Some(d) = &p.py_spy {
                    let _ = writeln!(o, "      py-spy dump:");
                    for l in d.lines() {
                        let _ = writeln!(o, "        {}", clean(l));
                    }
                }
            }
            if !g.broker_log.is_empty() {
                let _ = writeln!(o, "      broker log:");
                for l in &g.broker_log {
                    let _ = writeln!(o, "        {}", log_line_text(l, z));
                }
            }
        }
    }
    if let Some(b) = &report.broker_log {
        broker_log_text(&mut o, b, z);
    }
    o
}

/// What a reader must know before trusting a connection's gap list: gaps
/// left out at the per-connection cap, timestamps out of order. Empty for
/// most connections. Shared by the text, Markdown, HTML and summary reports.
#[must_use]
pub fn caveats(conn: &ConnectionReport) -> Vec<String> {
    let mut out = Vec::new();
    if conn.gaps_not_listed > 0 {
        let causes: Vec<String> = conn
            .gaps_not_listed_by_cause
            .iter()
            .map(|(k, v)| format!("{k} {v}"))
            .collect();
        out.push(format!(
            "{} more {} not listed (over the per-connection cap; the worst by ratio and the one that ended the connection are listed){}",
            conn.gaps_not_listed,
            if conn.gaps_not_listed == 1 { "gap" } else { "gaps" },
            if causes.is_empty() {
                String::new()
            } else {
                format!(": {}", causes.join(", "))
            }
        ));
    }
    if conn.timestamps_disordered > 0 {
        out.push(format!(
            "timestamps: {} stamped out of time order; silences across them were not measured, so these verdicts are unreliable",
            count(conn.timestamps_disordered, "packet", "packets")
        ));
    }
    out
}

/// Renders the `merge` object as text (empty when the report has none).
#[must_use]
pub fn twoend_text(report: &Report) -> String {
    twoend_text_in(report, Zone::Utc)
}

/// [`twoend_text`] with clock times in zone `z`.
#[must_use]
pub fn twoend_text_in(report: &Report, z: Zone) -> String {
    let mut o = String::new();
    let Some(m) = &report.merge else {
        return o;
    };
    let _ = writeln!(o, "hbscope {} - two-ended replay", report.tool.version);
    for s in &m.sources {
        let _ = writeln!(
            o,
            "  {} side: {} ({}, {}{}, {}, {}{})",
            s.side,
            clean(&s.file),
            s.link_type,
            count(s.packets, "packet", "packets"),
            s.first_packet
                .as_ref()
                .map_or(String::new(), |f| format!(", from {}", z.time(f))),
            count(s.connections as u64, "connection", "connections"),
            count(s.gaps as u64, "single-capture gap", "single-capture gaps"),
            if s.complete { "" } else { ", cut short" }
        );
    }
    let c = &m.clock_offset;
    let _ = writeln!(
        o,
        "  clock: {} = {} {:+.6} s{} ({} client-to-broker and {} broker-to-client segments matched{})",
        c.of,
        c.relative_to,
        c.estimate_s,
        c.uncertainty_s
            .map_or(" (uncertainty unknown)".to_owned(), |u| format!(" ± {u:.6} s")),
        c.samples_client_to_broker,
        c.samples_broker_to_client,
        c.one_way_delay_s
            .map_or(String::new(), |d| format!("; one-way delay {d:.6} s")),
    );
    let _ = writeln!(o, "  times below are in {}'s clock", m.reference);
    for w in &m.warnings {
        let _ = writeln!(o, "warning: {}", clean(w));
    }
    let causes: Vec<String> = m
        .summary
        .gaps_by_merged_cause
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        o,
        "{} in both captures, {}{}",
        count(
            m.summary.matched_connections as u64,
            "connection",
            "connections"
        ),
        count(m.summary.gaps as u64, "merged gap", "merged gaps"),
        if causes.is_empty() {
            String::new()
        } else {
            format!(": {}", causes.join(", "))
        }
    );
    for (i, conn) in m.connections.iter().enumerate() {
        let _ = writeln!(o);
        let ids: Vec<String> = m
            .sources
            .iter()
            .filter_map(|s| conn.ids.get(&s.file).map(|id| format!("{} #{id}", s.file)))
            .collect();
        let _ = writeln!(
            o,
            "[{}] {} -> {}  {}  ({})",
            i + 1,
            conn.client,
            conn.broker,
            clean(
                conn.client_name
                    .as_deref()
                    .unwrap_or("(no client properties in capture)")
            ),
            ids.join(", ")
        );
        if conn.gaps.is_empty() {
            let _ = writeln!(o, "    no gaps in either capture");
        }
        for (gi, g) in conn.gaps.iter().enumerate() {
            let _ = writeln!(
                o,
                "    gap {}: {} silent {:.3} s (limit {} s) from {} to {}",
                gi + 1,
                g.direction,
                g.silence_s,
                g.limit_s,
                z.time(&g.start),
                z.time(&g.end)
            );
            let singles: Vec<String> = g
                .single
                .iter()
                .map(|s| format!("{} side {} ({:.3} s)", s.side, s.cause, s.silence_s))
                .collect();
            let _ = writeln!(
                o,
                "      merged cause: {}   consequence: {}   single captures: {}",
                g.merged_cause,
                g.consequence,
                singles.join(", ")
            );
            for l in &g.seen_at {
                let _ = writeln!(o, "      - {l}");
            }
        }
    }
    for s in &m.sources {
        for u in &s.unmatched {
            let _ = writeln!(
                o,
                "\nonly in {} ({} side): [{}] {} -> {}, {}: run `hbscope replay {}` for its single-capture verdicts",
                clean(&s.file),
                s.side,
                u.id,
                u.client,
                u.broker,
                count(u.gaps as u64, "gap", "gaps"),
                clean(&s.file)
            );
        }
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(bytes: u64, frames: u64, heartbeats: u64, retrans: u64) -> DirectionReport {
        DirectionReport {
            bytes,
            frames,
            heartbeats,
            retransmissions: retrans,
            missed_bytes: 0,
            snaplen_cut_bytes: 0,
            overflow_skipped_bytes: 0,
            longest_silence_s: 0.0,
            longest_data_silence_s: 0.0,
        }
    }

    #[test]
    fn direction_counts_in_the_right_number() {
        assert_eq!(
            direction_text(RoleDirection::BrokerToClient, &dir(8, 1, 1, 1)),
            "broker-to-client: 8 bytes, 1 frame, 1 heartbeat, 1 retransmission, longest silence 0.000 s"
        );
        assert_eq!(
            direction_text(RoleDirection::ClientToBroker, &dir(0, 0, 0, 0)),
            "client-to-broker: no AMQP bytes: silent for the whole capture"
        );
        assert_eq!(
            direction_text(RoleDirection::ClientToBroker, &dir(0, 0, 0, 3)),
            "client-to-broker: no AMQP bytes: silent for the whole capture (3 retransmissions)"
        );
    }

    #[test]
    fn close_without_reply_text_has_no_trailing_space() {
        let mut e = EndedReport {
            by: Some(EndedBy::Client),
            how: EndHow::Close,
            at: None,
            reply_code: Some(0),
            reply_text: Some(String::new()),
            seen_from: None,
            reason: None,
            idle_period_s: None,
            idle_timeout_s: None,
            advice: None,
        };
        assert_eq!(ended_text(&e, false), "client sent Connection.Close 0");
        e.reply_code = Some(200);
        e.reply_text = Some("Goodbye".into());
        assert_eq!(
            ended_text(&e, false),
            "client sent Connection.Close 200 Goodbye"
        );
    }
}
