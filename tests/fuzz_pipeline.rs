//! A short bounded fuzz run in the test suite (the long run is
//! `cargo run --release --example fuzz`; its result is in docs/robustness.md).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

#[path = "common/fuzz.rs"]
mod fuzz;
use fuzz::{load_seed, make_input, run_input, run_streams, Rng};

#[test]
fn pipeline_survives_mutated_inputs() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let seeds: Vec<_> = [
        "nova-api-eventlet",
        "small-snaplen",
        "any-interface",
        "ipv6",
        "netns-blackhole",
        "after-handshake",
    ]
    .iter()
    .map(|n| load_seed(&dir.join(format!("{n}.pcap"))).unwrap())
    .collect();
    let mut rng = Rng::new(20_261_126);
    for _ in 0..3_000 {
        let (link, pkts) = make_input(&mut rng, &seeds);
        run_input(link, &pkts);
        run_streams(&mut rng, &seeds);
    }
}
