//! `live --py-spy`: the Python stacks of a stalled process, from
//! `py-spy dump --pid PID` (py-spy installs from PyPI: `pip install py-spy`).
//!
//! A dump runs on its own thread so the capture never waits for it; it is
//! killed after [`DUMP_TIMEOUT`] and its output is cut at [`MAX_OUTPUT`]
//! bytes. The lines before "Python v..." (py-spy's "Process PID: COMMAND
//! LINE", which may hold secrets) are dropped. Whether a process runs Python
//! is read from its `comm` and `/proc/PID/maps` (an embedded interpreter such
//! as mod_wsgi's shows as `libpython`).

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::mpsc::{channel, Receiver, TryRecvError};
use std::time::{Duration, Instant};

/// Longest a dump may run before it is killed.
pub const DUMP_TIMEOUT: Duration = Duration::from_secs(5);
/// Most bytes of a dump kept.
pub const MAX_OUTPUT: usize = 16 * 1024;

/// Whether `pid` runs a Python interpreter (its command is `python*`, or it
/// maps a `libpython`).
#[must_use]
pub fn is_python(pid: i32) -> bool {
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    if comm.trim().starts_with("python") {
        return true;
    }
    std::fs::read_to_string(format!("/proc/{pid}/maps"))
        .is_ok_and(|m| m.lines().any(|l| l.contains("/libpython")))
}

/// A dump under way.
#[derive(Debug)]
pub struct Dump {
    rx: Receiver<Result<String, String>>,
    result: Option<Result<String, String>>,
}

impl Dump {
    /// Starts `py-spy dump --pid PID` on a thread.
    #[must_use]
    pub fn start(pid: i32) -> Dump {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let _ = tx.send(run(pid));
        });
        Dump { rx, result: None }
    }

    /// The dump's text, or why there is none; `None` while it still runs.
    pub fn poll(&mut self) -> Option<Result<String, String>> {
        if self.result.is_none() {
            match self.rx.try_recv() {
                Ok(r) => self.result = Some(r),
                Err(TryRecvError::Empty) => return None,
                Err(TryRecvError::Disconnected) => {
                    self.result = Some(Err(String::from(
                        "the py-spy thread ended without a result",
                    )));
                }
            }
        }
        self.result.clone()
    }
}

/// Keeps the stacks: from the "Python v" line on, at most [`MAX_OUTPUT`] bytes.
fn keep(out: &str) -> String {
    let start = out.find("Python v").unwrap_or(0);
    let mut s = out[start..].trim_end().to_owned();
    if s.len() > MAX_OUTPUT {
        let mut cut = MAX_OUTPUT;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("\n[cut at 16 KiB]");
    }
    s
}

fn run(pid: i32) -> Result<String, String> {
    let mut child = Command::new("py-spy")
        .args(["dump", "--pid", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run py-spy ({e}); install it with `pip install py-spy`"))?;
    // Read while it runs: a dump bigger than the pipe buffer would block it.
    let drain = |r: Option<Box<dyn Read + Send>>, cap: usize| {
        std::thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut r) = r {
                let mut buf = [0u8; 8192];
                while let Ok(n) = r.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            String::from_utf8_lossy(&kept).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        4 * MAX_OUTPUT,
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
        4096,
    );
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(st)) => break st,
            Ok(None) if started.elapsed() < DUMP_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "py-spy dump did not finish within {} s; killed",
                    DUMP_TIMEOUT.as_secs()
                ));
            }
            Err(e) => return Err(format!("waiting for py-spy: {e}")),
        }
    };
    let out = out.join().unwrap_or_default();
    let err = err.join().unwrap_or_default();
    if status.success() {
        Ok(keep(&out))
    } else {
        let first = err.lines().next().unwrap_or("").trim();
        Err(format!("py-spy dump failed ({status}): {first}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_line_is_dropped_and_output_bounded() {
        let out = "Process 7: python3 app.py --password hunter2\nPython v3.11.7 (/usr/bin/python3)\n\nThread 7 (idle): \"MainThread\"\n    f (x.py:1)\n";
        let k = keep(out);
        assert!(k.starts_with("Python v3.11.7"), "{k}");
        assert!(!k.contains("hunter2"));
        let big = format!("Python v3\n{}", "é".repeat(MAX_OUTPUT));
        let k = keep(&big);
        assert!(k.len() <= MAX_OUTPUT + 20 && k.ends_with("[cut at 16 KiB]"));
    }
}
