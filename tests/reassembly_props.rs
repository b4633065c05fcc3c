//! Property tests for `hbscope::reassembly`: random segmentations, orders,
//! duplicates, losses, truncations and sequence wraps against the obvious model
//! (the original byte stream).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};

use hbscope::model::{Direction, Endpoint, TcpFlags, TcpSegment, Timestamp};
use hbscope::reassembly::{HoleKind, ReassemblyConfig, StreamEvent, TcpStream};
use proptest::prelude::*;

const PEER_ISN: u32 = 9000;

/// Owned copy of the events of one direction.
#[derive(Debug, Default)]
struct Log {
    data: Vec<(u64, Vec<u8>)>,
    holes: Vec<(u64, u64, HoleKind)>,
    new: Vec<(u64, u64)>,
    retrans: Vec<(u64, u64)>,
    keepalives: u64,
}

fn record(log: &mut Log, dir: Direction, ev: StreamEvent<'_>) {
    if dir != Direction::AtoB {
        return;
    }
    match ev {
        StreamEvent::Data { offset, bytes } => log.data.push((offset, bytes.to_vec())),
        StreamEvent::Hole { offset, len, kind } => log.holes.push((offset, len, kind)),
        StreamEvent::NewBytes { offset, len } => log.new.push((offset, len)),
        StreamEvent::Retransmission { offset, len } => log.retrans.push((offset, len)),
        StreamEvent::KeepAlive => log.keepalives += 1,
        _ => {}
    }
}

fn ep(port: u16) -> Endpoint {
    Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn segment(
    seq: u32,
    ack: Option<u32>,
    flags: TcpFlags,
    payload: &[u8],
    len: u32,
) -> TcpSegment<'_> {
    TcpSegment {
        ts: Timestamp(0),
        src: ep(1),
        dst: ep(2),
        seq,
        ack: ack.unwrap_or(0),
        flags: TcpFlags {
            ack: ack.is_some(),
            ..flags
        },
        window: 500,
        window_scale: None,
        payload,
        ip_id: 0,
        tsval: None,
        sack_right: None,
        payload_len: len,
    }
}

fn big_caps() -> ReassemblyConfig {
    ReassemblyConfig {
        max_out_of_order_bytes: 1 << 24,
        max_out_of_order_segments: 1 << 20,
    }
}

/// A stream with the handshake done: A's ISN `isn`, B's ISN `PEER_ISN`.
fn opened(isn: u32, log: &mut Log) -> TcpStream {
    let mut st = TcpStream::new(big_caps());
    let syn = TcpFlags {
        syn: true,
        ..TcpFlags::default()
    };
    st.on_segment(
        Direction::AtoB,
        &segment(isn, None, syn, &[], 0),
        &mut |d, e| {
            record(log, d, e);
        },
    );
    st.on_segment(
        Direction::BtoA,
        &segment(PEER_ISN, Some(isn.wrapping_add(1)), syn, &[], 0),
        &mut |d, e| record(log, d, e),
    );
    st
}

/// Feeds A's payload `data[a..b]` (captured up to `cap` bytes) at offset `a`.
fn send(st: &mut TcpStream, log: &mut Log, isn: u32, data: &[u8], a: usize, b: usize, cap: usize) {
    let seq = isn.wrapping_add(1).wrapping_add(u32::try_from(a).unwrap());
    let captured = &data[a..a.saturating_add(cap).min(b)];
    let s = segment(
        seq,
        Some(PEER_ISN + 1),
        TcpFlags::default(),
        captured,
        u32::try_from(b - a).unwrap(),
    );
    st.on_segment(Direction::AtoB, &s, &mut |d, e| record(log, d, e));
}

/// Cuts `[0, len)` into consecutive ranges of the given sizes (cycled).
fn cut(len: usize, sizes: &[usize]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < len {
        let n = sizes[i % sizes.len()].max(1);
        out.push((at, (at + n).min(len)));
        at += n;
        i += 1;
    }
    out
}

/// Deterministic Fisher-Yates shuffle from a seed (xorshift64*).
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut x = seed | 1;
    for i in (1..v.len()).rev() {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_F491_4F6C_DD1D);
        let j = usize::try_from(r % (i as u64 + 1)).unwrap();
        v.swap(i, j);
    }
}

/// Asserts that ranges tile `[0, len)` exactly, in order, without overlap.
fn assert_tiles(mut ranges: Vec<(u64, u64)>, len: u64) {
    ranges.sort_unstable();
    let mut at = 0;
    for (off, n) in ranges {
        assert_eq!(off, at, "gap or overlap at {at}");
        assert!(n > 0, "empty range at {off}");
        at += n;
    }
    assert_eq!(at, len);
}

/// Delivered Data and Hole events, in emission order, must be contiguous from 0.
fn assert_contiguous(log: &Log, len: u64) {
    let mut all: Vec<(u64, u64)> = log
        .data
        .iter()
        .map(|(o, b)| (*o, b.len() as u64))
        .chain(log.holes.iter().map(|(o, n, _)| (*o, *n)))
        .collect();
    assert_tiles(all.clone(), len);
    all.sort_unstable();
    assert!(all.windows(2).all(|w| w[0].0 + w[0].1 == w[1].0));
}

fn isn_anywhere() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (0u32..4000).prop_map(|k| u32::MAX - k)]
}

fn isn_near_wrap() -> impl Strategy<Value = u32> {
    (0u32..3000).prop_map(|k| u32::MAX - k)
}

/// Property 1: reordering and duplicates (including ranges spanning segment
/// boundaries) reproduce the stream exactly; NewBytes cover each byte once.
fn check_reorder_dups(
    isn: u32,
    data: &[u8],
    sizes: &[usize],
    dups: &[(usize, usize)],
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut log = Log::default();
    let mut st = opened(isn, &mut log);
    let mut segs = cut(data.len(), sizes);
    for &(a, n) in dups {
        if !data.is_empty() {
            let a = a % data.len();
            segs.push((a, (a + n).min(data.len())));
        }
    }
    shuffle(&mut segs, seed);
    for &(a, b) in &segs {
        send(&mut st, &mut log, isn, data, a, b, usize::MAX);
    }
    let mut fin_log = Log::default();
    st.finish(&mut |d, e| record(&mut fin_log, d, e));
    prop_assert!(fin_log.data.is_empty() && fin_log.holes.is_empty());
    prop_assert!(log.holes.is_empty());
    let joined: Vec<u8> = log.data.iter().flat_map(|(_, b)| b.clone()).collect();
    prop_assert_eq!(&joined, data);
    assert_contiguous(&log, data.len() as u64);
    assert_tiles(log.new.clone(), data.len() as u64);
    let total: u64 = segs.iter().map(|(a, b)| (b - a) as u64).sum();
    let re: u64 = log.retrans.iter().map(|(_, n)| n).sum();
    // A 1-byte duplicate of the last byte seen looks exactly like a keep-alive
    // probe (seq = next-1, one byte) and is reported as one.
    prop_assert_eq!(re + log.keepalives, total - data.len() as u64);
    prop_assert_eq!(st.buffered_bytes(), 0);
    prop_assert_eq!(st.stats(Direction::AtoB).bytes_delivered, data.len() as u64);
    Ok(())
}

/// Property 2: segments lost by the capture, then a final ACK covering everything:
/// Data + Hole tile the stream and NotCaptured holes are exactly the lost bytes.
fn check_loss_then_ack(
    isn: u32,
    data: &[u8],
    sizes: &[usize],
    keep: &[bool],
    seed: u64,
) -> Result<(), TestCaseError> {
    let mut log = Log::default();
    let mut st = opened(isn, &mut log);
    let all = cut(data.len(), sizes);
    let mut missing = vec![false; data.len()];
    let mut segs = Vec::new();
    for (i, &(a, b)) in all.iter().enumerate() {
        if keep[i % keep.len()] {
            segs.push((a, b));
            // A duplicate of every third kept segment.
            if i % 3 == 0 {
                segs.push((a, b));
            }
        } else {
            missing[a..b].iter_mut().for_each(|m| *m = true);
        }
    }
    shuffle(&mut segs, seed);
    for &(a, b) in &segs {
        send(&mut st, &mut log, isn, data, a, b, usize::MAX);
    }
    let end = isn
        .wrapping_add(1)
        .wrapping_add(u32::try_from(data.len()).unwrap());
    let ack = segment(PEER_ISN + 1, Some(end), TcpFlags::default(), &[], 0);
    st.on_segment(Direction::BtoA, &ack, &mut |d, e| record(&mut log, d, e));
    let mut fin_log = Log::default();
    st.finish(&mut |d, e| record(&mut fin_log, d, e));
    prop_assert!(fin_log.data.is_empty() && fin_log.holes.is_empty());

    assert_contiguous(&log, data.len() as u64);
    let mut hole_map = vec![false; data.len()];
    for &(o, n, kind) in &log.holes {
        prop_assert_eq!(kind, HoleKind::NotCaptured);
        let o = usize::try_from(o).unwrap();
        hole_map[o..o + usize::try_from(n).unwrap()]
            .iter_mut()
            .for_each(|h| *h = true);
    }
    prop_assert_eq!(&hole_map, &missing);
    for (o, b) in &log.data {
        let o = usize::try_from(*o).unwrap();
        prop_assert_eq!(&b[..], &data[o..o + b.len()]);
    }
    // NewBytes cover exactly the captured bytes, once.
    let mut seen = vec![0u8; data.len()];
    for &(o, n) in &log.new {
        for s in &mut seen[usize::try_from(o).unwrap()..usize::try_from(o + n).unwrap()] {
            *s += 1;
        }
    }
    let expect: Vec<u8> = missing.iter().map(|m| u8::from(!m)).collect();
    prop_assert_eq!(seen, expect);
    prop_assert_eq!(st.buffered_bytes(), 0);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn reorder_and_duplicates_reproduce_stream(
        isn in isn_anywhere(),
        data in prop::collection::vec(any::<u8>(), 0..1500),
        sizes in prop::collection::vec(1usize..200, 1..20),
        dups in prop::collection::vec((any::<usize>(), 1usize..300), 0..20),
        seed in any::<u64>(),
    ) {
        check_reorder_dups(isn, &data, &sizes, &dups, seed)?;
    }

    #[test]
    fn lost_segments_become_not_captured_holes(
        isn in isn_anywhere(),
        data in prop::collection::vec(any::<u8>(), 1..1500),
        sizes in prop::collection::vec(1usize..200, 1..20),
        keep in prop::collection::vec(any::<bool>(), 1..30),
        seed in any::<u64>(),
    ) {
        check_loss_then_ack(isn, &data, &sizes, &keep, seed)?;
    }

    #[test]
    fn reorder_and_duplicates_across_wrap(
        isn in isn_near_wrap(),
        data in prop::collection::vec(any::<u8>(), 1..4000),
        sizes in prop::collection::vec(1usize..300, 1..20),
        dups in prop::collection::vec((any::<usize>(), 1usize..300), 0..20),
        seed in any::<u64>(),
    ) {
        check_reorder_dups(isn, &data, &sizes, &dups, seed)?;
    }

    #[test]
    fn lost_segments_across_wrap(
        isn in isn_near_wrap(),
        data in prop::collection::vec(any::<u8>(), 1..4000),
        sizes in prop::collection::vec(1usize..300, 1..20),
        keep in prop::collection::vec(any::<bool>(), 1..30),
        seed in any::<u64>(),
    ) {
        check_loss_then_ack(isn, &data, &sizes, &keep, seed)?;
    }

    #[test]
    fn byte_at_a_time(
        isn in isn_anywhere(),
        data in prop::collection::vec(any::<u8>(), 0..600),
        reverse in any::<bool>(),
    ) {
        let mut log = Log::default();
        let mut st = opened(isn, &mut log);
        let mut order: Vec<usize> = (0..data.len()).collect();
        if reverse {
            order.reverse();
        }
        for i in order {
            send(&mut st, &mut log, isn, &data, i, i + 1, 1);
        }
        let joined: Vec<u8> = log.data.iter().flat_map(|(_, b)| b.clone()).collect();
        prop_assert_eq!(&joined, &data);
        prop_assert!(log.new.iter().all(|&(_, n)| n == 1));
        assert_tiles(log.new.clone(), data.len() as u64);
        prop_assert!(log.holes.is_empty() && log.retrans.is_empty());
        if !reverse {
            prop_assert_eq!(log.data.len(), data.len());
        }
    }

    /// Snaplen: every segment keeps a random prefix; in order, no loss.
    #[test]
    fn snaplen_cuts_become_snaplen_holes(
        isn in isn_anywhere(),
        data in prop::collection::vec(any::<u8>(), 1..1500),
        sizes in prop::collection::vec(1usize..200, 1..20),
        caps in prop::collection::vec(0usize..200, 1..20),
        seed in any::<u64>(),
        shuffled in any::<bool>(),
    ) {
        let mut log = Log::default();
        let mut st = opened(isn, &mut log);
        let mut segs: Vec<(usize, usize, usize)> = cut(data.len(), &sizes)
            .into_iter()
            .enumerate()
            .map(|(i, (a, b))| (a, b, caps[i % caps.len()]))
            .collect();
        let mut truncated = vec![false; data.len()];
        for &(a, b, c) in &segs {
            truncated[(a + c).min(b)..b].iter_mut().for_each(|t| *t = true);
        }
        if shuffled {
            shuffle(&mut segs, seed);
        }
        for &(a, b, c) in &segs {
            send(&mut st, &mut log, isn, &data, a, b, c);
        }
        assert_contiguous(&log, data.len() as u64);
        assert_tiles(log.new.clone(), data.len() as u64);
        let mut hole_map = vec![false; data.len()];
        for &(o, n, kind) in &log.holes {
            prop_assert_eq!(kind, HoleKind::Snaplen);
            let o = usize::try_from(o).unwrap();
            hole_map[o..o + usize::try_from(n).unwrap()].iter_mut().for_each(|h| *h = true);
        }
        prop_assert_eq!(hole_map, truncated);
        for (o, b) in &log.data {
            let o = usize::try_from(*o).unwrap();
            prop_assert_eq!(&b[..], &data[o..o + b.len()]);
        }
    }

    /// Arbitrary segments in both directions with small caps: no panic, bounded
    /// memory, and per direction the deliveries stay contiguous from 0 and the
    /// NewBytes ranges never overlap.
    #[test]
    fn arbitrary_segments_never_panic_and_stay_consistent(
        max_bytes in 0usize..300,
        max_segs in 0usize..8,
        ops in prop::collection::vec(
            (any::<bool>(), 0u32..2000, 0u32..2000, 0u8..64, prop::collection::vec(any::<u8>(), 0..100), 0u32..150, any::<u16>(), prop::option::of(any::<u8>())),
            0..200,
        ),
        base in prop_oneof![any::<u32>(), Just(u32::MAX - 500)],
        finish_mid in any::<bool>(),
    ) {
        let mut st = TcpStream::new(ReassemblyConfig {
            max_out_of_order_bytes: max_bytes,
            max_out_of_order_segments: max_segs,
        });
        let mut next = [0u64; 2];
        let mut new: [Vec<(u64, u64)>; 2] = [Vec::new(), Vec::new()];
        let mut check = |d: Direction, e: StreamEvent<'_>| {
            let i = d.index();
            match e {
                StreamEvent::Data { offset, bytes } => {
                    assert_eq!(offset, next[i]);
                    assert!(!bytes.is_empty());
                    next[i] += bytes.len() as u64;
                }
                StreamEvent::Hole { offset, len, .. } => {
                    assert_eq!(offset, next[i]);
                    assert!(len > 0);
                    next[i] += len;
                }
                StreamEvent::NewBytes { offset, len } => {
                    assert!(len > 0);
                    new[i].push((offset, len));
                }
                _ => {}
            }
        };
        for (k, (to_b, seq, ack, fl, payload, extra, window, ws)) in ops.iter().enumerate() {
            let dir = if *to_b { Direction::AtoB } else { Direction::BtoA };
            let flags = TcpFlags {
                syn: fl & 1 != 0 && fl & 32 != 0,
                ack: fl & 2 != 0,
                fin: fl & 4 != 0 && fl & 32 != 0,
                rst: fl & 8 != 0 && fl & 16 != 0 && fl & 32 != 0,
                psh: fl & 16 != 0,
            };
            let s = TcpSegment {
                ts: Timestamp(0),
                src: ep(1),
                dst: ep(2),
                seq: base.wrapping_add(*seq),
                ack: base.wrapping_add(*ack),
                flags,
                window: *window,
                window_scale: *ws,
                payload,
                ip_id: 0,
                tsval: None,
                sack_right: None,
                payload_len: if extra % 5 == 0 {
                    // Shorter than captured (e.g. Ethernet padding).
                    u32::try_from(payload.len() / 2).unwrap()
                } else {
                    // Snaplen-cut when extra > 0.
                    u32::try_from(payload.len()).unwrap() + extra % 40
                },
            };
            st.on_segment(dir, &s, &mut check);
            prop_assert!(st.buffered_bytes() <= 2 * (max_bytes + max_segs * 64));
            if finish_mid && k == ops.len() / 2 {
                st.finish(&mut check);
            }
        }
        st.finish(&mut check);
        for dir in [Direction::AtoB, Direction::BtoA] {
            let mut r = new[dir.index()].clone();
            r.sort_unstable();
            prop_assert!(r.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0), "NewBytes overlap");
            let st_new: u64 = r.iter().map(|x| x.1).sum();
            prop_assert_eq!(st.stats(dir).new_bytes, st_new);
        }
    }
}
