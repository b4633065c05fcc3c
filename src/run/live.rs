//! Live mode: capture from an interface, run the same engine as replay, and
//! stream events while it runs.
//!
//! ```text
//! LiveCapture --packets--> driver::drive --> Engine --(after each batch)--> LiveSink -> events
//!   (any PacketSource)       ^   | tick every 200 ms: open silences grow -> gap-opened
//!                            |   | sample every 1 s: procinfo, --write flush
//!  SIGINT/SIGTERM flag,  Clock: WallClock (kernel wall clock = capture time);
//!  --duration deadline          SimClock + PacedSource in tests (no root, no broker)
//! ```
//!
//! Events ([`LiveEvent`]) say: capture started, connection seen, gap opened
//! (an open silence that just passed its limit, flagged before it ends), gap
//! closed (cause, evidence and the process verdict), connection ended, kernel
//! drops, capture stopped. When the capture stops (signal, `--duration`, error
//! after start) the engine is finished and the final [`Report`] is returned,
//! with the process facts added to it.
//!
//! [`run`] opens the interface, binds `--metrics`, creates the `--write` file
//! and drops privileges, in that order, then hands over to [`run_with`], which
//! takes any [`PacketSource`], [`Clock`] and metrics [`Publish`]er: that is
//! the code the tests run from a capture file with simulated time.
//!
//! With `--metrics` ([`crate::metrics`]), a tick after a scrape asked for it
//! rebuilds the Prometheus registry from the engine and hands it to the HTTP
//! thread.
//!
//! Capture timestamps are the kernel's wall clock in nanoseconds, so the live
//! "now" is [`WallClock`]'s; it is handed to the engine and the sampler,
//! which never read a clock themselves.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::analysis::{Connection, EndHow, Role};
use crate::capture::live::{LiveCapture, LiveCaptureError, LiveConfig};
use crate::capture::{LinkType, PacketRecord, PacketSource};
use crate::driver::{self, Clock, DriveOptions, Flow, Paced, Progress, Sink, WallClock};
use crate::engine::{ConnId, ConnSlot, Engine, EngineConfig};
use crate::metrics::{
    Collector, MetricsError, MetricsOptions, MetricsServer, RecorderStats, Registry,
};
use crate::model::{Direction, Endpoint, Span, Timestamp};
use crate::os::procinfo::{self, Activity, ProcInfoError, Sampler, SocketOwner, Watch};
use crate::os::pyspy;
use crate::os::threads::{self, ThreadsSample};
use crate::proto::amqp::PropValue;
use crate::report::annotation::Note;
use crate::report::sanitize::text as clean;
use crate::report::{self, GapReport, ProcessOwnerReport, ProcessReport, Report, Zone};
use crate::run::recorder::{self, GapNote, RecordError, RecordOptions, Recorded, Recorder};
use crate::tui::live::ProcessNote;

/// How often open silences are re-checked against the clock.
pub const TICK: Duration = Duration::from_millis(200);
/// How often owner processes are sampled and the savefile flushed.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Most packets handled between two clock checks.
const BATCH: usize = 4096;
/// A confirmed connection is announced once its Tune-Ok (the negotiated
/// heartbeat) is seen, or this long after its first packet.
const ANNOUNCE_AFTER: i64 = 1_000_000_000;

/// The default BPF filter: AMQP and AMQPS.
pub const DEFAULT_FILTER: &str = "tcp port 5672 or tcp port 5671";

/// Builds the capture filter: `filter` when given, else the default plus
/// `tcp port N` for each extra port.
#[must_use]
pub fn bpf_filter(filter: Option<&str>, ports: &[u16]) -> String {
    if let Some(f) = filter {
        return f.to_owned();
    }
    let mut f = DEFAULT_FILTER.to_owned();
    for p in ports {
        if *p != 5672 && *p != 5671 {
            f.push_str(&format!(" or tcp port {p}"));
        }
    }
    f
}

/// What to capture and how.
#[derive(Debug, Clone)]
pub struct LiveOptions {
    /// Interface and BPF filter.
    pub capture: LiveConfig,
    /// Engine settings (AMQP ports, heartbeat override).
    pub engine: EngineConfig,
    /// Stop by itself after this long.
    pub duration: Option<Duration>,
    /// Save packets to this new pcap file (mode 0600, never through a
    /// symbolic link).
    pub write: Option<PathBuf>,
    /// Let `write` replace an existing regular file.
    pub force: bool,
    /// Attribute connections to local processes through /proc.
    pub attribution: bool,
    /// Attach `py-spy dump` output to the gaps of Python processes.
    pub py_spy: bool,
    /// Drop to this user once the capture (and `--write` file) are open.
    pub user: Option<String>,
    /// Serve Prometheus metrics (bound before `user` is applied).
    pub metrics: Option<MetricsOptions>,
    /// The flight recorder: one pcapng file per gap (`--record-gaps`).
    pub record: Option<RecordOptions>,
}

/// Why live mode failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    /// Opening or reading the capture.
    #[error(transparent)]
    Capture(#[from] LiveCaptureError),
    /// `--user` could not be applied (nothing was captured).
    #[error(transparent)]
    Privileges(#[from] crate::os::privileges::DropError),
    /// The `--metrics` address could not be served (nothing was captured).
    #[error(transparent)]
    Metrics(#[from] MetricsError),
    /// Installing the SIGINT/SIGTERM handlers.
    #[error("cannot install the SIGINT/SIGTERM handler ({0}); the capture could not be stopped cleanly, so it was not started")]
    Signals(io::Error),
    /// The `--record-gaps` directory cannot be used (nothing was captured).
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The terminal UI failed (`--format tui`).
    #[error("the terminal UI failed: {0}; try --format text")]
    Terminal(io::Error),
}

/// Installs SIGINT and SIGTERM handlers that set the returned flag.
///
/// # Errors
/// [`LiveError::Signals`] when a handler cannot be installed.
pub fn stop_on_signals() -> Result<Arc<AtomicBool>, LiveError> {
    let flag = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, Arc::clone(&flag)).map_err(LiveError::Signals)?;
    }
    Ok(flag)
}

/// Where the Prometheus registry goes (`--metrics`): the HTTP server, or a
/// test's recorder.
pub trait Publish {
    /// The address scrapes go to (announced by `metrics-listening`).
    fn local_addr(&self) -> SocketAddr;
    /// Whether a scrape asked for fresh numbers since the last call.
    fn take_wanted(&self) -> bool;
    /// Hands over a fresh registry.
    fn publish(&self, registry: Registry);
}

impl Publish for MetricsServer {
    fn local_addr(&self) -> SocketAddr {
        MetricsServer::local_addr(self)
    }
    fn take_wanted(&self) -> bool {
        MetricsServer::take_wanted(self)
    }
    fn publish(&self, registry: Registry) {
        MetricsServer::publish(self, registry);
    }
}

/// One live event, one JSON object per line (`"event"` names its kind).
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum LiveEvent {
    /// The capture is running.
    CaptureStarted {
        /// When.
        at: String,
        /// Interface.
        interface: String,
        /// Link type name.
        link_type: String,
        /// BPF filter in use.
        filter: String,
        /// The `--write` file, if any.
        #[serde(skip_serializing_if = "Option::is_none")]
        write: Option<String>,
    },
    /// The Prometheus endpoint is answering (`--metrics`); right after
    /// `capture-started`.
    MetricsListening {
        /// Now.
        at: String,
        /// The bound "ip:port" (the real port when 0 was asked for).
        address: String,
        /// The URL to scrape.
        url: String,
    },
    /// A new AMQP connection was recognised.
    ConnectionSeen {
        /// When (its first packet).
        at: String,
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// connection_name, else product.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_name: Option<String>,
        /// Heartbeat timeout in seconds, when known yet.
        #[serde(skip_serializing_if = "Option::is_none")]
        heartbeat_s: Option<u16>,
        /// No SYN seen.
        joined_mid_stream: bool,
        /// Process owning the client socket on this host.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_process: Option<ProcessOwnerReport>,
        /// Process owning the broker socket on this host.
        #[serde(skip_serializing_if = "Option::is_none")]
        broker_process: Option<ProcessOwnerReport>,
        /// Why the client side could not be attributed, when it could not.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_not_attributable: Option<String>,
    },
    /// An open silence just passed its limit; the gap is still growing.
    GapOpened {
        /// Now.
        at: String,
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// The provisional gap (`ended_by` = "open", `end` = now).
        gap: GapReport,
    },
    /// A gap ended: cause, evidence and process verdict are final.
    GapClosed {
        /// When it ended.
        at: String,
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// The gap, as in the report.
        gap: GapReport,
    },
    /// Both directions of a connection are closed (FIN both ways or RST).
    ConnectionEnded {
        /// When it ended.
        at: String,
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// "close" | "fin" | "rst".
        how: EndHow,
        /// "client" | "broker".
        #[serde(skip_serializing_if = "Option::is_none")]
        by: Option<Role>,
        /// Gaps flagged on it.
        gaps: usize,
    },
    /// The flight recorder wrote a gap's packets to a file (`--record-gaps`),
    /// or could not (`error`).
    GapRecorded {
        /// When it was written.
        at: String,
        /// Client "ip:port".
        client: String,
        /// Broker "ip:port".
        broker: String,
        /// connection_name, else product.
        #[serde(skip_serializing_if = "Option::is_none")]
        client_name: Option<String>,
        /// The gap's cause (provisional when `trigger` is "gap-opened").
        cause: String,
        /// "gap-closed", or "gap-opened" with `--record-on-open`.
        trigger: &'static str,
        /// The pcapng file (absent when it could not be written).
        #[serde(skip_serializing_if = "Option::is_none")]
        file: Option<String>,
        /// Packets in it.
        packets: u64,
        /// Its size in bytes.
        bytes: u64,
        /// Older recordings deleted to stay within the caps.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        deleted: Vec<String>,
        /// Why it could not be written.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The kernel dropped packets: open silences may hide lost packets.
    CaptureDrops {
        /// Now.
        at: String,
        /// Drops since the previous event.
        new: u64,
        /// Drops since the capture started.
        total: u64,
    },
    /// The capture stopped; the report follows.
    CaptureStopped {
        /// Now.
        at: String,
        /// "signal" | "duration" | "error" (see the report's warnings), or
        /// "end-of-input" when a finite (simulated) source ended.
        reason: StopReason,
        /// Packets read.
        packets: u64,
        /// Packets the kernel dropped.
        dropped: u64,
        /// The `--write` file, complete and flushed.
        #[serde(skip_serializing_if = "Option::is_none")]
        written: Option<String>,
    },
}

/// Why a live capture stopped (the `reason` of `capture-stopped`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum StopReason {
    /// Ctrl-C, SIGTERM or the caller's stop flag.
    Signal,
    /// `--duration` elapsed.
    Duration,
    /// The capture failed (the report's warnings say how).
    Error,
    /// A finite source ended by itself: only a simulated capture
    /// ([`crate::driver::PacedSource`]); an interface never does.
    EndOfInput,
}

impl StopReason {
    /// Event name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Signal => "signal",
            StopReason::Duration => "duration",
            StopReason::Error => "error",
            StopReason::EndOfInput => "end-of-input",
        }
    }
}

impl From<&driver::StopReason> for StopReason {
    /// How the driver stopped, in live mode's words. The event reader going
    /// away ([`driver::StopReason::SinkClosed`]) says "signal", as it did
    /// before the driver existed.
    fn from(r: &driver::StopReason) -> Self {
        match r {
            driver::StopReason::Signal | driver::StopReason::SinkClosed => StopReason::Signal,
            driver::StopReason::Duration => StopReason::Duration,
            driver::StopReason::Error(_) => StopReason::Error,
            driver::StopReason::EndOfInput => StopReason::EndOfInput,
        }
    }
}

crate::analysis::display_as_str!(StopReason);

/// One event as a line of text, times in UTC.
#[must_use]
pub fn event_text(e: &LiveEvent) -> String {
    event_text_in(e, Zone::Utc)
}

/// One event as a line of text, its time in zone `z` (`--local-time`).
#[must_use]
pub fn event_text_in(e: &LiveEvent, z: Zone) -> String {
    match e {
        LiveEvent::CaptureStarted {
            interface,
            link_type,
            filter,
            write,
            ..
        } => format!(
            "capturing on {interface} ({link_type}), filter `{filter}`{}; Ctrl-C stops and prints the report",
            write
                .as_ref()
                .map_or(String::new(), |w| format!(", writing {w}"))
        ),
        LiveEvent::MetricsListening { url, .. } => {
            format!("serving Prometheus metrics on {url}")
        }
        LiveEvent::ConnectionSeen {
            at,
            client,
            broker,
            client_name,
            heartbeat_s,
            client_process,
            client_not_attributable,
            ..
        } => {
            let mut s = format!("{} connection {client} -> {broker}", z.time(at));
            if let Some(n) = client_name {
                s.push_str(&format!(" \"{}\"", clean(n)));
            }
            if let Some(h) = heartbeat_s {
                s.push_str(&format!(", heartbeat {h} s"));
            }
            if let Some(p) = client_process {
                s.push_str(&format!(", client pid {} ({})", p.pid, clean(&p.command)));
            } else if let Some(why) = client_not_attributable {
                s.push_str(&format!(", client process unknown: {}", clean(why)));
            }
            s
        }
        LiveEvent::GapOpened {
            at,
            client,
            broker,
            gap,
        } => {
            let mut s = format!(
                "{} GAP OPEN {client} -> {broker}: {} silent for {:.1} s so far (limit {} s), looks like {}",
                z.time(at),
                gap.silent_side, gap.silence_s, gap.limit_s, gap.cause
            );
            if let Some(p) = &gap.process {
                s.push_str(&format!("; {}", report::process_text(p)));
            }
            s
        }
        LiveEvent::GapClosed {
            at,
            client,
            broker,
            gap,
        } => {
            let mut s = format!(
                "{} gap closed {client} -> {broker}: {} {:.3} s (limit {} s, {:.1}x), ended by {}: {} ({})",
                z.time(at),
                gap.direction,
                gap.silence_s,
                gap.limit_s,
                gap.ratio,
                gap.ended_by,
                gap.cause,
                gap.consequence
            );
            for line in &gap.evidence {
                s.push_str(&format!("\n    - {}", clean(line)));
            }
            if let Some(p) = &gap.process {
                s.push_str(&format!(
                    "\n    process: {}{}{}",
                    report::process_text(p),
                    report::diagnosis_evidence_text(p, "      "),
                    report::at_close_text(p, "      ")
                ));
                if let Some(d) = &p.py_spy {
                    s.push_str("\n    py-spy dump:");
                    for l in d.lines() {
                        s.push_str(&format!("\n      {}", clean(l)));
                    }
                }
            }
            s
        }
        LiveEvent::ConnectionEnded {
            at,
            client,
            broker,
            how,
            by,
            gaps,
        } => format!(
            "{} connection ended {client} -> {broker}: {how} by {}, {}",
            z.time(at),
            by.map_or("?", Role::as_str),
            report::count(*gaps as u64, "gap", "gaps")
        ),
        LiveEvent::GapRecorded {
            at,
            client,
            broker,
            cause,
            trigger,
            file,
            packets,
            deleted,
            error,
            ..
        } => {
            let mut s = match (file, error) {
                (Some(f), _) => format!(
                    "{at} gap recorded {client} -> {broker} ({cause}, at {trigger}): {packets} packets in {f}"
                ),
                (None, e) => format!(
                    "{at} gap NOT recorded {client} -> {broker} ({cause}): {}",
                    e.as_deref().unwrap_or("?")
                ),
            };
            if !deleted.is_empty() {
                s.push_str(&format!(
                    "; deleted {} over the caps",
                    report::count(deleted.len() as u64, "older recording", "older recordings")
                ));
            }
            s
        }
        LiveEvent::CaptureDrops { at, new, total, .. } => format!(
            "{} the kernel dropped {} (total {total}): silences open now may be capture loss",
            z.time(at),
            report::count(*new, "packet", "packets")
        ),
        LiveEvent::CaptureStopped {
            reason,
            packets,
            dropped,
            written,
            ..
        } => format!(
            "capture stopped ({reason}): {}, {dropped} dropped by the kernel{}",
            report::count(*packets, "packet", "packets"),
            written
                .as_ref()
                .map_or(String::new(), |w| format!(", saved to {w}"))
        ),
    }
}

/// Per-connection bookkeeping of what was already said about it.
#[derive(Debug, Default)]
struct SlotState {
    /// The connection it is about.
    id: ConnId,
    announced: bool,
    ended: bool,
    gaps_emitted: usize,
    /// Owners by role: [client, broker]; `None` when not looked up.
    owners: [Option<Result<SocketOwner, ProcInfoError>>; 2],
    /// Process verdicts by gap index.
    gap_process: HashMap<usize, ProcessReport>,
    /// By role: a gap of that side is open (flagged, not yet closed), so its
    /// process's threads are sampled every round.
    open: [bool; 2],
    /// By role: the `py-spy dump` started when that side's gap opened.
    dumps: [Option<pyspy::Dump>; 2],
}

/// The live session's state between packets.
struct Tracker {
    /// By position in [`Engine::slots`] (see [`Tracker::sync`]).
    slots: Vec<SlotState>,
    /// [`Engine::retire_passes`] when `slots` was last aligned.
    passes: u64,
    sampler: Option<Sampler>,
    /// What per-thread sampling could not read (privileges), said once as
    /// the report's `process-sampling-limited` warning.
    notice: Option<String>,
    /// `--py-spy`.
    py_spy: bool,
    /// Owners and gap process reports not yet stored in a pcapng `--write`
    /// file ([`report::annotation`]).
    notes: Vec<String>,
    /// Gaps reported since the flight recorder last took them (kept only
    /// with one).
    gap_notes: Option<Vec<GapNote>>,
}

fn role_index(r: Role) -> usize {
    match r {
        Role::Client => 0,
        Role::Broker => 1,
    }
}

fn connection_name(conn: &Connection) -> Option<String> {
    match conn
        .handshake()
        .client_properties
        .as_ref()?
        .get("connection_name")
    {
        Some(PropValue::Text(t)) => Some(t.clone()),
        _ => None,
    }
}

/// The socket pair of the `role` end, seen from that end: (local, remote).
fn socket_of(conn: &Connection, role: Role) -> (Endpoint, Endpoint) {
    match role {
        Role::Client => (conn.client(), conn.broker()),
        Role::Broker => (conn.broker(), conn.client()),
    }
}

impl Tracker {
    fn new(attribution: bool, amqp_ports: &[u16], py_spy: bool, recording: bool) -> Self {
        Tracker {
            slots: Vec::new(),
            passes: 0,
            sampler: attribution.then(|| Sampler::new().with_amqp_ports(amqp_ports)),
            notice: None,
            py_spy: attribution && py_spy,
            notes: Vec::new(),
            gap_notes: recording.then(Vec::new),
        }
    }

    /// Aligns `slots` with the engine's: drops the states of connections
    /// the engine folded away (both lists are in [`ConnId`] order) and adds
    /// states for new ones. Positions then match again.
    fn sync(&mut self, engine: &Engine) {
        let slots = engine.slots();
        if self.passes != engine.retire_passes() {
            self.passes = engine.retire_passes();
            let mut j = 0;
            self.slots.retain(|st| {
                while slots.get(j).is_some_and(|s| s.id() < st.id) {
                    j += 1;
                }
                slots.get(j).is_some_and(|s| s.id() == st.id)
            });
        }
        while let Some(s) = slots.get(self.slots.len()) {
            self.slots.push(SlotState {
                id: s.id(),
                ..SlotState::default()
            });
        }
    }

    /// The process report of `silent`'s side for a silence from `start` to
    /// `end`; `at_close` is the sample taken when it closed, if it did.
    fn process_verdict(
        &self,
        st: &SlotState,
        conn: &Connection,
        silent: Role,
        (start, end): (Timestamp, Timestamp),
        at_close: Option<&ThreadsSample>,
    ) -> Option<ProcessReport> {
        let sampler = self.sampler.as_ref()?;
        match st.owners[role_index(silent)].as_ref()? {
            Ok(owner) => {
                let mut v = sampler.verdict(
                    owner,
                    socket_of(conn, silent),
                    if silent == Role::Client {
                        connection_name(conn)
                    } else {
                        None
                    },
                    start,
                    end,
                );
                v.at_close = at_close.map(|s| threads::at_close(owner.pid, s));
                Some(ProcessReport::new(silent, v))
            }
            Err(e) => Some(ProcessReport::unsampled(
                silent,
                Activity::NotAttributable,
                e.to_string(),
            )),
        }
    }

    /// Emits what changed since the last call: new connections, closed
    /// gaps, ended connections.
    fn after_packets(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        emit: &mut dyn FnMut(&LiveEvent) -> io::Result<()>,
    ) -> io::Result<()> {
        self.sync(engine);
        let slots = engine.slots();
        // Announce new connections, looking their owners up in one batch.
        let ready: Vec<usize> = slots
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                let c = &s.conn;
                !self.slots[*i].announced
                    && s.confirmed
                    && s.not_amqp.is_none()
                    && (c.handshake().tune_ok.is_some()
                        || c.joined_mid_stream()
                        || now.since(c.first_seen()).0 > ANNOUNCE_AFTER
                        || c.dirs().iter().all(|d| d.closed))
            })
            .map(|(i, _)| i)
            .collect();
        if !ready.is_empty() {
            if self.sampler.is_some() {
                let pairs: Vec<(Endpoint, Endpoint)> = ready
                    .iter()
                    .flat_map(|i| {
                        let c = &slots[*i].conn;
                        [socket_of(c, Role::Client), socket_of(c, Role::Broker)]
                    })
                    .collect();
                let mut found = procinfo::find_owners(&pairs).into_iter();
                for i in &ready {
                    self.slots[*i].owners = [found.next(), found.next()];
                }
            }
            for i in &ready {
                let st = &mut self.slots[*i];
                st.announced = true;
                let c = &slots[*i].conn;
                let owner = |k: usize| {
                    st.owners[k]
                        .as_ref()
                        .and_then(|o| o.as_ref().ok())
                        .map(|o| ProcessOwnerReport::from(&o.report()))
                };
                if owner(0).is_some() || owner(1).is_some() {
                    self.notes.push(
                        Note::Owners {
                            client: c.client().to_string(),
                            broker: c.broker().to_string(),
                            client_process: owner(0),
                            broker_process: owner(1),
                        }
                        .to_text(),
                    );
                }
                emit(&LiveEvent::ConnectionSeen {
                    at: report::rfc3339(c.first_seen()),
                    client: c.client().to_string(),
                    broker: c.broker().to_string(),
                    client_name: c.client_name(),
                    heartbeat_s: c.heartbeat().0,
                    joined_mid_stream: c.joined_mid_stream(),
                    client_process: owner(0),
                    broker_process: owner(1),
                    client_not_attributable: st.owners[0]
                        .as_ref()
                        .and_then(|o| o.as_ref().err())
                        .map(ToString::to_string),
                })?;
            }
        }
        // Closed gaps and ended connections.
        for (i, s) in slots.iter().enumerate() {
            if !self.slots[i].announced {
                continue;
            }
            let c = &s.conn;
            while self.slots[i].gaps_emitted < c.gaps().len() {
                let gi = self.slots[i].gaps_emitted;
                self.slots[i].gaps_emitted += 1;
                let g = &c.gaps()[gi];
                self.slots[i].open[role_index(g.silent)] = false;
                let dump = self.slots[i].dumps[role_index(g.silent)].take();
                // One more sample as the gap closes: how the silence ended.
                let close = match (
                    self.sampler.as_mut(),
                    &self.slots[i].owners[role_index(g.silent)],
                ) {
                    (Some(sampler), Some(Ok(owner))) => {
                        let s = sampler.sample_at_close(owner.pid, now);
                        if self.notice.is_none() {
                            self.notice = sampler.take_privilege_notice();
                        }
                        Some(s)
                    }
                    _ => None,
                };
                let mut process = self.process_verdict(
                    &self.slots[i],
                    c,
                    g.silent,
                    (g.start, g.end),
                    close.as_ref(),
                );
                if let (Some(p), Some(mut d)) = (process.as_mut(), dump) {
                    p.py_spy = Some(match d.poll() {
                        Some(Ok(text)) => text,
                        Some(Err(why)) => why,
                        None => String::from("py-spy dump was still running when the gap closed"),
                    });
                }
                let mut gap = report::gap_report(c, g);
                gap.process.clone_from(&process);
                if let Some(notes) = &mut self.gap_notes {
                    notes.push(GapNote {
                        slot: s.id(),
                        index: Some(gi),
                        gap: g.clone(),
                        process: process.clone(),
                    });
                }
                if let Some(p) = process {
                    self.notes.push(
                        Note::GapProcess {
                            client: c.client().to_string(),
                            broker: c.broker().to_string(),
                            direction: gap.direction.as_str().to_owned(),
                            start: gap.start.clone(),
                            process: Box::new(p.clone()),
                        }
                        .to_text(),
                    );
                    self.slots[i].gap_process.insert(gi, p);
                }
                emit(&LiveEvent::GapClosed {
                    at: report::rfc3339(g.end),
                    client: c.client().to_string(),
                    broker: c.broker().to_string(),
                    gap,
                })?;
            }
            if !self.slots[i].ended && c.dirs().iter().all(|d| d.closed) {
                self.slots[i].ended = true;
                let (how, by, at) = c.ended();
                emit(&LiveEvent::ConnectionEnded {
                    at: report::rfc3339(at.unwrap_or(c.last_seen())),
                    client: c.client().to_string(),
                    broker: c.broker().to_string(),
                    how,
                    by,
                    gaps: c.gaps().len(),
                })?;
            }
        }
        Ok(())
    }

    /// Open silences that just passed their limit (`flagged`, from [`Engine::tick`]).
    fn on_tick(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        flagged: &[(ConnId, Direction, Span)],
        emit: &mut dyn FnMut(&LiveEvent) -> io::Result<()>,
    ) -> io::Result<()> {
        self.sync(engine);
        let slots = engine.slots();
        for &(id, dir, _) in flagged {
            let Some(i) = engine.slot_index(id) else {
                continue;
            };
            let (Some(s), Some(st)) = (slots.get(i), self.slots.get(i)) else {
                continue;
            };
            let c = &s.conn;
            let Some(g) = c.open_gap(dir, now) else {
                continue;
            };
            // Sample the silent process's threads right away, so the event
            // already names what it is blocked in.
            if let (Some(sampler), Some(Ok(owner))) =
                (self.sampler.as_mut(), &st.owners[role_index(g.silent)])
            {
                sampler.sample_threads(owner.pid, now);
                if self.notice.is_none() {
                    self.notice = sampler.take_privilege_notice();
                }
            }
            if let Some(st) = self.slots.get_mut(i) {
                let k = role_index(g.silent);
                st.open[k] = true;
                if self.py_spy && st.dumps[k].is_none() {
                    if let Some(Ok(owner)) = &st.owners[k] {
                        if pyspy::is_python(owner.pid) {
                            st.dumps[k] = Some(pyspy::Dump::start(owner.pid));
                        }
                    }
                }
            }
            let Some(st) = self.slots.get(i) else {
                continue;
            };
            let mut gap = report::gap_report(c, &g);
            gap.process = self.process_verdict(st, c, g.silent, (g.start, now), None);
            if let Some(notes) = &mut self.gap_notes {
                notes.push(GapNote {
                    slot: id,
                    index: None,
                    gap: g.clone(),
                    process: gap.process.clone(),
                });
            }
            emit(&LiveEvent::GapOpened {
                at: report::rfc3339(now),
                client: c.client().to_string(),
                broker: c.broker().to_string(),
                gap,
            })?;
        }
        Ok(())
    }

    fn sample(&mut self, engine: &Engine, now: Timestamp) {
        self.sync(engine);
        let Some(sampler) = self.sampler.as_mut() else {
            return;
        };
        let mut watch = Watch::default();
        for (st, s) in self.slots.iter().zip(engine.slots()) {
            if !st.announced || st.ended {
                continue;
            }
            for role in [Role::Client, Role::Broker] {
                if let Some(Ok(owner)) = &st.owners[role_index(role)] {
                    if !watch.owners.iter().any(|o| o.pid == owner.pid) {
                        watch.owners.push(owner.clone());
                    }
                    if st.open[role_index(role)] && !watch.deep.contains(&owner.pid) {
                        watch.deep.push(owner.pid);
                    }
                    watch.sockets.push(socket_of(&s.conn, role));
                }
            }
        }
        sampler.sample(&watch, now);
        if self.notice.is_none() {
            self.notice = sampler.take_privilege_notice();
        }
    }

    /// Adds owners and process verdicts to the final report.
    fn decorate(&self, engine: &Engine, rep: &mut Report) {
        // The report lists connections in first-packet order, the engine in
        // the order it recognised them: match by endpoints, not by position.
        let confirmed: std::collections::HashMap<(String, String), usize> = engine
            .slots()
            .iter()
            .enumerate()
            .filter(|(_, s)| s.confirmed && s.not_amqp.is_none())
            .map(|(i, s)| {
                (
                    (s.conn.client().to_string(), s.conn.broker().to_string()),
                    i,
                )
            })
            .collect();
        for conn_rep in &mut rep.connections {
            let Some(&slot) = confirmed.get(&(conn_rep.client.clone(), conn_rep.broker.clone()))
            else {
                continue;
            };
            let id = engine.slots().get(slot).map(ConnSlot::id);
            let Some(st) = self
                .slots
                .binary_search_by_key(&id, |st| Some(st.id))
                .ok()
                .and_then(|at| self.slots.get(at))
            else {
                continue;
            };
            let owner = |k: usize| {
                st.owners[k]
                    .as_ref()
                    .and_then(|o| o.as_ref().ok())
                    .map(|o| ProcessOwnerReport::from(&o.report()))
            };
            conn_rep.client_process = owner(0);
            conn_rep.broker_process = owner(1);
            for (gi, g) in conn_rep.gaps.iter_mut().enumerate() {
                g.process = st.gap_process.get(&gi).cloned();
            }
        }
    }
}

impl LiveSink<'_, '_> {
    /// Hands the gaps just reported to the flight recorder and announces
    /// the files it wrote; at a tick (`tick`), also writes the recordings
    /// whose time came.
    fn record(&mut self, engine: &Engine, now: Timestamp, tick: bool) -> io::Result<()> {
        let Some(rec) = &mut self.recorder else {
            return Ok(());
        };
        let mut done = Vec::new();
        for note in self.tracker.gap_notes.iter_mut().flat_map(|n| n.drain(..)) {
            done.extend(rec.note(engine, note, now));
        }
        if tick {
            done.extend(rec.tick(engine, now));
        }
        for r in done {
            (self.emit)(&recorded_event(r))?;
        }
        Ok(())
    }

    /// The capture stopped: writes what the recorder still holds.
    fn finish_recordings(&mut self, engine: &Engine, now: Timestamp) {
        if self.record(engine, now, false).is_err() {
            return;
        }
        let Some(rec) = &mut self.recorder else {
            return;
        };
        for r in rec.finish(engine, now) {
            if (self.emit)(&recorded_event(r)).is_err() {
                return;
            }
        }
    }
}

/// The flight recorder's figures for the metrics.
fn recorder_stats(r: &Recorder) -> RecorderStats {
    let ring = r.ring();
    let (written, failed) = r.counts();
    RecorderStats {
        ring_bytes: ring.bytes() as u64,
        ring_packets: ring.len() as u64,
        ring_evicted: ring.evicted(),
        written,
        failed,
    }
}

/// The `gap-recorded` event of a file the recorder wrote (or could not).
fn recorded_event(r: Recorded) -> LiveEvent {
    let (file, error) = match r.file {
        Ok(p) => (Some(p.display().to_string()), None),
        Err(e) => (None, Some(e)),
    };
    LiveEvent::GapRecorded {
        at: report::rfc3339(r.at),
        client: r.client,
        broker: r.broker,
        client_name: r.client_name,
        cause: r.cause,
        trigger: if r.open { "gap-opened" } else { "gap-closed" },
        file,
        packets: r.packets,
        bytes: r.bytes,
        deleted: r.deleted.iter().map(|p| p.display().to_string()).collect(),
        error,
    }
}

/// Live mode's [`Sink`]: the tracker's events, drops and metrics, and the
/// terminal UI's view (`view`) when there is one.
struct LiveSink<'e, 'm> {
    view: &'e mut dyn Sink,
    tracker: Tracker,
    emit: &'e mut dyn FnMut(&LiveEvent) -> io::Result<()>,
    metrics: Option<(&'m mut dyn Publish, Collector)>,
    recorder: Option<Recorder>,
    /// For `capture-started`.
    interface: String,
    filter: String,
    write: Option<String>,
}

fn flow(r: io::Result<()>) -> Flow {
    flow_if(r.is_ok())
}

/// Stops when either sink asks to.
fn both(a: Flow, b: Flow) -> Flow {
    if a == Flow::Stop || b == Flow::Stop {
        Flow::Stop
    } else {
        Flow::Continue
    }
}

/// Goes on while the events can be written.
fn flow_if(ok: bool) -> Flow {
    if ok {
        Flow::Continue
    } else {
        Flow::Stop
    }
}

impl Sink for LiveSink<'_, '_> {
    fn start(&mut self, engine: &Engine, now: Timestamp) -> Flow {
        let mut ok = (self.emit)(&LiveEvent::CaptureStarted {
            at: report::rfc3339(now),
            interface: self.interface.clone(),
            link_type: engine.link().name(),
            filter: self.filter.clone(),
            write: self.write.clone(),
        })
        .is_ok();
        if let Some((server, collector)) = &mut self.metrics {
            let address = server.local_addr().to_string();
            ok &= (self.emit)(&LiveEvent::MetricsListening {
                at: report::rfc3339(now),
                url: format!("http://{address}/metrics"),
                address,
            })
            .is_ok();
            let rec = self.recorder.as_ref().map(recorder_stats);
            server.publish(collector.collect_live(engine, now, rec));
        }
        both(flow_if(ok), self.view.start(engine, now))
    }

    fn packets(&mut self, link: LinkType, recs: &[PacketRecord<'_>]) {
        if let Some(r) = &mut self.recorder {
            r.packets(link, recs);
        }
        self.view.packets(link, recs);
    }

    fn after_packets(&mut self, engine: &Engine, now: Timestamp, p: &Progress) -> Flow {
        let mut ok = self.tracker.after_packets(engine, now, self.emit).is_ok();
        ok &= self.record(engine, now, false).is_ok();
        both(flow_if(ok), self.view.after_packets(engine, now, p))
    }

    fn on_drops(&mut self, engine: &Engine, now: Timestamp, new: u64, total: u64) -> Flow {
        let f = flow((self.emit)(&LiveEvent::CaptureDrops {
            at: report::rfc3339(now),
            new,
            total,
        }));
        both(f, self.view.on_drops(engine, now, new, total))
    }

    fn on_tick(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        flagged: &[(ConnId, Direction, Span)],
    ) -> Flow {
        // Connections become announceable with time alone (ANNOUNCE_AFTER).
        let mut ok = self.tracker.after_packets(engine, now, self.emit).is_ok();
        ok &= self
            .tracker
            .on_tick(engine, now, flagged, self.emit)
            .is_ok();
        ok &= self.record(engine, now, true).is_ok();
        if let Some((server, collector)) = &mut self.metrics {
            collector.observe(engine);
            if server.take_wanted() {
                let rec = self.recorder.as_ref().map(recorder_stats);
                server.publish(collector.collect_live(engine, now, rec));
            }
        }
        both(flow_if(ok), self.view.on_tick(engine, now, flagged))
    }

    fn on_sample(&mut self, engine: &Engine, now: Timestamp) -> Flow {
        self.tracker.sample(engine, now);
        self.view.on_sample(engine, now)
    }

    fn take_annotations(&mut self) -> Vec<String> {
        let mut notes = std::mem::take(&mut self.tracker.notes);
        notes.extend(self.view.take_annotations());
        notes
    }
}

/// Runs a live capture until `stop` is set, `--duration` passes or the
/// capture fails after it started; `emit` receives each event (an error from
/// it, such as a closed pipe, stops the capture cleanly). Returns the final
/// report; its `capture.complete` is `false` when the capture failed after it
/// started (the interface went down or away, a read error) or the kernel
/// dropped packets, with a warning saying which (`live-capture-error`,
/// `capture-drops`), and silences open when it failed end as `capture-loss`.
///
/// # Errors
/// [`LiveError::Capture`] when the capture cannot be opened or the
/// `--write` file cannot be created (nothing was captured then).
pub fn run(
    opts: &LiveOptions,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(&LiveEvent) -> io::Result<()>,
) -> Result<Report, LiveError> {
    let (mut cap, mut server) = open_live(opts)?;
    let mut clock = WallClock::start();
    Ok(run_with(
        opts,
        &mut cap,
        &mut clock,
        server.as_mut().map(|s| s as &mut dyn Publish),
        stop,
        emit,
    ))
}

/// Opens what live mode needs, in this order: the capture, the metrics
/// address (bound before dropping privileges, so a port below 1024 works with
/// `--user`, and before the `--write` file is created, so a bind error leaves
/// no file), the `--write` file, then `--user`.
fn open_live(opts: &LiveOptions) -> Result<(LiveCapture, Option<MetricsServer>), LiveError> {
    let mut cap = LiveCapture::open(&opts.capture)?;
    let server = match &opts.metrics {
        Some(m) => Some(MetricsServer::bind(m.addr)?),
        None => None,
    };
    if let Some(path) = &opts.write {
        cap.write_to(path, opts.force)?;
    }
    if let Some(user) = &opts.user {
        crate::os::privileges::drop_to(user)?;
    }
    // As the user that will write the recordings.
    if let Some(r) = &opts.record {
        recorder::check_dir(&r.dir)?;
    }
    Ok((cap, server))
}

/// Ended connections kept in full by default once they left the live table
/// (`--keep-ended`; [`EngineConfig::max_ended`]): at ~3-5 KiB each
/// (analysis, handshake, socket owners) about 25 MiB, whatever the run's length.
pub const KEEP_ENDED_DEFAULT: usize = 5_000;

/// Live mode in the terminal UI (`hbscope live` on a terminal, or
/// `--format tui`): opens the capture as [`run`] does, then runs it on a
/// thread feeding the live screen ([`crate::tui::live`]) until `q`, a
/// signal, `--duration` or an error; gap events show in the footer. Returns
/// the final report once the terminal is restored.
///
/// # Errors
/// As [`run`]; [`LiveError::Terminal`] when the terminal UI fails.
pub fn run_tui(
    opts: &LiveOptions,
    stop: &AtomicBool,
    zone: report::Zone,
) -> Result<Report, LiveError> {
    let (mut cap, mut server) = open_live(opts)?;
    let mut opts = opts.clone();
    if opts.engine.timeline_events == 0 {
        // The screen draws timelines; reports alone do not keep them.
        opts.engine.timeline_events = crate::analysis::timeline::Timeline::CAP;
    }
    // A connection that left the table is never drawn again.
    opts.engine.timeline_keep_ended = Some(crate::tui::live::KEEP_ENDED);
    let info = crate::tui::live::LiveInfo {
        interface: opts.capture.interface.clone(),
        filter: opts.capture.filter.clone(),
    };
    let opts = &opts;
    crate::tui::live(info, zone, move |mut view| {
        let notes = view.notifier();
        let mut emit = |e: &LiveEvent| -> io::Result<()> {
            if matches!(
                e,
                LiveEvent::GapOpened { .. }
                    | LiveEvent::GapClosed { .. }
                    | LiveEvent::GapRecorded { .. }
                    | LiveEvent::CaptureDrops { .. }
            ) {
                let text = event_text_in(e, zone);
                notes.status(text.lines().next().unwrap_or_default().to_owned());
            }
            if let Some(note) = process_note(e) {
                notes.process(note);
            }
            Ok(())
        };
        let mut clock = WallClock::start();
        run_with_view(
            opts,
            &mut cap,
            &mut clock,
            server.as_mut().map(|s| s as &mut dyn Publish),
            stop,
            &mut emit,
            &mut view,
        )
    })
    .map_err(LiveError::Terminal)
}

/// The process facts of an event, for the live screen's process pane.
fn process_note(e: &LiveEvent) -> Option<ProcessNote> {
    match e {
        LiveEvent::ConnectionSeen {
            client,
            broker,
            client_process,
            broker_process,
            client_not_attributable,
            ..
        } => Some(ProcessNote::Owners {
            client: client.clone(),
            broker: broker.clone(),
            client_process: client_process.clone(),
            broker_process: broker_process.clone(),
            not_attributable: client_not_attributable.clone(),
        }),
        LiveEvent::GapOpened {
            client,
            broker,
            gap,
            ..
        }
        | LiveEvent::GapClosed {
            client,
            broker,
            gap,
            ..
        } => gap.process.clone().map(|process| ProcessNote::Verdict {
            client: client.clone(),
            broker: broker.clone(),
            process,
            open: matches!(e, LiveEvent::GapOpened { .. }),
        }),
        _ => None,
    }
}

/// Live mode over any packet source and clock: [`run`] after the capture is
/// open (`opts.capture` only names it in the events and the report). With
/// `metrics`, the registry is published at the start and at every tick a
/// scrape asked for one (`opts.metrics` says whether per-connection labels
/// are added). Stops as [`run`] does, and also when a finite source ends.
pub fn run_with(
    opts: &LiveOptions,
    source: &mut dyn PacketSource,
    clock: &mut dyn Clock,
    metrics: Option<&mut dyn Publish>,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(&LiveEvent) -> io::Result<()>,
) -> Report {
    run_with_view(
        opts,
        source,
        clock,
        metrics,
        stop,
        emit,
        &mut driver::NoSink,
    )
}

/// [`run_with`], also telling `view` (the terminal UI's
/// [`crate::tui::live::LiveView`]) everything the driver tells live mode's
/// sink; the capture stops when either asks to.
pub fn run_with_view(
    opts: &LiveOptions,
    source: &mut dyn PacketSource,
    clock: &mut dyn Clock,
    metrics: Option<&mut dyn Publish>,
    stop: &AtomicBool,
    emit: &mut dyn FnMut(&LiveEvent) -> io::Result<()>,
    view: &mut dyn Sink,
) -> Report {
    let mut engine = Engine::new(opts.engine.clone(), source.link_type());
    engine.on_capture_drops(0);
    let per_connection = opts.metrics.is_some_and(|m| m.per_connection);
    let mut sink = LiveSink {
        view,
        tracker: Tracker::new(
            opts.attribution,
            &[&opts.engine.amqp_ports[..], &opts.engine.tls_ports[..]].concat(),
            opts.py_spy,
            opts.record.is_some(),
        ),
        emit,
        metrics: metrics.map(|p| (p, Collector::new(per_connection))),
        recorder: opts.record.clone().map(Recorder::new),
        interface: opts.capture.interface.clone(),
        filter: opts.capture.filter.clone(),
        write: opts.write.as_ref().map(|p| p.display().to_string()),
    };
    let driven = driver::drive(
        source,
        &mut engine,
        &mut sink,
        DriveOptions {
            batch: BATCH,
            paced: Some(Paced {
                clock: &mut *clock,
                tick: TICK,
                sample: SAMPLE_EVERY,
                deadline: opts.duration,
                drain: true,
            }),
            stop: Some(stop),
        },
    );
    let now = clock.now();
    // A failed capture leaves what followed unseen: silences open at that
    // moment end as capture-loss, never as a stall (analysis::decide, rule 1).
    let failed = match &driven.reason {
        driver::StopReason::Error(e) => Some(e.warning_code()),
        _ => None,
    };
    if let Some(code) = failed {
        engine.on_capture_failed(code);
    }
    if driven.dropped > 0 {
        engine.warn(
            "capture-drops",
            format!(
                "the kernel dropped {}: the capture is incomplete, and silences open while it \
                 dropped are capture-loss",
                report::count(driven.dropped, "packet", "packets")
            ),
        );
    }
    sink.tracker.sample(&engine, now);
    if let Some(why) = sink.tracker.notice.take() {
        engine.warn(
            "process-sampling-limited",
            format!(
                "cannot read {why}: gap diagnoses cannot name the system call a thread was blocked in; \
                 run hbscope as root or with CAP_SYS_PTRACE"
            ),
        );
    }
    let _ = sink.tracker.after_packets(&engine, now, sink.emit);
    engine.finish();
    let _ = sink.tracker.after_packets(&engine, now, sink.emit);
    // The notes of the gaps the capture's end closed, before the file closes.
    for note in std::mem::take(&mut sink.tracker.notes) {
        source.annotate(&note);
    }
    let written = match source.close_save() {
        Ok(w) => w,
        Err(e) => {
            engine.warn("write-error", e.to_string());
            None
        }
    };
    sink.finish_recordings(&engine, now);
    let _ = (sink.emit)(&LiveEvent::CaptureStopped {
        at: report::rfc3339(now),
        reason: StopReason::from(&driven.reason),
        packets: engine.counters().packets,
        dropped: driven.dropped,
        written: written.map(|p| p.display().to_string()),
    });
    let complete = failed.is_none() && driven.dropped == 0;
    let mut rep = report::build(&engine, &opts.capture.interface, complete);
    sink.tracker.decorate(&engine, &mut rep);
    rep
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_defaults_and_additions() {
        assert_eq!(bpf_filter(None, &[]), DEFAULT_FILTER);
        assert_eq!(
            bpf_filter(None, &[5672, 15672]),
            "tcp port 5672 or tcp port 5671 or tcp port 15672"
        );
        assert_eq!(bpf_filter(Some("host 10.0.0.1"), &[15672]), "host 10.0.0.1");
    }

    #[test]
    fn events_are_tagged_kebab_case() {
        let e = LiveEvent::CaptureDrops {
            at: "t".into(),
            new: 2,
            total: 5,
        };
        let j = serde_json::to_string(&e).unwrap_or_default();
        assert_eq!(j, r#"{"event":"capture-drops","at":"t","new":2,"total":5}"#);
    }
}
