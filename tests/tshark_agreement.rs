//! Cross-checks `hbscope replay --format json` against Wireshark's own AMQP
//! dissector and TCP analysis (tshark) on every shipped capture
//! (`captures/*.pcap`).
//!
//! For every connection hbscope reports (AMQP ones only; tshark flows hbscope
//! does not report are ignored), matched to tshark's flows by the client and
//! broker `ip:port` and, when a 4-tuple was reused, by rank among tshark's
//! TCP streams of that 4-tuple (`tcp.stream`: a SYN with a new sequence
//! number starts a new one, as in hbscope):
//!
//! * Connection.Tune-Ok's `heartbeat` (method 10/31, client to broker) equals
//!   `heartbeat.negotiated_s`, and Connection.Tune's (10/30, broker to client)
//!   equals `heartbeat.broker_proposed_s` - wherever tshark decodes them (the
//!   first one when there are several: the broker acts on the first).
//! * Heartbeat frames (`amqp.type == 8`) per direction equal
//!   `directions.*.heartbeats`. Only frames in segments tshark does not call a
//!   retransmission are counted (tshark does not dissect the payload of those
//!   again anyway; hbscope counts frames in new bytes only).
//! * Per direction, the longest silence between two consecutive TCP segments
//!   carrying NEW payload (`tcp.len > 0` and not flagged
//!   `tcp.analysis.retransmission`, `fast_retransmission` or
//!   `spurious_retransmission`) equals `longest_data_silence_s` within 1 ms.
//!
//! Snapshot length: tshark cannot dissect AMQP frames whose bytes were cut by
//! the snaplen (`small-snaplen.pcap`, recorded with `-s 80`: 14 bytes of TCP
//! payload per packet). Its TCP reassembly stops at the first cut segment, so
//! what its AMQP dissector reports after that is not a count of the frames on
//! the wire. A direction in which tshark saw at least one payload-carrying
//! segment cut short (`frame.cap_len < frame.len`) is therefore NOT compared
//! on heartbeat frame counts (both numbers are still printed). Tune/Tune-Ok
//! are compared only where tshark decoded them, which it does not in such a
//! capture. The data silences ARE compared there too: they only need the
//! timestamps, `tcp.len` (from the IP header, not the captured bytes) and
//! tshark's sequence analysis, none of which the snaplen affects.
//!
//! AMQPS (TLS, e.g. `tls12-*.pcap` on port 5671): tshark is not given the key
//! logs, so it sees TLS records and no AMQP frame or Tune; hbscope has no keys
//! either and counts heartbeat-SIZED application records as heartbeats (its
//! documented inference, which also counts e.g. a same-sized protocol-header
//! record), so heartbeat counts are not compared on a connection where tshark
//! finds TLS records. Data silences are compared (plain TCP facts).
//!
//! tshark is required, so the test is `#[ignore]`d (run it with
//! `--include-ignored`, as CI does): without tshark it then fails and says to
//! install it; it never skips silently.
//!
//! Run with `--nocapture` to see the per-capture numbers of both tools.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Tolerance for times, in nanoseconds (1 ms).
const TOLERANCE_NS: i64 = 1_000_000;

const C2B: &str = "client-to-broker";
const B2C: &str = "broker-to-client";

/// The tshark fields read, in this order.
const FIELDS: &[&str] = &[
    "frame.number",
    "tcp.stream",
    "frame.time_epoch",
    "frame.len",
    "frame.cap_len",
    "ip.src",
    "ipv6.src",
    "tcp.srcport",
    "ip.dst",
    "ipv6.dst",
    "tcp.dstport",
    "tcp.len",
    "tcp.analysis.retransmission",
    "tcp.analysis.fast_retransmission",
    "tcp.analysis.spurious_retransmission",
    "amqp.type",
    "amqp.method.class",
    "amqp.method.method",
    "amqp.method.arguments.heartbeat",
    "tls.record.content_type",
];

/// Separator between several occurrences of one field in a packet (the
/// column separator is ",").
const AGGREGATOR: &str = ";";

/// What tshark says about one direction of one TCP connection.
#[derive(Debug, Default)]
struct TsharkFlow {
    /// AMQP heartbeat frames in non-retransmitted segments.
    heartbeats: u64,
    /// Packets whose payload the snaplen cut.
    cut_payload_packets: u64,
    /// TLS records tshark found (AMQPS: encrypted, no AMQP frames to see).
    tls_records: u64,
    /// Timestamp (ns) of the last segment with new payload.
    last_new_data: Option<i64>,
    /// Longest gap (ns) between two segments with new payload, and the frame
    /// numbers that bound it.
    longest_data_silence: Option<(i64, u64, u64)>,
    /// Frame number of the last segment with new payload.
    last_new_data_frame: u64,
    /// Heartbeat arguments of Connection.Tune (10/30) seen in this direction.
    tune: Vec<u16>,
    /// Heartbeat arguments of Connection.Tune-Ok (10/31) seen in this direction.
    tune_ok: Vec<u16>,
}

/// Flows keyed by (sender "ip:port", receiver "ip:port", tshark's TCP stream
/// index: several when the 4-tuple was reused).
type Flows = BTreeMap<(String, String, u64), TsharkFlow>;

fn captures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures")
}

fn captures() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(captures_dir())
        .expect("read captures/")
        .map(|e| e.expect("read captures/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "pcap"))
        .collect();
    v.sort();
    v
}

/// Fails (never skips) when tshark cannot be run.
fn require_tshark() {
    match Command::new("tshark").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`tshark --version` failed ({}): {}\nInstall a working tshark \
             (Debian/Ubuntu: `apt-get install tshark`); CI installs it, this test does not skip.",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "tshark is not installed or not on PATH ({e}).\nInstall it (Debian/Ubuntu: \
             `apt-get install tshark`, Fedora: `dnf install wireshark-cli`, macOS: \
             `brew install wireshark`); CI installs it, this test does not skip."
        ),
    }
}

/// "1795727294.608095000" -> nanoseconds since the epoch, exactly.
fn parse_epoch_ns(s: &str) -> i64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().expect("frame.time_epoch seconds");
    let mut frac = frac.to_owned();
    assert!(frac.len() <= 9, "frame.time_epoch {s:?}: more than ns");
    while frac.len() < 9 {
        frac.push('0');
    }
    let nanos: i64 = frac.parse().expect("frame.time_epoch fraction");
    secs * 1_000_000_000 + nanos
}

/// Several occurrences of one field.
fn occurrences(s: &str) -> Vec<&str> {
    if s.is_empty() {
        Vec::new()
    } else {
        s.split(AGGREGATOR).collect()
    }
}

fn endpoint(v4: &str, v6: &str, port: &str) -> String {
    // The first occurrence is the outer header (ICMP errors quote another).
    let v4 = occurrences(v4).first().copied().unwrap_or("");
    let v6 = occurrences(v6).first().copied().unwrap_or("");
    let port = occurrences(port).first().copied().unwrap_or("");
    if v4.is_empty() {
        format!("[{v6}]:{port}")
    } else {
        format!("{v4}:{port}")
    }
}

fn run_tshark(pcap: &Path) -> Flows {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(pcap)
        .args(["-n", "-d", "tcp.port==5672,amqp"])
        .args(["-o", "tcp.desegment_tcp_streams:TRUE"])
        .args(["-o", "tcp.analyze_sequence_numbers:TRUE"])
        .args(["-Y", "tcp"])
        .args(["-T", "fields", "-E", "separator=,", "-E", "occurrence=a"])
        .arg("-E")
        .arg(format!("aggregator={AGGREGATOR}"));
    for f in FIELDS {
        cmd.args(["-e", f]);
    }
    let out = cmd.output().expect("run tshark");
    assert!(
        out.status.success(),
        "tshark failed on {} ({}): {}",
        pcap.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("tshark output is UTF-8");
    let mut flows = Flows::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let cols: Vec<&str> = line.split(',').collect();
        assert_eq!(
            cols.len(),
            FIELDS.len(),
            "{}: unexpected tshark line {line:?}",
            pcap.display()
        );
        let frame: u64 = cols[0].parse().expect("frame.number");
        let stream: u64 = occurrences(cols[1])
            .first()
            .map_or(0, |s| s.parse().expect("tcp.stream"));
        let cols = &cols[1..];
        let ts = parse_epoch_ns(cols[1]);
        let len: u64 = cols[2].parse().expect("frame.len");
        let cap_len: u64 = cols[3].parse().expect("frame.cap_len");
        let src = endpoint(cols[4], cols[5], cols[6]);
        let dst = endpoint(cols[7], cols[8], cols[9]);
        let tcp_len: u64 = occurrences(cols[10])
            .first()
            .map_or(0, |s| s.parse().expect("tcp.len"));
        let retransmission = !(cols[11].is_empty() && cols[12].is_empty() && cols[13].is_empty());
        let types = occurrences(cols[14]);
        let classes = occurrences(cols[15]);
        let methods = occurrences(cols[16]);
        let hb_args = occurrences(cols[17]);
        let tls_records = occurrences(cols[18]).len() as u64;

        let flow = flows.entry((src, dst, stream)).or_default();
        if tcp_len > 0 && cap_len < len {
            flow.cut_payload_packets += 1;
        }
        flow.tls_records += tls_records;
        if !retransmission {
            flow.heartbeats += types.iter().filter(|t| **t == "8").count() as u64;
        }
        if tcp_len > 0 && !retransmission {
            if let Some(last) = flow.last_new_data {
                let gap = ts - last;
                if flow.longest_data_silence.is_none_or(|(g, _, _)| gap > g) {
                    flow.longest_data_silence = Some((gap, flow.last_new_data_frame, frame));
                }
            }
            flow.last_new_data = Some(ts);
            flow.last_new_data_frame = frame;
        }
        // Only Tune and Tune-Ok carry a heartbeat argument, so the n-th
        // heartbeat value belongs to the n-th Tune/Tune-Ok of the packet.
        let tunes = classes
            .iter()
            .zip(&methods)
            .filter(|(c, m)| **c == "10" && (**m == "30" || **m == "31"));
        for ((_, m), hb) in tunes.zip(&hb_args) {
            let hb: u16 = hb.parse().expect("amqp heartbeat argument");
            if *m == "30" {
                flow.tune.push(hb);
            } else {
                flow.tune_ok.push(hb);
            }
        }
    }
    flows
}

fn run_hbscope(pcap: &Path) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args(["replay", "--format", "json"])
        .arg(pcap)
        .output()
        .expect("run hbscope");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "hbscope on {} ({}) did not print JSON ({e}); stderr: {}",
            pcap.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn secs_to_ns(v: f64) -> i64 {
    #[allow(clippy::cast_possible_truncation)]
    let ns = (v * 1e9).round() as i64;
    ns
}

fn fmt_s(ns: i64) -> String {
    #[allow(clippy::cast_precision_loss)]
    let s = ns as f64 / 1e9;
    format!("{s:.6}")
}

/// Result of checking one capture.
#[derive(Default)]
struct Outcome {
    /// Human table of what was compared.
    table: String,
    /// Disagreements.
    failures: Vec<String>,
    /// Tune/Tune-Ok values compared.
    compared_tunes: usize,
    /// Heartbeat frame counts compared.
    compared_heartbeats: usize,
    /// Longest data silences compared.
    compared_silences: usize,
}

fn check_capture(pcap: &Path) -> Outcome {
    let name = pcap.file_name().unwrap().to_string_lossy().into_owned();
    let report = run_hbscope(pcap);
    let mut o = Outcome::default();
    let conns = report["connections"]
        .as_array()
        .unwrap_or_else(|| panic!("{name}: no connections[] in hbscope's JSON"));
    let _ = writeln!(o.table, "{name}: {} connection(s)", conns.len());
    if conns.is_empty() {
        // Nothing to compare; spare tshark's start-up (~0.3 s of CPU each).
        return o;
    }
    let flows = run_tshark(pcap);
    let empty = TsharkFlow::default();
    // The n-th hbscope connection of a 4-tuple is tshark's n-th stream of it
    // (both list them in capture order).
    let mut rank: BTreeMap<(String, String), usize> = BTreeMap::new();
    for conn in conns {
        let client = conn["client"].as_str().expect("client").to_owned();
        let broker = conn["broker"].as_str().expect("broker").to_owned();
        let who = format!("{name} {client} -> {broker}");
        let n = rank.entry((client.clone(), broker.clone())).or_default();
        let mut streams: Vec<u64> = flows
            .keys()
            .filter(|(a, b, _)| (*a == client && *b == broker) || (*a == broker && *b == client))
            .map(|k| k.2)
            .collect();
        streams.sort_unstable();
        streams.dedup();
        let stream = streams.get(*n).copied().unwrap_or(u64::MAX);
        *n += 1;
        let c2b = flows.get(&(client.clone(), broker.clone(), stream));
        let b2c = flows.get(&(broker.clone(), client.clone(), stream));
        if c2b.is_none() && b2c.is_none() {
            o.failures.push(format!(
                "{who}: hbscope reports it, tshark has no such TCP flow"
            ));
            continue;
        }
        let c2b = c2b.unwrap_or(&empty);
        let b2c = b2c.unwrap_or(&empty);
        let hb = &conn["heartbeat"];
        let encrypted = c2b.tls_records + b2c.tls_records > 0;
        let _ = writeln!(o.table, "  {client} -> {broker}");

        // Tune-Ok / Tune.
        for (label, field, values) in [
            ("Tune-Ok", "negotiated_s", &c2b.tune_ok),
            ("Tune", "broker_proposed_s", &b2c.tune),
        ] {
            let ours = hb[field].as_u64();
            let ours_txt = ours.map_or_else(|| "null".to_owned(), |v| v.to_string());
            match values.as_slice() {
                [] => {
                    let _ = writeln!(
                        o.table,
                        "    {label:<7} heartbeat: tshark not decoded, hbscope {field}={ours_txt} (not compared)"
                    );
                }
                [theirs] => {
                    o.compared_tunes += 1;
                    let ok = ours == Some(u64::from(*theirs));
                    let _ = writeln!(
                        o.table,
                        "    {label:<7} heartbeat: tshark {theirs}, hbscope {field}={ours_txt} {}",
                        if ok { "ok" } else { "MISMATCH" }
                    );
                    if !ok {
                        o.failures.push(format!(
                            "{who}: {label} heartbeat: tshark decodes {theirs}, hbscope heartbeat.{field} = {ours_txt}"
                        ));
                    }
                }
                [theirs, ..] => {
                    // Repeated: the broker acts on the first, and so does hbscope.
                    o.compared_tunes += 1;
                    let ok = ours == Some(u64::from(*theirs));
                    let _ = writeln!(
                        o.table,
                        "    {label:<7} heartbeat: tshark {values:?} (the first decides), hbscope {field}={ours_txt} {}",
                        if ok { "ok" } else { "MISMATCH" }
                    );
                    if !ok {
                        o.failures.push(format!(
                            "{who}: {label} sent {} times ({values:?}): the first decides, hbscope heartbeat.{field} = {ours_txt}",
                            values.len()
                        ));
                    }
                }
            }
        }

        // Per direction.
        for (dir, flow) in [(C2B, c2b), (B2C, b2c)] {
            let d = &conn["directions"][dir];
            if d.is_null() {
                o.failures
                    .push(format!("{who}: hbscope has no directions.{dir}"));
                continue;
            }
            let ours_hb = d["heartbeats"].as_u64().expect("heartbeats");
            let ours_sil = secs_to_ns(d["longest_data_silence_s"].as_f64().expect("silence"));

            // Heartbeat frames.
            let cut = flow.cut_payload_packets;
            if encrypted {
                let _ = writeln!(
                    o.table,
                    "    {dir} heartbeats: tshark {}, hbscope {ours_hb} (not compared: TLS, hbscope counts heartbeat-sized records)",
                    flow.heartbeats
                );
            } else if cut == 0 {
                o.compared_heartbeats += 1;
                let ok = ours_hb == flow.heartbeats;
                let _ = writeln!(
                    o.table,
                    "    {dir} heartbeats: tshark {}, hbscope {ours_hb} {}",
                    flow.heartbeats,
                    if ok { "ok" } else { "MISMATCH" }
                );
                if !ok {
                    o.failures.push(format!(
                        "{who} {dir}: heartbeat frames: tshark counts {} (amqp.type == 8, not in retransmissions), \
                         hbscope directions.{dir}.heartbeats = {ours_hb}",
                        flow.heartbeats
                    ));
                }
            } else {
                let _ = writeln!(
                    o.table,
                    "    {dir} heartbeats: tshark {}, hbscope {ours_hb} (not compared: snaplen cut the payload of {cut} packet(s), tshark cannot dissect past them)",
                    flow.heartbeats
                );
            }

            // Longest silence between new-data segments.
            let (theirs_sil, from, to) = flow.longest_data_silence.unwrap_or((0, 0, 0));
            o.compared_silences += 1;
            let ok = (theirs_sil - ours_sil).abs() <= TOLERANCE_NS;
            let _ = writeln!(
                o.table,
                "    {dir} longest data silence: tshark {} s (frames {from}..{to}), hbscope {} s {}",
                fmt_s(theirs_sil),
                fmt_s(ours_sil),
                if ok { "ok" } else { "MISMATCH" }
            );
            if !ok {
                o.failures.push(format!(
                    "{who} {dir}: longest silence between new-data segments: tshark {} s (between frames {from} and {to}), \
                     hbscope directions.{dir}.longest_data_silence_s = {} s (tolerance 1 ms)",
                    fmt_s(theirs_sil),
                    fmt_s(ours_sil)
                ));
            }
        }
    }
    o
}

#[test]
#[ignore = "needs tshark: run with --include-ignored (CI does)"]
fn hbscope_agrees_with_tshark_on_every_capture() {
    require_tshark();
    let pcaps = captures();
    assert!(!pcaps.is_empty(), "no captures/*.pcap found");
    let outcomes: Vec<Outcome> = std::thread::scope(|s| {
        let handles: Vec<_> = pcaps
            .iter()
            .map(|p| s.spawn(move || check_capture(p)))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("capture check panicked"))
            .collect()
    });
    let mut table = String::new();
    let mut failures = Vec::new();
    let (mut tunes, mut heartbeats, mut silences) = (0, 0, 0);
    for o in outcomes {
        table.push_str(&o.table);
        failures.extend(o.failures);
        tunes += o.compared_tunes;
        heartbeats += o.compared_heartbeats;
        silences += o.compared_silences;
    }
    let compared = tunes + heartbeats + silences;
    println!(
        "{table}\ncompared: {tunes} Tune/Tune-Ok values, {heartbeats} heartbeat counts, {silences} data silences"
    );
    // Guard against a vacuous pass (e.g. a tshark field renamed, nothing parsed).
    assert!(
        tunes > 0 && heartbeats > 0 && silences > 0,
        "too little compared ({tunes} Tune/Tune-Ok, {heartbeats} heartbeat counts, {silences} silences): \
         is tshark's output being parsed?\n{table}"
    );
    assert!(
        failures.is_empty(),
        "hbscope disagrees with tshark ({} disagreement(s) in {compared} comparisons):\n  {}\n\nAll comparisons:\n{table}",
        failures.len(),
        failures.join("\n  ")
    );
}
