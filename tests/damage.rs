//! Honest verdicts under damage: packets removed at random from the shipped
//! captures (simulated capture loss) must never produce a client-stall or
//! broker-stall out of the missing data. A gap found in a damaged copy is
//! either one the intact capture has too (same direction and cause), or it is
//! capture-loss / unknown. The same holds for packets captured twice and for
//! one packet stamped 3 s early or late.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

mod pcapedit;

use hbscope::engine::EngineConfig;
use hbscope::run::replay;

fn gaps(path: &Path) -> Vec<(String, String, String)> {
    let r = replay::replay(path, EngineConfig::default(), &mut |_| {})
        .unwrap()
        .report();
    r.connections
        .iter()
        .flat_map(|c| {
            c.gaps.iter().map(move |g| {
                (
                    c.client.clone(),
                    g.direction.to_string(),
                    g.cause.to_string(),
                )
            })
        })
        .collect()
}

#[test]
fn random_deletions_never_invent_stalls() {
    let dir = std::env::temp_dir().join(format!("hbscope-damage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = [
        "healthy-idle",
        "nova-api-pthread",
        "client-sigstop",
        "nova-api-eventlet",
        "broker-sigstop",
        "ipv6",
        "netns-oneway",
        "netns-blackhole",
        "consumer-zero-window",
        "twoend/twoend-lost-c2b-brief.broker",
    ];
    let mut seed: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut checked = 0;
    for name in names {
        let orig = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("captures")
            .join(format!("{name}.pcap"));
        let intact = gaps(&orig);
        let pcapedit::Pcap {
            header,
            records: recs,
            ..
        } = pcapedit::Pcap::read(&orig);
        for round in 0..12 {
            let mut out = header.clone();
            for r in &recs {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                // Drop about one packet in eight.
                if !seed.is_multiple_of(8) {
                    out.extend_from_slice(r);
                }
            }
            let p = dir.join(format!("{}-{round}.pcap", name.replace('/', "-")));
            std::fs::write(&p, &out).unwrap();
            for (client, direction, cause) in gaps(&p) {
                let stall = cause == "client-stall" || cause == "broker-stall";
                let real = intact
                    .iter()
                    .any(|(c, d, k)| *c == client && *d == direction && *k == cause);
                assert!(
                    !stall || real,
                    "{name} round {round}: {direction} {cause} on {client} does not exist in the intact capture"
                );
                checked += 1;
            }
        }
    }
    assert!(
        checked > 0,
        "the deletions should have produced some gaps to check"
    );
}

/// Record `r`'s timestamp moved by `delta_us` microseconds (these captures
/// are little-endian, microsecond pcap).
fn shifted(r: &[u8], delta_us: i64) -> Vec<u8> {
    let mut r = r.to_vec();
    let secs = i64::from(u32::from_le_bytes(r[0..4].try_into().unwrap()));
    let us = i64::from(u32::from_le_bytes(r[4..8].try_into().unwrap()));
    let t = secs * 1_000_000 + us + delta_us;
    r[0..4].copy_from_slice(&u32::try_from(t / 1_000_000).unwrap().to_le_bytes());
    r[4..8].copy_from_slice(&u32::try_from(t % 1_000_000).unwrap().to_le_bytes());
    r
}

/// The other damage real captures show: packets captured twice (a bridge
/// seen by `-i any`, a mirror port) and one packet stamped 3 s early or
/// late. Neither may produce a client-stall or broker-stall the intact
/// capture lacks.
#[test]
fn random_duplication_or_one_shifted_packet_never_invents_stalls() {
    let dir = std::env::temp_dir().join(format!("hbscope-damage-dup-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let names = [
        "healthy-idle",
        "nova-api-pthread",
        "client-sigstop",
        "nova-api-eventlet",
        "broker-sigstop",
        "ipv6",
    ];
    let mut seed: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut checked = 0;
    for name in names {
        let orig = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("captures")
            .join(format!("{name}.pcap"));
        let intact = gaps(&orig);
        let pcapedit::Pcap {
            header,
            records: recs,
            ..
        } = pcapedit::Pcap::read(&orig);
        for round in 0..12 {
            let mut out = header.clone();
            if round % 2 == 0 {
                // About one packet in four captured twice, the copy 0-50 us later.
                for r in &recs {
                    out.extend_from_slice(r);
                    if next().is_multiple_of(4) {
                        let delay = i64::try_from(next() % 50).unwrap();
                        out.extend_from_slice(&shifted(r, delay));
                    }
                }
            } else {
                let at = usize::try_from(next()).unwrap() % recs.len();
                let delta = if next().is_multiple_of(2) {
                    3_000_000
                } else {
                    -3_000_000
                };
                for (i, r) in recs.iter().enumerate() {
                    if i == at {
                        out.extend_from_slice(&shifted(r, delta));
                    } else {
                        out.extend_from_slice(r);
                    }
                }
            }
            let p = dir.join(format!("{name}-{round}.pcap"));
            std::fs::write(&p, &out).unwrap();
            for (client, direction, cause) in gaps(&p) {
                let stall = cause == "client-stall" || cause == "broker-stall";
                let real = intact
                    .iter()
                    .any(|(c, d, k)| *c == client && *d == direction && *k == cause);
                assert!(
                    !stall || real,
                    "{name} round {round}: {direction} {cause} on {client} does not exist in the intact capture"
                );
                checked += 1;
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    assert!(checked > 0);
}
