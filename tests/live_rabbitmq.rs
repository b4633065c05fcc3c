//! Live capture against a real RabbitMQ on 127.0.0.1:5672 with a real pika
//! client (tests/clients/hb_client.py, heartbeat 2 s).
//!
//! Needs root (capture on `lo`, read /proc of other processes), python3 with
//! pika, and the broker running (`rabbitmq-server -detached`), so the tests
//! are `#[ignore]`d: run them with `--include-ignored`. When any of these is
//! missing the tests fail and say which: they never pass silently.
//!
//! Each case runs its own `hbscope live -i lo --format json --write FILE` and
//! finds its own connection by the client's pid in connection_name, so the
//! cases can run in parallel.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::live::{client_script, require_environment, signal, Lines, BIN};

fn start_capture(pcap: &Path) -> Lines {
    let mut cap = Lines::spawn(Command::new(BIN).args([
        "live",
        "-i",
        "lo",
        "--format",
        "json",
        "--duration",
        "60",
        "--write",
        pcap.to_str().unwrap(),
    ]));
    cap.wait_for("\"capture-started\"", Duration::from_secs(10));
    cap
}

fn start_client(mode: &str) -> (Lines, u32) {
    start_client_hb(mode, 2)
}

fn start_client_hb(mode: &str, heartbeat: u32) -> (Lines, u32) {
    let mut client = Lines::spawn(Command::new("python3").arg(client_script()).args([
        mode,
        &heartbeat.to_string(),
        "10",
    ]));
    let ready = client.wait_for("ready", Duration::from_secs(15));
    let pid: u32 = ready.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert_eq!(pid, client.child.id());
    (client, pid)
}

/// Stops the capture with SIGINT and returns its events (by arrival) and the final report.
fn stop_capture(cap: &mut Lines) -> (Vec<(Instant, Value)>, Value) {
    signal(cap.child.id(), "-INT");
    cap.drain(Duration::from_secs(15));
    let st = cap.wait_exit(Duration::from_secs(5));
    assert!(
        st.success(),
        "hbscope live exited with {st}:\n{}",
        cap.dump()
    );
    let parsed: Vec<(Instant, Value)> = cap
        .seen
        .iter()
        .map(|(t, l)| {
            (
                *t,
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")),
            )
        })
        .collect();
    let (_, report) = parsed.last().cloned().expect("no output");
    assert_eq!(
        report["schema_version"],
        1,
        "the last line must be the report:\n{}",
        cap.dump()
    );
    (parsed, report)
}

/// The client endpoint of the connection named for `pid`.
fn client_endpoint(events: &[(Instant, Value)], pid: u32) -> String {
    let tag = format!("hbscope-test:{pid}:");
    events
        .iter()
        .map(|(_, e)| e)
        .find(|e| {
            e["event"] == "connection-seen"
                && e["client_name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with(&tag))
        })
        .and_then(|e| e["client"].as_str().map(str::to_owned))
        .unwrap_or_else(|| panic!("no connection-seen event for client pid {pid}"))
}

fn find_event<'a>(
    events: &'a [(Instant, Value)],
    kind: &str,
    client: &str,
) -> Option<(usize, &'a (Instant, Value))> {
    events.iter().enumerate().find(|(_, (_, e))| {
        e["event"] == kind && e["client"] == client && e["gap"]["direction"] == "client-to-broker"
    })
}

fn report_gap(report: &Value, client: &str) -> Value {
    let conn = report["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == client)
        .unwrap_or_else(|| panic!("connection {client} not in the report: {report}"));
    conn["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["direction"] == "client-to-broker")
        .cloned()
        .unwrap_or_else(|| panic!("no client-to-broker gap for {client}: {conn}"))
}

fn replay(pcap: &Path) -> Value {
    let out = Command::new(BIN)
        .args(["replay", "--format", "json"])
        .arg(pcap)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay of {} failed: {}",
        pcap.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn temp_pcap(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hbscope-live-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    let _ = std::fs::remove_file(&p);
    p
}

fn assert_private(pcap: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(pcap).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode,
        0o600,
        "{} must be 0600 (it holds credentials)",
        pcap.display()
    );
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn sigstopped_client_is_flagged_live_and_judged_stopped() {
    require_environment("live_rabbitmq");
    let t0 = Instant::now();
    let pcap = temp_pcap("stopped.pcap");
    let mut cap = start_capture(&pcap);
    let (mut client, pid) = start_client("serve");
    std::thread::sleep(Duration::from_secs(3));
    signal(pid, "-STOP");
    std::thread::sleep(Duration::from_secs(8));
    let resumed_at = Instant::now();
    signal(pid, "-CONT");
    client.wait_exit(Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    let (events, report) = stop_capture(&mut cap);

    let me = client_endpoint(&events, pid);
    let (open_i, (open_t, opened)) = find_event(&events, "gap-opened", &me)
        .unwrap_or_else(|| panic!("no gap-opened event for {me}:\n{}", cap.dump()));
    let (close_i, (_, closed)) = find_event(&events, "gap-closed", &me)
        .unwrap_or_else(|| panic!("no gap-closed event for {me}:\n{}", cap.dump()));
    assert!(open_i < close_i, "gap-opened must come before gap-closed");
    assert!(
        *open_t < resumed_at,
        "the gap must be flagged while the client is still stopped"
    );
    assert_eq!(opened["gap"]["ended_by"], "open");
    assert_eq!(opened["gap"]["process"]["pid"], pid);
    let g = &closed["gap"];
    assert_eq!(g["cause"], "client-stall", "{g}");
    assert_eq!(g["process"]["verdict"], "stopped", "{g}");
    assert_eq!(g["process"]["pid"], pid, "{g}");
    assert_eq!(g["process"]["diagnosis"]["kind"], "stopped", "{g}");
    assert!(
        g["process"]["diagnosis"]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("process {pid} was stopped (SIGSTOP")),
        "{g}"
    );
    assert!(
        g["process"]["state_samples"]
            .as_str()
            .unwrap()
            .contains('T'),
        "{g}"
    );
    // Stopped 8 s at heartbeat 2: the broker cut the connection (2-3 x 2 s)
    // while the client was still stopped, and the sample taken as the gap
    // closed says so.
    assert!(
        opened["gap"]["process"].get("at_close").is_none(),
        "{opened}"
    );
    assert_eq!(g["ended_by"], "rst", "{g}");
    let at_close = &g["process"]["at_close"];
    assert_eq!(at_close["gone"], false, "{g}");
    assert_eq!(at_close["threads"][0]["tid"], pid, "{g}");
    assert_eq!(at_close["threads"][0]["state"], "T", "{g}");
    assert!(
        at_close["summary"]
            .as_str()
            .unwrap()
            .starts_with(&format!("thread {pid} (python3) stopped (state T)")),
        "{g}"
    );

    let rg = report_gap(&report, &me);
    assert_eq!(rg["cause"], "client-stall");
    assert_eq!(rg["process"]["verdict"], "stopped");
    assert_eq!(rg["process"]["pid"], pid);
    assert_eq!(report["capture"]["dropped_packets"], 0);

    assert_private(&pcap);
    let replayed = replay(&pcap);
    let rg = report_gap(&replayed, &me);
    assert_eq!(
        rg["cause"], "client-stall",
        "replay of the --write file: {rg}"
    );
    assert!(rg.get("process").is_none(), "replay has no process facts");
    eprintln!("stopped case took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn sigstopped_then_resumed_client_is_sampled_again_when_the_gap_closes() {
    require_environment("live_rabbitmq");
    // Heartbeat 10: pika sends every 5 s, the gap is flagged 10 s after the
    // client's last byte, the broker cuts at 20-30 s. Stopped 13 s, the
    // silence (13-18 s) is flagged while stopped and ends before the cut,
    // by the client's own heartbeat once it runs again.
    let pcap = temp_pcap("resumed.pcap");
    let mut cap = start_capture(&pcap);
    let (mut client, pid) = start_client_hb("serve", 10);
    std::thread::sleep(Duration::from_secs(1));
    signal(pid, "-STOP");
    std::thread::sleep(Duration::from_secs(13));
    let resumed_at = Instant::now();
    signal(pid, "-CONT");
    std::thread::sleep(Duration::from_secs(3));
    let (events, _report) = stop_capture(&mut cap);
    drop(client.child.kill());

    let me = client_endpoint(&events, pid);
    let (_, (open_t, _)) = find_event(&events, "gap-opened", &me)
        .unwrap_or_else(|| panic!("no gap-opened event for {me}:\n{}", cap.dump()));
    assert!(*open_t < resumed_at, "flagged while stopped");
    let (_, (_, closed)) = find_event(&events, "gap-closed", &me)
        .unwrap_or_else(|| panic!("no gap-closed event for {me}:\n{}", cap.dump()));
    let g = &closed["gap"];
    assert_eq!(
        g["ended_by"], "data",
        "the client's own heartbeat ends it: {g}"
    );
    // The diagnosis is about the silence: stopped.
    assert_eq!(g["process"]["diagnosis"]["kind"], "stopped", "{g}");
    // The sample at close: the client runs again and sent its heartbeat on
    // the AMQP socket, so its thread is no longer stopped.
    let at_close = &g["process"]["at_close"];
    eprintln!("at close: {at_close}");
    assert_eq!(at_close["gone"], false, "{g}");
    let main = &at_close["threads"][0];
    assert_eq!(main["tid"], pid, "{g}");
    assert!(
        main["state"].as_str().is_some_and(|s| s != "T" && s != "t"),
        "the client was resumed when the gap closed: {g}"
    );
    let summary = at_close["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("thread {pid} (python3) ")) && !summary.contains("stopped"),
        "{g}"
    );
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn client_sleeping_without_servicing_heartbeats_is_blocked_idle() {
    require_environment("live_rabbitmq");
    let t0 = Instant::now();
    let pcap = temp_pcap("sleeping.pcap");
    let mut cap = start_capture(&pcap);
    let (mut client, pid) = start_client("sleep");
    client.wait_exit(Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(500));
    let (events, report) = stop_capture(&mut cap);

    let me = client_endpoint(&events, pid);
    let (open_i, _) = find_event(&events, "gap-opened", &me)
        .unwrap_or_else(|| panic!("no gap-opened event for {me}:\n{}", cap.dump()));
    let (close_i, (_, closed)) = find_event(&events, "gap-closed", &me)
        .unwrap_or_else(|| panic!("no gap-closed event for {me}:\n{}", cap.dump()));
    assert!(open_i < close_i);
    let g = &closed["gap"];
    assert_eq!(g["cause"], "client-stall", "{g}");
    assert_eq!(g["process"]["verdict"], "blocked-idle", "{g}");
    assert_eq!(g["process"]["pid"], pid, "{g}");
    // time.sleep: the only thread sleeps in clock_nanosleep, pika's loop never runs.
    assert_eq!(
        g["process"]["diagnosis"]["kind"], "blocked-outside-event-loop",
        "{g}"
    );
    assert!(
        g["process"]["diagnosis"]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!(
                "thread {pid} (python3) is blocked in clock_nanosleep"
            )),
        "{g}"
    );
    assert!(
        g["process"]["cpu_s_during_silence"].as_f64().unwrap() < 0.5,
        "{g}"
    );
    let rg = report_gap(&report, &me);
    assert_eq!(rg["process"]["verdict"], "blocked-idle");

    assert_private(&pcap);
    let rg = report_gap(&replay(&pcap), &me);
    assert_eq!(
        rg["cause"], "client-stall",
        "replay of the --write file: {rg}"
    );
    eprintln!("blocked-idle case took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn without_capture_privileges_it_says_what_to_do_and_exits_2() {
    require_environment("live_rabbitmq");
    // Drop to nobody with no capabilities at all.
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
            "--",
            BIN,
            "live",
            "-i",
            "lo",
            "--duration",
            "1",
        ])
        .output()
        .expect("setpriv (util-linux) is needed for this test");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(err.contains("CAP_NET_RAW"), "{err}");
    assert!(
        err.contains("setcap cap_net_raw,cap_net_admin=eip"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}
