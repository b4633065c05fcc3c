//! Live capture in the terminal UI: a [`LiveView`] is a driver [`Sink`]
//! that turns the live engine into [`Snapshot`]s at every tick, as the
//! replay worker does for a file.
//!
//! ```text
//! capture thread: LiveCapture -> driver::drive (WallClock, 200 ms ticks) -> Engine
//!                                   | run::live's sink (events, /proc, metrics)
//!                                   | LiveView: Snapshot every tick --> Event channel -> UI
//!                  Command (focus, freeze, export, quit) <-- UI thread
//! ```
//!
//! The capture loop itself lives in `run::live` (it owns attribution and the
//! final report); this module only sees the engine through the [`Sink`]
//! calls, so the same view is tested from a pcap on a simulated clock
//! ([`crate::driver::PacedSource`] + [`crate::driver::SimClock`]). Space
//! freezes the display (no new snapshots, except for a newly selected
//! connection's timeline) while the capture goes on; `q` stops the capture.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

use super::snapshot::{LiveHeader, PlayState, SnapshotBuilder, Timelines};
use super::state::{Command, Event};
use crate::capture::ring::{PacketRing, RingLimits};
use crate::capture::savefile::write_pcap as write_pcap_to;
use crate::capture::{LinkType, PacketRecord};
use crate::decode::flowof::FlowOf;
use crate::driver::{Flow, Progress, Sink};
use crate::engine::{ConnId, Engine};
use crate::model::{Direction, FlowKey, Span, Timestamp};
use crate::report::{ProcessOwnerReport, ProcessReport};

/// How long an ended connection stays in the live table (it stays in the
/// totals and the final report).
pub const KEEP_ENDED: Span = Span(5 * 60 * 1_000_000_000);

/// The ring of recent packets `w` writes from holds at most this many bytes
/// (captured bytes plus a fixed overhead per packet; a flooding connection
/// gives up its own oldest packets first, see [`PacketRing`]).
pub const RING_BYTES: usize = 32 << 20;

/// ... and no packet older than this: `w` is for the connections in the
/// table (an ended one leaves it [`KEEP_ENDED`] after its last packet), and
/// without an age a long capture kept a few packets of every connection it
/// ever saw.
pub const RING_AGE: Span = Span(10 * 60 * 1_000_000_000);

/// Writes `key`'s packets from `ring` to a new pcap file at `path`, created
/// 0600 (packets hold credentials); returns how many were written.
fn write_pcap(
    ring: &PacketRing<FlowKey>,
    link: LinkType,
    key: &FlowKey,
    path: &Path,
) -> std::io::Result<usize> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode through open(): set it.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    let mut out = std::io::BufWriter::new(file);
    write_pcap_to(&mut out, link, 262_144, ring.packets(key))
}

/// What the live header names.
#[derive(Debug, Clone)]
pub struct LiveInfo {
    /// Interface.
    pub interface: String,
    /// BPF filter.
    pub filter: String,
}

/// What live attribution found about a connection's processes, for the
/// process pane (from live mode's events: the owner when the connection is
/// seen, the silent side's verdict when a gap opens and closes).
#[derive(Debug, Clone, PartialEq)]
pub enum ProcessNote {
    /// The processes owning the connection's sockets on this host.
    Owners {
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// The client socket's owner.
        client_process: Option<ProcessOwnerReport>,
        /// The broker socket's owner.
        broker_process: Option<ProcessOwnerReport>,
        /// Why the client side could not be attributed.
        not_attributable: Option<String>,
    },
    /// The silent side's process during a gap (`open`: still going on).
    Verdict {
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// The verdict with its samples.
        process: ProcessReport,
        /// The gap is still open.
        open: bool,
    },
}

impl ProcessNote {
    /// The connection it is about (client, broker).
    #[must_use]
    pub fn key(&self) -> (&str, &str) {
        match self {
            ProcessNote::Owners { client, broker, .. }
            | ProcessNote::Verdict { client, broker, .. } => (client, broker),
        }
    }
}

/// What the process pane shows for one connection.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessPane {
    /// The client socket's owner.
    pub client_process: Option<ProcessOwnerReport>,
    /// The broker socket's owner.
    pub broker_process: Option<ProcessOwnerReport>,
    /// Why the client side could not be attributed.
    pub not_attributable: Option<String>,
    /// The latest gap's verdict, and whether that gap is still open.
    pub verdict: Option<(ProcessReport, bool)>,
}

impl ProcessPane {
    /// Takes in one note.
    pub fn apply(&mut self, note: ProcessNote) {
        match note {
            ProcessNote::Owners {
                client_process,
                broker_process,
                not_attributable,
                ..
            } => {
                self.client_process = client_process;
                self.broker_process = broker_process;
                self.not_attributable = not_attributable;
            }
            ProcessNote::Verdict { process, open, .. } => self.verdict = Some((process, open)),
        }
    }
}

/// Sends messages to the UI: footer lines (the live events worth a look)
/// and process facts.
#[derive(Debug, Clone)]
pub struct Notifier(Sender<Event>);

impl Notifier {
    /// Shows `msg` in the footer.
    pub fn status(&self, msg: String) {
        let _ = self.0.send(Event::Status(msg));
    }

    /// Hands process facts to the process pane.
    pub fn process(&self, note: ProcessNote) {
        let _ = self.0.send(Event::Process(Box::new(note)));
    }
}

/// The live screen's [`Sink`]: builds a snapshot at every tick (unless
/// frozen) and answers the UI's commands; asks the driver to stop when the
/// UI quits or goes away.
pub struct LiveView {
    info: LiveInfo,
    events: Sender<Event>,
    commands: Receiver<Command>,
    builder: SnapshotBuilder,
    focus: HashSet<ConnId>,
    frozen: bool,
    quit: bool,
    export: Option<PathBuf>,
    started: Option<Timestamp>,
    progress: Progress,
    dropped: u64,
    ring: PacketRing<FlowKey>,
    /// Each packet's flow for the ring, IP fragments included.
    keyer: FlowOf,
    link: LinkType,
    /// `w`: the connection whose packets to write, and where.
    write: Option<(ConnId, PathBuf)>,
}

impl std::fmt::Debug for LiveView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LiveView")
            .field("interface", &self.info.interface)
            .field("frozen", &self.frozen)
            .finish_non_exhaustive()
    }
}

impl LiveView {
    /// A view sending snapshots to `events` and reading `commands`.
    #[must_use]
    pub fn new(info: LiveInfo, events: Sender<Event>, commands: Receiver<Command>) -> Self {
        LiveView {
            builder: SnapshotBuilder::new(&info.interface).retain_ended(KEEP_ENDED),
            info,
            events,
            commands,
            focus: HashSet::new(),
            frozen: false,
            quit: false,
            export: None,
            started: None,
            progress: Progress::default(),
            dropped: 0,
            ring: PacketRing::new(RingLimits {
                max_bytes: RING_BYTES,
                max_age: Some(RING_AGE),
            }),
            keyer: FlowOf::new(),
            link: LinkType::ETHERNET,
            write: None,
        }
    }

    /// A handle for footer messages.
    #[must_use]
    pub fn notifier(&self) -> Notifier {
        Notifier(self.events.clone())
    }

    /// Applies pending commands; true when a snapshot is due even if frozen.
    fn poll(&mut self) -> bool {
        let mut due = false;
        loop {
            match self.commands.try_recv() {
                Ok(Command::Focus(slot)) => {
                    due |= !self.focus.contains(&slot) || self.focus.len() != 1;
                    self.focus.clear();
                    self.focus.insert(slot);
                }
                Ok(Command::Pause(p)) => {
                    self.frozen = p;
                    due = true;
                }
                Ok(Command::Export(path)) => self.export = Some(path),
                Ok(Command::WritePackets(slot, path)) => {
                    self.write = Some((slot, path));
                    due = true;
                }
                Ok(Command::Quit) | Err(TryRecvError::Disconnected) => {
                    self.quit = true;
                    return due;
                }
                Err(TryRecvError::Empty) => return due,
            }
        }
    }

    fn write_packets(&mut self, engine: &Engine) {
        let Some((slot, path)) = self.write.take() else {
            return;
        };
        let shown = std::path::absolute(&path).unwrap_or_else(|_| path.clone());
        let Some(s) = engine.slot(slot) else {
            return;
        };
        let ends = (s.conn.client(), s.conn.broker());
        let key = FlowKey::from_packet(ends.0, ends.1).0;
        let msg = match write_pcap(&self.ring, self.link, &key, &path) {
            Ok(n) => format!(
                "{} of {} -> {} written to {} (0600)",
                crate::model::count(n as u64, "recent packet", "recent packets"),
                ends.0,
                ends.1,
                shown.display()
            ),
            Err(e) => format!("could not write {}: {e}", shown.display()),
        };
        let _ = self.events.send(Event::Status(msg));
    }

    fn send(&mut self, engine: &Engine, now: Timestamp) {
        self.write_packets(engine);
        if let Some(path) = self.export.take() {
            let msg = super::worker::export_report(engine, &self.info.interface, true, &path);
            let _ = self.events.send(Event::Status(msg));
        }
        let mut snap = self.builder.build(
            engine,
            true,
            Some(now),
            self.progress,
            PlayState::Live,
            Timelines::Slots(&self.focus),
        );
        snap.live = Some(LiveHeader {
            filter: self.info.filter.clone(),
            elapsed: self.started.map_or(Span(0), |s| now.since(s).max(Span(0))),
            dropped: self.dropped,
        });
        if self.events.send(Event::Snapshot(Box::new(snap))).is_err() {
            self.quit = true;
        }
    }

    fn answer(&mut self, engine: &Engine, now: Timestamp) -> Flow {
        let due = self.poll();
        if self.quit {
            return Flow::Stop;
        }
        if due || !self.frozen {
            self.send(engine, now);
        }
        if self.quit {
            Flow::Stop
        } else {
            Flow::Continue
        }
    }
}

impl Sink for LiveView {
    fn start(&mut self, engine: &Engine, now: Timestamp) -> Flow {
        self.started = Some(now);
        self.answer(engine, now)
    }

    fn packets(&mut self, link: LinkType, recs: &[PacketRecord<'_>]) {
        self.link = link;
        let ring = &mut self.ring;
        for r in recs {
            self.keyer
                .packet(link, r, &mut |key, rec| ring.push(key, rec));
        }
    }

    fn after_packets(&mut self, _: &Engine, _: Timestamp, progress: &Progress) -> Flow {
        self.progress = *progress;
        Flow::Continue
    }

    fn on_drops(&mut self, _: &Engine, _: Timestamp, _: u64, total: u64) -> Flow {
        self.dropped = total;
        Flow::Continue
    }

    fn on_tick(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        _: &[(ConnId, Direction, Span)],
    ) -> Flow {
        self.answer(engine, now)
    }

    fn on_sample(&mut self, _: &Engine, now: Timestamp) -> Flow {
        self.ring.expire(now);
        Flow::Continue
    }
}
