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
fn empty_stdin() {
    // Said as such, not as a file header cut short.
    let o = bin()
        .args(["replay", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_unusable(&o, "standard input is empty (0 bytes)");
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
        assert!(out.contains("0 AMQP connections"), "{name}: {out}");
        assert!(out.contains(needle), "{name}: expected {needle:?} in {out}");
    }
}

/// Refused by clap: exit 2 and one `error:` line naming what is wrong.
fn assert_refused(o: &Output, needle: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "stderr: {err}");
    assert!(o.stdout.is_empty(), "nothing analysed: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "one error line expected: {err:?}");
    assert!(errors[0].contains(needle), "expected {needle:?} in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn threads_are_capped() {
    let f = capture("healthy-idle.pcap");
    let f = f.to_str().unwrap();
    assert_refused(&replay(&["--threads", "100000", f]), "--threads");
    assert_refused(&replay(&["--threads", "65", f]), "0..=64");
    let o = replay(&["--threads", "64", "--format", "json", f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn conflicting_replay_options_are_refused() {
    let f = capture("healthy-idle.pcap");
    let f = f.to_str().unwrap();
    let out = tmp("conflict-out.txt");
    let out = out.to_str().unwrap();
    for format in ["text", "json", "html", "markdown"] {
        assert_refused(
            &replay(&["--speed", "10", "--format", format, f]),
            &format!("'--speed <N>' cannot be used with '--format {format}'"),
        );
    }
    assert_refused(&replay(&["--speed", "10", "--summary", f]), "--summary");
    assert_refused(&replay(&["--speed", "10", "-o", out, f]), "--output");
    for format in ["html", "markdown", "json", "tui"] {
        assert_refused(
            &replay(&["--summary", "--format", format, f]),
            &format!("'--summary' cannot be used with '--format {format}'"),
        );
    }
    assert_refused(
        &replay(&["--format", "tui", "-o", out, f]),
        "'--output <FILE>' cannot be used with '--format tui'",
    );
    assert_refused(&replay(&["--speed", "1", f, f]), "several files");
    assert_refused(
        &replay(&["--speed", "1", "--client-side", f, "--broker-side", f]),
        "two-ended replay",
    );
    assert_refused(&replay(&["--speed", "1", "-f", "tcp", f]), "'--filter'");
    assert!(!Path::new(out).exists());
    // What still goes together.
    let o = replay(&["--summary", "--format", "text", f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn numbers_out_of_range_are_refused() {
    let f = capture("healthy-idle.pcap");
    let f = f.to_str().unwrap();
    for speed in ["-1", "nan", "inf", "fast"] {
        assert_refused(&replay(&["--speed", speed, f]), "--speed");
    }
    for d in ["0", "-1", "nan", "inf"] {
        let o = bin()
            .args(["live", "-i", "lo", "--duration", d])
            .output()
            .unwrap();
        assert_refused(&o, "--duration");
    }
    let p = tmp("synth-refused.pcap");
    let p = p.to_str().unwrap();
    for (arg, value) in [
        ("--connections", "0"),
        ("--duration", "0"),
        ("--heartbeat", "0"),
        ("--busy", "1.5"),
        ("--busy", "-0.1"),
        ("--churn", "2"),
        ("--rate", "0"),
        ("--rate", "nan"),
        ("--mss", "63"),
        ("--mss", "65496"),
    ] {
        let o = bin().args(["synth", "-o", p, arg, value]).output().unwrap();
        assert_refused(&o, arg);
    }
    assert!(!Path::new(p).exists());
}

/// Runs `args` with writes past `blocks` 512-byte blocks of a file failing
/// (EFBIG, SIGXFSZ ignored): a failure in the middle of writing.
fn with_file_size_limit(blocks: u32, args: &[&str]) -> Output {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks}; exec \"$0\" \"$@\""
        ))
        .arg(env!("CARGO_BIN_EXE_hbscope"))
        .args(args)
        .output()
        .unwrap()
}

fn dir_entries(d: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn fresh_dir(name: &str) -> PathBuf {
    let d = tmp(name);
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn failed_output_file_leaves_nothing() {
    let f = capture("healthy-busy.pcap");
    let f = f.to_str().unwrap();
    // A directory that does not exist.
    let d = fresh_dir("out-missing");
    let missing = d.join("no/such/dir/report.json");
    let o = replay(&["--format", "json", "-o", missing.to_str().unwrap(), f]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot write the report"),
        "{}",
        stderr(&o)
    );
    assert!(dir_entries(&d).is_empty());
    // A directory that cannot be written (unless run as root, who can).
    use std::os::unix::fs::PermissionsExt;
    let ro = fresh_dir("out-readonly");
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    if std::fs::write(ro.join("probe"), b"").is_err() {
        let o = replay(&[
            "--format",
            "json",
            "-o",
            ro.join("r.json").to_str().unwrap(),
            f,
        ]);
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        assert!(dir_entries(&ro).is_empty());
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Writing fails mid-way: neither a partial report nor a temporary file,
    // and a report already there stays as it was.
    let d = fresh_dir("out-midway");
    let dest = d.join("report.json");
    std::fs::write(&dest, b"previous report\n").unwrap();
    for format in ["json", "text", "html"] {
        let o = with_file_size_limit(
            2,
            &[
                "replay",
                "--format",
                format,
                "-o",
                dest.to_str().unwrap(),
                f,
            ],
        );
        assert_eq!(o.status.code(), Some(1), "{format}: {}", stderr(&o));
        assert_eq!(dir_entries(&d), ["report.json"], "{format}");
        assert_eq!(std::fs::read(&dest).unwrap(), b"previous report\n");
    }
    // Without the limit, the report replaces it.
    let o = replay(&["--format", "json", "-o", dest.to_str().unwrap(), f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(dir_entries(&d), ["report.json"]);
    assert!(std::fs::read(&dest).unwrap().starts_with(b"{"));
}

#[test]
fn failed_synth_leaves_no_file() {
    let d = fresh_dir("synth-fail");
    let pcap = d.join("s.pcap");
    let pcap = pcap.to_str().unwrap();
    // Refused by the generator (too short for injected silences).
    let o = bin()
        .args([
            "synth",
            "-o",
            pcap,
            "--connections",
            "5",
            "--duration",
            "30",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("too short"), "{}", stderr(&o));
    assert!(dir_entries(&d).is_empty(), "{:?}", dir_entries(&d));
    // Writing fails mid-way.
    let o = with_file_size_limit(
        4,
        &[
            "synth",
            "-o",
            pcap,
            "--connections",
            "30",
            "--duration",
            "60",
        ],
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot write"), "{}", stderr(&o));
    assert!(dir_entries(&d).is_empty(), "{:?}", dir_entries(&d));
    // A directory that does not exist.
    let o = bin()
        .args(["synth", "-o", d.join("no/s.pcap").to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(dir_entries(&d).is_empty());
    // Success: both files, nothing else.
    let o = bin()
        .args([
            "synth",
            "-o",
            pcap,
            "--connections",
            "30",
            "--duration",
            "60",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(dir_entries(&d), ["s.expect.json", "s.pcap"]);
}

#[test]
fn closed_pipe_exits_1_report_not_written() {
    use std::io::Read;
    let d = fresh_dir("pipe");
    let pcap = d.join("many.pcap");
    let o = bin()
        .args(["synth", "-o", pcap.to_str().unwrap()])
        .args(["--connections", "2000", "--duration", "20", "--stalls", "0"])
        .args(["--busy", "0", "--churn", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    for format in ["json", "text"] {
        let mut child = bin()
            .args(["replay", "--format", format, pcap.to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut head = [0u8; 16];
        child.stdout.take().unwrap().read_exact(&mut head).unwrap();
        // The reader is gone: the rest of the report meets a broken pipe.
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(1), "{format}: {}", stderr(&o));
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{format}: one line: {err}");
        assert!(err.contains("cut short"), "{format}: {err}");
    }
}

#[test]
fn sigint_while_the_report_is_written_leaves_nothing() {
    let d = fresh_dir("sigint");
    let pcap = d.join("many.pcap");
    let o = bin()
        .args(["synth", "-o", pcap.to_str().unwrap()])
        .args(["--connections", "2000", "--duration", "20", "--stalls", "0"])
        .args(["--busy", "0", "--churn", "0"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let out = fresh_dir("sigint-out");
    let dest = out.join("report.json");
    std::fs::write(&dest, b"previous report\n").unwrap();
    let child = bin()
        .args(["replay", "--format", "json", "--threads", "1", "-o"])
        .arg(&dest)
        .arg(&pcap)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The report is being written once its temporary file exists.
    let started = std::time::Instant::now();
    while dir_entries(&out).len() < 2 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write the report") && err.contains("stopped by a signal"),
        "{err}"
    );
    assert_eq!(dir_entries(&out), ["report.json"], "no temporary file left");
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous report\n");
}

/// `synth -o` interrupted: neither the capture nor its expect file, nor a
/// temporary file, is left behind.
#[test]
fn sigint_while_synth_writes_leaves_nothing() {
    let out = fresh_dir("synth-sigint");
    let pcap = out.join("big.pcap");
    let child = bin()
        .args(["synth", "-o", pcap.to_str().unwrap()])
        .args([
            "--connections",
            "20000",
            "--duration",
            "600",
            "--stalls",
            "0",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while dir_entries(&out).is_empty() {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "no temporary file appeared"
        );
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .unwrap()
        .success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("stopped by a signal"), "{err}");
    assert!(
        dir_entries(&out).is_empty(),
        "left: {:?}",
        dir_entries(&out)
    );
}

#[test]
fn output_onto_the_input_is_refused_and_the_input_kept() {
    let d = fresh_dir("same-file");
    let input = d.join("x.pcap");
    let original = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/client-sigstop.pcap");
    std::fs::copy(&original, &input).unwrap();
    let link = d.join("link.pcap");
    std::os::unix::fs::symlink(&input, &link).unwrap();
    for out in [&input, &link] {
        let o = bin()
            .args(["replay", "--format", "json", "-o"])
            .arg(out)
            .arg(&input)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(
            stderr(&o).contains("is the input capture"),
            "{}",
            stderr(&o)
        );
        assert_eq!(
            std::fs::read(&input).unwrap(),
            std::fs::read(&original).unwrap()
        );
    }
}

/// `--local-time`: the text report's times in the zone of `TZ` (a POSIX
/// zone string, so no time zone database is needed), JSON unchanged.
#[test]
fn local_time_shows_the_zone_of_tz() {
    let run = |args: &[&str]| -> String {
        let o = bin()
            .env("TZ", "<+0530>-5:30")
            .args(["replay"])
            .args(args)
            .arg(capture("client-sigstop.pcap"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{o:?}");
        String::from_utf8(o.stdout).unwrap()
    };
    let utc = run(&["--format", "text"]);
    assert!(utc.contains("from 2026-11-26T21:07:52.565378000Z"), "{utc}");
    let local = run(&["--format", "text", "--local-time"]);
    assert!(
        local.contains("from 2026-11-27T02:37:52.565378000+05:30"),
        "{local}"
    );
    assert!(!local.contains("000Z"), "every time is local:\n{local}");
    let json = run(&["--format", "json", "--local-time"]);
    assert!(json.contains("\"first_packet\": \"2026-11-26T21:07:52.565378000Z\""));
}
