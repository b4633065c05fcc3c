//! `hbscope live --metrics` scraped over plain TCP during a real stall: a real
//! pika client (tests/clients/hb_client.py, heartbeat 2 s) of the RabbitMQ on
//! 127.0.0.1:5672 is SIGSTOPped; while it is still stopped the endpoint must
//! show the open silence (ratio > 1) and then, once the broker reset the
//! connection, a client-stall gap counted.
//!
//! Needs root (capture on `lo`), python3 with pika and the broker, like
//! tests/live_rabbitmq.rs, so the tests are `#[ignore]`d: run them with
//! `--include-ignored`, and without those they fail and say which.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;

use common::live::{client_script, require_environment, signal, Lines, BIN};
use common::metrics::{promtool_check, value};

fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    stat.rsplit_once(") ")
        .and_then(|(_, rest)| rest.chars().next())
        .unwrap_or('?')
}

/// One HTTP/1.0 request over plain TCP: (status line, headers+body text).
fn http(addr: SocketAddr, request: &str) -> (String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {out:?}"));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, format!("{head}\n\n{body}"))
}

/// GET /metrics: the exposition text, after checking status and content type.
fn scrape(addr: SocketAddr) -> String {
    let (status, all) = http(addr, "GET /metrics HTTP/1.0\r\nHost: test\r\n\r\n");
    assert_eq!(status, "HTTP/1.1 200 OK", "{all}");
    assert!(
        all.contains("Content-Type: text/plain; version=0.0.4"),
        "{all}"
    );
    let body = all.split_once("\n\n").unwrap().1.to_owned();
    check_well_formed(&body);
    body
}

/// Every family has HELP and TYPE before its samples, every sample line is
/// `name{labels} value` with a known family and a number, counters end in
/// `_total`, histograms have cumulative buckets ending in `+Inf` = `_count`.
fn check_well_formed(text: &str) {
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut helped = std::collections::HashSet::new();
    let mut buckets: std::collections::HashMap<String, Vec<f64>> = Default::default();
    let mut counts: std::collections::HashMap<String, f64> = Default::default();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(helped.contains(name), "TYPE before HELP: {line}");
            if kind == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
            types.insert(name.to_owned(), kind.to_owned());
            continue;
        }
        assert!(!line.starts_with('#') && !line.is_empty(), "{line:?}");
        let (series, value) = line.rsplit_once(' ').unwrap();
        let v: f64 = match value {
            "+Inf" => f64::INFINITY,
            v => v.parse().unwrap_or_else(|e| panic!("{line}: value {e}")),
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        if !labels.is_empty() {
            assert!(labels.ends_with('}'), "{line}");
            // label="value" pairs, values escaped (no raw quote inside).
            let inner = &labels[..labels.len() - 1];
            let mut rest = inner;
            while !rest.is_empty() {
                let (k, after) = rest.split_once("=\"").unwrap_or_else(|| panic!("{line}"));
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                let mut end = None;
                let mut esc = false;
                for (i, c) in after.char_indices() {
                    match (esc, c) {
                        (true, _) => esc = false,
                        (false, '\\') => esc = true,
                        (false, '"') => {
                            end = Some(i);
                            break;
                        }
                        _ => {}
                    }
                }
                let end = end.unwrap_or_else(|| panic!("unterminated label value: {line}"));
                rest = after[end + 1..].trim_start_matches(',');
            }
        }
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).is_some_and(|k| k == "histogram"))
            })
            .unwrap_or(name);
        assert!(types.contains_key(family), "sample without TYPE: {line}");
        if name.ends_with("_bucket") {
            let key = labels.split(",le=").next().unwrap_or_default().to_owned();
            buckets.entry(format!("{family}{key}")).or_default().push(v);
            assert!(labels.contains("le=\""), "{line}");
        } else if family != name && name.ends_with("_count") {
            let key = labels.trim_end_matches('}').to_owned();
            counts.insert(format!("{family}{key}"), v);
        }
    }
    for (k, b) in &buckets {
        assert!(
            b.windows(2).all(|w| w[0] <= w[1]),
            "not cumulative: {k} {b:?}"
        );
        assert_eq!(counts.get(k), b.last(), "+Inf bucket != _count for {k}");
    }
}

fn start_live(extra: &[&str]) -> (Lines, SocketAddr) {
    let mut args = vec![
        "live",
        "-i",
        "lo",
        "--format",
        "json",
        "--duration",
        "90",
        "--metrics",
        "127.0.0.1:0",
    ];
    args.extend_from_slice(extra);
    let mut cap = Lines::spawn(Command::new(BIN).args(&args));
    cap.wait_for("\"capture-started\"", Duration::from_secs(10));
    let line = cap.wait_for("\"metrics-listening\"", Duration::from_secs(5));
    let ev: Value = serde_json::from_str(&line).unwrap();
    let addr: SocketAddr = ev["address"].as_str().unwrap().parse().unwrap();
    assert_ne!(addr.port(), 0, "{line}");
    assert_eq!(ev["url"], format!("http://{addr}/metrics"));
    (cap, addr)
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672, python3 with pika and promtool: run with --include-ignored (CI does)"]
fn scrape_shows_open_silence_then_a_counted_client_stall_while_the_client_is_stopped() {
    require_environment("live_metrics");
    let t0 = Instant::now();
    let (mut cap, addr) = start_live(&["--metrics-per-connection"]);
    // Unique per test run, and no ":<digits>" so the label keeps it whole.
    let name = format!("hbscope-metrics-p{}", std::process::id());
    let mut client = Lines::spawn(
        Command::new("python3")
            .arg(client_script())
            .args(["serve", "2", "10", &name]),
    );
    let ready = client.wait_for("ready", Duration::from_secs(15));
    let mut parts = ready.split_whitespace().skip(1);
    let pid: u32 = parts.next().unwrap().parse().unwrap();
    let port: u16 = parts.next().unwrap().parse().unwrap();
    let conn = format!("127.0.0.1:{port}->127.0.0.1:5672");
    let me = ("client_name", name.as_str());
    let c2b = ("direction", "client-to-broker");

    // Healthy first: the connection is there, ratios well under 1.
    let deadline = Instant::now() + Duration::from_secs(10);
    let healthy = loop {
        let s = scrape(addr);
        if value(
            &s,
            "hbscope_connections",
            &[("state", "ok"), me, ("connection", &conn)],
        ) == Some(1.0)
        {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "connection {conn} never showed as ok:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        value(&healthy, "hbscope_silence_ratio", &[me, c2b]).unwrap() < 1.0,
        "{healthy}"
    );
    std::thread::sleep(Duration::from_secs(2));

    signal(pid, "-STOP");
    let stopped_at = Instant::now();
    // The signal is delivered asynchronously.
    while proc_state(pid) != 'T' {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(2),
            "client {pid} not stopped (state {})",
            proc_state(pid)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // During the open silence (before the broker's reset, ~5 s after the last byte).
    let mut during = None;
    let mut counted = None;
    while counted.is_none() {
        assert!(
            stopped_at.elapsed() < Duration::from_secs(20),
            "no client-stall counted 20 s after SIGSTOP; last scrape:\n{}",
            scrape(addr)
        );
        assert_eq!(
            proc_state(pid),
            'T',
            "the client must still be stopped while we scrape"
        );
        let s = scrape(addr);
        if during.is_none()
            && value(
                &s,
                "hbscope_silence_ratio",
                &[me, c2b, ("connection", &conn)],
            )
            .is_some_and(|r| r > 1.0)
        {
            during = Some((stopped_at.elapsed(), s.clone()));
        }
        if value(&s, "hbscope_gaps_total", &[("cause", "client-stall"), me])
            .is_some_and(|v| v >= 1.0)
        {
            counted = Some((stopped_at.elapsed(), s));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let (during_t, during) =
        during.expect("the open silence (silence_ratio > 1) was never scraped before the reset");
    let (counted_t, counted) = counted.unwrap();
    assert_eq!(
        proc_state(pid),
        'T',
        "still stopped after the counted scrape"
    );
    eprintln!(
        "silence_ratio > 1 scraped {:.1} s after SIGSTOP, gaps_total counted {:.1} s after",
        during_t.as_secs_f64(),
        counted_t.as_secs_f64()
    );

    // The open-silence scrape.
    assert_eq!(
        value(
            &during,
            "hbscope_connections",
            &[("state", "gap-open"), me, ("connection", &conn)]
        ),
        Some(1.0),
        "{during}"
    );
    assert_eq!(
        value(
            &during,
            "hbscope_gaps_open",
            &[("cause", "client-stall"), me, c2b]
        ),
        Some(1.0),
        "{during}"
    );
    assert_eq!(
        value(
            &during,
            "hbscope_gaps_total",
            &[("cause", "client-stall"), me]
        ),
        Some(0.0),
        "{during}"
    );
    promtool_check(&during);

    // The counted scrape: gap decided, histogram observed, connection ended (reset).
    let ratio_count = value(
        &counted,
        "hbscope_gap_silence_ratio_count",
        &[("cause", "client-stall"), me],
    )
    .unwrap();
    assert!(ratio_count >= 1.0, "{counted}");
    let ratio_sum = value(
        &counted,
        "hbscope_gap_silence_ratio_sum",
        &[("cause", "client-stall"), me],
    )
    .unwrap();
    assert!(
        ratio_sum > 1.5,
        "RabbitMQ cuts 2-3 x timeout after the last byte: {counted}"
    );
    assert!(
        value(
            &counted,
            "hbscope_connections_ended_total",
            &[("how", "rst"), me]
        )
        .is_some_and(|v| v >= 1.0),
        "{counted}"
    );
    assert!(
        !counted.contains(&format!("connection=\"{conn}\"")),
        "an ended connection leaves the gauges:\n{counted}"
    );
    assert!(value(&counted, "hbscope_capture_packets_total", &[]).unwrap() > 10.0);
    assert_eq!(
        value(&counted, "hbscope_capture_dropped_packets_total", &[]),
        Some(0.0)
    );
    promtool_check(&counted);

    // `/` is a page linking /metrics; anything else is 404.
    let (status, body) = http(addr, "GET / HTTP/1.0\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    assert!(body.contains("href=\"metrics\""), "{body}");
    let (status, _) = http(addr, "GET /other HTTP/1.0\r\n\r\n");
    assert!(status.starts_with("HTTP/1.1 404"), "{status}");

    signal(pid, "-CONT");
    client.wait_exit(Duration::from_secs(15));
    signal(cap.child.id(), "-INT");
    cap.drain(Duration::from_secs(15));
    let st = cap.wait_exit(Duration::from_secs(5));
    assert!(st.success(), "hbscope live exited with {st}");
    // The event stream agrees: our gap closed as client-stall.
    let tag = format!("{name}:{pid}:");
    let ours = cap.seen.iter().any(|(_, l)| {
        let v: Value = serde_json::from_str(l).unwrap_or_default();
        v["event"] == "gap-closed"
            && v["gap"]["cause"] == "client-stall"
            && v["client"] == format!("127.0.0.1:{port}")
    });
    assert!(ours, "no gap-closed client-stall event for {tag}");
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
        "the endpoint stops with the capture"
    );
    eprintln!("metrics case took {:.1} s", t0.elapsed().as_secs_f64());
}

#[test]
#[ignore = "needs root, RabbitMQ on 127.0.0.1:5672 and python3 with pika: run with --include-ignored (CI does)"]
fn an_address_in_use_is_one_line_and_exit_2() {
    require_environment("live_metrics");
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(BIN)
        .args(["live", "-i", "lo", "--duration", "5", "--metrics", &addr])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    assert!(err.contains(&addr) && err.contains("--metrics"), "{err}");
    assert!(
        String::from_utf8_lossy(&out.stdout).is_empty(),
        "nothing captured"
    );
}
