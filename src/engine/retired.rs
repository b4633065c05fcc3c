//! Ended connections that a long live capture no longer keeps in full.
//!
//! A live capture that runs for hours on a busy host sees connections come
//! and go by the ten thousand. Each one kept in full for the final report
//! costs a few KiB (its analysis, its handshake's properties, the owners of
//! its sockets), so memory would grow for as long as the capture runs. Once
//! an ended connection has left the live table and more than
//! [`EngineConfig::max_ended`](crate::engine::EngineConfig::max_ended) such
//! connections are kept, the oldest are folded into this summary: counted
//! by client host and broker, with their gaps counted by cause. Connections
//! without a gap go first, so what the report lists in full is every flagged
//! connection for as long as there is room, then the most recent healthy ones.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::analysis::Connection;
use crate::model::{Endpoint, Span, Timestamp};

/// Counts of folded connections (all of them, or one client host's).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetiredCounts {
    /// Connections folded.
    pub connections: u64,
    /// Of them, connections with at least one gap.
    pub flagged: u64,
    /// Gaps they had (listed and over the per-connection cap).
    pub gaps: u64,
    /// Earliest first packet.
    pub first_seen: Option<Timestamp>,
    /// Latest last packet.
    pub last_seen: Option<Timestamp>,
}

impl RetiredCounts {
    fn add(&mut self, c: &Connection) {
        self.connections += 1;
        self.flagged += u64::from(!c.gaps().is_empty());
        self.gaps += c.gaps_found();
        let (first, last) = (c.first_seen(), c.last_seen());
        self.first_seen = Some(self.first_seen.map_or(first, |f| f.min(first)));
        self.last_seen = Some(self.last_seen.map_or(last, |l| l.max(last)));
    }
}

/// The folded connections of one client host to one broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetiredPair {
    /// The client's address (ports differ from connection to connection).
    pub client_ip: IpAddr,
    /// The broker's address and port.
    pub broker: Endpoint,
    /// What was folded.
    pub counts: RetiredCounts,
}

/// Every connection folded so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retired {
    /// All of them.
    pub total: RetiredCounts,
    /// Gaps by cause (`Cause::as_str`).
    pub gaps_by_cause: BTreeMap<&'static str, u64>,
    /// By client host and broker, in the order first folded (at most
    /// [`Retired::PAIRS_CAP`]).
    pub pairs: Vec<RetiredPair>,
    /// Connections of pairs past the cap.
    pub other: RetiredCounts,
    /// The rule they were folded by: ended connections stay in full for
    /// this long after their last packet, and past it at most this many.
    pub keep: Option<(Span, usize)>,
}

impl Retired {
    /// Most client host and broker pairs listed; the rest are counted in
    /// [`Retired::other`] (the summary stays bounded too).
    pub const PAIRS_CAP: usize = 256;

    /// Folds one ended connection in.
    pub fn add(&mut self, c: &Connection) {
        self.total.add(c);
        for g in c.gaps() {
            *self.gaps_by_cause.entry(g.cause.as_str()).or_insert(0) += 1;
        }
        for (cause, n) in c.gaps_dropped_causes() {
            *self.gaps_by_cause.entry(cause.as_str()).or_insert(0) += n;
        }
        let (ip, broker) = (c.client().ip, c.broker());
        if let Some(p) = self
            .pairs
            .iter_mut()
            .find(|p| p.client_ip == ip && p.broker == broker)
        {
            p.counts.add(c);
        } else if self.pairs.len() < Self::PAIRS_CAP {
            let mut counts = RetiredCounts::default();
            counts.add(c);
            self.pairs.push(RetiredPair {
                client_ip: ip,
                broker,
                counts,
            });
        } else {
            self.other.add(c);
        }
    }

    /// True when nothing was folded.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.total.connections == 0
    }
}
