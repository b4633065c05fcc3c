//! `replay --broker-log FILE...`: RabbitMQ's own log joined to the
//! capture's connections, and put into the report ([`attach`]) so that
//! every format shows it: per connection its lines, per gap the lines of
//! its window, and a section for the log as a whole.
//!
//! Log entries (3.x/4.x plain text `2026-11-26 21:07:52.566563+00:00
//! [info] <0.678.0> message`, continuation lines without a timestamp, and
//! JSON logging `{"time": ..., "level": ..., "pid": ..., "msg": ...}`) are
//! grouped by Erlang process: the line that names `(A:port -> B:port` ties
//! a process to a client and broker address, and every line of that
//! process belongs to that connection. Lines about alarms (memory, disk)
//! and blocked connections are kept for every connection.
//!
//! The log's clock is not the capture's: the offset is the median of
//! (log's "accepting AMQP connection" time - the connection's first packet)
//! over the joined connections. Each gap then shows the lines of its
//! connection stamped (after correction) from its start to a heartbeat
//! timeout after its end; the ending, the lines after the last gap.

use std::collections::BTreeMap;

use crate::engine::Engine;
use crate::model::{Span, Timestamp};
use crate::report::{
    self, BrokerLogReport, ConnectionLogReport, LogLineReport, LogOnlyConnectionReport, Report,
};

/// One log entry (a timestamped line and its continuation lines).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// Its time, in the log's clock.
    pub at: Timestamp,
    /// The level (`info`, `error`, ...).
    pub level: String,
    /// The Erlang process (`<0.678.0>`), when given.
    pub pid: Option<String>,
    /// The message (continuation lines joined with a space).
    pub text: String,
}

/// A connection as the log names it.
#[derive(Debug, Clone, Default)]
pub struct LogConnection {
    /// `A:port` (client).
    pub client: String,
    /// `B:port` (broker).
    pub broker: String,
    /// The process.
    pub pid: String,
    /// Its lines, in order.
    pub lines: Vec<LogLine>,
}

/// The parsed log.
#[derive(Debug, Default)]
pub struct BrokerLog {
    /// Connections, in the order first named.
    pub connections: Vec<LogConnection>,
    /// Alarm and blocking lines (about the broker as a whole).
    pub alarms: Vec<LogLine>,
}

/// Why a broker log could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{path}: cannot read the broker log: {source}")]
pub struct LogError {
    /// The path.
    pub path: String,
    /// The error.
    pub source: std::io::Error,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `2026-11-26 21:07:52.566563+00:00` (or with `T`, or `Z`) to a timestamp.
fn parse_time(s: &str) -> Option<Timestamp> {
    let b = s.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    if b.len() < 19 || b.get(4) != Some(&b'-') || b.get(13) != Some(&b':') {
        return None;
    }
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, se) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let mut i = 19;
    let mut nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let mut digits = 0;
        while let Some(c) = b.get(i).filter(|c| c.is_ascii_digit()) {
            if digits < 9 {
                nanos = nanos * 10 + i64::from(c - b'0');
                digits += 1;
            }
            i += 1;
        }
        for _ in digits..9 {
            nanos *= 10;
        }
    }
    let offset = match b.get(i) {
        Some(b'+' | b'-') => {
            let sign = if b.get(i) == Some(&b'-') { -1 } else { 1 };
            sign * (num(i + 1..i + 3)? * 3600 + num(i + 4..i + 6).unwrap_or(0) * 60)
        }
        _ => 0,
    };
    let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + se - offset;
    Some(Timestamp::from_parts(secs, nanos))
}

/// The `A:port -> B:port` pair of a message, if it names one.
fn endpoints(text: &str) -> Option<(String, String)> {
    let open = text.find('(')?;
    let rest = text.get(open + 1..)?;
    let arrow = rest.find(" -> ")?;
    let a = rest.get(..arrow)?;
    let after = rest.get(arrow + 4..)?;
    let end = after.find([')', ' ']).unwrap_or(after.len());
    let b = after.get(..end)?;
    (a.contains(':') && b.contains(':')).then(|| (a.to_owned(), b.to_owned()))
}

fn is_alarm(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("alarm") || t.contains("blocked") || t.contains("unblocked")
}

impl BrokerLog {
    /// Parses the text of a log (plain or JSON lines, mixed).
    #[must_use]
    pub fn parse(text: &str) -> Self {
        let mut entries: Vec<LogLine> = Vec::new();
        for line in text.lines() {
            let line = line.trim_end();
            if line.starts_with('{') {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
                    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_owned);
                    if let Some(at) = field("time").as_deref().and_then(parse_time) {
                        entries.push(LogLine {
                            at,
                            level: field("level").unwrap_or_default(),
                            pid: field("pid"),
                            text: field("msg").unwrap_or_default(),
                        });
                    }
                }
                continue;
            }
            let at = line.get(..32).and_then(parse_time);
            let Some(at) = at else {
                // A continuation of the entry before.
                if let Some(last) = entries.last_mut() {
                    if !line.trim().is_empty() {
                        last.text.push(' ');
                        last.text.push_str(line.trim());
                    }
                }
                continue;
            };
            let rest = line.split_once(' ').map_or("", |(_, r)| r);
            let rest = rest.split_once(' ').map_or("", |(_, r)| r);
            let (level, rest) = match rest.strip_prefix('[') {
                Some(r) => r.split_once(']').unwrap_or(("", r)),
                None => ("", rest),
            };
            let rest = rest.trim_start();
            let (pid, msg) = if rest.starts_with('<') {
                match rest.split_once(' ') {
                    Some((p, m)) => (Some(p.to_owned()), m.to_owned()),
                    None => (Some(rest.to_owned()), String::new()),
                }
            } else {
                (None, rest.to_owned())
            };
            entries.push(LogLine {
                at,
                level: level.to_owned(),
                pid,
                text: msg,
            });
        }
        let mut log = BrokerLog::default();
        let mut by_pid: BTreeMap<String, usize> = BTreeMap::new();
        for e in entries {
            if let (Some(pid), Some((a, b))) = (&e.pid, endpoints(&e.text)) {
                if !by_pid.contains_key(pid) {
                    by_pid.insert(pid.clone(), log.connections.len());
                    log.connections.push(LogConnection {
                        client: a,
                        broker: b,
                        pid: pid.clone(),
                        lines: Vec::new(),
                    });
                }
            }
            match e.pid.as_ref().and_then(|p| by_pid.get(p)) {
                Some(&i) => {
                    if let Some(c) = log.connections.get_mut(i) {
                        c.lines.push(e);
                    }
                }
                None if is_alarm(&e.text) => log.alarms.push(e),
                None => {}
            }
        }
        log
    }

    /// Reads and parses the logs at `paths` (their entries together).
    ///
    /// # Errors
    /// [`LogError`] when a file cannot be read.
    pub fn read(paths: &[std::path::PathBuf]) -> Result<Self, LogError> {
        let mut text = String::new();
        for p in paths {
            let bytes = std::fs::read(p).map_err(|source| LogError {
                path: p.display().to_string(),
                source,
            })?;
            text.push_str(&String::from_utf8_lossy(&bytes));
            text.push('\n');
        }
        Ok(Self::parse(&text))
    }
}

/// The log joined to a capture.
#[derive(Debug, Default)]
pub struct Joined {
    /// log time - capture time, when any connection was joined.
    pub offset: Option<Span>,
    /// Per capture connection (report order: first packet, then key):
    /// its index in [`BrokerLog::connections`], when joined.
    pub matches: Vec<Option<usize>>,
    /// Per capture connection, per gap: the log lines in its window.
    pub gap_lines: Vec<Vec<Vec<LogLine>>>,
    /// Log connections no capture connection matched.
    pub log_only: Vec<usize>,
}

/// Joins `log` to the connections of `engine` by client and broker address.
#[must_use]
pub fn join(log: &BrokerLog, engine: &Engine) -> Joined {
    let mut conns: Vec<_> = engine.connections().collect();
    conns.sort_by_key(|c| (c.first_seen(), c.key()));
    let mut used = vec![false; log.connections.len()];
    let mut out = Joined::default();
    let mut diffs = Vec::new();
    for c in &conns {
        let (cl, br) = (c.client().to_string(), c.broker().to_string());
        let m = log
            .connections
            .iter()
            .enumerate()
            .find(|(i, l)| {
                !used.get(*i).copied().unwrap_or(true) && l.client == cl && l.broker == br
            })
            .map(|(i, _)| i);
        if let Some(i) = m {
            if let Some(u) = used.get_mut(i) {
                *u = true;
            }
            if let Some(first) = log.connections.get(i).and_then(|l| l.lines.first()) {
                diffs.push(first.at.since(c.first_seen()).0);
            }
        }
        out.matches.push(m);
    }
    diffs.sort_unstable();
    out.offset = diffs.get(diffs.len() / 2).map(|d| Span(*d));
    let off = out.offset.unwrap_or_default();
    for (c, m) in conns.iter().zip(&out.matches) {
        let lines = m.and_then(|i| log.connections.get(i)).map(|l| &l.lines);
        let per_gap = c
            .gaps()
            .iter()
            .map(|g| {
                let from = g.start.plus(off);
                let to = g.end.plus(off).plus(g.limit);
                let mut v: Vec<LogLine> = lines
                    .into_iter()
                    .flatten()
                    .chain(&log.alarms)
                    .filter(|l| l.at >= from && l.at <= to)
                    .cloned()
                    .collect();
                v.sort_by_key(|l| l.at);
                v
            })
            .collect();
        out.gap_lines.push(per_gap);
    }
    out.log_only = (0..log.connections.len())
        .filter(|i| !used.get(*i).copied().unwrap_or(true))
        .collect();
    out
}

fn line_report(l: &LogLine, offset: Option<Span>) -> LogLineReport {
    LogLineReport {
        at: report::rfc3339(l.at),
        capture_time: offset.map(|o| report::rfc3339(Timestamp(l.at.0.saturating_sub(o.0)))),
        level: l.level.clone(),
        text: l.text.clone(),
    }
}

/// Puts the joined log into `rep` (the report of the engine `join` saw):
/// each matched connection's lines, each gap's lines, and the log's own
/// section (`files`, the clock offset, alarms, log-only connections).
pub fn attach(log: &BrokerLog, joined: &Joined, files: &[std::path::PathBuf], rep: &mut Report) {
    let off = joined.offset;
    for (i, conn) in rep.connections.iter_mut().enumerate() {
        let Some(l) = joined
            .matches
            .get(i)
            .copied()
            .flatten()
            .and_then(|m| log.connections.get(m))
        else {
            continue;
        };
        conn.broker_log = Some(ConnectionLogReport {
            process: l.pid.clone(),
            lines: l.lines.iter().map(|x| line_report(x, off)).collect(),
        });
        for (g, lines) in conn
            .gaps
            .iter_mut()
            .zip(joined.gap_lines.get(i).into_iter().flatten())
        {
            g.broker_log = lines.iter().map(|x| line_report(x, off)).collect();
        }
    }
    rep.broker_log = Some(BrokerLogReport {
        files: files.iter().map(|f| f.display().to_string()).collect(),
        clock_offset_s: off.map(|o| o.as_secs_f64()),
        joined_connections: joined.matches.iter().flatten().count(),
        alarms: log.alarms.iter().map(|x| line_report(x, off)).collect(),
        log_only: joined
            .log_only
            .iter()
            .filter_map(|i| log.connections.get(*i))
            .map(|l| LogOnlyConnectionReport {
                client: l.client.clone(),
                broker: l.broker.clone(),
                process: l.pid.clone(),
                lines: l.lines.iter().map(|x| line_report(x, off)).collect(),
            })
            .collect(),
    });
}
