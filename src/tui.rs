//! The terminal UI (the only module touching ratatui and crossterm).
//!
//! ```text
//! worker thread: FileSource -> Engine -> Snapshot --\
//!                                                    > Event channel -> App::update -> ui::draw
//! input thread:  crossterm key events --------------/        |
//!                                       Command (focus, pause, quit) -> worker
//! ```
//! The UI thread never touches the engine: it draws the latest [`Snapshot`]
//! and asks the worker for what it needs. [`run`] is generic over the ratatui
//! backend and takes its events from any iterator, so tests drive the real
//! loop with keys and snapshots into a `TestBackend`, without sleeping.

pub mod snapshot;
pub mod state;
pub mod ui;
pub mod worker;

use std::sync::mpsc;
use std::time::Duration;

use ratatui::backend::Backend;
use ratatui::crossterm::event::{self as ct, Event as CtEvent};
use ratatui::Terminal;

pub use snapshot::{PlayState, Snapshot, Timelines};
pub use state::{Action, App, Command, Event};
pub use worker::WorkerConfig;

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
    terminal.draw(|f| ui::draw(f, app))?;
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
        terminal.draw(|f| ui::draw(f, app))?;
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
pub fn replay(cfg: WorkerConfig) -> std::io::Result<()> {
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
    let worker_failed = Arc::new(AtomicBool::new(false));
    let worker = std::thread::Builder::new()
        .name("hbscope-worker".into())
        .spawn({
            let tx = ev_tx.clone();
            let failed = Arc::clone(&worker_failed);
            move || {
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    if std::env::var_os("HBSCOPE_TEST_PANIC").is_some_and(|v| v == "worker") {
                        panic!(
                            "HBSCOPE_TEST_PANIC=worker: deliberate panic in the analysis thread"
                        );
                    }
                    worker::run(&cfg, tx, cmd_rx);
                }));
                if ran.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
            }
        })?;
    // try_init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init()?;
    let _guard = RestoreGuard;
    let restore_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        show_cursor();
        restore_hook(info);
    }));
    std::thread::Builder::new()
        .name("hbscope-input".into())
        .spawn(move || loop {
            match ct::read() {
                Ok(CtEvent::Key(k)) => {
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
        if terminate.load(Ordering::SeqCst) || worker_failed.load(Ordering::SeqCst) {
            return None;
        }
        // Test hook for the terminal-restore test: panic in the UI thread.
        assert!(
            !ui_panic,
            "HBSCOPE_TEST_PANIC=ui: deliberate panic in the UI thread"
        );
        if let Some(e) = pending.pop_front() {
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
        pending.pop_front()
    });
    let export_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let mut app = App::new(export_dir);
    app.no_color = no_color();
    let mut send = |c: Command| {
        let _ = cmd_tx.send(c);
    };
    let result = run(&mut terminal, &mut app, events, &mut send);
    let _ = cmd_tx.send(Command::Quit);
    drop(cmd_tx);
    let _ = worker.join();
    if worker_failed.load(Ordering::SeqCst) {
        return Err(std::io::Error::other(
            "the analysis thread failed (see the message above); please report it with the capture if you can share it",
        ));
    }
    result
}
