//! The one driver: the loop every mode runs, from a packet source through
//! the engine to a sink.
//!
//! ```text
//!                  Clock: now (capture time), elapsed, pass(wait)
//!                    |  WallClock (live) | SimClock (tests) | TUI playback clock
//!                    v
//! PacketSource --wait, next_batch--> Engine::process(_batch) --> Sink::packets
//!  FileSource          |                   |                     Sink::after_packets
//!  LiveCapture         |   every tick:     Engine::tick(now) --> Sink::on_tick(flagged)
//!  PacedSource         |   new drops:      on_capture_drops  --> Sink::on_drops
//!                      |   every sample:   source.flush()    --> Sink::on_sample
//!                      |                   source.annotate() <-- Sink::take_annotations
//!                      v
//!        drive() -> Driven { reason: StopReason, progress, dropped }
//! ```
//!
//! | mode | source | pace | sink |
//! |------|--------|------|------|
//! | replay (`run::replay`) | [`FileSource`] | unpaced, batches of 1024 | progress, `observe` (two-ended) |
//! | TUI loading | [`FileSource`] | unpaced | answers the UI between batches |
//! | TUI `--speed N` | [`PacedSource`] + playback clock | 50 ms ticks | answers the UI at ticks |
//! | live (`run::live`) | `LiveCapture` | [`WallClock`], 200 ms ticks, 1 s samples, `--duration` | events, `/proc` samples, metrics |
//! | tests (`live_sim`, `metrics_replay`) | [`PacedSource`] | [`SimClock`] | live's, or the test's |
//!
//! [`drive`] has two paces. Without a clock ([`DriveOptions::paced`] is
//! `None`) it reads as fast as it can, batch after batch, until the source
//! ends, fails, the stop flag is set or the sink asks to stop. With a
//! [`Paced`] clock it is the live loop: it waits on the source until the next
//! tick, sample or deadline, hands over what is ready, re-checks open
//! silences every tick ([`Engine::tick`], whose newly flagged open gaps go to
//! [`Sink::on_tick`]), reads the source's kernel drop counter, calls
//! [`Sink::on_sample`] (and flushes the source's `--write` file) every sample
//! period, and stops at the deadline. How it stopped comes back as a
//! [`StopReason`]; a source error is also recorded as an engine warning under
//! the error's code. The caller finishes the engine ([`Engine::finish`]) when
//! it is ready to. [`open_input`] opens a capture file and checks its link
//! type for every mode that reads files.
//!
//! Time: analysis never reads a clock. Capture time comes with the packets,
//! and in paced mode from the [`Clock`] the driver is given. [`WallClock`] is
//! the only place in hbscope that reads the system's wall clock (live capture
//! is stamped by the kernel with it). [`SimClock`] is a simulated clock; with
//! a [`PacedSource`] (a capture file whose packets are released as the clock
//! passes their timestamps) live mode runs from a pcap without root, a broker
//! or real waiting, in tick steps.

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::capture::{Batch, PacketSource, SourceError};
use crate::capture::{CaptureError, FileSource, LinkType, PacketRecord};
use crate::decode::is_supported;
use crate::engine::{ConnId, Engine};
use crate::model::{Direction, Span, Timestamp};

/// Progress while reading (for a UI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Packets read.
    pub packets: u64,
    /// Bytes of the input consumed.
    pub bytes: u64,
    /// Input size when known (not for stdin or a live interface).
    pub total: Option<u64>,
}

/// Why an input file could not be analysed at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The capture could not be opened.
    #[error("{0}")]
    Open(#[from] CaptureError),
    /// The link type is not one hbscope decodes.
    #[error(
        "{input}: link-layer type {link} is not supported; hbscope reads Ethernet (with VLAN tags), Linux cooked \
         v1/v2 (`tcpdump -i any`), BSD loopback and raw IP captures"
    )]
    UnsupportedLink {
        /// The input.
        input: String,
        /// Its link type.
        link: String,
    },
}

/// Opens the capture file at `path` (`-`: stdin) and checks that its link
/// type is one hbscope decodes, without reading packets: replay, two-ended
/// replay and the TUI open their inputs this way.
///
/// # Errors
/// [`InputError`] when the input cannot be opened or its link type is unsupported.
pub fn open_input(path: &Path) -> Result<(FileSource, LinkType), InputError> {
    let src = FileSource::open(path)?;
    let link = src.link_type();
    if is_supported(link) {
        Ok((src, link))
    } else {
        Err(InputError::UnsupportedLink {
            input: path.display().to_string(),
            link: link.to_string(),
        })
    }
}

/// How [`drive`] ended.
#[derive(Debug)]
pub enum StopReason {
    /// The source is exhausted (the end of a file).
    EndOfInput,
    /// The stop flag was set (SIGINT/SIGTERM in live mode).
    Signal,
    /// The paced run reached its deadline (`--duration`).
    Duration,
    /// The sink asked to stop (its output closed, the UI quit).
    SinkClosed,
    /// The source failed; the engine has a warning with the error's code.
    Error(SourceError),
}

impl StopReason {
    /// A stable name: `end-of-input`, `signal`, `duration`, `sink-closed`, `error`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            StopReason::EndOfInput => "end-of-input",
            StopReason::Signal => "signal",
            StopReason::Duration => "duration",
            StopReason::SinkClosed => "sink-closed",
            StopReason::Error(_) => "error",
        }
    }
}

/// What a sink callback wants next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Go on.
    Continue,
    /// Stop: [`drive`] returns [`StopReason::SinkClosed`].
    Stop,
}

/// Gets what happens while [`drive`] runs. Every method has a default that
/// does nothing and goes on.
pub trait Sink {
    /// Once, before anything is read (`now`: the clock's, or 0 unpaced).
    fn start(&mut self, engine: &Engine, now: Timestamp) -> Flow {
        let _ = (engine, now);
        Flow::Continue
    }

    /// The records of a batch, right after the engine processed them.
    fn packets(&mut self, link: LinkType, recs: &[PacketRecord<'_>]) {
        let _ = (link, recs);
    }

    /// After a batch of packets went into the engine. `now` is the clock's
    /// time, or unpaced the last packet's.
    fn after_packets(&mut self, engine: &Engine, now: Timestamp, progress: &Progress) -> Flow {
        let _ = (engine, now, progress);
        Flow::Continue
    }

    /// Paced: the source's kernel counter shows `new` more drops (`total`
    /// since the start); the engine already counted them.
    fn on_drops(&mut self, engine: &Engine, now: Timestamp, new: u64, total: u64) -> Flow {
        let _ = (engine, now, new, total);
        Flow::Continue
    }

    /// Paced, every tick, after [`Engine::tick`]: `flagged` are the open
    /// silences that just passed their limit (connection, direction, silence).
    fn on_tick(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        flagged: &[(ConnId, Direction, Span)],
    ) -> Flow {
        let _ = (engine, now, flagged);
        Flow::Continue
    }

    /// Paced, every sample period (the first right at the start).
    fn on_sample(&mut self, engine: &Engine, now: Timestamp) -> Flow {
        let _ = (engine, now);
        Flow::Continue
    }

    /// Paced, every sample period, after [`Sink::on_sample`]: text notes for
    /// the source to save with the packets ([`PacketSource::annotate`]).
    fn take_annotations(&mut self) -> Vec<String> {
        Vec::new()
    }
}

/// A sink that wants nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoSink;

impl Sink for NoSink {}

/// Where paced time comes from.
pub trait Clock {
    /// Capture time now: what a packet arriving now would be stamped with.
    fn now(&self) -> Timestamp;

    /// Time since the clock started (never goes back), for scheduling ticks,
    /// samples and the deadline.
    fn elapsed(&self) -> Duration;

    /// The driver is about to wait up to `d` for the source; returns how
    /// long the source may block in real time. The wall clock moves by
    /// itself and returns `d`; a simulated clock moves `d` forward and
    /// returns zero.
    fn pass(&mut self, d: Duration) -> Duration;
}

/// The system's clocks: `SystemTime` for capture time (the kernel stamps
/// packets with it), `Instant` for scheduling.
#[derive(Debug, Clone, Copy)]
pub struct WallClock {
    started: Instant,
}

impl WallClock {
    /// A clock whose [`Clock::elapsed`] counts from now.
    #[must_use]
    pub fn start() -> Self {
        WallClock {
            started: Instant::now(),
        }
    }
}

impl Clock for WallClock {
    fn now(&self) -> Timestamp {
        let d = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Timestamp::from_parts(
            i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            i64::from(d.subsec_nanos()),
        )
    }

    fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    fn pass(&mut self, d: Duration) -> Duration {
        d
    }
}

/// A simulated clock: starts at a capture time and moves only when the
/// driver waits ([`Clock::pass`]) or [`SimClock::advance`] is called. Clones
/// share the same time (a [`PacedSource`] holds one).
#[derive(Debug, Clone)]
pub struct SimClock {
    start: Timestamp,
    elapsed_ns: Arc<AtomicI64>,
}

impl SimClock {
    /// A clock standing at `start`.
    #[must_use]
    pub fn new(start: Timestamp) -> Self {
        SimClock {
            start,
            elapsed_ns: Arc::new(AtomicI64::new(0)),
        }
    }

    /// Moves the clock `d` forward.
    pub fn advance(&self, d: Duration) {
        let ns = i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let _ = self
            .elapsed_ns
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |e| {
                Some(e.saturating_add(ns))
            });
    }

    /// The capture time the clock started at.
    #[must_use]
    pub fn started_at(&self) -> Timestamp {
        self.start
    }
}

impl Clock for SimClock {
    fn now(&self) -> Timestamp {
        self.start
            .plus(Span(self.elapsed_ns.load(Ordering::SeqCst)))
    }

    fn elapsed(&self) -> Duration {
        let ns = self.elapsed_ns.load(Ordering::SeqCst);
        Duration::from_nanos(u64::try_from(ns).unwrap_or(0))
    }

    fn pass(&mut self, d: Duration) -> Duration {
        self.advance(d);
        Duration::ZERO
    }
}

/// One packet copied out of its source (held until the clock reaches it).
#[derive(Debug, Clone)]
struct OwnedRecord {
    ts: Timestamp,
    caplen: u32,
    orig_len: u32,
    data: Vec<u8>,
}

impl OwnedRecord {
    fn of(rec: &PacketRecord<'_>) -> Self {
        OwnedRecord {
            ts: rec.ts,
            caplen: rec.caplen,
            orig_len: rec.orig_len,
            data: rec.data.to_vec(),
        }
    }

    fn record(&self) -> PacketRecord<'_> {
        PacketRecord {
            ts: self.ts,
            caplen: self.caplen,
            orig_len: self.orig_len,
            data: &self.data,
        }
    }
}

/// A capture file played as if captured live: each packet is released once
/// the clock has passed its timestamp, so live mode can run from a pcap with
/// simulated time ([`SimClock`], the default), and the TUI plays a file at N
/// times real time (its playback clock). Kernel drops can be simulated too
/// ([`PacedSource::drop_at`]). The file's end is [`Batch::End`]; a read error
/// comes after the packets before it.
pub struct PacedSource<C: Clock + Clone = SimClock> {
    file: FileSource,
    clock: C,
    /// The next packet, read but not yet due.
    pending: Option<OwnedRecord>,
    /// The file ended (cleanly: `None`) or failed (`Some`), after `pending`.
    ended: Option<Option<CaptureError>>,
    /// Simulated kernel drops: (when, how many), by time.
    drops: Vec<(Timestamp, u64)>,
    bytes: u64,
}

impl<C: Clock + Clone> std::fmt::Debug for PacedSource<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PacedSource")
            .field("file", &self.file)
            .field("now", &self.clock.now())
            .finish_non_exhaustive()
    }
}

impl PacedSource<SimClock> {
    /// Opens the capture at `path` and a simulated clock standing at its
    /// first packet's timestamp (0 when it has none).
    ///
    /// # Errors
    /// [`CaptureError`] when the file cannot be opened (see [`FileSource::open`]).
    pub fn open(path: &Path) -> Result<(Self, SimClock), CaptureError> {
        Ok(Self::with_clock(FileSource::open(path)?, SimClock::new))
    }
}

impl<C: Clock + Clone> PacedSource<C> {
    /// Plays `file` against the clock `make_clock` builds from the first
    /// packet's timestamp (0 when there is none); returns a handle on that
    /// clock too (clones share their time).
    pub fn with_clock(file: FileSource, make_clock: impl FnOnce(Timestamp) -> C) -> (Self, C) {
        let mut pending = None;
        let mut ended = None;
        let mut file = file;
        match file.next_packet() {
            Ok(Some(rec)) => pending = Some(OwnedRecord::of(&rec)),
            Ok(None) => ended = Some(None),
            Err(e) => ended = Some(Some(e)),
        }
        let start = pending.as_ref().map_or(Timestamp(0), |r| r.ts);
        let clock = make_clock(start);
        let bytes = file.bytes_consumed();
        let src = PacedSource {
            file,
            clock: clock.clone(),
            pending,
            ended,
            drops: Vec::new(),
            bytes,
        };
        (src, clock)
    }

    /// Simulates `n` packets dropped by the kernel at capture time `at`
    /// (seen by [`PacketSource::drops`] once the clock passed it).
    pub fn drop_at(&mut self, at: Timestamp, n: u64) {
        self.drops.push((at, n));
    }

    /// Reads the next packet into `pending` when there is none.
    fn fetch(&mut self) {
        if self.pending.is_some() || self.ended.is_some() {
            return;
        }
        match self.file.next_packet() {
            Ok(Some(rec)) => self.pending = Some(OwnedRecord::of(&rec)),
            Ok(None) => self.ended = Some(None),
            Err(e) => self.ended = Some(Some(e)),
        }
        self.bytes = self.file.bytes_consumed();
    }

    fn due(&self) -> bool {
        self.pending
            .as_ref()
            .is_some_and(|r| r.ts <= self.clock.now())
    }

    fn ready(&mut self) -> bool {
        self.fetch();
        self.due() || self.pending.is_none()
    }
}

impl<C: Clock + Clone> PacketSource for PacedSource<C> {
    fn link_type(&self) -> LinkType {
        self.file.link_type()
    }

    /// A simulated clock waits no real time (`timeout` is zero); a real-time
    /// one sleeps in short naps until a packet is due or `timeout` passed.
    fn wait(&mut self, timeout: Duration) -> Result<bool, SourceError> {
        /// Longest nap: how late a packet may be released.
        const NAP: Duration = Duration::from_millis(10);
        let until = Instant::now() + timeout;
        loop {
            if self.ready() {
                return Ok(true);
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            std::thread::sleep(left.min(NAP));
        }
    }

    fn next_batch(
        &mut self,
        max: usize,
        f: &mut dyn FnMut(&[PacketRecord<'_>]),
    ) -> Result<Batch, SourceError> {
        let mut out = Vec::new();
        while out.len() < max {
            self.fetch();
            if !self.due() {
                break;
            }
            if let Some(r) = self.pending.take() {
                out.push(r);
            }
        }
        if !out.is_empty() {
            let recs: Vec<PacketRecord<'_>> = out.iter().map(OwnedRecord::record).collect();
            f(&recs);
            return Ok(Batch::Packets(out.len()));
        }
        match &mut self.ended {
            Some(err) if self.pending.is_none() => match err.take() {
                Some(e) => Err(e.into()),
                None => Ok(Batch::End),
            },
            _ => Ok(Batch::Idle),
        }
    }

    fn drops(&mut self) -> Option<u64> {
        let now = self.clock.now();
        Some(
            self.drops
                .iter()
                .filter(|(at, _)| *at <= now)
                .map(|(_, n)| n)
                .sum(),
        )
    }

    fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn size(&self) -> Option<u64> {
        self.file.file_size()
    }
}

/// The live loop's clock and periods.
pub struct Paced<'a> {
    /// Where time comes from.
    pub clock: &'a mut dyn Clock,
    /// How often open silences are re-checked ([`Engine::tick`]) and the
    /// kernel's drop counter read.
    pub tick: Duration,
    /// How often [`Sink::on_sample`] runs and the source is flushed.
    pub sample: Duration,
    /// Stop this long after the start.
    pub deadline: Option<Duration>,
    /// After a stop other than an error, hand over what the source already
    /// holds (up to one batch) before returning.
    pub drain: bool,
}

/// How [`drive`] runs.
pub struct DriveOptions<'a> {
    /// Most packets read between two looks at the clock, the stop flag and
    /// the sink.
    pub batch: usize,
    /// `None`: as fast as possible, with no ticks, samples or deadline.
    pub paced: Option<Paced<'a>>,
    /// Stop when this flag is set ([`StopReason::Signal`]).
    pub stop: Option<&'a AtomicBool>,
}

/// What [`drive`] returns.
#[derive(Debug)]
pub struct Driven {
    /// How it ended.
    pub reason: StopReason,
    /// Packets and bytes read.
    pub progress: Progress,
    /// Packets the kernel dropped since the start (0 when the source has no
    /// such counter).
    pub dropped: u64,
}

/// Reads one batch into the engine (and the sink's `packets`), counting it.
fn read<S: PacketSource + ?Sized>(
    source: &mut S,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    max: usize,
    progress: &mut Progress,
) -> Result<Batch, SourceError> {
    let link = engine.link();
    let got = source.next_batch(max, &mut |recs| {
        // A single record (a live interface) skips the batch's look-ahead setup.
        if let [one] = recs {
            engine.process(one);
        } else {
            engine.process_batch(recs);
        }
        sink.packets(link, recs);
    });
    if let Ok(Batch::Packets(n)) = got {
        progress.packets += n as u64;
    }
    progress.bytes = source.bytes_read();
    got
}

/// Records a source error in the engine and turns it into the stop reason.
fn failed(engine: &mut Engine, e: SourceError) -> StopReason {
    engine.warn_input(e.warning_code(), e.to_string());
    StopReason::Error(e)
}

fn stop_set(stop: Option<&AtomicBool>) -> bool {
    stop.is_some_and(|s| s.load(Ordering::SeqCst))
}

/// Runs `source` through `engine`, telling `sink`, until the source ends or
/// fails, the stop flag is set, the deadline passes or the sink asks to stop.
/// The engine is not finished: the caller does that when it is ready to.
pub fn drive<S: PacketSource + ?Sized>(
    source: &mut S,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    opts: DriveOptions<'_>,
) -> Driven {
    let mut progress = Progress {
        packets: 0,
        bytes: 0,
        total: source.size(),
    };
    let batch = opts.batch.max(1);
    match opts.paced {
        None => {
            let reason = unpaced(source, engine, sink, batch, opts.stop, &mut progress);
            Driven {
                reason,
                progress,
                dropped: 0,
            }
        }
        Some(p) => paced(source, engine, sink, batch, opts.stop, p, &mut progress),
    }
}

/// As fast as possible.
fn unpaced<S: PacketSource + ?Sized>(
    source: &mut S,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    batch: usize,
    stop: Option<&AtomicBool>,
    progress: &mut Progress,
) -> StopReason {
    /// How long an idle source (a live one, driven unpaced) is waited for.
    const IDLE_WAIT: Duration = Duration::from_millis(100);
    let last = |engine: &Engine| engine.counters().last.unwrap_or_default();
    if sink.start(engine, last(engine)) == Flow::Stop {
        return StopReason::SinkClosed;
    }
    loop {
        if stop_set(stop) {
            return StopReason::Signal;
        }
        match read(source, engine, sink, batch, progress) {
            Ok(Batch::Packets(_)) => {
                if sink.after_packets(engine, last(engine), progress) == Flow::Stop {
                    return StopReason::SinkClosed;
                }
            }
            Ok(Batch::Idle) => {
                if let Err(e) = source.wait(IDLE_WAIT) {
                    return failed(engine, e);
                }
            }
            Ok(Batch::End) => return StopReason::EndOfInput,
            Err(e) => return failed(engine, e),
        }
    }
}

/// The live loop.
fn paced<S: PacketSource + ?Sized>(
    source: &mut S,
    engine: &mut Engine,
    sink: &mut dyn Sink,
    batch: usize,
    stop: Option<&AtomicBool>,
    p: Paced<'_>,
    progress: &mut Progress,
) -> Driven {
    let clock = p.clock;
    let mut next_tick = clock.elapsed() + p.tick;
    let mut next_sample = clock.elapsed();
    let deadline = p.deadline.map(|d| clock.elapsed() + d);
    let mut dropped_seen = 0u64;
    let mut reason = if sink.start(engine, clock.now()) == Flow::Stop {
        Some(StopReason::SinkClosed)
    } else {
        None
    };
    while reason.is_none() {
        if stop_set(stop) {
            reason = Some(StopReason::Signal);
            break;
        }
        let at = clock.elapsed();
        if deadline.is_some_and(|d| at >= d) {
            reason = Some(StopReason::Duration);
            break;
        }
        let mut wake = next_tick.min(next_sample);
        if let Some(d) = deadline {
            wake = wake.min(d);
        }
        let real = clock.pass(wake.saturating_sub(at));
        let ready = match source.wait(real) {
            Ok(r) => r,
            Err(e) => {
                reason = Some(failed(engine, e));
                break;
            }
        };
        let mut got = 0;
        if ready {
            match read(source, engine, sink, batch, progress) {
                Ok(Batch::Packets(n)) => got = n,
                Ok(Batch::Idle) => {}
                Ok(Batch::End) => reason = Some(StopReason::EndOfInput),
                Err(e) => reason = Some(failed(engine, e)),
            }
        }
        let now = clock.now();
        let at = clock.elapsed();
        if got > 0 && sink.after_packets(engine, now, progress) == Flow::Stop {
            reason = Some(StopReason::SinkClosed);
        }
        if reason.is_some() {
            break;
        }
        if at >= next_sample {
            let flow = sink.on_sample(engine, now);
            for note in sink.take_annotations() {
                source.annotate(&note);
            }
            if let Err(e) = source.flush() {
                engine.warn(e.warning_code(), e.to_string());
            }
            next_sample = at + p.sample;
            if flow == Flow::Stop {
                reason = Some(StopReason::SinkClosed);
                break;
            }
        }
        if at >= next_tick {
            let mut flow = Flow::Continue;
            let total = source.drops().unwrap_or(dropped_seen);
            if total > dropped_seen {
                let new = total - dropped_seen;
                dropped_seen = total;
                engine.on_capture_drops(new);
                flow = sink.on_drops(engine, now, new, total);
            }
            let flagged = engine.tick(now);
            if sink.on_tick(engine, now, &flagged) == Flow::Stop {
                flow = Flow::Stop;
            }
            next_tick = at + p.tick;
            if flow == Flow::Stop {
                reason = Some(StopReason::SinkClosed);
            }
        }
    }
    let reason = reason.unwrap_or(StopReason::SinkClosed);
    // Hand over what the source already holds, then count the final drops.
    if p.drain && !matches!(reason, StopReason::Error(_)) {
        let _ = read(source, engine, sink, batch, progress);
    }
    let total = source.drops().unwrap_or(dropped_seen);
    if total > dropped_seen {
        engine.on_capture_drops(total - dropped_seen);
    }
    Driven {
        reason,
        progress: *progress,
        dropped: total,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::engine::EngineConfig;

    fn sigstop() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/client-sigstop.pcap")
    }

    fn unpaced_opts(stop: Option<&AtomicBool>) -> DriveOptions<'_> {
        DriveOptions {
            batch: 8,
            paced: None,
            stop,
        }
    }

    /// Counts calls; stops after `stop_after` batches.
    #[derive(Default)]
    struct Count {
        batches: usize,
        records: usize,
        stop_after: Option<usize>,
    }

    impl Sink for Count {
        fn packets(&mut self, _: LinkType, recs: &[PacketRecord<'_>]) {
            self.records += recs.len();
        }
        fn after_packets(&mut self, _: &Engine, _: Timestamp, p: &Progress) -> Flow {
            self.batches += 1;
            assert_eq!(p.packets as usize, self.records);
            if self.stop_after == Some(self.batches) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        }
    }

    #[test]
    fn unpaced_reads_a_file_to_its_end_in_batches() {
        let (mut src, link) = open_input(&sigstop()).unwrap();
        let mut engine = Engine::new(EngineConfig::default(), link);
        let mut sink = Count::default();
        let d = drive(&mut src, &mut engine, &mut sink, unpaced_opts(None));
        assert!(matches!(d.reason, StopReason::EndOfInput), "{d:?}");
        assert_eq!(d.progress.packets, 42);
        assert_eq!(engine.counters().packets, 42);
        assert_eq!(sink.records, 42);
        assert_eq!(sink.batches, 6, "42 packets in batches of 8");
        assert_eq!(Some(d.progress.bytes), d.progress.total);
    }

    #[test]
    fn unpaced_stops_for_the_flag_and_for_the_sink() {
        let (mut src, link) = open_input(&sigstop()).unwrap();
        let mut engine = Engine::new(EngineConfig::default(), link);
        let flag = AtomicBool::new(true);
        let d = drive(
            &mut src,
            &mut engine,
            &mut NoSink,
            unpaced_opts(Some(&flag)),
        );
        assert!(matches!(d.reason, StopReason::Signal), "{d:?}");
        assert_eq!(d.progress.packets, 0);

        let (mut src, link) = open_input(&sigstop()).unwrap();
        let mut engine = Engine::new(EngineConfig::default(), link);
        let mut sink = Count {
            stop_after: Some(2),
            ..Count::default()
        };
        let d = drive(&mut src, &mut engine, &mut sink, unpaced_opts(None));
        assert!(matches!(d.reason, StopReason::SinkClosed), "{d:?}");
        assert_eq!(d.progress.packets, 16);
    }

    #[test]
    fn paced_source_releases_packets_as_the_clock_passes_them() {
        let (mut src, clock) = PacedSource::open(&sigstop()).unwrap();
        let start = clock.now();
        let mut got: Vec<Timestamp> = Vec::new();
        let take = |src: &mut PacedSource| {
            let mut ts = Vec::new();
            let b = src
                .next_batch(1000, &mut |recs| ts.extend(recs.iter().map(|r| r.ts)))
                .unwrap();
            (b, ts)
        };
        // At the first packet's time: the packets stamped then, no later one.
        let (b, ts) = take(&mut src);
        assert!(matches!(b, Batch::Packets(_)));
        assert!(ts.iter().all(|t| *t <= start));
        got.extend(ts);
        clock.advance(Duration::from_secs(1));
        let (_, ts) = take(&mut src);
        assert!(ts.iter().all(|t| *t > start && *t <= clock.now()));
        got.extend(ts);
        assert!(matches!(take(&mut src).0, Batch::Idle));
        clock.advance(Duration::from_secs(60));
        let (_, ts) = take(&mut src);
        got.extend(ts);
        assert_eq!(got.len(), 42);
        assert!(matches!(take(&mut src).0, Batch::End));
    }
}
