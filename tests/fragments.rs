//! IP fragments put back together: `captures/fragmented-ipv4.pcap` and
//! `captures/fragmented-ipv6.pcap` are `client-sigstop.pcap` and `ipv6.pcap`
//! with the protocol header, Connection.Start (last fragment first),
//! Tune-Ok and every other broker heartbeat sent as 16-byte IP fragments
//! (`captures/scripts/fragment.py`). Their reports must be the originals',
//! connection for connection; damaged copies (a fragment missing, every
//! packet twice) are built in memory (tests/pcapedit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pcapedit;

use std::path::Path;

use hbscope::engine::EngineConfig;
use hbscope::report;
use hbscope::run::replay;
use pcapedit::{shipped, temp_dir, Pcap};
use serde_json::Value;

fn json_threads(path: &Path, threads: usize) -> Value {
    let r = replay::replay_threads(path, EngineConfig::default(), threads, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .report();
    serde_json::from_str(&report::to_json(&r).unwrap()).unwrap()
}

fn json(path: &Path) -> Value {
    json_threads(path, 1)
}

fn warning<'a>(v: &'a Value, code: &str) -> Option<&'a Value> {
    v["capture"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == code)
}

const PAIRS: [(&str, &str, u64, u64); 2] = [
    // (fragmented, original, fragments, segments put back together)
    ("fragmented-ipv4", "client-sigstop", 56, 8),
    ("fragmented-ipv6", "ipv6", 59, 9),
];

/// The fragmented captures give the original's connections (handshake,
/// Tune-Ok's heartbeat, counters, gaps, evidence) and summary, byte for
/// byte; the fragments are counted and warned about, never as missed bytes.
#[test]
fn fragmented_captures_give_the_original_report() {
    for (name, orig, fragments, segments) in PAIRS {
        for threads in [1, 2] {
            let v = json_threads(&shipped(name), threads);
            let o = json_threads(&shipped(orig), threads);
            assert_eq!(
                v["connections"], o["connections"],
                "{name} ({threads} threads)"
            );
            assert_eq!(v["summary"], o["summary"], "{name}");
            assert_eq!(v["capture"]["ip_fragments"], fragments, "{name}");
            assert_eq!(v["capture"]["non_tcp_packets"], 0, "{name}");
            let w = warning(&v, "ip-fragments").unwrap();
            assert_eq!(w["count"], segments, "{name}");
            assert!(warning(&v, "ip-fragments-lost").is_none(), "{name}");
            assert!(o["capture"].get("ip_fragments").is_none(), "{orig}");
            let c = &v["connections"][0];
            assert_eq!(c["heartbeat"]["source"], "tune-ok", "{name}");
            assert_eq!(c["heartbeat"]["value_s"], 2, "{name}");
        }
    }
}

/// Which records are IP fragments (IPv4 more-fragments flag or offset, or
/// an IPv6 Fragment header), in order.
fn fragment_records(p: &Pcap) -> Vec<usize> {
    p.records
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            let d = &r[16..];
            match (d[12], d[13]) {
                (0x08, 0x00) => d[14 + 6] & 0x3f != 0 || d[14 + 7] != 0,
                (0x86, 0xdd) => d[14 + 6] == 44,
                _ => false,
            }
        })
        .map(|(i, _)| i)
        .collect()
}

/// A fragment missing from the capture: its datagram (here Tune-Ok's) is
/// never put back together and the warning says so; what the broker
/// ACKed of it is then capture loss, as for any segment the capture missed.
#[test]
fn a_missing_fragment_is_reported_not_guessed() {
    let dir = temp_dir("fragments-lost");
    for (name, _, fragments, segments) in PAIRS {
        let mut p = Pcap::shipped(name);
        let frags = fragment_records(&p);
        assert_eq!(frags.len() as u64, fragments, "{name}");
        // Tune-Ok's 4 fragments follow the protocol header's 3 and Start's 34.
        let tune_ok_second = frags[3 + 34 + 1];
        p.records.remove(tune_ok_second);
        let path = dir.join(format!("{name}-lost.pcap"));
        p.write(&path);
        let v = json(&path);
        let lost = warning(&v, "ip-fragments-lost").unwrap_or_else(|| panic!("{name}"));
        assert_eq!(lost["count"], 1, "{name}");
        assert_eq!(warning(&v, "ip-fragments").unwrap()["count"], segments - 1);
        let c = &v["connections"][0];
        assert_eq!(c["heartbeat"]["source"], "tune", "{name}: Tune-Ok unseen");
        let missed = &c["directions"]["client-to-broker"]["missed_bytes"];
        assert_eq!(
            missed, 20,
            "{name}: Tune-Ok's 20 bytes, ACKed by the broker"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Every packet twice (a capture merged with itself, `-i any` across a
/// bridge): the second copies of fragments do not start their datagram
/// again, and the report is the original's.
#[test]
fn fragments_captured_twice_are_copies() {
    let dir = temp_dir("fragments-doubled");
    for (name, orig, _, segments) in PAIRS {
        for delay in [0, 20_000] {
            let path = dir.join(format!("{name}-{delay}.pcap"));
            Pcap::shipped(name).doubled(delay).write(&path);
            let v = json(&path);
            let o = json(&shipped(orig));
            assert_eq!(
                v["connections"], o["connections"],
                "{name} doubled ({delay} ns)"
            );
            assert!(warning(&v, "ip-fragments-lost").is_none(), "{name} {delay}");
            assert_eq!(warning(&v, "ip-fragments").unwrap()["count"], segments);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A flood of first fragments that never complete stays within the caps:
/// each is dropped in turn and counted, nothing else changes.
#[test]
fn a_flood_of_incomplete_datagrams_is_bounded_and_counted() {
    let dir = temp_dir("fragments-flood");
    let base = Pcap::shipped("fragmented-ipv4");
    let frags = fragment_records(&base);
    // The protocol header's first fragment (more-fragments set, offset 0).
    let first = base.records[frags[0]].clone();
    let mut p = Pcap::shipped("client-sigstop");
    let at = 5;
    for id in 0..3000u16 {
        let mut r = first.clone();
        let d = &mut r[16..];
        d[14 + 4..14 + 6].copy_from_slice(&id.wrapping_add(7).to_be_bytes());
        p.records.insert(at, r);
    }
    let t = p.ts(at - 1);
    for i in at..at + 3000 {
        p.set_ts(i, t);
    }
    let path = dir.join("flood.pcap");
    p.write(&path);
    let v = json(&path);
    let o = json(&shipped("client-sigstop"));
    assert_eq!(v["connections"], o["connections"]);
    assert_eq!(warning(&v, "ip-fragments-lost").unwrap()["count"], 3000);
    assert_eq!(v["capture"]["ip_fragments"], 3000);
    std::fs::remove_dir_all(&dir).ok();
}
