//! Recent connection openings, for telling what woke a stalled client.

use std::collections::VecDeque;

use super::Wakeup;
use crate::model::{Endpoint, Span, Timestamp};

/// Recent connection openings (SYN without ACK), for wake-up detection.
/// Bounded: the oldest are forgotten first.
#[derive(Debug, Default)]
pub struct SynLog {
    recent: VecDeque<(Timestamp, Endpoint, Endpoint)>,
}

impl SynLog {
    /// Entries kept.
    pub const CAP: usize = 4096;
    /// Two SYNs of one connection this close are one packet captured twice.
    const COPY_WINDOW: Span = Span(1_000_000);

    /// Records a SYN from `from` to `to`.
    /// A second copy of a recent SYN (a capture that sees each packet
    /// twice, see `engine::dedup`) is not recorded again: a real SYN
    /// retransmission comes a second or more later.
    pub fn record(&mut self, ts: Timestamp, from: Endpoint, to: Endpoint) {
        let copy =
            self.recent.iter().rev().take(4).any(|(t, f, d)| {
                *f == from && *d == to && ts.since(*t).0.abs() <= Self::COPY_WINDOW.0
            });
        if copy {
            return;
        }
        if self.recent.len() >= Self::CAP {
            self.recent.pop_front();
        }
        self.recent.push_back((ts, from, to));
    }

    /// The latest connection touching `host`'s address that started within
    /// `window` before `resume`, other than connections to `broker` (AMQP
    /// reconnects are not wake-ups) and the connection itself.
    #[must_use]
    pub fn wakeup(
        &self,
        host: Endpoint,
        broker: Endpoint,
        resume: Timestamp,
        window: Span,
    ) -> Option<Wakeup> {
        self.recent
            .iter()
            .rev()
            .find(|(ts, from, to)| {
                *ts <= resume
                    && resume.since(*ts) <= window
                    && (to.ip == host.ip || from.ip == host.ip)
                    && *to != broker
                    && *from != host
            })
            .map(|(ts, from, to)| Wakeup {
                from: *from,
                to: *to,
                at: *ts,
                before_resume: resume.since(*ts),
            })
    }
}
