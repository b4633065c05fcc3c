//! The flow table: flow key -> per-flow state, built so that the state of a
//! packet's flow can be asked for ahead of the packet.
//!
//! With 100,000 mostly idle connections the per-flow state (~2 KB each) is
//! far larger than the caches, and a packet's time is spent waiting for
//! memory: the table's bucket, then the flow, then its connection, each a
//! cache miss that the next one depends on. A general hash map hides where a
//! key's bucket is, so the engine could not start those loads early. This
//! table is open addressing with linear probing over a small index (8 bytes
//! per position, at most half full) that points into a slab of entries:
//! [`FlowTable::prefetch_index`] starts loading a key's index position and
//! [`FlowTable::peek`] (a few packets later, when that load has arrived)
//! finds the entry so the caller can start loading the state itself.
//!
//! Index positions come from the high 32 bits of the flow hash (the
//! [`FlowHasher`](crate::engine::flowhash) mix leaves its low bits weak); an index
//! word holds those 32 bits and the slab position, so a probe compares keys
//! only when the 32 bits match. Removal shifts the following entries back
//! (no tombstones), so lookups stay short however many flows come and go.

use crate::engine::flowhash::FlowHashBuilder;
use crate::model::FlowKey;
use crate::prefetch;

/// One slab position. The key and the `live` flag come first, in the cache
/// line that [`FlowTable::prefetch_entry`] asks for, so that comparing keys
/// needs no other line. (An `Option<(FlowKey, V)>` put its tag, a niche
/// inside `V`, and the key wherever the compiler chose: finding a flow then
/// waited for two more lines than were prefetched.)
#[repr(C)]
pub(crate) struct Entry<V> {
    key: FlowKey,
    live: bool,
    /// `V::default()` when not live.
    value: V,
}

/// A map from [`FlowKey`] to `V` with lookups that can be prefetched.
///
/// `V::default()` fills positions whose entry was removed: a value is moved
/// out of the slab without reading a tag (see [`Entry`]).
pub(crate) struct FlowTable<V> {
    hasher: FlowHashBuilder,
    /// 0 = empty; else `(hash >> 32) << 32 | (slab position + 1)`.
    index: Vec<u64>,
    slab: Vec<Entry<V>>,
    /// Free slab positions.
    free: Vec<u32>,
    len: usize,
}

impl<V> Default for FlowTable<V> {
    fn default() -> Self {
        FlowTable {
            hasher: FlowHashBuilder::default(),
            index: Vec::new(),
            slab: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

/// The part of a hash that places and tags a key.
fn hash32(hash: u64) -> u32 {
    // The high half: the multiply-rotate mix leaves the low bits weak.
    (hash >> 32) as u32
}

impl<V: Default> FlowTable<V> {
    /// Entries held.
    pub fn len(&self) -> usize {
        self.len
    }

    /// The hash of `key` for the `*_hashed` methods.
    pub fn hash(&self, key: &FlowKey) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn mask(&self) -> usize {
        self.index.len().wrapping_sub(1)
    }

    /// Index position holding `key` (hash `hash`), and its slab position.
    fn find(&self, hash: u64, key: &FlowKey) -> Option<(usize, usize)> {
        if self.len == 0 {
            return None;
        }
        let h = hash32(hash);
        let mask = self.mask();
        let mut pos = h as usize & mask;
        loop {
            let word = *self.index.get(pos)?;
            if word == 0 {
                return None;
            }
            if (word >> 32) as u32 == h {
                // Low half: slab position + 1 (never 0 in a used word).
                let at = (word as u32 as usize).wrapping_sub(1);
                if let Some(e) = self.slab.get(at) {
                    if e.live && e.key == *key {
                        return Some((pos, at));
                    }
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// The value of `key`.
    pub fn get(&self, key: &FlowKey) -> Option<&V> {
        self.get_hashed(self.hash(key), key)
    }

    /// The value of `key`, whose hash is `hash`.
    pub fn get_hashed(&self, hash: u64, key: &FlowKey) -> Option<&V> {
        let (_, at) = self.find(hash, key)?;
        self.slab.get(at).map(|e| &e.value)
    }

    /// The value of `key` (hash `hash`), mutable.
    pub fn get_mut_hashed(&mut self, hash: u64, key: &FlowKey) -> Option<&mut V> {
        let (_, at) = self.find(hash, key)?;
        self.slab.get_mut(at).map(|e| &mut e.value)
    }

    /// Starts loading the index position of a key whose hash is `hash`.
    pub fn prefetch_index(&self, hash: u64) {
        if let Some(word) = self.index.get(hash32(hash) as usize & self.mask()) {
            prefetch::line(word);
        }
    }

    /// Starts loading the entries whose index word matches `hash` (after
    /// [`FlowTable::prefetch_index`], once that load has arrived), without
    /// comparing keys: that would wait for the entry.
    pub fn prefetch_entry(&self, hash: u64) {
        let h = hash32(hash);
        let mask = self.mask();
        let mut pos = h as usize & mask;
        while let Some(&word) = self.index.get(pos) {
            if word == 0 {
                return;
            }
            if (word >> 32) as u32 == h {
                if let Some(e) = self.slab.get((word as u32 as usize).wrapping_sub(1)) {
                    // Entries are not line-aligned: the key may span two lines.
                    prefetch::line(&e.key);
                    prefetch::line(&e.live);
                }
            }
            pos = (pos + 1) & mask;
        }
    }

    /// The slab position and value of `key` (after [`FlowTable::prefetch_entry`],
    /// once that load has arrived); meant for starting to load the value.
    pub fn peek(&self, hash: u64, key: &FlowKey) -> Option<(u32, &V)> {
        let (_, at) = self.find(hash, key)?;
        let e = self.slab.get(at)?;
        Some((u32::try_from(at).ok()?, &e.value))
    }

    /// The value at slab position `at`, whatever its key (a position from
    /// [`FlowTable::peek`] may since hold another flow: fine for a prefetch).
    pub fn at(&self, at: u32) -> Option<&V> {
        self.slab
            .get(at as usize)
            .filter(|e| e.live)
            .map(|e| &e.value)
    }

    /// As [`FlowTable::get_mut_hashed`], trying slab position `hint` first.
    pub fn get_mut_hinted(&mut self, hint: u32, hash: u64, key: &FlowKey) -> Option<&mut V> {
        let hit = matches!(self.slab.get(hint as usize), Some(e) if e.live && e.key == *key);
        if hit {
            return self.slab.get_mut(hint as usize).map(|e| &mut e.value);
        }
        self.get_mut_hashed(hash, key)
    }

    /// Inserts `value` for `key`, replacing (and returning) any value it had.
    pub fn insert(&mut self, key: FlowKey, value: V) -> Option<V> {
        let hash = self.hash(&key);
        if let Some((_, at)) = self.find(hash, &key) {
            let e = self.slab.get_mut(at)?;
            return Some(std::mem::replace(&mut e.value, value));
        }
        if (self.len + 1) * 2 > self.index.len() {
            self.grow();
        }
        let at = match self.free.pop() {
            Some(at) => {
                let at = at as usize;
                if let Some(s) = self.slab.get_mut(at) {
                    *s = Entry {
                        key,
                        live: true,
                        value,
                    };
                }
                at
            }
            None => {
                self.slab.push(Entry {
                    key,
                    live: true,
                    value,
                });
                self.slab.len() - 1
            }
        };
        self.place(hash32(hash), at);
        self.len += 1;
        None
    }

    /// Writes the index word for slab position `at` at the first free position from its home.
    fn place(&mut self, h: u32, at: usize) {
        let mask = self.mask();
        let mut pos = h as usize & mask;
        // Positions fit in 32 bits: the slab never holds more than u32::MAX - 1 entries
        // (the index, twice as long, would not fit in memory first).
        let word = (u64::from(h) << 32) | (at as u64 + 1);
        while let Some(w) = self.index.get_mut(pos) {
            if *w == 0 {
                *w = word;
                return;
            }
            pos = (pos + 1) & mask;
        }
    }

    /// Doubles the index (at least 16 positions) and places every entry again.
    fn grow(&mut self) {
        let size = (self.index.len() * 2).max(16);
        self.index = vec![0; size];
        for at in 0..self.slab.len() {
            let h = match self.slab.get(at) {
                Some(e) if e.live => hash32(self.hash(&e.key)),
                _ => continue,
            };
            self.place(h, at);
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &FlowKey) -> Option<V> {
        let (pos, at) = self.find(self.hash(key), key)?;
        let e = self.slab.get_mut(at)?;
        e.live = false;
        let value = std::mem::take(&mut e.value);
        self.free.push(u32::try_from(at).unwrap_or(u32::MAX));
        self.len -= 1;
        // Backward shift: move later words of the same probe run into the
        // hole when their home is not between the hole and them.
        let mask = self.mask();
        let mut hole = pos;
        let mut j = pos;
        loop {
            j = (j + 1) & mask;
            let word = self.index.get(j).copied().unwrap_or(0);
            if word == 0 {
                break;
            }
            let home = (word >> 32) as usize & mask;
            if j.wrapping_sub(home) & mask >= j.wrapping_sub(hole) & mask {
                if let Some(w) = self.index.get_mut(hole) {
                    *w = word;
                }
                hole = j;
            }
        }
        if let Some(w) = self.index.get_mut(hole) {
            *w = 0;
        }
        if self.len == 0 {
            // Start over: no free list or slab left behind by a burst of flows.
            self.slab = Vec::new();
            self.free = Vec::new();
        }
        Some(value)
    }

    /// The live entries: (key, value), in slab order.
    pub fn entries(&self) -> impl Iterator<Item = (&FlowKey, &V)> {
        self.slab
            .iter()
            .filter(|e| e.live)
            .map(|e| (&e.key, &e.value))
    }

    /// The live entries' values, to change in place (keys stay).
    pub fn values_mut(&mut self) -> impl Iterator<Item = &mut V> {
        self.slab
            .iter_mut()
            .filter(|e| e.live)
            .map(|e| &mut e.value)
    }

    /// Empties the table and returns its entries where they lie: taken out
    /// one by one ([`Taken::take`]), they are never all copied.
    pub fn take_all(&mut self) -> Taken<V> {
        self.index = Vec::new();
        self.free = Vec::new();
        self.len = 0;
        Taken(std::mem::take(&mut self.slab))
    }
}

/// The entries of an emptied [`FlowTable`], by slab position.
pub(crate) struct Taken<V>(Vec<Entry<V>>);

impl<V: Default> Taken<V> {
    /// The entries still here: (slab position, key, value).
    pub fn iter(&self) -> impl Iterator<Item = (usize, &FlowKey, &V)> {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, e)| e.live)
            .map(|(at, e)| (at, &e.key, &e.value))
    }

    /// Takes out the entry at slab position `at`, if one is there.
    pub fn take(&mut self, at: usize) -> Option<(FlowKey, V)> {
        let e = self.0.get_mut(at).filter(|e| e.live)?;
        e.live = false;
        Some((e.key, std::mem::take(&mut e.value)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::model::Endpoint;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::net::{IpAddr, Ipv4Addr};

    fn key(n: u16) -> FlowKey {
        FlowKey::from_packet(
            Endpoint::new(IpAddr::V4(Ipv4Addr::new(10, 0, (n >> 8) as u8, n as u8)), n),
            Endpoint::new(IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9)), 5672),
        )
        .0
    }

    proptest! {
        /// Any sequence of inserts and removes leaves the table equal to a
        /// std HashMap given the same operations.
        #[test]
        fn behaves_like_a_hash_map(ops in proptest::collection::vec((any::<bool>(), 0u16..300), 0..3000)) {
            let mut t = FlowTable::default();
            let mut m = HashMap::new();
            for (i, (insert, k)) in ops.into_iter().enumerate() {
                if insert {
                    prop_assert_eq!(t.insert(key(k), i), m.insert(key(k), i));
                } else {
                    prop_assert_eq!(t.remove(&key(k)), m.remove(&key(k)));
                }
                prop_assert_eq!(t.len(), m.len());
            }
            for k in 0..300 {
                prop_assert_eq!(t.get(&key(k)), m.get(&key(k)));
            }
            let mut taken = t.take_all();
            let at: Vec<usize> = taken.iter().map(|(at, _, _)| at).collect();
            let mut drained: Vec<_> = at.into_iter().filter_map(|at| taken.take(at)).collect();
            prop_assert_eq!(taken.iter().count(), 0);
            let mut want: Vec<_> = m.into_iter().collect();
            drained.sort_by_key(|(_, v)| *v);
            want.sort_by_key(|(_, v)| *v);
            prop_assert_eq!(drained, want);
            prop_assert_eq!(t.len(), 0);
        }
    }

    #[test]
    fn many_keys_stay_findable_through_growth_and_removal() {
        let mut t = FlowTable::default();
        for k in 0..5000u16 {
            t.insert(key(k), k);
        }
        for k in (0..5000u16).step_by(2) {
            assert_eq!(t.remove(&key(k)), Some(k));
        }
        for k in 0..5000u16 {
            let want = (k % 2 == 1).then_some(k);
            assert_eq!(t.get(&key(k)).copied(), want, "key {k}");
            let h = t.hash(&key(k));
            let peeked = t.peek(h, &key(k));
            assert_eq!(peeked.map(|(_, v)| *v), want);
            if let Some((at, _)) = peeked {
                assert_eq!(t.at(at).copied(), want);
                assert_eq!(t.get_mut_hinted(at, h, &key(k)).map(|v| *v), want);
                // A wrong hint still finds the key.
                assert_eq!(t.get_mut_hinted(at ^ 1, h, &key(k)).map(|v| *v), want);
            }
        }
        assert_eq!(t.len(), 2500);
    }
}
