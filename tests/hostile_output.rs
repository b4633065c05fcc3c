//! A client's hostile `connection_name` (captures/hostile-names.pcap, a real
//! pika client: terminal escapes that clear the screen and set the title, a
//! newline that forges a report line, Markdown table/heading/link syntax and a
//! script tag) printed in every output format: it must stay inert text.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hbscope::engine::EngineConfig;
use hbscope::run::replay::{self, Progress};
use hbscope::tui::{self, App, Event, PlayState, Snapshot, Timelines};
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;

const NAME: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\nhbscope: 0 flagged, all healthy | # Heading [x](http://e) <script>alert(1)</script>";

fn capture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/hostile-names.pcap")
}

fn hbscope(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "{args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// No byte a terminal acts on: only newlines (ours) among the controls.
fn assert_inert(format: &str, out: &str) {
    let bad: Vec<char> = out
        .chars()
        .filter(|c| c.is_control() && *c != '\n' || matches!(c, '\u{202a}'..='\u{202e}'))
        .collect();
    assert!(
        bad.is_empty(),
        "{format}: control characters reach the output: {bad:?}"
    );
    assert!(
        !out.lines().any(|l| l.starts_with("hbscope: 0 flagged")),
        "{format}: the name forged a line of its own:\n{out}"
    );
    if matches!(format, "html" | "markdown") {
        assert!(
            !out.contains("<script>"),
            "{format}: a raw script tag:\n{out}"
        );
    }
}

#[test]
fn text_report_shows_the_name_escaped() {
    let out = hbscope(&["replay", "--format", "text", capture().to_str().unwrap()]);
    assert_inert("text", &out);
    assert!(
        out.contains("\\e[2J\\e]0;owned\\x07\\nhbscope: 0 flagged"),
        "{out}"
    );
    // The verdict is still there.
    assert!(out.contains("cause: client-stall"), "{out}");
}

#[test]
fn summary_shows_the_name_escaped() {
    let out = hbscope(&["replay", "--summary", capture().to_str().unwrap()]);
    assert_inert("summary", &out);
    assert!(out.contains("\\e[2J"), "{out}");
}

#[test]
fn markdown_keeps_the_name_in_its_cell() {
    let out = hbscope(&[
        "replay",
        "--format",
        "markdown",
        capture().to_str().unwrap(),
    ]);
    assert_inert("markdown", &out);
    let row = out
        .lines()
        .find(|l| l.starts_with("| 1 |"))
        .expect("the connection's table row");
    // Eight cell borders, however many `|` the name had: the others are escaped.
    let borders = row
        .match_indices('|')
        .filter(|(i, _)| *i == 0 || &row[i - 1..*i] != "\\")
        .count();
    assert_eq!(borders, 8, "{row}");
    assert!(
        !out.lines().any(|l| l.starts_with("# ")),
        "a heading was injected:\n{out}"
    );
    assert!(
        !out.contains("[x](http://e)"),
        "a link was injected:\n{out}"
    );
}

#[test]
fn html_escapes_the_name() {
    let out = hbscope(&["replay", "--format", "html", capture().to_str().unwrap()]);
    assert_inert("html", &out);
    assert!(out.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
}

#[test]
fn json_keeps_the_exact_name() {
    let out = hbscope(&["replay", "--format", "json", capture().to_str().unwrap()]);
    // serde_json escapes control characters; the value round-trips exactly.
    assert!(!out.contains('\u{1b}'));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    let name = v["connections"][0]["client_properties"]["connection_name"]
        .as_str()
        .unwrap();
    assert_eq!(name, NAME);
}

#[test]
fn tui_draws_the_name_escaped() {
    let mut last = Progress::default();
    let config = EngineConfig {
        timeline_events: hbscope::analysis::timeline::Timeline::CAP,
        ..EngineConfig::default()
    };
    let r = replay::replay(&capture(), config, &mut |p| last = p).unwrap();
    let snap = Snapshot::build(
        &r.engine,
        "captures/hostile-names.pcap",
        r.complete,
        None,
        last,
        PlayState::Done,
        Timelines::All,
    );
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let mut app = App::new(std::env::temp_dir());
    let events = vec![
        Event::Snapshot(Box::new(snap)),
        Event::Key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE)),
    ];
    tui::run(&mut terminal, &mut app, events, &mut |_| {}).unwrap();
    let screen = terminal.backend().to_string();
    let bad: Vec<char> = screen
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(bad.is_empty(), "control characters on screen: {bad:?}");
    assert!(screen.contains("\\e[2J"), "{screen}");
}

#[test]
fn live_text_events_show_the_name_escaped() {
    use hbscope::capture::live::LiveConfig;
    use hbscope::driver::PacedSource;
    use hbscope::run::live::{self, LiveEvent, LiveOptions};
    use std::sync::atomic::AtomicBool;
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
        py_spy: false,
        user: None,
        metrics: None,
        record: None,
    };
    let (mut src, mut clock) = PacedSource::open(&capture()).unwrap();
    let stop = AtomicBool::new(false);
    let mut lines = String::new();
    let mut emit = |e: &LiveEvent| -> std::io::Result<()> {
        lines.push_str(&live::event_text(e));
        lines.push('\n');
        Ok(())
    };
    let report = live::run_with(&opts, &mut src, &mut clock, None, &stop, &mut emit);
    assert_inert("live text", &lines);
    assert!(lines.contains("\\e[2J"), "{lines}");
    assert!(lines.contains("gap closed"), "{lines}");
    assert_inert("live final text", &hbscope::report::to_text(&report));
}

/// A broker log is input too: lines with terminal escapes, a forged report
/// line and markup stay inert in every format that shows them.
#[test]
fn hostile_broker_log_lines_stay_inert() {
    let json = hbscope(&["replay", "--format", "json", capture().to_str().unwrap()]);
    let j: serde_json::Value = serde_json::from_str(&json).unwrap();
    let c = &j["connections"][0];
    let (first, end) = (
        c["first_seen"].as_str().unwrap(),
        c["gaps"][0]["end"].as_str().unwrap(),
    );
    let (client, broker) = (c["client"].as_str().unwrap(), c["broker"].as_str().unwrap());
    let evil = "\u{1b}[2J<script>alert(2)</script>\nhbscope: 0 flagged | # Heading";
    let log = format!(
        "{first} [info] <0.9.0> accepting AMQP connection <0.9.0> ({client} -> {broker})\n\
         {end} [error] <0.9.0> {evil}\n\
         {end} [info] <0.10.0> accepting AMQP connection <0.10.0> (10.9.9.9:1 -> 10.9.9.9:5672) \u{1b}]0;owned\u{7}<b>x</b>\n"
    );
    let path = std::env::temp_dir().join(format!("hbscope-hostile-{}.log", std::process::id()));
    std::fs::write(&path, log).unwrap();
    let (p, cap) = (path.to_str().unwrap(), capture());
    for format in ["text", "markdown", "html"] {
        let out = hbscope(&[
            "replay",
            "--format",
            format,
            "--broker-log",
            p,
            "--",
            cap.to_str().unwrap(),
        ]);
        assert_inert(format, &out);
        assert!(
            out.contains("alert(2)"),
            "{format}: the log line is missing:\n{out}"
        );
    }
    let out = hbscope(&[
        "replay",
        "--summary",
        "--broker-log",
        p,
        "--",
        cap.to_str().unwrap(),
    ]);
    assert_inert("summary", &out);
    let html = hbscope(&[
        "replay",
        "--format",
        "html",
        "--broker-log",
        p,
        "--",
        cap.to_str().unwrap(),
    ]);
    assert!(html.contains("&lt;script&gt;alert(2)&lt;/script&gt;"));
    assert!(
        html.contains("&lt;b&gt;x&lt;/b&gt;"),
        "the log-only line is listed"
    );
    std::fs::remove_file(&path).ok();
}
