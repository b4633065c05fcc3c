//! Drawing: turns an [`App`] into widgets. Pure: reads the app, never changes it,
//! never reads a clock (all times shown are capture times, in UTC or, with
//! `--local-time`, the local zone: [`App::zone`]).

use crate::report::sanitize::text as clean;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style, Stylize};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span as TSpan, Text};
use ratatui::widgets::{
    Axis, Block, Borders, Cell, Chart, Clear, Dataset, GraphType, Paragraph, Row, Table,
    TableState, Wrap,
};
use ratatui::Frame;

use super::snapshot::{ConnView, GapView, PlayState, Snapshot};
use super::state::{help_box, App, Focus, Panes, View, HELP_ROWS};
use crate::analysis::timeline::{Kinds, TimelineEvent};
use crate::analysis::Cause;
use crate::model::{Span, Timestamp};
use crate::report::{ConnectionState, Zone};

/// Width of the lane labels in the timeline.
const LABEL: u16 = 6;

/// A cause's colour: the HTML report's ([`crate::report::html::cause_rgb`]),
/// so a stall looks the same in the terminal and in the browser.
#[must_use]
pub fn cause_color(c: Cause) -> Color {
    let (r, g, b) = crate::report::html::cause_rgb(c);
    Color::Rgb(r, g, b)
}

/// `NO_COLOR`: every cell keeps its symbol and modifiers (bold, reverse,
/// underline) but loses its colours.
fn strip_colours(f: &mut Frame<'_>) {
    let area = f.area();
    let buf = f.buffer_mut();
    for y in area.top()..area.bottom() {
        for x in area.left()..area.right() {
            if let Some(cell) = buf.cell_mut((x, y)) {
                cell.set_fg(Color::Reset);
                cell.set_bg(Color::Reset);
            }
        }
    }
}

fn row_style(c: &ConnView) -> Style {
    match (c.worst, c.heartbeat) {
        (Some(w), _) => Style::new().fg(cause_color(w)),
        (None, Some(0) | None) => Style::new().fg(Color::DarkGray),
        (None, Some(_)) => Style::new().fg(Color::Green),
    }
}

fn secs(s: Span) -> String {
    let v = s.as_secs_f64();
    if v >= 100.0 {
        format!("{v:.0}s")
    } else {
        format!("{v:.1}s")
    }
}

fn heartbeat_text(c: &ConnView) -> String {
    match c.heartbeat {
        Some(0) => "off".into(),
        Some(v) => format!("{v}s {}", c.heartbeat_source),
        None => "? unknown".into(),
    }
}

fn ratio_bar(ratio: Option<f64>, cells: usize) -> Line<'static> {
    let Some(r) = ratio else {
        return Line::from("-");
    };
    let half = cells / 2;
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let filled = ((r * half as f64).round().max(0.0) as usize).min(cells);
    let mut spans = vec![TSpan::raw(format!("{r:>5.2}x "))];
    let below = filled.min(half);
    spans.push(TSpan::styled(
        "█".repeat(below),
        Style::new().fg(Color::Green),
    ));
    if filled > half {
        spans.push(TSpan::styled(
            "█".repeat(filled - half),
            Style::new().fg(Color::Red),
        ));
    }
    if filled < half {
        spans.push(TSpan::styled(
            "·".repeat(half - filled),
            Style::new().fg(Color::DarkGray),
        ));
        spans.push(TSpan::styled("|", Style::new().fg(Color::Red)));
        spans.push(TSpan::styled(
            "·".repeat(cells - half),
            Style::new().fg(Color::DarkGray),
        ));
    } else if filled < cells {
        spans.push(TSpan::styled(
            "·".repeat(cells - filled),
            Style::new().fg(Color::DarkGray),
        ));
    }
    Line::from(spans)
}

/// Draws the whole screen.
pub fn draw(f: &mut Frame<'_>, app: &App) {
    draw_screen(f, app);
    if app.no_color {
        strip_colours(f);
    }
}

fn draw_screen(f: &mut Frame<'_>, app: &App) {
    let area = f.area();
    let Some(snap) = &app.snap else {
        f.render_widget(
            Paragraph::new("hbscope: opening the capture...").block(Block::bordered()),
            area,
        );
        return;
    };
    if let Some(err) = &snap.error {
        let text = Text::from(vec![
            Line::from("hbscope could not read the input").bold(),
            Line::from(""),
            Line::from(err.clone()),
            Line::from(""),
            Line::from("press q to quit"),
        ]);
        f.render_widget(
            Paragraph::new(text)
                .wrap(Wrap { trim: false })
                .block(Block::bordered().title(" error ")),
            area,
        );
        return;
    }
    let panes = Panes::of(area.height, app.focus);
    let chart_h = panes.chart;
    let [header, table, timeline, chart, bottom, footer] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(panes.table),
        Constraint::Length(panes.timeline),
        Constraint::Length(chart_h),
        Constraint::Min(4),
        Constraint::Length(1),
    ])
    .areas(area);
    draw_header(f, header, snap, app);
    draw_table(f, table, app);
    draw_timeline(f, timeline, app);
    if chart_h > 0 {
        draw_chart(f, chart, app);
    }
    draw_bottom(f, bottom, app);
    draw_footer(f, footer, app);
    if app.help {
        draw_help(f, area, app.help_scroll);
    }
}

fn state_text(snap: &Snapshot, app: &App) -> (String, Color) {
    let p = &snap.progress;
    let pct = p
        .total
        .filter(|t| *t > 0)
        .map(|t| {
            #[allow(clippy::cast_precision_loss)]
            let v = p.bytes as f64 * 100.0 / t as f64;
            format!(" {v:.0}%")
        })
        .unwrap_or_default();
    match snap.state {
        PlayState::Live if app.paused => ("FROZEN, still capturing".into(), Color::Yellow),
        PlayState::Live => ("capturing".into(), Color::Green),
        PlayState::Done => ("done".into(), Color::Green),
        _ if app.paused => (format!("PAUSED{pct}"), Color::Yellow),
        PlayState::Paused => (format!("PAUSED{pct}"), Color::Yellow),
        PlayState::Loading => (format!("loading{pct}"), Color::Cyan),
        PlayState::Playing { speed } => (format!("playing {speed}x{pct}"), Color::Cyan),
    }
}

fn draw_header(f: &mut Frame<'_>, area: Rect, snap: &Snapshot, app: &App) {
    if let Some(live) = &snap.live {
        draw_live_header(f, area, snap, live, app);
        return;
    }
    let c = &snap.header;
    let span = match (snap.first, snap.last) {
        (Some(a), Some(b)) => format!(
            "{} - {} ({:.1} s{})",
            app.zone.clock(a),
            app.zone.clock(b),
            b.since(a).as_secs_f64(),
            if app.zone == Zone::Utc {
                String::new()
            } else {
                format!(", {}", app.zone.label(a))
            }
        ),
        _ => "no packets".into(),
    };
    let (state, color) = state_text(snap, app);
    let warn = c.warnings;
    let line1 = Line::from(vec![
        TSpan::styled("hbscope ", Style::new().bold()),
        TSpan::raw(format!(
            "{}  {}  {} pkts  ",
            c.source, c.link_type, c.packets
        )),
        TSpan::styled(format!("[{state}]"), Style::new().fg(color).bold()),
        TSpan::styled(
            format!("  warnings: {warn}"),
            if warn > 0 {
                Style::new().fg(Color::Yellow)
            } else {
                Style::new()
            },
        ),
    ]);
    let s = &c.summary;
    let mut line2 = format!("{span} | {} conn, {}", s.connections, s.gaps_text());
    if let (false, Some(now)) = (snap.state == PlayState::Done, snap.now) {
        line2.push_str(&format!(" | now {}", app.zone.clock(now)));
    }
    if snap.state != PlayState::Done {
        let p = &snap.progress;
        line2.push_str(&format!(
            " | read {} pkts, {} of {} bytes",
            p.packets,
            p.bytes,
            p.total.map_or("?".into(), |t| t.to_string())
        ));
    }
    if let Some(w) = &c.first_warning {
        line2.push_str(&format!(" | warning: {w}"));
    }
    f.render_widget(Paragraph::new(vec![line1, Line::from(line2)]), area);
}

/// Live: interface, filter, elapsed time, packets, kernel drops; totals and now.
fn draw_live_header(
    f: &mut Frame<'_>,
    area: Rect,
    snap: &Snapshot,
    live: &crate::tui::LiveHeader,
    app: &App,
) {
    let c = &snap.header;
    let (state, color) = state_text(snap, app);
    let drops = if live.dropped > 0 {
        Style::new().fg(Color::Yellow).bold()
    } else {
        Style::new()
    };
    let line1 = Line::from(vec![
        TSpan::styled("hbscope live ", Style::new().bold()),
        TSpan::raw(format!("{}  ", c.source)),
        TSpan::styled(format!("[{state}]"), Style::new().fg(color).bold()),
        TSpan::raw(format!(
            "  {}  {} pkts  ",
            elapsed_text(live.elapsed),
            c.packets
        )),
        TSpan::styled(format!("{} dropped", live.dropped), drops),
    ]);
    let s = &c.summary;
    let mut line2 = format!("{} conn, {}", s.connections, s.gaps_text());
    if let Some(now) = snap.now {
        line2.push_str(&format!(" | now {}", app.zone.clock(now)));
        if app.zone != Zone::Utc {
            line2.push_str(&format!(" ({})", app.zone.label(now)));
        }
    }
    if c.warnings > 0 {
        line2.push_str(&format!(" | warnings: {}", c.warnings));
    }
    line2.push_str(&format!(" | filter `{}`", clean(&live.filter)));
    if let Some(w) = &c.first_warning {
        line2.push_str(&format!(" | {w}"));
    }
    f.render_widget(Paragraph::new(vec![line1, Line::from(line2)]), area);
}

/// Elapsed time as h:mm:ss.
fn elapsed_text(s: Span) -> String {
    let t = s.0.max(0) / 1_000_000_000;
    format!("{}:{:02}:{:02}", t / 3600, t / 60 % 60, t % 60)
}

fn draw_table(f: &mut Frame<'_>, area: Rect, app: &App) {
    let Some(snap) = &app.snap else { return };
    let focused = app.focus == Focus::Connections;
    let rows_idx = app.visible();
    let at = app.selected_row().map_or(0, |r| r + 1);
    let mut title = format!(
        " connections {at}/{} (sort: {}",
        rows_idx.len(),
        app.sort.as_str()
    );
    if app.flagged_only {
        title.push_str(", flagged only");
    }
    if !app.filter.is_empty() || app.filter_editing {
        title.push_str(&format!(", filter: {}", app.filter));
    }
    title.push_str(") ");
    let block = Block::bordered().title(title).border_style(if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    });
    if rows_idx.is_empty() {
        let msg = if snap.conns.is_empty() {
            if snap.state == PlayState::Done {
                "no AMQP 0-9-1 connections in this capture"
            } else {
                "no AMQP connection seen yet"
            }
        } else {
            "no connection matches the filter (f: flagged only, /: text)"
        };
        f.render_widget(Paragraph::new(msg).block(block).fg(Color::DarkGray), area);
        return;
    }
    let wide = area.width >= 110;
    let broker = area.width >= 140;
    let header_cells: Vec<&str> = if wide {
        let mut h = vec!["#", "client"];
        if broker {
            h.push("broker");
        }
        h.extend([
            "name",
            "heartbeat",
            "longest/limit",
            "gaps",
            "worst cause",
            "state",
        ]);
        h
    } else {
        vec![
            "#", "client", "name", "hb", "ratio", "gaps", "worst", "state",
        ]
    };
    let bar_cells = if wide { 8 } else { 6 };
    // Only the rows that fit are built (10,000 connections would otherwise
    // cost every frame). Scrolling matches ratatui's own: the selected row
    // is kept in view, at the bottom when it is below the first page.
    let fits = usize::from(area.height.saturating_sub(3)).max(1);
    let selected = app.selected_row();
    let offset = selected.map_or(0, |sel| (sel + 1).saturating_sub(fits));
    let rows: Vec<Row<'_>> = rows_idx
        .iter()
        .skip(offset)
        .take(fits)
        .filter_map(|i| snap.conns.get(*i))
        .map(|c| {
            let mut cells = vec![Cell::from(c.id.to_string()), Cell::from(c.client.clone())];
            if broker {
                cells.push(Cell::from(c.broker.clone()));
            }
            cells.push(Cell::from(c.name.clone().unwrap_or_else(|| "-".into())));
            cells.push(Cell::from(if wide {
                heartbeat_text(c)
            } else {
                match c.heartbeat {
                    Some(0) => "off".into(),
                    Some(v) => format!("{v}s"),
                    None => "?".into(),
                }
            }));
            cells.push(Cell::from(if wide {
                ratio_bar(c.ratio, bar_cells)
            } else {
                Line::from(c.ratio.map_or_else(|| "-".into(), |r| format!("{r:.2}x")))
            }));
            let open = c.gaps.iter().filter(|g| g.open).count();
            cells.push(Cell::from(if open > 0 {
                format!("{}+{open}", c.gaps.len() - open)
            } else {
                c.gaps.len().to_string()
            }));
            cells.push(Cell::from(c.worst.map_or("-", Cause::as_str)));
            cells.push(Cell::from(if wide {
                c.state.as_str()
            } else {
                short_state(c.state)
            }));
            Row::new(cells).style(row_style(c))
        })
        .collect();
    let widths: Vec<Constraint> = if wide {
        let mut w = vec![Constraint::Length(3), Constraint::Length(21)];
        if broker {
            w.push(Constraint::Length(21));
        }
        w.extend([
            Constraint::Fill(1),
            Constraint::Length(12),
            Constraint::Length(15),
            Constraint::Length(4),
            Constraint::Length(16),
            Constraint::Length(15),
        ]);
        w
    } else {
        vec![
            Constraint::Length(2),
            Constraint::Length(21),
            Constraint::Fill(1),
            Constraint::Length(3),
            Constraint::Length(6),
            Constraint::Length(4),
            Constraint::Length(12),
            Constraint::Length(10),
        ]
    };
    let table = Table::new(rows, widths)
        .header(Row::new(header_cells).style(Style::new().bold().underlined()))
        .block(block)
        .column_spacing(1)
        .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED))
        .highlight_symbol(">");
    let mut state = TableState::default().with_selected(selected.map(|sel| sel - offset));
    f.render_stateful_widget(table, area, &mut state);
}

fn short_state(state: ConnectionState) -> &'static str {
    match state {
        ConnectionState::ResetByBroker => "rst:broker",
        ConnectionState::ResetByClient => "rst:client",
        other => other.as_str(),
    }
}

/// Symbol and style of a lane cell holding the events `k`.
fn cell_symbol(k: Kinds) -> (&'static str, Style) {
    let order: [(Kinds, &str, Color); 9] = [
        (Kinds::RST, "R", Color::Red),
        (Kinds::FIN, "F", Color::Magenta),
        (Kinds::HOLE, "?", Color::Blue),
        (Kinds::RETRANSMISSION, "r", Color::LightRed),
        (Kinds::HEARTBEAT, "H", Color::Green),
        (Kinds::FRAME, "#", Color::Cyan),
        (Kinds::DATA, "#", Color::Cyan),
        (Kinds::KEEPALIVE, "k", Color::Yellow),
        (Kinds::PURE_ACK, ".", Color::Gray),
    ];
    for (kind, sym, color) in order {
        if k.contains(kind) {
            return (sym, Style::new().fg(color));
        }
    }
    (" ", Style::new())
}

fn col_of(view: &View, cols: u16, at: Timestamp) -> Option<usize> {
    if at < view.start || at >= view.end() || view.width.0 <= 0 {
        return None;
    }
    let off = i128::from(at.since(view.start).0) * i128::from(cols) / i128::from(view.width.0);
    usize::try_from(off).ok()
}

/// Columns of `view` covered by `[from, to]` (clipped to the view).
fn cols_between(view: &View, cols: u16, from: Timestamp, to: Timestamp) -> Option<(usize, usize)> {
    let n = usize::from(cols);
    if to < view.start || from >= view.end() || n == 0 {
        return None;
    }
    let a = col_of(view, cols, from.max(view.start)).unwrap_or(0);
    let b = col_of(view, cols, to).unwrap_or(n - 1);
    Some((a, b.min(n - 1)))
}

/// One lane of the timeline. `kill`: the client's lane, where the broker's
/// kill window (2-3x the limit after each client gap's start, the client's
/// last byte) is underlined.
fn lane_line<'a>(
    label: &'a str,
    events: &[TimelineEvent],
    gaps: &[&GapView],
    view: &View,
    cols: u16,
    kill: bool,
) -> Line<'a> {
    let n = usize::from(cols);
    let mut kinds = vec![Kinds::default(); n];
    for e in events {
        if let Some(c) = col_of(view, cols, e.at) {
            if let Some(k) = kinds.get_mut(c) {
                *k = k.with(e.kinds);
            }
        }
    }
    let mut bg: Vec<Option<Cause>> = vec![None; n];
    let mut limit_mark = vec![false; n];
    for g in gaps {
        let from = if g.start < view.start {
            Some(0)
        } else {
            col_of(view, cols, g.start)
        };
        let to = if g.end >= view.end() {
            Some(n.saturating_sub(1))
        } else {
            col_of(view, cols, g.end)
        };
        if let (Some(a), Some(b)) = (from, to) {
            for slot in bg.iter_mut().take(b + 1).skip(a) {
                *slot = Some(g.cause);
            }
        }
        if let Some(c) = col_of(view, cols, g.start.plus(g.limit)) {
            if let Some(m) = limit_mark.get_mut(c) {
                *m = true;
            }
        }
    }
    let mut window = vec![false; n];
    if kill {
        for g in gaps {
            let from = g.start.plus(Span(g.limit.0.saturating_mul(2)));
            let to = g.start.plus(Span(g.limit.0.saturating_mul(3)));
            if let Some((a, b)) = cols_between(view, cols, from, to) {
                for w in window.iter_mut().take(b + 1).skip(a) {
                    *w = true;
                }
            }
        }
    }
    let mut spans = vec![TSpan::styled(label, Style::new().bold())];
    for i in 0..n {
        let (mut sym, mut style) = cell_symbol(kinds[i]);
        if window[i] {
            style = style.add_modifier(Modifier::UNDERLINED);
        }
        if let Some(cause) = bg[i] {
            style = style.bg(cause_color(cause));
            if limit_mark[i] && (sym == " " || sym == ".") {
                style = style.fg(Color::White).bold();
                sym = "!";
            } else if sym == " " {
                style = style.fg(Color::Black);
                sym = "─";
            }
        }
        spans.push(TSpan::styled(sym, style));
    }
    Line::from(spans)
}

fn draw_timeline(f: &mut Frame<'_>, area: Rect, app: &App) {
    let (Some(c), Some(view)) = (app.selected(), app.view_window()) else {
        f.render_widget(
            Paragraph::new("select a connection")
                .block(Block::bordered().title(" timeline "))
                .fg(Color::DarkGray),
            area,
        );
        return;
    };
    let limit = c
        .limit
        .map_or_else(|| "none".into(), |l| format!("{} s", l.as_secs_f64()));
    let title = format!(
        " timeline #{} {}  view {}  limit {limit} ",
        c.id,
        c.client,
        secs(view.width)
    );
    let block = Block::bordered().title(title);
    let inner = block.inner(area);
    f.render_widget(block, area);
    let Some(tl) = &c.timeline else {
        f.render_widget(
            Paragraph::new("loading timeline...").fg(Color::DarkGray),
            inner,
        );
        return;
    };
    let cols = inner.width.saturating_sub(LABEL);
    let cd = c.client_dir;
    let cg: Vec<&GapView> = c.gaps.iter().filter(|g| g.dir == cd).collect();
    let bg: Vec<&GapView> = c.gaps.iter().filter(|g| g.dir != cd).collect();
    let mut lines = vec![
        lane_line("c->b  ", &tl.client, &cg, &view, cols, true),
        lane_line("b->c  ", &tl.broker, &bg, &view, cols, false),
    ];
    let left = app.zone.clock(view.start);
    let right = app.zone.clock(view.end());
    let mid = format!("<- {} ->", secs(view.width));
    let free = usize::from(cols).saturating_sub(left.len() + right.len());
    let pad_l = free.saturating_sub(mid.len()) / 2;
    let pad_r = free.saturating_sub(mid.len() + pad_l);
    let axis = if free > mid.len() {
        format!(
            "{left}{}{mid}{}{right}",
            " ".repeat(pad_l),
            " ".repeat(pad_r)
        )
    } else {
        format!("{left}{}{right}", " ".repeat(free))
    };
    lines.push(Line::from(vec![
        TSpan::raw(" ".repeat(usize::from(LABEL))),
        TSpan::styled(axis, Style::new().fg(Color::DarkGray)),
    ]));
    if inner.height > 3 {
        lines.push(
        Line::from(
            "H heartbeat # frame/data . ack r retrans k keepalive F fin R rst ? loss ─ gap ! limit _ kill",
        )
        .fg(Color::DarkGray),
    );
    }
    f.render_widget(Paragraph::new(lines), inner);
}

/// Sawtooth of the silence of one direction over the view: it grows from
/// each new-data event and drops to zero at the next one.
fn silence_points(events: &[TimelineEvent], view: &View, end: Timestamp) -> Vec<(f64, f64)> {
    let rel = |t: Timestamp| t.since(view.start).as_secs_f64();
    let mut pts = Vec::new();
    let mut prev: Option<Timestamp> = None;
    let stop = end.min(view.end());
    for e in events.iter().filter(|e| e.kinds.contains(Kinds::DATA)) {
        if e.at < view.start {
            prev = Some(e.at);
            continue;
        }
        if e.at > stop {
            break;
        }
        match prev {
            Some(p) => {
                if pts.is_empty() {
                    pts.push((0.0, view.start.since(p).as_secs_f64().max(0.0)));
                }
                pts.push((rel(e.at), e.at.since(p).as_secs_f64()));
            }
            None => pts.push((rel(e.at), 0.0)),
        }
        pts.push((rel(e.at), 0.0));
        prev = Some(e.at);
    }
    if let Some(p) = prev {
        if stop > p && stop >= view.start {
            if pts.is_empty() {
                pts.push((0.0, view.start.since(p).as_secs_f64().max(0.0)));
            }
            pts.push((rel(stop), stop.since(p).as_secs_f64()));
        }
    }
    pts
}

/// A y-axis value as a label: whole seconds without decimals.
fn y_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 {
        format!("{v:.0}")
    } else {
        format!("{v:.1}")
    }
}

/// The top of the silence chart's y axis and its labels, for a plot of
/// `rows` rows. ratatui puts label `i` of `n` on row `i * (rows - 1) / (n - 1)`
/// (integer division) from the bottom, while the plot maps values linearly:
/// a label sits on the row of its value only when the label steps divide
/// `rows - 1`. So the top is a multiple of the limit chosen for that, and each
/// label is a multiple of the limit on its own row (the limit line is drawn
/// on the row labelled with the limit).
#[must_use]
pub fn y_scale(peak: f64, limit: Option<f64>, rows: u16) -> (f64, Vec<String>) {
    let steps = u32::from(rows.saturating_sub(1));
    match limit {
        Some(l) if l > 0.0 && steps > 0 => {
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let need = ((peak * 1.1 / l).ceil() as u32).clamp(2, 1000);
            let (intervals, per) = if need <= steps {
                let m = (need..=steps).find(|d| steps % d == 0).unwrap_or(steps);
                (m, 1)
            } else {
                (steps, need.div_ceil(steps))
            };
            let top = l * f64::from(intervals * per);
            let labels = (0..=intervals)
                .map(|k| y_label(l * f64::from(k * per)))
                .collect();
            (top, labels)
        }
        _ => {
            let top = (peak * 1.1).max(limit.unwrap_or(0.0) * 2.0).max(1.0);
            (top, vec!["0".into(), y_label(top.round())])
        }
    }
}

fn draw_chart(f: &mut Frame<'_>, area: Rect, app: &App) {
    let block = Block::bordered().title(" silence per direction vs limit (s) ");
    let (Some(c), Some(view)) = (app.selected(), app.view_window()) else {
        f.render_widget(block, area);
        return;
    };
    let Some(tl) = &c.timeline else {
        f.render_widget(block, area);
        return;
    };
    let end = if c.state == ConnectionState::Open {
        app.snap.as_ref().and_then(|s| s.now).unwrap_or(c.last_seen)
    } else {
        c.last_seen
    };
    let cp = silence_points(&tl.client, &view, end);
    let bp = silence_points(&tl.broker, &view, end);
    let w = view.width.as_secs_f64();
    let limit = c.limit.map(Span::as_secs_f64);
    let lp: Vec<(f64, f64)> = limit.map_or_else(Vec::new, |l| vec![(0.0, l), (w, l)]);
    let peak = cp.iter().chain(bp.iter()).map(|p| p.1).fold(0.0, f64::max);
    // Rows of the plot: the block's borders and the x axis (labels, line) take 4.
    let rows = area.height.saturating_sub(4);
    let (top, ylabels) = y_scale(peak, limit, rows);
    let ylabels: Vec<Line<'_>> = ylabels.into_iter().map(Line::from).collect();
    let mut sets = Vec::new();
    // RabbitMQ closes a connection whose client is silent for 2-3 heartbeat
    // timeouts: that window is drawn as two dim lines (when the scale reaches it).
    let kill: Vec<(f64, f64)> = limit.map_or_else(Vec::new, |l| {
        vec![(0.0, 2.0 * l), (w, 2.0 * l), (w, 3.0 * l), (0.0, 3.0 * l)]
    });
    if !kill.is_empty() {
        sets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::DarkGray))
                .data(&kill),
        );
    }
    if !lp.is_empty() {
        sets.push(
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(Color::Red))
                .data(&lp),
        );
    }
    // Drawn last: a later dataset covers the cells of an earlier one.
    sets.extend([
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Cyan))
            .data(&cp),
        Dataset::default()
            .marker(Marker::Braille)
            .graph_type(GraphType::Line)
            .style(Style::new().fg(Color::Magenta))
            .data(&bp),
    ]);
    // The legend is a title line: ratatui's boxed legend needs more rows than
    // the plot has and would be hidden.
    let mut legend = vec![
        TSpan::styled("── c->b ", Style::new().fg(Color::Cyan)),
        TSpan::styled("── b->c ", Style::new().fg(Color::Magenta)),
    ];
    if limit.is_some() {
        legend.push(TSpan::styled("── limit ", Style::new().fg(Color::Red)));
        if limit.is_some_and(|l| top >= 2.0 * l) {
            legend.push(TSpan::styled(
                "── broker kills 2-3x ",
                Style::new().fg(Color::DarkGray),
            ));
        }
    }
    let block = block.title_top(Line::from(legend).right_aligned());
    let chart = Chart::new(sets)
        .block(block)
        .x_axis(
            Axis::default()
                .bounds([0.0, w])
                .labels(vec![
                    Line::from(app.zone.clock(view.start)),
                    Line::from(format!("+{:.1}s", w / 2.0)),
                    Line::from(format!("+{w:.1}s")),
                ])
                .style(Style::new().fg(Color::DarkGray)),
        )
        .y_axis(
            Axis::default()
                .bounds([0.0, top])
                .labels(ylabels)
                .style(Style::new().fg(Color::DarkGray)),
        )
        .legend_position(None);
    f.render_widget(chart, area);
}

fn draw_bottom(f: &mut Frame<'_>, area: Rect, app: &App) {
    let list_w = if area.width >= 110 { 40 } else { 27 };
    let [list, detail] =
        Layout::horizontal([Constraint::Length(list_w), Constraint::Fill(1)]).areas(area);
    let focused = app.focus == Focus::Gaps;
    let title = app.selected().map_or_else(
        || " gaps ".to_owned(),
        |c| {
            let n = c.gaps.len();
            let at = if n == 0 {
                0
            } else {
                app.gap_sel.min(n - 1) + 1
            };
            format!(" gaps {at}/{n} ")
        },
    );
    let block = Block::bordered().title(title).border_style(if focused {
        Style::new().fg(Color::Cyan)
    } else {
        Style::new()
    });
    let Some(c) = app.selected() else {
        f.render_widget(block, list);
        f.render_widget(Block::bordered().title(" detail "), detail);
        return;
    };
    if c.gaps.is_empty() {
        let msg = match c.heartbeat {
            Some(0) => "heartbeat disabled (0): silences are never flagged",
            None => "heartbeat unknown: no Tune in the capture and no steady heartbeat period (use --heartbeat SECS)",
            Some(_) => "no silence longer than the limit",
        };
        f.render_widget(
            Paragraph::new(msg).wrap(Wrap { trim: true }).block(block),
            list,
        );
    } else {
        let narrow = list_w < 30;
        let rows: Vec<Row<'_>> = c
            .gaps
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let mut cells = vec![Cell::from(format!(
                    "{}{}",
                    i + 1,
                    if g.open { "*" } else { "" }
                ))];
                if !narrow {
                    cells.push(Cell::from(g.report.silent_side.as_str()));
                }
                cells.push(Cell::from(format!("{:.1}x", g.report.ratio)));
                cells.push(Cell::from(g.cause.as_str()));
                Row::new(cells).style(Style::new().fg(cause_color(g.cause)))
            })
            .collect();
        let widths: Vec<Constraint> = if narrow {
            vec![
                Constraint::Length(3),
                Constraint::Length(5),
                Constraint::Fill(1),
            ]
        } else {
            vec![
                Constraint::Length(3),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Fill(1),
            ]
        };
        let table = Table::new(rows, widths)
            .block(block)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        let sel = app.gap_sel.min(c.gaps.len().saturating_sub(1));
        let mut state = TableState::default().with_selected(Some(sel));
        f.render_stateful_widget(table, list, &mut state);
    }
    let detail = if app.live {
        let w = (detail.width / 2).min(44);
        let [detail, process] =
            Layout::horizontal([Constraint::Fill(1), Constraint::Length(w)]).areas(detail);
        draw_process(f, process, app, c);
        detail
    } else {
        detail
    };
    let text = detail_text(c, app.selected_gap(), app.zone);
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::bordered().title(" detail ")),
        detail,
    );
}

/// `user NAME`, or `uid N` when the uid has no name on this host.
fn user_text(o: &crate::report::ProcessOwnerReport) -> String {
    match &o.user {
        Some(name) => format!("user {}", clean(name)),
        None => format!("uid {}", o.uid),
    }
}

/// Live: the selected connection's processes (pid, command, user,
/// connection_name) and the latest gap's verdict with its state samples.
fn draw_process(f: &mut Frame<'_>, area: Rect, app: &App, c: &ConnView) {
    let block = Block::bordered().title(" process ");
    let key = (c.client.clone(), c.broker.clone());
    let Some(p) = app.processes.get(&key) else {
        f.render_widget(
            Paragraph::new("not attributed (yet): attribution runs when a connection is announced, and is off with --no-attribution")
                .wrap(Wrap { trim: true })
                .fg(Color::DarkGray)
                .block(block),
            area,
        );
        return;
    };
    let mut lines: Vec<Line<'_>> = Vec::new();
    let owner = |who: &str, o: &crate::report::ProcessOwnerReport| {
        Line::from(vec![
            TSpan::styled(format!("{who} "), Style::new().bold()),
            TSpan::raw(format!(
                "pid {} {} {}",
                o.pid,
                clean(&o.command),
                user_text(o)
            )),
        ])
    };
    match (&p.client_process, &p.not_attributable) {
        (Some(o), _) => lines.push(owner("client", o)),
        (None, Some(why)) => lines.push(Line::from(format!("client: {}", clean(why)))),
        (None, None) => lines.push(Line::from("client: not on this host")),
    }
    if let Some(n) = &c.name {
        lines.push(Line::from(format!("name {n}")).fg(Color::Gray));
    }
    if let Some(o) = &p.broker_process {
        lines.push(owner("broker", o));
    }
    if let Some((v, open)) = &p.verdict {
        lines.push(Line::from(vec![
            TSpan::styled(
                format!("{} {}", v.side.as_str(), v.verdict.as_str()),
                Style::new().bold().fg(Color::Yellow),
            ),
            TSpan::raw(if *open { " (gap open)" } else { " (last gap)" }),
        ]));
        if let Some(s) = &v.state_samples {
            lines.push(Line::from(format!("states {s}")));
        }
        if let Some(cpu) = v.cpu_share {
            lines.push(Line::from(format!("cpu {:.0}% of a core", cpu * 100.0)));
        }
        if let Some(d) = &v.diagnosis {
            lines.push(Line::from(vec![
                TSpan::styled(format!("{} ", d.kind), Style::new().bold()),
                TSpan::raw(clean(&d.detail).into_owned()),
            ]));
        }
        if let Some(a) = &v.at_close {
            lines.push(Line::from(format!("at close: {}", clean(&a.summary))));
        }
        lines.push(Line::from(clean(&v.reason).into_owned()).fg(Color::Gray));
    }
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: true }).block(block),
        area,
    );
}

fn detail_text<'a>(c: &'a ConnView, gap: Option<&'a GapView>, zone: Zone) -> Text<'a> {
    let mut lines: Vec<Line<'a>> = Vec::new();
    if let Some(g) = gap {
        let r = &g.report;
        lines.push(Line::from(vec![
            TSpan::styled(
                format!("{} ", g.cause.as_str()),
                Style::new().fg(cause_color(g.cause)).bold(),
            ),
            TSpan::raw(format!(
                "{} silent {:.3} s / limit {} s = {:.2}x -> {}{}",
                r.silent_side,
                r.silence_s,
                r.limit_s,
                r.ratio,
                r.consequence,
                if g.open { " (still open)" } else { "" }
            )),
        ]));
        lines.push(Line::from(format!(
            "{} - {}, ended by {}",
            zone.clock(g.start),
            zone.clock(g.end),
            r.ended_by,
        )));
        for e in &r.evidence {
            lines.push(Line::from(format!("- {}", clean(e))));
        }
        if let Some(w) = &r.wakeup {
            lines.push(Line::from(format!(
                "wake-up flow: {} -> {}, {:.3} s before resume",
                w.from, w.to, w.before_resume_s
            )));
        }
        if let Some(rs) = &r.resumed {
            lines.push(Line::from(format!(
                "resumed: new connection from {}",
                rs.from
            )));
        }
        if let Some(j) = r.consequence_of {
            lines.push(Line::from(format!(
                "the receiver's zero window: a consequence of gap {}",
                j + 1
            )));
        }
    } else {
        lines.push(Line::from(format!(
            "#{} {} -> {}  state: {}",
            c.id, c.client, c.broker, c.state
        )));
        lines.push(Line::from(format!(
            "heartbeat: {}  longest silence: {}",
            heartbeat_text(c),
            secs(c.longest)
        )));
        for n in &c.health_notes {
            lines.push(Line::from(n.clone()).fg(Color::Yellow));
        }
    }
    if c.client_properties.is_empty() {
        lines.push(Line::from("client_properties: not in the capture").fg(Color::DarkGray));
    } else {
        let props: Vec<String> = c
            .client_properties
            .iter()
            .filter(|(k, _)| k != "capabilities")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        lines.push(Line::from(format!("client_properties: {}", props.join(", "))).fg(Color::Gray));
    }
    Text::from(lines)
}

fn draw_footer(f: &mut Frame<'_>, area: Rect, app: &App) {
    let line = if app.filter_editing {
        Line::from(format!("filter: {}_   (Enter keep, Esc clear)", app.filter)).fg(Color::Yellow)
    } else if let Some(s) = &app.status {
        Line::from(s.clone()).fg(Color::Yellow)
    } else {
        let keys: &[(&str, &str)] = if area.width >= 100 {
            &[
                ("q", "quit"),
                ("?", "help"),
                ("↑↓", "select"),
                ("Tab", "pane"),
                ("/", "filter"),
                ("f", "flagged"),
                ("s", "sort"),
                ("+-", "zoom"),
                ("←→", "pan"),
                ("spc", "pause"),
                ("e", "export"),
            ]
        } else {
            &[
                ("q", "quit"),
                ("?", "help"),
                ("↑↓", "sel"),
                ("/", "find"),
                ("f", "flag"),
                ("s", "sort"),
                ("+-", "zoom"),
                ("←→", "pan"),
                ("spc", "pause"),
                ("e", "json"),
            ]
        };
        let mut spans = Vec::new();
        for (k, what) in keys {
            spans.push(TSpan::styled(*k, Style::new().bold().fg(Color::Cyan)));
            spans.push(TSpan::raw(format!(" {what} ")));
        }
        Line::from(spans)
    };
    f.render_widget(Paragraph::new(line), area);
}

const HELP: &[(&str, &str)] = &[
    ("↑ ↓  j k", "select a connection, or a gap in the gap pane"),
    (
        "g G Home End",
        "first / last row;  PgUp PgDn: a page up / down",
    ),
    ("Tab", "switch between connections and gaps"),
    (
        "Enter",
        "open the gaps of the connection / recentre the timeline",
    ),
    ("/", "filter by text (client, broker, name, cause, state)"),
    ("f", "show only flagged connections (with gaps)"),
    ("s", "sort: severity (default), ratio, gaps, id"),
    (
        "+ - ← → h l",
        "zoom the timeline in / out, pan it earlier / later",
    ),
    (
        "Space",
        "pause / resume playback (live: freeze the display)",
    ),
    (
        "e",
        "write the JSON report to hbscope-report-<capture>.json",
    ),
    (
        "w",
        "live: write the connection's recent packets to a 0600 pcap",
    ),
    ("?", "this help"),
    ("Esc", "back: close help, clear filter, leave the gap pane"),
    ("q  Ctrl-C", "quit"),
];

/// The help overlay: [`HELP_ROWS`] lines, none wider than 76 columns, in
/// the box [`help_box`] gives, scrolled down by `scroll` lines when the
/// screen is too short for all of them.
fn draw_help(f: &mut Frame<'_>, area: Rect, scroll: u16) {
    let (x, y, width, height) = help_box(area.width, area.height);
    let rect = Rect {
        x: area.x + x,
        y: area.y + y,
        width,
        height,
    };
    let mut lines: Vec<Line<'_>> = HELP
        .iter()
        .map(|(k, what)| {
            Line::from(vec![
                TSpan::styled(format!("{k:<13}"), Style::new().bold().fg(Color::Cyan)),
                TSpan::raw(*what),
            ])
        })
        .collect();
    lines.push(Line::from(""));
    lines.push(Line::from(
        "timeline: H heartbeat, # frame/data, . pure ACK, r retransmission,",
    ));
    lines.push(Line::from(
        "k keep-alive, F FIN, R RST, ? loss; ! limit; underlined: the broker's",
    ));
    lines.push(Line::from(
        "kill window (2-3x the limit after the client's last byte). Gap colours:",
    ));
    let chip = |c: Cause| {
        [
            TSpan::styled(
                format!(" {} ", c.as_str()),
                Style::new().fg(Color::Black).bg(cause_color(c)),
            ),
            TSpan::raw(" "),
        ]
    };
    lines.push(Line::from(
        [
            Cause::ClientStall,
            Cause::BrokerStall,
            Cause::PeerUnreachable,
            Cause::BrokerBlocked,
        ]
        .into_iter()
        .flat_map(chip)
        .collect::<Vec<_>>(),
    ));
    let mut last: Vec<TSpan<'_>> = [Cause::CaptureLoss, Cause::Unknown]
        .into_iter()
        .flat_map(chip)
        .collect();
    last.push(TSpan::raw(" ratio = longest silence / limit; > 1x: a gap"));
    lines.push(Line::from(last));
    debug_assert_eq!(lines.len(), usize::from(HELP_ROWS));
    let hidden = HELP_ROWS.saturating_sub(height.saturating_sub(2));
    let scroll = scroll.min(hidden);
    let mut block = Block::bordered()
        .title(" help (? or Esc closes) ")
        .borders(Borders::ALL);
    if hidden > 0 {
        let more = match (scroll > 0, scroll < hidden) {
            (true, true) => " ↑↓ more ",
            (false, _) => " ↓ more ",
            (true, false) => " ↑ more ",
        };
        block = block.title_bottom(Line::from(more).right_aligned());
    }
    f.render_widget(Clear, rect);
    f.render_widget(Paragraph::new(lines).scroll((scroll, 0)).block(block), rect);
}
