//! Packets stamped out of time order, seen at the capture level.
//!
//! One packet stamped 0, an hour early or in 2100 (a clock step while
//! capturing, a broken merge, a tool that rewrote timestamps) must not
//! become a silence "from 1970". The capture's clock is the latest
//! timestamp seen; a packet stamped more than [`crate::analysis::DISORDER_TOLERANCE`]
//! before it is out of order. Which of the two is wrong is told by the
//! packet before the latest one: when the new packet fits after that one,
//! the latest packet was the outlier (stamped too late) and the clock steps
//! back to the new packet; otherwise the new packet is the outlier (stamped
//! too early) and the clock stays. The same rule runs per connection in
//! `analysis` (see [`crate::analysis::Connection::on_packet`]), where it
//! keeps silences from being measured across a jump.

use crate::model::{Span, Timestamp};

/// Warning code for packets stamped out of time order (set from the
/// connections' counts when the engine finishes).
pub const WARNING: &str = "timestamp-disorder";

/// The capture-level clock.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct CaptureClock {
    /// The latest timestamp before the packet that set the current one.
    prev: Timestamp,
}

/// What a step back beyond the tolerance means.
pub(super) struct StepBack {
    /// The latest packet was stamped too late: the clock is now `now`.
    pub latest_was_late: bool,
    /// The clock after this packet.
    pub now: Timestamp,
}

impl CaptureClock {
    /// A packet at `ts` at or after the clock `last`.
    #[inline]
    pub(super) fn advance(&mut self, last: Option<Timestamp>, ts: Timestamp) {
        self.prev = last.unwrap_or(ts);
    }

    /// A packet at `ts` before the clock `last`: `None` within the tolerance.
    pub(super) fn step_back(&mut self, ts: Timestamp, last: Timestamp) -> Option<StepBack> {
        if ts.plus(crate::analysis::DISORDER_TOLERANCE) >= last {
            return None;
        }
        let latest_was_late = ts.plus(crate::analysis::DISORDER_TOLERANCE) >= self.prev;
        Some(StepBack {
            latest_was_late,
            now: ts.max(self.prev),
        })
    }
}

/// The warning's message, with the worst jump and the first connection.
pub(super) fn warning_message(worst: Span, first: crate::model::FlowKey) -> String {
    format!(
        "packets stamped out of time order within a connection (worst jump {:.3} s; first connection {first}): \
         no silence is measured across them, and the connections are marked \
         timestamps_disordered (their verdicts are unreliable)",
        worst.as_secs_f64()
    )
}
