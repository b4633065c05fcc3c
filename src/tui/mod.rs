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
    }
}

/// Opens the terminal UI on a capture file and runs it until the user quits.
///
/// # Errors
/// When the terminal cannot be set up or drawn to.
pub fn replay(cfg: WorkerConfig) -> std::io::Result<()> {
    let (ev_tx, ev_rx) = mpsc::channel::<Event>();
    let (cmd_tx, cmd_rx) = mpsc::channel::<Command>();
    let worker = std::thread::Builder::new()
        .name("hbscope-worker".into())
        .spawn({
            let tx = ev_tx.clone();
            move || worker::run(&cfg, tx, cmd_rx)
        })?;
    // try_init installs a panic hook that restores the terminal first.
    let mut terminal = ratatui::try_init()?;
    let _guard = RestoreGuard;
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
    let events = std::iter::from_fn(|| match ev_rx.recv_timeout(Duration::from_millis(250)) {
        Ok(e) => Some(e),
        Err(mpsc::RecvTimeoutError::Timeout) => Some(Event::Tick),
        Err(mpsc::RecvTimeoutError::Disconnected) => None,
    });
    let export_dir = std::env::current_dir().unwrap_or_else(|_| ".".into());
    let mut app = App::new(export_dir);
    let mut send = |c: Command| {
        let _ = cmd_tx.send(c);
    };
    let result = run(&mut terminal, &mut app, events, &mut send);
    let _ = cmd_tx.send(Command::Quit);
    drop(cmd_tx);
    let _ = worker.join();
    result
}
