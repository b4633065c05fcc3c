//! The TUI rendered into ratatui's `TestBackend` and snapshotted with insta.
//! Keys and snapshots go through the real event loop (`tui::run`); nothing sleeps.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hbscope::engine::EngineConfig;
use hbscope::run::replay::{self, Progress};
use hbscope::tui::{self, App, Command, Event, PlayState, Snapshot, Timelines};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use ratatui::Terminal;

mod pcapedit;

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
        timeline_events: hbscope::analysis::timeline::Timeline::CAP,
        ..EngineConfig::default()
    };
    let r = replay::replay(&capture(name), config, &mut |p| last = p).expect("capture readable");
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

/// The help fits 80x24 with a free row above and below it; on a shorter
/// screen it scrolls (the moving keys scroll it while it is shown) and
/// says that more is hidden.
#[test]
fn help_fits_80x24_and_scrolls_when_shorter() {
    let snap = finished("nova-api-eventlet.pcap");
    let s = || Event::Snapshot(Box::new(snap.clone()));
    let last = "ratio = longest silence / limit";
    let (screen, _, _) = render(80, 24, vec![s(), ch('?')]);
    let rows: Vec<&str> = screen.lines().collect();
    assert!(!rows[0].contains("help"), "{screen}");
    assert!(rows[1].contains(" help (? or Esc closes) "), "{screen}");
    assert!(rows[21].contains(last), "{screen}");
    assert!(rows[22].contains("└──"), "{screen}");
    assert!(
        !rows[23].contains('│'),
        "the last row is the footer's:\n{screen}"
    );
    assert!(!screen.contains("more "), "{screen}");

    let (screen, app, _) = render(80, 16, vec![s(), ch('?')]);
    assert!(
        !screen.contains(last) && screen.contains("↓ more"),
        "{screen}"
    );
    assert_eq!(app.selected_row(), Some(0));
    let (screen, app, _) = render(80, 16, vec![s(), ch('?'), ch('G')]);
    assert!(
        screen.contains(last) && screen.contains("↑ more"),
        "{screen}"
    );
    assert!(!screen.contains("↑ ↓  j k"), "{screen}");
    assert_eq!(
        app.selected_row(),
        Some(0),
        "G scrolled the help, not the table"
    );
    let (screen, _, _) = render(
        80,
        16,
        vec![s(), ch('?'), key(KeyCode::PageDown), key(KeyCode::Up)],
    );
    assert!(screen.contains("↑↓ more"), "{screen}");
    // Closing and reopening starts at the top again.
    let (screen, _, _) = render(80, 16, vec![s(), ch('?'), ch('G'), ch('?'), ch('?')]);
    assert!(
        screen.contains("↑ ↓  j k") && !screen.contains(last),
        "{screen}"
    );
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

/// A real worker on a shipped capture: its events, its command channel, its thread.
fn spawn_worker(
    name: &str,
) -> (
    std::sync::mpsc::Receiver<Event>,
    std::sync::mpsc::Sender<Command>,
    std::thread::JoinHandle<()>,
) {
    spawn_worker_at(name, 0.0)
}

/// As [`spawn_worker`], playing at `speed` times capture time (0: as fast as possible).
fn spawn_worker_at(
    name: &str,
    speed: f64,
) -> (
    std::sync::mpsc::Receiver<Event>,
    std::sync::mpsc::Sender<Command>,
    std::thread::JoinHandle<()>,
) {
    let (ev_tx, ev_rx) = std::sync::mpsc::channel();
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let cfg = tui::worker::WorkerConfig {
        path: capture(name),
        engine: EngineConfig::default(),
        speed,
    };
    let handle = std::thread::spawn(move || tui::worker::run(&cfg, ev_tx, cmd_rx));
    (ev_rx, cmd_tx, handle)
}

/// Loading as fast as possible (batches of packets) and playing on the
/// playback clock (one packet at a time, the clock ticking the analysis) end
/// with the same report, and each says what it is doing on the way.
#[test]
fn loading_and_playing_end_with_the_same_report() {
    let finish = |speed: f64| {
        let (ev_rx, cmd_tx, handle) = spawn_worker_at("nova-api-eventlet.pcap", speed);
        let mut states = Vec::new();
        let done = loop {
            match ev_rx.recv().expect("worker alive") {
                Event::Snapshot(s) => {
                    states.push(s.state);
                    if s.state == PlayState::Done {
                        break *s;
                    }
                }
                other => panic!("unexpected event {other:?}"),
            }
        };
        cmd_tx.send(Command::Quit).unwrap();
        handle.join().unwrap();
        let report = done.report.expect("a report when done");
        (states, serde_json::to_string(&*report).unwrap())
    };
    let (loading, loaded) = finish(0.0);
    // The capture spans minutes: a million times faster plays it in well under a second.
    let (playing, played) = finish(1e6);
    assert_eq!(loading.first(), Some(&PlayState::Loading));
    assert_eq!(playing.first(), Some(&PlayState::Playing { speed: 1e6 }));
    assert!(loaded.contains("\"cause\":\"client-stall\""), "{loaded}");
    assert_eq!(loaded, played);
}

/// Playing at 5x through the driver's paced loop: while the stopped client
/// is silent past its limit (and before the broker's reset ends it), the
/// snapshots show the gap open, flagged by the playback clock's ticks alone.
#[test]
fn playing_shows_a_silence_open_before_it_ends() {
    let (ev_rx, cmd_tx, handle) = spawn_worker_at("client-sigstop.pcap", 5.0);
    let mut open_seen = 0;
    let mut last_now = None;
    let done = loop {
        let Event::Snapshot(s) = ev_rx.recv().expect("worker alive") else {
            continue;
        };
        if s.state == PlayState::Done {
            break *s;
        }
        if let (Some(prev), Some(now)) = (last_now, s.now) {
            assert!(now >= prev, "the playback clock went back");
        }
        last_now = s.now.or(last_now);
        for c in &s.conns {
            for g in c.gaps.iter() {
                let r = serde_json::to_value(&g.report).unwrap();
                if r["ended_by"] == "open" {
                    let now = s.now.expect("a playing snapshot has a now");
                    assert!(now.since(g.start) > g.limit, "{r}");
                    open_seen += 1;
                }
            }
        }
    };
    cmd_tx.send(Command::Quit).unwrap();
    handle.join().unwrap();
    assert!(open_seen > 0, "no snapshot showed the open silence");
    let rep = done.report.expect("a report when done");
    assert_eq!(rep.summary.gaps, 1);
}

#[test]
fn worker_streams_snapshots_and_answers_focus() {
    let (ev_rx, cmd_tx, handle) = spawn_worker("nova-api-eventlet.pcap");
    let next = || match ev_rx.recv().expect("worker alive") {
        Event::Snapshot(s) => *s,
        other => panic!("unexpected event {other:?}"),
    };
    let mut snap = next();
    while snap.state != PlayState::Done {
        snap = next();
    }
    assert_eq!(snap.header.summary.gaps, 1);
    assert!(snap.report.as_ref().is_some_and(|r| r.summary.gaps == 1));
    assert!(snap.conns.iter().all(|c| c.timeline.is_none()));
    let slot = snap.conns[0].slot;
    cmd_tx.send(Command::Focus(slot)).unwrap();
    let snap = next();
    let tl = snap.conns[0].timeline.as_ref().expect("timeline sent");
    assert!(!tl.client.is_empty() && !tl.broker.is_empty());
    cmd_tx.send(Command::Quit).unwrap();
    handle.join().unwrap();
}

/// The worker's cached snapshots must say exactly what a fresh build says, at
/// every point of a replay (the cache is an optimisation, never a difference),
/// and must reuse what did not change.
#[test]
fn incremental_snapshots_equal_fresh_ones() {
    use hbscope::capture::FileSource;
    use hbscope::engine::Engine;
    use hbscope::tui::snapshot::SnapshotBuilder;

    for name in ["many-busy-one-stalled.pcap", "nova-api-eventlet.pcap"] {
        let mut src = FileSource::open(&capture(name)).unwrap();
        let config = EngineConfig {
            timeline_events: hbscope::analysis::timeline::Timeline::CAP,
            ..EngineConfig::default()
        };
        let mut engine = Engine::new(config, src.link_type());
        let mut builder = SnapshotBuilder::new(name);
        let mut n = 0u64;
        let mut compared = 0;
        let mut reused = 0usize;
        let mut previous: Option<Snapshot> = None;
        loop {
            let more = match src.next_packet().unwrap() {
                Some(rec) => {
                    engine.process(&rec);
                    true
                }
                None => false,
            };
            n += 1;
            if !more {
                engine.finish();
            }
            if n.is_multiple_of(13) || !more {
                let state = if more {
                    PlayState::Loading
                } else {
                    PlayState::Done
                };
                let p = Progress::default();
                let cached = builder.build(&engine, true, None, p, state, Timelines::All);
                let fresh = Snapshot::build(&engine, name, true, None, p, state, Timelines::All);
                assert_eq!(cached, fresh, "{name}: snapshot after {n} packets differs");
                if let Some(prev) = &previous {
                    reused += cached
                        .conns
                        .iter()
                        .filter(|c| {
                            prev.conns.iter().any(|p| {
                                p.slot == c.slot && std::sync::Arc::ptr_eq(&p.core, &c.core)
                            })
                        })
                        .count();
                }
                previous = Some(cached);
                compared += 1;
            }
            if !more {
                break;
            }
        }
        assert!(compared > 3, "{name}: only {compared} snapshots compared");
        assert!(reused > 0, "{name}: no connection view was reused");
        let last = previous.unwrap();
        assert!(
            last.report.is_some(),
            "the final snapshot carries the report"
        );
    }
}

/// While the input is still being read the snapshot has no report: `e` asks
/// the worker, which writes the report of the engine as it stands.
#[test]
fn export_while_loading_goes_through_the_worker() {
    let dir = std::env::temp_dir().join(format!("hbscope-tui-export-w-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The UI side: a loading snapshot, then `e`.
    let mut loading = finished("nova-api-eventlet.pcap");
    loading.state = PlayState::Loading;
    loading.report = None;
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new(dir.clone());
    let mut sent = Vec::new();
    tui::run(
        &mut terminal,
        &mut app,
        vec![Event::Snapshot(Box::new(loading)), ch('e')],
        &mut |c| sent.push(c),
    )
    .unwrap();
    let path = dir.join("hbscope-report-nova-api-eventlet.json");
    assert!(sent.contains(&Command::Export(path.clone())), "{sent:?}");
    assert!(app.status.as_deref().is_some_and(|s| s.contains("writing")));
    // The worker side: it answers the command with a status and the file.
    let (ev_rx, cmd_tx, handle) = spawn_worker("nova-api-eventlet.pcap");
    cmd_tx.send(Command::Export(path.clone())).unwrap();
    let status = loop {
        match ev_rx.recv().expect("worker alive") {
            Event::Status(s) => break s,
            Event::Snapshot(_) => {}
            other => panic!("unexpected event {other:?}"),
        }
    };
    assert!(
        status.contains("hbscope-report-nova-api-eventlet.json"),
        "{status}"
    );
    let json = std::fs::read_to_string(&path).expect("report written");
    assert!(json.contains("\"schema_version\""));
    cmd_tx.send(Command::Quit).unwrap();
    handle.join().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

fn render_buf(w: u16, h: u16, app: &mut App, events: Vec<Event>) -> ratatui::buffer::Buffer {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    tui::run(&mut terminal, app, events, &mut |_| {}).unwrap();
    terminal.backend().buffer().clone()
}

fn row_text(buf: &ratatui::buffer::Buffer, y: u16) -> String {
    (0..buf.area.width)
        .map(|x| buf[(x, y)].symbol().to_owned())
        .collect()
}

fn is_braille(sym: &str) -> bool {
    sym.chars()
        .next()
        .is_some_and(|c| ('\u{2801}'..='\u{28ff}').contains(&c))
}

/// The silence chart's y labels sit on the rows of their values: the limit
/// line (red) is drawn on the row labelled with the limit (4 s here), and on
/// no other row; the legend is shown at 120x40.
#[test]
fn chart_limit_line_is_on_the_row_labelled_with_the_limit() {
    let snap = finished("nova-api-eventlet.pcap");
    let mut app = App::new(std::env::temp_dir());
    let buf = render_buf(120, 40, &mut app, vec![Event::Snapshot(Box::new(snap))]);
    let title = (0..40)
        .find(|y| row_text(&buf, *y).contains("silence per direction"))
        .expect("the chart is drawn at 120x40");
    assert!(
        row_text(&buf, title).contains("── limit"),
        "legend missing: {}",
        row_text(&buf, title)
    );
    let red_rows: Vec<u16> = (title + 1..40)
        .filter(|y| {
            (0..120).any(|x| {
                let c = &buf[(x, *y)];
                c.fg == ratatui::style::Color::Red && is_braille(c.symbol())
            })
        })
        .collect();
    assert_eq!(
        red_rows.len(),
        1,
        "the limit line spans one row: {red_rows:?}"
    );
    let label = row_text(&buf, red_rows[0]);
    assert!(
        label.starts_with("│4 "),
        "the limit line is on the row labelled {label:?}"
    );
    // The timeline underlines the broker's kill window (2-3x the 4 s limit
    // after the client's last byte) in the client's lane, and only there.
    let lane = |name: &str| {
        (0..40)
            .find(|y| row_text(&buf, *y).starts_with(&format!("│{name}")))
            .unwrap()
    };
    let underlined = |y: u16| {
        (0..120u16)
            .filter(|x| {
                buf[(*x, y)]
                    .modifier
                    .contains(ratatui::style::Modifier::UNDERLINED)
            })
            .count()
    };
    assert!(
        underlined(lane("c->b")) > 5,
        "no kill window in the client lane"
    );
    assert_eq!(underlined(lane("b->c")), 0);
    // Every y label is a multiple of the limit and one row apart from the next.
    assert_eq!(
        hbscope::tui::ui::y_scale(12.0, Some(4.0), 5),
        (16.0, ["0", "4", "8", "12", "16"].map(String::from).to_vec())
    );
    for rows in 2..30u16 {
        for peak in [0.5, 3.9, 4.0, 7.9, 12.0, 40.0, 333.0] {
            let (top, labels) = hbscope::tui::ui::y_scale(peak, Some(4.0), rows);
            assert!(top >= peak, "{rows} rows, peak {peak}: top {top}");
            let n = u32::try_from(labels.len()).unwrap();
            assert_eq!(
                (u32::from(rows) - 1) % (n - 1),
                0,
                "{rows} rows: {n} labels do not fall on whole rows"
            );
        }
    }
}

/// Esc steps back (help, filter, gap pane) and never quits; q and Ctrl-C do.
#[test]
fn esc_never_quits() {
    let snap = finished("nova-api-eventlet.pcap");
    let s = || Event::Snapshot(Box::new(snap.clone()));
    let esc = || key(KeyCode::Esc);
    let (_, app, sent) = render(80, 24, vec![s(), esc(), esc(), esc()]);
    assert!(!app.quit && !sent.contains(&Command::Quit));
    let (_, app, _) = render(80, 24, vec![s(), ch('?'), esc()]);
    assert!(!app.help && !app.quit);
    let (_, app, _) = render(
        80,
        24,
        vec![s(), ch('/'), ch('n'), key(KeyCode::Enter), esc()],
    );
    assert!(app.filter.is_empty() && !app.quit);
    let (_, app, _) = render(80, 24, vec![s(), key(KeyCode::Enter), esc()]);
    assert_eq!(app.focus, hbscope::tui::state::Focus::Connections);
    assert!(!app.quit);
    let ctrl_c = Event::Key(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL));
    let (_, app, sent) = render(80, 24, vec![s(), ctrl_c]);
    assert!(app.quit && sent.contains(&Command::Quit));
}

/// g/G/Home/End/PgUp/PgDn move in the table; the title counts "n/N".
#[test]
fn paging_keys_and_row_counter() {
    let snap = finished("many-busy-one-stalled.pcap");
    let n = snap.conns.len();
    assert!(n > 12, "{n} connections");
    let s = || Event::Snapshot(Box::new(snap.clone()));
    let row = |evs: Vec<Event>| {
        let (screen, app, _) = render(120, 40, evs);
        (app.selected_row(), screen)
    };
    let (r, screen) = row(vec![s(), ch('G')]);
    assert_eq!(r, Some(n - 1));
    assert!(
        screen.contains(&format!(" connections {n}/{n} ")),
        "{screen}"
    );
    assert_eq!(row(vec![s(), key(KeyCode::End), ch('g')]).0, Some(0));
    assert_eq!(
        row(vec![s(), key(KeyCode::End), key(KeyCode::Home)]).0,
        Some(0)
    );
    // A page is the rows the table shows: 5 at 120x40, 3 at 80x24.
    let (r, screen) = row(vec![s(), key(KeyCode::PageDown)]);
    assert_eq!(r, Some(5));
    assert!(screen.contains(&format!(" connections 6/{n} ")));
    let (screen, app, _) = render(80, 24, vec![s(), key(KeyCode::PageDown)]);
    assert_eq!(app.selected_row(), Some(3), "{screen}");
    let mut evs = vec![s()];
    evs.extend((0..=n / 5).map(|_| key(KeyCode::PageDown)));
    evs.push(key(KeyCode::PageUp));
    assert_eq!(
        row(evs).0,
        Some(n - 1 - 5),
        "PgDn stops at the last row, PgUp goes a page back"
    );
    // The selected row stays on screen after every page.
    for pages in 1..=3 {
        let mut evs = vec![s()];
        evs.extend((0..pages).map(|_| key(KeyCode::PageDown)));
        let (screen, app, _) = render(120, 40, evs);
        let sel = snap.conns[app.visible()[app.selected_row().unwrap()]].id;
        assert!(
            screen.lines().any(|l| l.contains(&format!("\"│>{sel} "))),
            "row of #{sel} not shown after {pages} pages:\n{screen}"
        );
    }
    // In the gap pane the same keys move among the gaps.
    let (_, app, _) = render(
        120,
        40,
        vec![s(), ch('G'), key(KeyCode::Tab), ch('G'), ch('g')],
    );
    assert_eq!(app.gap_sel, 0);
}

/// Peer-unreachable has its own colour, every cause's colour is the HTML
/// report's, and the help shows them; NO_COLOR leaves no colour on screen.
#[test]
fn cause_colours_match_html_and_no_color_strips_them() {
    use hbscope::analysis::Cause;
    use hbscope::tui::ui::cause_color;
    use ratatui::style::Color;
    let all = [
        Cause::ClientStall,
        Cause::BrokerStall,
        Cause::PeerUnreachable,
        Cause::CaptureLoss,
        Cause::Unknown,
    ];
    for c in all {
        let (r, g, b) = hbscope::report::html::cause_rgb(c);
        assert_eq!(cause_color(c), Color::Rgb(r, g, b));
    }
    for c in [Cause::ClientStall, Cause::BrokerStall] {
        assert_ne!(cause_color(Cause::PeerUnreachable), cause_color(c));
    }
    let snap = finished("nova-api-eventlet.pcap");
    let mut app = App::new(std::env::temp_dir());
    let buf = render_buf(
        80,
        24,
        &mut app,
        vec![Event::Snapshot(Box::new(snap.clone())), ch('?')],
    );
    let y = (0..24)
        .find(|y| row_text(&buf, *y).contains("peer-unreachable"))
        .expect("peer-unreachable in the help legend");
    let x = (0..64u16)
        .find(|x| {
            (0..16u16)
                .map(|i| buf[(x + i, y)].symbol())
                .collect::<String>()
                == "peer-unreachable"
        })
        .unwrap();
    assert_eq!(buf[(x, y)].symbol(), "p");
    assert_eq!(buf[(x, y)].bg, cause_color(Cause::PeerUnreachable));

    let mut app = App::new(std::env::temp_dir());
    app.no_color = true;
    let buf = render_buf(
        120,
        40,
        &mut app,
        vec![Event::Snapshot(Box::new(snap)), ch('?')],
    );
    assert!(buf
        .content()
        .iter()
        .all(|c| c.fg == Color::Reset && c.bg == Color::Reset));
}

/// Several parts of one capture (read whole by `run::parts`, as `hbscope
/// replay A B` does before opening the TUI) show in the TUI as the whole
/// file does: same connections, gaps and timelines.
#[test]
fn several_parts_open_in_the_tui_as_the_whole() {
    let whole = finished("nova-api-eventlet.pcap");
    let p = pcapedit::Pcap::shipped("nova-api-eventlet");
    let dir = pcapedit::temp_dir("tui-parts");
    let half = p.records.len() / 2;
    let parts: Vec<PathBuf> = [(0, half, "b.pcap"), (half, p.records.len(), "a.pcap")]
        .iter()
        .map(|&(from, to, name)| {
            let mut part = pcapedit::Pcap::shipped("nova-api-eventlet");
            part.records = p.records[from..to].to_vec();
            let path = dir.join(name);
            part.write(&path);
            path
        })
        .collect();
    let config = EngineConfig {
        timeline_events: hbscope::analysis::timeline::Timeline::CAP,
        ..EngineConfig::default()
    };
    // Given in the wrong order: read in time order.
    let r = hbscope::run::parts::replay_filtered(
        &[parts[1].clone(), parts[0].clone()],
        config,
        None,
        &mut |_, _| {},
    )
    .unwrap();
    let (ev_tx, ev_rx) = std::sync::mpsc::channel();
    let (cmd_tx, cmd_rx) = std::sync::mpsc::channel();
    let loaded = tui::Loaded {
        engine: r.engine,
        source: r.source,
        complete: r.complete,
    };
    let handle = std::thread::spawn(move || tui::worker::run_loaded(loaded, ev_tx, cmd_rx));
    let Event::Snapshot(snap) = ev_rx.recv().unwrap() else {
        panic!("a snapshot first");
    };
    assert_eq!(snap.state, PlayState::Done);
    assert_eq!(snap.header.summary, whole.header.summary);
    assert_eq!(snap.conns.len(), whole.conns.len());
    assert!(snap.header.source.contains("a.pcap") && snap.header.source.contains("b.pcap"));
    let (screen, _, _) = render(120, 40, vec![Event::Snapshot(snap)]);
    assert!(screen.contains("client-stall"), "{screen}");
    assert!(screen.contains("2 conn, 1 flagged, 1 gap"), "{screen}");
    cmd_tx.send(Command::Quit).unwrap();
    handle.join().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// `--local-time`: the header says which zone the times are in.
#[test]
fn local_time_is_named_in_the_header() {
    let snap = finished("nova-api-eventlet.pcap");
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut app = App::new(std::env::temp_dir());
    app.zone = hbscope::report::Zone::Local;
    tui::run(
        &mut terminal,
        &mut app,
        vec![Event::Snapshot(Box::new(snap))],
        &mut |_| {},
    )
    .unwrap();
    let screen = terminal.backend().to_string();
    assert!(screen.contains("local time, UTC"), "{screen}");
}
