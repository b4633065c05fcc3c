//! `hbscope live --user NAME` drops root after opening the capture, like
//! `tcpdump -Z`: checked on the running process's real and effective uid.
//! Needs root (as the other live tests): `#[ignore]`d, run with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Stdio};
use std::time::Duration;

fn uid_of(name: &str) -> u32 {
    let out = Command::new("id").args(["-u", name]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
}

#[test]
#[ignore = "needs root: run with --include-ignored (CI does)"]
fn live_drops_to_the_given_user_after_opening_the_capture() {
    let me = Command::new("id").arg("-u").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&me.stdout).trim(),
        "0",
        "this test needs root (live capture)"
    );
    let child = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args([
            "live",
            "-i",
            "lo",
            "--duration",
            "3",
            "--format",
            "json",
            "--user",
            "nobody",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", child.id())).unwrap_or_default();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let uid_line = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .expect("Uid line");
    let ids: Vec<u32> = uid_line
        .split_whitespace()
        .skip(1)
        .map(|x| x.parse().unwrap())
        .collect();
    let nobody = uid_of("nobody");
    assert!(
        ids.iter().all(|u| *u == nobody),
        "expected every uid to be nobody's ({nobody}): {uid_line}"
    );
    // The capture kept working and the report came out.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .last()
            .unwrap_or("")
            .contains("\"schema_version\""),
        "{stdout}"
    );

    let bad = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args([
            "live",
            "-i",
            "lo",
            "--duration",
            "1",
            "--user",
            "no-such-user-hbscope",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no such user"));
}
