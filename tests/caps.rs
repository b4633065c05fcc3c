//! Crafted hostile captures stay inside hbscope's caps, and the report says
//! what was dropped: a flood of SYNs, a flow with a huge out-of-order window,
//! and an AMQP frame that claims 4 GB.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use hbscope::analysis::RoleDirection;
use hbscope::capture::{LinkType, PacketRecord};
use hbscope::engine::{Engine, EngineConfig};
use hbscope::model::Timestamp;
use hbscope::report;

/// Ethernet + IPv4 + TCP (20-byte header) packet; checksums are not checked by hbscope.
#[allow(clippy::too_many_arguments)]
fn tcp_packet(
    src: [u8; 4],
    sport: u16,
    dst: [u8; 4],
    dport: u16,
    seq: u32,
    ack: u32,
    flags: u8,
    payload: &[u8],
) -> Vec<u8> {
    let mut p = vec![0u8; 12];
    p.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(20 + 20 + payload.len()).unwrap();
    p.extend_from_slice(&[0x45, 0]);
    p.extend_from_slice(&total.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&src);
    p.extend_from_slice(&dst);
    p.extend_from_slice(&sport.to_be_bytes());
    p.extend_from_slice(&dport.to_be_bytes());
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ack.to_be_bytes());
    p.extend_from_slice(&[0x50, flags]);
    p.extend_from_slice(&65535u16.to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0]);
    p.extend_from_slice(payload);
    p
}

const SYN: u8 = 0x02;
const ACK: u8 = 0x10;
const PSH_ACK: u8 = 0x18;

fn feed(engine: &mut Engine, ts_ns: i64, pkt: &[u8]) {
    let len = u32::try_from(pkt.len()).unwrap();
    engine.process(&PacketRecord {
        ts: Timestamp(ts_ns),
        caplen: len,
        orig_len: len,
        data: pkt,
    });
}

#[test]
fn syn_flood_is_capped_and_reported() {
    let config = EngineConfig {
        max_flows: 5_000,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, LinkType::ETHERNET);
    for i in 0..50_000u32 {
        let src = [
            10,
            1,
            u8::try_from(i >> 8 & 0xff).unwrap(),
            u8::try_from(i & 0xff).unwrap(),
        ];
        let sport = 1024 + u16::try_from(i % 60_000).unwrap();
        feed(
            &mut engine,
            i64::from(i) * 1_000,
            &tcp_packet(src, sport, [10, 0, 0, 1], 5672, i, 0, SYN, &[]),
        );
    }
    engine.finish();
    let rep = report::build(&engine, "syn-flood", true);
    assert_eq!(
        rep.connections.len(),
        0,
        "SYN-only flows are not AMQP connections"
    );
    assert!(
        engine.slots().is_empty(),
        "flows that never showed AMQP keep no state"
    );
    // At the cap the oldest flows that never showed AMQP are evicted, and the report says so.
    assert_eq!(engine.counters().evicted_flows, 45_000);
    let w = rep
        .capture
        .warnings
        .iter()
        .find(|w| w.code == "flow-evicted")
        .expect("flow-evicted warning");
    assert_eq!(w.count, 45_000);
    let json: serde_json::Value = serde_json::from_str(&report::to_json(&rep).unwrap()).unwrap();
    assert_eq!(
        json["capture"]["evicted_flows"], 45_000,
        "{}",
        json["capture"]
    );
    assert!(report::to_text(&rep).contains("the oldest flows that had shown no AMQP were dropped"));
}

#[test]
fn real_connections_are_kept_while_a_syn_flood_is_evicted() {
    let config = EngineConfig {
        max_flows: 100,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, LinkType::ETHERNET);
    let c = [10, 0, 0, 2];
    let b = [10, 0, 0, 1];
    feed(
        &mut engine,
        0,
        &tcp_packet(c, 40000, b, 5672, 1000, 0, SYN, &[]),
    );
    feed(
        &mut engine,
        1,
        &tcp_packet(c, 40000, b, 5672, 1001, 0, PSH_ACK, b"AMQP\x00\x00\x09\x01"),
    );
    for i in 0..1_000u32 {
        let src = [
            10,
            9,
            u8::try_from(i >> 8).unwrap(),
            u8::try_from(i & 0xff).unwrap(),
        ];
        feed(
            &mut engine,
            10 + i64::from(i),
            &tcp_packet(src, 2000, b, 5672, i, 0, SYN, &[]),
        );
    }
    feed(
        &mut engine,
        5_000,
        &tcp_packet(
            c,
            40000,
            b,
            5672,
            1009,
            0,
            PSH_ACK,
            &[8, 0, 0, 0, 0, 0, 0, 0xCE],
        ),
    );
    engine.finish();
    let rep = report::build(&engine, "flood", true);
    assert_eq!(
        rep.connections.len(),
        1,
        "the real connection survives the flood"
    );
    assert_eq!(
        rep.connections[0].directions[&RoleDirection::ClientToBroker].heartbeats,
        1
    );
}

#[test]
fn huge_out_of_order_window_is_bounded() {
    let mut engine = Engine::new(EngineConfig::default(), LinkType::ETHERNET);
    let c = [10, 0, 0, 2];
    let b = [10, 0, 0, 1];
    feed(
        &mut engine,
        0,
        &tcp_packet(c, 40000, b, 5672, 1000, 0, SYN, &[]),
    );
    feed(
        &mut engine,
        1,
        &tcp_packet(b, 5672, c, 40000, 5000, 1001, SYN | ACK, &[]),
    );
    feed(
        &mut engine,
        2,
        &tcp_packet(
            c,
            40000,
            b,
            5672,
            1001,
            5001,
            PSH_ACK,
            b"AMQP\x00\x00\x09\x01",
        ),
    );
    // 20,000 segments of 1 KiB, each leaving a 1 KiB hole before it: 20 MiB
    // of out-of-order data that can never become contiguous.
    let chunk = vec![0xAB; 1024];
    for i in 0..20_000u32 {
        let seq = 1009 + 2048 * (i + 1);
        feed(
            &mut engine,
            10 + i64::from(i),
            &tcp_packet(c, 40000, b, 5672, seq, 5001, PSH_ACK, &chunk),
        );
    }
    engine.finish();
    let rep = report::build(&engine, "ooo", true);
    let conn = &rep.connections[0];
    let d = &conn.directions[&RoleDirection::ClientToBroker];
    assert!(
        d.overflow_skipped_bytes > 0,
        "the out-of-order cap must have been hit: {d:?}"
    );
    assert!(
        d.bytes >= 20_000 * 1024,
        "timing of every segment is still counted: {}",
        d.bytes
    );
}

#[test]
fn frame_claiming_4_gb_is_a_framing_error_not_a_wait() {
    let mut engine = Engine::new(EngineConfig::default(), LinkType::ETHERNET);
    let c = [10, 0, 0, 2];
    let b = [10, 0, 0, 1];
    feed(
        &mut engine,
        0,
        &tcp_packet(c, 40001, b, 5672, 1000, 0, SYN, &[]),
    );
    feed(
        &mut engine,
        1,
        &tcp_packet(b, 5672, c, 40001, 5000, 1001, SYN | ACK, &[]),
    );
    feed(
        &mut engine,
        2,
        &tcp_packet(
            c,
            40001,
            b,
            5672,
            1001,
            5001,
            PSH_ACK,
            b"AMQP\x00\x00\x09\x01",
        ),
    );
    let mut evil = vec![3, 0, 1, 0xFF, 0xFF, 0xFF, 0xF0];
    evil.extend_from_slice(&[8, 0, 0, 0, 0, 0, 0, 0xCE]);
    feed(
        &mut engine,
        3,
        &tcp_packet(c, 40001, b, 5672, 1009, 5001, PSH_ACK, &evil),
    );
    engine.finish();
    let rep = report::build(&engine, "4gb", true);
    let conn = &rep.connections[0];
    assert!(
        conn.violations
            .iter()
            .any(|v| v.contains("more than the frame-size cap")),
        "{:?}",
        conn.violations
    );
    assert_eq!(
        conn.directions[&RoleDirection::ClientToBroker].heartbeats,
        1,
        "framing recovered after the bad header"
    );
}

/// Many flows each holding out-of-order data behind a missing segment: the
/// global budget (`max_buffered_bytes`) gives up the buffers of the flows
/// quiet longest, says so, and keeps the engine's buffered total under it.
#[test]
fn out_of_order_flood_stays_within_the_global_memory_budget() {
    const FLOWS: u16 = 200;
    const SEGS: u32 = 40;
    const LEN: usize = 1000;
    let config = EngineConfig {
        max_buffered_bytes: 1024 * 1024,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, LinkType::ETHERNET);
    let client = [10, 0, 0, 1];
    let broker = [10, 0, 0, 2];
    let payload = vec![b'x'; LEN];
    let mut t = 1_700_000_000_000_000_000i64;
    for f in 0..FLOWS {
        let sport = 40_000 + f;
        // The protocol header in order, then a missing segment, then data
        // that can only be buffered.
        feed(
            &mut engine,
            t,
            &tcp_packet(
                client,
                sport,
                broker,
                5672,
                1_000,
                1,
                PSH_ACK,
                b"AMQP\x00\x00\x09\x01",
            ),
        );
        for k in 1..=SEGS {
            t += 1_000;
            let seq = 1_008 + k * LEN as u32;
            feed(
                &mut engine,
                t,
                &tcp_packet(client, sport, broker, 5672, seq, 1, PSH_ACK, &payload),
            );
        }
    }
    // 200 flows x 40 KB buffered = 8 MB without the budget.
    let held = engine.buffered_bytes();
    assert!(
        held <= 1024 * 1024,
        "{held} bytes buffered over a 1 MiB budget"
    );
    assert!(engine.counters().memory_shed_flows > 0);
    engine.finish();
    let rep = report::build(&engine, "ooo-flood", true);
    let w = rep
        .capture
        .warnings
        .iter()
        .find(|w| w.code == "memory-budget")
        .unwrap_or_else(|| panic!("no memory-budget warning: {:?}", rep.capture.warnings));
    assert!(w.message.contains("passed 1 MiB"), "{}", w.message);
}

/// A Connection.Start-Ok method frame of `size` payload bytes whose client
/// properties hold `connection_name` and a padding string.
fn start_ok_frame(size: usize, name: &str) -> Vec<u8> {
    fn short(v: &mut Vec<u8>, s: &str) {
        v.push(u8::try_from(s.len()).unwrap());
        v.extend_from_slice(s.as_bytes());
    }
    fn long(v: &mut Vec<u8>, s: &[u8]) {
        v.extend_from_slice(&u32::try_from(s.len()).unwrap().to_be_bytes());
        v.extend_from_slice(s);
    }
    let tail = {
        let mut t = Vec::new();
        short(&mut t, "PLAIN");
        long(&mut t, b"\0guest\0guest");
        short(&mut t, "en_US");
        t
    };
    let mut table = Vec::new();
    short(&mut table, "connection_name");
    table.push(b'S');
    long(&mut table, name.as_bytes());
    short(&mut table, "pad");
    table.push(b'S');
    // class+method (4) + table length (4) + table + tail = size
    let pad = size - 4 - 4 - table.len() - 4 - tail.len();
    long(&mut table, &vec![b'x'; pad]);
    let mut payload = vec![0, 10, 0, 11];
    long(&mut payload, &table);
    payload.extend_from_slice(&tail);
    assert_eq!(payload.len(), size);
    let mut f = vec![1, 0, 0];
    f.extend_from_slice(&u32::try_from(size).unwrap().to_be_bytes());
    f.extend_from_slice(&payload);
    f.push(0xCE);
    f
}

/// Many connections each part-way through a 60 KB Start-Ok, which the
/// framer buffers to decode (connection methods up to 64 KiB): the framers'
/// buffers count against the same global budget as out-of-order data. The
/// flows quiet longest give theirs up (those methods are not decoded, and
/// the warning says so); the newest connection still decodes its own.
/// Returns the engine (shard 0 of `shards`) and the most bytes it held at once.
fn partial_start_oks(budget: usize, shards: usize) -> (Engine, usize) {
    const FLOWS: u16 = 200;
    const SIZE: usize = 60_000;
    const SENT: usize = 59_000;
    const SEG: usize = 1_000;
    let config = EngineConfig {
        max_buffered_bytes: budget,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new_shard(config, LinkType::ETHERNET, 0, shards);
    let client = [10, 0, 0, 1];
    let broker = [10, 0, 0, 2];
    let mut t = 1_700_000_000_000_000_000i64;
    let mut most = 0;
    for f in 0..=FLOWS {
        let sport = 40_000 + f;
        let newest = f == FLOWS;
        let name = if newest { "newest" } else { "partial" };
        let frame = start_ok_frame(SIZE, name);
        let mut stream = b"AMQP\x00\x00\x09\x01".to_vec();
        stream.extend_from_slice(if newest { &frame } else { &frame[..SENT] });
        for (k, chunk) in stream.chunks(SEG).enumerate() {
            t += 1_000;
            let seq = 1_000 + u32::try_from(k * SEG).unwrap();
            feed(
                &mut engine,
                t,
                &tcp_packet(client, sport, broker, 5672, seq, 1, PSH_ACK, chunk),
            );
            most = most.max(engine.buffered_bytes());
        }
    }
    (engine, most)
}

#[test]
fn partial_method_frames_count_against_the_global_memory_budget() {
    // Without a budget to speak of: every flow's partial frame is counted
    // (200 x 59 KB).
    let (engine, most) = partial_start_oks(usize::MAX / 2, 1);
    assert!(most >= 200 * 58_000, "only {most} bytes counted");
    assert_eq!(engine.counters().memory_shed_flows, 0);
    // A 1 MiB budget holds.
    let (mut engine, most) = partial_start_oks(1024 * 1024, 1);
    assert!(most <= 1024 * 1024, "{most} bytes held over a 1 MiB budget");
    assert!(engine.counters().memory_shed_flows >= 150);
    engine.finish();
    let rep = report::build(&engine, "partial-start-ok", true);
    let w = rep
        .capture
        .warnings
        .iter()
        .find(|w| w.code == "memory-budget")
        .unwrap_or_else(|| panic!("no memory-budget warning: {:?}", rep.capture.warnings));
    assert!(w.message.contains("passed 1 MiB"), "{}", w.message);
    assert!(
        w.message
            .contains("connection methods being buffered not decoded")
            && w.message
                .contains("Connection.Start-Ok from 10.0.0.1:40000 -> 10.0.0.2:5672"),
        "{}",
        w.message
    );
    let json: serde_json::Value = serde_json::from_str(&report::to_json(&rep).unwrap()).unwrap();
    assert_eq!(
        json["capture"]["memory_shed_flows"],
        engine.counters().memory_shed_flows,
        "{}",
        json["capture"]
    );
    assert!(
        json["capture"].get("evicted_flows").is_none(),
        "omitted when 0"
    );
    let text = report::to_text(&rep);
    assert!(
        text.contains("warning: data buffered across all flows"),
        "{text}"
    );
    assert_eq!(rep.connections.len(), 201);
    let newest = rep.connections.last().unwrap();
    assert_eq!(newest.client_name.as_deref(), Some("newest"));
    assert!(rep.connections[..200]
        .iter()
        .all(|c| c.client_name.is_none()));
}

/// `replay --threads N` runs N engines: each holds its share of the budget,
/// so together they stay under it.
#[test]
fn the_memory_budget_is_split_between_replay_threads() {
    let (engine, most) = partial_start_oks(1024 * 1024, 2);
    assert!(
        most <= 512 * 1024,
        "{most} bytes held by one of two engines"
    );
    assert!(engine.counters().memory_shed_flows > 0);
    let w = engine
        .warnings()
        .iter()
        .find(|w| w.code == "memory-budget")
        .unwrap();
    assert!(w.message.contains("passed 512 KiB"), "{}", w.message);
}
