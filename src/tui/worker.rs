//! The worker thread: owns the [`Engine`], reads the capture through the
//! driver ([`crate::driver::drive`]: as fast as possible, or paced at N x
//! real time), and sends [`Snapshot`]s to the UI. It listens for
//! [`Command`]s (focus, pause, quit) between batches, or at every tick.
//!
//! "Now" is the playback clock: with `--speed N` it moves with the wall clock
//! even when no packet arrives, so a silence still open grows on screen and
//! [`Engine::tick`] flags it when it passes the limit (as in live capture).
//! Packets are released by a [`PacedSource`] as the clock passes them.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::snapshot::{PlayState, Snapshot, SnapshotBuilder, Timelines};
use super::state::{Command, Event};
use crate::capture::FileSource;
use crate::driver::{
    self, Clock, DriveOptions, Flow, Paced, PacedSource, Progress, Sink, StopReason,
};
use crate::engine::{ConnId, Engine, EngineConfig};
use crate::model::{Direction, Span, Timestamp};

/// Least wall time between two snapshots while reading.
const SNAPSHOT_EVERY: Duration = Duration::from_millis(150);

/// What the worker reads and how fast.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Capture file ("-" = stdin).
    pub path: PathBuf,
    /// Engine settings.
    pub engine: EngineConfig,
    /// Playback speed (0 = as fast as possible).
    pub speed: f64,
}

struct Worker {
    source: String,
    focus: HashSet<ConnId>,
    paused: bool,
    quit: bool,
    events: Sender<Event>,
    commands: Receiver<Command>,
    /// Time between snapshots while loading (grows with their cost).
    interval: Duration,
    /// Keeps each connection's slow-changing view between snapshots.
    builder: SnapshotBuilder,
    /// The user asked for the JSON report in this file.
    export: Option<PathBuf>,
}

impl Worker {
    fn send(
        &mut self,
        engine: &Engine,
        complete: bool,
        now: Option<Timestamp>,
        progress: Progress,
        state: PlayState,
    ) {
        if let Some(path) = self.export.take() {
            let msg = export_report(engine, &self.source, complete, &path);
            let _ = self.events.send(Event::Status(msg));
        }
        let built = Instant::now();
        let snap = self.builder.build(
            engine,
            complete,
            now,
            progress,
            state,
            Timelines::Slots(&self.focus),
        );
        let _ = self.events.send(Event::Snapshot(Box::new(snap)));
        // On a big capture a snapshot costs real time: keep building them
        // at most a quarter of the time, so loading and the UI keep the CPU.
        self.interval = SNAPSHOT_EVERY.max(built.elapsed() * 4);
    }

    /// Applies one command; true when the focus changed (a new snapshot is due).
    fn apply(&mut self, c: Command) -> bool {
        match c {
            Command::Focus(slot) => {
                let changed = !self.focus.contains(&slot) || self.focus.len() != 1;
                self.focus.clear();
                self.focus.insert(slot);
                changed
            }
            Command::Pause(p) => {
                self.paused = p;
                true
            }
            Command::Export(path) => {
                self.export = Some(path);
                true
            }
            // Replay has the whole file already; the UI does not send it.
            Command::WritePackets(..) => false,
            Command::Quit => {
                self.quit = true;
                false
            }
        }
    }

    /// Drains pending commands without blocking.
    fn poll(&mut self) -> bool {
        let mut due = false;
        loop {
            match self.commands.try_recv() {
                Ok(c) => due |= self.apply(c),
                Err(TryRecvError::Empty) => return due,
                Err(TryRecvError::Disconnected) => {
                    self.quit = true;
                    return due;
                }
            }
        }
    }

    /// Waits up to `d` for a command.
    fn wait(&mut self, d: Duration) -> bool {
        match self.commands.recv_timeout(d) {
            Ok(c) => {
                let due = self.apply(c);
                due | self.poll()
            }
            Err(RecvTimeoutError::Timeout) => false,
            Err(RecvTimeoutError::Disconnected) => {
                self.quit = true;
                false
            }
        }
    }
}

/// Writes the JSON report of `engine` as it stands to `path`; says what happened.
pub(super) fn export_report(
    engine: &Engine,
    source: &str,
    complete: bool,
    path: &std::path::Path,
) -> String {
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let written = std::fs::File::create(path)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            let rep = crate::report::build(engine, source, complete);
            crate::report::write_json(&rep, std::io::BufWriter::new(f)).map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => format!(
            "JSON report (as read so far, {}) written to {}",
            crate::model::count(engine.counters().packets, "packet", "packets"),
            shown.display()
        ),
        Err(e) => format!("could not write {}: {e}", shown.display()),
    }
}

/// The playback clock: capture time moves at `speed` times the wall clock
/// from the first packet on, and stops while paused. Clones share it (the
/// [`PacedSource`] releasing packets holds one).
#[derive(Debug, Clone)]
struct Playback {
    t0: Timestamp,
    speed: f64,
    started: Instant,
    state: Arc<Mutex<Played>>,
}

/// Wall time played so far, and since when it is running (`None`: paused).
#[derive(Debug)]
struct Played {
    played: Duration,
    since: Option<Instant>,
}

impl Playback {
    fn new(t0: Timestamp, speed: f64) -> Self {
        let now = Instant::now();
        Playback {
            t0,
            speed,
            started: now,
            state: Arc::new(Mutex::new(Played {
                played: Duration::ZERO,
                since: Some(now),
            })),
        }
    }

    fn played(&self) -> std::sync::MutexGuard<'_, Played> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn pause(&self, paused: bool) {
        let mut p = self.played();
        match (paused, p.since) {
            (true, Some(s)) => {
                p.played += s.elapsed();
                p.since = None;
            }
            (false, None) => p.since = Some(Instant::now()),
            _ => {}
        }
    }
}

impl Clock for Playback {
    /// Capture time reached, counted from the first packet.
    fn now(&self) -> Timestamp {
        let p = self.played();
        let elapsed = p.played + p.since.map_or(Duration::ZERO, |s| s.elapsed());
        #[allow(clippy::cast_possible_truncation)]
        let ns = (elapsed.as_secs_f64() * self.speed * 1e9) as i64;
        self.t0.plus(Span(ns))
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn pass(&mut self, d: Duration) -> Duration {
        d
    }
}

/// Packets per batch when loading as fast as possible: ~1 ms of work, so the
/// UI is answered between batches without a visible delay.
const BATCH: usize = 1024;

/// Loading's [`Sink`]: answers the UI (snapshots, focus, pause) between batches.
struct Loading<'w> {
    w: &'w mut Worker,
    last_sent: Instant,
}

impl Loading<'_> {
    /// Answers the UI before the next batch, waiting while paused; `false`
    /// when the UI quit.
    fn between(&mut self, engine: &Engine, progress: Progress) -> bool {
        let w = &mut *self.w;
        loop {
            let due = w.poll();
            if w.quit {
                return false;
            }
            let state = if w.paused {
                PlayState::Paused
            } else {
                PlayState::Loading
            };
            if due || self.last_sent.elapsed() >= w.interval {
                w.send(engine, true, None, progress, state);
                self.last_sent = Instant::now();
            }
            if !w.paused {
                return true;
            }
            if w.wait(Duration::from_millis(100)) {
                w.send(engine, true, None, progress, state);
                self.last_sent = Instant::now();
            }
        }
    }
}

impl Sink for Loading<'_> {
    fn after_packets(&mut self, engine: &Engine, _: Timestamp, progress: &Progress) -> Flow {
        if self.between(engine, *progress) {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }
}

/// Loads the whole input in batches ([`Engine::process_batch`]) through the
/// driver, answering the UI (snapshots, focus, pause) between batches.
/// Returns `false` when the UI quit.
fn load_batches(
    w: &mut Worker,
    src: &mut FileSource,
    engine: &mut Engine,
    progress: &mut Progress,
    complete: &mut bool,
) -> bool {
    let mut sink = Loading {
        w,
        last_sent: Instant::now(),
    };
    if !sink.between(engine, *progress) {
        return false;
    }
    let driven = driver::drive(
        src,
        engine,
        &mut sink,
        DriveOptions {
            batch: BATCH,
            paced: None,
            stop: None,
        },
    );
    *progress = driven.progress;
    match driven.reason {
        StopReason::SinkClosed => false,
        // The driver recorded the error as a warning.
        StopReason::Error(_) => {
            *complete = false;
            true
        }
        _ => true,
    }
}

/// How often playback re-checks open silences and answers the UI.
const PLAY_TICK: Duration = Duration::from_millis(50);

/// Playback's [`Sink`]: at every tick, answers the UI (snapshots, focus,
/// pause: the clock stops while paused).
struct Playing<'w> {
    w: &'w mut Worker,
    clock: Playback,
    state: PlayState,
    progress: Progress,
    last_sent: Instant,
}

impl Sink for Playing<'_> {
    fn after_packets(&mut self, _: &Engine, _: Timestamp, progress: &Progress) -> Flow {
        self.progress = *progress;
        Flow::Continue
    }

    fn on_tick(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        _: &[(ConnId, Direction, Span)],
    ) -> Flow {
        let w = &mut *self.w;
        // Never before a packet already read (they may be stamped ahead).
        let now = Some(now.max(engine.counters().last.unwrap_or(now)));
        loop {
            let due = w.poll();
            self.clock.pause(w.paused);
            if w.quit {
                return Flow::Stop;
            }
            let state = if w.paused {
                PlayState::Paused
            } else {
                self.state
            };
            if due || self.last_sent.elapsed() >= w.interval {
                w.send(engine, true, now, self.progress, state);
                self.last_sent = Instant::now();
            }
            if !w.paused {
                return Flow::Continue;
            }
            if w.wait(Duration::from_millis(100)) {
                w.send(engine, true, now, self.progress, state);
                self.last_sent = Instant::now();
            }
        }
    }
}

/// Plays the input at `cfg.speed` times capture time through the driver:
/// packets are released as the playback clock passes their timestamps, open
/// silences re-checked and the UI answered every [`PLAY_TICK`]. Returns when
/// the input ends or the UI quits (`w.quit`).
fn play(
    cfg: &WorkerConfig,
    w: &mut Worker,
    src: FileSource,
    engine: &mut Engine,
    progress: &mut Progress,
    complete: &mut bool,
) {
    let playing = PlayState::Playing { speed: cfg.speed };
    let (mut src, mut clock) = PacedSource::with_clock(src, |t0| Playback::new(t0, cfg.speed));
    w.send(engine, *complete, None, *progress, playing);
    let mut sink = Playing {
        w,
        clock: clock.clone(),
        state: playing,
        progress: *progress,
        last_sent: Instant::now(),
    };
    let driven = driver::drive(
        &mut src,
        engine,
        &mut sink,
        DriveOptions {
            batch: BATCH,
            paced: Some(Paced {
                clock: &mut clock,
                tick: PLAY_TICK,
                // Nothing is sampled.
                sample: Duration::from_secs(3600),
                deadline: None,
                drain: false,
            }),
            stop: None,
        },
    );
    *progress = driven.progress;
    if let StopReason::Error(_) = driven.reason {
        *complete = false;
    }
}

/// An input read to its end before the UI starts: its finished engine
/// (with timelines kept: [`EngineConfig::timeline_events`]), its name and
/// whether it was read whole.
pub struct Loaded {
    /// The finished engine.
    pub engine: Engine,
    /// What was read ("a.pcap + b.pcap.gz", say).
    pub source: String,
    /// False when an input was cut short.
    pub complete: bool,
}

/// Runs the worker on an input already loaded: sends its snapshot, then
/// answers focus changes and exports until the UI quits or goes away.
pub fn run_loaded(loaded: Loaded, events: Sender<Event>, commands: Receiver<Command>) {
    let Loaded {
        engine,
        source,
        complete,
    } = loaded;
    let mut w = Worker {
        source: source.clone(),
        focus: HashSet::new(),
        paused: false,
        quit: false,
        events,
        commands,
        interval: SNAPSHOT_EVERY,
        builder: SnapshotBuilder::new(&source),
        export: None,
    };
    let c = engine.counters();
    let progress = Progress {
        packets: c.packets,
        bytes: c.wire_bytes,
        total: None,
    };
    w.send(&engine, complete, None, progress, PlayState::Done);
    while !w.quit {
        if w.wait(Duration::from_millis(500)) {
            w.send(&engine, complete, None, progress, PlayState::Done);
        }
    }
}

/// Runs the worker until the UI quits or goes away.
pub fn run(cfg: &WorkerConfig, events: Sender<Event>, commands: Receiver<Command>) {
    let mut w = Worker {
        source: cfg.path.display().to_string(),
        focus: HashSet::new(),
        paused: false,
        quit: false,
        events,
        commands,
        interval: SNAPSHOT_EVERY,
        builder: SnapshotBuilder::new(&cfg.path.display().to_string()),
        export: None,
    };
    let (mut src, link) = match driver::open_input(&cfg.path) {
        Ok(s) => s,
        Err(e) => {
            let _ = w.events.send(Event::Snapshot(Box::new(Snapshot::failed(
                &w.source,
                e.to_string(),
            ))));
            return;
        }
    };
    let total = src.file_size();
    let mut engine_config = cfg.engine.clone();
    if engine_config.timeline_events == 0 {
        // The TUI draws timelines; reports alone do not keep them.
        engine_config.timeline_events = crate::analysis::timeline::Timeline::CAP;
    }
    let mut engine = Engine::new(engine_config, link);
    let mut progress = Progress {
        packets: 0,
        bytes: 0,
        total,
    };
    let mut complete = true;
    if cfg.speed <= 0.0 {
        w.send(&engine, complete, None, progress, PlayState::Loading);
        // As fast as possible: no playback clock, so batches (whose flow
        // state is loaded ahead) and the UI answered between them.
        if !load_batches(&mut w, &mut src, &mut engine, &mut progress, &mut complete) {
            return;
        }
    } else {
        play(cfg, &mut w, src, &mut engine, &mut progress, &mut complete);
        if w.quit {
            return;
        }
    }
    engine.finish();
    w.send(&engine, complete, None, progress, PlayState::Done);
    // Finished: answer focus changes until the UI quits.
    while !w.quit {
        if w.wait(Duration::from_millis(500)) {
            w.send(&engine, complete, None, progress, PlayState::Done);
        }
    }
}
