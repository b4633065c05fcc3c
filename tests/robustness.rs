//! No input may panic: mutated and truncated versions of the shipped captures
//! go through the whole pipeline (decode, reassembly, framing, analysis,
//! report). Deterministic, so a failure is reproducible from its seed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use hbscope::engine::EngineConfig;
use hbscope::report;
use hbscope::run::replay;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % (n as u64)).unwrap()
    }
}

fn run_bytes(bytes: &[u8], tag: &str) {
    let dir = std::env::temp_dir().join(format!("hbscope-robust-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(format!("{tag}.pcap"));
    std::fs::write(&p, bytes).unwrap();
    if let Ok(r) = replay::replay(&p, EngineConfig::default(), &mut |_| {}) {
        let rep = r.report();
        let _ = report::to_text(&rep);
        let _ = report::to_json(&rep).unwrap();
    }
    let _ = std::fs::remove_file(&p);
}

#[test]
fn mutated_captures_never_panic() {
    let captures = [
        "nova-api-eventlet.pcap",
        "small-snaplen.pcap",
        "ipv6.pcap",
        "any-interface.pcap",
    ];
    for (ci, name) in captures.iter().enumerate() {
        let orig = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("captures")
                .join(name),
        )
        .unwrap();
        for seed in 0..60u64 {
            let mut rng = Rng(seed * 7919 + ci as u64 + 1);
            let mut b = orig.clone();
            let flips = 1 + rng.below(64);
            for _ in 0..flips {
                // Leave the 24-byte file header alone most of the time so the
                // mutation reaches the packet decoders.
                let i = 24 + rng.below(b.len() - 24);
                b[i] = u8::try_from(rng.next() & 0xff).unwrap();
            }
            if seed % 5 == 0 {
                let cut = 24 + rng.below(b.len() - 24);
                b.truncate(cut);
            }
            run_bytes(&b, &format!("{name}-{seed}"));
        }
    }
}

#[test]
fn every_truncation_of_a_small_capture_is_handled() {
    let orig =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/client-sigstop.pcap"))
            .unwrap();
    for cut in (0..orig.len()).step_by(97) {
        run_bytes(&orig[..cut], &format!("cut-{cut}"));
    }
}
