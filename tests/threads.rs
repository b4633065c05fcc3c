//! Splitting a capture's flows between threads (`replay --threads N`) must
//! not change the report: every shipped capture, a synthetic capture with
//! silences of every cause and churn (reconnects, wake-ups), a capture cut
//! short, one with undecodable packets, and messy ones (packets doubled,
//! restamped, or deleted inside silences) give byte-identical JSON with 1, 2
//! and 3 threads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hbscope::engine::EngineConfig;
use hbscope::report;
use hbscope::run::replay;
use hbscope::synth::{self, SynthConfig};

fn json(path: &Path, threads: usize) -> String {
    let r = replay::replay_threads(path, EngineConfig::default(), threads, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    report::to_json(&r.report()).unwrap()
}

fn assert_same_for_all_thread_counts(path: &Path) -> String {
    let one = json(path, 1);
    for n in [2, 3] {
        let many = json(path, n);
        assert!(
            one == many,
            "{}: the report with {n} threads differs from one thread's",
            path.display()
        );
    }
    one
}

fn captures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut out = Vec::new();
    for dir in [root.clone(), root.join("twoend")] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if matches!(
                p.extension().and_then(|x| x.to_str()),
                Some("pcap" | "pcapng")
            ) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

#[test]
fn shipped_captures_give_the_same_report_with_any_thread_count() {
    let all = captures();
    assert!(all.len() >= 24, "captures found: {}", all.len());
    for p in all {
        assert_same_for_all_thread_counts(&p);
    }
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hbscope-threads-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn synthetic_capture_with_every_cause_gives_the_same_report() {
    let dir = temp_dir("synth");
    let pcap = dir.join("synth.pcap");
    let cfg = SynthConfig {
        seed: 11,
        connections: 300,
        duration_s: 120,
        heartbeat_s: 4,
        churn: 0.3,
        stalls_per_cause: 3,
        ..SynthConfig::default()
    };
    synth::write_files(&cfg, &pcap, None).unwrap();
    let j = assert_same_for_all_thread_counts(&pcap);
    std::fs::remove_dir_all(&dir).ok();
    // The comparison means something only if there was something to split.
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    assert!(v["summary"]["connections"].as_u64().unwrap() >= 300);
    assert!(v["summary"]["gaps"].as_u64().unwrap() >= 12);
}

#[test]
fn damaged_input_warns_once_whatever_the_thread_count() {
    let dir = temp_dir("damaged");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/nova-api-eventlet.pcap");
    let bytes = std::fs::read(&src).unwrap();

    // Cut in the middle of a record: one capture-truncated warning.
    let cut = dir.join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 5]).unwrap();
    let j = assert_same_for_all_thread_counts(&cut);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    let w = &v["capture"]["warnings"];
    let truncated: Vec<_> = w
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["code"] == "capture-truncated")
        .collect();
    assert_eq!(truncated.len(), 1, "{w}");
    assert_eq!(truncated[0]["count"], 1, "{w}");

    // Every 7th packet's IP header garbled: decode errors counted once each.
    let mut garbled = bytes.clone();
    let mut at = 24;
    let mut n = 0;
    while at + 16 <= garbled.len() {
        let caplen = u32::from_le_bytes(garbled[at + 8..at + 12].try_into().unwrap()) as usize;
        let data = at + 16;
        if n % 7 == 3 && caplen > 20 && data + 20 <= garbled.len() {
            // Ethernet header is 14 bytes: the IPv4 version/IHL byte follows.
            garbled[data + 14] = 0x41;
        }
        at = data + caplen;
        n += 1;
    }
    let bad = dir.join("garbled.pcap");
    std::fs::write(&bad, &garbled).unwrap();
    let j = assert_same_for_all_thread_counts(&bad);
    let v: serde_json::Value = serde_json::from_str(&j).unwrap();
    let errors = v["capture"]["decode_errors"].as_u64().unwrap();
    assert!(errors > 10, "decode errors: {errors}");
    let w = v["capture"]["warnings"].as_array().unwrap();
    let decode: Vec<_> = w.iter().filter(|w| w["code"] == "decode-error").collect();
    assert_eq!(decode.len(), 1, "{w:?}");
    assert_eq!(decode[0]["count"].as_u64(), Some(errors), "{w:?}");
    std::fs::remove_dir_all(&dir).ok();
}

mod pcapedit;

/// Messy captures: every packet twice (as `mergecap` of a capture with
/// itself, and as a bridge's second copy 20 us later) and packets stamped
/// out of time order (0, +1 h, +-3 s) give the same report with any thread
/// count: duplicates are found by the shard that owns the flow, timestamp
/// disorder is counted once for the capture.
#[test]
fn messy_captures_give_the_same_report_with_any_thread_count() {
    use pcapedit::Pcap;
    let dir = temp_dir("messy");
    let mut n = 0;
    for name in [
        "nova-api-eventlet",
        "client-sigstop",
        "netns-blackhole",
        "ipv6",
    ] {
        for delay in [0, 20_000] {
            let p = dir.join(format!("{name}-doubled-{delay}.pcap"));
            Pcap::shipped(name).doubled(delay).write(&p);
            let j = assert_same_for_all_thread_counts(&p);
            assert!(j.contains("duplicate-packets"), "{name}");
            n += 1;
        }
    }
    for name in ["healthy-idle", "nova-api-eventlet"] {
        let base = Pcap::shipped(name);
        let len = base.records.len();
        for i in [len / 3, len / 2, 2 * len / 3] {
            let t = base.ts(i);
            for to in [
                0,
                t + 3_600_000_000_000,
                t + 3_000_000_000,
                t - 3_000_000_000,
            ] {
                let mut m = Pcap::shipped(name);
                m.set_ts(i, to);
                let p = dir.join(format!("{name}-{i}-{to}.pcap"));
                m.write(&p);
                assert_same_for_all_thread_counts(&p);
                n += 1;
            }
        }
    }
    // Many connections, some packets an hour late or 3 s early: the warning
    // names the same first connection whatever shard saw it.
    for name in ["many-busy-one-stalled", "healthy-busy"] {
        let mut m = Pcap::shipped(name);
        for i in (7..m.records.len()).step_by(50) {
            let t = m.ts(i);
            m.set_ts(
                i,
                if i % 100 == 7 {
                    t + 3_600_000_000_000
                } else {
                    t - 3_000_000_000
                },
            );
        }
        let p = dir.join(format!("{name}-shifted.pcap"));
        m.write(&p);
        let j = assert_same_for_all_thread_counts(&p);
        assert!(j.contains("timestamp-disorder"), "{name}");
        n += 1;
    }
    assert!(n >= 30);
    std::fs::remove_dir_all(&dir).ok();
}

/// Capture loss proven by sequence numbers, IPv4 IDs and ACKs (packets
/// deleted inside silences, as tests/messy.rs does; and every 7th packet of
/// a capture of many connections, so the proofs fall in every shard), and
/// the repeated Tune-Ok and port-reuse captures: the same report for any
/// thread count.
#[test]
fn loss_proofs_and_port_reuse_give_the_same_report_with_any_thread_count() {
    use pcapedit::Pcap;
    let dir = temp_dir("loss");
    let cuts: [(&str, std::ops::RangeInclusive<usize>); 6] = [
        ("netns-oneway", 33..=38),
        ("netns-blackhole", 33..=38),
        ("netns-blackhole", 34..=35),
        ("twoend/twoend-lost-c2b-brief.broker", 30..=34),
        ("broker-sigstop", 41..=48),
        ("client-sigstop", 31..=33),
    ];
    for (name, frames) in cuts {
        let p = dir.join(format!(
            "{}-{}.pcap",
            name.replace('/', "-"),
            frames.start()
        ));
        Pcap::shipped(name).without(frames).write(&p);
        let j = assert_same_for_all_thread_counts(&p);
        assert!(j.contains("\"gaps\""), "{name}");
    }
    let mut many = Pcap::shipped("many-busy-one-stalled");
    many.records = many
        .records
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 7 != 3)
        .map(|(_, r)| r.clone())
        .collect();
    let p = dir.join("many-busy-every-7th-deleted.pcap");
    many.write(&p);
    let j = assert_same_for_all_thread_counts(&p);
    assert!(
        j.contains("capture-loss"),
        "no loss proven: the test would prove nothing"
    );
    for name in ["port-reuse", "tune-ok-twice"] {
        let j = assert_same_for_all_thread_counts(&pcapedit::shipped(name));
        assert!(
            j.contains("port-reused") || j.contains("Tune-Ok again"),
            "{name}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}
