//! Captures whose snapshot length cut the AMQP frames: `tcpdump -s 60` (or
//! 54, or 72 with TCP timestamps) keeps at most 6 bytes of TCP payload, too
//! few for any frame. Built from shipped captures cut in memory exactly as
//! `editcap -F pcap -s N` cuts them (checked against editcap itself by the
//! ignored test). The connections must still be listed from their TCP
//! streams on the AMQP port, with the original's gaps and verdicts when the
//! heartbeat is given or can be inferred from 8-byte segments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod pcapedit;

use std::path::Path;

use hbscope::engine::EngineConfig;
use hbscope::report;
use hbscope::run::replay;
use pcapedit::{shipped, temp_dir, Pcap};
use serde_json::Value;

/// Ethernet + IPv4 + TCP without options (54), with the fixed TCP header
/// and 6 bytes more (60), with timestamps and no payload (66), with
/// timestamps and 6 payload bytes (72).
const SNAPLENS: [u32; 4] = [54, 60, 66, 72];

fn json_with(path: &Path, heartbeat: Option<u16>, threads: usize) -> Value {
    let mut config = EngineConfig::default();
    config.analysis.heartbeat_override = heartbeat;
    let r = replay::replay_threads(path, config, threads, &mut |_| {})
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .report();
    serde_json::from_str(&report::to_json(&r).unwrap()).unwrap()
}

fn json(path: &Path, heartbeat: Option<u16>) -> Value {
    json_with(path, heartbeat, 1)
}

fn warning<'a>(v: &'a Value, code: &str) -> Option<&'a Value> {
    v["capture"]["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["code"] == code)
}

/// A gap: direction, cause, consequence, silence in ns.
type GapFacts = (String, String, String, i64);

/// Per connection: client, and its gaps.
fn verdicts(v: &Value) -> Vec<(String, Vec<GapFacts>)> {
    v["connections"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let gaps = c["gaps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| {
                    let s = |k: &str| g[k].as_str().unwrap().to_owned();
                    #[allow(clippy::cast_possible_truncation)]
                    let ns = (g["silence_s"].as_f64().unwrap() * 1e9).round() as i64;
                    (s("direction"), s("cause"), s("consequence"), ns)
                })
                .collect();
            (c["client"].as_str().unwrap().to_owned(), gaps)
        })
        .collect()
}

fn cut(name: &str, snaplen: u32, dir: &Path) -> std::path::PathBuf {
    let p = dir.join(format!("{name}-s{snaplen}.pcap"));
    Pcap::shipped(name).cut(snaplen).write(&p);
    p
}

/// With `--heartbeat`, a capture cut below any frame gives the original's
/// connections, gaps, causes, consequences and silences (to the nanosecond:
/// they are measured from packet times and IP lengths), flags each
/// connection `frames_cut` and says so in a `frames-cut` warning.
#[test]
fn cut_frames_with_heartbeat_give_the_original_verdicts() {
    let dir = temp_dir("snaplen-hb");
    for (name, hb) in [("client-sigstop", 2), ("nova-api-eventlet", 4)] {
        let orig = json(&shipped(name), None);
        assert!(warning(&orig, "frames-cut").is_none(), "{name}");
        assert!(orig["connections"][0].get("frames_cut").is_none(), "{name}");
        for snaplen in SNAPLENS {
            let v = json(&cut(name, snaplen, &dir), Some(hb));
            let what = format!("{name} cut to {snaplen} bytes, --heartbeat {hb}");
            assert_eq!(verdicts(&v), verdicts(&orig), "{what}");
            let conns = v["connections"].as_array().unwrap();
            for c in conns {
                assert_eq!(c["frames_cut"], true, "{what}");
                assert_eq!(c["heartbeat"]["source"], "override", "{what}");
                assert!(
                    c["unavailable"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .any(|u| u == "close_reply_codes"),
                    "{what}"
                );
            }
            let w = warning(&v, "frames-cut").unwrap_or_else(|| panic!("{what}: no warning"));
            assert_eq!(w["count"].as_u64(), Some(conns.len() as u64), "{what}");
            assert!(warning(&v, "decode-error").is_none(), "{what}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// Without `--heartbeat`: the SIGSTOPped client's 2 s is inferred from the
/// 1 s period of 8-byte segments and the stall found as in the original;
/// the founding case's first connection infers 4 s from the broker's
/// heartbeats, and its second connection (never idle long enough) says
/// unknown rather than guessing.
#[test]
fn cut_frames_without_heartbeat_infer_it_or_say_unknown() {
    let dir = temp_dir("snaplen-infer");
    for snaplen in SNAPLENS {
        let v = json(&cut("client-sigstop", snaplen, &dir), None);
        let orig = json(&shipped("client-sigstop"), None);
        assert_eq!(verdicts(&v), verdicts(&orig), "client-sigstop -s {snaplen}");
        let hb = &v["connections"][0]["heartbeat"];
        assert_eq!(hb["source"], "inferred", "client-sigstop -s {snaplen}");
        assert_eq!(hb["value_s"], 2, "client-sigstop -s {snaplen}");

        let v = json(&cut("nova-api-eventlet", snaplen, &dir), None);
        let c = v["connections"].as_array().unwrap();
        assert_eq!(c.len(), 2, "nova -s {snaplen}");
        assert_eq!(c[0]["heartbeat"]["source"], "inferred");
        assert_eq!(c[0]["heartbeat"]["value_s"], 4);
        let g = &c[0]["gaps"][0];
        assert_eq!(
            (&g["direction"], &g["cause"], &g["consequence"]),
            (
                &Value::from("client-to-broker"),
                &Value::from("client-stall"),
                &Value::from("broker-reset")
            ),
            "nova -s {snaplen}"
        );
        assert!(g["wakeup"].is_object(), "nova -s {snaplen}: {g}");
        assert_eq!(c[1]["heartbeat"]["source"], "unknown", "nova -s {snaplen}");
        assert!(c[1]["heartbeat"]["value_s"].is_null());
        // The text report says where the value came from, or that it is unknown.
        let text = report::to_text(
            &replay::replay(
                &dir.join(format!("nova-api-eventlet-s{snaplen}.pcap")),
                EngineConfig::default(),
                &mut |_| {},
            )
            .unwrap()
            .report(),
        );
        assert!(
            text.contains("4 s (from the period of 8-byte segments: frames cut by the snapshot length) [inferred]"),
            "{text}"
        );
        assert!(
            text.contains("heartbeat: unknown (frames cut by the snapshot length"),
            "{text}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// What is not AMQP 0-9-1 stays unlisted when cut: an HTTP request and a
/// TLS ClientHello are not 8-byte protocol headers, and RabbitMQ answers an
/// AMQP 1.0 header with its own header (a refusal), not Connection.Start.
#[test]
fn cut_streams_that_are_not_amqp_are_not_listed() {
    let dir = temp_dir("snaplen-not");
    for name in ["http-on-5672", "amqp10-on-5672", "tls-on-5672", "non-amqp"] {
        for snaplen in SNAPLENS {
            let v = json(&cut(name, snaplen, &dir), None);
            assert_eq!(
                v["connections"].as_array().unwrap().len(),
                0,
                "{name} -s {snaplen}"
            );
            assert!(warning(&v, "frames-cut").is_none(), "{name} -s {snaplen}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// AMQPS with records cut before their 5-byte header: each segment is one
/// record, the heartbeat record size is learnt from the dominant small one,
/// and the TLS client stall is found as in the full capture.
#[test]
fn cut_tls_records_keep_the_client_stall() {
    let dir = temp_dir("snaplen-tls");
    for name in ["tls12-client-stall", "tls13-client-stall"] {
        let orig = json(&shipped(name), None);
        for snaplen in [54, 60, 66] {
            let v = json(&cut(name, snaplen, &dir), None);
            assert_eq!(verdicts(&v), verdicts(&orig), "{name} -s {snaplen}");
            assert_eq!(v["connections"][0]["frames_cut"], true);
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A snapshot length that keeps a heartbeat frame whole (80: 14 payload
/// bytes) reads frames as before: nothing is counted by segment length.
#[test]
fn frames_that_fit_are_read_not_counted_by_length() {
    let v = json(&shipped("small-snaplen"), None);
    assert!(warning(&v, "frames-cut").is_none());
    for c in v["connections"].as_array().unwrap() {
        assert!(c.get("frames_cut").is_none(), "{c}");
    }
}

/// The report of a cut capture is the same for any thread count.
#[test]
fn cut_captures_give_the_same_report_with_any_thread_count() {
    let dir = temp_dir("snaplen-threads");
    for name in ["nova-api-eventlet", "many-busy-one-stalled"] {
        let p = cut(name, 60, &dir);
        let one = json_with(&p, None, 1);
        for n in [2, 3] {
            assert_eq!(json_with(&p, None, n), one, "{name} -s 60, {n} threads");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// The in-memory cut is byte for byte what `editcap -F pcap -s N` writes,
/// and editcap's default pcapng output gives the same report.
#[test]
#[ignore = "needs editcap (wireshark-common / tshark)"]
fn the_cut_is_editcaps() {
    let dir = temp_dir("snaplen-editcap");
    for name in ["client-sigstop", "nova-api-eventlet"] {
        for snaplen in [54, 60, 72] {
            let ours = cut(name, snaplen, &dir);
            let theirs = dir.join(format!("{name}-editcap-s{snaplen}.pcap"));
            let ng = dir.join(format!("{name}-editcap-s{snaplen}.pcapng"));
            for (format, out) in [(&["-F", "pcap"][..], &theirs), (&[][..], &ng)] {
                let st = std::process::Command::new("editcap")
                    .args(format)
                    .args(["-s", &snaplen.to_string()])
                    .arg(shipped(name))
                    .arg(out)
                    .status()
                    .expect("editcap");
                assert!(st.success());
            }
            assert_eq!(
                std::fs::read(&ours).unwrap(),
                std::fs::read(&theirs).unwrap(),
                "{name} -s {snaplen}"
            );
            let strip = |mut v: Value| {
                v["capture"]["source"] = Value::Null;
                v["capture"]["format"] = Value::Null;
                v["connections"].take()
            };
            assert_eq!(
                strip(json(&ng, None)),
                strip(json(&ours, None)),
                "{name} -s {snaplen} pcapng"
            );
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}
