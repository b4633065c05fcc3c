//! Long fuzz run over the whole pipeline (see tests/common/fuzz.rs).
//!
//! `cargo run --release --example fuzz -- [INPUTS] [SEED]`; seeds are every
//! capture in captures/. A panicking input is written to fuzz/crashes/ as a
//! pcap named by seed and index, and the run goes on.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic;
use std::time::Instant;

#[path = "../tests/common/fuzz.rs"]
mod fuzz;
use fuzz::{load_seed, make_input, run_input, run_streams, to_pcap, Rng};

fn main() {
    let mut args = std::env::args().skip(1);
    let inputs: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let seed: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(1);
    let mut seeds = Vec::new();
    let mut dir: Vec<_> = std::fs::read_dir("captures")
        .expect("run from the repository root")
        .collect();
    dir.sort_by_key(|e| e.as_ref().map(std::fs::DirEntry::path).ok());
    for e in dir {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) == Some("pcap") {
            if let Ok(s) = load_seed(&p) {
                if !s.packets.is_empty() {
                    seeds.push(s);
                }
            }
        }
    }
    eprintln!(
        "fuzz: {} seed captures, {inputs} inputs, seed {seed}",
        seeds.len()
    );
    panic::set_hook(Box::new(|_| {}));
    let mut rng = Rng::new(seed);
    let mut crashes = 0u64;
    let start = Instant::now();
    for i in 0..inputs {
        let (link, pkts) = make_input(&mut rng, &seeds);
        let mut srng = rng.clone();
        let ok = panic::catch_unwind(panic::AssertUnwindSafe(|| {
            run_input(link, &pkts);
            run_streams(&mut srng, &seeds);
        }));
        rng.next_u64();
        if ok.is_err() {
            crashes += 1;
            std::fs::create_dir_all("fuzz/crashes").ok();
            std::fs::write(
                format!("fuzz/crashes/seed{seed}-input{i}.pcap"),
                to_pcap(link, &pkts),
            )
            .ok();
        }
        if (i + 1) % 1_000_000 == 0 {
            eprintln!(
                "fuzz: {} inputs, {crashes} crashes, {:.0} inputs/s",
                i + 1,
                (i + 1) as f64 / start.elapsed().as_secs_f64()
            );
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "fuzz: {inputs} inputs in {secs:.1} s ({:.0}/s), {crashes} crashes",
        inputs as f64 / secs
    );
    if crashes > 0 {
        std::process::exit(1);
    }
}
