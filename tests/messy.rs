//! Right verdicts on the messy captures real hosts produce: every packet
//! captured twice (`-i any` across a Linux bridge, a mirror port, `mergecap`
//! of a capture with itself), packets stamped out of time order, and
//! packets the capture missed inside a silence. Built in memory from the
//! shipped captures (tests/pcapedit).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pcapedit;

use std::path::Path;

use hbscope::engine::EngineConfig;
use hbscope::report;
use hbscope::run::replay;
use pcapedit::{shipped, temp_dir, Pcap};
use serde_json::Value;

fn json(path: &Path) -> Value {
    let r = replay::replay(path, EngineConfig::default(), &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .report();
    serde_json::from_str(&report::to_json(&r).unwrap()).unwrap()
}

fn warning<'a>(v: &'a Value, code: &str) -> Option<&'a Value> {
    v["capture"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == code)
}

/// Captures whose duplicated copy is checked: the founding client stall,
/// a SIGSTOPped client, a black hole whose real retransmissions must stay
/// retransmissions, IPv6 (no IPv4 ID: the TSval decides), a busy one and an
/// `-i any` (SLL2) one.
const DOUBLED: [&str; 6] = [
    "nova-api-eventlet",
    "client-sigstop",
    "netns-blackhole",
    "ipv6",
    "healthy-busy",
    "any-interface",
];

#[test]
fn every_packet_twice_gives_the_verdicts_of_the_original() {
    let dir = temp_dir("messy-doubled");
    for name in DOUBLED {
        let orig = json(&shipped(name));
        // 0: mergecap of the capture with itself; 20 us: a bridge's second copy.
        for delay in [0, 20_000] {
            let p = dir.join(format!("{name}-{delay}.pcap"));
            Pcap::shipped(name).doubled(delay).write(&p);
            let v = json(&p);
            assert_eq!(
                v["connections"], orig["connections"],
                "{name} doubled (copy {delay} ns later): connections differ from the original's"
            );
            assert_eq!(v["summary"], orig["summary"], "{name} doubled");
            let w = warning(&v, "duplicate-packets")
                .unwrap_or_else(|| panic!("{name}: no duplicate-packets warning"));
            let n = v["capture"]["duplicate_packets"].as_u64().unwrap();
            assert_eq!(w["count"].as_u64(), Some(n), "{name}");
            assert!(
                n > 0 && n <= orig["capture"]["packets"].as_u64().unwrap(),
                "{name}: {n}"
            );
            assert!(warning(&orig, "duplicate-packets").is_none());
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_founding_case_doubled_is_still_a_client_stall() {
    let dir = temp_dir("messy-nova");
    let p = dir.join("nova2.pcap");
    Pcap::shipped("nova-api-eventlet").doubled(0).write(&p);
    let v = json(&p);
    let g = &v["connections"][0]["gaps"][0];
    assert_eq!(g["cause"], "client-stall");
    assert_eq!(g["counts"]["peer_retransmissions"], 0);
    assert_eq!(g["counts"]["silent_side_retransmissions"], 0);
    assert_eq!(g["counts"]["silent_side_acks_advancing"], 6);
    std::fs::remove_dir_all(&dir).ok();
}

/// Causes that accuse a side.
fn stalls(v: &Value) -> Vec<(String, String, String)> {
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| {
            c["gaps"].as_array().unwrap().iter().filter_map(move |g| {
                let cause = g["cause"].as_str().unwrap();
                (cause != "unknown" && cause != "capture-loss").then(|| {
                    (
                        c["client"].as_str().unwrap().to_owned(),
                        g["direction"].as_str().unwrap().to_owned(),
                        cause.to_owned(),
                    )
                })
            })
        })
        .collect()
}

/// One packet of healthy-idle (heartbeat 2 s, a packet at least every
/// second) restamped to 0, an hour later, 2100, or 3 s either way: no stall
/// is invented, and when the packet lands out of order with its
/// neighbours the warning says so and the connection is marked.
#[test]
fn one_packet_restamped_invents_no_stall() {
    let dir = temp_dir("messy-restamp");
    let name = "healthy-idle";
    let orig = json(&shipped(name));
    let want = stalls(&orig);
    let base = Pcap::shipped(name);
    let n = base.records.len();
    let year_2100 = 4_102_444_800i64 * 1_000_000_000;
    let p = dir.join("x.pcap");
    let mut checked = 0;
    for i in 0..n {
        let t = base.ts(i);
        for (what, to) in [
            ("0", 0),
            ("+1 h", t + 3_600_000_000_000),
            ("2100", year_2100),
            ("+3 s", t + 3_000_000_000),
            ("-3 s", t - 3_000_000_000),
        ] {
            let mut m = Pcap::shipped(name);
            m.set_ts(i, to);
            m.write(&p);
            let v = json(&p);
            assert_eq!(
                stalls(&v),
                want,
                "{name} packet {i} restamped {what}: a stall was invented"
            );
            let before = (i > 0).then(|| base.ts(i - 1));
            let after = (i + 1 < n).then(|| base.ts(i + 1));
            let tol = 10_000_000;
            let out_of_order =
                before.is_some_and(|b| to + tol < b) || after.is_some_and(|a| to > a + tol);
            // The first packet has nothing before it to be judged by, the
            // last nothing after it.
            if out_of_order && i > 0 && i + 1 < n {
                let w = warning(&v, "timestamp-disorder").unwrap_or_else(|| {
                    panic!("{name} packet {i} restamped {what}: no timestamp-disorder warning")
                });
                assert!(w["count"].as_u64().unwrap() >= 1);
                assert!(v["capture"]["disordered_timestamps"].as_u64().unwrap() >= 1);
                assert!(
                    v["connections"][0]["timestamps_disordered"]
                        .as_u64()
                        .unwrap()
                        >= 1,
                    "{name} packet {i} restamped {what}: connection not marked"
                );
                // The capture's time span is not stretched to 1970 or 2100.
                let d = v["capture"]["duration_s"].as_f64().unwrap();
                assert!(d < 20.0, "{name} packet {i} restamped {what}: duration {d}");
                checked += 1;
            }
        }
    }
    assert!(checked > 4 * (n - 2), "checked {checked}");
    std::fs::remove_dir_all(&dir).ok();
}

/// The real retransmissions of netns-blackhole are no duplicates, and a
/// clean capture gets no new warning or counter.
#[test]
fn clean_captures_have_no_duplicates_and_no_disorder() {
    for name in DOUBLED {
        let v = json(&shipped(name));
        assert!(v["capture"].get("duplicate_packets").is_none(), "{name}");
        assert!(
            v["capture"].get("disordered_timestamps").is_none(),
            "{name}"
        );
        assert!(warning(&v, "timestamp-disorder").is_none(), "{name}");
    }
    let v = json(&shipped("netns-blackhole"));
    let retrans: u64 = v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|c| c["directions"].as_object().unwrap().values())
        .map(|d| d["retransmissions"].as_u64().unwrap())
        .sum();
    assert_eq!(retrans, 5, "retransmissions: {retrans}");
}

/// Two-ended replay of two doubled captures: the segment logs drop the
/// copies too, so the clocks still line up (every segment would otherwise
/// be seen twice and none could be matched) and the merged verdicts are
/// the original's.
#[test]
fn two_ended_replay_of_doubled_captures_gives_the_original_verdicts() {
    let dir = temp_dir("messy-twoend");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/twoend");
    for name in ["twoend-client-sigstop", "twoend-lost-c2b"] {
        let merged = |client: &Path, broker: &Path| -> Value {
            let r = hbscope::run::twoend::replay_two(client, broker, &EngineConfig::default())
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            let v: Value = serde_json::from_str(&report::to_json(&r).unwrap()).unwrap();
            v["merge"]["connections"].clone()
        };
        let (c, b) = (
            root.join(format!("{name}.client.pcap")),
            root.join(format!("{name}.broker.pcap")),
        );
        let orig = merged(&c, &b);
        let (c2, b2) = (dir.join("client.pcap"), dir.join("broker.pcap"));
        Pcap::read(&c).doubled(0).write(&c2);
        // At the same time: a later copy of the last packet would rightly
        // make the capture (and a gap the capture's end closes) longer.
        Pcap::read(&b).doubled(0).write(&b2);
        let v = merged(&c2, &b2);
        assert!(orig.as_array().is_some_and(|a| !a.is_empty()), "{name}");
        // The entries name their files: the same once the names are.
        let named = |v: &Value, client: &Path, broker: &Path| {
            v.to_string()
                .replace(&client.display().to_string(), "CLIENT")
                .replace(&broker.display().to_string(), "BROKER")
        };
        assert_eq!(named(&v, &c2, &b2), named(&orig, &c, &b), "{name}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The gap of `direction` in the first connection of `v`.
fn gap<'a>(v: &'a Value, direction: &str) -> &'a Value {
    v["connections"][0]["gaps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["direction"] == direction)
        .unwrap_or_else(|| panic!("no {direction} gap in {:#}", v["connections"][0]["gaps"]))
}

fn has_line(g: &Value, text: &str) -> bool {
    g["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l.as_str().unwrap().contains(text))
}

/// Packets deleted inside a silence, as a capture that dropped them would
/// lose them, from captures whose real verdicts are known: what the wire
/// still shows proves the loss, so the verdict is `capture-loss` with the
/// proof named, never a stall. Before, the netns cuts were a `broker-stall`,
/// the client's side of the twoend-lost-c2b-brief cut a `client-stall` and
/// the broker-sigstop cut `unknown`: silences of sides that were not silent.
#[test]
fn packets_missed_inside_a_silence_give_capture_loss() {
    let dir = temp_dir("messy-loss");
    let cases: [(&str, std::ops::RangeInclusive<usize>, &str, &str); 4] = [
        // The broker's last heartbeat and its 5 retransmissions: its RST
        // (seq 602) shows 8 bytes sent after the last seen (594).
        (
            "netns-oneway",
            33..=38,
            "broker-to-client",
            "broker's RST at seq 602 but the last byte seen was 594: 8 bytes were sent and not captured",
        ),
        (
            "netns-blackhole",
            33..=38,
            "broker-to-client",
            "broker's RST at seq 602 but the last byte seen was 594: 8 bytes were sent and not captured",
        ),
        // The broker's heartbeat and its 4 retransmissions while the client's
        // packets were being lost: the client's ACK of 594 covers bytes never
        // seen, and its dup ACK carries seq 485 after the last seen byte 477.
        (
            "twoend/twoend-lost-c2b-brief.broker",
            30..=34,
            "broker-to-client",
            "client's ACK 594 acknowledged broker's bytes past the last one seen (586): 8 bytes arrived and were not captured",
        ),
        // The client's last 4 heartbeats and the broker's ACKs of them while
        // the broker was stopped: the client's FIN (seq 539) shows 32 bytes
        // after the last seen (507).
        (
            "broker-sigstop",
            41..=48,
            "client-to-broker",
            "client's FIN at seq 539 but the last byte seen was 507: 32 bytes were sent and not captured",
        ),
    ];
    for (name, frames, direction, proof) in cases {
        let p = dir.join(format!("{}-loss.pcap", name.replace('/', "-")));
        Pcap::shipped(name).without(frames.clone()).write(&p);
        let v = json(&p);
        let g = gap(&v, direction);
        assert_eq!(
            g["cause"], "capture-loss",
            "{name} without {frames:?}: {g:#}"
        );
        assert!(
            has_line(g, proof),
            "{name} without {frames:?}: {:#}",
            g["evidence"]
        );
        // The other direction: never a stall invented from the missing data.
        assert!(
            stalls(&v)
                .iter()
                .all(|s| stalls(&json(&shipped(name))).contains(s)),
            "{name} without {frames:?}: {:?}",
            stalls(&v)
        );
    }
    // The client's side of the same cuts: its silence next to the missed
    // bytes is capture loss too (the dup ACK's sequence number; for the
    // netns captures, the broker's missed bytes).
    for (name, frames) in [
        ("netns-oneway", 33..=38),
        ("twoend/twoend-lost-c2b-brief.broker", 30..=34),
    ] {
        let p = dir.join(format!("{}-c2b.pcap", name.replace('/', "-")));
        Pcap::shipped(name).without(frames).write(&p);
        assert_eq!(
            gap(&json(&p), "client-to-broker")["cause"],
            "capture-loss",
            "{name}"
        );
    }
    let v = json(&dir.join("twoend-twoend-lost-c2b-brief.broker-c2b.pcap"));
    assert!(has_line(
        gap(&v, "client-to-broker"),
        "client's ACK at seq 485 (its next byte to send) but the last byte seen was 477: 8 bytes were sent and not captured"
    ));
    std::fs::remove_dir_all(&dir).ok();
}

/// The same numbers in the intact captures, where the loss was on the way
/// (before the capture point), not in the capture: the path rules decide
/// first, and the proof is only an evidence line. twoend-lost-c2b-brief's
/// client packets were dropped between the two captures: at the broker side
/// the client's dup ACK (seq 485, last byte seen 477) and its IPv4 ID
/// (0x2650 to 0x2658) show packets sent and never seen, and the broker's
/// four retransmissions show the path lost them: `peer-unreachable`.
#[test]
fn loss_on_the_way_stays_the_paths() {
    let v = json(&shipped("twoend/twoend-lost-c2b-brief.broker"));
    let g = gap(&v, "client-to-broker");
    assert_eq!(g["cause"], "peer-unreachable");
    assert_eq!(g["counts"]["unseen_sent_bytes"], 8);
    assert_eq!(g["counts"]["unseen_sent_packets"], 7);
    assert!(has_line(g, "client's IPv4 ID went from 0x2650 to 0x2658"));
    // netns-blackhole without two of the broker's retransmissions: their
    // IPv4 IDs are missing, but the retransmissions nobody answered decide.
    let dir = temp_dir("messy-ipid");
    let p = dir.join("blackhole-34-35.pcap");
    Pcap::shipped("netns-blackhole").without(34..=35).write(&p);
    let g = gap(&json(&p), "broker-to-client").clone();
    assert_eq!(g["cause"], "peer-unreachable");
    assert_eq!(g["counts"]["unseen_sent_packets"], 2);
    // client-sigstop without two of the stopped client's pure ACKs: its
    // IPv4 ID jumps, but its next ACK carries the next byte right after the
    // last one seen, so nothing new was missed: still a client stall.
    let p = dir.join("sigstop-acks.pcap");
    let mut cut = Pcap::shipped("client-sigstop");
    cut = cut.without(33..=33).without(31..=31);
    cut.write(&p);
    let g = gap(&json(&p), "client-to-broker").clone();
    assert_eq!(g["cause"], "client-stall");
    assert!(g["counts"].get("unseen_sent_packets").is_none(), "{g:#}");
    std::fs::remove_dir_all(&dir).ok();
}
