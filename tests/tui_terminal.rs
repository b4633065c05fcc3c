//! The terminal is restored on every exit path of the TUI — `q`, SIGTERM, a
//! panic in the analysis thread, a panic in the UI thread — checked in a real
//! terminal (tmux): after hbscope exits, the pane has left the alternate
//! screen and the cursor is visible again. Needs tmux (`.ci/setup` installs it),
//! so it is `#[ignore]`d: run it with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

mod pcapedit;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is needed: run `bash .ci/setup`");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn pane(session: &str, fmt: &str) -> String {
    tmux(&["display-message", "-p", "-t", session, fmt])
}

fn run_case(name: &str, env: &str, stop: &dyn Fn(&str)) {
    let session = format!("hbscope-restore-{name}-{}", std::process::id());
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/nova-api-eventlet.pcap");
    // hbscope runs under a shell that outlives it, so the pane's state can be
    // read after hbscope has exited (while the shell sleeps).
    let cmd = format!(
        "env {env} {} replay {}; sleep 5",
        env!("CARGO_BIN_EXE_hbscope"),
        capture.display()
    );
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "100",
        "-y",
        "30",
        "-s",
        &session,
        &cmd,
    ]);
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let current = pane(&session, "#{pane_current_command}");
        if pane(&session, "#{alternate_on}") == "1" || current == "sleep" {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(400));
    stop(&session);
    while pane(&session, "#{pane_current_command}") != "sleep"
        && t0.elapsed() < Duration::from_secs(15)
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    let current = pane(&session, "#{pane_current_command}");
    let alt = pane(&session, "#{alternate_on}");
    let cursor = pane(&session, "#{cursor_flag}");
    let screen = tmux(&["capture-pane", "-p", "-t", &session]);
    tmux(&["kill-session", "-t", &session]);
    assert_eq!(current, "sleep", "{name}: hbscope did not exit\n{screen}");
    assert_eq!(
        alt, "0",
        "{name}: still on the alternate screen after exit\n{screen}"
    );
    assert_eq!(
        cursor, "1",
        "{name}: cursor left hidden after exit\n{screen}"
    );
}

fn hbscope_pid(session: &str) -> String {
    let shell = pane(session, "#{pane_pid}");
    let out = Command::new("pgrep").args(["-P", &shell]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[test]
#[ignore = "needs tmux: run with --include-ignored (CI does)"]
fn terminal_is_restored_on_every_exit_path() {
    run_case("quit", "HBSCOPE_NONE=1", &|s| {
        tmux(&["send-keys", "-t", s, "q"]);
    });
    run_case("sigterm", "HBSCOPE_NONE=1", &|s| {
        let pid = hbscope_pid(s);
        assert!(!pid.is_empty(), "hbscope is not running");
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
    });
    run_case("worker-panic", "HBSCOPE_TEST_PANIC=worker", &|_| {});
    run_case("ui-panic", "HBSCOPE_TEST_PANIC=ui", &|_| {});
}

/// `hbscope replay --local-time PART PART` on a terminal: the parts are read
/// whole, then the TUI shows them as one capture, its times in the zone of
/// `TZ`; `q` quits.
#[test]
#[ignore = "needs tmux: run with --include-ignored (CI does)"]
fn several_parts_open_the_tui_with_local_time() {
    let p = pcapedit::Pcap::shipped("nova-api-eventlet");
    let dir = pcapedit::temp_dir("tui-terminal-parts");
    let half = p.records.len() / 2;
    let mut paths = Vec::new();
    for (name, range) in [("one.pcap", 0..half), ("two.pcap", half..p.records.len())] {
        let mut part = pcapedit::Pcap::shipped("nova-api-eventlet");
        part.records = p.records[range].to_vec();
        let path = dir.join(name);
        part.write(&path);
        paths.push(path.display().to_string());
    }
    let session = format!("hbscope-parts-{}", std::process::id());
    let cmd = format!(
        "env TZ='<+0200>-2' {} replay --local-time {} {}; sleep 5",
        env!("CARGO_BIN_EXE_hbscope"),
        paths[1],
        paths[0]
    );
    tmux(&[
        "new-session",
        "-d",
        "-x",
        "120",
        "-y",
        "40",
        "-s",
        &session,
        &cmd,
    ]);
    let t0 = Instant::now();
    let mut screen = String::new();
    while t0.elapsed() < Duration::from_secs(15) {
        screen = tmux(&["capture-pane", "-p", "-t", &session]);
        if screen.contains("[done]") {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tmux(&["send-keys", "-t", &session, "q"]);
    std::thread::sleep(Duration::from_millis(500));
    let current = pane(&session, "#{pane_current_command}");
    tmux(&["kill-session", "-t", &session]);
    std::fs::remove_dir_all(&dir).ok();
    assert!(screen.contains("2 conn, 1 flagged, 1 gap"), "{screen}");
    assert!(screen.contains("local time, UTC+02:00"), "{screen}");
    // 13:51:20 UTC is 15:51:20 at UTC+2.
    assert!(screen.contains("15:51:20.519"), "{screen}");
    assert_eq!(current, "sleep", "q did not quit:\n{screen}");
}
