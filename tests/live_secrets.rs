//! A real pika client with its password in argv, captured live: hbscope
//! names the client's process (pid and command line) but never prints the
//! password, in JSON or text, on stdout or stderr.
//!
//! The test creates its own RabbitMQ user with a distinctive password
//! (`rabbitmqctl add_user`), and deletes it when it ends, also on failure.
//! Needs root (capture on `lo`, /proc of other processes), RabbitMQ on
//! 127.0.0.1:5672 with `rabbitmqctl`, and python3 with pika: `#[ignore]`d,
//! run with `--include-ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::live::{require_environment, signal, Lines, BIN};

/// A RabbitMQ user that exists while this lives.
struct BrokerUser {
    name: String,
}

fn rabbitmqctl(args: &[&str]) -> std::process::Output {
    Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run rabbitmqctl {args:?}: {e}"))
}

impl BrokerUser {
    fn create(name: &str, password: &str) -> BrokerUser {
        // A user left behind by a killed run would make add_user fail.
        let _ = rabbitmqctl(&["delete_user", name]);
        let out = rabbitmqctl(&["add_user", name, password]);
        assert!(
            out.status.success(),
            "rabbitmqctl add_user failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let user = BrokerUser {
            name: name.to_owned(),
        };
        let out = rabbitmqctl(&["set_permissions", "-p", "/", name, ".*", ".*", ".*"]);
        assert!(
            out.status.success(),
            "rabbitmqctl set_permissions failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        user
    }
}

impl Drop for BrokerUser {
    fn drop(&mut self) {
        let _ = rabbitmqctl(&["delete_user", &self.name]);
    }
}

fn pika_client() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/scripts/pika_client.py")
}

/// Runs `hbscope live -i lo --format FORMAT` while the pika client runs with
/// `client_args`; returns (client pid, stdout, stderr) of the capture.
fn capture_client(format: &str, client_args: &[String], tag: &str) -> (u32, String, String) {
    let err_path = std::env::temp_dir().join(format!(
        "hbscope-secrets-{}-{tag}-{format}.stderr",
        std::process::id()
    ));
    let err_file = std::fs::File::create(&err_path).unwrap();
    let mut cap = Lines::spawn_with_stderr(
        Command::new(BIN).args(["live", "-i", "lo", "--duration", "60", "--format", format]),
        Stdio::from(err_file),
    );
    let started = if format == "json" {
        "\"capture-started\""
    } else {
        "capturing on lo"
    };
    cap.wait_for(started, Duration::from_secs(10));
    let mut client = Lines::spawn(
        Command::new("python3")
            .arg(pika_client())
            .args(client_args)
            .args(["--heartbeat", "2", "--duration", "3", "--name", tag]),
    );
    let st = client.wait_exit(Duration::from_secs(30));
    client.drain(Duration::from_secs(1));
    assert!(
        st.success(),
        "pika client failed ({st}):\n{}",
        client.dump()
    );
    let pid = client.child.id();
    // Give the capture a block timeout (100 ms) to hand the close over.
    std::thread::sleep(Duration::from_millis(500));
    signal(cap.child.id(), "-INT");
    cap.drain(Duration::from_secs(15));
    let st = cap.wait_exit(Duration::from_secs(5));
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&err_path);
    assert!(
        st.success(),
        "hbscope live exited with {st}:\n{}\n{stderr}",
        cap.dump()
    );
    (pid, cap.dump(), stderr)
}

fn check(format: &str, secret: &str, client_args: &[String], tag: &str) {
    let (pid, out, err) = capture_client(format, client_args, tag);
    assert!(
        !out.contains(secret) && !err.contains(secret),
        "the password {secret:?} was printed ({format}, {tag}):\n{out}\n--- stderr ---\n{err}"
    );
    // The process is still named: pid and (redacted) command line.
    let named = if format == "json" {
        out.lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .any(|e| {
                let p = if e["event"] == "connection-seen" {
                    e["client_process"].clone()
                } else {
                    serde_json::Value::Null
                };
                p["pid"] == pid
                    && p["command"] == "python3"
                    && p["cmdline"]
                        .as_str()
                        .is_some_and(|c| c.contains("pika_client.py") && c.contains("***"))
            })
    } else {
        // The text event names the command, not the whole command line.
        out.lines()
            .any(|l| l.contains(&format!("client pid {pid} (python3)")))
    };
    assert!(
        named,
        "no connection attributed to pid {pid} with its command ({format}, {tag}):\n{out}"
    );
    if format == "json" {
        let report: serde_json::Value =
            serde_json::from_str(out.lines().last().unwrap_or_default()).unwrap();
        let in_report = report["connections"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client_process"]["pid"] == pid);
        assert!(
            in_report,
            "the final report does not name pid {pid}:\n{out}"
        );
    }
}

#[test]
#[ignore = "needs root, RabbitMQ with rabbitmqctl, pika: run with --include-ignored"]
fn a_password_in_argv_is_never_printed() {
    require_environment("live_secrets");
    let me = std::process::id();
    let user = format!("hbscope-secrets-{me}");
    let secret = format!("Xyzzy{me}Pw7q");
    let _user = BrokerUser::create(&user, &secret);
    let by_option: Vec<String> = vec![
        "--user".into(),
        user.clone(),
        "--password".into(),
        secret.clone(),
    ];
    let by_url: Vec<String> = vec![
        "--url".into(),
        format!("amqp://{user}:{secret}@127.0.0.1:5672/%2F"),
    ];
    for format in ["json", "text"] {
        check(format, &secret, &by_option, "opt");
        check(format, &secret, &by_url, "url");
    }
}
