//! Live mode's real code (`run::live::run_with`, the driver's paced loop)
//! run from shipped captures with simulated time: `driver::PacedSource`
//! releases each packet once the `SimClock` passed its timestamp, and the
//! clock moves in 200 ms ticks. No root, interface or broker needed, and no
//! real waiting. Attribution is off (no /proc lookups).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

mod common;

use common::metrics::value;
use hbscope::capture::live::LiveConfig;
use hbscope::driver::{Clock, PacedSource, SimClock};
use hbscope::engine::EngineConfig;
use hbscope::metrics::{MetricsOptions, Registry};
use hbscope::model::Timestamp;
use hbscope::report::Report;
use hbscope::run::live::{self, LiveEvent, LiveOptions, Publish};
use serde_json::Value;

const TICK_NS: i64 = 200_000_000;

fn capture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(name)
}

fn options(duration: Option<Duration>, metrics: bool) -> LiveOptions {
    LiveOptions {
        capture: LiveConfig {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        engine: EngineConfig::default(),
        duration,
        write: None,
        force: false,
        attribution: false,
        py_spy: false,
        user: None,
        metrics: metrics.then(|| MetricsOptions {
            addr: "127.0.0.1:9".parse().unwrap(),
            per_connection: false,
        }),
        record: None,
    }
}

/// A metrics endpoint scraped at every tick: records each registry with
/// the simulated time it was published at.
struct Recorder {
    clock: SimClock,
    scrapes: RefCell<Vec<(Timestamp, String)>>,
}

impl Publish for Recorder {
    fn local_addr(&self) -> SocketAddr {
        "127.0.0.1:9".parse().unwrap()
    }
    fn take_wanted(&self) -> bool {
        true
    }
    fn publish(&self, registry: Registry) {
        self.scrapes
            .borrow_mut()
            .push((self.clock.now(), registry.render()));
    }
}

struct Sim {
    events: Vec<Value>,
    report: Report,
    start: Timestamp,
    scrapes: Vec<(Timestamp, String)>,
}

/// Runs live mode over `path`; `setup` may add simulated drops, `stop_when`
/// sets the stop flag when it returns true for an event.
fn simulate(
    path: &Path,
    opts: &LiveOptions,
    setup: impl FnOnce(&mut PacedSource, Timestamp),
    stop_when: impl Fn(&Value) -> bool,
) -> Sim {
    let (mut src, mut clock) = PacedSource::open(path).unwrap();
    let start = clock.now();
    setup(&mut src, start);
    let stop = AtomicBool::new(false);
    let mut events = Vec::new();
    let mut emit = |e: &LiveEvent| -> std::io::Result<()> {
        let v = serde_json::to_value(e).unwrap();
        if stop_when(&v) {
            stop.store(true, Ordering::SeqCst);
        }
        // The text form exists for every event.
        assert!(!live::event_text(e).is_empty());
        events.push(v);
        Ok(())
    };
    let mut recorder = Recorder {
        clock: clock.clone(),
        scrapes: RefCell::new(Vec::new()),
    };
    let metrics: Option<&mut dyn Publish> = if opts.metrics.is_some() {
        Some(&mut recorder)
    } else {
        None
    };
    let report = live::run_with(opts, &mut src, &mut clock, metrics, &stop, &mut emit);
    Sim {
        events,
        report,
        start,
        scrapes: recorder.scrapes.into_inner(),
    }
}

fn kind(e: &Value) -> &str {
    e["event"].as_str().unwrap()
}

fn ts(v: &Value) -> Timestamp {
    let d = chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
    Timestamp(d.timestamp_nanos_opt().unwrap())
}

fn secs(ns: i64) -> f64 {
    ns as f64 / 1e9
}

fn stopped(sim: &Sim) -> &Value {
    let last = sim.events.last().unwrap();
    assert_eq!(kind(last), "capture-stopped", "{last}");
    last
}

/// The kinds of the events about the connection `client` (and the capture's own).
fn sequence<'a>(events: &'a [Value], client: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter(|e| e.get("client").is_none_or(|c| c == client))
        .map(kind)
        .collect()
}

/// Checks the gap-opened event: at a tick of the simulated clock, the first
/// tick at which the silence was past its limit.
fn check_gap_opened(sim: &Sim, opened: &Value) {
    let at = ts(&opened["at"]);
    let since_start = at.since(sim.start).0;
    assert_eq!(since_start % TICK_NS, 0, "not at a tick: {opened}");
    let gap = &opened["gap"];
    let silence_start = ts(&gap["start"]);
    let limit_ns = (gap["limit_s"].as_f64().unwrap() * 1e9) as i64;
    let silent = at.since(silence_start).0;
    assert!(silent > limit_ns, "flagged before the limit: {opened}");
    assert!(
        silent - TICK_NS <= limit_ns,
        "flagged {} s late: the tick before was already past the limit: {opened}",
        secs(silent - limit_ns)
    );
    assert_eq!(gap["ended_by"], "open", "{opened}");
    assert!((gap["silence_s"].as_f64().unwrap() - secs(silent)).abs() < 1e-3);
}

/// The same connections and gaps as replay finds in the file.
fn check_report_matches_replay(path: &Path, rep: &Report) {
    let replay = hbscope::run::replay::replay(path, EngineConfig::default(), &mut |_| {})
        .unwrap()
        .report();
    assert_eq!(
        serde_json::to_value(&rep.connections).unwrap(),
        serde_json::to_value(&replay.connections).unwrap()
    );
    assert_eq!(rep.capture.source, "sim0");
}

#[test]
fn client_sigstop_events_in_order_with_the_gap_flagged_at_the_next_tick() {
    let path = capture("client-sigstop.pcap");
    let sim = simulate(&path, &options(None, false), |_, _| {}, |_| false);
    let e = &sim.events;
    let first = &e[0];
    assert_eq!(kind(first), "capture-started");
    assert_eq!(first["interface"], "sim0");
    assert_eq!(first["link_type"], "EN10MB");
    assert_eq!(ts(&first["at"]), sim.start);
    let client = "127.0.0.1:50888";
    assert_eq!(
        sequence(e, client),
        [
            "capture-started",
            "connection-seen",
            "gap-opened",
            "gap-closed",
            "connection-ended",
            "capture-stopped"
        ],
        "{e:#?}"
    );
    let find = |k: &str| e.iter().find(|x| kind(x) == k).unwrap();
    let seen = find("connection-seen");
    assert_eq!(seen["client"], client);
    assert_eq!(seen["heartbeat_s"], 2);
    let opened = find("gap-opened");
    check_gap_opened(&sim, opened);
    assert_eq!(opened["gap"]["direction"], "client-to-broker");
    assert_eq!(opened["gap"]["cause"], "client-stall");
    // The RST comes 5 s after the client's last byte, with the silence 2.5x the limit.
    let closed = find("gap-closed");
    assert!(ts(&closed["at"]) > ts(&opened["at"]));
    assert_eq!(closed["gap"]["cause"], "client-stall");
    assert_eq!(closed["gap"]["consequence"], "broker-reset");
    assert_eq!(closed["gap"]["ended_by"], "rst");
    assert_eq!(closed["gap"]["start"], opened["gap"]["start"]);
    let ended = find("connection-ended");
    assert_eq!(ended["how"], "rst");
    assert_eq!(ended["by"], "broker");
    assert_eq!(ended["gaps"], 1);
    // The file ran out: the capture stopped by itself one tick later.
    let stop = stopped(&sim);
    assert_eq!(stop["reason"], "end-of-input");
    assert_eq!(stop["dropped"], 0);
    assert_eq!(
        stop["packets"].as_u64().unwrap(),
        sim.report.capture.packets
    );
    check_report_matches_replay(&path, &sim.report);
}

#[test]
fn nova_eventlet_starved_heartbeat_is_flagged_live_and_explained_at_the_reset() {
    let path = capture("nova-api-eventlet.pcap");
    let sim = simulate(&path, &options(None, false), |_, _| {}, |_| false);
    let e = &sim.events;
    let opened: Vec<&Value> = e.iter().filter(|x| kind(x) == "gap-opened").collect();
    assert_eq!(opened.len(), 1, "{e:#?}");
    let client = opened[0]["client"].as_str().unwrap();
    assert_eq!(
        sequence(e, client),
        [
            "capture-started",
            "connection-seen",
            "gap-opened",
            "gap-closed",
            "connection-ended",
            "capture-stopped"
        ],
        "{e:#?}"
    );
    check_gap_opened(&sim, opened[0]);
    let closed = e
        .iter()
        .find(|x| kind(x) == "gap-closed" && x["client"] == client)
        .unwrap();
    assert_eq!(closed["gap"]["cause"], "client-stall");
    assert_eq!(closed["gap"]["consequence"], "broker-reset");
    // The wakeup (the HTTP request that woke the process) comes after the
    // reset: not known when the gap closes, but in the final report.
    assert!(closed["gap"]["wakeup"].is_null(), "{closed}");
    let rep = serde_json::to_value(&sim.report).unwrap();
    let gap = rep["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["client"] == client)
        .unwrap()["gaps"][0]
        .clone();
    assert!(gap["wakeup"].is_object(), "{gap}");
    // Both AMQP connections are announced, the reconnect after the reset too.
    assert_eq!(
        e.iter().filter(|x| kind(x) == "connection-seen").count(),
        2,
        "{e:#?}"
    );
    assert_eq!(stopped(&sim)["reason"], "end-of-input");
    check_report_matches_replay(&path, &sim.report);
}

#[test]
fn metrics_are_published_at_every_tick_and_show_the_open_gap_from_its_tick() {
    let path = capture("client-sigstop.pcap");
    let sim = simulate(&path, &options(None, true), |_, _| {}, |_| false);
    assert_eq!(kind(&sim.events[1]), "metrics-listening");
    assert_eq!(sim.events[1]["url"], "http://127.0.0.1:9/metrics");
    // One at the start, then one per tick, 200 ms apart.
    let times: Vec<i64> = sim
        .scrapes
        .iter()
        .map(|(t, _)| t.since(sim.start).0)
        .collect();
    assert_eq!(times[0], 0);
    for (k, t) in times.iter().enumerate() {
        assert_eq!(*t, TICK_NS * k as i64, "scrape {k}");
    }
    let opened = sim.events.iter().find(|x| kind(x) == "gap-opened").unwrap();
    let at = ts(&opened["at"]);
    let open = |s: &str| {
        value(
            s,
            "hbscope_gaps_open",
            &[
                ("cause", "client-stall"),
                ("client_name", "hbscope-client-sigstop"),
                ("direction", "client-to-broker"),
            ],
        )
    };
    let first_open = sim
        .scrapes
        .iter()
        .position(|(_, s)| open(s) == Some(1.0))
        .unwrap();
    assert_eq!(
        sim.scrapes[first_open].0, at,
        "the gauge shows the gap at the tick that flagged it"
    );
    let before = &sim.scrapes[first_open - 1].1;
    assert_eq!(open(before), None, "{before}");
    let ratio = value(
        before,
        "hbscope_silence_ratio",
        &[
            ("client_name", "hbscope-client-sigstop"),
            ("direction", "client-to-broker"),
        ],
    )
    .unwrap();
    assert!(ratio > 0.85 && ratio <= 1.0, "{ratio}");
    let last = &sim.scrapes.last().unwrap().1;
    assert_eq!(
        value(
            last,
            "hbscope_gaps_total",
            &[
                ("cause", "client-stall"),
                ("client_name", "hbscope-client-sigstop")
            ]
        ),
        Some(1.0),
        "{last}"
    );
}

#[test]
fn duration_stops_at_the_deadline() {
    let path = capture("client-sigstop.pcap");
    let sim = simulate(
        &path,
        &options(Some(Duration::from_secs(3)), false),
        |_, _| {},
        |_| false,
    );
    let stop = stopped(&sim);
    assert_eq!(stop["reason"], "duration");
    assert_eq!(ts(&stop["at"]).since(sim.start).0, 3_000_000_000);
    assert!(!sim.events.iter().any(|x| kind(x) == "gap-opened"));
    // Only the packets of the first 3 s were read.
    let all = hbscope::run::replay::replay(&path, EngineConfig::default(), &mut |_| {})
        .unwrap()
        .report()
        .capture
        .packets;
    let read = stop["packets"].as_u64().unwrap();
    assert!(read > 5 && read < all, "{read} of {all}");
}

#[test]
fn the_stop_flag_stops_with_reason_signal() {
    let path = capture("client-sigstop.pcap");
    let sim = simulate(
        &path,
        &options(None, false),
        |_, _| {},
        |e| kind(e) == "gap-opened",
    );
    let opened = sim.events.iter().find(|x| kind(x) == "gap-opened").unwrap();
    let stop = stopped(&sim);
    assert_eq!(stop["reason"], "signal");
    // Seen at the top of the next loop turn: no time passed since the tick.
    assert_eq!(stop["at"], opened["at"]);
    assert!(!sim
        .events
        .iter()
        .any(|x| kind(x) == "connection-ended" && x["how"] == "rst"));
}

#[test]
fn a_read_error_stops_with_reason_error_and_a_warning() {
    let whole = std::fs::read(capture("client-sigstop.pcap")).unwrap();
    let dir = std::env::temp_dir().join(format!("hbscope-live-sim-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut.pcap");
    // Cut inside the last record.
    std::fs::write(&cut, &whole[..whole.len() - 10]).unwrap();
    let sim = simulate(&cut, &options(None, false), |_, _| {}, |_| false);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(stopped(&sim)["reason"], "error");
    let codes: Vec<&str> = sim
        .report
        .capture
        .warnings
        .iter()
        .map(|w| w.code.as_str())
        .collect();
    assert!(codes.contains(&"capture-truncated"), "{codes:?}");
}

#[test]
fn simulated_kernel_drops_are_announced_at_the_next_tick() {
    let path = capture("client-sigstop.pcap");
    let sim = simulate(
        &path,
        &options(None, false),
        |src, start| src.drop_at(start.plus(hbscope::model::Span(1_050_000_000)), 7),
        |_| false,
    );
    let drops: Vec<&Value> = sim
        .events
        .iter()
        .filter(|x| kind(x) == "capture-drops")
        .collect();
    assert_eq!(drops.len(), 1, "{:#?}", sim.events);
    assert_eq!(drops[0]["new"], 7);
    assert_eq!(drops[0]["total"], 7);
    assert_eq!(ts(&drops[0]["at"]).since(sim.start).0, 1_200_000_000);
    assert_eq!(stopped(&sim)["dropped"], 7);
    assert_eq!(sim.report.capture.dropped_packets, Some(7));
}

/// When the event reader goes away (an emit error, e.g. a closed pipe), the
/// capture stops cleanly and says "signal", as before the driver existed.
#[test]
fn a_closed_event_reader_stops_the_capture_with_reason_signal() {
    let path = capture("client-sigstop.pcap");
    let (mut src, mut clock) = PacedSource::open(&path).unwrap();
    let start = clock.now();
    let stop = AtomicBool::new(false);
    let mut events = Vec::new();
    let mut emit = |e: &LiveEvent| -> std::io::Result<()> {
        let v = serde_json::to_value(e).unwrap();
        let closed = kind(&v) == "connection-seen";
        events.push(v);
        if closed {
            Err(std::io::ErrorKind::BrokenPipe.into())
        } else {
            Ok(())
        }
    };
    let rep = live::run_with(
        &options(None, false),
        &mut src,
        &mut clock,
        None,
        &stop,
        &mut emit,
    );
    let stop = events.last().unwrap();
    assert_eq!(kind(stop), "capture-stopped");
    assert_eq!(stop["reason"], "signal");
    // Stopped right after the failed write: well before the stall.
    assert!(ts(&stop["at"]).since(start).0 < 2_000_000_000, "{stop}");
    assert!(!events.iter().any(|x| kind(x) == "gap-opened"));
    assert!(rep.capture.packets < 20, "{}", rep.capture.packets);
}

/// Byte offsets and timestamps (ns) of a classic pcap file's records.
fn records(pcap: &[u8]) -> Vec<(usize, i64)> {
    let magic = u32::from_le_bytes(pcap[0..4].try_into().unwrap());
    let frac = match magic {
        0xa1b2_c3d4 => 1_000,
        0xa1b2_3c4d => 1,
        m => panic!("not a little-endian classic pcap: {m:#x}"),
    };
    let mut out = Vec::new();
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let word = |i: usize| u32::from_le_bytes(pcap[at + i..at + i + 4].try_into().unwrap());
        out.push((
            at,
            i64::from(word(0)) * 1_000_000_000 + i64::from(word(4)) * frac,
        ));
        at += 16 + word(8) as usize;
    }
    out
}

/// The capture fails (here: the file is cut mid-record) while the client's
/// silence is open and already flagged: the silence must not end as a stall
/// nobody saw the end of. It ends as capture-loss with the reason in its
/// evidence, and the report says the capture is incomplete.
#[test]
fn a_capture_failing_during_an_open_silence_ends_it_as_capture_loss() {
    let path = capture("client-sigstop.pcap");
    let whole = std::fs::read(&path).unwrap();
    let replay = hbscope::run::replay::replay(&path, EngineConfig::default(), &mut |_| {})
        .unwrap()
        .report();
    let gap = &replay.connections[0].gaps[0];
    assert_eq!(gap.cause.to_string(), "client-stall");
    let start = ts(&serde_json::to_value(&gap.start).unwrap());
    let flagged = start.0 + (gap.limit_s * 1e9) as i64 + 2 * TICK_NS;
    // The first record well past the limit, cut in its middle.
    let (cut_at, _) = *records(&whole)
        .iter()
        .find(|(_, t)| *t > flagged)
        .expect("a packet after the flag");
    let dir = std::env::temp_dir().join(format!("hbscope-live-sim-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let cut = dir.join("cut-mid-silence.pcap");
    std::fs::write(&cut, &whole[..cut_at + 20]).unwrap();
    let sim = simulate(&cut, &options(None, false), |_, _| {}, |_| false);
    std::fs::remove_dir_all(&dir).unwrap();

    assert!(
        sim.events.iter().any(|x| kind(x) == "gap-opened"),
        "the silence was flagged before the failure: {:#?}",
        sim.events
    );
    assert_eq!(stopped(&sim)["reason"], "error");
    let rep = serde_json::to_value(&sim.report).unwrap();
    assert_eq!(rep["capture"]["complete"], false, "{rep:#}");
    let codes: Vec<&str> = sim
        .report
        .capture
        .warnings
        .iter()
        .map(|w| w.code.as_str())
        .collect();
    assert!(codes.contains(&"capture-truncated"), "{codes:?}");
    let gaps = rep["connections"][0]["gaps"].as_array().unwrap();
    let g = gaps
        .iter()
        .find(|g| g["direction"] == "client-to-broker")
        .unwrap_or_else(|| panic!("no client gap: {rep:#}"));
    assert_eq!(g["cause"], "capture-loss", "{g:#}");
    assert_eq!(g["ended_by"], "capture-end", "{g:#}");
    assert!(
        g["evidence"].as_array().unwrap().iter().any(|l| l
            .as_str()
            .unwrap()
            .contains("the capture failed during the silence (capture-truncated")),
        "{g:#}"
    );
    assert!(gaps
        .iter()
        .all(|g| g["cause"] != "client-stall" && g["cause"] != "broker-stall"));
}

/// Kernel drops make the capture incomplete: `complete: false` and a
/// `capture-drops` warning.
#[test]
fn kernel_drops_mark_the_report_incomplete() {
    let path = capture("client-sigstop.pcap");
    let sim = simulate(
        &path,
        &options(None, false),
        |src, start| src.drop_at(start.plus(hbscope::model::Span(1_050_000_000)), 3),
        |_| false,
    );
    assert!(!sim.report.capture.complete);
    let w = sim
        .report
        .capture
        .warnings
        .iter()
        .find(|w| w.code == "capture-drops")
        .expect("a capture-drops warning");
    assert!(w.message.contains("dropped 3 packets"), "{}", w.message);
    // Without drops or errors it is complete.
    let sim = simulate(&path, &options(None, false), |_, _| {}, |_| false);
    assert!(sim.report.capture.complete);
}

/// `live --local-time`: the event lines and the final text report show the
/// zone of `TZ` (a POSIX zone string, no time zone database needed); the
/// default stays UTC. No other test of this binary renders local times.
#[test]
fn local_time_in_event_lines_and_report() {
    std::env::set_var("TZ", "<+0530>-5:30");
    let path = capture("client-sigstop.pcap");
    let (mut src, mut clock) = PacedSource::open(&path).unwrap();
    let stop = AtomicBool::new(false);
    let (mut utc, mut local) = (Vec::new(), Vec::new());
    let mut emit = |e: &LiveEvent| -> std::io::Result<()> {
        utc.push(live::event_text(e));
        local.push(live::event_text_in(e, hbscope::report::Zone::Local));
        Ok(())
    };
    let report = live::run_with(
        &options(None, false),
        &mut src,
        &mut clock,
        None,
        &stop,
        &mut emit,
    );
    let seen = utc
        .iter()
        .zip(&local)
        .find(|(u, _)| u.contains(" connection 10.") || u.contains(" connection 127."))
        .expect("a connection event");
    assert!(seen.0.starts_with("2026-11-26T21:07:52.565"), "{}", seen.0);
    assert!(seen.1.starts_with("2026-11-27T02:37:52.565"), "{}", seen.1);
    assert!(seen.1.contains("+05:30 connection "), "{}", seen.1);
    let gap = local
        .iter()
        .find(|l| l.contains(" gap closed "))
        .expect("a closed gap");
    assert!(gap.contains("+05:30 gap closed "), "{gap}");
    let text = hbscope::report::to_text_in(&report, hbscope::report::Zone::Local);
    assert!(text.contains("+05:30"), "{text}");
    assert!(!text.contains("000Z"), "every time is local:\n{text}");
}
