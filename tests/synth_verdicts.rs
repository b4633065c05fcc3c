//! A synthetic capture with injected silences of every cause: replayed
//! through the whole pipeline, the verdicts must be exactly the injected ones
//! (client port, direction, cause, consequence), no more, no fewer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use hbscope::engine::EngineConfig;
use hbscope::run::replay;
use hbscope::synth::{self, SynthConfig};

type Key = (u16, String, String, String);

#[test]
fn injected_silences_are_found_exactly() {
    let dir = std::env::temp_dir().join(format!("hbscope-synth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("synth.pcap");
    let cfg = SynthConfig {
        seed: 7,
        connections: 200,
        duration_s: 120,
        heartbeat_s: 4,
        stalls_per_cause: 2,
        ..SynthConfig::default()
    };
    let summary = synth::write_files(&cfg, &pcap, None).unwrap();
    let expect: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(synth::expect_path(&pcap)).unwrap()).unwrap();

    let report = replay::replay(&pcap, EngineConfig::default(), &mut |_| {})
        .unwrap()
        .report();
    std::fs::remove_dir_all(&dir).ok();

    assert_eq!(report.capture.packets, summary.packets);
    assert!(summary.dropped_packets >= 6, "{summary:?}");
    let (want, got) = injected_and_found(&report, &expect, 4);
    // Each cause injected at least twice.
    for cause in [
        "client-stall",
        "broker-stall",
        "peer-unreachable",
        "capture-loss",
    ] {
        let n = want.keys().filter(|k| k.2 == cause).count();
        assert!(n >= 2, "{cause} injected {n} times");
    }
    assert_eq!(got, want, "verdicts differ from the injected silences");
}

/// The injected silences (from the expect file) and the found gaps, both as
/// counts per (client port, direction, cause, consequence); also checks the
/// connection count and that every connection negotiated `heartbeat_s`.
fn injected_and_found(
    report: &hbscope::report::Report,
    expect: &serde_json::Value,
    heartbeat_s: u16,
) -> (BTreeMap<Key, usize>, BTreeMap<Key, usize>) {
    assert_eq!(
        report.connections.len() as u64,
        expect["connections"].as_u64().unwrap()
    );
    for c in &report.connections {
        assert_eq!(
            (c.heartbeat.value_s, c.heartbeat.source.as_str()),
            (Some(heartbeat_s), "tune-ok"),
            "{}",
            c.client
        );
    }

    let mut want: BTreeMap<Key, usize> = BTreeMap::new();
    for g in expect["gaps"].as_array().unwrap() {
        let key = (
            u16::try_from(g["client_port"].as_u64().unwrap()).unwrap(),
            g["direction"].as_str().unwrap().to_owned(),
            g["cause"].as_str().unwrap().to_owned(),
            g["consequence"].as_str().unwrap().to_owned(),
        );
        *want.entry(key).or_default() += 1;
    }
    let mut got: BTreeMap<Key, usize> = BTreeMap::new();
    for c in &report.connections {
        let port: u16 = c.client.rsplit(':').next().unwrap().parse().unwrap();
        for g in &c.gaps {
            let key = (
                port,
                g.direction.to_string(),
                g.cause.to_string(),
                g.consequence.to_string(),
            );
            *got.entry(key).or_default() += 1;
        }
    }
    (want, got)
}
