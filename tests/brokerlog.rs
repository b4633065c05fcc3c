//! `replay --broker-log`: RabbitMQ's log joined to the capture.
//!
//! client-sigstop.pcap and the founding case nova-api-eventlet.pcap were
//! recorded with their broker log excerpts (captures/logs/NAME.broker.log):
//! the broker's "missed heartbeats from client" line must land on the
//! client-stall gap.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hbscope::engine::EngineConfig;
use hbscope::run::brokerlog::{self, BrokerLog};
use hbscope::run::replay;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

#[test]
fn missed_heartbeats_line_joins_the_client_stall_gap() {
    let r = replay::replay(
        &capture("client-sigstop.pcap"),
        EngineConfig::default(),
        &mut |_| {},
    )
    .unwrap();
    let log = BrokerLog::read(&[capture("logs/client-sigstop.broker.log")]).unwrap();
    assert_eq!(log.connections.len(), 1);
    assert_eq!(log.connections[0].client, "127.0.0.1:50888");
    let j = brokerlog::join(&log, &r.engine);
    assert_eq!(j.matches, vec![Some(0)]);
    // Both clocks are the same host's here: the offset is the broker's
    // accept delay, about a millisecond.
    let off = j.offset.unwrap().as_secs_f64();
    assert!(off.abs() < 0.1, "{off}");
    let lines = &j.gap_lines[0][0];
    assert!(
        lines.iter().any(|l| l
            .text
            .contains("missed heartbeats from client, timeout: 2s")),
        "{lines:?}"
    );
    let o = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args(["replay", "--format", "text", "--broker-log"])
        .arg(capture("logs/client-sigstop.broker.log"))
        .arg("--")
        .arg(capture("client-sigstop.pcap"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(
        text.contains("broker log") && text.contains("missed heartbeats from client"),
        "{text}"
    );
}

/// The founding case (nova-api under mod_wsgi + eventlet): RabbitMQ's
/// "missed heartbeats from client, timeout: 4s" joins the client-stall gap
/// of the first connection, and the reconnection is the log's second one.
#[test]
fn founding_case_missed_heartbeats_joins_its_client_stall_gap() {
    let r = replay::replay(
        &capture("nova-api-eventlet.pcap"),
        EngineConfig::default(),
        &mut |_| {},
    )
    .unwrap();
    let log = BrokerLog::read(&[capture("logs/nova-api-eventlet.broker.log")]).unwrap();
    assert_eq!(log.connections.len(), 2);
    let j = brokerlog::join(&log, &r.engine);
    assert_eq!(j.matches, vec![Some(0), Some(1)]);
    assert!(j.log_only.is_empty());
    let off = j.offset.unwrap().as_secs_f64();
    assert!(off.abs() < 0.1, "{off}");
    let mut conns: Vec<_> = r.engine.connections().collect();
    conns.sort_by_key(|c| c.first_seen());
    let gaps = conns[0].gaps();
    assert_eq!(gaps.len(), 1);
    assert_eq!(gaps[0].cause, hbscope::analysis::Cause::ClientStall);
    let lines = &j.gap_lines[0][0];
    assert!(
        lines
            .iter()
            .any(|l| l.text == "missed heartbeats from client, timeout: 4s"),
        "{lines:?}"
    );
    // The log stamps the close within a heartbeat timeout of the RST.
    let missed = lines.iter().find(|l| l.text.starts_with("missed")).unwrap();
    let rst = gaps[0].end;
    assert!(missed.at.since(rst).as_secs_f64().abs() < 0.1);
    // The second connection had no gap: no line is attached to a gap of it.
    assert!(j.gap_lines[1].is_empty());

    // Every format carries it: JSON (docs/report-schema.md), Markdown, HTML.
    let run = |format: &str| -> String {
        let o = Command::new(env!("CARGO_BIN_EXE_hbscope"))
            .args(["replay", "--format", format, "--broker-log"])
            .arg(capture("logs/nova-api-eventlet.broker.log"))
            .arg("--")
            .arg(capture("nova-api-eventlet.pcap"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    };
    let v: serde_json::Value = serde_json::from_str(&run("json")).unwrap();
    let gap = &v["connections"][0]["gaps"][0];
    assert_eq!(gap["cause"], "client-stall");
    let texts: Vec<&str> = gap["broker_log"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["text"].as_str().unwrap())
        .collect();
    assert!(
        texts.contains(&"missed heartbeats from client, timeout: 4s"),
        "{texts:?}"
    );
    assert_eq!(gap["broker_log"][0]["level"], "error");
    assert!(gap["broker_log"][0]["capture_time"].is_string());
    assert_eq!(v["connections"][0]["broker_log"]["process"], "<0.880.0>");
    assert_eq!(v["connections"][1]["broker_log"]["process"], "<0.897.0>");
    assert_eq!(v["broker_log"]["joined_connections"], 2);
    assert!(v["broker_log"]["clock_offset_s"].as_f64().unwrap().abs() < 0.1);
    assert!(run("markdown").contains("missed heartbeats from client, timeout: 4s"));
    let html = run("html");
    assert!(html.contains("missed heartbeats from client, timeout: 4s"));
    assert!(html.contains("<h2>Broker log</h2>"));
}

#[test]
fn json_logging_and_log_only_connections() {
    let text = r#"{"time":"2026-11-26 21:07:52.566563+00:00","level":"info","pid":"<0.9.0>","msg":"accepting AMQP connection <0.9.0> (10.0.0.1:4000 -> 10.0.0.2:5672)"}
{"time":"2026-11-26 21:07:53.000000+00:00","level":"error","pid":"<0.9.0>","msg":"closing AMQP connection <0.9.0> (10.0.0.1:4000 -> 10.0.0.2:5672):\nclient unexpectedly closed TCP connection"}
2026-11-26 21:07:54.000000+00:00 [warning] <0.300.0> memory resource limit alarm set on node rabbit@vm.
"#;
    let log = BrokerLog::parse(text);
    assert_eq!(log.connections.len(), 1);
    assert_eq!(log.connections[0].lines.len(), 2);
    assert!(log.connections[0].lines[1]
        .text
        .contains("unexpectedly closed"));
    assert_eq!(log.alarms.len(), 1);
    let r = replay::replay(
        &capture("client-sigstop.pcap"),
        EngineConfig::default(),
        &mut |_| {},
    )
    .unwrap();
    let j = brokerlog::join(&log, &r.engine);
    assert_eq!(j.matches, vec![None]);
    assert_eq!(j.log_only, vec![0]);
}
