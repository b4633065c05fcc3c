//! What one per-thread sample costs (`os::threads::sample_threads`): the
//! reads behind a gap diagnosis (state, CPU, `syscall`, `wchan`, descriptor
//! resolution through `/proc/PID/fd` and the socket tables).
//!
//! ```sh
//! cargo run --release --example sample_cost -- THREADS [ROUNDS]   # own process, THREADS extra threads blocked in read(2) on a pipe
//! cargo run --release --example sample_cost -- --pid PID [ROUNDS] # another process (root)
//! ```
//!
//! Prints microseconds per sample (mean and minimum over ROUNDS, default 200).
//! Run it as root: without ptrace rights the `syscall` reads fail early and
//! the figure is not the real cost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Read;
use std::time::Instant;

use hbscope::model::Timestamp;
use hbscope::os::threads::sample_threads;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (pid, rounds, _keep) = if args.first().map(String::as_str) == Some("--pid") {
        let pid: i32 = args.get(1).and_then(|a| a.parse().ok()).expect("--pid PID");
        let rounds = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(200);
        (pid, rounds, Vec::new())
    } else {
        let n: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(8);
        let rounds = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
        let mut keep = Vec::new();
        for _ in 0..n {
            let (mut r, w) = std::io::pipe().unwrap();
            std::thread::spawn(move || {
                let mut b = [0u8; 1];
                let _ = r.read(&mut b);
            });
            keep.push(w);
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        (i32::try_from(std::process::id()).unwrap(), rounds, keep)
    };
    let mut total = 0f64;
    let mut min = f64::MAX;
    let mut threads = 0;
    let mut unreadable = None;
    for _ in 0..rounds {
        let t = Instant::now();
        let s = sample_threads(pid, &[], &[5672, 5671], Timestamp(0));
        let us = t.elapsed().as_secs_f64() * 1e6;
        total += us;
        min = min.min(us);
        threads = s.threads.len();
        unreadable = s.unreadable;
    }
    println!(
        "pid {pid}: {threads} threads, {:.0} us per sample (mean of {rounds}), {:.0} us minimum{}",
        total / f64::from(rounds),
        min,
        unreadable.map_or(String::new(), |u| format!("; unreadable: {u}"))
    );
}
