//! The HTML report renders in a real headless Chromium (Debian's package;
//! `.ci/setup` installs it): the DOM it builds has the summary table, the
//! legend, per-connection SVG timelines with heartbeat and data marks and the
//! dashed limit line, healthy connections collapsed, the broker log lines and
//! the two-ended verdicts, and the page asks for nothing from the network.
//! `#[ignore]`d for want of Chromium: run it with `--include-ignored`.
//!
//! The founding case's report is also rendered to a PNG (checked to be one);
//! with `HBSCOPE_SAVE_SCREENSHOT=1` it is copied to docs/html-report.png,
//! which is how that screenshot is made.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn chromium() -> &'static str {
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect("Chromium is needed for this test: run `bash .ci/setup` (apt-get install chromium)")
}

/// Writes the HTML report of `args` (after `replay --format html -o FILE`),
/// run from the crate's root so that paths in the report are relative.
fn html_report(tag: &str, args: &[&str], flags: &[&str]) -> (PathBuf, String) {
    let html_path = std::env::temp_dir().join(format!("hbscope-{tag}-{}.html", std::process::id()));
    let o = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args(["replay", "--format", "html", "-o"])
        .arg(&html_path)
        .args(flags)
        .args(args)
        .env("TZ", "<+0100>-1")
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        html.matches("http://").count()
            == html.matches("xmlns=\"http://www.w3.org/2000/svg\"").count(),
        "the only URLs are SVG namespaces"
    );
    assert!(
        !html.contains("<script") && !html.contains("src=") && !html.contains("https://"),
        "the report must be self-contained"
    );
    (html_path, html)
}

/// Chromium with a throw-away profile and no network features; `extra` says
/// what to produce (`--dump-dom`, `--screenshot=...`).
fn chromium_run(html_path: &Path, extra: &[String]) -> String {
    let profile = std::env::temp_dir().join(format!(
        "hbscope-chromium-{}-{}",
        std::process::id(),
        html_path.file_stem().unwrap().to_string_lossy()
    ));
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .args(extra)
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", html_path.display()))
        .output()
        .unwrap();
    std::fs::remove_dir_all(&profile).ok();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "needs Chromium: run with --include-ignored (CI does)"]
fn nova_report_renders_in_headless_chromium() {
    let (html_path, _) = html_report(
        "nova",
        &["captures/nova-api-eventlet.pcap"],
        &[
            "--broker-log",
            "captures/logs/nova-api-eventlet.broker.log",
            "--",
        ],
    );
    let dom = chromium_run(&html_path, &["--dump-dom".into()]);
    assert!(dom.contains("<svg"), "no SVG in the rendered DOM");
    assert!(dom.contains("client-stall") && dom.contains("broker-reset"));
    assert!(dom.contains("nova_api_sim.py:32451"));
    assert!(dom.contains("<table>") || dom.contains("<tbody>"));
    // The legend names every mark and the dashed limit line.
    assert!(dom.contains(r#"class="legend""#), "no legend");
    for words in [
        "heartbeat frame",
        "other AMQP frames or new bytes",
        "pure TCP ACK",
        "retransmission",
        "RST",
        "limit: one heartbeat timeout",
        "gap: client-stall",
    ] {
        assert!(dom.contains(words), "legend lacks {words:?}");
    }
    // Both connections have a timeline; the stalled one is open, the
    // healthy one collapsed.
    assert_eq!(dom.matches(r#"class="timeline""#).count(), 2);
    assert!(
        dom.contains(r#"<details class="conn" id="conn-2">"#),
        "{dom}"
    );
    assert!(dom.contains(r#"<section class="conn flagged" id="conn-1">"#));
    // Marks: the broker's five heartbeats and the client's kernel ACKs on
    // connection 1 (one path per kind and lane), the RST, the limit line.
    let conn1 = dom
        .split(r#"id="conn-1""#)
        .nth(1)
        .and_then(|s| s.split("</svg>").next())
        .unwrap();
    let heartbeats = conn1
        .split(r##"stroke="#1e8449""##)
        .next()
        .and_then(|s| s.rsplit("<path d=\"").next())
        .unwrap();
    assert!(
        heartbeats.matches('M').count() >= 5,
        "broker heartbeat marks: {heartbeats}"
    );
    assert!(conn1.contains(r##"stroke="#566573""##), "ACK marks");
    assert!(conn1.contains(r##"stroke="#b03a2e""##), "RST mark");
    assert!(conn1.contains(r#"class="limit""#), "limit line");
    assert!(conn1.contains("13:51:2"), "UTC clock axis");
    // Clock times in UTC and the local zone (TZ=UTC+1 here).
    assert!(dom.contains("13:51:20.519 UTC (14:51:20.519 local, UTC+01:00)"));
    // The broker's own words on the gap.
    assert!(dom.contains("missed heartbeats from client, timeout: 4s"));
    assert!(dom.contains("<h2>Broker log</h2>"));

    // A screenshot, as a reader would see it.
    let png = std::env::temp_dir().join(format!("hbscope-nova-{}.png", std::process::id()));
    chromium_run(
        &html_path,
        &[
            "--window-size=1150,1250".into(),
            format!("--screenshot={}", png.display()),
        ],
    );
    let bytes = std::fs::read(&png).expect("Chromium wrote no screenshot");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 20_000);
    if std::env::var_os("HBSCOPE_SAVE_SCREENSHOT").is_some() {
        std::fs::copy(&png, root().join("docs/html-report.png")).unwrap();
    }
    std::fs::remove_file(&png).ok();
    std::fs::remove_file(&html_path).ok();
}

/// Two-ended replay in HTML: the merged verdicts, then the client side's
/// connections with each gap's two-ended verdict.
#[test]
#[ignore = "needs Chromium: run with --include-ignored (CI does)"]
fn two_ended_report_renders_in_headless_chromium() {
    let (html_path, _) = html_report(
        "twoend",
        &[],
        &[
            "--client-side",
            "captures/twoend/twoend-lost-c2b.client.pcap",
            "--broker-side",
            "captures/twoend/twoend-lost-c2b.broker.pcap",
        ],
    );
    let dom = chromium_run(&html_path, &["--dump-dom".into()]);
    assert!(dom.contains("<h2>Two-ended verdicts</h2>"), "{dom}");
    assert!(dom.contains("lost-in-network"));
    assert!(dom.contains("client side") || dom.contains(">client<"));
    assert!(dom.contains("two-ended verdict <b>lost-in-network</b>"));
    assert!(dom.contains(r#"class="timeline""#) && dom.contains(r#"class="legend""#));
    std::fs::remove_file(&html_path).ok();
}

/// Past 200 healthy connections the HTML lists the rest without drawing
/// them (no Chromium needed): a big capture stays a page a browser opens.
#[test]
fn many_healthy_connections_are_listed_not_drawn() {
    let dir = std::env::temp_dir().join(format!("hbscope-html-many-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("many.pcap");
    let o = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args([
            "synth",
            "--connections",
            "260",
            "--duration",
            "8",
            "--stalls",
            "0",
            "-o",
        ])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args(["replay", "--format", "html"])
        .arg(&pcap)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = String::from_utf8(o.stdout).unwrap();
    let flagged = html.matches(r#"<section class="conn flagged""#).count();
    assert_eq!(html.matches(r#"class="timeline""#).count(), flagged + 200);
    assert!(html.contains("more without a timeline (only the first 200 are drawn)"));
    std::fs::remove_dir_all(&dir).ok();
}
