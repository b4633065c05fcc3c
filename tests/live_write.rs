//! `hbscope live --write` never clobbers: a symbolic link planted at the
//! path is refused (exit 2, its target untouched, not even chmodded), and an
//! existing file is refused unless `--force`. Capturing on `lo` needs root
//! (the file is opened after the interface), so the tests are `#[ignore]`d:
//! run them with `--include-ignored`. The same checks without root are
//! `capture::savefile`'s unit tests.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hbscope");

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    assert_eq!(
        uid, "0",
        "tests/live_write.rs captures on lo: run as root with --include-ignored"
    );
}

fn dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hbscope-live-write-{}-{tag}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn live_write(path: &std::path::Path, force: bool) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "live",
        "-i",
        "lo",
        "--duration",
        "0.5",
        "--format",
        "json",
        "--write",
    ])
    .arg(path);
    if force {
        cmd.arg("--force");
    }
    cmd.output().unwrap()
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
#[ignore = "needs root: captures on lo"]
fn write_onto_a_planted_symlink_is_refused_and_the_target_untouched() {
    require_root();
    let d = dir("symlink");
    let target = d.join("victim");
    std::fs::write(&target, b"precious\n").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();
    let link = d.join("amqp.pcap");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    for force in [false, true] {
        let out = live_write(&link, force);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "force={force}: {err}");
        assert!(err.contains("symbolic link"), "force={force}: {err}");
        assert!(out.stdout.is_empty(), "nothing captured: {:?}", out.stdout);
        assert_eq!(std::fs::read(&target).unwrap(), b"precious\n");
        assert_eq!(mode(&target), 0o644, "the target was chmodded");
    }
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
#[ignore = "needs root: captures on lo"]
fn write_onto_an_existing_file_needs_force() {
    require_root();
    let d = dir("exists");
    let p = d.join("amqp.pcap");
    std::fs::write(&p, b"old capture\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = live_write(&p, false);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&p).unwrap(), b"old capture\n");

    let out = live_write(&p, true);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&p), 0o600);
    // A valid (here probably empty) capture replaced it.
    let replay = Command::new(BIN).arg("replay").arg(&p).output().unwrap();
    assert!(
        replay.status.success(),
        "{}",
        String::from_utf8_lossy(&replay.stderr)
    );
    // And a new path is created 0600.
    let fresh = d.join("fresh.pcap");
    let out = live_write(&fresh, false);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(mode(&fresh), 0o600);
    let _ = std::fs::remove_dir_all(&d);
}
