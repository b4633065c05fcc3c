//! Second copies of the same packet: `tcpdump -i any` on a host with a Linux
//! bridge (Docker, Kubernetes) sees a packet on the container's veth and again
//! on the bridge, a mirror port can deliver it twice, and `mergecap` of a
//! capture with itself doubles every packet. Without this, every copy would
//! count as a retransmission and turn a stall into "peer unreachable".
//!
//! The rule follows from what a real retransmission changes, not from the
//! numbers of one capture (docs/heartbeat-model.md, "Duplicated packets"):
//! - a copy is identical to the previous segment of the same direction:
//!   sequence and acknowledgement numbers, flags, window, payload length, a
//!   hash of the captured payload's first and last bytes, the IPv4 ID and the
//!   TCP timestamp option's TSval;
//! - Linux gives every packet of a connected socket a new IPv4 ID, so with a
//!   non-zero ID equal fingerprints within [`STRONG_WINDOW`] are copies;
//! - a TSval without an IPv4 ID (IPv6) changes once a clock tick passed; a
//!   fast retransmission inside one tick follows the peer's duplicate ACKs,
//!   so the copy must also come before anything from the peer;
//! - with neither (IPv6, or ID 0, without timestamps) the copy must come
//!   within [`WEAK_WINDOW`] and before anything from the peer: a tail-loss
//!   probe re-sends 10 ms or more later, a fast retransmission after the
//!   peer's duplicate ACKs.
//!
//! State: one fingerprint (hash and time) per direction of each flow. The
//! engine drops copies before reassembly; two-ended replay's segment log
//! (`run::twoend`) drops them the same way before matching segments.

use crate::model::{Direction, TcpSegment, Timestamp};

/// Copies with a non-zero IPv4 ID (or a TSval) this close are the same packet.
pub const STRONG_WINDOW_NS: i64 = 10_000_000;
/// Copies with no ID and no TSval this close (and nothing from the peer
/// between them) are the same packet.
pub const WEAK_WINDOW_NS: i64 = 1_000_000;

/// The last segment of each direction of a flow, as a fingerprint.
#[derive(Debug, Clone, Copy, Default)]
pub struct DupGuard {
    /// Fingerprint hash per direction; the lowest bit is set once the peer
    /// sent something after it.
    print: [u64; 2],
    /// When that segment was captured.
    at: [Timestamp; 2],
}

impl DupGuard {
    /// Whether `seg`, sent in `dir`, is a second copy of the previous
    /// segment of that direction. Remembers it when it is not.
    #[inline(always)]
    pub fn is_copy(&mut self, dir: Direction, seg: &TcpSegment<'_>) -> bool {
        let print = fingerprint(seg);
        let i = dir.index();
        let (last, peer_after) = (self.print[i] & !1, self.print[i] & 1 == 1);
        if last == print {
            let dt = seg.ts.since(self.at[i]).0.abs();
            let copy = if seg.ip_id != 0 {
                dt <= STRONG_WINDOW_NS
            } else if seg.tsval.is_some() {
                !peer_after && dt <= STRONG_WINDOW_NS
            } else {
                !peer_after && dt <= WEAK_WINDOW_NS
            };
            if copy {
                return true;
            }
        }
        self.print[i] = print;
        self.at[i] = seg.ts;
        self.print[1 - i] |= 1;
        false
    }
}

/// A 64-bit hash of what two copies of one packet share and a
/// retransmission changes (the lowest bit is left clear for [`DupGuard`]).
///
/// Each field group is packed into a word without overlap, and each word
/// multiplied by its own odd constant (a bijection), so segments that
/// differ in one group always differ here; a shift folds the high bits
/// into the lowest one, which [`DupGuard`] clears. Cheaper than mixing
/// every word in turn, and it runs on every packet.
#[inline(always)]
fn fingerprint(seg: &TcpSegment<'_>) -> u64 {
    let f = &seg.flags;
    let flags = u64::from(f.syn)
        | u64::from(f.ack) << 1
        | u64::from(f.fin) << 2
        | u64::from(f.rst) << 3
        | u64::from(f.psh) << 4;
    let numbers = u64::from(seg.seq) << 32 | u64::from(seg.ack);
    let header = u64::from(seg.window) << 48 | u64::from(seg.ip_id) << 32 | flags << 24;
    let lengths = u64::from(seg.payload_len) << 32 | u64::from(seg.tsval.is_some());
    let tsval = u64::from(seg.tsval.unwrap_or(0));
    // The payload's first 16 and last 8 captured bytes: copies carry the
    // same bytes; a retransmission of the same sequence range does too, so
    // more would only cost time.
    let (head, middle, tail) = payload_words(seg.payload);
    let h = numbers.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ header.wrapping_mul(0xbf58_476d_1ce4_e5b9)
        ^ lengths.wrapping_mul(0x94d0_49bb_1331_11eb)
        ^ tsval.wrapping_mul(0xd6e8_feb8_6659_fd93)
        ^ head.wrapping_mul(0xa076_1d64_78bd_642f)
        ^ middle.wrapping_mul(0xe703_7ed1_a0b4_28db)
        ^ tail.wrapping_mul(0x8ebc_6af0_9c88_c6e3);
    (h ^ (h >> 31)) & !1
}

/// The payload's first, second and last 8 bytes as words (zero-padded when
/// shorter; the length is in the fingerprint too).
#[inline(always)]
fn payload_words(p: &[u8]) -> (u64, u64, u64) {
    let word = |at: usize| {
        p.get(at..at + 8)
            .and_then(|b| b.try_into().ok())
            .map_or(0, u64::from_le_bytes)
    };
    if p.len() >= 8 {
        let middle = if p.len() >= 16 { word(8) } else { 0 };
        (word(0), middle, word(p.len() - 8))
    } else {
        let mut b = [0u8; 8];
        if let Some(dst) = b.get_mut(..p.len()) {
            dst.copy_from_slice(p);
        }
        (u64::from_le_bytes(b), 0, 0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::{Endpoint, TcpFlags};
    use std::net::{IpAddr, Ipv4Addr};

    fn seg(ts_ms: i64, ip_id: u16, tsval: Option<u32>) -> TcpSegment<'static> {
        let ep = |p| Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), p);
        TcpSegment {
            ts: Timestamp(ts_ms * 1_000_000),
            src: ep(40000),
            dst: ep(5672),
            seq: 1000,
            ack: 2000,
            flags: TcpFlags {
                ack: true,
                psh: true,
                ..TcpFlags::default()
            },
            window: 512,
            window_scale: None,
            payload: b"\x08\x00\x00\x00\x00\x00\x00\xce",
            payload_len: 8,
            ip_id,
            tsval,
            sack_right: None,
        }
    }

    const C: Direction = Direction::AtoB;
    const B: Direction = Direction::BtoA;

    fn peer(ts_ms: i64) -> TcpSegment<'static> {
        TcpSegment {
            seq: 2000,
            ack: 1008,
            payload: b"",
            payload_len: 0,
            ..seg(ts_ms, 77, None)
        }
    }

    #[test]
    fn an_exact_copy_is_a_duplicate() {
        for (id, tsval) in [(4242, Some(9)), (4242, None), (0, Some(9)), (0, None)] {
            let mut g = DupGuard::default();
            assert!(!g.is_copy(C, &seg(0, id, tsval)));
            assert!(g.is_copy(C, &seg(0, id, tsval)), "{id} {tsval:?}");
            // A third copy (veth, bridge, veth) too.
            assert!(g.is_copy(C, &seg(0, id, tsval)), "{id} {tsval:?}");
        }
        // A bridge's second copy a few microseconds later.
        let mut g = DupGuard::default();
        let mut late = seg(0, 0, None);
        assert!(!g.is_copy(C, &late));
        late.ts = Timestamp(30_000);
        assert!(g.is_copy(C, &late));
    }

    /// Real retransmissions stay retransmissions.
    #[test]
    fn a_retransmission_is_not_a_duplicate() {
        // Linux: a new IPv4 ID on the retransmission.
        let mut g = DupGuard::default();
        assert!(!g.is_copy(C, &seg(0, 100, Some(9))));
        assert!(!g.is_copy(C, &seg(0, 101, Some(9))));
        // A new TSval (a millisecond passed), same ID 0.
        let mut g = DupGuard::default();
        assert!(!g.is_copy(C, &seg(0, 0, Some(9))));
        assert!(!g.is_copy(C, &seg(10, 0, Some(19))));
        // Same bytes after 200 ms with a peer packet between: an RTO.
        for (id, tsval) in [(0, None), (0, Some(9))] {
            let mut g = DupGuard::default();
            assert!(!g.is_copy(C, &seg(0, id, tsval)));
            assert!(!g.is_copy(B, &peer(100)));
            assert!(!g.is_copy(C, &seg(200, id, tsval)), "{id} {tsval:?}");
        }
        // No fingerprint beyond TCP: 10 ms later (a tail-loss probe) is a retransmission...
        let mut g = DupGuard::default();
        assert!(!g.is_copy(C, &seg(0, 0, None)));
        assert!(!g.is_copy(C, &seg(10, 0, None)));
        // ... and so is a fast retransmission right after the peer's duplicate ACK.
        let mut g = DupGuard::default();
        assert!(!g.is_copy(C, &seg(0, 0, None)));
        let mut dupack = peer(0);
        dupack.ts = Timestamp(200_000);
        assert!(!g.is_copy(B, &dupack));
        let mut fast = seg(0, 0, None);
        fast.ts = Timestamp(400_000);
        assert!(!g.is_copy(C, &fast));
        // Same IPv4 ID long after: not the same packet (the ID wrapped).
        let mut g = DupGuard::default();
        assert!(!g.is_copy(C, &seg(0, 5, None)));
        assert!(!g.is_copy(C, &seg(1_000, 5, None)));
    }

    #[test]
    fn any_field_a_copy_shares_tells_them_apart() {
        let base = seg(0, 0, None);
        let variants = [
            TcpSegment { seq: 1001, ..base },
            TcpSegment { ack: 2001, ..base },
            TcpSegment {
                window: 513,
                ..base
            },
            TcpSegment {
                payload_len: 9,
                ..base
            },
            TcpSegment {
                payload: b"\x08\x00\x00\x00\x00\x00\x00\xcf",
                ..base
            },
            TcpSegment {
                flags: TcpFlags {
                    fin: true,
                    ..base.flags
                },
                ..base
            },
        ];
        for v in variants {
            let mut g = DupGuard::default();
            assert!(!g.is_copy(C, &base));
            assert!(!g.is_copy(C, &v), "{v:?}");
        }
    }
}
