//! The TUI rendered into ratatui's `TestBackend` and snapshotted with insta.
//! Keys and snapshots go through the real event loop (`tui::run`); nothing sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hbscope::app::{self, Progress};
use hbscope::engine::EngineConfig;
use hbscope::tui::{self, App, Command, Event, PlayState, Snapshot, Timelines};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Terminal;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

/// The finished analysis of a capture, as the worker would send it. The
/// source is the relative path, so no machine-specific path enters snapshots.
fn finished(name: &str) -> Snapshot {
    let mut last = Progress::default();
    let config = EngineConfig {
        timeline_events: hbscope::timeline::Timeline::CAP,
        ..EngineConfig::default()
    };
    let r = app::replay(&capture(name), config, &mut |p| last = p).expect("capture readable");
    Snapshot::build(
        &r.engine,
        &format!("captures/{name}"),
        r.complete,
        None,
        last,
        PlayState::Done,
        Timelines::All,
    )
}

fn key(c: KeyCode) -> Event {
    Event::Key(KeyEvent::new(c, KeyModifiers::NONE))
}

fn ch(c: char) -> Event {
    key(KeyCode::Char(c))
}

/// Runs the real loop on `events` and returns the screen and the commands sent.
fn render(w: u16, h: u16, events: Vec<Event>) -> (String, App, Vec<Command>) {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut app = App::new(std::env::temp_dir());
    let mut sent = Vec::new();
    tui::run(&mut terminal, &mut app, events, &mut |c| sent.push(c)).unwrap();
    (terminal.backend().to_string(), app, sent)
}

fn both_sizes(name: &str, events: impl Fn() -> Vec<Event>) {
    for (w, h) in [(120, 40), (80, 24)] {
        let (screen, _, _) = render(w, h, events());
        insta::assert_snapshot!(format!("{name}_{w}x{h}"), screen);
    }
}

#[test]
fn connection_list_many_busy_one_stalled() {
    let snap = finished("many-busy-one-stalled.pcap");
    both_sizes("many_busy_list", || {
        vec![Event::Snapshot(Box::new(snap.clone()))]
    });
}

#[test]
fn connection_list_healthy_busy() {
    let snap = finished("healthy-busy.pcap");
    both_sizes("healthy_busy_list", || {
        vec![Event::Snapshot(Box::new(snap.clone()))]
    });
}

#[test]
fn nova_stalled_connection_timeline_and_gap_detail() {
    let snap = finished("nova-api-eventlet.pcap");
    let stalled = snap
        .conns
        .iter()
        .position(|c| !c.gaps.is_empty())
        .expect("a flagged connection");
    both_sizes("nova_stalled", || {
        let mut ev = vec![Event::Snapshot(Box::new(snap.clone()))];
        ev.extend((0..stalled).map(|_| key(KeyCode::Down)));
        ev.push(key(KeyCode::Enter));
        ev
    });
    let (screen, app, _) = render(120, 40, {
        let mut ev = vec![Event::Snapshot(Box::new(snap.clone()))];
        ev.extend((0..stalled).map(|_| key(KeyCode::Down)));
        ev.push(key(KeyCode::Enter));
        ev
    });
    assert_eq!(
        app.selected_gap().map(|g| g.cause.as_str()),
        Some("client-stall")
    );
    assert!(screen.contains("acknowledged broker data"));
}

#[test]
fn help_overlay() {
    let snap = finished("nova-api-eventlet.pcap");
    both_sizes("help", || {
        vec![Event::Snapshot(Box::new(snap.clone())), ch('?')]
    });
}

#[test]
fn empty_capture() {
    let snap = finished("empty.pcap");
    both_sizes("empty", || vec![Event::Snapshot(Box::new(snap.clone()))]);
}

#[test]
fn heartbeat_disabled() {
    let snap = finished("heartbeat-disabled.pcap");
    both_sizes("heartbeat_disabled", || {
        vec![Event::Snapshot(Box::new(snap.clone()))]
    });
}

#[test]
fn zoom_pan_filter_sort_and_quit_through_update() {
    let snap = finished("many-busy-one-stalled.pcap");
    let n = snap.conns.len();
    let (_, app, sent) = render(
        120,
        40,
        vec![
            Event::Snapshot(Box::new(snap.clone())),
            ch('f'),
            ch('s'),
            ch('/'),
            ch('z'),
            ch('z'),
            key(KeyCode::Esc),
            ch('+'),
            key(KeyCode::Left),
            Event::Tick,
        ],
    );
    assert!(app.flagged_only);
    assert_eq!(
        app.visible().len(),
        snap.conns.iter().filter(|c| c.flagged()).count()
    );
    assert!(app.visible().len() < n);
    assert!(app.filter.is_empty() && !app.filter_editing);
    assert!(app.view.is_some());
    assert!(!app.quit);
    assert!(matches!(sent.first(), Some(Command::Focus(_))));

    // Key releases are ignored; q quits and tells the worker.
    let mut release = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
    release.kind = KeyEventKind::Release;
    let (_, app, sent) = render(80, 24, vec![Event::Key(release)]);
    assert!(!app.quit && sent.is_empty());
    let (_, app, sent) = render(80, 24, vec![ch('q'), ch('j')]);
    assert!(app.quit);
    assert_eq!(sent, vec![Command::Quit]);
}

#[test]
fn export_writes_the_json_report() {
    let snap = finished("nova-api-eventlet.pcap");
    let dir = std::env::temp_dir().join(format!("hbscope-tui-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new(dir.clone());
    tui::run(
        &mut terminal,
        &mut app,
        vec![Event::Snapshot(Box::new(snap)), ch('e')],
        &mut |_| {},
    )
    .unwrap();
    let path = dir.join("hbscope-report-nova-api-eventlet.json");
    let json = std::fs::read_to_string(&path).expect("report written");
    assert!(json.contains("\"client-stall\""));
    assert!(app
        .status
        .as_deref()
        .is_some_and(|s| s.contains("hbscope-report-nova-api-eventlet.json")));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn worker_streams_snapshots_and_answers_focus() {
    use hbscope::tui::worker::{self, WorkerConfig};
    use std::sync::mpsc;

    let (ev_tx, ev_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let cfg = WorkerConfig {
        path: capture("nova-api-eventlet.pcap"),
        engine: EngineConfig::default(),
        speed: 0.0,
    };
    let handle = std::thread::spawn(move || worker::run(&cfg, ev_tx, cmd_rx));
    let next = || match ev_rx.recv().expect("worker alive") {
        Event::Snapshot(s) => *s,
        other => panic!("unexpected event {other:?}"),
    };
    let mut snap = next();
    while snap.state != PlayState::Done {
        snap = next();
    }
    assert_eq!(snap.report.summary.gaps, 1);
    assert!(snap.conns.iter().all(|c| c.timeline.is_none()));
    let slot = snap.conns[0].slot;
    cmd_tx.send(Command::Focus(slot)).unwrap();
    let snap = next();
    let tl = snap.conns[0].timeline.as_ref().expect("timeline sent");
    assert!(!tl.client.is_empty() && !tl.broker.is_empty());
    cmd_tx.send(Command::Quit).unwrap();
    handle.join().unwrap();
}
