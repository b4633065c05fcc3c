//! Shared by the live tests (tests/live_rabbitmq.rs, tests/live_metrics.rs):
//! the environment check, a child process whose stdout lines arrive on a
//! channel, and signals.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hbscope");

pub fn client_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/hb_client.py")
}

pub fn require_environment(test: &str) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let uid = status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        .unwrap_or("?");
    assert!(
        uid == "0",
        "tests/{test}.rs must run as root (effective uid is {uid}): it captures on lo and reads \
         other processes' /proc entries. Run `sudo -E cargo test --test {test} -- --include-ignored`."
    );
    let addr: SocketAddr = "127.0.0.1:5672".parse().unwrap();
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok(),
        "RabbitMQ is not reachable at 127.0.0.1:5672: start it with `rabbitmq-server -detached` \
         (guest/guest must be allowed from loopback)"
    );
    let pika = Command::new("python3")
        .args(["-c", "import pika"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(pika, "python3 with pika is needed: `pip install pika`");
}

/// A child whose stdout lines arrive on a channel with their arrival time.
pub struct Lines {
    pub child: Child,
    pub rx: Receiver<(Instant, String)>,
    pub seen: Vec<(Instant, String)>,
}

impl Lines {
    pub fn spawn(cmd: &mut Command) -> Lines {
        Lines::spawn_with_stderr(cmd, Stdio::inherit())
    }

    /// As [`Lines::spawn`], with stderr going to `stderr` (e.g. a file to read later).
    pub fn spawn_with_stderr(cmd: &mut Command, stderr: Stdio) -> Lines {
        let mut child = cmd.stdout(Stdio::piped()).stderr(stderr).spawn().unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Lines {
            child,
            rx,
            seen: Vec::new(),
        }
    }

    /// Waits for a line containing `needle`; returns it.
    pub fn wait_for(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok((t, line)) => {
                    self.seen.push((t, line.clone()));
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(e) => panic!(
                    "no line containing {needle:?} within {timeout:?} ({e}); got so far:\n{}",
                    self.dump()
                ),
            }
        }
    }

    /// Reads until the child closes stdout.
    pub fn drain(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while let Ok((t, line)) = self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push((t, line));
        }
    }

    pub fn dump(&self) -> String {
        self.seen
            .iter()
            .map(|(_, l)| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "process {} did not exit within {timeout:?}",
                    self.child.id()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        // Never leave a stopped client or a capture behind a failed assertion.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill")
            .args(["-CONT", &pid])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn signal(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap()
        .success();
    assert!(ok, "kill {sig} {pid} failed");
}

/// True when the tests run as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}
