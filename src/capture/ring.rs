//! A bounded in-memory store of recent packets, kept per flow: what the live
//! screen's `w` key and the flight recorder (`live --record-gaps`) write out.
//!
//! Packets are stored under a key the caller chooses (a flow), in arrival
//! order. Two bounds hold at all times:
//! - **bytes**: the captured bytes plus a fixed [`PACKET_OVERHEAD`] per
//!   packet and [`FLOW_OVERHEAD`] per flow never exceed `max_bytes`; past it
//!   the **largest** flow gives up its oldest packets (down to 15/16 of the
//!   cap, so the largest flow is looked for once per 1/16 of the cap, not
//!   per packet). A flood on one connection therefore cannot push out the
//!   few packets of a quiet one, which are the evidence of a stall;
//! - **age** (optional): [`PacketRing::expire`] drops packets older than
//!   `max_age` before "now", except those a flow was asked to keep
//!   ([`PacketRing::keep_since`]: a gap being recorded).
//!
//! A packet larger than the whole cap is not stored. Memory is the cap plus
//! the allocator's slack; `docs/performance.md` has the measured RSS under a
//! publisher flood.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, VecDeque};
use std::hash::Hash;

use super::PacketRecord;
use crate::model::{Span, Timestamp};

/// Bytes a stored packet is counted for beyond its data (its header, the
/// allocation, the queue slot).
pub const PACKET_OVERHEAD: usize = 64;
/// Bytes a flow is counted for (its map entry and queue).
pub const FLOW_OVERHEAD: usize = 256;

/// The bounds of a [`PacketRing`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingLimits {
    /// Most bytes held (data plus overheads).
    pub max_bytes: usize,
    /// Packets older than this before "now" are dropped by
    /// [`PacketRing::expire`]; `None`: no age bound.
    pub max_age: Option<Span>,
}

/// One stored packet.
#[derive(Debug)]
struct Stored {
    ts: Timestamp,
    orig_len: u32,
    data: Box<[u8]>,
}

impl Stored {
    fn cost(&self) -> usize {
        self.data.len() + PACKET_OVERHEAD
    }

    fn record(&self) -> PacketRecord<'_> {
        PacketRecord {
            ts: self.ts,
            caplen: u32::try_from(self.data.len()).unwrap_or(u32::MAX),
            orig_len: self.orig_len,
            data: &self.data,
        }
    }
}

#[derive(Debug, Default)]
struct FlowPackets {
    packets: VecDeque<Stored>,
    /// Bytes counted for this flow (without [`FLOW_OVERHEAD`]).
    bytes: usize,
    /// Packets at or after this time survive [`PacketRing::expire`].
    keep_since: Option<Timestamp>,
}

impl FlowPackets {
    /// Gives back the queue's room once most of it is empty: a flow cut
    /// from hundreds of packets to a few would otherwise keep the room for
    /// hundreds, which the byte count does not see (a long live capture
    /// grew by ~1 KB for every connection it had cut that way).
    fn fit(&mut self) {
        if self.packets.capacity() > 4 * self.packets.len().max(4) {
            self.packets.shrink_to_fit();
        }
    }
}

/// Recent packets by flow, bounded by bytes and age (see the module doc).
#[derive(Debug)]
pub struct PacketRing<K> {
    limits: RingLimits,
    flows: HashMap<K, FlowPackets>,
    bytes: usize,
    packets: usize,
    /// Packets given up to stay within the byte cap (not to age).
    evicted: u64,
}

impl<K: Hash + Eq + Clone> PacketRing<K> {
    /// An empty ring with these bounds.
    #[must_use]
    pub fn new(limits: RingLimits) -> Self {
        PacketRing {
            limits,
            flows: HashMap::new(),
            bytes: 0,
            packets: 0,
            evicted: 0,
        }
    }

    /// The bounds it was made with.
    #[must_use]
    pub fn limits(&self) -> RingLimits {
        self.limits
    }

    /// Bytes counted now (data plus overheads); never above the cap.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Packets held now.
    #[must_use]
    pub fn len(&self) -> usize {
        self.packets
    }

    /// True when no packet is held.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.packets == 0
    }

    /// Flows with at least one packet held.
    #[must_use]
    pub fn flows(&self) -> usize {
        self.flows.len()
    }

    /// Packets given up so far to stay within the byte cap.
    #[must_use]
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// Stores a copy of `rec` under `key`, then gives up the largest flow's
    /// oldest packets while over the byte cap.
    pub fn push(&mut self, key: K, rec: &PacketRecord<'_>) {
        let stored = Stored {
            ts: rec.ts,
            orig_len: rec.orig_len,
            data: rec.data.into(),
        };
        let cost = stored.cost();
        if cost + FLOW_OVERHEAD > self.limits.max_bytes {
            return;
        }
        let flow = match self.flows.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => {
                self.bytes += FLOW_OVERHEAD;
                e.insert(FlowPackets::default())
            }
        };
        flow.packets.push_back(stored);
        flow.bytes += cost;
        self.bytes += cost;
        self.packets += 1;
        if self.bytes > self.limits.max_bytes {
            self.shrink();
        }
    }

    /// Gives up the largest flows' oldest packets until at most 15/16 of the
    /// byte cap is used: the flows above a level are cut down to it (oldest
    /// packets first), the level chosen so that enough bytes go.
    fn shrink(&mut self) {
        let target = self.limits.max_bytes - self.limits.max_bytes / 16;
        let Some(excess) = self.bytes.checked_sub(target).filter(|e| *e > 0) else {
            return;
        };
        let mut sizes: Vec<usize> = self.flows.values().map(|f| f.bytes).collect();
        sizes.sort_unstable_by(|a, b| b.cmp(a));
        // The level: the k largest flows cut to `level` free at least `excess`.
        let mut level = 0;
        let mut sum = 0;
        for (k, s) in sizes.iter().enumerate() {
            sum += s;
            let next = sizes.get(k + 1).copied().unwrap_or(0);
            if sum - next * (k + 1) >= excess {
                level = (sum - excess) / (k + 1);
                break;
            }
        }
        let (mut freed, mut dropped) = (0usize, 0usize);
        self.flows.retain(|_, f| {
            while f.bytes > level {
                let Some(p) = f.packets.pop_front() else {
                    break;
                };
                f.bytes -= p.cost();
                freed += p.cost();
                dropped += 1;
            }
            f.fit();
            if f.packets.is_empty() && f.keep_since.is_none() {
                freed += FLOW_OVERHEAD;
                false
            } else {
                true
            }
        });
        self.bytes -= freed;
        self.packets -= dropped;
        self.evicted += dropped as u64;
    }

    /// Drops packets older than the age bound before `now` (none without
    /// one), except a flow's packets at or after its [`PacketRing::keep_since`].
    pub fn expire(&mut self, now: Timestamp) {
        let Some(age) = self.limits.max_age else {
            return;
        };
        let oldest = Timestamp(now.0.saturating_sub(age.0));
        let (mut freed, mut dropped) = (0usize, 0usize);
        self.flows.retain(|_, f| {
            let before = f.keep_since.map_or(oldest, |k| k.min(oldest));
            while f.packets.front().is_some_and(|p| p.ts < before) {
                if let Some(p) = f.packets.pop_front() {
                    f.bytes -= p.cost();
                    freed += p.cost();
                    dropped += 1;
                }
            }
            f.fit();
            if f.packets.is_empty() && f.keep_since.is_none() {
                freed += FLOW_OVERHEAD;
                false
            } else {
                true
            }
        });
        self.bytes -= freed;
        self.packets -= dropped;
    }

    /// Keeps `key`'s packets at or after `since` through [`PacketRing::expire`]
    /// (the byte cap still applies); asked again, the earlier time holds.
    /// `None` lifts it. A flow with nothing stored yet is remembered, so its
    /// later packets are kept too.
    pub fn keep_since(&mut self, key: &K, since: Option<Timestamp>) {
        match self.flows.get_mut(key) {
            Some(f) => {
                f.keep_since = match (f.keep_since, since) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (_, s) => s,
                }
            }
            None if since.is_some() => {
                self.bytes += FLOW_OVERHEAD;
                self.flows.insert(
                    key.clone(),
                    FlowPackets {
                        keep_since: since,
                        ..FlowPackets::default()
                    },
                );
            }
            None => {}
        }
    }

    /// `key`'s packets stamped from `from` to `to` (both included), oldest
    /// first.
    pub fn range(
        &self,
        key: &K,
        from: Timestamp,
        to: Timestamp,
    ) -> impl Iterator<Item = PacketRecord<'_>> {
        self.flows
            .get(key)
            .into_iter()
            .flat_map(|f| f.packets.iter())
            .filter(move |p| p.ts >= from && p.ts <= to)
            .map(Stored::record)
    }

    /// All of `key`'s packets, oldest first.
    pub fn packets(&self, key: &K) -> impl Iterator<Item = PacketRecord<'_>> {
        self.range(key, Timestamp(i64::MIN), Timestamp(i64::MAX))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn rec(data: &[u8], ns: i64) -> PacketRecord<'_> {
        PacketRecord {
            ts: Timestamp(ns),
            caplen: u32::try_from(data.len()).unwrap(),
            orig_len: u32::try_from(data.len()).unwrap() + 10,
            data,
        }
    }

    fn ring(max_bytes: usize, age: Option<i64>) -> PacketRing<u32> {
        PacketRing::new(RingLimits {
            max_bytes,
            max_age: age.map(Span),
        })
    }

    /// Recomputes the byte count from scratch.
    fn counted(r: &PacketRing<u32>) -> usize {
        r.flows
            .values()
            .map(|f| FLOW_OVERHEAD + f.packets.iter().map(Stored::cost).sum::<usize>())
            .sum()
    }

    /// A flow cut from many packets to a few gives its queue's room back
    /// (the byte cap does not count it), by the cap and by age alike.
    #[test]
    fn cut_flows_give_their_room_back() {
        let data = [0u8; 36];
        let cost = data.len() + PACKET_OVERHEAD;
        let mut r = ring(FLOW_OVERHEAD * 2 + cost * 300, Some(1_000));
        for i in 0..300 {
            r.push(1, &rec(&data, i));
        }
        assert!(r.flows[&1].packets.capacity() >= 300);
        // A second flow pushes the first down to half the cap.
        for i in 0..200 {
            r.push(2, &rec(&data, 300 + i));
        }
        let first = &r.flows[&1];
        assert!(
            first.packets.capacity() <= 4 * first.packets.len().max(4),
            "{} packets in room for {}",
            first.packets.len(),
            first.packets.capacity()
        );
        // Age: all but the last few of flow 2 expire.
        r.expire(Timestamp(1_495));
        let second = &r.flows[&2];
        assert!(second.packets.len() <= 5, "{}", second.packets.len());
        assert!(
            second.packets.capacity() <= 16,
            "{}",
            second.packets.capacity()
        );
        assert_eq!(r.bytes(), counted(&r));
    }

    #[test]
    fn stores_by_flow_in_order_with_lengths() {
        let mut r = ring(1 << 20, None);
        r.push(1, &rec(&[1; 10], 5));
        r.push(2, &rec(&[2; 20], 6));
        r.push(1, &rec(&[3; 30], 7));
        let one: Vec<_> = r
            .packets(&1)
            .map(|p| (p.ts.0, p.caplen, p.orig_len))
            .collect();
        assert_eq!(one, [(5, 10, 20), (7, 30, 40)]);
        assert_eq!(r.packets(&2).count(), 1);
        assert_eq!(r.packets(&3).count(), 0);
        assert_eq!(r.range(&1, Timestamp(6), Timestamp(7)).count(), 1);
        assert_eq!(r.len(), 3);
        assert_eq!(r.bytes(), counted(&r));
    }

    #[test]
    fn a_flood_evicts_itself_not_a_quiet_flow() {
        let cap = 64 * 1024;
        let mut r = ring(cap, None);
        // A quiet flow: a heartbeat now and then.
        for i in 0..5 {
            r.push(7, &rec(&[0; 8], i));
        }
        // A flood many times the cap.
        let big = [0u8; 1400];
        for i in 0..2_000 {
            r.push(1, &rec(&big, 100 + i));
            assert!(r.bytes() <= cap);
        }
        assert_eq!(r.packets(&7).count(), 5, "the quiet flow kept everything");
        assert!(r.packets(&1).count() > 10);
        // The flood kept its newest packets.
        assert_eq!(r.packets(&1).last().unwrap().ts, Timestamp(2_099));
        assert!(r.evicted() > 1_000);
        assert_eq!(r.bytes(), counted(&r));
    }

    #[test]
    fn two_floods_share_the_cap() {
        let cap = 200 * 1024;
        let mut r = ring(cap, None);
        let big = [0u8; 1000];
        for i in 0..5_000 {
            r.push(u32::try_from(i % 2).unwrap(), &rec(&big, i));
        }
        let (a, b) = (r.packets(&0).count(), r.packets(&1).count());
        assert!(a.abs_diff(b) <= 2 + cap / 16 / 1064, "{a} vs {b}");
        assert!(r.bytes() <= cap);
    }

    #[test]
    fn age_drops_old_packets_except_kept_ones() {
        let mut r = ring(1 << 20, Some(100));
        r.push(1, &rec(&[0; 4], 0));
        r.push(1, &rec(&[0; 4], 50));
        r.push(2, &rec(&[0; 4], 10));
        r.push(2, &rec(&[0; 4], 60));
        r.keep_since(&2, Some(Timestamp(5)));
        r.keep_since(&2, Some(Timestamp(40)));
        r.expire(Timestamp(145));
        assert_eq!(r.packets(&1).map(|p| p.ts.0).collect::<Vec<_>>(), [50]);
        assert_eq!(r.packets(&2).count(), 2, "kept since 5, the earlier");
        r.keep_since(&2, None);
        r.expire(Timestamp(1_000));
        assert!(r.is_empty());
        assert_eq!(r.flows(), 0);
        assert_eq!(r.bytes(), 0);
    }

    #[test]
    fn keeping_an_unknown_flow_keeps_its_later_packets() {
        let mut r = ring(1 << 20, Some(10));
        r.keep_since(&9, Some(Timestamp(0)));
        r.push(9, &rec(&[0; 4], 1));
        r.expire(Timestamp(1_000));
        assert_eq!(r.packets(&9).count(), 1);
        assert_eq!(r.bytes(), counted(&r));
    }

    #[test]
    fn a_packet_larger_than_the_cap_is_not_stored() {
        let mut r = ring(1024, None);
        r.push(1, &rec(&[0; 2048], 0));
        assert!(r.is_empty());
        assert_eq!(r.bytes(), 0);
    }
}
