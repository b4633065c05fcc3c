//! Captures that cannot support a verdict say so: one direction only, and
//! every packet stamped with the same time (all zero).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hbscope::engine::EngineConfig;
use hbscope::report::Report;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

/// A classic little-endian pcap's header and records.
fn split(pcap: &[u8]) -> (&[u8], Vec<&[u8]>) {
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let len = u32::from_le_bytes(pcap[at + 8..at + 12].try_into().unwrap()) as usize;
        out.push(&pcap[at..at + 16 + len]);
        at += 16 + len;
    }
    (&pcap[..24], out)
}

/// TCP source port of an Ethernet/IPv4 frame record.
fn src_port(rec: &[u8]) -> u16 {
    let ip = &rec[16 + 14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    u16::from_be_bytes([ip[ihl], ip[ihl + 1]])
}

fn replay_bytes(name: &str, bytes: &[u8]) -> Report {
    let dir = std::env::temp_dir().join(format!("hbscope-verdict-support-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    let rep = hbscope::run::replay::replay(&p, EngineConfig::default(), &mut |_| {})
        .unwrap()
        .report();
    let _ = std::fs::remove_file(&p);
    rep
}

fn warning<'a>(rep: &'a Report, code: &str) -> Option<&'a str> {
    rep.capture
        .warnings
        .iter()
        .find(|w| w.code == code)
        .map(|w| w.message.as_str())
}

#[test]
fn a_capture_of_one_direction_only_is_warned_about() {
    let whole = std::fs::read(capture("client-sigstop.pcap")).unwrap();
    let (head, recs) = split(&whole);
    let mut client_only = head.to_vec();
    for r in recs.iter().filter(|r| src_port(r) != 5672) {
        client_only.extend_from_slice(r);
    }
    let rep = replay_bytes("client-only.pcap", &client_only);
    let w = warning(&rep, "one-direction")
        .unwrap_or_else(|| panic!("no one-direction warning: {:?}", rep.capture.warnings));
    assert!(
        w.contains("only the client's packets were captured, none from the broker"),
        "{w}"
    );
    // The whole capture has both directions: no such warning.
    let rep = hbscope::run::replay::replay(
        &capture("client-sigstop.pcap"),
        EngineConfig::default(),
        &mut |_| {},
    )
    .unwrap()
    .report();
    assert!(warning(&rep, "one-direction").is_none());
}

#[test]
fn all_zero_timestamps_are_warned_about() {
    let whole = std::fs::read(capture("healthy-idle.pcap")).unwrap();
    let (head, recs) = split(&whole);
    let mut zeroed = head.to_vec();
    for r in &recs {
        let mut r = r.to_vec();
        r[..8].fill(0);
        zeroed.extend_from_slice(&r);
    }
    let rep = replay_bytes("zero-ts.pcap", &zeroed);
    let w = warning(&rep, "no-timestamps")
        .unwrap_or_else(|| panic!("no no-timestamps warning: {:?}", rep.capture.warnings));
    assert!(
        w.contains("carry the same timestamp, 0 (1970-01-01)"),
        "{w}"
    );
    assert_eq!(rep.summary.gaps, 0);
    let rep = hbscope::run::replay::replay(
        &capture("healthy-idle.pcap"),
        EngineConfig::default(),
        &mut |_| {},
    )
    .unwrap()
    .report();
    assert!(warning(&rep, "no-timestamps").is_none());
}

/// pcapng with only simple packet blocks, which carry no timestamp: every
/// packet reads as stamped 0, and the report says the capture has no timing.
#[test]
fn simple_packet_blocks_without_timestamps_are_warned_about() {
    let whole = std::fs::read(capture("healthy-idle.pcap")).unwrap();
    let (_, recs) = split(&whole);
    let block = |kind: u32, body: &[u8]| {
        let len = u32::try_from(12 + body.len()).unwrap();
        let mut b = kind.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    };
    // Section header (byte-order magic, version 1.0, length unknown), one
    // Ethernet interface, then the packets.
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&(-1i64).to_le_bytes());
    let mut ng = block(0x0a0d_0d0a, &shb);
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    ng.extend(block(1, &idb));
    for r in &recs {
        let data = &r[16..];
        let mut spb = u32::try_from(data.len()).unwrap().to_le_bytes().to_vec();
        spb.extend_from_slice(data);
        spb.resize(spb.len().div_ceil(4) * 4, 0);
        ng.extend(block(3, &spb));
    }
    let rep = replay_bytes("simple-blocks.pcapng", &ng);
    assert_eq!(rep.capture.packets, recs.len() as u64);
    let w = warning(&rep, "no-timestamps")
        .unwrap_or_else(|| panic!("no no-timestamps warning: {:?}", rep.capture.warnings));
    assert!(w.contains("carry the same timestamp"), "{w}");
    assert_eq!(rep.summary.gaps, 0);
}
