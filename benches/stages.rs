//! Criterion benchmarks of the hot stages, on an in-memory synthetic capture
//! (`hbscope::synth`, 300 connections, 60 s, 30% busy): decode, reassembly,
//! framing and the whole engine, each reported per packet (throughput in
//! elements) or per byte; and the engine on 30,000 mostly idle connections,
//! a packet at a time and in prefetching batches.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hbscope::capture::{LinkType, PacketRecord};
use hbscope::decode::{decode, Decoded};
use hbscope::engine::{Engine, EngineConfig};
use hbscope::model::{Direction, FlowKey, Timestamp};
use hbscope::proto::amqp::Framer;
use hbscope::reassembly::{ReassemblyConfig, StreamEvent, TcpStream};
use hbscope::synth::{generate, SynthConfig};

/// The capture's bytes and each record's (timestamp, caplen, orig_len, data range).
struct Capture {
    bytes: Vec<u8>,
    records: Vec<(Timestamp, u32, u32, std::ops::Range<usize>)>,
}

impl Capture {
    fn new() -> Self {
        Self::of(&SynthConfig {
            connections: 300,
            duration_s: 60,
            heartbeat_s: 4,
            stalls_per_cause: 1,
            ..SynthConfig::default()
        })
    }

    fn of(cfg: &SynthConfig) -> Self {
        let mut bytes = Vec::new();
        generate(cfg, &mut bytes).unwrap();
        let mut records = Vec::new();
        let mut at = 24;
        let le = |b: &[u8], i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        while at + 16 <= bytes.len() {
            let ts =
                Timestamp::from_parts(i64::from(le(&bytes, at)), i64::from(le(&bytes, at + 4)));
            let caplen = le(&bytes, at + 8);
            let orig = le(&bytes, at + 12);
            let start = at + 16;
            records.push((ts, caplen, orig, start..start + caplen as usize));
            at = start + caplen as usize;
        }
        Capture { bytes, records }
    }

    fn recs(&self) -> impl Iterator<Item = PacketRecord<'_>> {
        self.records
            .iter()
            .map(|(ts, caplen, orig, r)| PacketRecord {
                ts: *ts,
                caplen: *caplen,
                orig_len: *orig,
                data: &self.bytes[r.clone()],
            })
    }
}

fn stages(c: &mut Criterion) {
    let cap = Capture::new();
    let n = cap.records.len() as u64;
    let mut g = c.benchmark_group("per-packet");
    g.throughput(Throughput::Elements(n));
    g.sample_size(20);

    g.bench_function("decode", |b| {
        b.iter(|| {
            let mut tcp = 0u32;
            for rec in cap.recs() {
                if let Ok(Decoded::Tcp(s)) = decode(LinkType::ETHERNET, &rec) {
                    tcp += u32::from(s.flags.ack);
                }
            }
            black_box(tcp)
        });
    });

    // Reassembly alone: segments decoded up front, one TcpStream per flow.
    let segs: Vec<_> = cap
        .recs()
        .filter_map(|r| match decode(LinkType::ETHERNET, &r) {
            Ok(Decoded::Tcp(s)) => Some(s),
            _ => None,
        })
        .collect();
    g.bench_function("reassembly", |b| {
        b.iter(|| {
            let mut flows: std::collections::HashMap<FlowKey, TcpStream> =
                std::collections::HashMap::new();
            let mut events = 0u64;
            for s in &segs {
                let (key, dir) = FlowKey::from_packet(s.src, s.dst);
                flows
                    .entry(key)
                    .or_insert_with(|| TcpStream::new(ReassemblyConfig::default()))
                    .on_segment(dir, s, &mut |_, _| events += 1);
            }
            black_box(events)
        });
    });

    g.bench_function("engine", |b| {
        b.iter(|| {
            let mut e = Engine::new(EngineConfig::default(), LinkType::ETHERNET);
            for rec in cap.recs() {
                e.process(&rec);
            }
            e.finish();
            black_box(e.slots().len())
        });
    });
    g.finish();

    // Many idle connections (the shape of benches/run.sh's (b), smaller):
    // their state (~1.6 KB each, ~50 MB) does not fit the caches, which is
    // what `process_batch`'s prefetching is for.
    let idle = Capture::of(&SynthConfig {
        seed: 3,
        connections: 30_000,
        duration_s: 300,
        heartbeat_s: 60,
        busy_fraction: 0.01,
        msg_rate: 1.0,
        churn: 0.0,
        stalls_per_cause: 0,
        ..SynthConfig::default()
    });
    let recs: Vec<PacketRecord<'_>> = idle.recs().collect();
    let mut g = c.benchmark_group("many-idle-flows");
    g.throughput(Throughput::Elements(recs.len() as u64));
    g.sample_size(10);
    g.bench_function("engine-one-at-a-time", |b| {
        b.iter(|| {
            let mut e = Engine::new(EngineConfig::default(), LinkType::ETHERNET);
            for rec in &recs {
                e.process(rec);
            }
            e.finish();
            black_box(e.slots().len())
        });
    });
    g.bench_function("engine-batches", |b| {
        b.iter(|| {
            let mut e = Engine::new(EngineConfig::default(), LinkType::ETHERNET);
            for batch in recs.chunks(1024) {
                e.process_batch(batch);
            }
            e.finish();
            black_box(e.slots().len())
        });
    });
    g.finish();

    // Framing alone: every in-order data chunk of every direction, replayed
    // into fresh framers.
    let mut chunks: Vec<(FlowKey, Direction, u64, Vec<u8>)> = Vec::new();
    let mut flows: std::collections::HashMap<FlowKey, TcpStream> = std::collections::HashMap::new();
    for s in &segs {
        let (key, dir) = FlowKey::from_packet(s.src, s.dst);
        flows
            .entry(key)
            .or_insert_with(|| TcpStream::new(ReassemblyConfig::default()))
            .on_segment(dir, s, &mut |d, ev| {
                if let StreamEvent::Data { offset, bytes } = ev {
                    chunks.push((key, d, offset, bytes.to_vec()));
                }
            });
    }
    let total: u64 = chunks.iter().map(|c| c.3.len() as u64).sum();
    let mut g = c.benchmark_group("framing");
    g.throughput(Throughput::Bytes(total));
    g.sample_size(20);
    g.bench_function("framer", |b| {
        b.iter(|| {
            let mut framers: std::collections::HashMap<(FlowKey, Direction), Framer> =
                std::collections::HashMap::new();
            let mut frames = 0u64;
            for (key, d, off, bytes) in &chunks {
                framers
                    .entry((*key, *d))
                    .or_insert_with(|| Framer::new(true))
                    .data(*off, bytes, &mut |_| frames += 1);
            }
            black_box(frames)
        });
    });
    g.finish();
}

criterion_group!(benches, stages);
criterion_main!(benches);
