//! A full disk: a small tmpfs the test mounts fills up while hbscope writes
//! into it.
//! - `replay -o FILE` exits 1 with a message naming the file and the
//!   system's "No space left on device"; neither a partial report nor its
//!   temporary file is left, and a report already there stays as it was.
//! - `live --write FILE` stops saving packets and says so (warning
//!   `write-error`); the file is cut back to its last whole packet, so it
//!   reads as a complete capture, and the capture and its report go on.
//!
//! Mounting needs root, so the tests are `#[ignore]`d: run them with
//! `--include-ignored`. The same failure without root (a file-size limit,
//! `ulimit -f`) is `cli::failed_output_file_leaves_nothing`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use common::live::{Lines, BIN};

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "tests/out_of_space.rs mounts a tmpfs: run as root with --include-ignored"
    );
}

/// A tmpfs of `size` mounted on a fresh directory while this lives
/// (unmounted and removed on drop, also when the test fails).
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(tag: &str, size: &str) -> Tmpfs {
        let dir = std::env::temp_dir().join(format!("hbscope-enospc-{}-{tag}", std::process::id()));
        let _ = Command::new("umount")
            .arg(&dir)
            .stderr(Stdio::null())
            .status();
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let st = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "hbscope-enospc",
            ])
            .arg(&dir)
            .status()
            .unwrap();
        assert!(st.success(), "mount -t tmpfs on {} failed", dir.display());
        Tmpfs { dir }
    }

    fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let st = Command::new("umount").arg(&self.dir).status();
        if !st.is_ok_and(|s| s.success()) {
            // Busy (a child still running): detach it now, gone when free.
            let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
        }
        let _ = std::fs::remove_dir(&self.dir);
    }
}

fn hbscope(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A synthetic capture whose JSON, text and HTML reports are each larger
/// than 16 KiB (about 170, 50 and 23 KB).
fn big_capture() -> PathBuf {
    let p = std::env::temp_dir().join(format!("hbscope-enospc-{}.pcap", std::process::id()));
    let o = hbscope(&[
        "synth",
        "-o",
        p.to_str().unwrap(),
        "--connections",
        "40",
        "--duration",
        "120",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    p
}

fn remove_capture(p: &Path) {
    let _ = std::fs::remove_file(p);
    let _ = std::fs::remove_file(p.with_extension("expect.json"));
}

#[test]
#[ignore = "needs root: mounts a tmpfs"]
fn replay_into_a_full_tmpfs_exits_1_and_leaves_no_partial_report() {
    require_root();
    let fs = Tmpfs::mount("replay", "16k");
    let cap = big_capture();
    let capture = cap.to_str().unwrap();
    // The file system is writable: a small report fits.
    let small = fs.dir.join("small.json");
    let small_capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/healthy-idle.pcap");
    let o = hbscope(&[
        "replay",
        "--format",
        "json",
        "-o",
        small.to_str().unwrap(),
        small_capture.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(fs.entries(), ["small.json"]);
    std::fs::remove_file(&small).unwrap();
    // A new report that does not fit: nothing appears.
    for format in ["json", "text", "html"] {
        let dest = fs.dir.join(format!("report.{format}"));
        let dest = dest.to_str().unwrap();
        let o = hbscope(&["replay", "--format", format, "-o", dest, capture]);
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(1), "{format}: {err}");
        assert!(
            err.contains("cannot write the report") && err.contains(dest),
            "{format}: the message names the file: {err}"
        );
        assert!(err.contains("No space left"), "{format}: {err}");
        assert!(!err.contains("panicked"), "{err}");
        assert!(fs.entries().is_empty(), "{format}: left {:?}", fs.entries());
    }
    // A report already there stays as it was.
    let dest = fs.dir.join("report.json");
    std::fs::write(&dest, b"previous report\n").unwrap();
    let o = hbscope(&[
        "replay",
        "--format",
        "json",
        "-o",
        dest.to_str().unwrap(),
        capture,
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("No space left"), "{}", stderr(&o));
    assert_eq!(fs.entries(), ["report.json"]);
    assert_eq!(std::fs::read(&dest).unwrap(), b"previous report\n");
    remove_capture(&cap);
}

#[test]
#[ignore = "needs root: mounts a tmpfs and captures on lo"]
fn live_write_onto_a_full_tmpfs_stops_saving_whole_packets_and_says_so() {
    require_root();
    let fs = Tmpfs::mount("live", "256k");
    let save = fs.dir.join("amqp.pcap");
    // Traffic of this test only: a loopback connection on a port it owns.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let filter = format!("tcp port {port}");
    let mut cap = Lines::spawn(Command::new(BIN).args([
        "live",
        "-i",
        "lo",
        "--filter",
        &filter,
        "--port",
        &port,
        "--no-attribution",
        "--duration",
        "4",
        "--format",
        "json",
        "--write",
        save.to_str().unwrap(),
    ]));
    cap.wait_for("\"capture-started\"", Duration::from_secs(10));
    let reader = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        std::io::copy(&mut s, &mut std::io::sink()).unwrap()
    });
    // 4 MiB through a 256 KiB file system.
    let mut client = TcpStream::connect(("127.0.0.1", port.parse::<u16>().unwrap())).unwrap();
    let chunk = vec![0x5au8; 64 * 1024];
    for _ in 0..64 {
        client.write_all(&chunk).unwrap();
    }
    drop(client);
    assert_eq!(reader.join().unwrap(), 4 * 1024 * 1024);
    cap.drain(Duration::from_secs(15));
    let st = cap.wait_exit(Duration::from_secs(5));
    let lines: Vec<serde_json::Value> = cap
        .seen
        .iter()
        .map(|(_, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let dump = cap.dump();
    // The capture itself was whole: the report is written and says so.
    assert_eq!(st.code(), Some(0), "exit {st}:\n{dump}");
    let report = lines.last().unwrap();
    assert_eq!(report["capture"]["complete"], true, "{report}");
    let warnings = report["capture"]["warnings"].as_array().unwrap();
    let w = warnings
        .iter()
        .find(|w| w["code"] == "write-error")
        .unwrap_or_else(|| panic!("no write-error warning:\n{dump}"));
    let msg = w["message"].as_str().unwrap();
    assert!(msg.contains(save.to_str().unwrap()), "{msg}");
    assert!(msg.contains("No space left"), "{msg}");
    assert!(msg.contains("saving stopped after"), "{msg}");
    assert!(msg.contains("holds every packet before it"), "{msg}");
    assert_eq!(w["count"], 1, "said once: {w}");
    // The file is not named as saved.
    let stopped = lines
        .iter()
        .find(|e| e["event"] == "capture-stopped")
        .unwrap_or_else(|| panic!("no capture-stopped:\n{dump}"));
    assert!(stopped.get("written").is_none(), "{stopped}");
    // Only the saved file is there, and it reads as a whole capture.
    assert_eq!(fs.entries(), ["amqp.pcap"]);
    let o = hbscope(&["replay", "--format", "json", save.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let saved: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(saved["capture"]["complete"], true, "{saved}");
    assert!(saved["capture"]["packets"].as_u64().unwrap() > 0, "{saved}");
    assert!(std::fs::metadata(&save).unwrap().len() <= 256 * 1024);
}
