//! The Prometheus collector driven by a real capture through the real
//! driver, paced as live mode paces it: captures/client-sigstop.pcap (an idle
//! pika client SIGSTOPped, RabbitMQ resets it 5 s after its last byte) is
//! released packet by packet as a simulated clock passes their timestamps
//! (`driver::PacedSource`), with `Engine::tick` and `Collector::collect` at
//! every 200 ms tick. No root or broker needed. The promtool checks need
//! `promtool` (Debian package `prometheus`, installed by .ci/setup), so they
//! are `#[ignore]`d: with `--include-ignored` they fail and say so without it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;

use common::metrics::{promtool_check, value};
use hbscope::driver::{
    self, DriveOptions, Flow, Paced, PacedSource, PacketSource, Sink, StopReason,
};
use hbscope::engine::{Engine, EngineConfig};
use hbscope::metrics::Collector;
use hbscope::model::{Direction, Span, Timestamp};

const TICK: Duration = Duration::from_millis(200);

/// Renders the registry at every tick.
struct Scrapes {
    collector: Collector,
    out: Vec<(Timestamp, String)>,
}

impl Sink for Scrapes {
    fn on_tick(&mut self, engine: &Engine, now: Timestamp, _: &[(usize, Direction, Span)]) -> Flow {
        self.out
            .push((now, self.collector.collect(engine, now).render()));
        Flow::Continue
    }
}

/// Every rendering of the registry, one per tick, with its capture time.
fn scrapes(per_connection: bool) -> Vec<(Timestamp, String)> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/client-sigstop.pcap");
    let (mut src, mut clock) = PacedSource::open(&path).unwrap();
    let mut engine = Engine::new(EngineConfig::default(), src.link_type());
    engine.on_capture_drops(0);
    let mut sink = Scrapes {
        collector: Collector::new(per_connection),
        out: Vec::new(),
    };
    let driven = driver::drive(
        &mut src,
        &mut engine,
        &mut sink,
        DriveOptions {
            batch: 4096,
            paced: Some(Paced {
                clock: &mut clock,
                tick: TICK,
                sample: Duration::from_secs(1),
                deadline: None,
                drain: true,
            }),
            stop: None,
        },
    );
    assert!(
        matches!(driven.reason, StopReason::EndOfInput),
        "{driven:?}"
    );
    // Ticks every 200 ms of capture time from the first packet on.
    let start = clock.started_at();
    for (k, (t, _)) in sink.out.iter().enumerate() {
        assert_eq!(t.since(start), Span(200_000_000 * (k as i64 + 1)));
    }
    sink.out
}

const NAME: (&str, &str) = ("client_name", "hbscope-client-sigstop");
const C2B: (&str, &str) = ("direction", "client-to-broker");

#[test]
fn a_stall_shows_as_open_then_counted_and_the_connection_leaves_the_gauges() {
    let scrapes = scrapes(false);
    // While the client is stopped and before the reset: the open silence.
    let during = scrapes
        .iter()
        .find(|(_, s)| value(s, "hbscope_silence_ratio", &[NAME, C2B]).is_some_and(|r| r > 1.0))
        .unwrap_or_else(|| panic!("no scrape with silence_ratio > 1:\n{}", scrapes[0].1));
    let s = &during.1;
    assert_eq!(
        value(
            s,
            "hbscope_gaps_open",
            &[("cause", "client-stall"), NAME, C2B]
        ),
        Some(1.0),
        "{s}"
    );
    assert_eq!(
        value(s, "hbscope_connections", &[("state", "gap-open"), NAME]),
        Some(1.0),
        "{s}"
    );
    assert_eq!(
        value(s, "hbscope_gaps_total", &[("cause", "client-stall"), NAME]),
        Some(0.0),
        "counters start at 0 once the heartbeat is known: {s}"
    );
    // The broker's direction keeps its heartbeats: well under 1.
    let b2c = value(
        s,
        "hbscope_silence_ratio",
        &[NAME, ("direction", "broker-to-client")],
    )
    .unwrap();
    assert!(b2c < 1.0, "{s}");

    // Before the stall: healthy.
    let first_ok = scrapes
        .iter()
        .position(|(_, s)| value(s, "hbscope_connections", &[("state", "ok"), NAME]) == Some(1.0))
        .expect("the connection is ok before the stall");
    let first_open = scrapes
        .iter()
        .position(|(_, s)| {
            value(s, "hbscope_connections", &[("state", "gap-open"), NAME]).is_some()
        })
        .unwrap();
    assert!(first_ok < first_open);

    // After the reset: counted once, histogram observed, gone from the gauges.
    let end = &scrapes.last().unwrap().1;
    assert_eq!(
        value(
            end,
            "hbscope_gaps_total",
            &[("cause", "client-stall"), NAME]
        ),
        Some(1.0),
        "{end}"
    );
    for other in [
        "broker-stall",
        "peer-unreachable",
        "broker-blocked",
        "capture-loss",
        "unknown",
    ] {
        assert_eq!(
            value(end, "hbscope_gaps_total", &[("cause", other), NAME]),
            Some(0.0),
            "{end}"
        );
    }
    // The gap's ratio is 2.503 (see the verdicts snapshot).
    let bucket = |le: &str| {
        value(
            end,
            "hbscope_gap_silence_ratio_bucket",
            &[("cause", "client-stall"), NAME, ("le", le)],
        )
    };
    assert_eq!(bucket("2.5"), Some(0.0), "{end}");
    assert_eq!(bucket("3"), Some(1.0), "{end}");
    assert_eq!(bucket("+Inf"), Some(1.0), "{end}");
    let sum = value(
        end,
        "hbscope_gap_silence_ratio_sum",
        &[("cause", "client-stall"), NAME],
    )
    .unwrap();
    assert!((sum - 2.503).abs() < 0.01, "{sum}");
    assert_eq!(
        value(
            end,
            "hbscope_connections_ended_total",
            &[("how", "rst"), NAME]
        ),
        Some(1.0),
        "{end}"
    );
    assert!(
        !end.lines().any(|l| l.starts_with("hbscope_connections{")
            || l.starts_with("hbscope_silence_ratio{")
            || l.starts_with("hbscope_gaps_open{")),
        "an ended connection must leave the gauges:\n{end}"
    );
    assert!(value(end, "hbscope_capture_packets_total", &[]).unwrap() > 10.0);
    assert_eq!(
        value(end, "hbscope_capture_dropped_packets_total", &[]),
        Some(0.0)
    );
    // Counters never go down from one scrape to the next.
    let mut prev = 0.0;
    for (_, s) in &scrapes {
        let v = value(s, "hbscope_gaps_total", &[("cause", "client-stall"), NAME]).unwrap_or(0.0);
        assert!(v >= prev);
        prev = v;
    }
}

#[test]
fn per_connection_label_is_opt_in_and_only_on_gauges() {
    let plain = scrapes(false);
    assert!(plain.iter().all(|(_, s)| !s.contains("connection=\"")));
    let per = scrapes(true);
    let during = per
        .iter()
        .find(|(_, s)| s.contains("state=\"gap-open\""))
        .map(|(_, s)| s)
        .unwrap();
    let line = during
        .lines()
        .find(|l| l.starts_with("hbscope_connections{"))
        .unwrap();
    assert!(
        line.contains("connection=\"127.0.0.1:50888->127.0.0.1:5672\""),
        "{line}"
    );
    assert!(during
        .lines()
        .filter(|l| l.starts_with("hbscope_silence_ratio{"))
        .all(|l| l.contains("connection=\"")));
    let end = &per.last().unwrap().1;
    assert!(
        end.lines()
            .filter(|l| l.starts_with("hbscope_gaps_total{"))
            .all(|l| !l.contains("connection=\"")),
        "{end}"
    );
}

fn promtool() -> std::path::PathBuf {
    let found = Command::new("promtool")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        found,
        "promtool is needed for this test: `apt-get install prometheus` (Debian) or put promtool on PATH"
    );
    "promtool".into()
}

#[test]
#[ignore = "needs promtool: run with --include-ignored (CI does)"]
fn promtool_accepts_the_exposition() {
    let scrapes = scrapes(true);
    // The scrape during the stall and the last one (histogram present).
    let during = scrapes
        .iter()
        .find(|(_, s)| s.contains("state=\"gap-open\""))
        .unwrap();
    for (_, text) in [during, scrapes.last().unwrap()] {
        promtool_check(text);
    }
}

#[test]
#[ignore = "needs promtool: run with --include-ignored (CI does)"]
fn promtool_accepts_the_alert_rules() {
    let promtool = promtool();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/prometheus-alerts.yml");
    let out = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool check rules {}:\n{}{}",
        rules.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The rules' behaviour: 30 s over the limit before firing, not on a blip.
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/prometheus-alerts.test.yml");
    let out = Command::new(&promtool)
        .args(["test", "rules"])
        .arg(&tests)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "promtool test rules {}:\n{}{}",
        tests.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
