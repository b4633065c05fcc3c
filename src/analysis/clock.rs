//! One connection's view of capture time: packets stamped out of time order.
//!
//! A silence is the time between two packets' timestamps; one packet
//! stamped wrong (0, an hour off, 2100) would make a silence of that size.
//! The rule (docs/heartbeat-model.md, "Timestamps out of order"): a packet
//! stamped more than [`DISORDER_TOLERANCE`] before the connection's latest
//! timestamp is out of order. If it fits after the packet before the latest
//! one, the latest packet was the outlier (stamped too late): what that
//! packet did to silences is undone. Otherwise the new packet is the outlier
//! (stamped too early): it may not end or start a silence. Either way the
//! silence of the outlier's direction starts again at the next packet in
//! order (the outlier's true time lies before it), so it is never measured
//! across the jump, and the connection's verdicts are marked unreliable.

use super::Gap;
use crate::model::{Span, Timestamp};

/// Steps back smaller than this are ordinary (`-i any` merges per-CPU
/// buffers) and handled as before: they cannot make a silence longer.
pub const DISORDER_TOLERANCE: Span = Span(10_000_000);

/// Per-connection clock state (see the module documentation).
#[derive(Debug, Clone, Default)]
pub(super) struct ConnClock {
    /// The latest timestamp before the packet that set `last_seen`.
    pub prev_max: Timestamp,
    /// Packets of this connection stamped out of time order.
    pub disordered: u64,
    /// The largest step back among them.
    pub worst_jump: Span,
    /// The packet being handled is stamped too early.
    pub now_early: bool,
    /// The packet being handled set a new latest timestamp.
    pub now_latest: bool,
    /// Directions whose silence starts again at the next packet in order.
    pub restart: [bool; 2],
    /// What the packet that set `last_seen` did, to undo if it was stamped too late.
    pub undo: Option<Box<Undo>>,
}

/// What one packet changed in a connection's silences.
#[derive(Debug, Clone)]
pub(super) struct Undo {
    /// The packet's timestamp.
    pub at: Timestamp,
    /// Gaps stored before it.
    pub gaps_len: usize,
    /// Gaps dropped at the cap before it.
    pub gaps_dropped: u64,
    /// Causes of the gaps dropped at the cap before it.
    pub dropped_causes: Vec<(super::Cause, u64)>,
    /// A stored gap it displaced at the cap (index, gap). Boxed: rare, and
    /// a gap is large; an `Undo` is allocated for every new longest silence.
    pub displaced: Option<Box<(usize, Gap)>>,
    /// Silences kept per direction while the limit was unknown, before it.
    pub pending_len: [usize; 2],
    /// Longest silence and longest data silence of each direction before it.
    pub longest: [(Span, Span); 2],
}
