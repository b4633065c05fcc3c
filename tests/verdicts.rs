//! The shipped captures' verdicts: every `captures/NAME.pcap` runs through the
//! whole pipeline and must match `captures/NAME.expect.json` (written by the
//! person who recorded it, from what they did), and its JSON report is
//! snapshotted so any change in output shows up in review.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use hbscope::engine::EngineConfig;
use hbscope::report::Report;
use hbscope::run::replay;
use serde_json::Value;

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

fn run(name: &str) -> Report {
    let path = captures_dir().join(format!("{name}.pcap"));
    let replay = replay::replay(&path, EngineConfig::default(), &mut |_| {}).expect("replay");
    let mut report = replay.report();
    // Paths differ between machines; keep the file name only.
    report.capture.source = format!("captures/{name}.pcap");
    report
}

fn expected_heartbeat(exp: &Value, client_port: u16) -> Option<&Value> {
    if let Some(list) = exp.get("per_connection").and_then(Value::as_array) {
        for entry in list {
            if entry["client_port"].as_u64() == Some(u64::from(client_port)) {
                return entry.get("heartbeat");
            }
        }
    }
    exp.get("heartbeat").filter(|h| !h.is_null())
}

type GapKey = (String, String, String);

/// The expect file of a capture: `NAME.expect.json`, shared by the two files
/// `NAME.client.pcap` and `NAME.broker.pcap` of a capture taken at both ends
/// of a proxy (each is checked on its own).
fn expect_path(name: &str) -> PathBuf {
    let base = name
        .strip_suffix(".client")
        .or_else(|| name.strip_suffix(".broker"))
        .unwrap_or(name);
    captures_dir().join(format!("{base}.expect.json"))
}

fn check(name: &str) {
    let exp_path = expect_path(name);
    let exp: Value = serde_json::from_str(&std::fs::read_to_string(&exp_path).unwrap()).unwrap();
    let report = run(name);
    let mut problems = Vec::new();

    let want_conns = exp["connections"].as_u64().unwrap();
    if report.connections.len() as u64 != want_conns {
        problems.push(format!(
            "connections: got {}, expected {want_conns}",
            report.connections.len()
        ));
    }
    for c in &report.connections {
        let port: u16 = c.client.rsplit(':').next().unwrap().parse().unwrap();
        if let Some(hb) = expected_heartbeat(&exp, port) {
            let got_v = c.heartbeat.value_s.map(u64::from);
            if hb["value_s"].as_u64() != got_v
                || hb["source"].as_str() != Some(c.heartbeat.source.as_str())
            {
                problems.push(format!(
                    "connection {}: heartbeat {:?} [{}], expected {} [{}]",
                    c.client, got_v, c.heartbeat.source, hb["value_s"], hb["source"]
                ));
            }
        }
    }

    if let Some(by) = exp.pointer("/ended/by").and_then(Value::as_str) {
        for c in &report.connections {
            let got = c.ended.by.map(|b| b.to_string());
            if got.as_deref() != Some(by) {
                problems.push(format!(
                    "connection {}: ended.by {got:?}, expected {by:?}",
                    c.client
                ));
            }
        }
    }

    if let Some(nm) = exp.get("near_misses") {
        for dir in ["client-to-broker", "broker-to-client"] {
            let Some(want) = nm.get(dir).and_then(Value::as_u64) else {
                continue;
            };
            let got: u64 = report
                .connections
                .iter()
                .flat_map(|c| c.health.directions.iter())
                .filter(|(d, _)| d.as_str() == dir)
                .map(|(_, h)| h.near_misses)
                .sum();
            if got != want {
                problems.push(format!("near-misses {dir}: got {got}, expected {want}"));
            }
        }
    }

    let mut got: BTreeMap<GapKey, usize> = BTreeMap::new();
    for g in report.connections.iter().flat_map(|c| &c.gaps) {
        *got.entry((
            g.direction.to_string(),
            g.cause.to_string(),
            g.consequence.to_string(),
        ))
        .or_default() += 1;
    }
    let mut want: BTreeMap<GapKey, usize> = BTreeMap::new();
    for g in exp["gaps"].as_array().unwrap() {
        let key = (
            g["direction"].as_str().unwrap().to_owned(),
            g["cause"].as_str().unwrap().to_owned(),
            g["consequence"].as_str().unwrap().to_owned(),
        );
        *want.entry(key).or_default() += 1;
        if g.get("wakeup").and_then(Value::as_bool) == Some(true) {
            let found = report.connections.iter().flat_map(|c| &c.gaps).any(|x| {
                x.direction.as_str() == g["direction"].as_str().unwrap() && x.wakeup.is_some()
            });
            if !found {
                problems.push(format!(
                    "gap {:?}: expected a wake-up connection, none reported",
                    g["direction"]
                ));
            }
        }
    }
    if got != want {
        problems.push(format!(
            "gaps (direction, cause, consequence): got {got:?}, expected {want:?}"
        ));
    }
    assert!(
        problems.is_empty(),
        "{name}: verdicts differ from {}:\n  {}",
        exp_path.display(),
        problems.join("\n  ")
    );

    // The churn capture's 242 entries would make a 1 MB snapshot; its
    // entries are compared one by one with live mode's in tests/live_retire.rs.
    if report.connections.len() <= 50 {
        let json = serde_json::to_string_pretty(&report).unwrap();
        insta::assert_snapshot!(format!("report-{name}"), json);
    }
}

macro_rules! capture_tests {
    ($($fn_name:ident => $file:literal,)*) => {
        $(#[test] fn $fn_name() { check($file); })*

        /// Every capture in captures/ has a test above (a new capture cannot be forgotten).
        #[test]
        fn every_capture_is_tested() {
            let listed = [$($file),*];
            let mut missing = Vec::new();
            for entry in std::fs::read_dir(captures_dir()).unwrap() {
                let p = entry.unwrap().path();
                if p.extension().and_then(|e| e.to_str()) == Some("pcap") {
                    let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
                    if !listed.contains(&stem.as_str()) {
                        missing.push(stem);
                    }
                }
            }
            assert!(missing.is_empty(), "captures without a verdict test: {missing:?}");
        }
    };
}

capture_tests! {
    nova_api_eventlet => "nova-api-eventlet",
    nova_api_pthread => "nova-api-pthread",
    healthy_idle => "healthy-idle",
    healthy_busy => "healthy-busy",
    client_sigstop => "client-sigstop",
    broker_sigstop => "broker-sigstop",
    netns_blackhole => "netns-blackhole",
    netns_oneway => "netns-oneway",
    after_handshake => "after-handshake",
    many_busy_one_stalled => "many-busy-one-stalled",
    small_snaplen => "small-snaplen",
    any_interface => "any-interface",
    any_interface_sll1 => "any-interface-sll1",
    bridge_any => "bridge-any",
    ipv6 => "ipv6",
    heartbeat_disabled => "heartbeat-disabled",
    empty => "empty",
    non_amqp => "non-amqp",
    tls13_healthy => "tls13-healthy",
    tls13_client_stall => "tls13-client-stall",
    tls12_healthy => "tls12-healthy",
    tls12_client_stall => "tls12-client-stall",
    tls_on_5672 => "tls-on-5672",
    amqp10_on_5672 => "amqp10-on-5672",
    http_on_5672 => "http-on-5672",
    hostile_names => "hostile-names",
    broker_blocked => "broker-blocked",
    consumer_zero_window => "consumer-zero-window",
    haproxy_idle_hb0_client => "haproxy-idle-hb0.client",
    haproxy_idle_hb0_broker => "haproxy-idle-hb0.broker",
    haproxy_idle_hb_long_client => "haproxy-idle-hb-long.client",
    haproxy_idle_hb_long_broker => "haproxy-idle-hb-long.broker",
    late_heartbeats => "late-heartbeats",
    port_reuse => "port-reuse",
    tune_ok_twice => "tune-ok-twice",
    fragmented_ipv4 => "fragmented-ipv4",
    fragmented_ipv6 => "fragmented-ipv6",
    churn => "churn",
}

/// The founding case, checked field by field (not only by snapshot).
#[test]
fn nova_eventlet_evidence_is_explicit() {
    let report = run("nova-api-eventlet");
    let c = &report.connections[0];
    assert!(
        c.client_name
            .as_deref()
            .unwrap_or("")
            .starts_with("nova_api_sim.py:"),
        "{:?}",
        c.client_name
    );
    assert_eq!(c.state.as_str(), "reset-by-broker");
    let g = &c.gaps[0];
    assert_eq!(
        (
            g.direction.as_str(),
            g.cause.as_str(),
            g.consequence.as_str(),
            g.ended_by.as_str()
        ),
        ("client-to-broker", "client-stall", "broker-reset", "rst")
    );
    assert!(
        g.counts.silent_side_acks_advancing >= 3,
        "client kernel ACKs: {:?}",
        g.counts
    );
    assert!(g.counts.peer_heartbeats >= 3);
    assert!(
        (g.silence_s - 11.998).abs() < 0.01,
        "silence {}",
        g.silence_s
    );
    let w = g.wakeup.as_ref().expect("wake-up");
    assert!(w.to.ends_with(":8774"), "{w:?}");
    assert!(w.before_resume_s > 0.0 && w.before_resume_s < 2.0);
    assert!(g.resumed.is_some());
    assert!(g.evidence.iter().any(|l| l.contains("kernel acknowledged")));
}

/// Flow control: the blocked publisher is never blamed, and the broker's
/// silence into the stopped consumer's zero window is linked to the
/// consumer's own gap.
#[test]
fn flow_control_evidence_is_explicit() {
    let report = run("broker-blocked");
    let c = &report.connections[0];
    assert_eq!(c.blocked_events.len(), 2, "{:?}", c.blocked_events);
    assert_eq!(c.blocked_events[0].reason.as_deref(), Some("low on memory"));
    let g = &c.gaps[0];
    assert_eq!(g.cause.as_str(), "broker-blocked");
    assert!(g.counts.peer_zero_windows > 0, "{:?}", g.counts);
    assert!(g.counts.blocked_s > g.limit_s);
    assert!(g.evidence.iter().any(|l| l.contains("Connection.Blocked")));
    assert!(g
        .evidence
        .iter()
        .any(|l| l.contains("Connection.Unblocked")));

    let report = run("consumer-zero-window");
    let gaps = &report.connections[0].gaps;
    let b2c = gaps
        .iter()
        .find(|g| g.direction.as_str() == "broker-to-client")
        .expect("b2c gap");
    let linked = b2c.consequence_of.expect("linked to the client's gap");
    assert_eq!(gaps[linked].direction.as_str(), "client-to-broker");
    assert_eq!(gaps[linked].cause.as_str(), "client-stall");
}

/// Behind HAProxy (5 s idle timeouts), each end of the proxy sees a FIN
/// without Connection.Close after 5 s of silence both ways: a middlebox.
#[test]
fn middlebox_idle_timeout_is_named_with_advice() {
    for name in [
        "haproxy-idle-hb0.client",
        "haproxy-idle-hb0.broker",
        "haproxy-idle-hb-long.client",
        "haproxy-idle-hb-long.broker",
    ] {
        let report = run(name);
        let e = &report.connections[0].ended;
        assert_eq!(
            e.by.map(|b| b.to_string()).as_deref(),
            Some("middlebox-suspected"),
            "{name}"
        );
        let idle = e.idle_period_s.expect("idle period");
        assert!((idle - 5.0).abs() < 0.05, "{name}: {idle}");
        assert_eq!(e.idle_timeout_s, Some(5), "{name}");
        let want_side = if name.ends_with(".client") {
            "broker"
        } else {
            "client"
        };
        assert_eq!(e.seen_from.map(|r| r.as_str()), Some(want_side), "{name}");
        assert!(
            e.advice.as_deref().unwrap_or("").contains("below 2.5 s"),
            "{e:?}"
        );
    }
    // An RST from the broker after the client's heartbeats stopped is
    // RabbitMQ's own heartbeat check, not a middlebox.
    for name in ["client-sigstop", "consumer-zero-window", "netns-blackhole"] {
        let report = run(name);
        assert!(report
            .connections
            .iter()
            .all(|c| c.ended.by.map(|b| b.to_string()).as_deref() != Some("middlebox-suspected")));
    }
}

/// Late heartbeats below the timeout: no gap, but counted, listed, and a
/// longer heartbeat recommended for the client.
#[test]
fn near_misses_are_listed_and_rolled_up() {
    let report = run("late-heartbeats");
    let c = &report.connections[0];
    assert_eq!(c.health.status.as_str(), "near-miss");
    let h = c
        .health
        .directions
        .get(hbscope::analysis::RoleDirection::ClientToBroker);
    let ratios: Vec<f64> = h.near_miss_list.iter().map(|n| n.ratio).collect();
    assert_eq!(ratios, vec![0.773, 0.898, 0.768], "{h:?}");
    assert!((h.margin.unwrap() - 0.898).abs() < 0.001);
    let b2c = c
        .health
        .directions
        .get(hbscope::analysis::RoleDirection::BrokerToClient);
    assert!((b2c.cadence_ratio.unwrap() - 1.0).abs() < 0.01, "{b2c:?}");
    let roll = &report.summary.heartbeat_health;
    assert_eq!(roll.near_misses, 3);
    assert_eq!(roll.by_client.len(), 1);
    assert_eq!(roll.by_client[0].recommended_heartbeat_s, Some(5));
    assert_eq!(
        roll.by_client[0].client.as_deref(),
        Some("hbscope-late-heartbeats")
    );
    // A healthy idle connection: nothing to report.
    let report = run("healthy-idle");
    assert_eq!(report.connections[0].health.status.as_str(), "ok");
    assert!(report.summary.heartbeat_health.by_client.is_empty());
}

/// `--heartbeat` fills in what the wire cannot give, and never beats Tune-Ok.
#[test]
fn heartbeat_override_applies_only_without_negotiation() {
    let path = captures_dir().join("small-snaplen.pcap");
    let mut cfg = EngineConfig::default();
    cfg.analysis.heartbeat_override = Some(7);
    let r = replay::replay(&path, cfg, &mut |_| {}).unwrap().report();
    assert!(r
        .connections
        .iter()
        .all(|c| c.heartbeat.value_s == Some(7) && c.heartbeat.source.as_str() == "override"));
    let path = captures_dir().join("healthy-idle.pcap");
    let mut cfg = EngineConfig::default();
    cfg.analysis.heartbeat_override = Some(7);
    let r = replay::replay(&path, cfg, &mut |_| {}).unwrap().report();
    assert_eq!(r.connections[0].heartbeat.source.as_str(), "tune-ok");
}

/// A connection that ended unseen (its RSTs dropped before the capture
/// point), then a new connection from the same port: two connections, the
/// first ended by the reuse with its silences measured to its last packet,
/// the second clean, and no byte counted as missed (before, the second was
/// merged into the first with 213 MB of "missed bytes").
#[test]
fn port_reuse_starts_a_new_connection() {
    let report = run("port-reuse");
    let [first, second] = &report.connections[..] else {
        panic!("{} connections", report.connections.len());
    };
    assert_eq!(first.client, second.client);
    assert_eq!(first.ended.how.as_str(), "port-reused");
    assert_eq!(
        first.ended.by.map(|b| b.to_string()).as_deref(),
        Some("client")
    );
    // Ended at the new connection's SYN: its first packet.
    assert_eq!(first.ended.at.as_deref(), Some(second.first_seen.as_str()));
    assert!(first
        .client_name
        .as_deref()
        .unwrap_or("")
        .starts_with("hbscope-port-reuse-first"));
    assert!(second
        .client_name
        .as_deref()
        .unwrap_or("")
        .starts_with("hbscope-port-reuse-second"));
    assert_eq!(first.gaps.len(), 2);
    for g in &first.gaps {
        assert_eq!(g.ended_by.as_str(), "port-reused");
        assert!(
            g.silence_s < 5.0,
            "measured to the first connection's last packet: {}",
            g.silence_s
        );
        assert!(g
            .evidence
            .iter()
            .any(|l| l.contains("a new connection reused its ports")));
    }
    assert!(second.gaps.is_empty());
    assert!(second.violations.is_empty(), "{:?}", second.violations);
    for c in &report.connections {
        for d in c.directions.values() {
            assert_eq!(d.missed_bytes, 0, "{}", c.client);
        }
    }
}

/// Two Connection.Tune-Ok: the first decides (the broker started its
/// heartbeat monitor on it), the second is a protocol violation in every
/// format.
#[test]
fn repeated_tune_ok_is_a_violation_and_the_first_decides() {
    let report = run("tune-ok-twice");
    let c = &report.connections[0];
    assert_eq!(c.heartbeat.value_s, Some(2));
    assert_eq!(c.heartbeat.source.as_str(), "tune-ok");
    assert_eq!(
        c.violations,
        vec!["client sent Connection.Tune-Ok again (heartbeat 30, frame_max 131072); the first one (heartbeat 2) decides".to_owned()]
    );
    let text = hbscope::report::to_text(&report);
    assert!(
        text.contains("protocol: client sent Connection.Tune-Ok again (heartbeat 30"),
        "{text}"
    );
}
