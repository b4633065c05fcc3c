//! `hbscope live --config FILE`, run as a user would: the messages for a
//! missing file, a key the file may not have and a missing interface, and
//! options on the command line winning over the file (seen in which
//! interface live tries to open). No root needed: opening a missing
//! interface fails either way and names it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_hbscope");

fn file(name: &str, text: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("hbscope-config-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    let p = d.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn live(args: &[&str]) -> (Option<i32>, String) {
    let o: Output = Command::new(BIN).arg("live").args(args).output().unwrap();
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

#[test]
fn an_unknown_key_is_one_message_with_its_line_and_the_keys_allowed() {
    let p = file("typo.toml", "[live]\ninterface = \"lo\"\nqiuet = true\n");
    let (code, err) = live(&["--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.starts_with(&format!("hbscope: --config {}: ", p.display())),
        "{err}"
    );
    assert!(err.contains("line 3"), "{err}");
    assert!(err.contains("unknown field `qiuet`"), "{err}");
    assert!(err.contains("`quiet`"), "the keys it may have: {err}");
    assert!(err.contains("docs/live.md"), "{err}");
}

#[test]
fn a_missing_file_and_a_missing_interface_are_usage_errors() {
    let (code, err) = live(&["--config", "/nonexistent/hbscope.toml"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--config /nonexistent/hbscope.toml: No such file"),
        "{err}"
    );
    let p = file(
        "no-interface.toml",
        "[metrics]\naddress = \"127.0.0.1:0\"\n",
    );
    let (code, err) = live(&["--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(err.contains("give an interface"), "{err}");
    let p = file("orphan.toml", "[live]\ninterface = \"lo\"\n");
    let (code, err) = live(&["--config", p.to_str().unwrap(), "--record-before", "5"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--record-before needs --record-gaps"), "{err}");
}

#[test]
fn the_command_line_wins_over_the_file() {
    let p = file(
        "iface.toml",
        "[live]\ninterface = \"hbs-from-file0\"\nformat = \"json\"\n",
    );
    let (code, err) = live(&["--config", p.to_str().unwrap()]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("hbs-from-file0"),
        "the file's interface: {err}"
    );
    let (code, err) = live(&["--config", p.to_str().unwrap(), "-i", "hbs-from-flag0"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("hbs-from-flag0"),
        "the flag's interface: {err}"
    );
    assert!(!err.contains("hbs-from-file0"), "{err}");
}

#[test]
fn the_packaged_example_is_accepted() {
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/hbscope.toml");
    // Read and merged with the service's own options, it gets as far as
    // opening the interface (one that does not exist, named on the command line).
    let (code, err) = live(&[
        "--config",
        example.to_str().unwrap(),
        "-i",
        "hbs-example0",
        "--record-gaps",
        std::env::temp_dir().to_str().unwrap(),
        "--quiet",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("hbs-example0"), "the file was accepted: {err}");
}
