//! Shareable renderings of a [`Report`]: one self-contained HTML file (inline
//! CSS and SVG, no network fetches), Markdown for a ticket, and a one-line-per-
//! flagged-connection summary grouped by client name.
//!
//! They read only the report, never the engine, so what a customer sees in
//! the HTML is exactly what the JSON says.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::analysis::{Cause, RoleDirection};
use crate::report::sanitize::{markdown as md, text as clean};
use crate::report::text::{health_notes, health_summary_lines};
use crate::report::EndedBy;
use crate::report::{ConnectionReport, GapReport, Report};

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

/// An SVG timeline of one connection: two lanes, gaps shaded by cause, the
/// limit marked from each gap's start, the connection's end marked.
fn timeline_svg(c: &ConnectionReport) -> String {
    let (Some(t0), Some(t1)) = (secs_of(&c.first_seen), secs_of(&c.last_seen)) else {
        return String::new();
    };
    let span = (t1 - t0).max(1.0);
    let (w, left, lane_h) = (900.0_f64, 130.0_f64, 34.0_f64);
    let x = |t: f64| left + (t - t0) / span * (w - left - 10.0);
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="124" role="img" aria-label="timeline">"#
    );
    for (i, lane) in [RoleDirection::ClientToBroker, RoleDirection::BrokerToClient]
        .iter()
        .enumerate()
    {
        #[allow(clippy::cast_precision_loss)]
        let y = 18.0 + i as f64 * (lane_h + 12.0);
        let _ = write!(
            s,
            r##"<text x="4" y="{:.1}" font-size="12">{lane}</text><rect x="{left}" y="{y}" width="{:.1}" height="{lane_h}" fill="#eef6ee" stroke="#9c9"/>"##,
            y + 21.0,
            w - left - 10.0
        );
        for g in c.gaps.iter().filter(|g| g.direction == *lane) {
            if let (Some(a), Some(b)) = (secs_of(&g.start), secs_of(&g.end)) {
                let col = cause_colour(g.cause);
                let _ = write!(
                    s,
                    r#"<rect x="{:.1}" y="{y}" width="{:.1}" height="{lane_h}" fill="{col}" fill-opacity="0.55"><title>{} {:.3} s ({:.1}x limit)</title></rect>"#,
                    x(a),
                    (x(b) - x(a)).max(1.0),
                    esc(g.cause.as_str()),
                    g.silence_s,
                    g.ratio
                );
                let lim = x(a + g.limit_s);
                let _ = write!(
                    s,
                    r##"<line x1="{lim:.1}" x2="{lim:.1}" y1="{:.1}" y2="{:.1}" stroke="#000" stroke-dasharray="3,2"/>"##,
                    y - 3.0,
                    y + lane_h + 3.0
                );
            }
        }
    }
    if let Some(at) = c.ended.at.as_deref().and_then(secs_of) {
        let ex = x(at);
        let _ = write!(
            s,
            r##"<line x1="{ex:.1}" x2="{ex:.1}" y1="14" y2="104" stroke="#333"/><text x="{ex:.1}" y="11" font-size="11" text-anchor="end">{} {}</text>"##,
            esc(c.ended.by.map_or("", EndedBy::as_str)),
            esc(c.ended.how.as_str())
        );
    }
    let _ = write!(
        s,
        r#"<text x="{left}" y="118" font-size="11">0 s</text><text x="{:.1}" y="118" font-size="11" text-anchor="end">{span:.1} s</text></svg>"#,
        w - 10.0
    );
    s
}

fn gap_html(g: &GapReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        r#"<div class="gap"><p><b style="color:{}">{}</b> &mdash; {} silent {:.3} s (limit {} s, {:.1}&times;), ended by {}; consequence <b>{}</b></p><ul>"#,
        cause_colour(g.cause),
        esc(g.cause.as_str()),
        esc(g.direction.as_str()),
        g.silence_s,
        g.limit_s,
        g.ratio,
        esc(g.ended_by.as_str()),
        esc(g.consequence.as_str())
    );
    if let Some(j) = g.consequence_of {
        let _ = write!(
            s,
            "<p>the receiver's zero window: a consequence of gap {}</p>",
            j + 1
        );
    }
    for e in &g.evidence {
        let _ = write!(s, "<li>{}</li>", esc(&clean(e)));
    }
    s.push_str("</ul></div>");
    s
}

/// The self-contained HTML report.
#[must_use]
pub fn to_html(r: &Report) -> String {
    let mut s = String::new();
    let title = format!("hbscope report: {}", r.capture.source);
    let _ = write!(
        s,
        r#"<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{}</title><style>
body{{font-family:system-ui,sans-serif;margin:2em;color:#222}} table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;font-size:13px}} th{{background:#f3f3f3}}
.flag{{background:#fff3f0}} .gap{{margin-left:1em}} code{{background:#f5f5f5}}
</style></head><body><h1>{}</h1>"#,
        esc(&title),
        esc(&title)
    );
    let c = &r.capture;
    let _ = write!(
        s,
        "<p>{} packets, link type {}, {} s from {}; {} AMQP connections, {} flagged, {} gaps.</p>",
        c.packets,
        esc(&c.link_type),
        c.duration_s.map_or("?".into(), |d| format!("{d:.3}")),
        esc(c.first_packet.as_deref().unwrap_or("?")),
        r.summary.connections,
        r.summary.flagged_connections,
        r.summary.gaps
    );
    for w in &c.warnings {
        let _ = write!(s, "<p>&#9888; {}</p>", esc(&w.message));
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
            r#"<tr class="{}"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} ({})</td><td>{longest:.3} s</td><td>{}</td><td>{}</td><td>{}</td></tr>"#,
            if conn.gaps.is_empty() { "" } else { "flag" },
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
    for conn in r.connections.iter().filter(|c| c.gaps.is_empty()) {
        let notes = health_notes(conn);
        if notes.is_empty() {
            continue;
        }
        let _ = write!(
            s,
            "<h2>[{}] {} &rarr; {} <small>{}</small></h2><ul>",
            conn.id,
            esc(&conn.client),
            esc(&conn.broker),
            esc(&clean(conn.client_name.as_deref().unwrap_or("")))
        );
        for n in notes {
            let _ = write!(s, "<li>{}</li>", esc(&n));
        }
        s.push_str("</ul>");
    }
    for conn in r.connections.iter().filter(|c| !c.gaps.is_empty()) {
        let _ = write!(
            s,
            "<h2>[{}] {} &rarr; {} <small>{}</small></h2>",
            conn.id,
            esc(&conn.client),
            esc(&conn.broker),
            esc(&clean(conn.client_name.as_deref().unwrap_or("")))
        );
        s.push_str(&timeline_svg(conn));
        for line in super::text::caveats(conn) {
            let _ = write!(s, "<p><b>{}</b></p>", esc(&line));
        }
        let notes = health_notes(conn);
        if !notes.is_empty() {
            s.push_str("<ul>");
            for n in notes {
                let _ = write!(s, "<li>{}</li>", esc(&n));
            }
            s.push_str("</ul>");
        }
        for g in &conn.gaps {
            s.push_str(&gap_html(g));
        }
    }
    let _ = writeln!(
        s,
        "<p><small>hbscope {}; schema {}; the SASL response is never included.</small></p></body></html>",
        esc(r.tool.version),
        r.schema_version
    );
    s
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
        "{} packets ({}), {} AMQP connections, **{} flagged**, {} gaps.\n",
        r.capture.packets,
        r.capture.link_type,
        r.summary.connections,
        r.summary.flagged_connections,
        r.summary.gaps
    );
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
                "\n**{}** ({}): {} silent {:.3} s, limit {} s ({:.1}x), ended by {}{}\n",
                g.cause,
                g.consequence,
                g.direction,
                g.silence_s,
                g.limit_s,
                g.ratio,
                g.ended_by,
                g.consequence_of.map_or(String::new(), |j| format!(
                    "; the receiver's zero window: a consequence of gap {}",
                    j + 1
                ))
            );
            for e in &g.evidence {
                let _ = writeln!(s, "- {}", md(e));
            }
        }
    }
    s
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
        "{}: {} connections, {} flagged, {} gaps",
        clean(&r.capture.source),
        r.summary.connections,
        r.summary.flagged_connections,
        r.summary.gaps
    );
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
            "{name}: {} connection(s): {}",
            conns.len(),
            counts.join(", ")
        );
        for c in conns {
            // Over the cap the worst gaps are the ones listed: the longest is among them.
            let worst = c.gaps.iter().map(|g| g.silence_s).fold(0.0_f64, f64::max);
            let listed = c.gaps.len() as u64;
            let _ = writeln!(
                s,
                "  {} -> {} {} gap(s){}, longest {:.3} s, {}",
                c.client,
                c.broker,
                listed + c.gaps_not_listed,
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
        }
    }
    let (head, recs) = health_summary_lines(&r.summary.heartbeat_health);
    if let Some(h) = head {
        let _ = writeln!(s, "{h}");
    }
    for rec in recs {
        let _ = writeln!(s, "  {rec}");
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
