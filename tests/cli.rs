//! The command line as a user meets it: exit codes and one-line messages for
//! unusable input, a capture cut short, stdin, `--fail-on-gap`, and `--help`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_hbscope"))
}

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hbscope-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn replay(args: &[&str]) -> Output {
    bin().arg("replay").args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_unusable(o: &Output, needle: &str) {
    assert_eq!(o.status.code(), Some(2), "stderr: {}", stderr(o));
    let err = stderr(o);
    assert!(err.contains(needle), "expected {needle:?} in {err:?}");
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one-line reason expected: {err:?}"
    );
    assert!(!err.contains("panicked"));
}

#[test]
fn missing_file() {
    assert_unusable(&replay(&["/nonexistent/x.pcap"]), "no such file");
}

#[test]
fn directory() {
    assert_unusable(&replay(&[capture("").to_str().unwrap()]), "is a directory");
}

#[test]
fn empty_file() {
    let p = tmp("empty-file.pcap");
    std::fs::write(&p, b"").unwrap();
    assert_unusable(&replay(&[p.to_str().unwrap()]), "empty file");
}

#[test]
fn not_a_capture() {
    let p = tmp("notes.txt");
    std::fs::write(&p, b"these are my notes, not a capture\n").unwrap();
    assert_unusable(&replay(&[p.to_str().unwrap()]), "not a pcap or pcapng file");
}

#[test]
fn truncated_file_header() {
    let p = tmp("short-header.pcap");
    let full = std::fs::read(capture("healthy-idle.pcap")).unwrap();
    std::fs::write(&p, &full[..10]).unwrap();
    let o = replay(&[p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

fn pcap_with_linktype(linktype: u32) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&65535u32.to_le_bytes());
    v.extend_from_slice(&linktype.to_le_bytes());
    v.extend_from_slice(&1u32.to_le_bytes());
    v.extend_from_slice(&0u32.to_le_bytes());
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&4u32.to_le_bytes());
    v.extend_from_slice(&[1, 2, 3, 4]);
    v
}

#[test]
fn unsupported_link_type() {
    let p = tmp("wifi.pcap");
    std::fs::write(&p, pcap_with_linktype(105)).unwrap();
    assert_unusable(&replay(&[p.to_str().unwrap()]), "not supported");
}

#[test]
fn file_cut_mid_record_warns_and_still_reports() {
    let full = std::fs::read(capture("client-sigstop.pcap")).unwrap();
    let p = tmp("cut.pcap");
    std::fs::write(&p, &full[..full.len() - 30]).unwrap();
    let o = replay(&["--format", "json", p.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["capture"]["complete"], false);
    assert_eq!(v["capture"]["warnings"][0]["code"], "capture-truncated");
    assert_eq!(v["connections"].as_array().unwrap().len(), 1);
    let text = replay(&[p.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("cut short"));
}

#[test]
fn stdin_gives_the_same_report_as_the_file() {
    let path = capture("nova-api-eventlet.pcap");
    let mut child = bin()
        .args(["replay", "--format", "json", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(&std::fs::read(&path).unwrap())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let from_stdin: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let from_file: serde_json::Value =
        serde_json::from_slice(&replay(&["--format", "json", path.to_str().unwrap()]).stdout)
            .unwrap();
    assert_eq!(from_stdin["connections"], from_file["connections"]);
    assert_eq!(from_stdin["capture"]["source"], "-");
}

#[test]
fn fail_on_gap_exit_codes() {
    let stalled = replay(&[
        "--fail-on-gap",
        capture("client-sigstop.pcap").to_str().unwrap(),
    ]);
    assert_eq!(stalled.status.code(), Some(3));
    let healthy = replay(&[
        "--fail-on-gap",
        capture("healthy-idle.pcap").to_str().unwrap(),
    ]);
    assert_eq!(healthy.status.code(), Some(0));
}

#[test]
fn output_file_option() {
    let p = tmp("report.json");
    let o = replay(&[
        "--format",
        "json",
        "-o",
        p.to_str().unwrap(),
        capture("healthy-idle.pcap").to_str().unwrap(),
    ]);
    assert!(o.status.success());
    assert!(o.stdout.is_empty());
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
    assert_eq!(v["summary"]["connections"], 1);
}

#[test]
fn password_never_printed() {
    // pika logs in with PLAIN ("\0guest\0guest"); py-amqp (nova) with
    // AMQPLAIN, a table holding LOGIN and PASSWORD. Both are in the capture
    // files; neither may reach any output.
    for (name, secret) in [
        ("healthy-idle.pcap", &b"\0guest\0guest"[..]),
        ("nova-api-eventlet.pcap", &b"PASSWORD"[..]),
    ] {
        let raw = std::fs::read(capture(name)).unwrap();
        assert!(
            raw.windows(secret.len()).any(|w| w == secret),
            "{name} should contain the SASL response"
        );
        for fmt in ["json", "text"] {
            let o = replay(&["--format", fmt, capture(name).to_str().unwrap()]);
            let out = String::from_utf8_lossy(&o.stdout);
            assert!(o.status.success());
            assert!(
                !out.contains("\\u0000guest") && !out.contains("\0guest"),
                "{name} {fmt}"
            );
            assert!(
                !out.contains("PASSWORD") && !out.contains("LOGIN"),
                "{name} {fmt}"
            );
            assert!(!out.contains("response"), "{name} {fmt}");
        }
    }
}

#[test]
fn help_is_stable() {
    let o = bin().arg("replay").arg("--help").output().unwrap();
    insta::assert_snapshot!("replay-help", String::from_utf8_lossy(&o.stdout));
    let o = bin().arg("--help").output().unwrap();
    insta::assert_snapshot!("help", String::from_utf8_lossy(&o.stdout));
}

/// The captures of the bad-input table in docs/robustness.md: each is
/// analysed (exit 0), lists no connection and says why in one warning line.
#[test]
fn bad_input_captures_say_what_they_carry() {
    let rows = [
        ("non-amqp.pcap", "no AMQP 0-9-1 traffic found"),
        ("amqp10-on-5672.pcap", "AMQP 1.0 protocol header"),
        (
            "http-on-5672.pcap",
            "the client sent \"GET / HT\", not AMQP 0-9-1",
        ),
        ("tls-on-5672.pcap", "a TLS ClientHello got no TLS answer"),
    ];
    for (name, needle) in rows {
        let o = replay(&[capture(name).to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(0), "{name}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert!(out.contains("0 AMQP connection(s)"), "{name}: {out}");
        assert!(out.contains(needle), "{name}: expected {needle:?} in {out}");
    }
}
