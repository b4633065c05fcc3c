//! The flight recorder (`hbscope live --record-gaps DIR`): keeps the recent
//! packets of every connection in memory and, for each gap, writes one
//! pcapng file with that connection's packets from `--record-before` seconds
//! before the silence to `--record-after` seconds after it.
//!
//! ```text
//! packets --> PacketRing (by flow; bytes and age bounded; capture::ring)
//! gap opened (tick) --> keep the flow's packets from start - before
//!                       (--record-on-open: also write a file now)
//! gap closed --> due at end + after --> tick past it: write
//!                DIR/hbscope-gap-<start>-<client>-<cause>.pcapng (0600, O_EXCL)
//!                with the gap, its evidence and the process verdict as comments,
//!                plus the connection that woke the client and its reconnection
//!                (a client the broker cut: up to RESUME_WAIT more for it to reconnect);
//!                then delete the oldest recordings over --record-max-files/-mib
//! capture stops --> every pending recording is written with what there is
//! ```
//!
//! Files are written by the live loop's thread at a tick (a few MiB at most
//! per gap: the ring's share of one connection). Only files named
//! `hbscope-gap-*.pcapng` are ever deleted from the directory.

use std::collections::VecDeque;
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::analysis::{Cause, Connection, Gap, Role, SilenceEnd};
use crate::capture::ring::{PacketRing, RingLimits};
use crate::capture::savefile::{create_private, PcapngWriter};
use crate::capture::{LinkType, PacketRecord};
use crate::decode::flowof::FlowOf;
use crate::engine::{ConnId, Engine};
use crate::model::{FlowKey, Span, Timestamp};
use crate::report::annotation::Note;
use crate::report::{self, ProcessReport};

/// Name prefix of recordings: the only files the recorder deletes.
pub const FILE_PREFIX: &str = "hbscope-gap-";
/// Name suffix of recordings.
pub const FILE_SUFFIX: &str = ".pcapng";
/// Snapshot length written in the files' interface block (live mode's).
const SNAPLEN: u32 = 262_144;
/// Most recordings waiting for their `--record-after` time at once; past it
/// the oldest is written early.
const MAX_PENDING: usize = 256;
/// How far before a waking connection's SYN its packets are kept.
const WAKE_BEFORE: Span = Span(1_000_000_000);
/// How long past `--record-after` a recording waits for a client the broker
/// cut to reconnect (its reconnection, and what woke it, go in the file).
pub const RESUME_WAIT: Span = Span(60_000_000_000);
/// Longest client name kept in a file name.
const NAME_CHARS: usize = 48;

/// What `--record-gaps` and its companions asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordOptions {
    /// Where the files go (created 0700 if missing).
    pub dir: PathBuf,
    /// Packets kept from this long before the silence started.
    pub before: Duration,
    /// ...to this long after it ended.
    pub after: Duration,
    /// Also write a file when a gap opens (the silence still going on).
    pub on_open: bool,
    /// Most recordings kept in `dir` (the oldest are deleted).
    pub max_files: usize,
    /// Most bytes of recordings kept in `dir` (the oldest are deleted).
    pub max_bytes: u64,
    /// Memory for the packet ring.
    pub ring_bytes: usize,
    /// Packets older than this are dropped from the ring (unless a gap is
    /// being recorded on their connection).
    pub ring_age: Duration,
}

impl RecordOptions {
    /// Default `--record-before`, seconds.
    pub const BEFORE_S: u64 = 30;
    /// Default `--record-after`, seconds.
    pub const AFTER_S: u64 = 10;
    /// Default `--record-max-files`.
    pub const MAX_FILES: usize = 200;
    /// Default `--record-max-mib`.
    pub const MAX_MIB: u64 = 1024;
    /// Default `--record-ring-mib`.
    pub const RING_MIB: usize = 64;
    /// Default `--record-ring-secs`.
    pub const RING_S: u64 = 600;

    /// The defaults, writing into `dir`.
    #[must_use]
    pub fn new(dir: PathBuf) -> Self {
        RecordOptions {
            dir,
            before: Duration::from_secs(Self::BEFORE_S),
            after: Duration::from_secs(Self::AFTER_S),
            on_open: false,
            max_files: Self::MAX_FILES,
            max_bytes: Self::MAX_MIB << 20,
            ring_bytes: Self::RING_MIB << 20,
            ring_age: Duration::from_secs(Self::RING_S),
        }
    }
}

/// Why `--record-gaps DIR` cannot be used (checked before capturing).
#[derive(Debug, thiserror::Error)]
#[error("--record-gaps {}: {detail}", dir.display())]
pub struct RecordError {
    /// The directory given.
    pub dir: PathBuf,
    /// What is wrong and what to do.
    pub detail: String,
}

/// Checks that recordings can be written to `dir` (creating it, mode 0700,
/// when missing), as the user hbscope runs as from now on.
///
/// # Errors
/// [`RecordError`] when `dir` is not a directory or not writable.
pub fn check_dir(dir: &Path) -> Result<(), RecordError> {
    let fail = |detail: String| RecordError {
        dir: dir.to_path_buf(),
        detail,
    };
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(fail(
                "not a directory; give a directory for the recordings".into(),
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| fail(format!("cannot create it: {e}")))?;
        }
        Err(e) => return Err(fail(e.to_string())),
    }
    let probe = dir.join(format!(".hbscope-probe-{}", std::process::id()));
    match create_private(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(fail(format!(
            "cannot write there ({e}); give a directory this user can write (the service's is /var/lib/hbscope)"
        ))),
    }
}

/// A gap live mode just reported, for the recorder.
#[derive(Debug, Clone)]
pub struct GapNote {
    /// The connection (see [`Engine::slot`]).
    pub slot: ConnId,
    /// The gap's index in the connection's list; `None` while it is open.
    pub index: Option<usize>,
    /// The gap (provisional while open).
    pub gap: Gap,
    /// The silent side's process verdict, when attributed.
    pub process: Option<ProcessReport>,
}

/// A file written (or not): what the `gap-recorded` event says.
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    /// When it was written (capture time).
    pub at: Timestamp,
    /// Client "ip:port".
    pub client: String,
    /// Broker "ip:port".
    pub broker: String,
    /// connection_name, else product.
    pub client_name: Option<String>,
    /// The gap's cause (provisional for `open`).
    pub cause: String,
    /// Written when the gap opened (`true`) or after it closed.
    pub open: bool,
    /// The file, or why it could not be written.
    pub file: Result<PathBuf, String>,
    /// Packets in it.
    pub packets: u64,
    /// Its size in bytes.
    pub bytes: u64,
    /// Older recordings deleted to stay within the caps.
    pub deleted: Vec<PathBuf>,
}

#[derive(Debug)]
struct Pending {
    note: GapNote,
    key: FlowKey,
    from: Timestamp,
    due: Timestamp,
}

/// The flight recorder: a packet ring and the gaps waiting to be written.
#[derive(Debug)]
pub struct Recorder {
    opts: RecordOptions,
    ring: PacketRing<FlowKey>,
    link: LinkType,
    /// Each packet's flow, IP fragments included.
    keyer: FlowOf,
    pending: VecDeque<Pending>,
    /// Recordings in the directory, oldest first, with their sizes.
    files: VecDeque<(PathBuf, u64)>,
    files_bytes: u64,
    written: u64,
    failed: u64,
}

fn span(d: Duration) -> Span {
    Span(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

impl Recorder {
    /// A recorder writing into `opts.dir`; the recordings already there
    /// count toward the caps.
    #[must_use]
    pub fn new(opts: RecordOptions) -> Self {
        let ring = PacketRing::new(RingLimits {
            max_bytes: opts.ring_bytes,
            max_age: Some(span(opts.ring_age)),
        });
        let files = existing_recordings(&opts.dir);
        let files_bytes = files.iter().map(|(_, n)| n).sum();
        Recorder {
            opts,
            ring,
            link: LinkType::ETHERNET,
            keyer: FlowOf::new(),
            pending: VecDeque::new(),
            files,
            files_bytes,
            written: 0,
            failed: 0,
        }
    }

    /// The packet ring (its size, for metrics and tests).
    #[must_use]
    pub fn ring(&self) -> &PacketRing<FlowKey> {
        &self.ring
    }

    /// Files written so far, and recordings that could not be written.
    #[must_use]
    pub fn counts(&self) -> (u64, u64) {
        (self.written, self.failed)
    }

    /// Stores a batch of captured packets.
    pub fn packets(&mut self, link: LinkType, recs: &[PacketRecord<'_>]) {
        self.link = link;
        let ring = &mut self.ring;
        for r in recs {
            self.keyer
                .packet(link, r, &mut |key, rec| ring.push(key, rec));
        }
    }

    /// A gap opened or closed: keeps its connection's packets, and writes a
    /// file now for an open gap with `--record-on-open`.
    pub fn note(&mut self, engine: &Engine, note: GapNote, now: Timestamp) -> Option<Recorded> {
        let conn = &engine.slot(note.slot)?.conn;
        let key = conn.key();
        let from = note.gap.start.plus(Span(-span(self.opts.before).0));
        self.ring.keep_since(&key, Some(from));
        if note.index.is_none() {
            // Kept from now on; released once the closed gap is written.
            if !self.opts.on_open {
                return None;
            }
            let pending = Pending {
                note,
                key,
                from,
                due: now,
            };
            return Some(self.write(engine, &pending, now));
        }
        let due = note.gap.end.plus(span(self.opts.after));
        self.pending.push_back(Pending {
            note,
            key,
            from,
            due,
        });
        if self.pending.len() > MAX_PENDING {
            let p = self.pending.pop_front()?;
            let r = self.write(engine, &p, now);
            self.release(&p);
            return Some(r);
        }
        None
    }

    /// Drops old packets and writes the recordings whose time has come.
    pub fn tick(&mut self, engine: &Engine, now: Timestamp) -> Vec<Recorded> {
        self.ring.expire(now);
        let after = span(self.opts.after);
        for p in &mut self.pending {
            if p.due > now {
                continue;
            }
            let gap = current_gap(engine, &p.note);
            match gap.resumed {
                // Until its reconnection is in too.
                Some((at, _)) => p.due = p.due.max(at.plus(after)),
                None if awaits_resume(gap) => {
                    let limit = gap.end.plus(after).plus(RESUME_WAIT);
                    if now < limit {
                        p.due = limit.min(now.plus(Span(1_000_000_000)));
                    }
                }
                None => {}
            }
        }
        let mut out = Vec::new();
        while let Some(i) = self.pending.iter().position(|p| p.due <= now) {
            if let Some(p) = self.pending.remove(i) {
                out.push(self.write(engine, &p, now));
                self.release(&p);
            }
        }
        out
    }

    /// Writes every pending recording with the packets there are (the
    /// capture is stopping).
    pub fn finish(&mut self, engine: &Engine, now: Timestamp) -> Vec<Recorded> {
        let mut out = Vec::new();
        while let Some(p) = self.pending.pop_front() {
            out.push(self.write(engine, &p, now));
            self.release(&p);
        }
        out
    }

    /// Lets the ring age out a flow no recording waits for any more.
    fn release(&mut self, done: &Pending) {
        if !self.pending.iter().any(|p| p.key == done.key) {
            self.ring.keep_since(&done.key, None);
        }
    }

    fn write(&mut self, engine: &Engine, p: &Pending, now: Timestamp) -> Recorded {
        let conn = engine.slot(p.note.slot).map(|s| &s.conn);
        let gap = current_gap(engine, &p.note);
        let to = if p.due < now { p.due } else { now };
        let open = p.note.index.is_none();
        let (client, broker, client_name) = conn.map_or_else(
            || (String::new(), String::new(), None),
            |c| {
                (
                    c.client().to_string(),
                    c.broker().to_string(),
                    c.client_name(),
                )
            },
        );
        let mut rec = Recorded {
            at: now,
            client,
            broker,
            client_name,
            cause: gap.cause.as_str().to_owned(),
            open,
            file: Err(String::new()),
            packets: 0,
            bytes: 0,
            deleted: Vec::new(),
        };
        let Some(conn) = conn else {
            rec.file = Err("the connection is no longer known".into());
            self.failed += 1;
            return rec;
        };
        // The connection, then what woke the client and its reconnection.
        let mut flows = vec![(p.key, p.from)];
        if let Some(w) = &gap.wakeup {
            flows.push((
                FlowKey::from_packet(w.from, w.to).0,
                w.at.plus(Span(-WAKE_BEFORE.0)),
            ));
        }
        if let Some((at, client)) = gap.resumed {
            flows.push((
                FlowKey::from_packet(client, conn.broker()).0,
                at.plus(Span(-WAKE_BEFORE.0)),
            ));
        }
        let mut packets: Vec<PacketRecord<'_>> = Vec::new();
        for (i, (key, from)) in flows.iter().enumerate() {
            if flows[..i].iter().any(|(k, _)| k == key) {
                continue;
            }
            packets.extend(self.ring.range(key, *from, to));
        }
        packets.sort_by_key(|r| r.ts);
        let comments = gap_comments(conn, gap, p.note.process.as_ref(), (p.from, to), open);
        let name = file_name(
            gap.start,
            rec.client_name.as_deref(),
            &rec.client,
            &rec.cause,
            open,
        );
        // The process report also as hbscope's note block, which `replay`
        // puts back on the gap (report::annotation), as for `live --write`.
        let notes: Vec<String> = p
            .note
            .process
            .as_ref()
            .map(|process| {
                let g = report::gap_report(conn, gap);
                Note::GapProcess {
                    client: conn.client().to_string(),
                    broker: conn.broker().to_string(),
                    direction: g.direction.as_str().to_owned(),
                    start: g.start,
                    process: Box::new(process.clone()),
                }
                .to_text()
            })
            .into_iter()
            .collect();
        match write_file(
            &self.opts.dir,
            &name,
            self.link,
            &comments,
            &notes,
            &packets,
        ) {
            Ok((path, bytes)) => {
                rec.packets = packets.len() as u64;
                rec.bytes = bytes;
                self.written += 1;
                self.files.push_back((path.clone(), bytes));
                self.files_bytes += bytes;
                rec.deleted = self.enforce_caps(&path);
                rec.file = Ok(path);
            }
            Err(e) => {
                self.failed += 1;
                rec.file = Err(e);
            }
        }
        rec
    }

    /// Deletes the oldest recordings while over a cap (never `newest`).
    fn enforce_caps(&mut self, newest: &Path) -> Vec<PathBuf> {
        let mut deleted = Vec::new();
        while self.files.len() > self.opts.max_files.max(1)
            || self.files_bytes > self.opts.max_bytes
        {
            let Some((path, bytes)) = self.files.front().cloned() else {
                break;
            };
            if path == newest {
                break;
            }
            self.files.pop_front();
            self.files_bytes -= bytes;
            // Gone already (someone else cleaned up) is as good as deleted.
            if std::fs::remove_file(&path).is_ok() {
                deleted.push(path);
            }
        }
        deleted
    }
}

/// The gap of `note` as the engine has it now: it may have learnt more since
/// it was reported (the client's reconnection and what woke it).
fn current_gap<'e>(engine: &'e Engine, note: &'e GapNote) -> &'e Gap {
    note.index
        .and_then(|i| engine.slot(note.slot)?.conn.gaps().get(i))
        .filter(|g| g.start == note.gap.start && g.dir == note.gap.dir)
        .unwrap_or(&note.gap)
}

/// A client stall the broker cut: the engine will note the client's
/// reconnection (and what woke it) when it comes.
fn awaits_resume(g: &Gap) -> bool {
    g.silent == Role::Client
        && g.cause == Cause::ClientStall
        && g.ended_by == SilenceEnd::Rst
        && g.resumed.is_none()
}

/// The recordings already in `dir` (names `hbscope-gap-*.pcapng`, regular
/// files), oldest first: names start with the gap's time.
fn existing_recordings(dir: &Path) -> VecDeque<(PathBuf, u64)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return VecDeque::new();
    };
    let mut files: Vec<(PathBuf, u64)> = entries
        .filter_map(Result::ok)
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.starts_with(FILE_PREFIX) && name.ends_with(FILE_SUFFIX)
        })
        .filter_map(|e| {
            let m = e.path().symlink_metadata().ok()?;
            m.is_file().then(|| (e.path(), m.len()))
        })
        .collect();
    files.sort();
    files.into()
}

/// `hbscope-gap-20261127T001002.123Z-<client>-<cause>[-open].pcapng`: the
/// silence's start (UTC), the client's name (else its address) made safe
/// for a file name, the cause.
#[must_use]
pub fn file_name(
    start: Timestamp,
    client_name: Option<&str>,
    client: &str,
    cause: &str,
    open: bool,
) -> String {
    let t = report::rfc3339(start);
    // 2026-11-27T00:10:02.123456789Z -> 20261127T001002.123Z
    let compact: String = t.chars().filter(|c| *c != '-' && *c != ':').collect();
    let time = match compact.find('.') {
        Some(dot) => format!("{}Z", compact.get(..dot + 4).unwrap_or(&compact)),
        None => compact,
    };
    let who = safe_name(
        client_name
            .filter(|n| !n.trim().is_empty())
            .unwrap_or(client),
    );
    let open = if open { "-open" } else { "" };
    format!("{FILE_PREFIX}{time}-{who}-{cause}{open}{FILE_SUFFIX}")
}

/// A name from the wire as a piece of a file name: ASCII letters, digits,
/// `.`, `_`, `-` kept, anything else `_`; at most 48 characters; never empty.
#[must_use]
pub fn safe_name(name: &str) -> String {
    let s: String = name
        .chars()
        .take(NAME_CHARS)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.is_empty() {
        "unknown".to_owned()
    } else {
        s
    }
}

/// The comments of a recording's section header: a summary of the gap for
/// a person (the connection, silence, cause, evidence, the process verdict),
/// then the gap as JSON (the report's `gap` object, `process` included).
///
/// The one place that decides what a recording says about its gap.
#[must_use]
pub fn gap_comments(
    conn: &Connection,
    gap: &Gap,
    process: Option<&ProcessReport>,
    window: (Timestamp, Timestamp),
    open: bool,
) -> Vec<String> {
    use std::fmt::Write as _;
    let mut g = report::gap_report(conn, gap);
    g.process = process.cloned();
    let mut text = String::new();
    let _ = writeln!(
        text,
        "hbscope {} flight recorder: {} -> {}{}",
        env!("CARGO_PKG_VERSION"),
        conn.client(),
        conn.broker(),
        conn.client_name()
            .map(|n| format!(" \"{}\"", report::sanitize::text(&n)))
            .unwrap_or_default()
    );
    let _ = writeln!(
        text,
        "gap: {} silent {:.3} s from {} (limit {} s, {:.1}x), {}: {}{}",
        g.direction,
        g.silence_s,
        g.start,
        g.limit_s,
        g.ratio,
        if open {
            "still open".to_owned()
        } else {
            format!("ended by {}", g.ended_by)
        },
        g.cause,
        if open { " (provisional)" } else { "" }
    );
    for line in &g.evidence {
        let _ = writeln!(text, "  - {}", report::sanitize::text(line));
    }
    if let Some(p) = &g.process {
        let _ = writeln!(text, "process: {}", report::process_text(p));
    }
    let _ = write!(
        text,
        "packets from {} to {}",
        report::rfc3339(window.0),
        report::rfc3339(window.1)
    );
    let mut out = vec![text];
    if let Ok(json) = serde_json::to_string(&g) {
        out.push(json);
    }
    out
}

/// Writes `packets` into a new file `dir/name` (another name with `-2`,
/// `-3`, ... when taken); returns its path and size. A file that could not be
/// written in full is removed.
fn write_file(
    dir: &Path,
    name: &str,
    link: LinkType,
    comments: &[String],
    notes: &[String],
    packets: &[PacketRecord<'_>],
) -> Result<(PathBuf, u64), String> {
    let stem = name.strip_suffix(FILE_SUFFIX).unwrap_or(name);
    let mut last = String::new();
    for n in 1..=20 {
        let path = if n == 1 {
            dir.join(name)
        } else {
            dir.join(format!("{stem}-{n}{FILE_SUFFIX}"))
        };
        let file = match create_private(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                last = e.to_string();
                continue;
            }
            Err(e) => return Err(format!("cannot create {}: {e}", path.display())),
        };
        let written = (|| {
            let mut w = PcapngWriter::new(BufWriter::new(file), link, SNAPLEN, comments)?;
            for n in notes {
                w.note(n)?;
            }
            for r in packets {
                w.write(r)?;
            }
            let file = w.finish()?.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            file.metadata().map(|m| m.len())
        })();
        return match written {
            Ok(bytes) => Ok((path, bytes)),
            Err(e) => {
                let _ = std::fs::remove_file(&path);
                Err(format!("cannot write {}: {e}", path.display()))
            }
        };
    }
    Err(format!(
        "{}: 20 files of that name exist already ({last})",
        dir.join(name).display()
    ))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn file_names_carry_time_client_and_cause_safely() {
        let t = Timestamp(1_795_000_000_123_456_789);
        let n = file_name(
            t,
            Some("nova-api:123:ab/../x"),
            "10.0.0.1:4000",
            "client-stall",
            false,
        );
        assert_eq!(
            n,
            "hbscope-gap-20261118T110640.123Z-nova-api_123_ab_.._x-client-stall.pcapng"
        );
        let n = file_name(t, None, "[::1]:4000", "unknown", true);
        assert!(n.ends_with("-___1__4000-unknown-open.pcapng"), "{n}");
        assert_eq!(safe_name(""), "unknown");
        assert_eq!(safe_name(&"x".repeat(100)).len(), NAME_CHARS);
        assert_eq!(safe_name("a\u{202e}b\nc"), "a_b_c");
    }

    #[test]
    fn caps_delete_the_oldest_recordings_only() {
        let dir = std::env::temp_dir().join(format!("hbscope-rec-caps-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        check_dir(&dir).unwrap();
        let other = dir.join("notes.txt");
        std::fs::write(&other, b"mine").unwrap();
        for i in 0..3 {
            std::fs::write(
                dir.join(format!("{FILE_PREFIX}2026010{i}{FILE_SUFFIX}")),
                [0; 100],
            )
            .unwrap();
        }
        let mut opts = RecordOptions::new(dir.clone());
        opts.max_files = 2;
        let mut r = Recorder::new(opts);
        assert_eq!(r.files.len(), 3);
        let newest = dir.join(format!("{FILE_PREFIX}20260109{FILE_SUFFIX}"));
        std::fs::write(&newest, [0; 10]).unwrap();
        r.files.push_back((newest.clone(), 10));
        r.files_bytes += 10;
        let deleted = r.enforce_caps(&newest);
        assert_eq!(deleted.len(), 2);
        assert!(deleted[0].ends_with(format!("{FILE_PREFIX}20260100{FILE_SUFFIX}")));
        assert!(other.exists() && newest.exists());
        // A byte cap below the newest file alone keeps it.
        r.opts.max_bytes = 5;
        let deleted = r.enforce_caps(&newest);
        assert_eq!(deleted.len(), 1);
        assert!(newest.exists());
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn check_dir_refuses_a_file_and_creates_a_missing_dir_0700() {
        use std::os::unix::fs::PermissionsExt;
        let base = std::env::temp_dir().join(format!("hbscope-rec-dir-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let dir = base.join("a/b");
        check_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        let file = base.join("f");
        std::fs::write(&file, b"").unwrap();
        let e = check_dir(&file).unwrap_err().to_string();
        assert!(e.contains("not a directory"), "{e}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "no probe left");
        let _ = std::fs::remove_dir_all(&base);
    }
}
