//! Heartbeat analysis of one AMQP connection: silences, gaps and their causes.
//!
//! Input is facts with capture timestamps (new bytes, ACKs, retransmissions,
//! holes, FIN/RST, frames, connection methods); nothing here reads a clock.
//! Time moves only through those timestamps and through [`Connection::tick`]
//! (live mode's "now"), so a silence that is still open can be flagged
//! before it ends.
//!
//! The model, in short (docs/heartbeat-model.md has the long form):
//! - **silence** of a direction = time between consecutive new bytes sent in
//!   that direction (retransmissions are not new; any AMQP byte counts);
//! - **gap** = a silence longer than the negotiated heartbeat timeout;
//! - **cause** from what the wire shows *during* the silence (see [`decide`]).

mod cause;
mod clock;
mod connection;
mod synlog;
pub mod timeline;

pub(crate) use cause::display_as_str;
pub use cause::{
    decide, receiver_window_decided, Cause, Evidence, Gap, HoleClass, LossProof, LossProofKind,
    RareEvidence, Role, RoleDirection, RoleSource, SilenceEnd, Wakeup,
};
pub use clock::DISORDER_TOLERANCE;
pub use connection::*;
pub use synlog::SynLog;
