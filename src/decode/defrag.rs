//! IP fragment reassembly: puts fragmented IPv4 and IPv6 datagrams that
//! carry TCP back together, so that a segment sent in pieces (a Tune-Ok
//! behind a small MTU, say) is analysed as the segment it is.
//!
//! Fragments are matched by source, destination and identification. A
//! datagram is complete when its last fragment (no more-fragments flag)
//! and every byte before it were seen; it is then handed out with the
//! timestamp of the fragment that completed it (when the receiver could
//! first have had it). The snapshot length may cut fragments: their extent
//! still counts (lengths come from the IP header), and the datagram's
//! bytes are those captured from its start up to the first cut.
//!
//! Caps (memory is bounded whatever the input): at most
//! [`DefragConfig::max_datagrams`] datagrams pending (1,024) holding at
//! most [`DefragConfig::max_bytes`] (4 MiB); past either the oldest pending
//! datagram is dropped. A datagram not complete within
//! [`DefragConfig::timeout`] of its first fragment (30 s of packet time,
//! Linux's `ipfrag_time`) is dropped. A fragment that overlaps another one
//! of its datagram differently (RFC 5722: Linux drops such datagrams), or
//! reaches past 65,535 bytes, drops its datagram. Dropped datagrams are
//! counted in [`DefragStats`]; their bytes were never seen by the analysis.
//! Time comes with the fragments: no clock is read.

use std::collections::HashMap;
use std::net::IpAddr;

use super::IpFragment;
use crate::model::{Span, Timestamp};

/// Reassembly caps.
#[derive(Debug, Clone, Copy)]
pub struct DefragConfig {
    /// Datagrams pending at once.
    pub max_datagrams: usize,
    /// Bytes held by pending datagrams.
    pub max_bytes: usize,
    /// Packet time from a datagram's first fragment to its completion.
    pub timeout: Span,
}

impl Default for DefragConfig {
    fn default() -> Self {
        DefragConfig {
            max_datagrams: 1024,
            max_bytes: 4 * 1024 * 1024,
            timeout: Span::from_secs(30),
        }
    }
}

/// What happened to fragments so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefragStats {
    /// Fragments seen.
    pub fragments: u64,
    /// Fragments that were exact copies of one already held (ignored).
    pub duplicates: u64,
    /// Datagrams put back together.
    pub datagrams: u64,
    /// Datagrams dropped incomplete: timed out, or the oldest at a cap.
    pub expired: u64,
    /// Datagrams dropped for overlapping fragments or an impossible size.
    pub malformed: u64,
}

/// A datagram put back together: its TCP bytes as far as captured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Timestamp of the fragment that completed it.
    pub ts: Timestamp,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// IPv4 identification (0 for IPv6, as for unfragmented packets).
    pub ip_id: u16,
    /// The payload (TCP header and data) from its start to the first byte
    /// the capture did not keep.
    pub bytes: Vec<u8>,
    /// The payload's length on the wire.
    pub wire_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    src: IpAddr,
    dst: IpAddr,
    id: u32,
}

#[derive(Debug)]
struct Pending {
    first: Timestamp,
    /// Captured bytes at their datagram offsets (zero where not captured).
    bytes: Vec<u8>,
    /// Ranges on the wire seen so far, `[start, end)`, as received.
    wire: Vec<(u32, u32)>,
    /// Ranges whose bytes were captured.
    kept: Vec<(u32, u32)>,
    /// The datagram's length, once its last fragment was seen.
    end: Option<u32>,
}

impl Pending {
    fn held(&self) -> usize {
        self.bytes.capacity() + 16 * (self.wire.capacity() + self.kept.capacity())
    }

    /// Whether `[0, end)` is covered by the ranges seen.
    fn complete(&self) -> bool {
        let Some(end) = self.end else {
            return false;
        };
        covered_from_zero(&self.wire) >= end
    }
}

/// How far `[0, n)` is covered by `ranges` (any order).
fn covered_from_zero(ranges: &[(u32, u32)]) -> u32 {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable();
    let mut reach = 0u32;
    for (a, b) in sorted {
        if a > reach {
            break;
        }
        reach = reach.max(b);
    }
    reach
}

/// Largest IP payload a datagram can have.
const MAX_DATAGRAM: u32 = 65_535;

/// Datagrams just put back together, so that second copies of their
/// fragments (`-i any`, a mirror port) do not start them again.
const DONE_KEPT: usize = 64;
/// How long after completion a fragment of the same datagram is a copy.
const DONE_WINDOW: Span = Span(1_000_000_000);

/// Pending fragmented datagrams.
#[derive(Debug, Default)]
pub struct Defragmenter {
    config: DefragConfig,
    pending: HashMap<Key, Pending>,
    held: usize,
    stats: DefragStats,
    /// The last [`DONE_KEPT`] datagrams completed, with when.
    done: std::collections::VecDeque<(Key, Timestamp)>,
}

impl Defragmenter {
    /// A reassembler with caps `config`.
    #[must_use]
    pub fn new(config: DefragConfig) -> Self {
        Defragmenter {
            config,
            ..Defragmenter::default()
        }
    }

    /// Counters so far.
    #[must_use]
    pub fn stats(&self) -> DefragStats {
        self.stats
    }

    /// Datagrams waiting for fragments.
    #[must_use]
    pub fn pending(&self) -> usize {
        self.pending.len()
    }

    /// Bytes held by pending datagrams (bounded by [`DefragConfig::max_bytes`]).
    #[must_use]
    pub fn held_bytes(&self) -> usize {
        self.held
    }

    /// Adds a fragment; the datagram when this one completes it.
    pub fn add(&mut self, f: &IpFragment<'_>) -> Option<Datagram> {
        self.stats.fragments += 1;
        self.expire(f.ts);
        let key = Key {
            src: f.src,
            dst: f.dst,
            id: f.id,
        };
        if !self.pending.contains_key(&key)
            && self
                .done
                .iter()
                .any(|(k, at)| *k == key && f.ts <= at.plus(DONE_WINDOW))
        {
            self.stats.duplicates += 1;
            return None;
        }
        let start = f.offset;
        let Some(end) = start.checked_add(f.wire_len).filter(|e| *e <= MAX_DATAGRAM) else {
            self.drop_datagram(&key);
            self.stats.malformed += 1;
            return None;
        };
        // Every fragment but the last carries a multiple of 8 bytes.
        if f.more && (!f.wire_len.is_multiple_of(8) || f.wire_len == 0) {
            self.drop_datagram(&key);
            self.stats.malformed += 1;
            return None;
        }
        let p = self.pending.entry(key).or_insert_with(|| Pending {
            first: f.ts,
            bytes: Vec::new(),
            wire: Vec::new(),
            kept: Vec::new(),
            end: None,
        });
        let before = p.held();
        if p.wire.contains(&(start, end)) && (f.more || p.end == Some(end)) {
            // A second copy (`-i any`, a mirror port): nothing new.
            self.stats.duplicates += 1;
            return None;
        }
        let overlaps = p.wire.iter().any(|&(a, b)| start < b && a < end);
        let conflicting_end = match (f.more, p.end) {
            (false, Some(e)) => e != end,
            (true, Some(e)) => end > e,
            (false, None) => p.wire.iter().any(|&(_, b)| b > end),
            (true, None) => false,
        };
        if overlaps || conflicting_end {
            self.drop_datagram(&key);
            self.stats.malformed += 1;
            return None;
        }
        if !f.more {
            p.end = Some(end);
        }
        p.wire.push((start, end));
        let kept = f.data.len().min(f.wire_len as usize);
        if kept > 0 {
            let at = start as usize;
            if p.bytes.len() < at + kept {
                p.bytes.resize(at + kept, 0);
            }
            if let (Some(dst), Some(src)) = (p.bytes.get_mut(at..at + kept), f.data.get(..kept)) {
                dst.copy_from_slice(src);
            }
            // kept <= wire_len, so it fits in u32.
            p.kept.push((start, start + kept as u32));
        }
        let after = p.held();
        self.held = (self.held + after).saturating_sub(before);
        if p.complete() {
            return self.take(key, f.ts);
        }
        self.enforce_caps();
        None
    }

    /// Removes the complete datagram `key`, stamped `ts`.
    fn take(&mut self, key: Key, ts: Timestamp) -> Option<Datagram> {
        let p = self.pending.remove(&key)?;
        self.held = self.held.saturating_sub(p.held());
        self.stats.datagrams += 1;
        if self.done.len() >= DONE_KEPT {
            self.done.pop_front();
        }
        self.done.push_back((key, ts));
        let wire_len = p.end.unwrap_or_default();
        let mut bytes = p.bytes;
        bytes.truncate(covered_from_zero(&p.kept).min(wire_len) as usize);
        let ip_id = match key.src {
            // The identification of an IPv4 datagram is 16 bits.
            IpAddr::V4(_) => u16::try_from(key.id).unwrap_or_default(),
            IpAddr::V6(_) => 0,
        };
        Some(Datagram {
            ts,
            src: key.src,
            dst: key.dst,
            ip_id,
            bytes,
            wire_len,
        })
    }

    fn drop_datagram(&mut self, key: &Key) {
        if let Some(p) = self.pending.remove(key) {
            self.held = self.held.saturating_sub(p.held());
        }
    }

    /// Drops datagrams whose first fragment is older than the timeout at `now`.
    fn expire(&mut self, now: Timestamp) {
        if self.pending.is_empty() {
            return;
        }
        let timeout = self.config.timeout;
        let before = self.pending.len();
        let mut freed = 0usize;
        self.pending.retain(|_, p| {
            let keep = now <= p.first.plus(timeout);
            if !keep {
                freed += p.held();
            }
            keep
        });
        self.held = self.held.saturating_sub(freed);
        self.stats.expired += (before - self.pending.len()) as u64;
    }

    /// Over a cap: drops the oldest pending datagrams.
    fn enforce_caps(&mut self) {
        while self.pending.len() > self.config.max_datagrams || self.held > self.config.max_bytes {
            let Some(oldest) = self
                .pending
                .iter()
                // Ties broken by key: every thread drops the same one.
                .min_by_key(|(k, p)| (p.first, **k))
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.drop_datagram(&oldest);
            self.stats.expired += 1;
        }
    }

    /// Datagrams still incomplete at the end of the input: counted as
    /// expired and dropped.
    pub fn finish(&mut self) {
        self.stats.expired += self.pending.len() as u64;
        self.pending.clear();
        self.held = 0;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::net::Ipv4Addr;

    const A: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));

    fn frag(ts: i64, id: u32, offset: u32, more: bool, data: &[u8]) -> IpFragment<'_> {
        IpFragment {
            ts: Timestamp(ts),
            src: A,
            dst: B,
            id,
            offset,
            more,
            wire_len: u32::try_from(data.len()).unwrap(),
            data,
        }
    }

    fn payload(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i % 251) as u8).collect()
    }

    #[test]
    fn fragments_in_any_order_give_the_datagram_at_the_last_ones_time() {
        let p = payload(40);
        for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0], [2, 0, 1]] {
            let mut d = Defragmenter::default();
            let parts = [
                frag(10, 7, 0, true, &p[..16]),
                frag(20, 7, 16, true, &p[16..32]),
                frag(30, 7, 32, false, &p[32..]),
            ];
            let mut out = None;
            for (n, i) in order.iter().enumerate() {
                let r = d.add(&parts[*i]);
                assert_eq!(r.is_some(), n == 2, "{order:?}");
                out = out.or(r);
            }
            let g = out.unwrap();
            assert_eq!(g.bytes, p);
            assert_eq!((g.wire_len, g.ip_id, g.src, g.dst), (40, 7, A, B));
            assert_eq!(g.ts, parts[order[2]].ts);
            assert_eq!((d.pending(), d.held_bytes()), (0, 0));
            assert_eq!(d.stats().datagrams, 1);
        }
    }

    #[test]
    fn copies_are_ignored_and_overlaps_drop_the_datagram() {
        let p = payload(24);
        let mut d = Defragmenter::default();
        assert!(d.add(&frag(1, 1, 0, true, &p[..16])).is_none());
        assert!(d.add(&frag(2, 1, 0, true, &p[..16])).is_none());
        assert_eq!(d.stats().duplicates, 1);
        assert!(d.add(&frag(3, 1, 16, false, &p[16..])).is_some());
        // Second copies of a datagram's fragments after it completed.
        assert!(d.add(&frag(3, 1, 16, false, &p[16..])).is_none());
        assert!(d.add(&frag(4, 1, 0, true, &p[..16])).is_none());
        assert_eq!((d.stats().duplicates, d.pending()), (3, 0));
        // Overlapping differently: dropped, and the rest never completes it.
        assert!(d.add(&frag(4, 2, 0, true, &p[..16])).is_none());
        assert!(d.add(&frag(5, 2, 8, true, &p[8..16])).is_none());
        assert_eq!(d.stats().malformed, 1);
        assert!(d.add(&frag(6, 2, 16, false, &p[16..])).is_none());
        assert_eq!(d.pending(), 1, "a new datagram from the last fragment only");
        // Past 65,535 bytes.
        let big = frag(7, 3, 65_528, false, &p[..16]);
        assert!(d.add(&big).is_none());
        assert_eq!(d.stats().malformed, 2);
        // Two different last fragments.
        assert!(d.add(&frag(8, 4, 0, false, &p[..8])).is_some());
        assert!(d.add(&frag(9, 5, 16, false, &p[..8])).is_none());
        assert!(d.add(&frag(9, 5, 8, false, &p[..8])).is_none());
        assert_eq!(d.stats().malformed, 3);
    }

    #[test]
    fn cut_fragments_keep_their_extent_and_the_captured_prefix() {
        let p = payload(32);
        let mut d = Defragmenter::default();
        let mut first = frag(1, 9, 0, true, &p[..16]);
        first.data = &p[..10];
        assert!(d.add(&first).is_none());
        let g = d.add(&frag(2, 9, 16, false, &p[16..])).unwrap();
        assert_eq!(g.wire_len, 32);
        assert_eq!(g.bytes, &p[..10]);
    }

    #[test]
    fn memory_stays_within_the_caps_and_old_datagrams_time_out() {
        let config = DefragConfig {
            max_datagrams: 8,
            max_bytes: 4096,
            timeout: Span::from_secs(30),
        };
        let mut d = Defragmenter::new(config);
        let p = payload(1024);
        for id in 0..100u32 {
            d.add(&frag(i64::from(id), id, 0, true, &p));
            assert!(d.pending() <= 8);
            assert!(d.held_bytes() <= 4096, "{}", d.held_bytes());
        }
        assert!(d.stats().expired >= 92);
        // The oldest went first: the newest are still there.
        let last = frag(100, 99, 1024, false, &p[..8]);
        assert!(d.add(&last).is_some());
        // 31 s of packet time later, everything pending is gone.
        let mut d = Defragmenter::default();
        d.add(&frag(0, 1, 0, true, &p[..16]));
        assert!(d
            .add(&frag(31_000_000_000, 1, 16, false, &p[..8]))
            .is_none());
        assert_eq!(d.stats().expired, 1);
        d.finish();
        assert_eq!((d.pending(), d.stats().expired), (0, 2));
    }
}
