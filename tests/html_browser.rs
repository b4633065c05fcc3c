//! The HTML report renders in a real headless Chromium (Debian's package;
//! `.ci/setup` installs it): the DOM it builds has the summary table, the SVG
//! timeline and the verdict, and the page asks for nothing from the network.
//! `#[ignore]`d for want of Chromium: run it with `--include-ignored`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

#[test]
#[ignore = "needs Chromium: run with --include-ignored (CI does)"]
fn nova_report_renders_in_headless_chromium() {
    let html_path = std::env::temp_dir().join(format!("hbscope-nova-{}.html", std::process::id()));
    let capture = Path::new(env!("CARGO_MANIFEST_DIR")).join("captures/nova-api-eventlet.pcap");
    let o = Command::new(env!("CARGO_BIN_EXE_hbscope"))
        .args(["replay", "--format", "html", "-o"])
        .arg(&html_path)
        .arg(&capture)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let html = std::fs::read_to_string(&html_path).unwrap();
    assert!(
        !html.contains("http://")
            || html
                .matches("http://")
                .all(|_| html.contains("xmlns=\"http://www.w3.org/2000/svg\""))
    );
    assert!(
        !html.contains("<script") && !html.contains("src="),
        "the report must be self-contained"
    );

    let chromium = ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .find(|c| {
            Command::new(c)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
        .expect(
            "Chromium is needed for this test: run `bash .ci/setup` (apt-get install chromium)",
        );
    let profile = std::env::temp_dir().join(format!("hbscope-chromium-{}", std::process::id()));
    let out = Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", html_path.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    assert!(dom.contains("<svg"), "no SVG in the rendered DOM");
    assert!(dom.contains("client-stall") && dom.contains("broker-reset"));
    assert!(dom.contains("nova_api_sim.py:32451"));
    assert!(dom.contains("<table>") || dom.contains("<tbody>"));
}
