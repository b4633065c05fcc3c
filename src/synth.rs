//! A deterministic synthetic capture generator, for benchmarks and tests.
//!
//! [`generate`] writes a classic pcap file (nanosecond magic, Ethernet / IPv4 /
//! TCP, written by hand, streaming: memory grows with the number of
//! connections, never with the length of the file) of `connections`
//! concurrent AMQP 0-9-1 connections to one broker, and returns the verdicts
//! hbscope must reach on it ([`Summary::to_expect_json`], the shape of
//! `captures/*.expect.json` plus a `client_port` per gap).
//!
//! The traffic:
//! - every connection opens with SYN, SYN-ACK, ACK, the protocol header,
//!   Connection.Start / Start-Ok / Tune / Tune-Ok / Open / Open-Ok and
//!   Channel.Open / Open-Ok, with heartbeat `T` in Tune-Ok;
//! - each side sends a heartbeat frame when it has sent nothing for about
//!   `T/2` (the timer restarts on every send), and the receiving kernel ACKs
//!   every data segment (a pure ACK about 40 µs later; the capture point is
//!   the broker host);
//! - busy connections are publishers (Basic.Publish + content header + body,
//!   100 B - 1 KB bodies, 1 in 4 of 4 - 16 KB) or consumers (Basic.Deliver +
//!   header + body from the broker, Basic.Ack from the client); payloads are
//!   cut into `mss`-byte segments, ACKed every second segment;
//! - a fraction of the connections closes along the way (Connection.Close,
//!   Close-Ok, FIN both ways) and is replaced by a new connection from the
//!   same client host.
//!
//! Injected silences, each on its own idle connection, and the verdict each
//! must produce:
//! - **client-stall**: after one last heartbeat the client's application is
//!   silent, its kernel keeps ACKing the broker's heartbeats, the broker resets
//!   the connection 2.5-3 x `T` later -> client-to-broker, client-stall,
//!   broker-reset;
//! - **broker-stall**: the broker's application is silent, its kernel ACKs the
//!   client's heartbeats, the client gives up after ~2 x `T` with a FIN; the
//!   broker flushes one queued heartbeat later and the client's kernel answers
//!   RST -> broker-to-client, broker-stall, client-closed;
//! - **peer-unreachable**: after its last heartbeat nothing at all comes from
//!   the client; the broker sends one more heartbeat, retransmits it with
//!   exponential back-off and resets the connection -> both directions,
//!   peer-unreachable, broker-reset;
//! - **capture-loss**: three consecutive client heartbeats are left out of the
//!   file, while the broker's ACKs of them are kept -> client-to-broker,
//!   capture-loss, survived.
//!
//! Checksums: the IPv4 header checksum is computed, the TCP checksum is left 0
//! (hbscope, tcpdump and tshark do not check it by default).

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::io::{self, Write};

use serde_json::{json, Value};

/// Nanoseconds per second.
const NS: i64 = 1_000_000_000;
/// Capture start: 2026-01-01T00:00:00Z.
const EPOCH_S: i64 = 1_767_225_600;
/// Delay of a kernel ACK after the data it acknowledges.
const ACK_DELAY: i64 = 40_000;
/// Broker address 10.0.0.1, port 5672.
const BROKER_IP: u32 = 0x0A00_0001;
const BROKER_PORT: u16 = 5672;
const FRAME_MAX: u32 = 131_072;
/// Connections per client host (a host's reconnects keep its address).
const CONNS_PER_HOST: u32 = 100;

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const PSH: u8 = 0x08;
const ACK: u8 = 0x10;

/// What to generate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SynthConfig {
    /// PRNG seed: the same configuration and seed give the same bytes.
    pub seed: u64,
    /// Concurrent connections.
    pub connections: u32,
    /// Capture length in seconds.
    pub duration_s: u32,
    /// Negotiated heartbeat timeout `T` in seconds.
    pub heartbeat_s: u16,
    /// Fraction of connections that are busy (half publishers, half consumers).
    pub busy_fraction: f64,
    /// Messages per second per busy connection.
    pub msg_rate: f64,
    /// Fraction of connections closed (and replaced) along the way.
    pub churn: f64,
    /// Silences injected per cause (client-stall, broker-stall,
    /// peer-unreachable, capture-loss).
    pub stalls_per_cause: u32,
    /// TCP maximum segment size.
    pub mss: u32,
}

impl Default for SynthConfig {
    fn default() -> Self {
        SynthConfig {
            seed: 1,
            connections: 200,
            duration_s: 120,
            heartbeat_s: 4,
            busy_fraction: 0.3,
            msg_rate: 4.0,
            churn: 0.2,
            stalls_per_cause: 2,
            mss: 1448,
        }
    }
}

/// Why a configuration cannot be generated.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// The configuration is impossible.
    #[error("synthetic capture: {0}")]
    Config(String),
    /// Writing failed.
    #[error("synthetic capture: cannot write: {0}")]
    Io(#[from] io::Error),
}

/// One injected silence and the verdict it must produce.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ExpectedGap {
    /// Client port of the connection.
    pub client_port: u16,
    /// "client-to-broker" | "broker-to-client".
    pub direction: &'static str,
    /// The cause's report name.
    pub cause: &'static str,
    /// The consequence's report name.
    pub consequence: &'static str,
}

/// What was written.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// The configuration.
    pub config: SynthConfig,
    /// Packets written.
    pub packets: u64,
    /// Bytes written (the file size).
    pub bytes: u64,
    /// Packets left out on purpose (capture-loss injections).
    pub dropped_packets: u64,
    /// AMQP connections opened (each is one report connection).
    pub connections_opened: u64,
    /// The gaps hbscope must report, sorted.
    pub gaps: Vec<ExpectedGap>,
}

impl Summary {
    /// The expected verdicts in the `captures/*.expect.json` shape, with
    /// `client_port` on each gap.
    #[must_use]
    pub fn to_expect_json(&self) -> Value {
        let c = &self.config;
        json!({
            "description": format!(
                "synthetic: {} concurrent connections for {} s, heartbeat {} s, {:.0}% busy at {} msg/s, churn {:.0}%, {} injected silence(s) per cause",
                c.connections, c.duration_s, c.heartbeat_s, c.busy_fraction * 100.0, c.msg_rate, c.churn * 100.0, c.stalls_per_cause
            ),
            "provenance": [format!("hbscope synth --seed {} --connections {} --duration {} --heartbeat {} --busy {} --rate {} --churn {} --stalls {} --mss {}",
                c.seed, c.connections, c.duration_s, c.heartbeat_s, c.busy_fraction, c.msg_rate, c.churn, c.stalls_per_cause, c.mss)],
            "connections": self.connections_opened,
            "heartbeat": {"value_s": c.heartbeat_s, "source": "tune-ok"},
            "gaps": self.gaps.iter().map(|g| json!({
                "client_port": g.client_port,
                "direction": g.direction,
                "cause": g.cause,
                "consequence": g.consequence,
            })).collect::<Vec<_>>(),
            "packets": self.packets,
            "bytes": self.bytes,
        })
    }
}

/// A small, fast, seedable PRNG (SplitMix64).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    #[allow(clippy::cast_precision_loss)]
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in `[lo, hi]`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        if hi <= lo {
            return lo;
        }
        let span = hi.abs_diff(lo).saturating_add(1);
        lo.saturating_add_unsigned(self.next_u64() % span)
    }
}

#[allow(clippy::cast_possible_truncation)]
fn secs_f(s: f64) -> i64 {
    (s * 1e9) as i64
}

// ---------------------------------------------------------------- AMQP bytes

fn shortstr(out: &mut Vec<u8>, s: &str) {
    let b = &s.as_bytes()[..s.len().min(255)];
    out.push(u8::try_from(b.len()).unwrap_or(255));
    out.extend_from_slice(b);
}

fn longstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(&u32::try_from(s.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(s);
}

fn table(out: &mut Vec<u8>, entries: &[(&str, &str)]) {
    let mut t = Vec::new();
    for (k, v) in entries {
        shortstr(&mut t, k);
        t.push(b'S');
        longstr(&mut t, v.as_bytes());
    }
    longstr(out, &t);
}

fn frame(out: &mut Vec<u8>, ftype: u8, channel: u16, payload: &[u8]) {
    out.push(ftype);
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&u32::try_from(payload.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(payload);
    out.push(0xCE);
}

fn method(out: &mut Vec<u8>, channel: u16, class: u16, method: u16, args: &[u8]) {
    let mut p = Vec::with_capacity(4 + args.len());
    p.extend_from_slice(&class.to_be_bytes());
    p.extend_from_slice(&method.to_be_bytes());
    p.extend_from_slice(args);
    frame(out, 1, channel, &p);
}

fn heartbeat_frame() -> Vec<u8> {
    vec![8, 0, 0, 0, 0, 0, 0, 0xCE]
}

fn tune_args(heartbeat: u16) -> Vec<u8> {
    let mut a = Vec::new();
    a.extend_from_slice(&2047u16.to_be_bytes());
    a.extend_from_slice(&FRAME_MAX.to_be_bytes());
    a.extend_from_slice(&heartbeat.to_be_bytes());
    a
}

/// A content-carrying message: `class 60` method (with `args`), header, body.
fn content(out: &mut Vec<u8>, method_id: u16, args: &[u8], body_len: usize) {
    method(out, 1, 60, method_id, args);
    let mut h = Vec::with_capacity(14);
    h.extend_from_slice(&60u16.to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    h.extend_from_slice(&(body_len as u64).to_be_bytes());
    h.extend_from_slice(&0u16.to_be_bytes());
    frame(out, 2, 1, &h);
    let start = out.len();
    out.extend_from_slice(&[3, 0, 1]);
    out.extend_from_slice(&u32::try_from(body_len).unwrap_or(0).to_be_bytes());
    out.resize(start + 7 + body_len, b'x');
    out.push(0xCE);
}

// ---------------------------------------------------------------- simulation

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Idle,
    Publisher,
    Consumer,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cause {
    ClientStall,
    BrokerStall,
    PeerUnreachable,
    CaptureLoss,
}

/// Side indices.
const C: usize = 0;
const B: usize = 1;

#[derive(Debug)]
struct Pkt {
    ts: i64,
    from: usize,
    flags: u8,
    seq: u32,
    ack: u32,
    payload: Vec<u8>,
    drop: bool,
}

/// A silence being injected on a connection.
#[derive(Debug, Clone, Copy)]
struct Injection {
    cause: Cause,
    /// Armed from this time: the silent side's next heartbeat is its last.
    at: i64,
    /// Set once the last byte went out.
    started: bool,
    /// Capture-loss: heartbeats still to leave out.
    to_drop: u32,
    /// The ending event (broker RST, client FIN) time.
    end_at: i64,
}

#[derive(Debug)]
struct Slot {
    host: u32,
    kind: Kind,
    churn: bool,
    injection: Option<Injection>,
    /// Connection state.
    open: bool,
    port: u16,
    snd: [u32; 2],
    app_silent: [bool; 2],
    next_hb: [i64; 2],
    next_msg: i64,
    close_at: i64,
    reopen_at: i64,
    last_ts: i64,
    delivery_tag: u64,
    queue: VecDeque<Pkt>,
}

struct Sim<'a> {
    cfg: SynthConfig,
    rng: Rng,
    ports: Vec<u16>,
    out: &'a mut dyn Write,
    buf: Vec<u8>,
    end: i64,
    summary: Summary,
}

impl Sim<'_> {
    fn half_t(&mut self) -> i64 {
        // T/2 with ±4% jitter: a side's silence never reaches T.
        let base = i64::from(self.cfg.heartbeat_s) * NS / 2;
        base + self.rng.range(-base / 25, base / 25)
    }

    fn msg_gap(&mut self) -> i64 {
        // Exponential inter-arrival times.
        let u = self.rng.unit().max(1e-12);
        secs_f(-u.ln() / self.cfg.msg_rate.max(1e-6))
    }

    fn next_port(&mut self, host: u32) -> u16 {
        let idx = host.wrapping_sub(0x0A01_0001) as usize % self.ports.len();
        let p = &mut self.ports[idx];
        let port = *p;
        *p = if *p >= 60_999 { 32_768 } else { *p + 1 };
        port
    }

    /// Plans a segment from side `from` carrying `payload`, at `ts` or later.
    fn seg(s: &mut Slot, ts: i64, from: usize, flags: u8, payload: Vec<u8>) -> i64 {
        let ts = ts.max(s.last_ts + 1_000);
        s.last_ts = ts;
        let seq = s.snd[from];
        let ack = s.snd[1 - from];
        let adv = u32::try_from(payload.len()).unwrap_or(0)
            + u32::from(flags & (SYN | FIN) != 0 && flags & RST == 0);
        s.snd[from] = seq.wrapping_add(adv);
        s.queue.push_back(Pkt {
            ts,
            from,
            flags,
            seq,
            ack: if flags & ACK != 0 { ack } else { 0 },
            payload,
            drop: false,
        });
        ts
    }

    /// Sends `bytes` from side `from` cut into MSS segments; the peer's kernel
    /// ACKs every second segment and the last. Returns the time of the last packet.
    fn send(&self, s: &mut Slot, ts: i64, from: usize, bytes: &[u8]) -> i64 {
        let mss = self.cfg.mss.max(64) as usize;
        let mut t = ts;
        let n = bytes.len().div_ceil(mss);
        for (i, chunk) in bytes.chunks(mss).enumerate() {
            t = Self::seg(s, t + 5_000, from, ACK | PSH, chunk.to_vec());
            if i % 2 == 1 || i + 1 == n {
                t = Self::seg(s, t + ACK_DELAY, 1 - from, ACK, Vec::new());
            }
        }
        s.next_hb[from] = t + i64::from(self.cfg.heartbeat_s) * NS / 2;
        t
    }

    fn open(&mut self, i: usize, s: &mut Slot, ts: i64) {
        s.port = self.next_port(s.host);
        s.open = true;
        s.app_silent = [false, false];
        s.snd = [
            u32::try_from(self.rng.next_u64() >> 32).unwrap_or(1),
            u32::try_from(self.rng.next_u64() >> 32).unwrap_or(1),
        ];
        s.queue.clear();
        self.summary.connections_opened += 1;
        let hb = self.cfg.heartbeat_s;
        let mut t = Self::seg(s, ts, C, SYN, Vec::new());
        t = Self::seg(s, t + 20_000, B, SYN | ACK, Vec::new());
        t = Self::seg(s, t + 20_000, C, ACK, Vec::new());
        t = self.send(s, t + 50_000, C, b"AMQP\x00\x00\x09\x01");
        let mut m = Vec::new();
        let mut a = vec![0u8, 9];
        table(
            &mut a,
            &[
                ("product", "RabbitMQ"),
                ("version", "3.13.7"),
                ("platform", "Erlang/OTP 26.2.5"),
                ("cluster_name", "rabbit@synth"),
                (
                    "copyright",
                    "Copyright (c) 2007-2024 Broadcom Inc and/or its subsidiaries",
                ),
                (
                    "information",
                    "Licensed under the MPL 2.0. Website: https://rabbitmq.com",
                ),
            ],
        );
        longstr(&mut a, b"AMQPLAIN PLAIN");
        longstr(&mut a, b"en_US");
        method(&mut m, 0, 10, 10, &a);
        t = self.send(s, t + 300_000, B, &m);
        let name = format!("synth-{i}:{}", s.port);
        let mut a = Vec::new();
        table(
            &mut a,
            &[
                ("product", "py-amqp"),
                ("version", "5.4.2"),
                ("platform", "Python 3.11.2"),
                ("connection_name", &name),
            ],
        );
        shortstr(&mut a, "PLAIN");
        longstr(&mut a, b"\0guest\0guest");
        shortstr(&mut a, "en_US");
        m.clear();
        method(&mut m, 0, 10, 11, &a);
        t = self.send(s, t + 200_000, C, &m);
        m.clear();
        method(&mut m, 0, 10, 30, &tune_args(60));
        t = self.send(s, t + 100_000, B, &m);
        m.clear();
        method(&mut m, 0, 10, 31, &tune_args(hb));
        let mut a = Vec::new();
        shortstr(&mut a, "/");
        shortstr(&mut a, "");
        a.push(0);
        method(&mut m, 0, 10, 40, &a);
        t = self.send(s, t + 100_000, C, &m);
        m.clear();
        method(&mut m, 0, 10, 41, &[0]);
        t = self.send(s, t + 150_000, B, &m);
        m.clear();
        method(&mut m, 1, 20, 10, &[0]);
        t = self.send(s, t + 100_000, C, &m);
        m.clear();
        method(&mut m, 1, 20, 11, &[0, 0, 0, 0]);
        t = self.send(s, t + 100_000, B, &m);
        let half = self.half_t();
        s.next_hb = [t + half, t + self.half_t()];
        s.next_msg = if s.kind == Kind::Idle {
            i64::MAX
        } else {
            t + self.msg_gap()
        };
        s.close_at = if s.churn && self.rng.unit() < self.cfg.churn {
            t + self.rng.range(5 * NS, self.end)
        } else {
            i64::MAX
        };
    }

    fn body_len(&mut self) -> usize {
        let n = if self.rng.next_u64().is_multiple_of(4) {
            self.rng.range(4_096, 16_384)
        } else {
            self.rng.range(100, 1_000)
        };
        usize::try_from(n).unwrap_or(100)
    }

    fn message(&mut self, s: &mut Slot, t: i64) {
        let body = self.body_len();
        let mut m = Vec::with_capacity(body + 128);
        if s.kind == Kind::Publisher {
            let mut a = Vec::new();
            a.extend_from_slice(&0u16.to_be_bytes());
            shortstr(&mut a, "");
            shortstr(&mut a, "synth.work");
            a.push(0);
            content(&mut m, 40, &a, body);
            self.send(s, t, C, &m);
        } else {
            s.delivery_tag += 1;
            let mut a = Vec::new();
            shortstr(&mut a, "amq.ctag-synth");
            a.extend_from_slice(&s.delivery_tag.to_be_bytes());
            a.push(0);
            shortstr(&mut a, "");
            shortstr(&mut a, "synth.work");
            content(&mut m, 60, &a, body);
            let t = self.send(s, t, B, &m);
            let mut ack = Vec::new();
            let mut a = s.delivery_tag.to_be_bytes().to_vec();
            a.push(0);
            method(&mut ack, 1, 60, 80, &a);
            let delay = self.rng.range(100_000, 500_000);
            self.send(s, t + delay, C, &ack);
        }
        s.next_msg = t + self.msg_gap();
    }

    fn close(&mut self, s: &mut Slot, t: i64) {
        let mut m = Vec::new();
        let mut a = 200u16.to_be_bytes().to_vec();
        shortstr(&mut a, "Normal shutdown");
        a.extend_from_slice(&[0, 0, 0, 0]);
        method(&mut m, 0, 10, 50, &a);
        let t = self.send(s, t, C, &m);
        m.clear();
        method(&mut m, 0, 10, 51, &[]);
        let t = self.send(s, t + 200_000, B, &m);
        let t = Self::seg(s, t + 100_000, C, FIN | ACK, Vec::new());
        let t = Self::seg(s, t + 50_000, B, FIN | ACK, Vec::new());
        let t = Self::seg(s, t + 20_000, C, ACK, Vec::new());
        let reopen = t + self.rng.range(10_000_000, NS);
        self.dead(s, reopen);
    }

    fn dead(&mut self, s: &mut Slot, reopen_at: i64) {
        s.open = false;
        s.injection = None;
        s.reopen_at = reopen_at;
        s.close_at = i64::MAX;
    }

    /// A heartbeat from side `from` at `t`, with the injection rules.
    fn heartbeat(&mut self, s: &mut Slot, t: i64, from: usize) {
        let t_hb = i64::from(self.cfg.heartbeat_s) * NS;
        let Some(mut inj) = s.injection else {
            self.send(s, t, from, &heartbeat_frame());
            s.next_hb[from] = t + self.half_t();
            return;
        };
        let armed = !inj.started && t >= inj.at;
        match inj.cause {
            Cause::ClientStall | Cause::PeerUnreachable if armed && from == C => {
                self.send(s, t, C, &heartbeat_frame());
                inj.started = true;
                inj.end_at = t + self.rng.range(t_hb * 5 / 2, t_hb * 3);
                s.app_silent[C] = true;
                s.next_hb[C] = i64::MAX;
            }
            Cause::BrokerStall if armed && from == B => {
                self.send(s, t, B, &heartbeat_frame());
                inj.started = true;
                inj.end_at = t + 2 * t_hb + self.rng.range(0, t_hb / 4);
                s.app_silent[B] = true;
                s.next_hb[B] = i64::MAX;
            }
            Cause::PeerUnreachable if inj.started && from == B => {
                // One new heartbeat nobody ACKs, retransmitted with back-off
                // (cwnd 1: nothing new goes out), then the broker's reset.
                let t = Self::seg(s, t, B, ACK | PSH, heartbeat_frame());
                let seq = s.snd[B].wrapping_sub(8);
                let mut rto = 200_000_000;
                let mut rt = t + rto;
                while rt < inj.end_at {
                    rt = rt.max(s.last_ts + 1_000);
                    s.last_ts = rt;
                    s.queue.push_back(Pkt {
                        ts: rt,
                        from: B,
                        flags: ACK | PSH,
                        seq,
                        ack: s.snd[C],
                        payload: heartbeat_frame(),
                        drop: false,
                    });
                    rto *= 2;
                    rt += rto;
                }
                Self::seg(s, inj.end_at, B, RST | ACK, Vec::new());
                let reopen = inj.end_at + self.rng.range(NS, 2 * t_hb);
                self.dead(s, reopen);
                return;
            }
            Cause::CaptureLoss if armed && from == C => {
                inj.started = true;
                inj.to_drop = 3;
                inj.end_at = i64::MAX;
                self.send(s, t, C, &heartbeat_frame());
            }
            Cause::CaptureLoss if inj.started && from == C && inj.to_drop > 0 => {
                let before = s.queue.len();
                self.send(s, t, C, &heartbeat_frame());
                // Leave the data segment out; keep the broker's ACK.
                if let Some(p) = s.queue.get_mut(before) {
                    p.drop = true;
                }
                inj.to_drop -= 1;
            }
            _ => {
                self.send(s, t, from, &heartbeat_frame());
            }
        }
        s.next_hb[from] = if s.app_silent[from] {
            i64::MAX
        } else {
            t + self.half_t()
        };
        s.injection = Some(inj);
    }

    /// The end of an injected silence.
    fn end_injection(&mut self, s: &mut Slot, inj: Injection) {
        let t_hb = i64::from(self.cfg.heartbeat_s) * NS;
        match inj.cause {
            Cause::ClientStall => {
                let t = Self::seg(s, inj.end_at, B, RST | ACK, Vec::new());
                let reopen = t + self.rng.range(NS, 2 * t_hb);
                self.dead(s, reopen);
            }
            Cause::BrokerStall => {
                // The client gives up: FIN; the broker kernel ACKs it; later the
                // broker flushes a queued heartbeat and the closed socket answers RST.
                let t = Self::seg(s, inj.end_at, C, FIN | ACK, Vec::new());
                let t = Self::seg(s, t + ACK_DELAY, B, ACK, Vec::new());
                let t = Self::seg(s, t + NS / 2, B, ACK | PSH, heartbeat_frame());
                let t = Self::seg(s, t + ACK_DELAY, C, RST, Vec::new());
                let reopen = t + self.rng.range(10_000_000, NS);
                self.dead(s, reopen);
            }
            Cause::PeerUnreachable | Cause::CaptureLoss => {}
        }
    }

    /// Plans the slot's next action; returns false when it has nothing more to do.
    fn step(&mut self, i: usize, s: &mut Slot) -> bool {
        if !s.open {
            if s.reopen_at >= self.end {
                return false;
            }
            let t = s.reopen_at;
            self.open(i, s, t);
            return true;
        }
        let inj_end = s
            .injection
            .filter(|j| j.started)
            .map_or(i64::MAX, |j| j.end_at);
        let t = [s.next_hb[C], s.next_hb[B], s.next_msg, s.close_at, inj_end]
            .into_iter()
            .min()
            .unwrap_or(i64::MAX);
        if t >= self.end {
            return false;
        }
        if t == inj_end {
            if let Some(inj) = s.injection {
                self.end_injection(s, inj);
            }
        } else if t == s.close_at {
            self.close(s, t);
        } else if t == s.next_msg {
            self.message(s, t);
        } else if t == s.next_hb[C] {
            self.heartbeat(s, t, C);
        } else {
            self.heartbeat(s, t, B);
        }
        true
    }

    fn write(&mut self, s: &Slot, p: &Pkt) -> io::Result<()> {
        if p.drop {
            self.summary.dropped_packets += 1;
            return Ok(());
        }
        let client_ip = s.host;
        let (src, sport, dst, dport) = if p.from == C {
            (client_ip, s.port, BROKER_IP, BROKER_PORT)
        } else {
            (BROKER_IP, BROKER_PORT, client_ip, s.port)
        };
        let b = &mut self.buf;
        b.clear();
        let ip_len = 40 + p.payload.len();
        let frame_len = 14 + ip_len;
        let ts = EPOCH_S * NS + p.ts;
        let secs = u32::try_from(ts / NS).unwrap_or(0);
        let nanos = u32::try_from(ts % NS).unwrap_or(0);
        let flen = u32::try_from(frame_len).unwrap_or(0);
        b.extend_from_slice(&secs.to_le_bytes());
        b.extend_from_slice(&nanos.to_le_bytes());
        b.extend_from_slice(&flen.to_le_bytes());
        b.extend_from_slice(&flen.to_le_bytes());
        // Ethernet.
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, u8::from(p.from == C) + 1]);
        b.extend_from_slice(&[0x02, 0, 0, 0, 0, u8::from(p.from == B) + 1]);
        b.extend_from_slice(&[0x08, 0x00]);
        // IPv4.
        let ip_start = b.len();
        b.extend_from_slice(&[0x45, 0]);
        b.extend_from_slice(&u16::try_from(ip_len).unwrap_or(0).to_be_bytes());
        b.extend_from_slice(&[0, 0, 0x40, 0, 64, 6, 0, 0]);
        b.extend_from_slice(&src.to_be_bytes());
        b.extend_from_slice(&dst.to_be_bytes());
        let mut sum: u32 = 0;
        for w in b[ip_start..ip_start + 20].chunks_exact(2) {
            sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
        }
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        let csum = !u16::try_from(sum).unwrap_or(0);
        b[ip_start + 10..ip_start + 12].copy_from_slice(&csum.to_be_bytes());
        // TCP.
        b.extend_from_slice(&sport.to_be_bytes());
        b.extend_from_slice(&dport.to_be_bytes());
        b.extend_from_slice(&p.seq.to_be_bytes());
        b.extend_from_slice(&p.ack.to_be_bytes());
        b.extend_from_slice(&[0x50, p.flags, 0xFF, 0xFF, 0, 0, 0, 0]);
        b.extend_from_slice(&p.payload);
        self.out.write_all(b)?;
        self.summary.packets += 1;
        self.summary.bytes += b.len() as u64;
        Ok(())
    }
}

fn expected(cause: Cause, port: u16) -> Vec<ExpectedGap> {
    let g = |direction, cause, consequence| ExpectedGap {
        client_port: port,
        direction,
        cause,
        consequence,
    };
    match cause {
        Cause::ClientStall => vec![g("client-to-broker", "client-stall", "broker-reset")],
        Cause::BrokerStall => vec![g("broker-to-client", "broker-stall", "client-closed")],
        Cause::PeerUnreachable => vec![
            g("client-to-broker", "peer-unreachable", "broker-reset"),
            g("broker-to-client", "peer-unreachable", "broker-reset"),
        ],
        Cause::CaptureLoss => vec![g("client-to-broker", "capture-loss", "survived")],
    }
}

/// Writes the synthetic capture to `out` (buffer it: this writes one packet
/// at a time) and returns what was written and the verdicts to expect.
///
/// # Errors
/// [`SynthError::Config`] when the configuration cannot be generated (no
/// connections, a heartbeat of 0, a capture too short for the injected
/// silences, too few idle connections to host them); [`SynthError::Io`] when
/// writing fails.
pub fn generate(cfg: &SynthConfig, out: &mut dyn Write) -> Result<Summary, SynthError> {
    let t_hb = i64::from(cfg.heartbeat_s) * NS;
    let end = i64::from(cfg.duration_s) * NS;
    if cfg.connections == 0 || cfg.heartbeat_s == 0 {
        return Err(SynthError::Config(
            "need at least one connection and a heartbeat of at least 1 s".into(),
        ));
    }
    let injections = 4 * cfg.stalls_per_cause;
    // Openings spread over the first tenth of the capture (at most 10 s).
    let open_spread = (end / 10).min(10 * NS);
    let first_inj = open_spread + 2 * t_hb;
    let last_inj = end - 4 * t_hb - 5 * NS;
    if injections > 0 && last_inj <= first_inj {
        return Err(SynthError::Config(format!(
            "a {} s capture is too short for injected silences with heartbeat {} s (needs more than {} s)",
            cfg.duration_s,
            cfg.heartbeat_s,
            (first_inj + 4 * t_hb + 5 * NS) / NS
        )));
    }
    let mut rng = Rng::new(cfg.seed);
    let n = cfg.connections as usize;
    let hosts = cfg.connections.div_ceil(CONNS_PER_HOST);
    let mut slots: Vec<Slot> = (0..cfg.connections)
        .map(|i| {
            let busy = rng.unit() < cfg.busy_fraction;
            let kind = match (busy, rng.next_u64() % 2) {
                (false, _) => Kind::Idle,
                (true, 0) => Kind::Publisher,
                (true, _) => Kind::Consumer,
            };
            Slot {
                host: 0x0A01_0000 + (i % hosts) + 1,
                kind,
                churn: true,
                injection: None,
                open: false,
                port: 0,
                snd: [0, 0],
                app_silent: [false, false],
                next_hb: [i64::MAX; 2],
                next_msg: i64::MAX,
                close_at: i64::MAX,
                reopen_at: rng.range(0, open_spread),
                last_ts: 0,
                delivery_tag: 0,
                queue: VecDeque::new(),
            }
        })
        .collect();
    // Injected silences go to idle connections that never churn.
    let idle: Vec<usize> = (0..n).filter(|&i| slots[i].kind == Kind::Idle).collect();
    if (idle.len() as u64) < u64::from(injections) {
        return Err(SynthError::Config(format!(
            "{} idle connections cannot host {injections} injected silences; add connections or lower --busy",
            idle.len()
        )));
    }
    let mut chosen = idle;
    for k in 0..injections as usize {
        let j = k + usize::try_from(rng.next_u64() % (chosen.len() - k) as u64).unwrap_or(0);
        chosen.swap(k, j);
    }
    let causes = [
        Cause::ClientStall,
        Cause::BrokerStall,
        Cause::PeerUnreachable,
        Cause::CaptureLoss,
    ];
    for k in 0..injections as usize {
        let s = &mut slots[chosen[k]];
        s.churn = false;
        s.injection = Some(Injection {
            cause: causes[k % 4],
            at: rng.range(first_inj, last_inj),
            started: false,
            to_drop: 0,
            end_at: i64::MAX,
        });
    }

    let mut header = Vec::with_capacity(24);
    header.extend_from_slice(&0xA1B2_3C4Du32.to_le_bytes());
    header.extend_from_slice(&2u16.to_le_bytes());
    header.extend_from_slice(&4u16.to_le_bytes());
    header.extend_from_slice(&0i32.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&262_144u32.to_le_bytes());
    header.extend_from_slice(&1u32.to_le_bytes());
    out.write_all(&header)?;

    let mut sim = Sim {
        cfg: *cfg,
        rng,
        ports: vec![32_768; hosts as usize],
        out,
        buf: Vec::with_capacity(70_000),
        end,
        summary: Summary {
            config: *cfg,
            packets: 0,
            bytes: 24,
            dropped_packets: 0,
            connections_opened: 0,
            gaps: Vec::new(),
        },
    };
    let mut heap: BinaryHeap<Reverse<(i64, usize)>> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| Reverse((s.reopen_at, i)))
        .collect();
    while let Some(Reverse((_, i))) = heap.pop() {
        let s = &mut slots[i];
        if let Some(p) = s.queue.pop_front() {
            if p.ts < end {
                sim.write(s, &p)?;
            }
        } else {
            let inj_before = s.injection.map(|j| (j.cause, j.started, s.port));
            if !sim.step(i, s) {
                continue;
            }
            // An injection that started in this step is now certain.
            if let Some((cause, false, port)) = inj_before {
                if s.injection.is_some_and(|j| j.started) {
                    sim.summary.gaps.extend(expected(cause, port));
                }
            }
        }
        let next = match s.queue.front() {
            Some(p) => p.ts,
            None if s.open => [s.next_hb[C], s.next_hb[B], s.next_msg, s.close_at]
                .into_iter()
                .chain(s.injection.filter(|j| j.started).map(|j| j.end_at))
                .min()
                .unwrap_or(i64::MAX),
            None => s.reopen_at,
        };
        if next < end {
            heap.push(Reverse((next.max(s.last_ts), i)));
        }
    }
    sim.summary.gaps.sort();
    Ok(sim.summary)
}

/// The expected-verdicts file beside a capture: `x.pcap` -> `x.expect.json`.
#[must_use]
pub fn expect_path(pcap: &std::path::Path) -> std::path::PathBuf {
    pcap.with_extension("expect.json")
}

/// Writes the capture to `pcap` (through a 1 MiB buffer) and the expected
/// verdicts to [`expect_path`]. Both appear only once both are complete: a
/// failure leaves neither (nor a partial one) behind, and neither does a
/// `stop` flag set meanwhile (SIGINT: the next write fails and the
/// temporary file is removed).
///
/// # Errors
/// As [`generate`], plus creating or writing either file.
pub fn write_files(
    cfg: &SynthConfig,
    pcap: &std::path::Path,
    stop: Option<std::sync::Arc<std::sync::atomic::AtomicBool>>,
) -> Result<Summary, SynthError> {
    use crate::os::outfile::AtomicFile;
    let mut file = AtomicFile::create(pcap)?;
    if let Some(stop) = stop {
        file = file.stop_on(stop);
    }
    let mut w = io::BufWriter::with_capacity(1 << 20, &mut file);
    let summary = generate(cfg, &mut w)?;
    w.flush()?;
    drop(w);
    let text = serde_json::to_string_pretty(&summary.to_expect_json())
        .map_err(|e| SynthError::Io(io::Error::other(e)))?;
    let mut expect = AtomicFile::create(&expect_path(pcap))?;
    expect.write_all(text.as_bytes())?;
    expect.write_all(b"\n")?;
    // Both are complete: only a rename (same directory) can fail now.
    file.commit()?;
    expect.commit()?;
    Ok(summary)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes() {
        let cfg = SynthConfig {
            connections: 20,
            duration_s: 40,
            stalls_per_cause: 1,
            ..SynthConfig::default()
        };
        let mut a = Vec::new();
        let mut b = Vec::new();
        let sa = generate(&cfg, &mut a).unwrap();
        let sb = generate(&cfg, &mut b).unwrap();
        assert_eq!(a, b);
        assert_eq!(sa, sb);
        assert_eq!(sa.gaps.len(), 5);
        assert_eq!(sa.bytes as usize, a.len());
    }

    #[test]
    fn too_short_is_refused() {
        let cfg = SynthConfig {
            duration_s: 10,
            ..SynthConfig::default()
        };
        assert!(matches!(
            generate(&cfg, &mut Vec::new()),
            Err(SynthError::Config(_))
        ));
    }
}
