//! The view model the UI draws from: a [`Snapshot`] of the engine at a
//! capture-time "now", built on the worker thread and sent to the UI thread.
//!
//! Nothing here touches the terminal. A snapshot carries one [`ConnView`] per
//! connection (with what the report does not have: the slot index, the limit
//! as a span, silences still open at "now"), the timelines of the connections
//! the UI asked for, and, once the input is done, the JSON report.
//!
//! Snapshots are built many times a second while a big capture loads, so the
//! [`SnapshotBuilder`] keeps each connection's slow-changing part
//! ([`ConnCore`]: names, properties, decided gaps with their evidence) and
//! rebuilds it only when the connection's stamp changes; the rest is a few
//! numbers per connection. The full report is built once, at the end, or on
//! demand when the user exports it.

use crate::report::sanitize::text as clean;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use crate::analysis::timeline::TimelineEvent;
use crate::analysis::{Cause, Connection, Gap, HeartbeatSource};
use crate::driver::Progress;
use crate::engine::{ConnId, Engine};
use crate::model::{count, Direction, Span, Timestamp};
use crate::report::{self, ConnectionState, GapReport, HealthSummary, Report, Summary};

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
    /// Capturing live from an interface.
    Live,
}

/// What the header of the live screen shows besides the totals.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveHeader {
    /// The BPF filter in use.
    pub filter: String,
    /// Time since the capture started.
    pub elapsed: Span,
    /// Packets the kernel dropped since the start.
    pub dropped: u64,
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

/// What a connection's row shows that changes only when the connection's
/// handshake facts or closed gaps change. Shared (`Arc`) between snapshots, so
/// a snapshot of 10,000 connections rebuilds only the ones that changed.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnCore {
    /// Client "ip:port".
    pub client: String,
    /// Broker "ip:port".
    pub broker: String,
    /// connection_name, else product.
    pub name: Option<String>,
    /// Heartbeat timeout in seconds (0 = disabled), when known.
    pub heartbeat: Option<u16>,
    /// Where it came from ("tune-ok", "inferred", ...).
    pub heartbeat_source: HeartbeatSource,
    /// The limit as a span (`None` when unknown or disabled).
    pub limit: Option<Span>,
    /// The decided gaps (open ones are added per snapshot in [`ConnView::gaps`]).
    pub closed_gaps: Arc<Vec<GapView>>,
    /// Gaps beyond the per-connection cap.
    pub gaps_not_listed: u64,
    /// Direction in which the client sends.
    pub client_dir: Direction,
    /// client_properties as (key, value) text, sorted by key.
    pub client_properties: Vec<(String, String)>,
}

/// One connection as the UI shows it: the shared [`ConnCore`] (reached
/// through `Deref`) plus what moves with every packet or with "now".
#[derive(Debug, Clone, PartialEq)]
pub struct ConnView {
    /// The engine's number for the connection ([`ConnId`]: stable while
    /// the engine runs, where its position in the engine's list is not).
    pub slot: ConnId,
    /// 1-based id, as in the report.
    pub id: usize,
    /// Facts that rarely change.
    pub core: Arc<ConnCore>,
    /// Longest silence of either direction, open silences at "now" included.
    pub longest: Span,
    /// Longest silence divided by the limit.
    pub ratio: Option<f64>,
    /// Gaps, closed and open.
    pub gaps: Arc<Vec<GapView>>,
    /// Worst cause among the gaps.
    pub worst: Option<Cause>,
    /// "open" | "closed" | "reset-by-broker" | "reset-by-client".
    pub state: ConnectionState,
    /// First packet.
    pub first_seen: Timestamp,
    /// Last packet.
    pub last_seen: Timestamp,
    /// The timeline, when this connection's was asked for.
    pub timeline: Option<TimelineView>,
    /// Heartbeat health worth a line: near-misses, a suspected middlebox.
    pub health_notes: Vec<String>,
}

impl std::ops::Deref for ConnView {
    type Target = ConnCore;
    fn deref(&self) -> &ConnCore {
        &self.core
    }
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

/// The capture facts and totals the header shows (the report's `capture`
/// and `summary`, without building the report).
#[derive(Debug, Clone, PartialEq)]
pub struct Header {
    /// Capture file (or "-").
    pub source: String,
    /// Link type name.
    pub link_type: String,
    /// Packets read.
    pub packets: u64,
    /// Distinct warnings.
    pub warnings: usize,
    /// The first warning's message.
    pub first_warning: Option<String>,
    /// Connection and gap counts, as the report's summary would say.
    pub summary: Summary,
}

/// Everything the UI draws, at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Capture facts and totals.
    pub header: Header,
    /// The full report: only in the final snapshot (built once when the input
    /// is done); before that `e` asks the worker to write it.
    pub report: Option<Arc<Report>>,
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
    /// Live capture facts (`None` when replaying a file).
    pub live: Option<LiveHeader>,
}

/// Which connections' timelines a snapshot carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timelines<'a> {
    /// None.
    None,
    /// Only these connections.
    Slots(&'a HashSet<ConnId>),
    /// All connections (tests and small captures).
    All,
}

fn props_text(conn: &Connection) -> Vec<(String, String)> {
    let Some(p) = conn.handshake().client_properties.as_ref() else {
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
            // Wire strings are drawn sanitised: ratatui would send control bytes to the terminal.
            (clean(k).into_owned(), clean(&text).into_owned())
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

/// What a [`ConnCore`] was built from: when none of it changed, the core is
/// reused. Gaps can be amended after they close (resume burst, wake-up), so
/// those amendments are part of the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    gaps: usize,
    gaps_dropped: u64,
    amended: u64,
    heartbeat: (Option<u16>, HeartbeatSource),
    has_properties: bool,
}

impl Stamp {
    fn of(conn: &Connection) -> Stamp {
        let (value, source) = conn.heartbeat();
        Stamp {
            gaps: conn.gaps().len(),
            gaps_dropped: conn.gaps_dropped(),
            amended: conn.gaps().iter().fold(0u64, |acc, g| {
                acc.wrapping_add(u64::from(g.resume_burst_frames))
                    .wrapping_add(u64::from(g.wakeup.is_some()) << 32)
                    .wrapping_add(u64::from(g.resumed.is_some()) << 48)
            }),
            heartbeat: (value, source),
            has_properties: conn.handshake().client_properties.is_some(),
        }
    }
}

fn core_of(conn: &Connection) -> ConnCore {
    let (value, source) = conn.heartbeat();
    ConnCore {
        client: conn.client().to_string(),
        broker: conn.broker().to_string(),
        name: conn.client_name().map(|n| clean(&n).into_owned()),
        heartbeat: value,
        heartbeat_source: source,
        limit: conn.limit(),
        closed_gaps: Arc::new(
            conn.gaps()
                .iter()
                .map(|g| gap_view(conn, g, false))
                .collect(),
        ),
        gaps_not_listed: conn.gaps_dropped(),
        client_dir: conn.client_dir(),
        client_properties: props_text(conn),
    }
}

/// Builds snapshots of one engine, reusing each connection's [`ConnCore`]
/// while it has not changed (by [`ConnId`], stable while the engine runs).
/// The worker keeps one for the whole run; [`Snapshot::build`] uses a fresh one.
#[derive(Debug, Default)]
pub struct SnapshotBuilder {
    source: String,
    /// Live: ended connections leave the view this long after their last packet.
    retain_ended: Option<Span>,
    cores: HashMap<ConnId, (Stamp, Arc<ConnCore>)>,
    /// [`Engine::retire_passes`] when `cores` was last pruned.
    passes: u64,
    report: Option<Arc<Report>>,
}

impl SnapshotBuilder {
    /// A builder with nothing cached, for the input named `source`.
    #[must_use]
    pub fn new(source: &str) -> Self {
        SnapshotBuilder {
            source: source.to_owned(),
            ..SnapshotBuilder::default()
        }
    }

    /// Leaves out of the view (not of the totals) the connections that
    /// ended more than `keep` before "now": live mode's table.
    #[must_use]
    pub fn retain_ended(mut self, keep: Span) -> Self {
        self.retain_ended = Some(keep);
        self
    }

    fn core(&mut self, slot: ConnId, conn: &Connection) -> Arc<ConnCore> {
        let stamp = Stamp::of(conn);
        match self.cores.get(&slot) {
            Some((st, core)) if *st == stamp => Arc::clone(core),
            _ => {
                let core = Arc::new(core_of(conn));
                self.cores.insert(slot, (stamp, Arc::clone(&core)));
                core
            }
        }
    }

    /// Builds the view of `engine` at capture time `now` (for open silences;
    /// `None` = the last packet's time). The full report is built only when
    /// `state` is [`PlayState::Done`], once.
    #[must_use]
    pub fn build(
        &mut self,
        engine: &Engine,
        complete: bool,
        now: Option<Timestamp>,
        progress: Progress,
        state: PlayState,
        timelines: Timelines<'_>,
    ) -> Snapshot {
        let counters = engine.counters();
        let now = now.or(counters.last);
        // Report order: first packet, then flow key (as report::build).
        if self.passes != engine.retire_passes() {
            // Connections the engine folded away: their views go too.
            self.passes = engine.retire_passes();
            self.cores.retain(|id, _| engine.slot(*id).is_some());
        }
        let mut slots: Vec<(ConnId, &crate::engine::ConnSlot)> = engine
            .slots()
            .iter()
            .filter(|s| s.confirmed && s.not_amqp.is_none())
            .map(|s| (s.id(), s))
            .collect();
        slots.sort_by_key(|(_, s)| (s.conn.first_seen(), s.conn.key()));
        let mut summary = Summary {
            connections: slots.len(),
            flagged_connections: 0,
            gaps: 0,
            gaps_by_cause: BTreeMap::new(),
            heartbeat_health: HealthSummary::default(),
            ended_not_listed: None,
        };
        // Connections the engine folded away still count.
        report::add_retired(&mut summary, engine.retired());
        let mut conns = Vec::with_capacity(slots.len());
        for (i, (slot, s)) in slots.into_iter().enumerate() {
            let conn = &s.conn;
            let gone = |keep: Span| {
                now.is_some_and(|n| {
                    conn.dirs().iter().all(|d| d.closed) && n.since(conn.last_seen()) > keep
                })
            };
            if self.retain_ended.is_some_and(gone) {
                // Out of the view for good: its cached view goes too, so a
                // long live run keeps views of the shown connections only.
                self.cores.remove(&slot);
                // Still counted in the summary (its closed gaps are final).
                summary.flagged_connections += usize::from(!conn.gaps().is_empty());
                summary.gaps += conn.gaps().len();
                for g in conn.gaps() {
                    *summary
                        .gaps_by_cause
                        .entry(g.cause.as_str().to_owned())
                        .or_insert(0) += 1;
                }
                continue;
            }
            let core = self.core(slot, conn);
            if !core.closed_gaps.is_empty() {
                summary.flagged_connections += 1;
                summary.gaps += core.closed_gaps.len();
                for g in core.closed_gaps.iter() {
                    *summary
                        .gaps_by_cause
                        .entry(g.cause.as_str().to_owned())
                        .or_insert(0) += 1;
                }
            }
            let mut longest = conn.dirs()[0]
                .longest_silence
                .max(conn.dirs()[1].longest_silence);
            let mut open_gaps = Vec::new();
            if let Some(now) = now {
                for dir in [Direction::AtoB, Direction::BtoA] {
                    let d = conn.dir(dir);
                    if let (false, Some(start)) = (d.closed, d.last_activity) {
                        longest = longest.max(now.since(start));
                    }
                    if let Some(g) = conn.open_gap(dir, now) {
                        open_gaps.push(gap_view(conn, &g, true));
                    }
                }
            }
            let gaps = if open_gaps.is_empty() {
                Arc::clone(&core.closed_gaps)
            } else {
                let mut all = core.closed_gaps.as_ref().clone();
                all.extend(open_gaps);
                Arc::new(all)
            };
            let worst = gaps.iter().map(|g| g.cause).max_by_key(|c| c.severity());
            let with_timeline = match timelines {
                Timelines::None => false,
                Timelines::Slots(set) => set.contains(&slot),
                Timelines::All => true,
            };
            let timeline = with_timeline.then(|| {
                let cd = conn.client_dir();
                let bd = cd.reverse();
                TimelineView {
                    client: s.timeline.events(cd).copied().collect(),
                    broker: s.timeline.events(bd).copied().collect(),
                    forgotten: (s.timeline.forgotten(cd), s.timeline.forgotten(bd)),
                }
            });
            let (how, by, _) = conn.ended();
            let mut health_notes = Vec::new();
            for dir in [Direction::AtoB, Direction::BtoA] {
                let n = conn.dir(dir).near_misses().0;
                if n > 0 {
                    health_notes.push(format!(
                        "{}: {} (silences >= 0.75x the timeout)",
                        conn.role_of(dir).sends(),
                        count(n, "near-miss", "near-misses")
                    ));
                }
            }
            if let Some(m) = conn.middlebox_suspected() {
                health_notes.push(format!("middlebox suspected: {}", m.reason()));
                health_notes.push(format!("advice: {}", m.advice()));
            }
            conns.push(ConnView {
                health_notes,
                slot,
                id: i + 1,
                ratio: core.limit.map(|l| longest.as_secs_f64() / l.as_secs_f64()),
                core,
                longest,
                gaps,
                worst,
                state: ConnectionState::of(how, by),
                first_seen: conn.first_seen(),
                last_seen: conn.last_seen(),
                timeline,
            });
        }
        let report = if state == PlayState::Done {
            let r = self
                .report
                .get_or_insert_with(|| Arc::new(report::build(engine, &self.source, complete)));
            Some(Arc::clone(r))
        } else {
            None
        };
        let warnings = engine.warnings();
        Snapshot {
            header: Header {
                source: self.source.clone(),
                link_type: engine.link().name(),
                packets: counters.packets,
                warnings: warnings.len(),
                first_warning: warnings.first().map(|w| w.message.clone()),
                summary,
            },
            report,
            now,
            first: counters.first,
            last: counters.last,
            progress,
            state,
            conns,
            error: None,
            live: None,
        }
    }
}

impl Snapshot {
    /// Builds the view of `engine` at capture time `now` (for open silences;
    /// `None` = the last packet's time), with nothing cached.
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
        SnapshotBuilder::new(source).build(engine, complete, now, progress, state, timelines)
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

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::driver::{drive, open_input, DriveOptions, NoSink};
    use crate::engine::EngineConfig;

    /// A live builder drops its cached view of a connection that left the
    /// table (ended more than `keep` ago), and the summary still counts it.
    #[test]
    fn aged_out_connections_leave_the_cache() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("captures")
            .join("client-sigstop.pcap");
        let (mut src, link) = open_input(&path).unwrap();
        let mut engine = Engine::new(EngineConfig::default(), link);
        drive(
            &mut src,
            &mut engine,
            &mut NoSink,
            DriveOptions {
                batch: 64,
                paced: None,
                stop: None,
            },
        );
        let last = engine.counters().last.unwrap();
        let mut b = SnapshotBuilder::new("sim0").retain_ended(Span::from_secs(60));
        let cached = |b: &SnapshotBuilder| b.cores.len();
        let build = |b: &mut SnapshotBuilder, now: Timestamp| {
            b.build(
                &engine,
                true,
                Some(now),
                Progress::default(),
                PlayState::Live,
                Timelines::None,
            )
        };
        let shown = build(&mut b, last);
        assert_eq!(shown.conns.len(), 1);
        assert_eq!(cached(&b), 1);
        let later = build(&mut b, last.plus(Span::from_secs(61)));
        assert!(later.conns.is_empty());
        assert_eq!(later.header.summary.connections, 1);
        assert_eq!(later.header.summary.gaps, shown.header.summary.gaps);
        assert_eq!(cached(&b), 0);
    }
}
