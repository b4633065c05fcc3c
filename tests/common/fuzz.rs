//! A stable-Rust mutation fuzzer for the whole pipeline.
//!
//! Seeds are the packets of real captures. Each input takes a window of
//! consecutive packets from a seed, mutates it (bit flips, byte overwrites in
//! the TCP/AMQP region, truncation, caplen/orig_len lies, duplication,
//! reordering, splicing from another seed, random sequence/ack numbers) and
//! runs it through decode, reassembly, framing, analysis and both report
//! renderers. The AMQP framer and the TLS record reader also get raw mutated
//! byte streams. Everything is driven by a seeded PRNG, so an input is
//! reproduced from `(seed, index)`.
//!
//! `cargo run --release --example fuzz -- N` runs N inputs; the test suite runs
//! a short bounded run (tests/fuzz_pipeline.rs).

#![allow(dead_code)]

use hbscope::capture::{LinkType, PacketRecord};
use hbscope::engine::{Engine, EngineConfig};
use hbscope::model::Timestamp;
use hbscope::proto::amqp::Framer;
use hbscope::proto::tls::RecordReader;
use hbscope::report;

/// One seed: the packets of a capture and its link type.
#[derive(Debug, Clone)]
pub struct Seed {
    /// Link type of the packets.
    pub link: LinkType,
    /// (timestamp, original length, captured bytes).
    pub packets: Vec<(Timestamp, u32, Vec<u8>)>,
}

/// xorshift64* — small, fast, deterministic.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is remapped).
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 when n is 0).
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next_u64() % (n as u64)).unwrap_or(0)
    }
}

fn mutate_packet(rng: &mut Rng, p: &mut Vec<u8>) {
    if p.is_empty() {
        return;
    }
    match rng.below(8) {
        0 => {
            let i = rng.below(p.len());
            p[i] ^= 1 << rng.below(8);
        }
        1 => {
            // Overwrite a few bytes past the link+IP headers (TCP/AMQP region).
            let start = 34.min(p.len() - 1);
            for _ in 0..1 + rng.below(8) {
                let i = start + rng.below(p.len() - start);
                p[i] = u8::try_from(rng.next_u64() & 0xff).unwrap_or(0);
            }
        }
        2 => {
            let cut = rng.below(p.len() + 1);
            p.truncate(cut);
        }
        3 => {
            let i = rng.below(p.len() + 1);
            let n = rng.below(64);
            let junk: Vec<u8> = (0..n)
                .map(|_| u8::try_from(rng.next_u64() & 0xff).unwrap_or(0))
                .collect();
            p.splice(i..i, junk);
        }
        4 => {
            // Random 32-bit field somewhere (seq, ack, lengths, frame sizes).
            if p.len() >= 4 {
                let i = rng.below(p.len() - 3);
                let v = u32::try_from(rng.next_u64() & 0xffff_ffff)
                    .unwrap_or(0)
                    .to_be_bytes();
                p[i..i + 4].copy_from_slice(&v);
            }
        }
        5 => {
            // An AMQP frame header claiming a huge size.
            if p.len() >= 80 {
                let i = 54 + rng.below(p.len() - 60);
                p[i] = 3;
                p[i + 3..i + 7].copy_from_slice(&0xFFFF_FFF0u32.to_be_bytes());
            }
        }
        _ => {
            let i = rng.below(p.len());
            p[i] = p[i].wrapping_add(1);
        }
    }
}

/// Builds one mutated input: a packet list for `seeds[k]`'s link type.
pub fn make_input(rng: &mut Rng, seeds: &[Seed]) -> (LinkType, Vec<(Timestamp, u32, Vec<u8>)>) {
    let s = &seeds[rng.below(seeds.len())];
    let len = 1 + rng.below(24);
    let start = rng.below(s.packets.len().saturating_sub(len) + 1);
    let mut pkts: Vec<(Timestamp, u32, Vec<u8>)> =
        s.packets.iter().skip(start).take(len).cloned().collect();
    let n_mut = rng.below(6);
    for _ in 0..n_mut {
        let k = rng.below(pkts.len());
        match rng.below(10) {
            0 if !pkts.is_empty() => {
                let dup = pkts[k].clone();
                pkts.insert(k, dup);
            }
            1 if pkts.len() > 1 => {
                let j = rng.below(pkts.len());
                pkts.swap(k, j);
            }
            2 if !pkts.is_empty() => {
                pkts.remove(k);
            }
            3 if !pkts.is_empty() => {
                // Lie about lengths.
                pkts[k].1 = u32::try_from(rng.next_u64() & 0xffff).unwrap_or(0);
            }
            4 if !pkts.is_empty() => {
                let other = &seeds[rng.below(seeds.len())];
                if let Some(p) = other.packets.get(rng.below(other.packets.len())) {
                    pkts.insert(k, p.clone());
                }
            }
            5 if !pkts.is_empty() => {
                pkts[k].0 =
                    Timestamp(pkts[k].0 .0 - i64::try_from(rng.below(1 << 30)).unwrap_or(0));
            }
            _ => {
                if let Some(p) = pkts.get_mut(k) {
                    mutate_packet(rng, &mut p.2);
                }
            }
        }
    }
    (s.link, pkts)
}

/// Runs one input through the whole pipeline. Any panic is a bug.
pub fn run_input(link: LinkType, pkts: &[(Timestamp, u32, Vec<u8>)]) {
    let mut config = EngineConfig::default();
    config.reassembly.max_out_of_order_bytes = 4096;
    config.reassembly.max_out_of_order_segments = 8;
    let mut engine = Engine::new(config, link);
    for (ts, orig, data) in pkts {
        let caplen = u32::try_from(data.len()).unwrap_or(u32::MAX);
        engine.process(&PacketRecord {
            ts: *ts,
            caplen,
            orig_len: (*orig).max(caplen),
            data,
        });
    }
    let _ = engine.tick(pkts.last().map_or(Timestamp(0), |p| p.0));
    engine.finish();
    let rep = report::build(&engine, "fuzz", true);
    let _ = report::to_text(&rep);
    let _ = report::to_json(&rep);
}

/// Feeds mutated raw byte streams to the framer and the TLS reader, in random chunks and holes.
pub fn run_streams(rng: &mut Rng, seeds: &[Seed]) {
    let s = &seeds[rng.below(seeds.len())];
    let mut bytes: Vec<u8> = Vec::new();
    for _ in 0..1 + rng.below(6) {
        if let Some(p) = s.packets.get(rng.below(s.packets.len())) {
            let from = 54.min(p.2.len());
            bytes.extend_from_slice(&p.2[from..]);
        }
    }
    mutate_packet(rng, &mut bytes);
    let mut framer = Framer::new(rng.below(2) == 0);
    let mut tls = RecordReader::new(rng.below(2) == 0);
    let mut off = 0u64;
    let mut rest: &[u8] = &bytes;
    while !rest.is_empty() {
        let n = 1 + rng.below(rest.len());
        let (a, b) = rest.split_at(n);
        if rng.below(10) == 0 {
            framer.hole(off, n as u64, &mut |_| {});
            tls.hole(off, n as u64);
        } else {
            framer.data(off, a, &mut |_| {});
            tls.data(off, a, &mut |_| {});
        }
        off += n as u64;
        rest = b;
    }
}

/// Loads a capture file as a fuzz seed.
///
/// # Errors
/// When the file cannot be opened or read.
pub fn load_seed(path: &std::path::Path) -> Result<Seed, hbscope::capture::CaptureError> {
    let mut src = hbscope::capture::FileSource::open(path)?;
    let link = src.link_type();
    let mut packets = Vec::new();
    while let Some(rec) = src.next_packet()? {
        packets.push((rec.ts, rec.orig_len, rec.data.to_vec()));
    }
    Ok(Seed { link, packets })
}

/// Writes packets as a classic pcap (for saving a crashing input).
#[must_use]
pub fn to_pcap(link: LinkType, pkts: &[(Timestamp, u32, Vec<u8>)]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&0xa1b2_3c4du32.to_le_bytes());
    v.extend_from_slice(&2u16.to_le_bytes());
    v.extend_from_slice(&4u16.to_le_bytes());
    v.extend_from_slice(&[0; 8]);
    v.extend_from_slice(&262_144u32.to_le_bytes());
    v.extend_from_slice(&u32::try_from(link.0).unwrap_or(1).to_le_bytes());
    for (ts, orig, data) in pkts {
        let secs = u32::try_from(ts.0.div_euclid(1_000_000_000)).unwrap_or(0);
        let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
        v.extend_from_slice(&secs.to_le_bytes());
        v.extend_from_slice(&nanos.to_le_bytes());
        v.extend_from_slice(&u32::try_from(data.len()).unwrap_or(0).to_le_bytes());
        v.extend_from_slice(&orig.to_le_bytes());
        v.extend_from_slice(data);
    }
    v
}
