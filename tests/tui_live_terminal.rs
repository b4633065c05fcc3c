//! The live screen in a real terminal (tmux) against a real RabbitMQ and a
//! real pika client (tests/clients/hb_client.py, heartbeat 2 s): while
//! `hbscope live -i lo` runs in the pane, the client is SIGSTOPped; the
//! screen shows its silence growing past the limit (the gap open), then
//! the gap closed as client-stall once the broker gives up on it. Esc does
//! not quit; q does, the terminal is restored and the final report printed.
//! The process pane names the client's pid and its `stopped` verdict.
//!
//! Needs root (capture on `lo`), tmux, RabbitMQ on 127.0.0.1:5672 and
//! python3 with pika, so it is `#[ignore]`d: run it with `--include-ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::live::{client_script, require_environment, signal, Lines, BIN};

/// The test's own tmux server (not the user's), so its options stay its own.
fn socket() -> String {
    format!("hbscope-tui-live-{}", std::process::id())
}

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(["-L", &socket()])
        .args(args)
        .output()
        .expect("tmux is needed: run `bash .ci/setup`");
    String::from_utf8_lossy(&out.stdout).trim_end().to_owned()
}

fn pane(session: &str, fmt: &str) -> String {
    tmux(&["display-message", "-p", "-t", session, fmt])
}

fn screen(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-t", session])
}

/// The pane's whole scrollback and screen: the final report's header may
/// have scrolled away when other programs' connections fill the report.
fn history(session: &str) -> String {
    tmux(&["capture-pane", "-p", "-S", "-", "-t", session])
}

/// Kills the tmux session even when an assertion fails.
struct Session(String);

impl Drop for Session {
    fn drop(&mut self) {
        tmux(&["kill-session", "-t", &self.0]);
    }
}

/// Waits until `pred` holds for the screen; returns that screen.
fn wait_screen(
    session: &str,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&str) -> bool,
) -> String {
    let t0 = Instant::now();
    loop {
        let s = screen(session);
        if pred(&s) {
            return s;
        }
        assert!(
            t0.elapsed() < timeout,
            "{what}: not on screen within {timeout:?}:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The table row of the connection named `name`, and its longest/limit ratio.
fn row_ratio(s: &str, name: &str) -> Option<(String, f64)> {
    let row = s
        .lines()
        .find(|l| l.contains(name) && l.contains("tune-ok"))?;
    let ratio = row
        .split_whitespace()
        .find_map(|w| w.strip_suffix('x').and_then(|v| v.parse::<f64>().ok()))?;
    Some((row.to_owned(), ratio))
}

#[test]
#[ignore = "needs root, tmux, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn live_screen_shows_a_stopped_client_grow_then_stall() {
    require_environment("tui_live_terminal");
    let session = Session(format!("hbscope-live-tui-{}", std::process::id()));
    let s = session.0.as_str();
    // The shell outlives hbscope, so the pane can be read after it exits.
    let cmd = format!("{BIN} live -i lo --duration 90; sleep 30");
    // A long scrollback: the final report is read from it (`history`).
    tmux(&[
        "start-server",
        ";",
        "set-option",
        "-g",
        "history-limit",
        "200000",
        ";",
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-s",
        s,
        &cmd,
    ]);
    wait_screen(s, "the live header", Duration::from_secs(10), |t| {
        t.contains("hbscope live lo")
    });
    assert_eq!(pane(s, "#{alternate_on}"), "1");

    let name = format!("hbscope-tui{}", std::process::id() % 10000);
    let mut client = Lines::spawn(
        Command::new("python3")
            .arg(client_script())
            .args(["serve", "2", "10", &name]),
    );
    let ready = client.wait_for("ready", Duration::from_secs(15));
    let pid: u32 = ready.split_whitespace().nth(1).unwrap().parse().unwrap();
    // Only this test's connection (others may run in parallel).
    tmux(&["send-keys", "-t", s, "/"]);
    tmux(&["send-keys", "-t", s, "-l", &name]);
    tmux(&["send-keys", "-t", s, "Enter"]);
    wait_screen(s, "the client's connection", Duration::from_secs(10), |t| {
        row_ratio(t, &name).is_some() && t.contains("connections 1/1")
    });
    std::thread::sleep(Duration::from_secs(2));
    signal(pid, "-STOP");

    // The silence grows on screen while the client is stopped (heartbeats
    // every 1 s keep it at 0.50x before)...
    let first = wait_screen(s, "a growing silence", Duration::from_secs(5), |t| {
        row_ratio(t, &name).is_some_and(|(_, r)| r >= 0.6)
    });
    let r0 = row_ratio(&first, &name).unwrap().1;
    std::thread::sleep(Duration::from_millis(500));
    let r1 = row_ratio(&screen(s), &name).unwrap().1;
    assert!(r1 > r0, "the silence did not grow: {r0} then {r1}");
    // ...passes the limit: the gap is open (provisional cause)...
    let open = wait_screen(s, "the open gap", Duration::from_secs(6), |t| {
        row_ratio(t, &name).is_some_and(|(row, r)| r > 1.0 && row.contains("0+1"))
    });
    assert!(open.contains("client-stall"), "{open}");
    // ...and closes as client-stall when the broker gives up on the client.
    let closed = wait_screen(s, "the closed gap", Duration::from_secs(20), |t| {
        row_ratio(t, &name).is_some_and(|(row, _)| {
            row.contains("client-stall") && !row.contains("0+1") && row.contains(" 1 ")
        })
    });
    assert!(closed.contains("gaps 1/1"), "{closed}");
    // The process pane names the stopped client and its verdict.
    let pane_text = wait_screen(s, "the process verdict", Duration::from_secs(5), |t| {
        t.contains("client stopped")
    });
    // The user by name (from /etc/passwd), not the uid: the client runs as root.
    assert!(
        pane_text.contains(&format!("client pid {pid} python3 user root")),
        "{pane_text}"
    );
    signal(pid, "-CONT");

    // Esc steps back, never quits.
    tmux(&["send-keys", "-t", s, "Escape"]);
    tmux(&["send-keys", "-t", s, "Escape"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(pane(s, "#{alternate_on}"), "1", "Esc quit:\n{}", screen(s));

    // q quits: the terminal is restored and the final report printed.
    tmux(&["send-keys", "-t", s, "q"]);
    let t0 = Instant::now();
    while pane(s, "#{pane_current_command}") != "sleep" && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let after = screen(s);
    assert_eq!(
        pane(s, "#{pane_current_command}"),
        "sleep",
        "hbscope did not exit:\n{after}"
    );
    assert_eq!(
        pane(s, "#{alternate_on}"),
        "0",
        "still on the alternate screen:\n{after}"
    );
    assert_eq!(pane(s, "#{cursor_flag}"), "1", "cursor hidden:\n{after}");
    let all = history(s);
    assert!(all.contains("AMQP connection"), "no final report:\n{all}");
    drop(client);
}
