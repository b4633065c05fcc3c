//! A bounded per-direction record of what each connection put on the wire,
//! kept so a UI can draw a connection's timeline.
//!
//! The analysis keeps only counters and gaps; this keeps the events
//! themselves: for each direction of a connection, a ring of the most recent
//! [`Timeline::CAP`] events, each a capture timestamp and the set of things
//! seen at that instant ([`Kinds`]). Consecutive facts with the same
//! timestamp (a segment carrying new bytes and three frames, say) merge into
//! one event, so a busy connection costs one entry per packet at most.
//!
//! Cap: when a direction's ring is full the oldest event is forgotten and
//! [`Timeline::forgotten`] counts it; the analysis itself is unaffected.
//! Memory: 16 bytes per event, so at most 2 x 4096 x 16 = 128 KiB per
//! connection.

use std::collections::VecDeque;

use crate::model::{Direction, Timestamp};

/// A set of event kinds seen at one instant in one direction (bit flags).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Kinds(pub u16);

impl Kinds {
    /// New bytes in sequence space (what ends a silence).
    pub const DATA: Kinds = Kinds(1);
    /// An AMQP heartbeat frame.
    pub const HEARTBEAT: Kinds = Kinds(1 << 1);
    /// Any other AMQP frame.
    pub const FRAME: Kinds = Kinds(1 << 2);
    /// A pure ACK (no payload).
    pub const PURE_ACK: Kinds = Kinds(1 << 3);
    /// A retransmitted segment.
    pub const RETRANSMISSION: Kinds = Kinds(1 << 4);
    /// A TCP keep-alive probe.
    pub const KEEPALIVE: Kinds = Kinds(1 << 5);
    /// FIN.
    pub const FIN: Kinds = Kinds(1 << 6);
    /// RST.
    pub const RST: Kinds = Kinds(1 << 7);
    /// Bytes the capture never saw (a hole acknowledged past or skipped).
    pub const HOLE: Kinds = Kinds(1 << 8);

    /// True when every kind of `other` is in `self`.
    #[must_use]
    pub fn contains(self, other: Kinds) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }

    /// The union of both sets.
    #[must_use]
    pub fn with(self, other: Kinds) -> Kinds {
        Kinds(self.0 | other.0)
    }
}

/// What one direction showed at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimelineEvent {
    /// Capture timestamp.
    pub at: Timestamp,
    /// What was seen.
    pub kinds: Kinds,
    /// AMQP frames (heartbeats included) seen at this instant.
    pub frames: u16,
}

/// The bounded event record of one connection, per direction.
///
/// Boxed, and absent when the cap is 0: every connection has a timeline but
/// only the TUI records one, and the empty lanes would cost ~80 bytes each.
#[derive(Debug, Clone, Default)]
pub struct Timeline(Option<Box<Lanes>>);

#[derive(Debug, Clone)]
struct Lanes {
    lanes: [VecDeque<TimelineEvent>; 2],
    forgotten: [u64; 2],
    cap: usize,
}

impl Timeline {
    /// Events kept per direction by the TUI; older ones are forgotten first.
    pub const CAP: usize = 4096;

    /// A timeline keeping at most `cap` events per direction (0 records nothing).
    #[must_use]
    pub fn with_capacity(cap: usize) -> Self {
        if cap == 0 {
            return Timeline(None);
        }
        Timeline(Some(Box::new(Lanes {
            lanes: [VecDeque::new(), VecDeque::new()],
            forgotten: [0, 0],
            cap,
        })))
    }

    /// Records `kinds` seen in `dir` at `at`, merging with the previous event
    /// when it has the same timestamp.
    pub fn record(&mut self, dir: Direction, at: Timestamp, kinds: Kinds) {
        let Some(t) = self.0.as_deref_mut() else {
            return;
        };
        if t.cap == 0 {
            return;
        }
        let frame = kinds.contains(Kinds::HEARTBEAT) || kinds.contains(Kinds::FRAME);
        let lane = &mut t.lanes[dir.index()];
        if let Some(last) = lane.back_mut() {
            if last.at == at {
                last.kinds = last.kinds.with(kinds);
                if frame {
                    last.frames = last.frames.saturating_add(1);
                }
                return;
            }
        }
        if lane.len() >= t.cap {
            lane.pop_front();
            t.forgotten[dir.index()] += 1;
        }
        lane.push_back(TimelineEvent {
            at,
            kinds,
            frames: u16::from(frame),
        });
    }

    /// Starts loading the recorded events' bookkeeping (a separate
    /// allocation, absent unless timelines are kept), so that a packet
    /// recorded soon after does not wait for it.
    pub fn prefetch(&self) {
        if let Some(t) = self.0.as_deref() {
            crate::prefetch::line(t);
            crate::prefetch::line(&t.lanes[1]);
        }
    }

    /// The kept events of `dir`, oldest first.
    pub fn events(&self, dir: Direction) -> impl DoubleEndedIterator<Item = &TimelineEvent> {
        self.0.iter().flat_map(move |t| t.lanes[dir.index()].iter())
    }

    /// Events of `dir` forgotten because the ring was full.
    #[must_use]
    pub fn forgotten(&self, dir: Direction) -> u64 {
        self.0.as_ref().map_or(0, |t| t.forgotten[dir.index()])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_same_instant_and_caps_the_ring() {
        let mut t = Timeline::with_capacity(Timeline::CAP);
        t.record(Direction::AtoB, Timestamp(5), Kinds::DATA);
        t.record(Direction::AtoB, Timestamp(5), Kinds::HEARTBEAT);
        t.record(Direction::AtoB, Timestamp(5), Kinds::FRAME);
        let first: Vec<_> = t.events(Direction::AtoB).copied().collect();
        assert_eq!(first.len(), 1);
        assert!(first[0].kinds.contains(Kinds::DATA.with(Kinds::HEARTBEAT)));
        assert_eq!(first[0].frames, 2);
        assert_eq!(t.events(Direction::BtoA).count(), 0);

        for i in 0..Timeline::CAP + 10 {
            t.record(
                Direction::BtoA,
                Timestamp(i64::try_from(i).unwrap_or(0)),
                Kinds::PURE_ACK,
            );
        }
        assert_eq!(t.events(Direction::BtoA).count(), Timeline::CAP);
        assert_eq!(t.forgotten(Direction::BtoA), 10);
        assert_eq!(
            t.events(Direction::BtoA).next().map(|e| e.at),
            Some(Timestamp(10))
        );
    }
}
