//! Prometheus metrics for live mode (`hbscope live --metrics ADDR`).
//!
//! ```text
//! HTTP thread, per GET:   wanted = true, wait (<= 1 s)   Mutex --prometheus-client--> text 0.0.4
//!                                                                                  | OpenMetrics
//! live loop, each tick:   if wanted: Engine --Collector::collect_live(now)--> Registry --publish--> Mutex
//!                                    + /proc/self, the flight recorder's figures
//! ```
//!
//! A scrape raises a flag and waits; at its next tick (200 ms) the live loop
//! runs the [`Collector`] over the engine, which builds a small [`Registry`]
//! (plain data: families, label values, numbers), and publishes it. The
//! [`MetricsServer`] thread only ever sees published registries, never the
//! engine, and hands them to prometheus-client's encoder (the only module
//! using that crate): the Prometheus text format 0.0.4, or OpenMetrics when
//! the scrape's `Accept` asks for it. Nothing is collected while nobody
//! scrapes: the counters are kept from what the engine keeps (its connection
//! list, their gaps), so a lazy collection misses nothing.
//!
//! The server is one thread polling the listener and the connections still
//! sending their request (httparse reads the heads): a silent client holds a
//! slot, never the thread (docs/metrics.md, "The HTTP server", says why not
//! tiny_http).
//!
//! Labels stay low-cardinality by default: `client_name` (the connection_name
//! client property cut before its first `:<digits>` segment, else the product,
//! else `unknown`) and `broker` ("ip:port"); each has at most
//! [`MAX_LABEL_VALUES`] distinct values, later ones become `other`.
//! `--metrics-per-connection` adds a `connection` label to the two per-connection
//! gauges only, so ended connections never leave series behind in counters.
//! docs/metrics.md documents every metric.

use std::collections::{HashMap, HashSet};
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;

use crate::analysis::{Cause, Connection};
use crate::engine::{ConnId, Engine};
use crate::model::{Direction, Timestamp};
use crate::os::procinfo::OwnUsage;
use crate::proto::amqp::PropValue;

/// Most distinct values of `client_name` (and, separately, of `broker`);
/// later values are reported as `other`.
pub const MAX_LABEL_VALUES: usize = 256;
/// Longest label value kept from a client property (in characters).
pub const MAX_NAME_CHARS: usize = 64;
/// Upper bounds of the gap silence ratio histogram (silence / limit). A gap is
/// always above 1; RabbitMQ cuts a silent client at 2-3x, pika gives up at
/// timeout + 5 s.
pub const RATIO_BUCKETS: [f64; 8] = [1.0, 1.25, 1.5, 2.0, 2.5, 3.0, 5.0, 10.0];
/// Largest HTTP request head read before answering 400.
const MAX_REQUEST: usize = 8 * 1024;
/// Time a client has to send its request head.
const READ_DEADLINE: Duration = Duration::from_secs(2);
/// Time a single write of the response may block.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a scrape waits for the live loop to publish a fresh registry.
pub const FRESH_WAIT: Duration = Duration::from_secs(1);
/// Content type of the Prometheus text format 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
/// Content type of OpenMetrics text.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// What `--metrics` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsOptions {
    /// Address to listen on (port 0 picks a free port).
    pub addr: SocketAddr,
    /// Add a `connection="client->broker"` label to the per-connection gauges.
    pub per_connection: bool,
}

/// The kind of a metric family (`# TYPE`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that goes up and down.
    Gauge,
    /// A monotonic count (name ends in `_total`).
    Counter,
    /// Observations in cumulative buckets, with `_sum` and `_count`.
    Histogram,
}

/// Observations counted per bucket (not cumulative; rendering accumulates).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    /// Upper bounds, ascending; the `+Inf` bucket is implicit.
    pub bounds: &'static [f64],
    /// Observations per bucket: `counts[i]` for `bounds[i]`, the last for `+Inf`.
    pub counts: Vec<u64>,
    /// Sum of the observations.
    pub sum: f64,
}

impl Histogram {
    /// An empty histogram with these upper bounds.
    #[must_use]
    pub fn new(bounds: &'static [f64]) -> Self {
        Histogram {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    /// Adds one observation (NaN is ignored).
    pub fn observe(&mut self, v: f64) {
        if v.is_nan() {
            return;
        }
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        if let Some(c) = self.counts.get_mut(i) {
            *c += 1;
        }
        self.sum += v;
    }

    /// Number of observations.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.counts.iter().sum()
    }
}

/// The value of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    /// A gauge or counter value.
    Number(f64),
    /// A histogram.
    Histogram(Histogram),
}

/// One metric family: name, help, type and its samples.
#[derive(Debug, Clone, PartialEq)]
pub struct Family {
    /// Metric name.
    pub name: &'static str,
    /// `# HELP` text.
    pub help: &'static str,
    /// `# TYPE`.
    pub kind: MetricKind,
    /// Label names, in the order of each sample's values.
    pub label_names: Vec<&'static str>,
    /// Samples: label values (aligned with `label_names`) and the value.
    pub samples: Vec<(Vec<String>, SampleValue)>,
}

/// Everything one scrape shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Registry {
    /// Families in output order.
    pub families: Vec<Family>,
}

/// The exposition formats a scrape can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// The Prometheus text format 0.0.4 (the default).
    Prometheus,
    /// OpenMetrics 1.0 text, for a scraper whose `Accept` asks for it
    /// (Prometheus does): the same series, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of an answer in this format.
    #[must_use]
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => CONTENT_TYPE,
            Format::OpenMetrics => OPENMETRICS_CONTENT_TYPE,
        }
    }
}

/// A published [`Registry`] as prometheus-client sees it: encoded family by
/// family through its encoder, which writes the names, escapes the label
/// values and formats the numbers.
#[derive(Debug)]
struct Exposition(Arc<Registry>);

impl prometheus_client::collector::Collector for Exposition {
    fn encode(&self, mut encoder: DescriptorEncoder) -> std::fmt::Result {
        for f in &self.0.families {
            let (name, kind) = match f.kind {
                // The encoder adds `_total` to a counter's name.
                MetricKind::Counter => (
                    f.name.strip_suffix("_total").unwrap_or(f.name),
                    MetricType::Counter,
                ),
                MetricKind::Gauge => (f.name, MetricType::Gauge),
                MetricKind::Histogram => (f.name, MetricType::Histogram),
            };
            let mut metric = encoder.encode_descriptor(name, f.help, None, kind)?;
            for (values, value) in &f.samples {
                let labels: Vec<(&str, &str)> = f
                    .label_names
                    .iter()
                    .copied()
                    .zip(values.iter().map(String::as_str))
                    .collect();
                if labels.is_empty() {
                    encode_value(&mut metric, f.kind, value)?;
                } else {
                    encode_value(&mut metric.encode_family(&labels)?, f.kind, value)?;
                }
            }
        }
        Ok(())
    }
}

/// One sample's value.
fn encode_value(e: &mut MetricEncoder<'_>, kind: MetricKind, v: &SampleValue) -> std::fmt::Result {
    match (kind, v) {
        (MetricKind::Counter, SampleValue::Number(n)) => {
            e.encode_counter::<NoLabelSet, f64, f64>(n, None)
        }
        (_, SampleValue::Number(n)) => e.encode_gauge(n),
        (_, SampleValue::Histogram(h)) => {
            // Per-bucket counts; the encoder accumulates them and adds +Inf.
            let buckets: Vec<(f64, u64)> = h
                .bounds
                .iter()
                .copied()
                .chain([f64::INFINITY])
                .zip(h.counts.iter().copied())
                .collect();
            e.encode_histogram::<NoLabelSet>(h.sum, h.count(), &buckets, None)
        }
    }
}

/// `registry` in `format`.
#[must_use]
pub fn render(registry: &Arc<Registry>, format: Format) -> String {
    let mut reg = prometheus_client::registry::Registry::default();
    reg.register_collector(Box::new(Exposition(Arc::clone(registry))));
    let mut out = String::new();
    // Writing into a String cannot fail, and the encoders have no error of
    // their own for these families; an empty answer would say so.
    let _ = match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &reg),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &reg),
    };
    out
}

impl Registry {
    /// The registry in the Prometheus text exposition format, version 0.0.4.
    #[must_use]
    pub fn render(&self) -> String {
        render(&Arc::new(self.clone()), Format::Prometheus)
    }
}

/// The `client_name` label of a connection: its connection_name client
/// property cut before the first `:<digits>` segment (so `nova-api:1234:uuid`
/// and `hbscope-test:99:serve` become `nova-api` and `hbscope-test`), else its
/// product, else `unknown`; at most [`MAX_NAME_CHARS`] characters.
#[must_use]
pub fn client_label(conn: &Connection) -> String {
    let props = conn.handshake().client_properties.as_ref();
    let text = |key: &str| match props.and_then(|p| p.get(key)) {
        Some(PropValue::Text(t)) => Some(t.as_str()),
        _ => None,
    };
    let name = text("connection_name")
        .map(strip_instance)
        .filter(|n| !n.is_empty())
        .or_else(|| text("product").filter(|p| !p.is_empty()))
        .unwrap_or("unknown");
    name.chars().take(MAX_NAME_CHARS).collect()
}

/// `name` up to its first `:` segment made only of digits (a pid).
fn strip_instance(name: &str) -> &str {
    // Byte offset where the current segment starts.
    let mut start = 0;
    for (i, seg) in name.split(':').enumerate() {
        if i > 0 && !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit()) {
            return &name[..start - 1];
        }
        start += seg.len() + 1;
    }
    name
}

/// Caps the number of distinct values one label takes.
#[derive(Debug, Default)]
struct LabelCap {
    known: HashSet<String>,
}

impl LabelCap {
    fn get(&mut self, v: String) -> String {
        if self.known.contains(&v) {
            return v;
        }
        if self.known.len() >= MAX_LABEL_VALUES {
            return "other".to_owned();
        }
        self.known.insert(v.clone());
        v
    }
}

/// Index of a (`client_name`, `broker`) pair in [`Collector::pairs`].
type PairId = usize;

/// A connection the collector still shows (not ended yet).
#[derive(Debug)]
struct Tracked {
    slot: ConnId,
    gaps_counted: usize,
    counters_ready: bool,
    /// Its label pair, once the client properties can no longer change it.
    pair: Option<PairId>,
    /// `client->broker`, made once (only with `--metrics-per-connection`).
    conn_label: Option<Arc<str>>,
}

fn dir_label(conn: &Connection, dir: Direction) -> &'static str {
    conn.role_of(dir).sends().as_str()
}

const CAUSES: [Cause; 6] = [
    Cause::ClientStall,
    Cause::BrokerStall,
    Cause::PeerUnreachable,
    Cause::BrokerBlocked,
    Cause::CaptureLoss,
    Cause::Unknown,
];

/// Per-tick aggregates of the open connections, keyed by small ids; label
/// strings are only made for the (few) resulting series.
#[derive(Default)]
struct Gauges {
    states: HashMap<(PairId, &'static str, Option<Arc<str>>), u64>,
    silence: HashMap<(PairId, &'static str, Option<Arc<str>>), f64>,
    open: HashMap<(PairId, &'static str, &'static str), u64>,
}

/// Builds a [`Registry`] from the engine, keeping the counters between calls.
///
/// Call [`Collector::collect`] after each engine tick. Gaps are counted once,
/// when they are decided (they appear in the connection's gap list); a
/// connection leaves the gauges at the first call after both its directions
/// closed, and is then counted in `hbscope_connections_ended_total`.
#[derive(Debug)]
pub struct Collector {
    per_connection: bool,
    seen_slots: ConnId,
    active: Vec<Tracked>,
    names: LabelCap,
    brokers: LabelCap,
    /// Interned (`client_name`, `broker`) label pairs.
    pairs: Vec<(String, String)>,
    pair_ids: HashMap<(String, String), PairId>,
    gaps: HashMap<(&'static str, PairId), u64>,
    ratios: HashMap<(&'static str, PairId), Histogram>,
    ended: HashMap<(&'static str, PairId), u64>,
}

impl Collector {
    /// A collector; `per_connection` adds the `connection` label.
    #[must_use]
    pub fn new(per_connection: bool) -> Self {
        Collector {
            per_connection,
            seen_slots: 0,
            active: Vec::new(),
            names: LabelCap::default(),
            brokers: LabelCap::default(),
            pairs: Vec::new(),
            pair_ids: HashMap::new(),
            gaps: HashMap::new(),
            ratios: HashMap::new(),
            ended: HashMap::new(),
        }
    }

    fn pair_of(&mut self, c: &Connection) -> PairId {
        let key = (
            self.names.get(client_label(c)),
            self.brokers.get(c.broker().to_string()),
        );
        if let Some(id) = self.pair_ids.get(&key) {
            return *id;
        }
        self.pairs.push(key.clone());
        self.pair_ids.insert(key, self.pairs.len() - 1);
        self.pairs.len() - 1
    }

    /// Reads the engine at `now` (capture time) and returns what a scrape
    /// shows, with hbscope's own process metrics.
    pub fn collect(&mut self, engine: &Engine, now: Timestamp) -> Registry {
        self.collect_live(engine, now, None)
    }

    /// [`Collector::collect`], adding the flight recorder's figures
    /// (`--record-gaps`) when there is one.
    pub fn collect_live(
        &mut self,
        engine: &Engine,
        now: Timestamp,
        recorder: Option<RecorderStats>,
    ) -> Registry {
        self.add_new(engine);
        let mut gauges = Gauges::default();
        let mut active = std::mem::take(&mut self.active);
        active.retain_mut(|t| {
            let Some(s) = engine.slot(t.slot) else {
                return false;
            };
            if s.not_amqp.is_some() {
                return false;
            }
            if !s.confirmed {
                return true;
            }
            self.track(t, &s.conn, now, &mut gauges)
        });
        self.active = active;
        let mut reg = self.registry(engine, now, gauges);
        if let Ok(own) = crate::os::procinfo::own_usage() {
            reg.families.extend(process_families(&own));
        }
        if let Some(r) = recorder {
            reg.families.extend(recorder_families(&r));
        }
        reg
    }

    /// Starts tracking the connections recognised since the last call.
    fn add_new(&mut self, engine: &Engine) {
        let slots = engine.slots();
        // Slots are in `ConnId` order: the new ones are at the end.
        let new = slots.partition_point(|s| s.id() < self.seen_slots);
        for s in slots.get(new..).unwrap_or(&[]) {
            self.active.push(Tracked {
                slot: s.id(),
                gaps_counted: 0,
                counters_ready: false,
                pair: None,
                conn_label: None,
            });
            self.seen_slots = s.id() + 1;
        }
    }

    /// Counts new gaps and ended connections without building a scrape.
    /// Live mode calls it at every tick: a long capture folds connections
    /// that ended minutes ago away ([`crate::engine::EngineConfig::max_ended`]),
    /// and what was not counted by then could not be counted any more.
    pub fn observe(&mut self, engine: &Engine) {
        self.add_new(engine);
        let mut active = std::mem::take(&mut self.active);
        active.retain_mut(|t| match engine.slot(t.slot) {
            None => false,
            Some(s) if s.not_amqp.is_some() => false,
            Some(s) if !s.confirmed => true,
            Some(s) => self.count_new(t, &s.conn).is_some(),
        });
        self.active = active;
    }

    /// Counts a connection's new gaps, and its end; the label pair it
    /// counted them under, `None` once it ended.
    fn count_new(&mut self, t: &mut Tracked, c: &Connection) -> Option<PairId> {
        let pair = match t.pair {
            Some(p) => p,
            None => {
                let p = self.pair_of(c);
                // Client properties come with Start-Ok, before Tune-Ok; a
                // capture that joined mid-stream never sees them.
                if c.handshake().client_properties.is_some()
                    || c.handshake().tune_ok.is_some()
                    || c.joined_mid_stream()
                {
                    t.pair = Some(p);
                }
                p
            }
        };
        if !t.counters_ready && c.heartbeat().0.is_some() {
            // Start every cause at 0 so the first gap is an increase.
            t.counters_ready = true;
            for cause in CAUSES {
                self.gaps.entry((cause.as_str(), pair)).or_insert(0);
            }
        }
        for gap in c.gaps().get(t.gaps_counted..).unwrap_or(&[]) {
            *self.gaps.entry((gap.cause.as_str(), pair)).or_insert(0) += 1;
            self.ratios
                .entry((gap.cause.as_str(), pair))
                .or_insert_with(|| Histogram::new(&RATIO_BUCKETS))
                .observe(gap.ratio());
        }
        t.gaps_counted = c.gaps().len();
        if c.dirs().iter().all(|d| d.closed) {
            *self.ended.entry((c.ended().0.as_str(), pair)).or_insert(0) += 1;
            return None;
        }
        Some(pair)
    }

    /// Counts what is new on one connection and adds it to the gauges;
    /// false once it ended (it is then dropped from the active list).
    fn track(&mut self, t: &mut Tracked, c: &Connection, now: Timestamp, g: &mut Gauges) -> bool {
        let Some(pair) = self.count_new(t, c) else {
            return false;
        };
        if self.per_connection && t.conn_label.is_none() {
            t.conn_label = Some(format!("{}->{}", c.client(), c.broker()).into());
        }
        let limit = c.limit();
        let mut over = false;
        let mut any_closed = false;
        for dir in [Direction::AtoB, Direction::BtoA] {
            let d = c.dir(dir);
            if d.closed {
                any_closed = true;
                continue;
            }
            let (Some(limit), Some(last)) = (limit, d.last_activity) else {
                continue;
            };
            let ratio = (now.since(last).as_secs_f64() / limit.as_secs_f64()).max(0.0);
            let e = g
                .silence
                .entry((pair, dir_label(c, dir), t.conn_label.clone()))
                .or_insert(0.0);
            *e = e.max(ratio);
            if ratio > 1.0 {
                if let Some(open) = c.open_gap(dir, now) {
                    over = true;
                    *g.open
                        .entry((pair, open.cause.as_str(), dir_label(c, dir)))
                        .or_insert(0) += 1;
                }
            }
        }
        let state = if over {
            "gap-open"
        } else {
            match c.heartbeat().0 {
                None => "heartbeat-unknown",
                Some(0) => "heartbeat-disabled",
                Some(_) if any_closed => "closing",
                Some(_) => "ok",
            }
        };
        *g.states
            .entry((pair, state, t.conn_label.clone()))
            .or_insert(0) += 1;
        true
    }

    fn registry(&self, engine: &Engine, now: Timestamp, g: Gauges) -> Registry {
        #[allow(clippy::cast_precision_loss)]
        let num = |v: u64| SampleValue::Number(v as f64);
        let per_conn = |mut names: Vec<&'static str>| {
            if self.per_connection {
                names.push("connection");
            }
            names
        };
        // Label values in family order, sorted for a stable output.
        let sorted = |mut v: Vec<(Vec<String>, SampleValue)>| {
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let pair = |id: PairId| self.pairs.get(id).cloned().unwrap_or_default();
        let with_conn = |mut v: Vec<String>, conn: Option<Arc<str>>| {
            if let Some(c) = conn {
                v.push(c.to_string());
            }
            v
        };
        let by_cause = |(cause, id): &(&'static str, PairId)| {
            let (n, b) = pair(*id);
            vec![(*cause).to_owned(), n, b]
        };
        let counters = engine.counters();
        #[allow(clippy::cast_precision_loss)]
        let now_s = now.as_nanos() as f64 / 1e9;
        Registry {
            families: vec![
                Family {
                    name: "hbscope_build_info",
                    help: "Always 1; the hbscope version is in the label.",
                    kind: MetricKind::Gauge,
                    label_names: vec!["version"],
                    samples: vec![(
                        vec![env!("CARGO_PKG_VERSION").to_owned()],
                        SampleValue::Number(1.0),
                    )],
                },
                Family {
                    name: "hbscope_metrics_updated_timestamp_seconds",
                    help: "When these metrics were last computed (Unix time); stops moving if the live loop stalls.",
                    kind: MetricKind::Gauge,
                    label_names: vec![],
                    samples: vec![(vec![], SampleValue::Number(now_s))],
                },
                Family {
                    name: "hbscope_capture_packets_total",
                    help: "Packets read from the capture.",
                    kind: MetricKind::Counter,
                    label_names: vec![],
                    samples: vec![(vec![], num(counters.packets))],
                },
                Family {
                    name: "hbscope_capture_dropped_packets_total",
                    help: "Packets the kernel dropped before hbscope read them (silences open then may be capture loss).",
                    kind: MetricKind::Counter,
                    label_names: vec![],
                    samples: vec![(vec![], num(counters.dropped.unwrap_or(0)))],
                },
                Family {
                    name: "hbscope_connections",
                    help: "Open AMQP connections by state (ok, gap-open, closing, heartbeat-unknown, heartbeat-disabled).",
                    kind: MetricKind::Gauge,
                    label_names: per_conn(vec!["state", "client_name", "broker"]),
                    samples: sorted(
                        g.states
                            .into_iter()
                            .map(|((id, state, conn), v)| {
                                let (n, b) = pair(id);
                                (with_conn(vec![state.to_owned(), n, b], conn), num(v))
                            })
                            .collect(),
                    ),
                },
                Family {
                    name: "hbscope_silence_ratio",
                    help: "Current silence of a direction divided by the heartbeat timeout (max over the connections with these labels); above 1 is a gap.",
                    kind: MetricKind::Gauge,
                    label_names: per_conn(vec!["client_name", "broker", "direction"]),
                    samples: sorted(
                        g.silence
                            .into_iter()
                            .map(|((id, dir, conn), v)| {
                                let (n, b) = pair(id);
                                (
                                    with_conn(vec![n, b, dir.to_owned()], conn),
                                    SampleValue::Number(v),
                                )
                            })
                            .collect(),
                    ),
                },
                Family {
                    name: "hbscope_gaps_open",
                    help: "Silences now longer than the heartbeat timeout, by provisional cause.",
                    kind: MetricKind::Gauge,
                    label_names: vec!["cause", "client_name", "broker", "direction"],
                    samples: sorted(
                        g.open
                            .into_iter()
                            .map(|((id, cause, dir), v)| {
                                let (n, b) = pair(id);
                                (vec![cause.to_owned(), n, b, dir.to_owned()], num(v))
                            })
                            .collect(),
                    ),
                },
                Family {
                    name: "hbscope_gaps_total",
                    help: "Gaps (silences longer than the heartbeat timeout) decided, by cause.",
                    kind: MetricKind::Counter,
                    label_names: vec!["cause", "client_name", "broker"],
                    samples: sorted(
                        self.gaps
                            .iter()
                            .map(|(k, v)| (by_cause(k), num(*v)))
                            .collect(),
                    ),
                },
                Family {
                    name: "hbscope_gap_silence_ratio",
                    help: "Silence divided by the heartbeat timeout of each decided gap.",
                    kind: MetricKind::Histogram,
                    label_names: vec!["cause", "client_name", "broker"],
                    samples: sorted(
                        self.ratios
                            .iter()
                            .map(|(k, h)| (by_cause(k), SampleValue::Histogram(h.clone())))
                            .collect(),
                    ),
                },
                Family {
                    name: "hbscope_connections_ended_total",
                    help: "AMQP connections that ended, by how (close, fin, rst).",
                    kind: MetricKind::Counter,
                    label_names: vec!["how", "client_name", "broker"],
                    samples: sorted(
                        self.ended
                            .iter()
                            .map(|(k, v)| (by_cause(k), num(*v)))
                            .collect(),
                    ),
                },
            ],
        }
    }
}

/// What the flight recorder (`--record-gaps`) reports to the metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Bytes its packet ring holds (data plus overheads).
    pub ring_bytes: u64,
    /// Packets its ring holds.
    pub ring_packets: u64,
    /// Packets the ring gave up to stay within its memory.
    pub ring_evicted: u64,
    /// Recordings written.
    pub written: u64,
    /// Recordings that could not be written.
    pub failed: u64,
}

/// One unlabelled sample.
fn single(name: &'static str, help: &'static str, kind: MetricKind, v: f64) -> Family {
    Family {
        name,
        help,
        kind,
        label_names: vec![],
        samples: vec![(vec![], SampleValue::Number(v))],
    }
}

/// hbscope's own process, under the names Prometheus clients use.
#[allow(clippy::cast_precision_loss)]
fn process_families(own: &OwnUsage) -> Vec<Family> {
    let mut v = vec![
        single(
            "process_cpu_seconds_total",
            "Total user and system CPU time spent in seconds.",
            MetricKind::Counter,
            own.cpu_seconds,
        ),
        single(
            "process_resident_memory_bytes",
            "Resident memory size in bytes.",
            MetricKind::Gauge,
            own.rss_bytes as f64,
        ),
        single(
            "process_virtual_memory_bytes",
            "Virtual memory size in bytes.",
            MetricKind::Gauge,
            own.virtual_bytes as f64,
        ),
        single(
            "process_open_fds",
            "Number of open file descriptors.",
            MetricKind::Gauge,
            own.open_fds as f64,
        ),
        single(
            "process_threads",
            "Number of OS threads in the process.",
            MetricKind::Gauge,
            own.threads as f64,
        ),
        single(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
            MetricKind::Gauge,
            own.start_time_seconds,
        ),
    ];
    if let Some(max) = own.max_fds {
        v.push(single(
            "process_max_fds",
            "Maximum number of open file descriptors.",
            MetricKind::Gauge,
            max as f64,
        ));
    }
    v
}

/// The flight recorder's figures.
#[allow(clippy::cast_precision_loss)]
fn recorder_families(r: &RecorderStats) -> Vec<Family> {
    vec![
        single(
            "hbscope_recorder_ring_bytes",
            "Memory the flight recorder's packet ring holds (captured bytes plus overheads); at most --record-ring-mib.",
            MetricKind::Gauge,
            r.ring_bytes as f64,
        ),
        single(
            "hbscope_recorder_ring_packets",
            "Packets the flight recorder's ring holds.",
            MetricKind::Gauge,
            r.ring_packets as f64,
        ),
        single(
            "hbscope_recorder_ring_evicted_packets_total",
            "Packets the ring gave up to stay within its memory (the largest connection's oldest first).",
            MetricKind::Counter,
            r.ring_evicted as f64,
        ),
        single(
            "hbscope_recordings_written_total",
            "Gap recordings (pcapng files) written by --record-gaps.",
            MetricKind::Counter,
            r.written as f64,
        ),
        single(
            "hbscope_recordings_failed_total",
            "Gap recordings that could not be written (the gap-recorded event says why).",
            MetricKind::Counter,
            r.failed as f64,
        ),
    ]
}

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// The address could not be bound.
    #[error("cannot serve metrics on {addr}: {source} (choose another --metrics ADDR; port 0 picks a free port)")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The system's reason.
        source: io::Error,
    },
    /// The server thread could not start.
    #[error("cannot start the metrics thread: {0}")]
    Thread(io::Error),
}

struct Shared {
    published: Mutex<Published>,
    /// Signalled on each publish.
    fresh: Condvar,
    /// A scrape is waiting for a fresh registry.
    wanted: AtomicBool,
    stop: AtomicBool,
}

#[derive(Default)]
struct Published {
    registry: Arc<Registry>,
    generation: u64,
}

/// The HTTP endpoint: `GET /metrics` answers a registry published for it.
///
/// A scrape raises [`MetricsServer::take_wanted`] and waits (at most
/// [`FRESH_WAIT`]) for the live loop to publish a fresh registry, so the
/// engine is only read when someone scrapes; after the wait it answers the
/// previous one. One thread accepts and answers one request at a time
/// (`Connection: close`); a request head must arrive within 2 s and fit in
/// 8 KiB. Dropping the server stops the thread.
pub struct MetricsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// Listens on `addr` and starts answering.
    ///
    /// # Errors
    /// [`MetricsError`] when the address cannot be bound or the thread not started.
    pub fn bind(addr: SocketAddr) -> Result<Self, MetricsError> {
        let listener =
            TcpListener::bind(addr).map_err(|source| MetricsError::Bind { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| MetricsError::Bind { addr, source })?;
        let shared = Arc::new(Shared {
            published: Mutex::new(Published::default()),
            fresh: Condvar::new(),
            wanted: AtomicBool::new(false),
            stop: AtomicBool::new(false),
        });
        let for_thread = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("hbscope-metrics".into())
            .spawn(move || serve(&listener, &for_thread))
            .map_err(MetricsError::Thread)?;
        Ok(MetricsServer {
            addr: bound,
            shared,
            thread: Some(thread),
        })
    }

    /// The address actually bound (the port chosen for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// True (once) when a scrape is waiting for a fresh registry: the live
    /// loop then collects and publishes.
    #[must_use]
    pub fn take_wanted(&self) -> bool {
        self.shared.wanted.swap(false, Ordering::SeqCst)
    }

    /// Replaces what scrapes show and wakes the ones waiting.
    pub fn publish(&self, registry: Registry) {
        let mut guard = self
            .shared
            .published
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.registry = Arc::new(registry);
        guard.generation += 1;
        drop(guard);
        self.shared.fresh.notify_all();
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        // The server looks at the flag at least every STOP_CHECK.
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Most connections kept waiting for their request at once; past it the one
/// that has waited longest is closed.
pub const MAX_WAITING: usize = 64;
/// How often the server thread looks at its stop flag.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// A connection whose request head has not arrived in full yet.
struct Waiting {
    stream: TcpStream,
    head: Vec<u8>,
    deadline: Instant,
}

/// What a read on a waiting connection gave.
enum Arrived {
    /// The head is complete (or will never be: too big, garbage).
    Head,
    /// More is to come.
    More,
    /// The client went away.
    Gone,
}

/// Reads what has arrived (non-blocking).
fn read_ready(w: &mut Waiting) -> Arrived {
    let mut chunk = [0u8; 1024];
    loop {
        match w.stream.read(&mut chunk) {
            Ok(0) => return Arrived::Gone,
            Ok(n) => {
                w.head.extend_from_slice(&chunk[..n]);
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::Request::new(&mut headers).parse(&w.head) {
                    Ok(httparse::Status::Partial) if w.head.len() <= MAX_REQUEST => {}
                    _ => return Arrived::Head,
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Arrived::More,
            Err(_) => return Arrived::Gone,
        }
    }
}

/// One thread, many clients: poll(2) on the listener and every connection
/// still sending its request, so a silent client holds a slot (at most
/// [`MAX_WAITING`], each for at most [`READ_DEADLINE`]), never the thread.
/// A complete request is answered at once.
fn serve(listener: &TcpListener, shared: &Shared) {
    use rustix::event::{PollFd, PollFlags, Timespec};
    if listener.set_nonblocking(true).is_err() {
        return;
    }
    let mut waiting: Vec<Waiting> = Vec::new();
    while !shared.stop.load(Ordering::SeqCst) {
        let now = Instant::now();
        let wait = waiting
            .iter()
            .map(|w| w.deadline.saturating_duration_since(now))
            .fold(STOP_CHECK, Duration::min);
        let ts = Timespec {
            tv_sec: 0,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut fds: Vec<PollFd<'_>> = std::iter::once(PollFd::new(listener, PollFlags::IN))
            .chain(
                waiting
                    .iter()
                    .map(|w| PollFd::new(&w.stream, PollFlags::IN)),
            )
            .collect();
        // An error (EINTR) is a spurious wake-up: everything is looked at again.
        let _ = rustix::event::poll(&mut fds, Some(&ts));
        let ready: Vec<bool> = fds.iter().map(|f| !f.revents().is_empty()).collect();
        drop(fds);
        // Highest index first: swap_remove only moves entries already seen.
        for i in (0..waiting.len()).rev() {
            if !ready.get(i + 1).copied().unwrap_or(false) {
                continue;
            }
            match read_ready(&mut waiting[i]) {
                Arrived::More => {}
                Arrived::Gone => drop(waiting.swap_remove(i)),
                Arrived::Head => {
                    let w = waiting.swap_remove(i);
                    let _ = answer(w.stream, &w.head, shared);
                }
            }
        }
        let now = Instant::now();
        waiting.retain(|w| w.deadline > now);
        if ready.first().copied().unwrap_or(false) {
            // Accept everything queued; a failed accept concerns one client only.
            while let Ok((stream, _)) = listener.accept() {
                if stream.set_nonblocking(true).is_err() {
                    continue;
                }
                if waiting.len() >= MAX_WAITING {
                    if let Some(oldest) = (0..waiting.len()).min_by_key(|i| waiting[*i].deadline) {
                        drop(waiting.swap_remove(oldest));
                    }
                }
                waiting.push(Waiting {
                    stream,
                    head: Vec::with_capacity(512),
                    deadline: now + READ_DEADLINE,
                });
            }
        }
    }
}

/// What the request asked for.
#[derive(Debug, PartialEq, Eq)]
enum Request {
    /// `GET /metrics` (`HEAD`: headers only), in the format `Accept` prefers.
    Metrics {
        head_only: bool,
        format: Format,
    },
    /// `GET /`: a page linking to /metrics.
    Landing {
        head_only: bool,
    },
    NotFound,
    MethodNotAllowed,
    Bad,
}

/// Most request headers read (Prometheus sends about five).
const MAX_HEADERS: usize = 32;

/// Reads a complete request head (httparse does the parsing).
fn parse_request(head: &[u8]) -> Request {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
        return Request::Bad;
    }
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Request::Bad;
    };
    if !target.starts_with('/') {
        return Request::Bad;
    }
    let head_only = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Request::MethodNotAllowed,
    };
    let path = target.split('?').next().unwrap_or(target);
    match path {
        "/metrics" => {
            let openmetrics = req.headers.iter().any(|h| {
                h.name.eq_ignore_ascii_case("accept")
                    && std::str::from_utf8(h.value)
                        .is_ok_and(|v| v.contains("application/openmetrics-text"))
            });
            Request::Metrics {
                head_only,
                format: if openmetrics {
                    Format::OpenMetrics
                } else {
                    Format::Prometheus
                },
            }
        }
        "/" => Request::Landing { head_only },
        _ => Request::NotFound,
    }
}

/// Asks the live loop for a fresh registry and renders it (or the previous
/// one after [`FRESH_WAIT`]).
fn fresh_text(shared: &Shared, format: Format) -> String {
    let guard = shared
        .published
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    // Read the generation before raising the flag: the publish that answers
    // it needs this lock, so it cannot slip in between.
    let before = guard.generation;
    shared.wanted.store(true, Ordering::SeqCst);
    let (guard, _) = shared
        .fresh
        .wait_timeout_while(guard, FRESH_WAIT, |p| p.generation == before)
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let registry = Arc::clone(&guard.registry);
    // Rendered without the lock: the live loop may publish meanwhile.
    drop(guard);
    render(&registry, format)
}

/// The page at `/`.
fn landing_page() -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>hbscope</title></head>\n\
         <body><h1>hbscope {}</h1>\n<p>AMQP 0-9-1 heartbeat watch: live capture, gaps and their causes.</p>\n\
         <p><a href=\"metrics\">Metrics</a> (Prometheus text; OpenMetrics when asked for)</p>\n</body></html>\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// Answers a complete request head (blocking, bounded by [`WRITE_TIMEOUT`]).
fn answer(mut stream: TcpStream, head: &[u8], shared: &Shared) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let text = "text/plain; charset=utf-8";
    let (status, content_type, body, head_only, extra) = match parse_request(head) {
        Request::Metrics { head_only, format } => (
            "200 OK",
            format.content_type(),
            fresh_text(shared, format),
            head_only,
            "",
        ),
        Request::Landing { head_only } => (
            "200 OK",
            "text/html; charset=utf-8",
            landing_page(),
            head_only,
            "",
        ),
        Request::NotFound => (
            "404 Not Found",
            text,
            "not found: hbscope serves / and /metrics\n".to_owned(),
            false,
            "",
        ),
        Request::MethodNotAllowed => (
            "405 Method Not Allowed",
            text,
            "use GET /metrics\n".to_owned(),
            false,
            "Allow: GET, HEAD\r\n",
        ),
        Request::Bad => (
            "400 Bad Request",
            text,
            "bad request\n".to_owned(),
            false,
            "",
        ),
    };
    let mut resp = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        resp.extend_from_slice(body.as_bytes());
    }
    stream.write_all(&resp)?;
    stream.flush()?;
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the client still sends (a bounded amount, briefly): closing
    // with unread bytes would reset the connection and could lose the answer.
    stream.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 16 * MAX_REQUEST {
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn family(kind: MetricKind, labels: Vec<&'static str>) -> Family {
        Family {
            name: "t_metric",
            help: "a \\ help\nline",
            kind,
            label_names: labels,
            samples: vec![],
        }
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        let mut f = family(MetricKind::Gauge, vec!["client_name", "broker"]);
        f.samples.push((
            vec!["we\"ird\\name\n".into(), "1.2.3.4:5672".into()],
            SampleValue::Number(1.5),
        ));
        let text = Registry { families: vec![f] }.render();
        assert_eq!(
            text,
            "# HELP t_metric a \\\\ help\\nline\n# TYPE t_metric gauge\n\
             t_metric{client_name=\"we\\\"ird\\\\name\\n\",broker=\"1.2.3.4:5672\"} 1.5\n"
        );
    }

    #[test]
    fn values_are_formatted_like_prometheus() {
        let mut f = family(MetricKind::Gauge, vec!["v"]);
        for v in [
            3.0,
            0.25,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            1.5e20,
        ] {
            f.samples
                .push((vec![format!("{v}")], SampleValue::Number(v)));
        }
        let text = Registry { families: vec![f] }.render();
        let values: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.rsplit_once(' ').map(|(_, v)| v))
            .collect();
        assert_eq!(
            values,
            [
                "3.0",
                "0.25",
                "+Inf",
                "-Inf",
                "NaN",
                "150000000000000000000.0"
            ],
            "{text}"
        );
    }

    #[test]
    fn openmetrics_has_the_same_series_and_an_eof() {
        let mut c = family(MetricKind::Counter, vec!["cause"]);
        c.name = "t_gaps_total";
        c.samples
            .push((vec!["client-stall".into()], SampleValue::Number(2.0)));
        let reg = Arc::new(Registry { families: vec![c] });
        let prom = render(&reg, Format::Prometheus);
        assert!(prom.contains("# TYPE t_gaps_total counter\n"), "{prom}");
        assert!(
            prom.contains("\nt_gaps_total{cause=\"client-stall\"} 2"),
            "{prom}"
        );
        let om = render(&reg, Format::OpenMetrics);
        assert!(om.contains("# TYPE t_gaps counter\n"), "{om}");
        assert!(
            om.contains("\nt_gaps_total{cause=\"client-stall\"} 2"),
            "{om}"
        );
        assert!(om.ends_with("# EOF\n"), "{om}");
    }

    #[test]
    fn histogram_buckets_are_cumulative() {
        let mut h = Histogram::new(&RATIO_BUCKETS);
        for v in [1.1, 1.2, 2.6, 2.6, 40.0, f64::NAN] {
            h.observe(v);
        }
        assert_eq!(h.count(), 5);
        let mut f = family(MetricKind::Histogram, vec!["cause"]);
        f.samples
            .push((vec!["client-stall".into()], SampleValue::Histogram(h)));
        let text = Registry { families: vec![f] }.render();
        let buckets: Vec<&str> = text.lines().filter(|l| l.contains("_bucket")).collect();
        assert_eq!(
            buckets,
            [
                "t_metric_bucket{cause=\"client-stall\",le=\"1\"} 0",
                "t_metric_bucket{cause=\"client-stall\",le=\"1.25\"} 2",
                "t_metric_bucket{cause=\"client-stall\",le=\"1.5\"} 2",
                "t_metric_bucket{cause=\"client-stall\",le=\"2\"} 2",
                "t_metric_bucket{cause=\"client-stall\",le=\"2.5\"} 2",
                "t_metric_bucket{cause=\"client-stall\",le=\"3\"} 4",
                "t_metric_bucket{cause=\"client-stall\",le=\"5\"} 4",
                "t_metric_bucket{cause=\"client-stall\",le=\"10\"} 4",
                "t_metric_bucket{cause=\"client-stall\",le=\"+Inf\"} 5",
            ]
        );
        assert!(text.contains("t_metric_sum{cause=\"client-stall\"} 47.5\n"));
        assert!(text.contains("t_metric_count{cause=\"client-stall\"} 5\n"));
        assert!(text.contains("# TYPE t_metric histogram\n"));
    }

    #[test]
    fn samples_without_labels_have_no_braces() {
        let mut f = family(MetricKind::Counter, vec![]);
        f.name = "t_total";
        f.samples.push((vec![], SampleValue::Number(7.0)));
        let text = Registry { families: vec![f] }.render();
        assert!(text.ends_with("\nt_total 7.0\n"), "{text}");
    }

    #[test]
    fn instance_suffixes_are_cut() {
        assert_eq!(strip_instance("nova-api:1234:abcd-ef"), "nova-api");
        assert_eq!(strip_instance("hbscope-test:99:serve"), "hbscope-test");
        assert_eq!(strip_instance("a:b:12"), "a:b");
        assert_eq!(strip_instance("plain"), "plain");
        assert_eq!(strip_instance("svc:"), "svc:");
        assert_eq!(strip_instance(":12"), "");
        assert_eq!(strip_instance("x:1a"), "x:1a");
    }

    #[test]
    fn label_values_are_capped() {
        let mut cap = LabelCap::default();
        for i in 0..MAX_LABEL_VALUES {
            assert_eq!(cap.get(format!("n{i}")), format!("n{i}"));
        }
        assert_eq!(cap.get("new".into()), "other");
        assert_eq!(cap.get("n3".into()), "n3");
    }

    #[test]
    fn requests_are_parsed_strictly() {
        let prom = Format::Prometheus;
        assert_eq!(
            parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Request::Metrics {
                head_only: false,
                format: prom
            }
        );
        assert_eq!(
            parse_request(b"HEAD /metrics?x=1 HTTP/1.0\r\n\r\n"),
            Request::Metrics {
                head_only: true,
                format: prom
            }
        );
        // What Prometheus 2.x sends.
        assert_eq!(
            parse_request(
                b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0,\
                  application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n\r\n"
            ),
            Request::Metrics {
                head_only: false,
                format: Format::OpenMetrics
            }
        );
        assert_eq!(
            parse_request(b"GET / HTTP/1.1\r\n\r\n"),
            Request::Landing { head_only: false }
        );
        assert_eq!(
            parse_request(b"GET /nope HTTP/1.1\r\n\r\n"),
            Request::NotFound
        );
        assert_eq!(
            parse_request(b"POST /metrics HTTP/1.1\r\n\r\n"),
            Request::MethodNotAllowed
        );
        for bad in [
            &b""[..],
            b"\xff\xfe\r\n\r\n",
            b"GET\r\n\r\n",
            b"GET /metrics\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
        ] {
            assert_eq!(parse_request(bad), Request::Bad, "{bad:?}");
        }
    }

    fn get(addr: SocketAddr, request: &[u8]) -> String {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(request).unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    #[test]
    fn server_answers_metrics_landing_404_and_survives_bad_requests() {
        let srv = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = srv.local_addr();
        assert_ne!(addr.port(), 0);
        let mut f = family(MetricKind::Gauge, vec![]);
        f.samples.push((vec![], SampleValue::Number(2.0)));
        srv.publish(Registry { families: vec![f] });
        // A client that says nothing, one that sends garbage, an oversized head.
        let idle = TcpStream::connect(addr).unwrap();
        let r = get(addr, b"\x00\x01garbage\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
        let mut big = b"GET /metrics HTTP/1.1\r\nX: ".to_vec();
        big.extend(std::iter::repeat_n(b'a', 20_000));
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let _ = s.write_all(&big);
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        assert!(out.starts_with("HTTP/1.1 400 "), "{out}");
        drop(idle);
        let r = get(addr, b"GET /nope HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
        let r = get(addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains("Content-Type: text/html; charset=utf-8\r\n"),
            "{r}"
        );
        assert!(r.contains("<a href=\"metrics\">"), "{r}");
        let r = get(
            addr,
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text;version=1.0.0\r\n\r\n",
        );
        assert!(
            r.contains(&format!("Content-Type: {OPENMETRICS_CONTENT_TYPE}\r\n")),
            "{r}"
        );
        assert!(r.ends_with("\nt_metric 2.0\n# EOF\n"), "{r}");
        let r = get(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        assert!(
            r.contains(&format!("Content-Type: {CONTENT_TYPE}\r\n")),
            "{r}"
        );
        assert!(
            r.ends_with(
                "\r\n\r\n# HELP t_metric a \\\\ help\\nline\n# TYPE t_metric gauge\nt_metric 2.0\n"
            ),
            "{r}"
        );
        let r = get(addr, b"HEAD /metrics HTTP/1.0\r\n\r\n");
        assert!(
            r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
            "{r}"
        );
        drop(srv);
        assert!(TcpStream::connect(addr).is_err(), "stopped on drop");
    }

    #[test]
    fn a_scrape_gets_a_registry_published_for_it() {
        let srv = Arc::new(MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap());
        let addr = srv.local_addr();
        assert!(!srv.take_wanted(), "nobody asked yet");
        // The live loop's part: publish only when asked, numbering the registries.
        let loop_side = Arc::clone(&srv);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let t = std::thread::spawn(move || {
            let mut n = 0.0;
            while !stop2.load(Ordering::SeqCst) {
                if loop_side.take_wanted() {
                    n += 1.0;
                    let mut f = family(MetricKind::Counter, vec![]);
                    f.name = "t_total";
                    f.samples.push((vec![], SampleValue::Number(n)));
                    loop_side.publish(Registry { families: vec![f] });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
        for want in ["t_total 1.0\n", "t_total 2.0\n"] {
            let started = Instant::now();
            let r = get(addr, b"GET /metrics HTTP/1.0\r\n\r\n");
            assert!(r.ends_with(want), "{r}");
            assert!(started.elapsed() < FRESH_WAIT, "{:?}", started.elapsed());
        }
        stop.store(true, Ordering::SeqCst);
        t.join().unwrap();
    }

    #[test]
    fn idle_clients_do_not_hold_up_a_scrape() {
        let srv = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let addr = srv.local_addr();
        srv.publish(Registry::default());
        // More silent clients than the server keeps, some with half a request.
        let mut idle = Vec::new();
        for i in 0..(MAX_WAITING + 36) {
            let mut s = TcpStream::connect(addr).unwrap();
            if i % 2 == 0 {
                s.write_all(b"GET /metr").unwrap();
            }
            idle.push(s);
        }
        let started = Instant::now();
        let r = get(addr, b"GET / HTTP/1.1\r\n\r\n");
        assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
        // One thread serving in turn would have waited READ_DEADLINE per client.
        assert!(started.elapsed() < READ_DEADLINE, "{:?}", started.elapsed());
        // The oldest silent clients were let go to make room.
        let mut closed = 0;
        for s in &mut idle {
            s.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
            // End of stream: the server closed it; a time-out: still waiting.
            closed += usize::from(matches!(s.read(&mut [0u8; 16]), Ok(0)));
        }
        assert!(closed >= 36, "{closed} closed");
    }

    #[test]
    fn bind_errors_name_the_address() {
        let first = MetricsServer::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let Err(e) = MetricsServer::bind(first.local_addr()) else {
            panic!("second bind on the same port succeeded");
        };
        let msg = e.to_string();
        assert!(msg.contains(&first.local_addr().to_string()), "{msg}");
        assert!(msg.contains("--metrics"), "{msg}");
    }
}
