//! Reports: the stable JSON schema (docs/report-schema.md) and the text view.
//!
//! A [`Report`] is built once from a finished (or snapshotted) [`Engine`] and
//! then rendered; rendering never looks at the engine again. Timestamps are
//! RFC 3339 with nanoseconds in UTC; this module is the only one using `chrono`.
//! Nothing here can print the SASL response: the analysis never had it.

use chrono::{DateTime, Local, SecondsFormat, Utc};
use serde::Serialize;

use crate::analysis::{Connection, Gap, Role, RoleSource};
use crate::engine::Engine;
use crate::model::{Direction, Timestamp};
use crate::proto::amqp::{PropValue, Properties};

/// Formats a capture timestamp as RFC 3339 UTC with nanoseconds.
///
/// chrono decides the calendar: the date it gives for a day is kept (one
/// per thread) and the time of day is written by hand while the following
/// timestamps fall on the same day, which they mostly do. Chrono's general
/// formatting was ~1,700 instructions a call, and a report writes several
/// per connection.
#[must_use]
pub fn rfc3339(ts: Timestamp) -> String {
    thread_local! {
        /// The day number and chrono's `YYYY-MM-DDT` for it.
        static DAY: std::cell::Cell<Option<(i64, [u8; 11])>> = const { std::cell::Cell::new(None) };
    }
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
    let day = secs.div_euclid(86_400);
    if let Some((d, date)) = DAY.get() {
        if d == day {
            let of_day = u32::try_from(secs.rem_euclid(86_400)).unwrap_or(0);
            return time_of_day(&date, of_day, nanos);
        }
    }
    let full = DateTime::<Utc>::from_timestamp(secs, nanos).map_or_else(
        || format!("{}ns", ts.0),
        |d| d.to_rfc3339_opts(SecondsFormat::Nanos, true),
    );
    // Only the plain shape (years 0 to 9999) is cached: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
    if let Some(date) = full.as_bytes().get(..11).filter(|_| full.len() == 30) {
        if date[10] == b'T' && date[..4].iter().all(u8::is_ascii_digit) {
            let mut kept = [0u8; 11];
            kept.copy_from_slice(date);
            DAY.set(Some((day, kept)));
        }
    }
    full
}

/// `date` (`YYYY-MM-DDT`) followed by `HH:MM:SS.nnnnnnnnnZ` for `of_day`
/// seconds after midnight and `nanos`.
fn time_of_day(date: &[u8; 11], of_day: u32, nanos: u32) -> String {
    let mut out = [0u8; 30];
    out[..11].copy_from_slice(date);
    let two = |v: u32| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[11..13].copy_from_slice(&two(of_day / 3600));
    out[13] = b':';
    out[14..16].copy_from_slice(&two(of_day / 60 % 60));
    out[16] = b':';
    out[17..19].copy_from_slice(&two(of_day % 60));
    out[19] = b'.';
    let mut n = nanos;
    for i in (20..29).rev() {
        out[i] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    out[29] = b'Z';
    // Only ASCII digits and separators were written.
    String::from_utf8_lossy(&out).into_owned()
}

/// Time of day with milliseconds, for compact text.
#[must_use]
pub fn clock(ts: Timestamp) -> String {
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(secs, nanos)
        .map_or_else(|| "?".into(), |d| d.format("%H:%M:%S%.3f").to_string())
}

/// The zone the text views show clock times in (`--local-time`). Reports
/// and JSON always carry UTC; only the rendering changes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Zone {
    /// UTC (the default).
    #[default]
    Utc,
    /// The zone of the machine rendering the report (`TZ`, else /etc/localtime).
    Local,
}

impl Zone {
    /// Time of day with milliseconds in this zone, for compact text.
    #[must_use]
    pub fn clock(self, ts: Timestamp) -> String {
        match self {
            Zone::Utc => clock(ts),
            Zone::Local => utc_of(ts).map_or_else(
                || "?".into(),
                |d| d.with_timezone(&Local).format("%H:%M:%S%.3f").to_string(),
            ),
        }
    }

    /// A report time (RFC 3339 UTC, as [`rfc3339`] writes it) in this zone:
    /// unchanged for UTC, else the local time with its offset
    /// (`2026-12-02T14:51:32.532370000+01:00`). A string that is not such a
    /// time is returned as it is.
    #[must_use]
    pub fn time<'a>(self, rfc: &'a str) -> std::borrow::Cow<'a, str> {
        match self {
            Zone::Utc => rfc.into(),
            Zone::Local => DateTime::parse_from_rfc3339(rfc).map_or_else(
                |_| rfc.into(),
                |d| {
                    d.with_timezone(&Local)
                        .to_rfc3339_opts(SecondsFormat::Nanos, false)
                        .into()
                },
            ),
        }
    }

    /// The zone's name for a header: "UTC", or "local time, UTC+01:00" (the
    /// offset in force at `at`).
    #[must_use]
    pub fn label(self, at: Timestamp) -> String {
        match self {
            Zone::Utc => "UTC".into(),
            Zone::Local => format!("local time, UTC{}", local_offset(at)),
        }
    }
}

fn utc_of(ts: Timestamp) -> Option<DateTime<Utc>> {
    let secs = ts.0.div_euclid(1_000_000_000);
    let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap_or(0);
    DateTime::<Utc>::from_timestamp(secs, nanos)
}

/// The local zone's offset from UTC at `at`, as "+01:00" (the machine
/// rendering the report; "+00:00" when it runs on UTC).
#[must_use]
pub fn local_offset(at: Timestamp) -> String {
    utc_of(at).map_or_else(
        || "+00:00".into(),
        |d| d.with_timezone(&Local).format("%:z").to_string(),
    )
}

// The reports count with the same words as the evidence lines built below
// them.
pub use crate::model::count;

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
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The cached date with the hand-written time gives chrono's bytes, on
    /// and across day boundaries, before 1970, and near both ends of what a
    /// nanosecond `i64` holds (1677 and 2262).
    #[test]
    fn rfc3339_is_chronos_for_every_kind_of_day() {
        let chrono = |ts: Timestamp| {
            let secs = ts.0.div_euclid(1_000_000_000);
            let nanos = u32::try_from(ts.0.rem_euclid(1_000_000_000)).unwrap();
            DateTime::<Utc>::from_timestamp(secs, nanos)
                .map(|d| d.to_rfc3339_opts(SecondsFormat::Nanos, true))
                .unwrap()
        };
        let day = 86_400_000_000_000i64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for base in [
            0,
            1_764_000_000 * 1_000_000_000,
            -day * 400,
            9_000_000_000_000_000_000,
            -9_000_000_000_000_000_000,
        ] {
            for i in 0..2000i64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                // Steps of up to ~3 hours, so that days change now and then.
                #[allow(clippy::cast_possible_wrap)]
                let ts = Timestamp(
                    base + i * 10_000_000_000_000 / 2000 + (x % 10_800_000_000_000) as i64,
                );
                assert_eq!(rfc3339(ts), chrono(ts), "{}", ts.0);
                let midnight = Timestamp(ts.0.div_euclid(day) * day);
                for t in [midnight.0 - 1, midnight.0, midnight.0 + day - 1] {
                    assert_eq!(rfc3339(Timestamp(t)), chrono(Timestamp(t)), "{t}");
                }
            }
        }
    }

    #[test]
    fn utc_zone_keeps_report_times() {
        let t = "2026-12-02T13:51:32.532370000Z";
        assert_eq!(Zone::Utc.time(t), t);
        assert_eq!(Zone::Local.time("not a time"), "not a time");
        assert_eq!(Zone::Utc.label(Timestamp(0)), "UTC");
    }

    #[test]
    fn rfc3339_keeps_nanoseconds() {
        assert_eq!(
            rfc3339(Timestamp(1_700_000_000_123_456_789)),
            "2023-11-14T22:13:20.123456789Z"
        );
        assert_eq!(rfc3339(Timestamp(0)), "1970-01-01T00:00:00.000000000Z");
    }
}
