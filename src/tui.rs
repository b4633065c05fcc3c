//! The terminal UI (the only module touching ratatui and crossterm).
//!
//! ```text
//! worker thread: FileSource -> Engine -> Snapshot --\   (or an Engine already loaded)
//!                                                    > Event channel -> App::update -> ui::draw
//! input thread:  crossterm key events --------------/        |
//!                                       Command (focus, pause, quit) -> worker
//! ```
//! The UI thread never touches the engine: it draws the latest [`Snapshot`]
//! and asks the worker for what it needs. [`run`] is generic over the ratatui
//! backend and takes its events from any iterator, so tests drive the real
//! loop with keys and snapshots into a `TestBackend`, without sleeping.

pub mod live;
pub mod snapshot;
pub mod state;
pub mod ui;
pub mod worker;

use std::sync::mpsc;
use std::time::Duration;

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self as ct, Event as CtEvent};
use ratatui::Terminal;

pub use snapshot::{LiveHeader, PlayState, Snapshot, Timelines};
pub use state::{Action, App, Command, Event};
pub use worker::{Loaded, WorkerConfig};

/// Runs the event loop: draws, then for each event updates the app, forwards
/// its commands and draws again, until the app quits or the events end.
///
/// # Errors
/// When drawing to the backend fails.
pub fn run<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    events: impl IntoIterator<Item = Event>,
    commands: &mut dyn FnMut(Command),
) -> Result<(), B::Error> {
    let area = terminal.draw(|f| ui::draw(f, app))?.area;
    app.update(Action::Screen(area.width, area.height));
    for ev in events {
        if let Some(action) = app.action_for(ev) {
            app.update(action);
        }
        for c in app.outbox.drain(..) {
            commands(c);
        }
        if app.quit {
            break;
        }
        let area = terminal.draw(|f| ui::draw(f, app))?.area;
        app.update(Action::Screen(area.width, area.height));
    }
    Ok(())
}

/// Restores the terminal when dropped, so every exit path (errors included)
/// leaves it usable; panics are covered by ratatui's panic hook.
struct RestoreGuard;

impl Drop for RestoreGuard {
    fn drop(&mut self) {
        ratatui::restore();
        show_cursor();
    }
}

/// `ratatui::restore` leaves the cursor as it was; a hidden cursor after exit
/// is a broken terminal too.
fn show_cursor() {
    let _ = ratatui::crossterm::execute!(std::io::stdout(), ratatui::crossterm::cursor::Show);
}

/// `NO_COLOR` (<https://no-color.org>): set and not empty means no colours.
#[must_use]
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

/// Opens the terminal UI on a capture file and runs it until the user quits.
///
/// # Errors
/// When the terminal cannot be set up or drawn to.
pub fn replay(cfg: WorkerConfig, zone: crate::report::Zone) -> std::io::Result<()> {
    let export_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let mut app = App::new(export_dir);
    app.zone = zone;
    session(app, false, move |tx, rx| {
        worker::run(&cfg, tx, rx);
    })
}

/// Opens the terminal UI on an input already read to its end (several parts
/// of one capture, or a filtered read: the caller reads them, with the
/// checks only it can make) and runs it until the user quits.
///
/// # Errors
/// When the terminal cannot be set up or drawn to.
pub fn show(loaded: worker::Loaded, zone: crate::report::Zone) -> std::io::Result<()> {
    let export_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let mut app = App::new(export_dir);
    app.zone = zone;
    session(app, false, move |tx, rx| {
        worker::run_loaded(loaded, tx, rx);
    })
}

/// Runs the live screen: `capture` runs the capture loop on its own thread
/// with a [`live::LiveView`] as its view (it returns when `q` quits, or by
/// itself on a signal, `--duration` or an error); the UI runs on this thread
/// until then. The terminal is restored before this returns `capture`'s
/// result (the final report, printed by the caller).
///
/// # Errors
/// When the terminal cannot be set up or drawn to, or the capture thread panicked.
pub fn live<R: Send>(
    info: live::LiveInfo,
    zone: crate::report::Zone,
    capture: impl FnOnce(live::LiveView) -> R + Send,
) -> std::io::Result<R> {
    let export_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let mut app = App::new(export_dir);
    app.live = true;
    app.zone = zone;
    session(app, true, move |tx, rx| {
        capture(live::LiveView::new(info, tx, rx))
    })
}

/// The terminal session both screens share: the worker (`work`) on a
/// scoped thread sending [`Event`]s and reading [`Command`]s, the keys on
/// another, the UI loop here. Ends when the user quits, on SIGTERM/SIGHUP,
/// when the worker panics, or (`end_with_worker`) when it returns; the
/// terminal is restored on every path.
fn session<R: Send>(
    mut app: App,
    end_with_worker: bool,
    work: impl FnOnce(mpsc::Sender<Event>, mpsc::Receiver<Command>) -> R + Send,
) -> std::io::Result<R> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let (ev_tx, ev_rx) = mpsc::channel::<Event>();
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>();
    // SIGTERM / SIGHUP end the UI like `q` does, so the terminal is restored.
    let terminate = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP] {
        signal_hook::flag::register(sig, Arc::clone(&terminate))?;
    }
    // A panic in the worker ends the UI (restoring the terminal) with an error.
    let worker_failed = AtomicBool::new(false);
    let worker_done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("hbscope-worker".into())
            .spawn_scoped(scope, {
                let tx = ev_tx.clone();
                let (failed, done) = (&worker_failed, &worker_done);
                move || {
                    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        if std::env::var_os("HBSCOPE_TEST_PANIC").is_some_and(|v| v == "worker") {
                            panic!(
                                "HBSCOPE_TEST_PANIC=worker: deliberate panic in the analysis thread"
                            );
                        }
                        work(tx, cmd_rx)
                    }));
                    if ran.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    done.store(true, Ordering::SeqCst);
                    ran.ok()
                }
            })?;
        let ended = |failed_only: bool| {
            worker_failed.load(Ordering::SeqCst)
                || (!failed_only && worker_done.load(Ordering::SeqCst))
        };
        let stop = || terminate.load(Ordering::SeqCst) || ended(!end_with_worker);
        let drawn = ui_loop(&mut app, ev_tx, &ev_rx, &cmd_tx, &stop);
        let _ = cmd_tx.send(Command::Quit);
        drop(cmd_tx);
        let out = worker.join().ok().flatten();
        drawn?;
        out.ok_or_else(|| std::io::Error::other(
            "the analysis thread failed (see the message above); please report it with the capture if you can share it",
        ))
    })
}

/// Sets up the terminal, runs the UI until it ends and restores the terminal.
fn ui_loop(
    app: &mut App,
    ev_tx: mpsc::Sender<Event>,
    ev_rx: &mpsc::Receiver<Event>,
    cmd_tx: &mpsc::Sender<Command>,
    stop: &dyn Fn() -> bool,
) -> std::io::Result<()> {
    // try_init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init()?;
    let _guard = RestoreGuard;
    let restore_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        show_cursor();
        restore_hook(info);
    }));
    let mut latency = KeyLatencyLog::from_env();
    let read_at = latency.as_ref().map(|l| std::sync::Arc::clone(&l.read_at));
    // Not scoped: it blocks reading the terminal until the process ends.
    std::thread::Builder::new()
        .name("hbscope-input".into())
        .spawn(move || loop {
            match ct::read() {
                Ok(CtEvent::Key(k)) => {
                    if let Some(q) = &read_at {
                        if let Ok(mut q) = q.lock() {
                            q.push_back(std::time::Instant::now());
                        }
                    }
                    if ev_tx.send(Event::Key(k)).is_err() {
                        return;
                    }
                }
                Ok(CtEvent::Resize(..)) => {
                    if ev_tx.send(Event::Resize).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(_) => return,
            }
        })?;
    let ui_panic = std::env::var_os("HBSCOPE_TEST_PANIC").is_some_and(|v| v == "ui");
    let mut pending: std::collections::VecDeque<Event> = std::collections::VecDeque::new();
    let events = std::iter::from_fn(|| {
        // The previous event was handled and the screen drawn (`run` asks
        // for the next event only then): the end of a key's redraw.
        if let Some(l) = latency.as_mut() {
            l.drawn();
        }
        if stop() {
            return None;
        }
        // Test hook for the terminal-restore test: panic in the UI thread.
        assert!(
            !ui_panic,
            "HBSCOPE_TEST_PANIC=ui: deliberate panic in the UI thread"
        );
        if let Some(e) = pending.pop_front() {
            if let (Some(l), Event::Key(k)) = (latency.as_mut(), &e) {
                l.handling(*k);
            }
            return Some(e);
        }
        let first = match ev_rx.recv_timeout(Duration::from_millis(100)) {
            Ok(e) => e,
            Err(mpsc::RecvTimeoutError::Timeout) => return Some(Event::Tick),
            Err(mpsc::RecvTimeoutError::Disconnected) => return None,
        };
        // Whatever queued up while the last frame was drawn: keys in order,
        // then only the newest snapshot, so a slow draw on a big capture never
        // leaves the user's keys waiting behind stale snapshots.
        let mut latest = None;
        for e in std::iter::once(first).chain(ev_rx.try_iter()) {
            match e {
                Event::Snapshot(_) => latest = Some(e),
                other => pending.push_back(other),
            }
        }
        pending.extend(latest);
        let e = pending.pop_front();
        if let (Some(l), Some(Event::Key(k))) = (latency.as_mut(), &e) {
            l.handling(*k);
        }
        e
    });
    let mut send = |c: Command| {
        let _ = cmd_tx.send(c);
    };
    run(&mut terminal, app, events, &mut send)
}

/// `HBSCOPE_KEY_LATENCY_LOG=FILE` (a measuring aid for
/// `benches/live_tui.sh`, not an option): for every key event, one line
/// `KEY MICROSECONDS` with the time from the input thread's `read` of the key
/// to the end of the redraw that followed its handling. Off (and free)
/// when the variable is unset.
struct KeyLatencyLog {
    /// When the input thread read each key not yet handled, in order.
    read_at: std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<std::time::Instant>>>,
    /// The key being handled, and when it was read.
    current: Option<(ct::KeyCode, std::time::Instant)>,
    out: std::io::LineWriter<std::fs::File>,
}

impl KeyLatencyLog {
    fn from_env() -> Option<Self> {
        let path = std::env::var_os("HBSCOPE_KEY_LATENCY_LOG").filter(|p| !p.is_empty())?;
        let file = std::fs::File::create(path).ok()?;
        Some(KeyLatencyLog {
            read_at: std::sync::Arc::default(),
            current: None,
            out: std::io::LineWriter::new(file),
        })
    }

    /// The event loop is about to handle key `k` (the oldest one read).
    fn handling(&mut self, k: ct::KeyEvent) {
        let at = self.read_at.lock().ok().and_then(|mut q| q.pop_front());
        self.current = at.map(|t| (k.code, t));
    }

    /// The screen was drawn after the last event.
    fn drawn(&mut self) {
        use std::io::Write;
        if let Some((code, t)) = self.current.take() {
            let _ = writeln!(self.out, "{code:?} {}", t.elapsed().as_micros());
        }
    }
}
