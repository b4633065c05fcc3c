//! Reports: the stable JSON schema (docs/report-schema.md) and the text view.
//!
//! A [`Report`] is built once from a finished (or snapshotted) [`Engine`] and
//! then rendered; rendering never looks at the engine again. Timestamps are
//! RFC 3339 with nanoseconds in UTC; this module is the only one using `chrono`.
//! Nothing here can print the SASL response: the analysis never had it.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::analysis::{Connection, Gap, Role, RoleSource};
use crate::engine::Engine;
use crate::model::{Direction, Timestamp};
use crate::proto::amqp::{PropValue, Properties};

/// Formats a capture timestamp as RFC 3339 UTC with nanoseconds.
#[must_use]
pub fn rfc3339(ts: Timestamp) -> String {
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(secs, nanos).map_or_else(
        || format!("{}ns", ts.0),
        |d| d.to_rfc3339_opts(SecondsFormat::Nanos, true),
    )
}

/// Time of day with milliseconds, for compact text.
#[must_use]
pub fn clock(ts: Timestamp) -> String {
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .map_or_else(|| "?".into(), |d| d.format("%H:%M:%S%.3f").to_string())
}

/// Writing a report failed: where to, and the io error as the writer gave it.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Writing the report file (`-o FILE`) failed; nothing was left at `path`.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// What went wrong.
        source: std::io::Error,
    },
    /// Writing to standard output failed.
    #[error("{0}")]
    Stdout(std::io::Error),
}

impl WriteError {
    /// The io error.
    #[must_use]
    pub fn io(&self) -> &std::io::Error {
        match self {
            WriteError::File { source, .. } | WriteError::Stdout(source) => source,
        }
    }

    /// The reader went away (`hbscope ... | head`, or a FIFO given to `-o`):
    /// the reader's choice, not a failure worth a message.
    #[must_use]
    pub fn is_broken_pipe(&self) -> bool {
        self.io().kind() == std::io::ErrorKind::BrokenPipe
    }
}

pub mod annotation;
mod build;
pub mod html;
mod json;
pub mod sanitize;
mod schema;
mod text;
mod twoend;

pub use build::*;
pub use json::*;
pub use schema::*;
pub use text::*;
pub use twoend::*;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_keeps_nanoseconds() {
        assert_eq!(
            rfc3339(Timestamp(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000000Z");
    }
}
