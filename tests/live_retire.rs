//! Long live captures keep memory bounded: ended connections that left the
//! live table are folded into counts past `--keep-ended` (the engine's
//! `max_ended`), those without gaps first. Live mode's real loop runs over a
//! real recording of connection churn (`captures/churn.pcap`: ~240 pika
//! connections living 1-6 s, two of them cut by the broker after a SIGSTOP)
//! on a simulated clock, with the table's 5 minutes shortened to 5 s and
//! at most 10 ended connections kept. No root, interface or broker needed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

use hbscope::capture::live::LiveConfig;
use hbscope::driver::PacedSource;
use hbscope::engine::EngineConfig;
use hbscope::model::Span;
use hbscope::report::{ConnectionState, Report};
use hbscope::run::live::{self, LiveEvent, LiveOptions};
use hbscope::tui::live::{LiveInfo, LiveView};
use hbscope::tui::{Command, Event};
use serde_json::Value;

const KEEP_S: i64 = 5;
const MAX_ENDED: usize = 10;

fn churn() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/churn.pcap")
}

fn options() -> LiveOptions {
    LiveOptions {
        capture: LiveConfig {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        engine: EngineConfig {
            timeline_keep_ended: Some(Span::from_secs(KEEP_S as u64)),
            max_ended: Some(MAX_ENDED),
            ..EngineConfig::default()
        },
        duration: None,
        write: None,
        force: false,
        attribution: false,
        py_spy: false,
        user: None,
        metrics: None,
        record: None,
    }
}

/// Live mode over the churn capture: its events and its final report.
fn run_live(opts: &LiveOptions) -> (Vec<Value>, Report) {
    let (mut src, mut clock) = PacedSource::open(&churn()).unwrap();
    let stop = AtomicBool::new(false);
    let mut events = Vec::new();
    let mut emit = |e: &LiveEvent| -> std::io::Result<()> {
        events.push(serde_json::to_value(e).unwrap());
        Ok(())
    };
    let rep = live::run_with(opts, &mut src, &mut clock, None, &stop, &mut emit);
    (events, rep)
}

fn replay() -> Report {
    hbscope::run::replay::replay(&churn(), EngineConfig::default(), &mut |_| {})
        .unwrap()
        .report()
}

/// A connection entry without its position in the report (`id`).
fn entry(c: &hbscope::report::ConnectionReport) -> Value {
    let mut v = serde_json::to_value(c).unwrap();
    v.as_object_mut().unwrap().remove("id");
    v
}

#[test]
fn folded_connections_keep_every_total_and_every_flagged_connection() {
    let all = replay();
    assert!(
        all.connections.len() > 150,
        "the capture holds {} connections",
        all.connections.len()
    );
    let flagged: Vec<_> = all
        .connections
        .iter()
        .filter(|c| !c.gaps.is_empty())
        .collect();
    // The two SIGSTOPped clients, and four heartbeats the capture lost.
    assert_eq!(flagged.len(), 6);
    assert!(flagged.len() < MAX_ENDED, "all of them fit");
    let (events, live) = run_live(&options());

    // Bounded: what is listed is what had not left the table (still open,
    // or ended less than KEEP_S before the end) plus at most MAX_ENDED, and
    // the slack the engine lets gather before folding (an eighth and 16).
    let end = all.capture.last_packet.clone().unwrap();
    let end = chrono::DateTime::parse_from_rfc3339(&end).unwrap();
    let recent = all
        .connections
        .iter()
        .filter(|c| {
            let last = chrono::DateTime::parse_from_rfc3339(&c.last_seen).unwrap();
            c.state == ConnectionState::Open
                || (end - last).num_milliseconds() <= KEEP_S * 1000 + 200
        })
        .count();
    let bound = recent + MAX_ENDED + MAX_ENDED / 8 + 16;
    assert!(
        live.connections.len() <= bound,
        "{} listed, bound {bound} ({recent} recent)",
        live.connections.len()
    );
    let folded = live.summary.ended_not_listed.as_ref().expect("some folded");
    assert_eq!(
        folded.total.connections as usize + live.connections.len(),
        all.connections.len()
    );
    assert!(folded.total.connections > 100, "{folded:?}");

    // Nothing is lost from the totals.
    assert_eq!(live.summary.connections, all.summary.connections);
    assert_eq!(
        live.summary.flagged_connections,
        all.summary.flagged_connections
    );
    assert_eq!(live.summary.gaps, all.summary.gaps);
    assert_eq!(live.summary.gaps_by_cause, all.summary.gaps_by_cause);
    // Connections with near-misses are kept longer than the rest too, so
    // the heartbeat health rollup (of listed connections) is replay's.
    assert_eq!(live.summary.heartbeat_health, all.summary.heartbeat_health);
    assert_eq!(folded.keep_ended, MAX_ENDED as u64);
    assert_eq!(folded.kept_in_full_s, KEEP_S as f64);
    let by_client: u64 = folded.by_client.iter().map(|p| p.counts.connections).sum();
    assert_eq!(by_client, folded.total.connections);
    assert_eq!(folded.by_client[0].client_host, "127.0.0.1");
    assert_eq!(folded.by_client[0].broker, "127.0.0.1:5672");

    // Healthy connections go first: both flagged ones are listed in full,
    // and every listed entry is the replay's, gap for gap.
    let replayed: HashMap<(&str, &str), Value> = all
        .connections
        .iter()
        .map(|c| ((c.client.as_str(), c.broker.as_str()), entry(c)))
        .collect();
    for f in &flagged {
        assert!(
            live.connections.iter().any(|c| c.client == f.client),
            "flagged {} was folded",
            f.client
        );
    }
    assert_eq!(folded.total.flagged_connections, 0);
    for c in &live.connections {
        assert_eq!(
            Some(&entry(c)),
            replayed.get(&(c.client.as_str(), c.broker.as_str())),
            "{}",
            c.client
        );
    }

    // The events went on through the folds: every connection was seen and
    // ended once, every gap closed.
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    assert_eq!(count("connection-seen"), all.connections.len());
    let ended = all
        .connections
        .iter()
        .filter(|c| c.state != ConnectionState::Open)
        .count();
    assert_eq!(count("connection-ended"), ended);
    assert_eq!(count("gap-closed"), all.summary.gaps);

    // Every format says what was not listed.
    let text = hbscope::report::to_text(&live);
    let head = format!(
        "not listed: {} connections, 0 flagged, 0 gaps",
        folded.total.connections
    );
    assert!(text.contains(&head), "{text}");
    assert!(text.contains("  127.0.0.1 -> 127.0.0.1:5672: "), "{text}");
    for other in [
        hbscope::report::html::to_html(&live),
        hbscope::report::html::to_markdown(&live),
        hbscope::report::html::to_summary(&live),
    ] {
        assert!(other.contains(&head), "{other}");
    }
    let json = serde_json::to_value(&live).unwrap();
    assert_eq!(
        json["summary"]["ended_not_listed"]["connections"],
        folded.total.connections
    );
}

#[test]
fn without_a_cap_nothing_is_folded_and_the_report_is_replays() {
    let mut opts = options();
    opts.engine.max_ended = None;
    let (_, live) = run_live(&opts);
    let all = replay();
    assert!(live.summary.ended_not_listed.is_none());
    let json = serde_json::to_value(&live.connections).unwrap();
    assert_eq!(json, serde_json::to_value(&all.connections).unwrap());
    let text = hbscope::report::to_text(&live);
    assert!(!text.contains("not listed:"), "{text}");
}

/// The live screen through the folds: it keeps counting every connection,
/// and a connection asked for by its number still gets its timeline after
/// the connections before it were folded away (positions moved, numbers
/// did not).
#[test]
fn live_screen_counts_folded_connections_and_keeps_its_focus() {
    let mut opts = options();
    opts.engine.timeline_events = hbscope::analysis::timeline::Timeline::CAP;
    let (ev_tx, ev_rx) = mpsc::channel();
    let (cmd_tx, cmd_rx) = mpsc::channel();
    let mut view = LiveView::new(
        LiveInfo {
            interface: "sim0".into(),
            filter: live::DEFAULT_FILTER.into(),
        },
        ev_tx,
        cmd_rx,
    );
    // The last connection of the capture: recognised late, after folds.
    let all = replay();
    let last = all.connections.len() as u64 - 1;
    cmd_tx.send(Command::Focus(last)).unwrap();
    let (mut src, mut clock) = PacedSource::open(&churn()).unwrap();
    let stop = AtomicBool::new(false);
    let rep = live::run_with_view(
        &opts,
        &mut src,
        &mut clock,
        None,
        &stop,
        &mut |_| Ok(()),
        &mut view,
    );
    drop(view);
    drop(cmd_tx);
    let snaps: Vec<_> = ev_rx
        .try_iter()
        .filter_map(|e| match e {
            Event::Snapshot(s) => Some(*s),
            _ => None,
        })
        .collect();
    let final_snap = snaps.last().unwrap();
    assert!(rep.summary.ended_not_listed.is_some());
    assert_eq!(
        final_snap.header.summary.connections,
        all.summary.connections
    );
    assert_eq!(
        final_snap.header.summary.flagged_connections,
        all.summary.flagged_connections
    );
    let focused = final_snap
        .conns
        .iter()
        .find(|c| c.slot == last)
        .expect("the focused connection is in the table");
    assert!(focused.timeline.is_some(), "its timeline came with it");
}
