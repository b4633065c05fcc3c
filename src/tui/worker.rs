//! The worker thread: owns the [`Engine`], reads the capture (as fast as
//! possible or at N x real time), and sends [`Snapshot`]s to the UI. It
//! listens for [`Command`]s (focus, pause, quit) between packets.
//!
//! "Now" is the playback clock: with `--speed N` it moves with the wall clock
//! even when no packet arrives, so a silence still open grows on screen and
//! [`Engine::tick`] flags it when it passes the limit (as live capture will).

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::time::{Duration, Instant};

use super::snapshot::{PlayState, Snapshot, SnapshotBuilder, Timelines};
use super::state::{Command, Event};
use crate::capture::FileSource;
use crate::driver::{self, DriveOptions, Flow, Progress, Sink, StopReason};
use crate::engine::{Engine, EngineConfig};
use crate::model::{Span, Timestamp};

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
    focus: HashSet<usize>,
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
fn export_report(engine: &Engine, source: &str, complete: bool, path: &std::path::Path) -> String {
    let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let written = std::fs::File::create(path)
        .map_err(|e| e.to_string())
        .and_then(|f| {
            let rep = crate::report::build(engine, source, complete);
            crate::report::write_json(&rep, std::io::BufWriter::new(f)).map_err(|e| e.to_string())
        });
    match written {
        Ok(()) => format!(
            "JSON report (as read so far, {} packets) written to {}",
            engine.counters().packets,
            shown.display()
        ),
        Err(e) => format!("could not write {}: {e}", shown.display()),
    }
}

/// A playback clock that stops while paused.
struct Clock {
    speed: f64,
    played: Duration,
    since: Option<Instant>,
}

impl Clock {
    fn elapsed(&self) -> Duration {
        self.played + self.since.map_or(Duration::ZERO, |s| s.elapsed())
    }
    fn pause(&mut self, paused: bool) {
        match (paused, self.since) {
            (true, Some(s)) => {
                self.played += s.elapsed();
                self.since = None;
            }
            (false, None) => self.since = Some(Instant::now()),
            _ => {}
        }
    }
    /// Capture time reached, counted from the first packet `t0`.
    fn now(&self, t0: Timestamp) -> Timestamp {
        #[allow(clippy::cast_possible_truncation)]
        let ns = (self.elapsed().as_secs_f64() * self.speed * 1e9) as i64;
        t0.plus(Span(ns))
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

/// Plays the input at `cfg.speed` times capture time, one packet at a time
/// (the clock decides when each packet is due), answering the UI while it
/// waits. Returns when the input ends or the UI quits (`w.quit`).
fn play(
    cfg: &WorkerConfig,
    w: &mut Worker,
    src: &mut FileSource,
    engine: &mut Engine,
    progress: &mut Progress,
    complete: &mut bool,
) {
    let playing = PlayState::Playing { speed: cfg.speed };
    let mut clock = Clock {
        speed: cfg.speed,
        played: Duration::ZERO,
        since: Some(Instant::now()),
    };
    let mut last_sent = Instant::now();
    let mut t0: Option<Timestamp> = None;
    w.send(engine, *complete, None, *progress, playing);
    loop {
        if w.quit {
            return;
        }
        let rec = match src.next_packet() {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e) => {
                *complete = false;
                engine.warn(e.warning_code(), e.to_string());
                break;
            }
        };
        let ts = rec.ts;
        let start = *t0.get_or_insert(ts);
        // Wait for the playback clock (and while paused), still answering the UI.
        loop {
            let mut due = w.poll();
            clock.pause(w.paused);
            if w.quit {
                return;
            }
            let state = if w.paused { PlayState::Paused } else { playing };
            let wait = if w.paused {
                Some(Duration::from_millis(100))
            } else {
                let ahead = ts.since(clock.now(start)).as_secs_f64() / cfg.speed;
                (ahead > 0.0).then(|| Duration::from_secs_f64(ahead.min(0.1)))
            };
            let now = Some(
                clock
                    .now(start)
                    .min(ts)
                    .max(engine.counters().last.unwrap_or(start)),
            );
            if let Some(now) = now {
                engine.tick(now);
            }
            if due || last_sent.elapsed() >= w.interval {
                w.send(engine, *complete, now, *progress, state);
                last_sent = Instant::now();
                due = false;
            }
            let _ = due;
            match wait {
                Some(d) => {
                    if w.wait(d) {
                        w.send(engine, *complete, now, *progress, state);
                        last_sent = Instant::now();
                    }
                }
                None => break,
            }
        }
        engine.process(&rec);
        progress.packets += 1;
        progress.bytes = src.bytes_consumed();
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
        play(
            cfg,
            &mut w,
            &mut src,
            &mut engine,
            &mut progress,
            &mut complete,
        );
        if w.quit {
            return;
        }
    }
    progress.bytes = src.bytes_consumed();
    engine.finish();
    w.send(&engine, complete, None, progress, PlayState::Done);
    // Finished: answer focus changes until the UI quits.
    while !w.quit {
        if w.wait(Duration::from_millis(500)) {
            w.send(&engine, complete, None, progress, PlayState::Done);
        }
    }
}
