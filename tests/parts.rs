//! Several files of one capture point read as one capture
//! (`hbscope replay F1 F2 ... Fn`), and two-ended replay with several parts
//! per side (`--client-side`, `--broker-side`).
//!
//! The parts are made here from shipped captures: overlapping ranges of
//! packets, written as classic pcap, pcapng and raw-IP pcap, given in
//! shuffled order; the report must be the whole capture's (but for the
//! source names).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use hbscope::engine::EngineConfig;
use hbscope::run::parts::{self, PartsError};
use hbscope::run::{replay, twoend};
use serde_json::Value;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

fn scratch(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hbscope-parts-{}-{tag}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A classic little-endian pcap file: header and records
/// (seconds, fraction, data, original length).
struct Pcap {
    header: Vec<u8>,
    recs: Vec<(u32, u32, Vec<u8>, u32)>,
}

fn read_pcap(path: &Path) -> Pcap {
    let b = std::fs::read(path).unwrap();
    assert_eq!(&b[0..4], &[0xd4, 0xc3, 0xb2, 0xa1], "µs little-endian pcap");
    let word = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().unwrap());
    let mut recs = Vec::new();
    let mut off = 24;
    while off < b.len() {
        let (s, f, cl, ol) = (word(off), word(off + 4), word(off + 8), word(off + 12));
        let data = b[off + 16..off + 16 + cl as usize].to_vec();
        recs.push((s, f, data, ol));
        off += 16 + cl as usize;
    }
    Pcap {
        header: b[..24].to_vec(),
        recs,
    }
}

/// Records `range` of `p` as a classic pcap file.
fn write_pcap(p: &Pcap, range: std::ops::Range<usize>, out: &Path) {
    let mut b = p.header.clone();
    for (s, f, data, ol) in &p.recs[range] {
        for w in [*s, *f, data.len() as u32, *ol] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(data);
    }
    std::fs::write(out, b).unwrap();
}

/// Records `range` of an Ethernet pcap as raw IP (LINKTYPE_RAW, 101).
fn write_raw_ip(p: &Pcap, range: std::ops::Range<usize>, out: &Path) {
    let mut b = p.header[..20].to_vec();
    b.extend_from_slice(&101u32.to_le_bytes());
    for (s, f, data, ol) in &p.recs[range] {
        let ip = &data[14..];
        for w in [*s, *f, ip.len() as u32, *ol - 14] {
            b.extend_from_slice(&w.to_le_bytes());
        }
        b.extend_from_slice(ip);
    }
    std::fs::write(out, b).unwrap();
}

/// Records `range` of an Ethernet pcap as pcapng (one interface, µs).
fn write_pcapng(p: &Pcap, range: std::ops::Range<usize>, out: &Path) {
    fn block(b: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let len = 12 + body.len().next_multiple_of(4);
        b.extend_from_slice(&kind.to_le_bytes());
        b.extend_from_slice(&(len as u32).to_le_bytes());
        b.extend_from_slice(body);
        b.resize(b.len() + (body.len().next_multiple_of(4) - body.len()), 0);
        b.extend_from_slice(&(len as u32).to_le_bytes());
    }
    let mut b = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&1u16.to_le_bytes());
    shb.extend_from_slice(&0u16.to_le_bytes());
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    block(&mut b, 0x0a0d_0d0a, &shb);
    let mut idb = 1u16.to_le_bytes().to_vec();
    idb.extend_from_slice(&0u16.to_le_bytes());
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    block(&mut b, 1, &idb);
    for (s, f, data, ol) in &p.recs[range] {
        let t = u64::from(*s) * 1_000_000 + u64::from(*f);
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((t >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(t as u32).to_le_bytes());
        epb.extend_from_slice(&(data.len() as u32).to_le_bytes());
        epb.extend_from_slice(&ol.to_le_bytes());
        epb.extend_from_slice(data);
        block(&mut b, 6, &epb);
    }
    std::fs::write(out, b).unwrap();
}

/// A report as JSON without the source name.
fn without_source(mut v: Value) -> Value {
    v["capture"].as_object_mut().unwrap().remove("source");
    v
}

fn whole(path: &Path) -> Value {
    let r = replay::replay(path, EngineConfig::default(), &mut |_| {}).unwrap();
    without_source(serde_json::to_value(r.report()).unwrap())
}

fn merged(paths: &[PathBuf]) -> Value {
    let r = parts::replay_parts(paths, EngineConfig::default(), &mut |_, _| {}).unwrap();
    without_source(serde_json::to_value(r.report()).unwrap())
}

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hbscope"))
}

/// Three overlapping parts of the founding case (pcap, pcapng, raw IP)
/// in shuffled order: the whole capture's report, one connection that
/// continues across the parts, no duplicate warnings.
#[test]
fn shuffled_overlapping_parts_give_the_whole_report() {
    let src = capture("nova-api-eventlet.pcap");
    let p = read_pcap(&src);
    let n = p.recs.len();
    assert!(n > 60);
    let d = scratch("nova");
    let (a, b, c) = (d.join("a.pcap"), d.join("b.pcapng"), d.join("c.pcap"));
    write_pcap(&p, 0..40, &a);
    write_pcapng(&p, 29..70, &b);
    write_raw_ip(&p, 70..n, &c);
    let mut want = whole(&src);
    // Raw IP records are 14 bytes shorter on the "wire" than Ethernet ones.
    let raw_packets = (n - 70) as u64;
    let wire = want["capture"]["wire_bytes"].as_u64().unwrap();
    want["capture"]["wire_bytes"] = (wire - 14 * raw_packets).into();
    for order in [
        [c.clone(), b.clone(), a.clone()],
        [b.clone(), a.clone(), c.clone()],
    ] {
        let got = merged(&order);
        assert_eq!(got, want, "{order:?}");
    }
    // The CLI says the same, and names every part as the source.
    let o = bin()
        .args(["replay", "--format", "json"])
        .args([&b, &c, &a])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let source = j["capture"]["source"].as_str().unwrap();
    assert!(
        source.contains("b.pcapng + ") && source.ends_with("a.pcap"),
        "{source}"
    );
    assert_eq!(without_source(j), want);
    std::fs::remove_dir_all(&d).ok();
}

/// The brief's case: three parts, one gzipped, one zstd-compressed (a
/// pcapng), in shuffled order, give the whole capture's report; a
/// compressed capture on stdin reads as the file.
#[test]
fn compressed_parts_give_the_whole_report() {
    use std::io::Write;
    let src = capture("nova-api-eventlet.pcap");
    let p = read_pcap(&src);
    let n = p.recs.len();
    let d = scratch("compressed");
    let (a, b, c) = (d.join("a.pcap"), d.join("b.pcapng"), d.join("c.pcap"));
    write_pcap(&p, 0..30, &a);
    write_pcapng(&p, 30..60, &b);
    write_pcap(&p, 60..n, &c);
    let gz = d.join("a.pcap.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&std::fs::read(&a).unwrap()).unwrap();
    std::fs::write(&gz, enc.finish().unwrap()).unwrap();
    let zst = d.join("b.pcapng.zst");
    std::fs::write(
        &zst,
        zstd::encode_all(&std::fs::read(&b).unwrap()[..], 3).unwrap(),
    )
    .unwrap();
    let want = whole(&src);
    assert_eq!(merged(&[c.clone(), zst.clone(), gz.clone()]), want);
    // A whole capture gzipped, read from stdin.
    let whole_gz = d.join("whole.pcap.zst");
    std::fs::write(
        &whole_gz,
        zstd::encode_all(&std::fs::read(&src).unwrap()[..], 3).unwrap(),
    )
    .unwrap();
    let o = bin()
        .args(["replay", "--format", "json", "-"])
        .stdin(std::fs::File::open(&whole_gz).unwrap())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(without_source(j), want);
    // Something else compressed is named as such.
    let junk = d.join("junk.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"hello, not a capture").unwrap();
    std::fs::write(&junk, enc.finish().unwrap()).unwrap();
    let e = hbscope::capture::FileSource::open(&junk).unwrap_err();
    assert!(e.to_string().contains("gzip-compressed"), "{e}");
    std::fs::remove_dir_all(&d).ok();
}

/// Parts of different captures: merged, with a warning that says so.
#[test]
fn parts_of_different_captures_are_named() {
    let (x, y) = (
        capture("nova-api-eventlet.pcap"),
        capture("client-sigstop.pcap"),
    );
    let r = parts::replay_parts(&[x, y], EngineConfig::default(), &mut |_, _| {}).unwrap();
    let w: Vec<_> = r.engine.warnings().iter().map(|w| w.code).collect();
    assert!(w.contains(&parts::PARTS_HOLE), "{w:?}");
    let text = hbscope::report::to_text(&r.report());
    assert!(text.contains("different captures"), "{text}");
}

/// Two ends of the same traffic given as plain files: refused, with the
/// flags to use.
#[test]
fn two_ends_as_parts_are_refused() {
    let dir = capture("twoend");
    let (c, b) = (
        dir.join("twoend-lost-c2b.client.pcap"),
        dir.join("twoend-lost-c2b.broker.pcap"),
    );
    let e = parts::replay_parts(
        &[c.clone(), b.clone()],
        EngineConfig::default(),
        &mut |_, _| {},
    )
    .err()
    .unwrap();
    assert!(matches!(e, PartsError::TwoEnds { .. }), "{e}");
    let o = bin().arg("replay").arg(&c).arg(&b).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("--client-side") && err.contains("--broker-side"),
        "{err}"
    );
    let o = bin().arg("replay").arg(&c).arg(&c).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("was given twice"));
}

/// `--client-side` and `--broker-side` with two parts each: the same
/// merged verdicts as with one file per side.
#[test]
fn two_ended_replay_with_parts_per_side() {
    let dir = capture("twoend");
    let d = scratch("twoend");
    let mut sides = Vec::new();
    for side in ["client", "broker"] {
        let f = dir.join(format!("twoend-lost-c2b.{side}.pcap"));
        let p = read_pcap(&f);
        let n = p.recs.len();
        let (x, y) = (
            d.join(format!("{side}-2.pcapng")),
            d.join(format!("{side}-1.pcap")),
        );
        write_pcap(&p, 0..n / 2 + 3, &y);
        write_pcapng(&p, n / 2..n, &x);
        sides.push((f, vec![x, y]));
    }
    let cfg = EngineConfig::default();
    let one = twoend::replay_two(&sides[0].0, &sides[1].0, &cfg).unwrap();
    let many = twoend::replay_sides(&sides[0].1, &sides[1].1, &cfg).unwrap();
    let (one, many) = (
        serde_json::to_value(&one).unwrap(),
        serde_json::to_value(&many).unwrap(),
    );
    assert_eq!(one["merge"]["summary"], many["merge"]["summary"]);
    assert_eq!(
        many["merge"]["summary"]["gaps_by_merged_cause"]["lost-in-network"],
        2
    );
    assert_eq!(one["connections"], many["connections"]);
    let o = bin()
        .args(["replay", "--format", "text", "--client-side"])
        .args(&sides[0].1)
        .arg("--broker-side")
        .args(&sides[1].1)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    assert!(text.contains("merged cause: lost-in-network"), "{text}");
    std::fs::remove_dir_all(&d).ok();
}

/// `replay -f EXPR`: only the packets that pass the filter are analysed
/// (here one of the founding case's two connections); a bad expression is
/// refused before anything is read.
#[test]
fn filter_expression_selects_packets() {
    let src = capture("nova-api-eventlet.pcap");
    let o = bin()
        .args(["replay", "--format", "json", "-f", "tcp port 41676"])
        .arg(&src)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let j: Value = serde_json::from_slice(&o.stdout).unwrap();
    let conns = j["connections"].as_array().unwrap();
    assert_eq!(conns.len(), 1, "{j}");
    assert_eq!(conns[0]["client"], "127.0.0.1:41676");
    assert_eq!(j["summary"]["gaps_by_cause"]["client-stall"], 1);
    let all = whole(&src);
    assert!(j["capture"]["packets"].as_u64() < all["capture"]["packets"].as_u64());
    // A filter that passes everything gives the whole report.
    let r = parts::replay_filtered(
        std::slice::from_ref(&src),
        EngineConfig::default(),
        Some("tcp"),
        &mut |_, _| {},
    )
    .unwrap();
    assert_eq!(
        without_source(serde_json::to_value(r.report()).unwrap()),
        all
    );
    let o = bin()
        .args(["replay", "--format", "json", "-f", "port fivethousand"])
        .arg(&src)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("not a valid capture filter"), "{err}");
}
