//! Shareable renderings of a [`Report`]: one self-contained HTML file (inline
//! CSS and SVG, no network fetches), Markdown for a ticket, and a one-line-per-
//! flagged-connection summary grouped by client name.
//!
//! They read only the report, never the engine, so what a customer sees in
//! the HTML is exactly what the JSON says.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::timeline::{Kinds, TimelineEvent};
use crate::analysis::{Cause, RoleDirection};
use crate::report::sanitize::{markdown as md, text as clean};
use crate::report::text::{ended_not_listed_lines, health_notes, health_summary_lines};
use crate::report::{count, EndedBy, Zone};
use crate::report::{
    BrokerLogReport, ConnectionReport, GapReport, LogLineReport, MergeReport, MergedCause, Report,
};

fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// Parses the report's RFC 3339 time back to seconds since the epoch (for drawing).
fn secs_of(t: &str) -> Option<f64> {
    // YYYY-MM-DDTHH:MM:SS.fffffffffZ; only differences matter, so a
    // day-count from the date is enough.
    let (date, time) = t.split_once('T')?;
    let mut d = date.split('-').map(|x| x.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let time = time.trim_end_matches('Z');
    let mut parts = time.split(':');
    let h: f64 = parts.next()?.parse().ok()?;
    let mi: f64 = parts.next()?.parse().ok()?;
    let s: f64 = parts.next()?.parse().ok()?;
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    #[allow(clippy::cast_precision_loss)]
    Some(days as f64 * 86_400.0 + h * 3600.0 + mi * 60.0 + s)
}

/// Each cause's colour as red, green, blue: the HTML report's shading and
/// the terminal UI's (one table, so the two always agree).
#[must_use]
pub const fn cause_rgb(cause: Cause) -> (u8, u8, u8) {
    match cause {
        Cause::ClientStall => (0xd9, 0x53, 0x4f),
        Cause::BrokerStall => (0xe6, 0x7e, 0x22),
        Cause::PeerUnreachable => (0x8e, 0x44, 0xad),
        Cause::BrokerBlocked => (0x29, 0x80, 0xb9),
        Cause::CaptureLoss => (0x7f, 0x8c, 0x8d),
        Cause::Unknown => (0x95, 0xa5, 0xa6),
    }
}

fn cause_colour(cause: Cause) -> String {
    let (r, g, b) = cause_rgb(cause);
    format!("#{r:02x}{g:02x}{b:02x}")
}

/// Marks drawn on a timeline lane, one colour each (the legend's order).
const MARK_DATA: &str = "#2471a3";
const MARK_HEARTBEAT: &str = "#1e8449";
const MARK_ACK: &str = "#566573";
const MARK_RETRANS: &str = "#c0392b";
const MARK_FIN: &str = "#111111";
const MARK_RST: &str = "#b03a2e";
const MARK_HOLE: &str = "#aab7b8";

/// Healthy connections drawn with a timeline; the others are listed (a
/// capture of thousands of connections stays a page a browser opens).
const HEALTHY_DRAWN: usize = 200;

/// Timeline drawing: width, left margin (lane names), right margin, lane height.
const SVG_W: f64 = 900.0;
const SVG_LEFT: f64 = 130.0;
const SVG_RIGHT: f64 = 10.0;
const LANE_H: f64 = 34.0;

/// "HH:MM:SS" (UTC) of seconds since the epoch, with milliseconds when `ms`.
fn hms(t: f64, ms: bool) -> String {
    #[allow(clippy::cast_possible_truncation)]
    let total_ms = (t * 1000.0).round() as i64;
    let day_ms = total_ms.rem_euclid(86_400_000);
    let (h, m, sec, milli) = (
        day_ms / 3_600_000,
        day_ms / 60_000 % 60,
        day_ms / 1000 % 60,
        day_ms % 1000,
    );
    if ms {
        format!("{h:02}:{m:02}:{sec:02}.{milli:03}")
    } else {
        format!("{h:02}:{m:02}:{sec:02}")
    }
}

/// A report time (RFC 3339 UTC) as "2026-12-02 13:51:20.519 UTC (14:51:20.519
/// local, UTC+01:00)": both clocks, for a reader in another zone.
fn both_times(rfc: &str) -> String {
    let utc = format!(
        "{} {}",
        rfc.get(..10).unwrap_or(rfc),
        rfc.get(11..23).unwrap_or("")
    );
    let local = Zone::Local.time(rfc);
    let offset = local.get(local.len().saturating_sub(6)..).unwrap_or("");
    if offset == "+00:00" || local == rfc {
        return format!("{utc} UTC");
    }
    format!(
        "{utc} UTC ({} local, UTC{offset})",
        local.get(11..23).unwrap_or("")
    )
}

/// A step for about six axis ticks over `span` seconds.
fn tick_step(span: f64) -> f64 {
    const STEPS: [f64; 17] = [
        0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0,
        3600.0, 7200.0,
    ];
    STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8.0)
        .unwrap_or_else(|| (span / 8.0 / 3600.0).ceil() * 3600.0)
}

/// One lane's marks, each kind at most once per pixel column.
#[derive(Default)]
struct LaneMarks {
    data: BTreeMap<i64, ()>,
    heartbeat: BTreeMap<i64, ()>,
    ack: BTreeMap<i64, ()>,
    retrans: BTreeMap<i64, ()>,
    fin: BTreeMap<i64, ()>,
    rst: BTreeMap<i64, ()>,
    hole: BTreeMap<i64, ()>,
}

impl LaneMarks {
    fn of(events: &[TimelineEvent], x: &dyn Fn(f64) -> f64) -> Self {
        let mut m = LaneMarks::default();
        for e in events {
            #[allow(clippy::cast_precision_loss)]
            let t = e.at.0 as f64 / 1e9;
            #[allow(clippy::cast_possible_truncation)]
            let px = x(t).round() as i64;
            let k = e.kinds;
            if k.contains(Kinds::HEARTBEAT) {
                m.heartbeat.insert(px, ());
            }
            if k.contains(Kinds::FRAME)
                || (k.contains(Kinds::DATA) && !k.contains(Kinds::HEARTBEAT))
            {
                m.data.insert(px, ());
            }
            if k.contains(Kinds::PURE_ACK) || k.contains(Kinds::KEEPALIVE) {
                m.ack.insert(px, ());
            }
            if k.contains(Kinds::RETRANSMISSION) {
                m.retrans.insert(px, ());
            }
            if k.contains(Kinds::FIN) {
                m.fin.insert(px, ());
            }
            if k.contains(Kinds::RST) {
                m.rst.insert(px, ());
            }
            if k.contains(Kinds::HOLE) {
                m.hole.insert(px, ());
            }
        }
        m
    }

    /// The marks as SVG, lane top at `y`.
    fn svg(&self, s: &mut String, y: f64) {
        let ticks =
            |s: &mut String, set: &BTreeMap<i64, ()>, y1: f64, y2: f64, col: &str, w: f64| {
                if set.is_empty() {
                    return;
                }
                let mut d = String::new();
                for px in set.keys() {
                    let _ = write!(d, "M{px} {y1:.1}V{y2:.1}");
                }
                let _ = write!(
                    s,
                    r#"<path d="{d}" stroke="{col}" stroke-width="{w}" fill="none"/>"#
                );
            };
        ticks(
            s,
            &self.ack,
            y + LANE_H * 0.62,
            y + LANE_H - 1.0,
            MARK_ACK,
            1.5,
        );
        ticks(s, &self.data, y + 2.0, y + LANE_H * 0.5, MARK_DATA, 1.5);
        ticks(
            s,
            &self.heartbeat,
            y + 2.0,
            y + LANE_H - 2.0,
            MARK_HEARTBEAT,
            2.0,
        );
        ticks(s, &self.retrans, y + 1.0, y + 9.0, MARK_RETRANS, 3.0);
        ticks(
            s,
            &self.hole,
            y + LANE_H * 0.3,
            y + LANE_H * 0.7,
            MARK_HOLE,
            4.0,
        );
        ticks(s, &self.fin, y - 3.0, y + LANE_H + 3.0, MARK_FIN, 2.0);
        ticks(s, &self.rst, y - 3.0, y + LANE_H + 3.0, MARK_RST, 3.0);
    }
}

/// An SVG timeline of one connection: a lane per direction with its
/// heartbeat, data, ACK, retransmission, FIN/RST and capture-loss marks (when
/// the report carries them), gaps shaded by cause with the dashed limit line
/// at a heartbeat timeout after each gap's start, the connection's end, and a
/// clock axis in UTC.
fn timeline_svg(c: &ConnectionReport) -> String {
    let (Some(t0), Some(t1)) = (secs_of(&c.first_seen), secs_of(&c.last_seen)) else {
        return String::new();
    };
    let span = (t1 - t0).max(0.001);
    let inner = SVG_W - SVG_LEFT - SVG_RIGHT;
    let x = |t: f64| SVG_LEFT + ((t - t0) / span).clamp(0.0, 1.0) * inner;
    let height = 18.0 + 2.0 * (LANE_H + 14.0) + 22.0;
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{SVG_W}" height="{height}" viewBox="0 0 {SVG_W} {height}" role="img" aria-label="timeline of connection {}">"#,
        c.id
    );
    let lanes = [
        (
            RoleDirection::ClientToBroker,
            c.marks.as_ref().map(|m| &m.client_to_broker[..]),
        ),
        (
            RoleDirection::BrokerToClient,
            c.marks.as_ref().map(|m| &m.broker_to_client[..]),
        ),
    ];
    for (i, (lane, events)) in lanes.iter().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let y = 18.0 + i as f64 * (LANE_H + 14.0);
        let _ = write!(
            s,
            r##"<text x="4" y="{:.1}" font-size="12">{lane}</text><rect x="{SVG_LEFT}" y="{y}" width="{inner:.1}" height="{LANE_H}" fill="#f4f8f4" stroke="#9c9"/>"##,
            y + LANE_H / 2.0 + 4.0,
        );
        for g in c.gaps.iter().filter(|g| g.direction == *lane) {
            if let (Some(a), Some(b)) = (secs_of(&g.start), secs_of(&g.end)) {
                let _ = write!(
                    s,
                    r#"<rect class="gap-shade" x="{:.1}" y="{y}" width="{:.1}" height="{LANE_H}" fill="{}" fill-opacity="0.35"><title>{} {:.3} s ({:.1}x the limit)</title></rect>"#,
                    x(a),
                    (x(b) - x(a)).max(1.0),
                    cause_colour(g.cause),
                    esc(g.cause.as_str()),
                    g.silence_s,
                    g.ratio
                );
            }
        }
        if let Some(ev) = events {
            LaneMarks::of(ev, &x).svg(&mut s, y);
        }
        for g in c.gaps.iter().filter(|g| g.direction == *lane) {
            if let Some(a) = secs_of(&g.start) {
                let lim = x(a + g.limit_s);
                let _ = write!(
                    s,
                    r##"<line class="limit" x1="{lim:.1}" x2="{lim:.1}" y1="{:.1}" y2="{:.1}" stroke="#000" stroke-width="1.5" stroke-dasharray="4,3"><title>heartbeat limit: {} s after the last byte</title></line>"##,
                    y - 4.0,
                    y + LANE_H + 4.0,
                    g.limit_s
                );
            }
        }
    }
    if let Some(at) = c.ended.at.as_deref().and_then(secs_of) {
        let ex = x(at);
        let _ = write!(
            s,
            r##"<line x1="{ex:.1}" x2="{ex:.1}" y1="12" y2="{:.1}" stroke="#333" stroke-dasharray="1,2"/><text x="{ex:.1}" y="10" font-size="11" text-anchor="end">ended: {} {}</text>"##,
            18.0 + 2.0 * (LANE_H + 14.0) - 10.0,
            esc(c.ended.by.map_or("", EndedBy::as_str)),
            esc(c.ended.how.as_str())
        );
    }
    // Clock axis (UTC).
    let axis_y = 18.0 + 2.0 * (LANE_H + 14.0) - 6.0;
    let _ = write!(
        s,
        r##"<line x1="{SVG_LEFT}" x2="{:.1}" y1="{axis_y:.1}" y2="{axis_y:.1}" stroke="#666"/>"##,
        SVG_W - SVG_RIGHT
    );
    let step = tick_step(span);
    let ms = step < 1.0 || span < 10.0;
    let mut t = (t0 / step).ceil() * step;
    let mut n = 0;
    while t <= t1 + 1e-9 && n < 40 {
        let tx = x(t);
        let anchor = if tx > SVG_W - SVG_RIGHT - 40.0 {
            "end"
        } else {
            "middle"
        };
        let _ = write!(
            s,
            r##"<line x1="{tx:.1}" x2="{tx:.1}" y1="{axis_y:.1}" y2="{:.1}" stroke="#666"/><text x="{tx:.1}" y="{:.1}" font-size="10" text-anchor="{anchor}">{}</text>"##,
            axis_y + 4.0,
            axis_y + 15.0,
            hms(t, ms)
        );
        t += step;
        n += 1;
    }
    let _ = write!(
        s,
        r#"<text x="4" y="{:.1}" font-size="10">UTC, {span:.1} s</text></svg>"#,
        axis_y + 15.0
    );
    if let Some(m) = &c.marks {
        let (a, b) = m.forgotten;
        if a + b > 0 {
            let _ = write!(
                s,
                r#"<p class="note">Marks: only the most recent {} events per direction were kept; {} not drawn (the gaps and counts cover the whole connection).</p>"#,
                crate::analysis::timeline::Timeline::CAP,
                count(a + b, "older one is", "older ones are")
            );
        }
    }
    s
}

/// The legend: every mark and line the timelines use.
fn legend_html() -> String {
    let mut s = String::from(r#"<div class="legend"><b>Legend</b><ul>"#);
    let item = |s: &mut String, svg: &str, text: &str| {
        let _ = write!(
            s,
            r#"<li><svg xmlns="http://www.w3.org/2000/svg" width="28" height="18" viewBox="0 0 28 18">{svg}</svg> {text}</li>"#
        );
    };
    item(
        &mut s,
        &format!(r#"<path d="M14 1V17" stroke="{MARK_HEARTBEAT}" stroke-width="2"/>"#),
        "heartbeat frame",
    );
    item(
        &mut s,
        &format!(r#"<path d="M14 1V9" stroke="{MARK_DATA}" stroke-width="2"/>"#),
        "other AMQP frames or new bytes (data)",
    );
    item(
        &mut s,
        &format!(r#"<path d="M14 11V17" stroke="{MARK_ACK}" stroke-width="2"/>"#),
        "pure TCP ACK or keep-alive (the kernel is alive)",
    );
    item(
        &mut s,
        &format!(r#"<path d="M14 1V7" stroke="{MARK_RETRANS}" stroke-width="3"/>"#),
        "retransmission",
    );
    item(
        &mut s,
        &format!(r#"<path d="M14 5V13" stroke="{MARK_HOLE}" stroke-width="4"/>"#),
        "bytes the capture missed",
    );
    item(
        &mut s,
        &format!(r#"<path d="M14 0V18" stroke="{MARK_FIN}" stroke-width="2"/>"#),
        "FIN",
    );
    item(
        &mut s,
        &format!(r#"<path d="M14 0V18" stroke="{MARK_RST}" stroke-width="3"/>"#),
        "RST",
    );
    item(
        &mut s,
        r##"<path d="M14 0V18" stroke="#000" stroke-width="1.5" stroke-dasharray="4,3"/>"##,
        "limit: one heartbeat timeout after a gap's last byte (a silence past it is a gap)",
    );
    item(
        &mut s,
        r##"<path d="M14 0V18" stroke="#333" stroke-dasharray="1,2"/>"##,
        "the connection's end",
    );
    for cause in [
        Cause::ClientStall,
        Cause::BrokerStall,
        Cause::PeerUnreachable,
        Cause::BrokerBlocked,
        Cause::CaptureLoss,
        Cause::Unknown,
    ] {
        item(
            &mut s,
            &format!(
                r#"<rect x="2" y="2" width="24" height="14" fill="{}" fill-opacity="0.35"/>"#,
                cause_colour(cause)
            ),
            &format!("gap: {}", cause.as_str()),
        );
    }
    s.push_str("</ul><p>Times on the axes are UTC; report times show UTC and the local time of the machine that wrote the report.</p></div>");
    s
}

fn log_lines_html(s: &mut String, lines: &[LogLineReport]) {
    s.push_str(r#"<pre class="log">"#);
    for l in lines {
        let _ = writeln!(
            s,
            "{} [{}] {}",
            esc(&l.at),
            esc(&clean(&l.level)),
            esc(&clean(&l.text))
        );
    }
    s.push_str("</pre>");
}

fn gap_html(g: &GapReport, i: usize) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<div class="gap"><p><b>gap {i}</b>: <b style="color:{}">{}</b> &mdash; {} silent {:.3} s (limit {} s, {:.1}&times;) from {} to {}, ended by {}; consequence <b>{}</b>{}</p><ul>"#,
        cause_colour(g.cause),
        esc(g.cause.as_str()),
        esc(g.direction.as_str()),
        g.silence_s,
        g.limit_s,
        g.ratio,
        esc(&both_times(&g.start)),
        esc(&both_times(&g.end)),
        esc(g.ended_by.as_str()),
        esc(g.consequence.as_str()),
        g.merged_cause.map_or(String::new(), |m| format!(
            "; two-ended verdict <b>{}</b>",
            esc(m.as_str())
        ))
    );
    for e in &g.evidence {
        let _ = write!(s, "<li>{}</li>", esc(&clean(e)));
    }
    s.push_str("</ul>");
    if let Some(j) = g.consequence_of {
        let _ = write!(
            s,
            "<p>the receiver's zero window: a consequence of gap {}</p>",
            j + 1
        );
    }
    if let Some(p) = &g.process {
        let _ = write!(s, "<p>process: {}</p>", esc(&super::text::process_text(p)));
    }
    if !g.broker_log.is_empty() {
        s.push_str("<p>broker log (the log's own clock):</p>");
        log_lines_html(&mut s, &g.broker_log);
    }
    s.push_str("</div>");
    s
}

/// One connection's section: heading, facts, timeline, notes, gaps, log.
fn connection_html(s: &mut String, conn: &ConnectionReport) {
    let longest = conn
        .directions
        .values()
        .map(|d| d.longest_silence_s)
        .fold(0.0_f64, f64::max);
    let _ = write!(
        s,
        r#"<p class="facts">heartbeat {} ({}); {}; started {}; ended: {} {}{}; longest silence {longest:.3} s</p>"#,
        conn.heartbeat
            .value_s
            .map_or("unknown".into(), |v| format!("{v} s")),
        esc(conn.heartbeat.source.as_str()),
        esc(conn.health.status.as_str()),
        esc(&both_times(&conn.first_seen)),
        esc(conn.ended.by.map_or("", EndedBy::as_str)),
        esc(conn.ended.how.as_str()),
        conn.ended
            .at
            .as_deref()
            .map_or(String::new(), |a| format!(" at {}", esc(&both_times(a)))),
    );
    s.push_str(&timeline_svg(conn));
    let mut notes: Vec<String> = super::text::caveats(conn);
    notes.extend(health_notes(conn));
    for (name, d) in &conn.directions {
        notes.push(format!(
            "{name}: {}, {}, {}, {}",
            count(d.bytes, "byte", "bytes"),
            count(d.frames, "frame", "frames"),
            count(d.heartbeats, "heartbeat", "heartbeats"),
            count(d.retransmissions, "retransmission", "retransmissions")
        ));
    }
    s.push_str("<ul>");
    for n in notes {
        let _ = write!(s, "<li>{}</li>", esc(&clean(&n)));
    }
    s.push_str("</ul>");
    for (i, g) in conn.gaps.iter().enumerate() {
        s.push_str(&gap_html(g, i + 1));
    }
    if let Some(l) = &conn.broker_log {
        let _ = write!(
            s,
            "<details class=\"connlog\"><summary>broker log: process {}, {}</summary>",
            esc(&clean(&l.process)),
            count(l.lines.len() as u64, "line", "lines")
        );
        log_lines_html(s, &l.lines);
        s.push_str("</details>");
    }
}

fn conn_heading(conn: &ConnectionReport) -> String {
    format!(
        "[{}] {} &rarr; {} <small>{}</small>",
        conn.id,
        esc(&conn.client),
        esc(&conn.broker),
        esc(&clean(conn.client_name.as_deref().unwrap_or("")))
    )
}

/// A merged verdict's colour: its single-capture cause's, or teal for a
/// loss only two captures show.
fn merged_colour(m: MergedCause) -> String {
    let cause = match m {
        MergedCause::ClientStall => Cause::ClientStall,
        MergedCause::BrokerStall => Cause::BrokerStall,
        MergedCause::PeerUnreachable => Cause::PeerUnreachable,
        MergedCause::BrokerBlocked => Cause::BrokerBlocked,
        MergedCause::CaptureLoss => Cause::CaptureLoss,
        MergedCause::Unknown => Cause::Unknown,
        MergedCause::LostInNetwork => return "#16a085".to_owned(),
    };
    cause_colour(cause)
}

/// The two-ended part: both captures, the clock offset, one merged verdict
/// per silence.
fn merge_html(s: &mut String, m: &MergeReport) {
    s.push_str(r#"<section class="merge"><h2>Two-ended verdicts</h2><table><tr><th>side</th><th>file</th><th>link type</th><th>packets</th><th>from</th><th>connections</th><th>single-capture gaps</th></tr>"#);
    for src in &m.sources {
        let _ = write!(
            s,
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
            esc(src.side.as_str()),
            esc(&clean(&src.file)),
            esc(&src.link_type),
            src.packets,
            esc(&src.first_packet.as_deref().map_or("?".into(), both_times)),
            src.connections,
            src.gaps,
            if src.complete { "" } else { " (cut short)" }
        );
    }
    s.push_str("</table>");
    let c = &m.clock_offset;
    let _ = write!(
        s,
        "<p>clock: {} = {} {:+.6} s{} ({} and {} matched); merged times are in {}'s clock.</p>",
        esc(&clean(&c.of)),
        esc(&clean(&c.relative_to)),
        c.estimate_s,
        c.uncertainty_s
            .map_or(" (uncertainty unknown)".to_owned(), |u| format!(
                " &plusmn; {u:.6} s"
            )),
        count(
            c.samples_client_to_broker as u64,
            "client-to-broker segment",
            "client-to-broker segments"
        ),
        count(
            c.samples_broker_to_client as u64,
            "broker-to-client segment",
            "broker-to-client segments"
        ),
        esc(&clean(&m.reference))
    );
    for w in &m.warnings {
        let _ = write!(s, "<p>&#9888; {}</p>", esc(&clean(w)));
    }
    let _ = write!(
        s,
        "<p>{} in both captures, {}.</p>",
        count(
            m.summary.matched_connections as u64,
            "connection",
            "connections"
        ),
        count(m.summary.gaps as u64, "merged gap", "merged gaps")
    );
    for (i, conn) in m.connections.iter().enumerate() {
        let _ = write!(
            s,
            "<h3>[{}] {} &rarr; {} <small>{}</small></h3>",
            i + 1,
            esc(&conn.client),
            esc(&conn.broker),
            esc(&clean(conn.client_name.as_deref().unwrap_or("")))
        );
        if conn.gaps.is_empty() {
            s.push_str("<p>no gaps in either capture</p>");
        }
        for g in &conn.gaps {
            let singles: Vec<String> = g
                .single
                .iter()
                .map(|v| format!("{} side: {} ({:.3} s)", v.side, v.cause, v.silence_s))
                .collect();
            let colour = merged_colour(g.merged_cause);
            let _ = write!(
                s,
                r#"<div class="gap"><p><b style="color:{colour}">{}</b> &mdash; {} silent {:.3} s (limit {} s) from {} to {}; consequence <b>{}</b>; single captures: {}</p><ul>"#,
                esc(g.merged_cause.as_str()),
                esc(g.direction.as_str()),
                g.silence_s,
                g.limit_s,
                esc(&both_times(&g.start)),
                esc(&both_times(&g.end)),
                esc(g.consequence.as_str()),
                esc(&singles.join(", "))
            );
            for l in &g.seen_at {
                let _ = write!(s, "<li>{}</li>", esc(&clean(l)));
            }
            s.push_str("</ul></div>");
        }
    }
    for src in &m.sources {
        for u in &src.unmatched {
            let _ = write!(
                s,
                "<p>only in {} ({} side): [{}] {} &rarr; {}, {}</p>",
                esc(&clean(&src.file)),
                esc(src.side.as_str()),
                u.id,
                esc(&u.client),
                esc(&u.broker),
                count(u.gaps as u64, "gap", "gaps")
            );
        }
    }
    s.push_str("</section>");
}

/// The broker log's own section.
fn broker_log_html(s: &mut String, b: &BrokerLogReport) {
    let files: Vec<String> = b.files.iter().map(|f| clean(f).into_owned()).collect();
    let _ = write!(
        s,
        "<section class=\"brokerlog\"><h2>Broker log</h2><p>{}; {}</p>",
        esc(&files.join(", ")),
        b.clock_offset_s.map_or_else(
            || "no capture connection appears in the log".to_owned(),
            |o| format!(
                "clock: log = capture {o:+.6} s (median over {})",
                count(
                    b.joined_connections as u64,
                    "joined connection",
                    "joined connections"
                )
            )
        )
    );
    if !b.alarms.is_empty() {
        s.push_str("<p>alarms and blocked connections:</p>");
        log_lines_html(s, &b.alarms);
    }
    for l in &b.log_only {
        let _ = write!(
            s,
            "<details><summary>only in the log: {} &rarr; {} ({}, {})</summary>",
            esc(&clean(&l.client)),
            esc(&clean(&l.broker)),
            esc(&clean(&l.process)),
            count(l.lines.len() as u64, "line", "lines")
        );
        log_lines_html(s, &l.lines);
        s.push_str("</details>");
    }
    s.push_str("</section>");
}

/// The self-contained HTML report: a summary, the two-ended verdicts when
/// there are two captures, a legend, every connection with its timeline
/// (flagged ones open, healthy ones collapsed), and the broker log.
#[must_use]
#[allow(clippy::too_many_lines)]
pub fn to_html(r: &Report) -> String {
    let mut s = String::new();
    let title = format!("hbscope report: {}", clean(&r.capture.source));
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1100px}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}} th{{background:#f3f3f3}}
.flag{{background:#fff3f0}} .gap{{margin-left:1em;border-left:3px solid #ddd;padding-left:.6em}} code{{background:#f5f5f5}}
.legend ul{{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3em 1.4em;font-size:13px}}
.legend li{{display:flex;align-items:center;gap:.3em}} .legend svg{{vertical-align:middle}}
pre.log{{background:#f7f7f7;border:1px solid #ddd;padding:.4em;font-size:12px;white-space:pre-wrap}}
details.conn{{margin:.4em 0}} details.conn>summary{{cursor:pointer;font-weight:600}}
.note{{font-size:12px;color:#555}} .facts{{font-size:13px}} h2 small,h3 small{{font-weight:normal;color:#555}}
</style></head><body><h1>{}</h1>"#,
        esc(&title),
        esc(&title)
    );
    let c = &r.capture;
    let _ = write!(
        s,
        "<p>{}, link type {}, {} s from {} to {}; {}, {} flagged, {}.</p>",
        count(c.packets, "packet", "packets"),
        esc(&c.link_type),
        c.duration_s.map_or("?".into(), |d| format!("{d:.3}")),
        esc(&c.first_packet.as_deref().map_or("?".into(), both_times)),
        esc(&c.last_packet.as_deref().map_or("?".into(), both_times)),
        count(
            r.summary.connections as u64,
            "AMQP connection",
            "AMQP connections"
        ),
        r.summary.flagged_connections,
        count(r.summary.gaps as u64, "gap", "gaps")
    );
    if !c.complete {
        s.push_str("<p>&#9888; the capture file is cut short; reporting what was read</p>");
    }
    for w in &c.warnings {
        let _ = write!(s, "<p>&#9888; {}</p>", esc(&clean(&w.message)));
    }
    let (head, recs) = health_summary_lines(&r.summary.heartbeat_health);
    if let Some(h) = head {
        let _ = write!(s, "<p>{}</p>", esc(&h));
    }
    if !recs.is_empty() {
        s.push_str("<ul>");
        for rec in recs {
            let _ = write!(s, "<li>{}</li>", esc(&rec));
        }
        s.push_str("</ul>");
    }
    let ended = ended_not_listed_lines(&r.summary);
    if let Some((head, pairs)) = ended.split_first() {
        let _ = write!(s, "<p>{}</p>", esc(head));
        if !pairs.is_empty() {
            s.push_str("<ul>");
            for p in pairs {
                let _ = write!(s, "<li>{}</li>", esc(p));
            }
            s.push_str("</ul>");
        }
    }
    if let Some(m) = &r.merge {
        merge_html(&mut s, m);
        let _ = write!(
            s,
            "<h2>Connections as {} shows them</h2>",
            esc(&clean(&m.reference))
        );
    }
    s.push_str("<table><tr><th>#</th><th>client</th><th>broker</th><th>client name</th><th>heartbeat</th><th>longest silence</th><th>gaps</th><th>worst cause</th><th>state</th></tr>");
    for conn in &r.connections {
        let longest = conn
            .directions
            .values()
            .map(|d| d.longest_silence_s)
            .fold(0.0_f64, f64::max);
        let worst = conn.gaps.first().map_or("", |g| g.cause.as_str());
        let _ = write!(
            s,
            r##"<tr class="{}"><td><a href="#conn-{}">{}</a></td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{longest:.3} s</td><td>{}</td><td>{}</td><td>{}</td></tr>"##,
            if conn.gaps.is_empty() { "" } else { "flag" },
            conn.id,
            conn.id,
            esc(&conn.client),
            esc(&conn.broker),
            esc(&clean(conn.client_name.as_deref().unwrap_or(""))),
            conn.heartbeat
                .value_s
                .map_or("?".into(), |v| format!("{v} s")),
            esc(conn.heartbeat.source.as_str()),
            conn.gaps.len(),
            esc(worst),
            esc(conn.state.as_str())
        );
    }
    s.push_str("</table>");
    if !r.connections.is_empty() {
        s.push_str(&legend_html());
    }
    for conn in r.connections.iter().filter(|c| !c.gaps.is_empty()) {
        let _ = write!(
            s,
            r#"<section class="conn flagged" id="conn-{}"><h2>{}</h2>"#,
            conn.id,
            conn_heading(conn)
        );
        connection_html(&mut s, conn);
        s.push_str("</section>");
    }
    let healthy: Vec<&ConnectionReport> =
        r.connections.iter().filter(|c| c.gaps.is_empty()).collect();
    if !healthy.is_empty() {
        let _ = write!(s, "<h2>Connections without gaps ({})</h2>", healthy.len());
    }
    let more = healthy.len().saturating_sub(HEALTHY_DRAWN);
    for (i, conn) in healthy.into_iter().enumerate() {
        if i == HEALTHY_DRAWN {
            let _ = write!(
                s,
                "<details class=\"conn\"><summary>{more} more without a timeline (only the first {HEALTHY_DRAWN} are drawn)</summary><ul>"
            );
        }
        if i >= HEALTHY_DRAWN {
            let _ = write!(
                s,
                r#"<li id="conn-{}">{} &mdash; {}</li>"#,
                conn.id,
                conn_heading(conn),
                esc(conn.health.status.as_str())
            );
            continue;
        }
        let _ = write!(
            s,
            r#"<details class="conn" id="conn-{}"><summary>{} &mdash; {}</summary>"#,
            conn.id,
            conn_heading(conn),
            esc(conn.health.status.as_str())
        );
        connection_html(&mut s, conn);
        s.push_str("</details>");
    }
    if more > 0 {
        s.push_str("</ul></details>");
    }
    if let Some(b) = &r.broker_log {
        broker_log_html(&mut s, b);
    }
    let _ = writeln!(
        s,
        "<p><small>hbscope {}; schema {}; the SASL response is never included.</small></p></body></html>",
        esc(r.tool.version),
        r.schema_version
    );
    s
}

fn md_log_lines(s: &mut String, lines: &[LogLineReport]) {
    // List items, escaped like every other string from outside: a code
    // block would pass markup through to renderers that allow raw HTML.
    for l in lines {
        let _ = writeln!(s, "- `{}` [{}] {}", l.at, md(&l.level), md(&l.text));
    }
    s.push('\n');
}

/// The two-ended part of the Markdown report.
fn merge_markdown(s: &mut String, m: &MergeReport) {
    let _ = writeln!(s, "### Two-ended verdicts\n");
    for src in &m.sources {
        let _ = writeln!(
            s,
            "- {} side: `{}` ({}, {}, {}, {}{})",
            src.side,
            clean(&src.file).replace('`', "'"),
            src.link_type,
            count(src.packets, "packet", "packets"),
            count(src.connections as u64, "connection", "connections"),
            count(src.gaps as u64, "single-capture gap", "single-capture gaps"),
            if src.complete { "" } else { ", cut short" }
        );
    }
    let c = &m.clock_offset;
    let _ = writeln!(
        s,
        "\nclock: `{}` = `{}` {:+.6} s{}; merged times are in `{}`'s clock. {} in both captures, **{}**.\n",
        clean(&c.of).replace('`', "'"),
        clean(&c.relative_to).replace('`', "'"),
        c.estimate_s,
        c.uncertainty_s
            .map_or(" (uncertainty unknown)".to_owned(), |u| format!(" ± {u:.6} s")),
        clean(&m.reference).replace('`', "'"),
        count(m.summary.matched_connections as u64, "connection", "connections"),
        count(m.summary.gaps as u64, "merged gap", "merged gaps")
    );
    for w in &m.warnings {
        let _ = writeln!(s, "> {}\n", md(w));
    }
    for (i, conn) in m.connections.iter().enumerate() {
        if conn.gaps.is_empty() {
            continue;
        }
        let _ = writeln!(
            s,
            "#### [{}] {} -> {} {}\n",
            i + 1,
            conn.client,
            conn.broker,
            md(conn.client_name.as_deref().unwrap_or(""))
        );
        for g in &conn.gaps {
            let singles: Vec<String> = g
                .single
                .iter()
                .map(|v| format!("{} side: {} ({:.3} s)", v.side, v.cause, v.silence_s))
                .collect();
            let _ = writeln!(
                s,
                "**{}** ({}): {} silent {:.3} s, limit {} s, from {} to {}; single captures: {}\n",
                g.merged_cause,
                g.consequence,
                g.direction,
                g.silence_s,
                g.limit_s,
                g.start,
                g.end,
                singles.join(", ")
            );
            for l in &g.seen_at {
                let _ = writeln!(s, "- {}", md(l));
            }
            s.push('\n');
        }
    }
}

/// The report as Markdown for a ticket.
#[must_use]
pub fn to_markdown(r: &Report) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "## hbscope: `{}`\n",
        clean(&r.capture.source).replace('`', "'")
    );
    let _ = writeln!(
        s,
        "{} ({}), {}, **{} flagged**, {}. Times are UTC.\n",
        count(r.capture.packets, "packet", "packets"),
        r.capture.link_type,
        count(
            r.summary.connections as u64,
            "AMQP connection",
            "AMQP connections"
        ),
        r.summary.flagged_connections,
        count(r.summary.gaps as u64, "gap", "gaps")
    );
    if let Some(m) = &r.merge {
        merge_markdown(&mut s, m);
        let _ = writeln!(
            s,
            "### Connections as `{}` shows them\n",
            clean(&m.reference).replace('`', "'")
        );
    }
    s.push_str("| # | client | broker | client name | heartbeat | gaps | state |\n|---|---|---|---|---|---|---|\n");
    for c in &r.connections {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} ({}) | {} | {} |",
            c.id,
            c.client,
            c.broker,
            md(c.client_name.as_deref().unwrap_or("")),
            c.heartbeat.value_s.map_or("?".into(), |v| format!("{v} s")),
            c.heartbeat.source,
            c.gaps.len(),
            c.state
        );
    }
    let (head, recs) = health_summary_lines(&r.summary.heartbeat_health);
    if let Some(h) = head {
        let _ = writeln!(s, "\n{h}");
        for rec in &recs {
            let _ = writeln!(s, "- {}", md(rec));
        }
    }
    let ended = ended_not_listed_lines(&r.summary);
    if let Some((head, pairs)) = ended.split_first() {
        let _ = writeln!(s, "\n{}", md(head));
        for p in pairs {
            let _ = writeln!(s, "- {}", md(p));
        }
    }
    for c in &r.connections {
        let notes = health_notes(c);
        if !notes.is_empty() {
            let _ = writeln!(s, "\n[{}] {} -> {}:", c.id, c.client, c.broker);
            for n in notes {
                let _ = writeln!(s, "- {}", md(&n));
            }
        }
    }
    for c in r.connections.iter().filter(|c| !c.gaps.is_empty()) {
        let _ = writeln!(s, "\n### [{}] {} -> {}", c.id, c.client, c.broker);
        for line in super::text::caveats(c) {
            let _ = writeln!(s, "\n**{line}**");
        }
        for g in &c.gaps {
            let _ = writeln!(
                s,
                "\n**{}** ({}): {} silent {:.3} s, limit {} s ({:.1}x), from {} to {}, ended by {}{}{}\n",
                g.cause,
                g.consequence,
                g.direction,
                g.silence_s,
                g.limit_s,
                g.ratio,
                g.start,
                g.end,
                g.ended_by,
                g.consequence_of.map_or(String::new(), |j| format!(
                    "; the receiver's zero window: a consequence of gap {}",
                    j + 1
                )),
                g.merged_cause
                    .map_or(String::new(), |m| format!("; two-ended verdict **{m}**"))
            );
            for e in &g.evidence {
                let _ = writeln!(s, "- {}", md(e));
            }
            if !g.broker_log.is_empty() {
                s.push_str("\nbroker log:\n\n");
                md_log_lines(&mut s, &g.broker_log);
            }
        }
    }
    if let Some(b) = &r.broker_log {
        let _ = writeln!(
            s,
            "\n### Broker log\n\n{}; {}\n",
            b.files
                .iter()
                .map(|f| format!("`{}`", clean(f).replace('`', "'")))
                .collect::<Vec<_>>()
                .join(", "),
            b.clock_offset_s.map_or_else(
                || "no capture connection appears in the log".to_owned(),
                |o| format!(
                    "clock: log = capture {o:+.6} s (median over {})",
                    count(
                        b.joined_connections as u64,
                        "joined connection",
                        "joined connections"
                    )
                )
            )
        );
        if !b.alarms.is_empty() {
            s.push_str("alarms:\n\n");
            md_log_lines(&mut s, &b.alarms);
        }
        for l in &b.log_only {
            let _ = writeln!(
                s,
                "- only in the log: {} -> {} ({}, {})",
                md(&l.client),
                md(&l.broker),
                md(&l.process),
                count(l.lines.len() as u64, "line", "lines")
            );
        }
    }
    s
}

/// The two-ended lines of the summary: both files, the clock offset, one
/// line per merged gap.
fn summary_merge(s: &mut String, m: &MergeReport) {
    let sides: Vec<String> = m
        .sources
        .iter()
        .map(|src| format!("{} side {}", src.side, clean(&src.file)))
        .collect();
    let causes: Vec<String> = m
        .summary
        .gaps_by_merged_cause
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let _ = writeln!(
        s,
        "two-ended: {}; clock offset {:+.6} s; {} in both, {}{}",
        sides.join(", "),
        m.clock_offset.estimate_s,
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
    for conn in &m.connections {
        for g in &conn.gaps {
            let singles: Vec<String> = g
                .single
                .iter()
                .map(|v| format!("{} side {}", v.side, v.cause))
                .collect();
            let _ = writeln!(
                s,
                "  {} -> {} {} {:.3} s: {} ({})",
                conn.client,
                conn.broker,
                g.direction,
                g.silence_s,
                g.merged_cause,
                singles.join(", ")
            );
        }
    }
}

/// One line per flagged connection, grouped by client name, with counts per cause.
#[must_use]
pub fn to_summary(r: &Report) -> String {
    let mut groups: BTreeMap<String, Vec<&ConnectionReport>> = BTreeMap::new();
    for c in r.connections.iter().filter(|c| !c.gaps.is_empty()) {
        let name = c
            .client_name
            .as_deref()
            .map_or_else(|| "(unnamed)".to_owned(), |n| clean(n).into_owned());
        // oslo.messaging names are argv0:pid:uuid; group by the program.
        let key = name.split(':').next().unwrap_or(&name).to_owned();
        groups.entry(key).or_default().push(c);
    }
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}: {}, {} flagged, {}",
        clean(&r.capture.source),
        count(r.summary.connections as u64, "connection", "connections"),
        r.summary.flagged_connections,
        count(r.summary.gaps as u64, "gap", "gaps")
    );
    if let Some(m) = &r.merge {
        summary_merge(&mut s, m);
    }
    for (name, conns) in groups {
        let mut causes: BTreeMap<&str, usize> = BTreeMap::new();
        for g in conns.iter().flat_map(|c| &c.gaps) {
            *causes.entry(g.cause.as_str()).or_default() += 1;
        }
        // Gaps over the per-connection cap count too.
        for (cause, n) in conns.iter().flat_map(|c| &c.gaps_not_listed_by_cause) {
            *causes.entry(cause).or_default() += usize::try_from(*n).unwrap_or(usize::MAX);
        }
        let counts: Vec<String> = causes.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(
            s,
            "{name}: {}: {}",
            count(conns.len() as u64, "connection", "connections"),
            counts.join(", ")
        );
        for c in conns {
            // Over the cap the worst gaps are the ones listed: the longest is among them.
            let worst = c.gaps.iter().map(|g| g.silence_s).fold(0.0_f64, f64::max);
            let listed = c.gaps.len() as u64;
            let _ = writeln!(
                s,
                "  {} -> {} {}{}, longest {:.3} s, {}",
                c.client,
                c.broker,
                count(listed + c.gaps_not_listed, "gap", "gaps"),
                if c.gaps_not_listed > 0 {
                    format!(" ({} not listed)", c.gaps_not_listed)
                } else {
                    String::new()
                },
                worst,
                c.gaps.first().map_or("", |g| g.cause.as_str())
            );
            for line in super::text::caveats(c)
                .iter()
                .skip(usize::from(c.gaps_not_listed > 0))
            {
                let _ = writeln!(s, "    {line}");
            }
            // The broker's own words on the worst gap, when its log was given.
            if let Some(l) = c.gaps.first().and_then(|g| g.broker_log.last()) {
                let _ = writeln!(
                    s,
                    "    broker log: [{}] {}",
                    clean(&l.level),
                    clean(&l.text)
                );
            }
        }
    }
    let (head, recs) = health_summary_lines(&r.summary.heartbeat_health);
    if let Some(h) = head {
        let _ = writeln!(s, "{h}");
    }
    for rec in recs {
        let _ = writeln!(s, "  {rec}");
    }
    for (i, line) in ended_not_listed_lines(&r.summary).iter().enumerate() {
        let indent = if i == 0 { "" } else { "  " };
        let _ = writeln!(s, "{indent}{line}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_parse_differences_are_exact() {
        let a = secs_of("2026-11-26T21:09:23.795636000Z").unwrap_or(0.0);
        let b = secs_of("2026-11-26T21:09:35.784115000Z").unwrap_or(0.0);
        assert!((b - a - 11.988_479).abs() < 1e-6);
        let c = secs_of("2026-12-01T00:00:00.000000000Z").unwrap_or(0.0);
        let d = secs_of("2026-11-30T23:59:59.000000000Z").unwrap_or(0.0);
        assert!((c - d - 1.0).abs() < 1e-9);
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc("<a href='x'>&</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&lt;/a&gt;"
        );
    }
}
