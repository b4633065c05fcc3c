//! `replay --format json` writes its report one connection entry at a time
//! ([`report::write_json_streamed`]); it must give exactly the bytes of the
//! report built whole ([`report::write_json`] of [`report::build`]), on every
//! shipped capture and on a synthetic capture with injected gaps.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use hbscope::engine::EngineConfig;
use hbscope::report;
use hbscope::run::replay;

fn same_bytes(path: &Path) {
    let replay = replay::replay(path, EngineConfig::default(), &mut |_| {}).expect("replay");
    let whole = replay.report();
    let mut built = Vec::new();
    report::write_json(&whole, &mut built).unwrap();
    let mut streamed = Vec::new();
    let summary = report::write_json_streamed(
        &replay.engine,
        &replay.source,
        replay.complete,
        &mut streamed,
    )
    .unwrap();
    assert!(
        built == streamed,
        "{}: streamed JSON differs from the built report",
        path.display()
    );
    assert_eq!(summary, whole.summary);
}

#[test]
fn streamed_json_is_the_built_report_on_every_shipped_capture() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "pcap" || x == "pcapng"))
        .collect();
    files.sort();
    assert!(files.len() >= 20, "captures/ has {} files", files.len());
    for f in &files {
        same_bytes(f);
    }
}

#[test]
fn streamed_json_is_the_built_report_on_a_synthetic_capture() {
    let dir = std::env::temp_dir().join(format!("hbscope-stream-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("s.pcap");
    let cfg = hbscope::synth::SynthConfig {
        seed: 7,
        connections: 200,
        duration_s: 120,
        heartbeat_s: 4,
        stalls_per_cause: 2,
        ..hbscope::synth::SynthConfig::default()
    };
    let s = hbscope::synth::write_files(&cfg, &path, None).unwrap();
    assert!(!s.gaps.is_empty());
    same_bytes(&path);
    std::fs::remove_dir_all(&dir).unwrap();
}
