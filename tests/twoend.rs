//! Two-ended replay on real pairs of captures (captures/twoend/, recorded by
//! captures/scripts/scenario-twoend.sh: the same pika connection captured in
//! the client's namespace and on the broker host at once, with losses made
//! in a router namespace between the two capture points).
//!
//! Checks, per pair: each file's single-capture verdicts, one merged verdict
//! per silence with the expected cause and consequence, the side detection
//! (in both argument orders), and the clock-offset estimate on a copy whose
//! timestamps were shifted by a known amount. Then the error cases.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use hbscope::engine::EngineConfig;
use hbscope::report::Report;
use hbscope::run::twoend::{self, MergeError};
use serde_json::Value;

const PAIRS: [&str; 3] = [
    "twoend-lost-c2b",
    "twoend-lost-b2c",
    "twoend-client-sigstop",
];

/// The offset estimate must be within this of the shift applied (the pcaps
/// have microsecond timestamps; the measured uncertainty is 2-4 us).
const OFFSET_TOLERANCE_NS: i64 = 20_000;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/twoend")
}

fn file(name: &str, side: &str) -> PathBuf {
    dir().join(format!("{name}.{side}.pcap"))
}

fn expect(name: &str) -> Value {
    serde_json::from_str(
        &std::fs::read_to_string(dir().join(format!("{name}.expect.json"))).unwrap(),
    )
    .unwrap()
}

fn two(a: &Path, b: &Path) -> Report {
    twoend::replay_two(a, b, &EngineConfig::default()).expect("two-ended replay")
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hbscope-twoend-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Copies a classic pcap file with every timestamp moved by `shift_ns`
/// (the stand-in for a capture host whose clock is off).
fn shifted_copy(src: &Path, dst: &Path, shift_ns: i64) {
    let b = std::fs::read(src).unwrap();
    let magic = u32::from_le_bytes(b[0..4].try_into().unwrap());
    let per_sec: i64 = match magic {
        0xa1b2_c3d4 => 1_000_000,
        0xa1b2_3c4d => 1_000_000_000,
        m => panic!(
            "{}: not a little-endian classic pcap (magic {m:#x})",
            src.display()
        ),
    };
    let unit = 1_000_000_000 / per_sec;
    let mut out = b[..24].to_vec();
    let mut i = 24;
    while i + 16 <= b.len() {
        let sec = i64::from(u32::from_le_bytes(b[i..i + 4].try_into().unwrap()));
        let frac = i64::from(u32::from_le_bytes(b[i + 4..i + 8].try_into().unwrap()));
        let incl = u32::from_le_bytes(b[i + 8..i + 12].try_into().unwrap()) as usize;
        let t = (sec * per_sec + frac) * unit + shift_ns;
        let t = t.div_euclid(unit);
        out.extend_from_slice(&u32::try_from(t.div_euclid(per_sec)).unwrap().to_le_bytes());
        out.extend_from_slice(&u32::try_from(t.rem_euclid(per_sec)).unwrap().to_le_bytes());
        out.extend_from_slice(&b[i + 8..i + 16 + incl]);
        i += 16 + incl;
    }
    std::fs::write(dst, out).unwrap();
}

/// Writes the packets of two classic pcap files (same link type and
/// timestamp unit) into one, in time order, like `mergecap`.
fn merged_file(a: &Path, b: &Path, dst: &Path) {
    let mut recs: Vec<(u64, Vec<u8>)> = Vec::new();
    let mut header = Vec::new();
    for src in [a, b] {
        let d = std::fs::read(src).unwrap();
        header = d[..24].to_vec();
        let mut i = 24;
        while i + 16 <= d.len() {
            let sec = u64::from(u32::from_le_bytes(d[i..i + 4].try_into().unwrap()));
            let frac = u64::from(u32::from_le_bytes(d[i + 4..i + 8].try_into().unwrap()));
            let incl = u32::from_le_bytes(d[i + 8..i + 12].try_into().unwrap()) as usize;
            recs.push((sec * 1_000_000_000 + frac, d[i..i + 16 + incl].to_vec()));
            i += 16 + incl;
        }
    }
    recs.sort_by_key(|r| r.0);
    let mut out = header;
    for (_, r) in recs {
        out.extend_from_slice(&r);
    }
    std::fs::write(dst, out).unwrap();
}

type Verdicts = Vec<(String, String, String)>;

fn merged_verdicts(r: &Report) -> Verdicts {
    let m = r.merge.as_ref().expect("merge object");
    let mut v: Verdicts = m
        .connections
        .iter()
        .flat_map(|c| c.gaps.iter())
        .map(|g| {
            (
                g.direction.to_string(),
                g.merged_cause.to_string(),
                g.consequence.to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn expected_merged(exp: &Value) -> Verdicts {
    let mut v: Verdicts = exp["merged"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["direction"].as_str().unwrap().to_owned(),
                g["merged_cause"].as_str().unwrap().to_owned(),
                g["consequence"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    v.sort();
    v
}

fn side_of(r: &Report, path: &Path) -> String {
    let m = r.merge.as_ref().unwrap();
    let f = path.display().to_string();
    m.sources
        .iter()
        .find(|s| s.file == f)
        .unwrap()
        .side
        .to_string()
}

/// Every single-capture gap of both files is part of exactly one merged
/// verdict, and each merged verdict stands for at least one of them.
fn one_merged_verdict_per_gap(r: &Report) {
    let m = r.merge.as_ref().unwrap();
    let mut seen: BTreeMap<(String, usize), usize> = BTreeMap::new();
    for c in &m.connections {
        for g in &c.gaps {
            assert!(
                !g.single.is_empty(),
                "merged gap without a single-capture gap"
            );
            for s in &g.single {
                *seen.entry((s.file.clone(), s.gap)).or_insert(0) += 1;
            }
        }
    }
    let total: usize = m.sources.iter().map(|s| s.gaps).sum();
    assert_eq!(
        seen.len(),
        total,
        "every single-capture gap is merged: {seen:?}"
    );
    assert!(
        seen.values().all(|n| *n == 1),
        "a gap is in two merged verdicts: {seen:?}"
    );
}

fn check_pair(name: &str) {
    let exp = expect(name);
    let (c, b) = (file(name, "client"), file(name, "broker"));
    // Single-capture verdicts, as each file alone gives them.
    for side in ["client", "broker"] {
        let one =
            hbscope::run::replay::replay(&file(name, side), EngineConfig::default(), &mut |_| {})
                .unwrap()
                .report();
        let got: Vec<(&str, &str)> = one.connections[0]
            .gaps
            .iter()
            .map(|g| (g.direction.as_str(), g.cause.as_str()))
            .collect();
        let want: Vec<(&str, &str)> = exp["single"][side]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| {
                (
                    g["direction"].as_str().unwrap(),
                    g["cause"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(got, want, "{name}.{side}: single-capture verdicts");
    }
    // Both argument orders: the same merged verdicts and the same sides.
    for (first, second) in [(&c, &b), (&b, &c)] {
        let r = two(first, second);
        let m = r.merge.as_ref().unwrap();
        assert_eq!(m.summary.matched_connections, 1, "{name}");
        assert!(m.warnings.is_empty(), "{name}: {:?}", m.warnings);
        assert_eq!(
            side_of(&r, &c),
            "client",
            "{name}: client-side file detected"
        );
        assert_eq!(
            side_of(&r, &b),
            "broker",
            "{name}: broker-side file detected"
        );
        assert_eq!(
            merged_verdicts(&r),
            expected_merged(&exp),
            "{name}: merged verdicts"
        );
        // Each merged silence stands for the gaps each file flagged in that direction.
        for g in m.connections.iter().flat_map(|c| c.gaps.iter()) {
            let flagged_by = ["client", "broker"]
                .iter()
                .filter(|s| {
                    exp["single"][**s]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|x| x["direction"] == g.direction.as_str())
                })
                .count();
            assert_eq!(g.single.len(), flagged_by, "{name}: {:?}", g.single);
        }
        one_merged_verdict_per_gap(&r);
        // The same tcpdump clock at both ends: the offset is ~0.
        let off = &m.clock_offset;
        assert!(off.estimate_s.abs() < 20e-6, "{name}: offset {off:?}");
        assert!(off.samples_client_to_broker >= 10 && off.samples_broker_to_client >= 10);
        // The first file's own gaps carry their merged cause.
        for g in r.connections.iter().flat_map(|c| c.gaps.iter()) {
            assert!(g.merged_cause.is_some(), "{name}: gap without merged_cause");
        }
    }
}

#[test]
fn lost_client_to_broker() {
    check_pair("twoend-lost-c2b");
}

#[test]
fn lost_broker_to_client() {
    check_pair("twoend-lost-b2c");
}

/// Only the broker side flags a silence (the client sent every second); the
/// connection survives.
#[test]
fn brief_loss_seen_by_one_side_only() {
    check_pair("twoend-lost-c2b-brief");
}

#[test]
fn client_sigstop_confirmed_from_both_ends() {
    check_pair("twoend-client-sigstop");
}

/// The broker host's clock 3.7 s ahead (and, the other way round, the client
/// file 3.7 s behind): the estimate finds the shift within
/// [`OFFSET_TOLERANCE_NS`], the bounds contain it, verdicts do not change.
#[test]
fn offset_estimate_on_shifted_copies() {
    const SHIFT_NS: i64 = 3_700_000_000;
    let d = scratch("shift");
    for name in PAIRS {
        let (c, b) = (file(name, "client"), file(name, "broker"));
        let plain = merged_verdicts(&two(&c, &b));
        let b_ahead = d.join(format!("{name}.broker+3.7.pcap"));
        shifted_copy(&b, &b_ahead, SHIFT_NS);
        let c_behind = d.join(format!("{name}.client-3.7.pcap"));
        shifted_copy(&c, &c_behind, -SHIFT_NS);
        for (first, second, want_ns) in [
            (&c, &b_ahead, SHIFT_NS),
            (&b_ahead, &c, -SHIFT_NS),
            (&c_behind, &b, SHIFT_NS),
        ] {
            let r = two(first, second);
            let off = &r.merge.as_ref().unwrap().clock_offset;
            #[allow(clippy::cast_possible_truncation)]
            let est_ns = (off.estimate_s * 1e9).round() as i64;
            assert!(
                (est_ns - want_ns).abs() <= OFFSET_TOLERANCE_NS,
                "{name}: estimate {est_ns} ns, shift {want_ns} ns ({off:?})"
            );
            let (lo, hi) = (off.low_s.unwrap(), off.high_s.unwrap());
            #[allow(clippy::cast_precision_loss)]
            let want_s = want_ns as f64 / 1e9;
            // 1 us: both captures round to whole microseconds.
            assert!(
                lo - 1e-6 <= want_s && want_s <= hi + 1e-6,
                "{name}: {off:?}"
            );
            assert!(off.uncertainty_s.unwrap() < 20e-6, "{name}: {off:?}");
            assert_eq!(
                merged_verdicts(&r),
                plain,
                "{name}: verdicts change with the shift"
            );
            assert_eq!(side_of(&r, second).as_str() == "client", second == &c);
        }
    }
    std::fs::remove_dir_all(&d).ok();
}

/// Two captures at the same point (a copy of a loopback capture shifted by
/// 3.7 s): the offset is exact, but nothing tells the sides apart; the
/// report says so instead of guessing silently.
#[test]
fn same_capture_point_gives_unknown_sides() {
    let d = scratch("samepoint");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/healthy-busy.pcap");
    let shifted = d.join("healthy-busy+3.7.pcap");
    shifted_copy(&src, &shifted, 3_700_000_000);
    let r = two(&src, &shifted);
    let m = r.merge.as_ref().unwrap();
    assert_eq!(m.summary.matched_connections, 4);
    assert!(
        (m.clock_offset.estimate_s - 3.7).abs() < 1e-9,
        "{:?}",
        m.clock_offset
    );
    assert!(m.sources.iter().all(|s| s.side.as_str() == "unknown"));
    assert!(
        m.warnings
            .iter()
            .any(|w| w.contains("could not tell which capture is at which end")),
        "{:?}",
        m.warnings
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn same_file_twice_is_refused() {
    let c = file("twoend-lost-c2b", "client");
    let e = twoend::replay_two(&c, &c, &EngineConfig::default())
        .err()
        .unwrap();
    assert!(matches!(e, MergeError::SameFile(_)), "{e}");
    assert!(e.to_string().contains("was given twice"), "{e}");
    // A copy under another name: same packets, same times.
    let d = scratch("copy");
    let copy = d.join("copy.pcap");
    std::fs::copy(&c, &copy).unwrap();
    let e = twoend::replay_two(&c, &copy, &EngineConfig::default())
        .err()
        .unwrap();
    assert!(matches!(e, MergeError::Identical { .. }), "{e}");
    assert!(
        e.to_string().contains("same packets at the same times"),
        "{e}"
    );
    std::fs::remove_dir_all(&d).ok();
}

#[test]
fn files_without_a_common_connection_are_refused() {
    let a = file("twoend-lost-c2b", "client");
    let b = file("twoend-client-sigstop", "broker");
    let e = twoend::replay_two(&a, &b, &EngineConfig::default())
        .err()
        .unwrap();
    let msg = e.to_string();
    assert!(matches!(e, MergeError::NoCommonConnection { .. }), "{msg}");
    assert!(
        msg.contains("no AMQP connection appears in both captures"),
        "{msg}"
    );
    // Both files' connections are named so the user sees why.
    assert!(
        msg.contains("10.78.1.2:53528") && msg.contains("10.78.1.2:35234"),
        "{msg}"
    );
}

/// A broker-side file holding one more connection than the client-side one:
/// the common one is merged as usual, the other is listed as unmatched.
#[test]
fn unmatched_connections_are_listed_per_file() {
    let d = scratch("unmatched");
    let both = d.join("broker-two-connections.pcap");
    merged_file(
        &file("twoend-client-sigstop", "broker"),
        &file("twoend-lost-c2b", "broker"),
        &both,
    );
    let c = file("twoend-lost-c2b", "client");
    let r = two(&c, &both);
    let m = r.merge.as_ref().unwrap();
    assert_eq!(m.summary.matched_connections, 1);
    assert_eq!(
        merged_verdicts(&r),
        expected_merged(&expect("twoend-lost-c2b"))
    );
    assert!(m.sources[0].unmatched.is_empty());
    let um = &m.sources[1].unmatched;
    assert_eq!(um.len(), 1, "{um:?}");
    assert_eq!(um[0].client, "10.78.1.2:35234");
    assert_eq!(um[0].gaps, 1);
    let text = hbscope::report::twoend_text(&r);
    assert!(
        text.contains("only in ") && text.contains("10.78.1.2:35234"),
        "{text}"
    );
    std::fs::remove_dir_all(&d).ok();
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hbscope"))
}

#[test]
fn cli_two_files() {
    let (c, b) = (
        file("twoend-lost-c2b", "client"),
        file("twoend-lost-c2b", "broker"),
    );
    let o = bin()
        .arg("replay")
        .arg("--client-side")
        .arg(&c)
        .arg("--broker-side")
        .arg(&b)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("merged cause: lost-in-network"), "{text}");
    assert!(text.contains("client side: "), "{text}");
    let o = bin()
        .args(["replay", "--format", "json", "--fail-on-gap"])
        .arg("--client-side")
        .arg(&c)
        .arg("--broker-side")
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(j["schema_version"], 1);
    assert_eq!(
        j["merge"]["summary"]["gaps_by_merged_cause"]["lost-in-network"],
        2
    );
    // HTML, Markdown and the summary carry the merged verdicts too.
    let render = |args: &[&str]| -> String {
        let o = bin()
            .arg("replay")
            .args(args)
            .arg("--client-side")
            .arg(&c)
            .arg("--broker-side")
            .arg(&b)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let html = render(&["--format", "html"]);
    assert!(html.contains("Two-ended verdicts"), "{html}");
    assert!(html.contains("lost-in-network"), "{html}");
    assert!(
        html.contains("two-ended verdict <b>lost-in-network</b>"),
        "{html}"
    );
    let md = render(&["--format", "markdown"]);
    assert!(md.contains("### Two-ended verdicts"), "{md}");
    assert!(md.contains("**lost-in-network**"), "{md}");
    let summary = render(&["--summary"]);
    assert!(
        summary.contains("two-ended: client side ") && summary.contains("lost-in-network 2"),
        "{summary}"
    );
    // The TUI is single-capture: said plainly, exit 2.
    let o = bin()
        .args(["replay", "--format", "tui", "--client-side"])
        .arg(&c)
        .arg("--broker-side")
        .arg(&b)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not supported with two-ended replay"), "{err}");
    // Plain files are parts of one capture: two ends given so are refused,
    // and the message names the flags.
    let o = bin().arg("replay").arg(&c).arg(&b).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--client-side") && err.contains("not parts of one capture"),
        "{err}"
    );
    let o = bin()
        .args(["replay", "--client-side"])
        .arg(&c)
        .arg("--broker-side")
        .arg(&b)
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("was given twice"));
    let o = bin()
        .args(["replay", "--client-side"])
        .arg(&c)
        .arg("--broker-side")
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("was given twice"));
    // One side alone is refused by the parser.
    let o = bin()
        .args(["replay", "--client-side"])
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
}

/// The merged report of one pair, JSON and text, with paths made relative.
#[test]
fn merged_report_snapshots() {
    let (c, b) = (
        file("twoend-lost-c2b", "client"),
        file("twoend-lost-c2b", "broker"),
    );
    let r = two(&c, &b);
    let prefix = format!("{}/", dir().display());
    let json = serde_json::to_string_pretty(&r)
        .unwrap()
        .replace(&prefix, "captures/twoend/");
    insta::assert_snapshot!("twoend-lost-c2b-json", json);
    let text = hbscope::report::twoend_text(&r).replace(&prefix, "captures/twoend/");
    insta::assert_snapshot!("twoend-lost-c2b-text", text);
}

/// One side's capture with segments in IP fragments (the broker side of
/// twoend-client-sigstop through `captures/scripts/fragment.py v4`: the
/// protocol header, Connection.Start, Tune-Ok and every other heartbeat in
/// 16-byte fragments): the segment log puts them back together as the
/// engine does, so the merge (clock offset, its samples, verdicts, the
/// broker side's packet counts in the evidence) is the unfragmented one's.
/// Before, the fragments were missing from the log: 15 clock samples
/// instead of 20 and "3 packets from broker" instead of 6.
#[test]
fn fragmented_side_merges_as_the_original() {
    let name = "twoend-client-sigstop";
    let frag = dir().join("fragmented").join(format!("{name}.broker.pcap"));
    let merged = |broker: &Path| {
        let r = two(&file(name, "client"), broker);
        let text = serde_json::to_string(&r.merge.expect("a merge")).unwrap();
        let text = text
            .replace(&frag.display().to_string(), "BROKER")
            .replace(&file(name, "broker").display().to_string(), "BROKER");
        let mut v: Value = serde_json::from_str(&text).unwrap();
        // The fragmented file has more packets; nothing else differs.
        v["sources"][1]["packets"] = Value::Null;
        v
    };
    let original = merged(&file(name, "broker"));
    let fragmented = merged(&frag);
    assert_eq!(original["clock_offset"]["samples_broker_to_client"], 20);
    assert_eq!(fragmented, original);
}
