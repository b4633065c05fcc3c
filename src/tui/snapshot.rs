//! The view model the UI draws from: a [`Snapshot`] of the engine at a
//! capture-time "now", built on the worker thread and sent to the UI thread.
//!
//! Nothing here touches the terminal. The snapshot carries the JSON report
//! (so `e` can write it without asking the engine), per-connection extras the
//! report does not have (the slot index, the limit as a span, silences still
//! open at "now") and the timelines of the connections the UI asked for.

use std::collections::HashSet;

use crate::analysis::{Cause, Connection, Gap};
use crate::app::Progress;
use crate::engine::Engine;
use crate::model::{Direction, Span, Timestamp};
use crate::report::{self, GapReport, Report};
use crate::timeline::TimelineEvent;

/// Where the input stands.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PlayState {
    /// Reading as fast as possible (`--speed 0`).
    Loading,
    /// Playing back at `speed` x real time.
    Playing {
        /// Playback speed factor.
        speed: f64,
    },
    /// Playback paused by the user.
    Paused,
    /// The whole input was read.
    Done,
}

/// One gap as the UI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GapView {
    /// The report entry (evidence lines, cause, consequence, times).
    pub report: GapReport,
    /// Direction that was silent.
    pub dir: Direction,
    /// Last new byte before the silence.
    pub start: Timestamp,
    /// End of the silence (or "now" while still open).
    pub end: Timestamp,
    /// The limit.
    pub limit: Span,
    /// The decided (or provisional) cause.
    pub cause: Cause,
    /// Still open at "now" (live or playback): a provisional gap.
    pub open: bool,
}

/// One connection as the UI shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnView {
    /// Index of the engine slot (stable while the engine runs).
    pub slot: usize,
    /// 1-based id, as in the report.
    pub id: usize,
    /// Client "ip:port".
    pub client: String,
    /// Broker "ip:port".
    pub broker: String,
    /// connection_name, else product.
    pub name: Option<String>,
    /// Heartbeat timeout in seconds (0 = disabled), when known.
    pub heartbeat: Option<u16>,
    /// Where it came from ("tune-ok", "inferred", ...).
    pub heartbeat_source: &'static str,
    /// The limit as a span (`None` when unknown or disabled).
    pub limit: Option<Span>,
    /// Longest silence of either direction, open silences at "now" included.
    pub longest: Span,
    /// Longest silence divided by the limit.
    pub ratio: Option<f64>,
    /// Gaps, closed and open.
    pub gaps: Vec<GapView>,
    /// Gaps beyond the per-connection cap.
    pub gaps_not_listed: u64,
    /// Worst cause among the gaps.
    pub worst: Option<Cause>,
    /// "open" | "closed" | "reset-by-broker" | "reset-by-client".
    pub state: &'static str,
    /// Direction in which the client sends.
    pub client_dir: Direction,
    /// First packet.
    pub first_seen: Timestamp,
    /// Last packet.
    pub last_seen: Timestamp,
    /// client_properties as (key, value) text, sorted by key.
    pub client_properties: Vec<(String, String)>,
    /// The timeline, when this connection's was asked for.
    pub timeline: Option<TimelineView>,
}

impl ConnView {
    /// True when at least one gap (closed or open) was found.
    #[must_use]
    pub fn flagged(&self) -> bool {
        !self.gaps.is_empty()
    }
}

/// A connection's recent wire events per direction.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimelineView {
    /// Client -> broker events, oldest first.
    pub client: Vec<TimelineEvent>,
    /// Broker -> client events, oldest first.
    pub broker: Vec<TimelineEvent>,
    /// Events forgotten by the bounded record (client, broker).
    pub forgotten: (u64, u64),
}

/// Everything the UI draws, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// The report of the engine as it stands.
    pub report: Report,
    /// Capture time the view stands at (last packet, or the playback clock).
    pub now: Option<Timestamp>,
    /// First packet.
    pub first: Option<Timestamp>,
    /// Last packet.
    pub last: Option<Timestamp>,
    /// Reading progress.
    pub progress: Progress,
    /// Playback state.
    pub state: PlayState,
    /// Connections, in report order.
    pub conns: Vec<ConnView>,
    /// A fatal error (input could not be opened).
    pub error: Option<String>,
}

/// Which connections' timelines a snapshot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timelines<'a> {
    /// None.
    None,
    /// Only these engine slots.
    Slots(&'a HashSet<usize>),
    /// All connections (tests and small captures).
    All,
}

fn props_text(conn: &Connection) -> Vec<(String, String)> {
    let Some(p) = conn.handshake.client_properties.as_ref() else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = p
        .iter()
        .map(|(k, v)| {
            let text = match serde_json::to_value(v) {
                Ok(serde_json::Value::String(s)) => s,
                Ok(other) => other.to_string(),
                Err(_) => String::from("?"),
            };
            (k.clone(), text)
        })
        .collect();
    out.sort();
    out
}

fn gap_view(conn: &Connection, g: &Gap, open: bool) -> GapView {
    GapView {
        report: report::gap_report(conn, g),
        dir: g.dir,
        start: g.start,
        end: g.end,
        limit: g.limit,
        cause: g.cause,
        open,
    }
}

impl Snapshot {
    /// Builds the view of `engine` at capture time `now` (for open silences;
    /// `None` = the last packet's time).
    #[must_use]
    pub fn build(
        engine: &Engine,
        source: &str,
        complete: bool,
        now: Option<Timestamp>,
        progress: Progress,
        state: PlayState,
        timelines: Timelines<'_>,
    ) -> Snapshot {
        let rep = report::build(engine, source, complete);
        let counters = engine.counters();
        let now = now.or(counters.last);
        // Same order as the report (first packet, then flow key), so each
        // slot lines up with its own report entry.
        let mut slots: Vec<(usize, &crate::engine::ConnSlot)> = engine
            .slots()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.confirmed && s.not_amqp.is_none())
            .collect();
        slots.sort_by_key(|(_, s)| (s.conn.first_seen, s.conn.key));
        let conns = slots
            .into_iter()
            .zip(rep.connections.iter())
            .map(|((slot, s), cr)| {
                let conn = &s.conn;
                debug_assert_eq!(
                    conn.client().to_string(),
                    cr.client,
                    "snapshot row misaligned"
                );
                let limit = conn.limit();
                let mut gaps: Vec<GapView> =
                    conn.gaps.iter().map(|g| gap_view(conn, g, false)).collect();
                let mut longest = conn.dirs[0]
                    .longest_silence
                    .max(conn.dirs[1].longest_silence);
                if let Some(now) = now {
                    for dir in [Direction::AtoB, Direction::BtoA] {
                        let d = &conn.dirs[dir.index()];
                        if let (false, Some(start)) = (d.closed, d.last_activity) {
                            longest = longest.max(now.since(start));
                        }
                        if let Some(g) = conn.open_gap(dir, now) {
                            gaps.push(gap_view(conn, &g, true));
                        }
                    }
                }
                let worst = gaps.iter().map(|g| g.cause).max_by_key(|c| c.severity());
                let with_timeline = match timelines {
                    Timelines::None => false,
                    Timelines::Slots(set) => set.contains(&slot),
                    Timelines::All => true,
                };
                let timeline = with_timeline.then(|| {
                    let cd = conn.client_dir;
                    let bd = cd.reverse();
                    TimelineView {
                        client: s.timeline.events(cd).copied().collect(),
                        broker: s.timeline.events(bd).copied().collect(),
                        forgotten: (s.timeline.forgotten(cd), s.timeline.forgotten(bd)),
                    }
                });
                ConnView {
                    slot,
                    id: cr.id,
                    client: cr.client.clone(),
                    broker: cr.broker.clone(),
                    name: cr.client_name.clone(),
                    heartbeat: cr.heartbeat.value_s,
                    heartbeat_source: cr.heartbeat.source,
                    limit,
                    longest,
                    ratio: limit.map(|l| longest.as_secs_f64() / l.as_secs_f64()),
                    gaps,
                    gaps_not_listed: cr.gaps_not_listed,
                    worst,
                    state: cr.state,
                    client_dir: conn.client_dir,
                    first_seen: conn.first_seen,
                    last_seen: conn.last_seen,
                    client_properties: props_text(conn),
                    timeline,
                }
            })
            .collect();
        Snapshot {
            report: rep,
            now,
            first: counters.first,
            last: counters.last,
            progress,
            state,
            conns,
            error: None,
        }
    }

    /// A snapshot that only says the input could not be read.
    #[must_use]
    pub fn failed(source: &str, error: String) -> Snapshot {
        let engine = Engine::new(
            crate::engine::EngineConfig::default(),
            crate::capture::LinkType::ETHERNET,
        );
        let mut s = Snapshot::build(
            &engine,
            source,
            false,
            None,
            Progress::default(),
            PlayState::Done,
            Timelines::None,
        );
        s.error = Some(error);
        s
    }
}
