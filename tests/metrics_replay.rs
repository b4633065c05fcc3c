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
use hbscope::metrics::{Collector, RecorderStats, Registry};
use hbscope::model::{Direction, Span, Timestamp};

const TICK: Duration = Duration::from_millis(200);

/// Collects the registry at every tick, as live mode with `--record-gaps` does.
struct Scrapes {
    collector: Collector,
    out: Vec<(Timestamp, Registry)>,
}

impl Sink for Scrapes {
    fn on_tick(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        _: &[(hbscope::engine::ConnId, Direction, Span)],
    ) -> Flow {
        let recorder = RecorderStats {
            ring_bytes: 4096,
            ring_packets: 12,
            ring_evicted: 0,
            written: 1,
            failed: 0,
        };
        self.out.push((
            now,
            self.collector.collect_live(engine, now, Some(recorder)),
        ));
        Flow::Continue
    }
}

/// Every rendering of the registry, one per tick, with its capture time.
fn scrapes(per_connection: bool) -> Vec<(Timestamp, String)> {
    registries(per_connection)
        .into_iter()
        .map(|(t, r)| (t, r.render()))
        .collect()
}

/// Every registry, one per tick, with its capture time.
fn registries(per_connection: bool) -> Vec<(Timestamp, Registry)> {
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

/// The metric names an exposition has (from its `# TYPE` lines), with the
/// series names a histogram adds.
fn exposed_names(text: &str) -> std::collections::BTreeSet<String> {
    let mut names = std::collections::BTreeSet::new();
    for l in text.lines() {
        let Some(rest) = l.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut it = rest.split(' ');
        let (Some(name), Some(kind)) = (it.next(), it.next()) else {
            continue;
        };
        names.insert(name.to_owned());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

/// docs/grafana-dashboard.json: valid JSON, panels with queries, and every
/// metric a query names is one hbscope exposes (with `--record-gaps`).
#[test]
fn the_grafana_dashboard_queries_only_metrics_that_exist() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana-dashboard.json");
    let dash: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert!(dash["title"]
        .as_str()
        .is_some_and(|t| t.contains("hbscope")));
    assert!(dash["uid"].is_string() && dash["schemaVersion"].is_u64());
    let panels = dash["panels"].as_array().unwrap();
    let mut exprs = Vec::new();
    for p in panels {
        assert!(p["title"].is_string(), "a panel without a title: {p}");
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs.push(t["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 8, "{} queries", exprs.len());
    let text = scrapes(true).last().unwrap().1.clone();
    let exposed = exposed_names(&text);
    let mut used = std::collections::BTreeSet::new();
    for e in &exprs {
        let mut word = String::new();
        for c in e.chars().chain([' ']) {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                word.push(c);
                continue;
            }
            if word.starts_with("hbscope_") || word.starts_with("process_") {
                used.insert(word.clone());
            }
            word.clear();
        }
    }
    let missing: Vec<&String> = used.iter().filter(|n| !exposed.contains(*n)).collect();
    assert!(
        missing.is_empty(),
        "the dashboard queries metrics hbscope does not expose: {missing:?}\nexposed: {exposed:?}"
    );
    // The dashboard covers the metrics an operator needs.
    for want in [
        "hbscope_silence_ratio",
        "hbscope_gaps_total",
        "hbscope_gaps_open",
        "hbscope_capture_dropped_packets_total",
        "process_resident_memory_bytes",
        "hbscope_recorder_ring_bytes",
    ] {
        assert!(used.contains(want), "no panel shows {want}");
    }
}

/// A real Prometheus scrapes the endpoint (it asks for OpenMetrics, so this
/// checks that exposition with Prometheus's own parser) and stores the series.
#[test]
#[ignore = "needs prometheus (Debian package prometheus): run with --include-ignored (CI does)"]
fn a_real_prometheus_scrapes_the_openmetrics_exposition() {
    use std::io::{Read, Write};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    let found = Command::new("prometheus")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(found, "prometheus is needed: `apt-get install prometheus`");
    // The scrape during the stall, served as live mode serves it.
    let regs = registries(false);
    let during = regs
        .iter()
        .find(|(_, r)| {
            let t = r.render();
            value(&t, "hbscope_gaps_open", &[("cause", "client-stall")]) == Some(1.0)
        })
        .unwrap()
        .1
        .clone();
    let server =
        Arc::new(hbscope::metrics::MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap());
    let target = server.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let (srv, stop2) = (Arc::clone(&server), Arc::clone(&stop));
    let publisher = std::thread::spawn(move || {
        while !stop2.load(Ordering::SeqCst) {
            if srv.take_wanted() {
                srv.publish(during.clone());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    let dir = std::env::temp_dir().join(format!("hbscope-prom-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("prometheus.yml"),
        format!(
            "global: {{scrape_interval: 1s}}\nscrape_configs:\n  - job_name: hbscope\n    static_configs: [{{targets: [\"{target}\"]}}]\n"
        ),
    )
    .unwrap();
    let web = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut prom = Command::new("prometheus")
        .arg(format!(
            "--config.file={}",
            dir.join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("prom.log")).unwrap())
        .spawn()
        .unwrap();
    let query = |q: &str| -> serde_json::Value {
        let Ok(mut s) = std::net::TcpStream::connect(web) else {
            return serde_json::Value::Null;
        };
        let q: String = q
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b == b'_' {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        let _ = write!(s, "GET /api/v1/query?query={q} HTTP/1.0\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(serde_json::Value::Null)
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let (ok, last) = loop {
        let up = query("up{job=\"hbscope\"}");
        if up["data"]["result"][0]["value"][1] == "1" {
            break (true, up);
        }
        if std::time::Instant::now() > deadline {
            break (false, up);
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let gaps_open = query("hbscope_gaps_open{cause=\"client-stall\"}");
    let gaps_total = query("hbscope_gaps_total");
    let rss = query("process_resident_memory_bytes");
    let _ = prom.kill();
    let _ = prom.wait();
    stop.store(true, Ordering::SeqCst);
    publisher.join().unwrap();
    let log = std::fs::read_to_string(dir.join("prom.log")).unwrap_or_default();
    assert!(ok, "Prometheus never scraped hbscope: {last}\n{log}");
    assert_eq!(
        gaps_open["data"]["result"][0]["value"][1], "1",
        "{gaps_open}"
    );
    assert!(
        !gaps_total["data"]["result"].as_array().unwrap().is_empty(),
        "counters keep their names: {gaps_total}"
    );
    assert!(
        !rss["data"]["result"].as_array().unwrap().is_empty(),
        "{rss}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
