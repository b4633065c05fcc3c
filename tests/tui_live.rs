//! The live screen driven from a shipped capture on a simulated clock: live
//! mode's real loop (`run::live::run_with_view`, the driver's paced loop)
//! over `driver::PacedSource` + `SimClock`, with the TUI's `LiveView` as the
//! view, as `hbscope live` runs it on a terminal. The snapshots it sends are
//! drawn into ratatui's `TestBackend` at 120x40 and 80x24: a silence
//! growing, the gap open past the limit (provisional cause), the gap closed
//! (final cause). No root, interface, broker or real waiting.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use hbscope::capture::live::LiveConfig;
use hbscope::driver::PacedSource;
use hbscope::engine::EngineConfig;
use hbscope::run::live::{self, LiveOptions};
use hbscope::tui::live::{LiveInfo, LiveView};
use hbscope::tui::{self, App, Command, Event, Snapshot};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

/// Every snapshot the live view sent while `name` played on the simulated
/// clock (the first connection's timeline asked for from the start).
fn live_snapshots(name: &str) -> Vec<Snapshot> {
    live_snapshots_with(name, &[])
}

/// As [`live_snapshots`], with `commands` queued for the view from the start.
fn live_snapshots_with(name: &str, commands: &[Command]) -> Vec<Snapshot> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name);
    let opts = LiveOptions {
        capture: LiveConfig {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        engine: EngineConfig {
            timeline_events: hbscope::analysis::timeline::Timeline::CAP,
            ..EngineConfig::default()
        },
        duration: None,
        write: None,
        force: false,
        attribution: false,
        py_spy: false,
        user: None,
        metrics: None,
        record: None,
    };
    let (ev_tx, ev_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    cmd_tx.send(Command::Focus(0)).unwrap();
    for c in commands {
        cmd_tx.send(c.clone()).unwrap();
    }
    let mut view = LiveView::new(
        LiveInfo {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        ev_tx,
        cmd_rx,
    );
    let (mut src, mut clock) = PacedSource::open(&path).unwrap();
    let stop = AtomicBool::new(false);
    let rep = live::run_with_view(
        &opts,
        &mut src,
        &mut clock,
        None,
        &stop,
        &mut |_| Ok(()),
        &mut view,
    );
    assert_eq!(rep.summary.gaps, 1, "{name}: the report has its gap");
    drop(view);
    drop(cmd_tx);
    ev_rx
        .try_iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(*s),
            _ => None,
        })
        .collect()
}

fn screen(snap: &Snapshot, w: u16, h: u16, keys: &[KeyCode]) -> (String, App) {
    let mut terminal = Terminal::new(TestBackend::new(w, h)).unwrap();
    let mut app = App::new(std::env::temp_dir());
    app.live = true;
    let mut events = vec![Event::Snapshot(Box::new(snap.clone()))];
    events.extend(
        keys.iter()
            .map(|k| Event::Key(KeyEvent::new(*k, KeyModifiers::NONE))),
    );
    tui::run(&mut terminal, &mut app, events, &mut |_| {}).unwrap();
    (terminal.backend().to_string(), app)
}

#[test]
fn live_screens_silence_growing_open_gap_closed_gap() {
    let snaps = live_snapshots("client-sigstop.pcap");
    assert!(snaps.len() > 20, "{} snapshots", snaps.len());
    for s in &snaps {
        let live = s
            .live
            .as_ref()
            .expect("live snapshots carry the live header");
        assert_eq!(live.dropped, 0);
        assert_eq!(s.header.source, "sim0");
    }
    // Elapsed time only grows.
    assert!(snaps
        .windows(2)
        .all(|w| w[0].live.as_ref().unwrap().elapsed <= w[1].live.as_ref().unwrap().elapsed));
    let conn = |s: &Snapshot| s.conns.first().cloned();
    let growing = snaps
        .iter()
        .find(|s| {
            conn(s).is_some_and(|c| {
                c.timeline.is_some() && c.gaps.is_empty() && c.ratio.is_some_and(|r| r > 0.6)
            })
        })
        .expect("a snapshot with the silence growing below the limit");
    let open = snaps
        .iter()
        .find(|s| conn(s).is_some_and(|c| c.gaps.iter().any(|g| g.open)))
        .expect("a snapshot with the gap open");
    let closed = snaps
        .iter()
        .find(|s| conn(s).is_some_and(|c| !c.gaps.is_empty() && c.gaps.iter().all(|g| !g.open)))
        .expect("a snapshot with the gap closed");
    let og = &conn(open).unwrap().gaps[0];
    assert!(og.open && og.end.since(og.start) > og.limit);
    let cg = &conn(closed).unwrap().gaps[0];
    assert_eq!(cg.cause.as_str(), "client-stall");
    assert!(!cg.open);

    for (name, snap) in [
        ("growing", growing),
        ("open_gap", open),
        ("closed_gap", closed),
    ] {
        for (w, h) in [(120, 40), (80, 24)] {
            let (text, _) = screen(snap, w, h, &[]);
            assert!(text.contains("hbscope live sim0"), "{text}");
            insta::assert_snapshot!(format!("live_{name}_{w}x{h}"), text);
        }
    }
    // The open gap is listed with its provisional mark; Esc does not quit
    // the live screen, q does.
    let (text, app) = screen(open, 120, 40, &[KeyCode::Enter, KeyCode::Esc, KeyCode::Esc]);
    assert!(
        text.contains("(still open)") || text.contains("1*"),
        "{text}"
    );
    assert!(!app.quit);
    let (_, app) = screen(open, 120, 40, &[KeyCode::Char('q')]);
    assert!(app.quit);
}

/// Space freezes the display: the view sends no new snapshot while the
/// capture goes on (the report still has the gap found meanwhile).
#[test]
fn frozen_live_screen_gets_no_snapshots_while_capturing() {
    let snaps = live_snapshots_with("client-sigstop.pcap", &[Command::Pause(true)]);
    assert_eq!(snaps.len(), 1, "only the snapshot answering the freeze");
    let (text, _) = {
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        let mut app = App::new(std::env::temp_dir());
        app.live = true;
        let events = vec![
            Event::Snapshot(Box::new(snaps[0].clone())),
            Event::Key(KeyEvent::new(KeyCode::Char(' '), KeyModifiers::NONE)),
        ];
        let mut sent = Vec::new();
        tui::run(&mut terminal, &mut app, events, &mut |c| sent.push(c)).unwrap();
        assert_eq!(sent.last(), Some(&Command::Pause(true)));
        (terminal.backend().to_string(), app)
    };
    assert!(text.contains("[FROZEN, still capturing]"), "{text}");
}

/// Live: the process pane shows the selected connection's owner (pid,
/// command, user name, connection_name) and the latest gap's verdict with its
/// state samples, from live attribution's notes.
#[test]
fn process_pane_shows_owner_and_verdict() {
    use hbscope::report::{ProcessOwnerReport, ProcessReport};
    use hbscope::tui::live::ProcessNote;
    let snaps = live_snapshots("client-sigstop.pcap");
    let open = snaps
        .iter()
        .find(|s| {
            s.conns
                .first()
                .is_some_and(|c| c.gaps.iter().any(|g| g.open))
        })
        .unwrap();
    let c = &open.conns[0];
    let mut process = ProcessReport::unsampled(
        hbscope::analysis::Role::Client,
        hbscope::os::procinfo::Activity::Stopped,
        "the process was stopped (SIGSTOP) during the whole silence".into(),
    );
    process.pid = Some(4242);
    process.command = Some("python3".into());
    process.state_samples = Some("TTT".into());
    process.connection_name = c.name.clone();
    let notes = [
        ProcessNote::Owners {
            client: c.client.clone(),
            broker: c.broker.clone(),
            client_process: Some(ProcessOwnerReport {
                pid: 4242,
                command: "python3".into(),
                cmdline: None,
                uid: 1000,
                user: Some("nova".into()),
            }),
            broker_process: None,
            not_attributable: None,
        },
        ProcessNote::Verdict {
            client: c.client.clone(),
            broker: c.broker.clone(),
            process,
            open: true,
        },
    ];
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut app = App::new(std::env::temp_dir());
    app.live = true;
    let mut events = vec![Event::Snapshot(Box::new(open.clone()))];
    events.extend(notes.into_iter().map(|n| Event::Process(Box::new(n))));
    tui::run(&mut terminal, &mut app, events, &mut |_| {}).unwrap();
    let text = terminal.backend().to_string();
    insta::assert_snapshot!("live_process_pane_120x40", text);
    for want in [
        " process ",
        "client pid 4242 python3 user nova",
        "client stopped (gap open)",
        "states TTT",
    ] {
        assert!(text.contains(want), "{want:?} missing:\n{text}");
    }
}

/// Process facts of connections that left the live table are forgotten
/// (at most 256 beyond the table are kept), in two rounds: a note whose
/// connection a snapshot does not show yet survives the first prune.
#[test]
fn process_facts_of_departed_connections_are_forgotten() {
    use hbscope::report::ProcessOwnerReport;
    use hbscope::tui::live::ProcessNote;
    let snaps = live_snapshots("client-sigstop.pcap");
    let snap = snaps.last().unwrap();
    let c = &snap.conns[0];
    let note = |client: String, broker: String| {
        Event::Process(Box::new(ProcessNote::Owners {
            client,
            broker,
            client_process: Some(ProcessOwnerReport {
                pid: 1,
                command: "python3".into(),
                cmdline: None,
                uid: 0,
                user: None,
            }),
            broker_process: None,
            not_attributable: None,
        }))
    };
    let mut app = App::new(std::env::temp_dir());
    app.live = true;
    let mut events = vec![Event::Snapshot(Box::new(snap.clone()))];
    events.push(note(c.client.clone(), c.broker.clone()));
    events.extend((0..300).map(|i| note(format!("10.0.0.1:{i}"), "10.0.0.2:5672".into())));
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    tui::run(&mut terminal, &mut app, events, &mut |_| {}).unwrap();
    assert_eq!(app.processes.len(), 301);
    let again = || Event::Snapshot(Box::new(snap.clone()));
    tui::run(&mut terminal, &mut app, vec![again()], &mut |_| {}).unwrap();
    assert_eq!(app.processes.len(), 301, "the first prune only marks");
    tui::run(&mut terminal, &mut app, vec![again()], &mut |_| {}).unwrap();
    assert_eq!(app.processes.len(), 1, "the second forgets the departed");
    assert!(app
        .processes
        .contains_key(&(c.client.clone(), c.broker.clone())));
}

/// The live screen's engine frees the timeline of a connection that ended
/// longer ago than it stays in the table (it is never drawn again).
#[test]
fn timelines_of_long_ended_connections_are_freed() {
    use hbscope::driver::{self, DriveOptions, NoSink};
    use hbscope::engine::Engine;
    use hbscope::model::{Direction, Span};
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/client-sigstop.pcap");
    let (mut src, link) = driver::open_input(&path).unwrap();
    let config = EngineConfig {
        timeline_events: hbscope::analysis::timeline::Timeline::CAP,
        timeline_keep_ended: Some(Span::from_secs(60)),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, link);
    driver::drive(
        &mut src,
        &mut engine,
        &mut NoSink,
        DriveOptions {
            batch: 64,
            paced: None,
            stop: None,
        },
    );
    let events = |e: &Engine| {
        let t = &e.slots()[0].timeline;
        t.events(Direction::AtoB).count() + t.events(Direction::BtoA).count()
    };
    let last = engine.counters().last.unwrap();
    let before = events(&engine);
    assert!(before > 10, "{before} timeline events");
    engine.tick(last.plus(Span::from_secs(59)));
    assert_eq!(events(&engine), before, "still in the table: kept");
    engine.tick(last.plus(Span::from_secs(61)));
    assert_eq!(events(&engine), 0, "gone from the table: freed");
}

/// `w` (live): the selected connection's recent packets, from the view's
/// bounded ring, go to a pcap file created 0600 that replays to the same gap.
#[test]
fn w_writes_the_connections_recent_packets_to_a_private_pcap() {
    use hbscope::driver::{self, Clock, DriveOptions, Paced, PacketSource, Sink};
    use hbscope::engine::Engine;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/client-sigstop.pcap");
    let (ev_tx, ev_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let mut view = LiveView::new(
        LiveInfo {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        ev_tx,
        cmd_rx,
    );
    let (mut src, mut clock) = PacedSource::open(&path).unwrap();
    let mut engine = Engine::new(EngineConfig::default(), src.link_type());
    driver::drive(
        &mut src,
        &mut engine,
        &mut view,
        DriveOptions {
            batch: 64,
            paced: Some(Paced {
                clock: &mut clock,
                tick: Duration::from_millis(200),
                sample: Duration::from_secs(1),
                deadline: None,
                drain: true,
            }),
            stop: None,
        },
    );
    let out = std::env::temp_dir().join(format!("hbscope-w-{}.pcap", std::process::id()));
    cmd_tx.send(Command::WritePackets(0, out.clone())).unwrap();
    let _ = view.on_tick(&engine, clock.now(), &[]);
    let status = ev_rx
        .try_iter()
        .find_map(|e| match e {
            Event::Status(s) => Some(s),
            _ => None,
        })
        .expect("a status line");
    assert!(status.starts_with("42 recent packets"), "{status}");
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let r = hbscope::run::replay::replay(&out, EngineConfig::default(), &mut |_| {}).unwrap();
    let rep = hbscope::report::build(&r.engine, "w.pcap", r.complete);
    assert_eq!(rep.summary.gaps, 1);
    assert_eq!(rep.connections[0].gaps[0].cause.as_str(), "client-stall");
    let _ = std::fs::remove_file(&out);

    // The key: live only, the selected connection's slot, into the export dir.
    let snaps = live_snapshots("client-sigstop.pcap");
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).unwrap();
    let mut app = App::new(std::env::temp_dir());
    app.live = true;
    let mut sent = Vec::new();
    tui::run(
        &mut terminal,
        &mut app,
        vec![
            Event::Snapshot(Box::new(snaps[snaps.len() - 1].clone())),
            Event::Key(KeyEvent::new(KeyCode::Char('w'), KeyModifiers::NONE)),
        ],
        &mut |c| sent.push(c),
    )
    .unwrap();
    let want = std::env::temp_dir().join("hbscope-conn-1-127-0-0-1-50888.pcap");
    assert!(sent.contains(&Command::WritePackets(0, want)), "{sent:?}");
}

/// `w` as `hbscope live` runs it: the view behind live mode's own sink
/// (`run_with_view`) must be handed the packets too, or its ring stays empty.
#[test]
fn w_in_live_mode_sees_the_packets_live_mode_read() {
    use hbscope::capture::{LinkType, PacketRecord};
    use hbscope::driver::{Flow, Progress, Sink};
    use hbscope::engine::Engine;
    use hbscope::model::{Direction, Span, Timestamp};

    /// The live view, asked to write once the capture is over.
    struct AskAtEnd {
        view: LiveView,
        commands: mpsc::Sender<Command>,
        out: std::path::PathBuf,
        packets: usize,
    }
    impl Sink for AskAtEnd {
        fn start(&mut self, e: &Engine, now: Timestamp) -> Flow {
            self.view.start(e, now)
        }
        fn packets(&mut self, link: LinkType, recs: &[PacketRecord<'_>]) {
            self.packets += recs.len();
            self.view.packets(link, recs);
        }
        fn after_packets(&mut self, e: &Engine, now: Timestamp, p: &Progress) -> Flow {
            self.view.after_packets(e, now, p)
        }
        fn on_tick(
            &mut self,
            e: &Engine,
            now: Timestamp,
            f: &[(hbscope::engine::ConnId, Direction, Span)],
        ) -> Flow {
            // client-sigstop.pcap has 42 packets of the one connection.
            if self.packets == 42 {
                self.packets += 1;
                self.commands
                    .send(Command::WritePackets(0, self.out.clone()))
                    .unwrap();
            }
            self.view.on_tick(e, now, f)
        }
    }

    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/client-sigstop.pcap");
    let (ev_tx, ev_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let info = LiveInfo {
        interface: "sim0".into(),
        filter: live::DEFAULT_FILTER.into(),
    };
    let out = std::env::temp_dir().join(format!("hbscope-w-live-{}.pcap", std::process::id()));
    let _ = std::fs::remove_file(&out);
    let mut sink = AskAtEnd {
        view: LiveView::new(info, ev_tx, cmd_rx),
        commands: cmd_tx,
        out: out.clone(),
        packets: 0,
    };
    let opts = LiveOptions {
        capture: LiveConfig {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        engine: EngineConfig::default(),
        duration: None,
        write: None,
        force: false,
        attribution: false,
        user: None,
        metrics: None,
        record: None,
        py_spy: false,
    };
    let (mut src, mut clock) = PacedSource::open(&path).unwrap();
    let stop = AtomicBool::new(false);
    let _ = live::run_with_view(
        &opts,
        &mut src,
        &mut clock,
        None,
        &stop,
        &mut |_| Ok(()),
        &mut sink,
    );
    assert_eq!(sink.packets, 43, "live mode handed every packet on");
    let status = ev_rx
        .try_iter()
        .find_map(|e| match e {
            Event::Status(s) => Some(s),
            _ => None,
        })
        .expect("a status line");
    assert!(status.starts_with("42 recent packets"), "{status}");
    let _ = std::fs::remove_file(&out);
}

/// `live --local-time`: the live screen's clock times are in the zone of
/// `TZ` (a POSIX zone string, no time zone database needed) and the header
/// names it; UTC otherwise. No other test of this binary renders local times.
#[test]
fn live_screen_in_local_time() {
    std::env::set_var("TZ", "<+0530>-5:30");
    let snaps = live_snapshots("client-sigstop.pcap");
    let last = snaps.last().unwrap();
    let now = last.now.expect("live snapshots carry now");
    let at = |zone| {
        let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
        let mut app = App::new(std::env::temp_dir());
        app.live = true;
        app.zone = zone;
        tui::run(
            &mut terminal,
            &mut app,
            vec![Event::Snapshot(Box::new(last.clone()))],
            &mut |_| {},
        )
        .unwrap();
        terminal.backend().to_string()
    };
    let utc = at(hbscope::report::Zone::Utc);
    let local = at(hbscope::report::Zone::Local);
    let clock = |zone: hbscope::report::Zone| format!("now {}", zone.clock(now));
    assert!(utc.contains(&clock(hbscope::report::Zone::Utc)), "{utc}");
    assert!(
        local.contains(&clock(hbscope::report::Zone::Local)),
        "{local}"
    );
    assert_ne!(
        hbscope::report::Zone::Utc.clock(now),
        hbscope::report::Zone::Local.clock(now),
        "TZ shifts the clock by 5:30"
    );
    assert!(local.contains("local time"), "{local}");
    assert!(!utc.contains("local time"), "{utc}");
}

/// `w` on a connection whose segments came in IP fragments
/// (`captures/fragmented-ipv4.pcap`: client-sigstop with the protocol
/// header, Connection.Start last fragment first, Tune-Ok and every other
/// broker heartbeat in 16-byte fragments): the ring keeps the fragments
/// under their connection, those that came before their first fragment
/// too, so the written pcap replays to the original's connection.
#[test]
fn w_keeps_ip_fragments_with_their_connection() {
    use hbscope::driver::{self, Clock, DriveOptions, Paced, PacketSource};
    use hbscope::engine::Engine;
    use std::time::Duration;

    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let (ev_tx, ev_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let mut view = LiveView::new(
        LiveInfo {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        ev_tx,
        cmd_rx,
    );
    let (mut src, mut clock) = PacedSource::open(&dir.join("fragmented-ipv4.pcap")).unwrap();
    let mut engine = Engine::new(EngineConfig::default(), src.link_type());
    driver::drive(
        &mut src,
        &mut engine,
        &mut view,
        DriveOptions {
            batch: 64,
            paced: Some(Paced {
                clock: &mut clock,
                tick: Duration::from_millis(200),
                sample: Duration::from_secs(1),
                deadline: None,
                drain: true,
            }),
            stop: None,
        },
    );
    let out = std::env::temp_dir().join(format!("hbscope-w-frag-{}.pcap", std::process::id()));
    cmd_tx.send(Command::WritePackets(0, out.clone())).unwrap();
    let _ = hbscope::driver::Sink::on_tick(&mut view, &engine, clock.now(), &[]);
    let status = ev_rx
        .try_iter()
        .find_map(|e| match e {
            Event::Status(s) => Some(s),
            _ => None,
        })
        .expect("a status line");
    // Every packet of the file: 42, 8 of them sent as 56 fragments.
    assert!(status.starts_with("90 recent packets"), "{status}");
    let report = |p: &Path| {
        let r = hbscope::run::replay::replay(p, EngineConfig::default(), &mut |_| {}).unwrap();
        let rep = hbscope::report::build(&r.engine, "x", r.complete);
        serde_json::to_value(&rep.connections).unwrap()
    };
    assert_eq!(report(&out), report(&dir.join("client-sigstop.pcap")));
    let _ = std::fs::remove_file(&out);
}
