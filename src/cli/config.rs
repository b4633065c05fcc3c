//! `hbscope live --config FILE`: the live settings from a TOML file (the
//! service reads /etc/hbscope/hbscope.toml). Options on the command line win
//! over the file; a key the file may not have is an error naming it. The only
//! module that uses the `toml` crate. docs/live.md, "Configuration file",
//! lists the keys; packaging/hbscope.toml is the example the .deb installs.
//!
//! ```toml
//! [live]
//! interface = "any"
//! [metrics]
//! address = "127.0.0.1:19672"
//! [record]
//! max_files = 200
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{LiveArgs, LiveFormat};

/// The whole file: three optional tables.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// What to capture and how.
    #[serde(default)]
    pub live: LiveTable,
    /// `--metrics`.
    #[serde(default)]
    pub metrics: MetricsTable,
    /// `--record-gaps` and its caps.
    #[serde(default)]
    pub record: RecordTable,
}

/// `[live]`: the options of `hbscope live` by their long names.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LiveTable {
    /// `--interface`.
    pub interface: Option<String>,
    /// `--filter`.
    pub filter: Option<String>,
    /// `--port` (a list).
    pub ports: Option<Vec<u16>>,
    /// `--heartbeat`.
    pub heartbeat: Option<u16>,
    /// `--format`.
    pub format: Option<LiveFormat>,
    /// `false` is `--no-attribution`.
    pub attribution: Option<bool>,
    /// `--user`.
    pub user: Option<String>,
    /// `--quiet`.
    pub quiet: Option<bool>,
    /// `--output`.
    pub output: Option<PathBuf>,
    /// `--keep-ended`.
    pub keep_ended: Option<usize>,
}

/// `[metrics]`.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsTable {
    /// `--metrics`.
    pub address: Option<SocketAddr>,
    /// `--metrics-per-connection`.
    pub per_connection: Option<bool>,
}

/// `[record]`: the `--record-*` options without their prefix.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RecordTable {
    /// `--record-gaps`.
    pub dir: Option<PathBuf>,
    /// `--record-before`, seconds.
    pub before: Option<u64>,
    /// `--record-after`, seconds.
    pub after: Option<u64>,
    /// `--record-on-open`.
    pub on_open: Option<bool>,
    /// `--record-max-files`.
    pub max_files: Option<usize>,
    /// `--record-max-mib`.
    pub max_mib: Option<u64>,
    /// `--record-ring-mib`.
    pub ring_mib: Option<usize>,
    /// `--record-ring-secs`.
    pub ring_secs: Option<u64>,
}

/// Reads and checks `path`.
///
/// # Errors
/// A message naming the file, what is wrong (with the line and the key for
/// a syntax error or a key it may not have) and where the keys are listed.
pub fn load(path: &Path) -> Result<ConfigFile, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("--config {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("--config {}: {e}", path.display()))
}

/// Parses a config file's text and checks its values.
///
/// # Errors
/// toml's message (line, column, the key) and a hint at the documentation.
pub fn parse(text: &str) -> Result<ConfigFile, String> {
    let file: ConfigFile = toml::from_str(text).map_err(|e| {
        format!(
            "{}\nthe keys a config file may have are listed in docs/live.md, \"Configuration file\"",
            e.to_string().trim_end()
        )
    })?;
    let r = &file.record;
    for (key, bad) in [
        ("record.max_files", r.max_files == Some(0)),
        ("record.max_mib", r.max_mib == Some(0)),
        ("record.ring_secs", r.ring_secs == Some(0)),
        (
            "record.ring_mib",
            r.ring_mib.is_some_and(|m| !(1..=65_536).contains(&m)),
        ),
    ] {
        if bad {
            return Err(format!(
                "{key} is out of range: use a positive number (ring_mib at most 65536)"
            ));
        }
    }
    Ok(file)
}

impl LiveArgs {
    /// Fills what the command line left out from `file` (options given on
    /// the command line win; a flag that is off takes the file's value).
    pub fn merge(&mut self, file: ConfigFile) {
        let ConfigFile {
            live,
            metrics,
            record,
        } = file;
        fn fill<T>(arg: &mut Option<T>, from: Option<T>) {
            if arg.is_none() {
                *arg = from;
            }
        }
        fill(&mut self.interface, live.interface);
        fill(&mut self.filter, live.filter);
        if self.ports.is_empty() {
            self.ports = live.ports.unwrap_or_default();
        }
        fill(&mut self.heartbeat, live.heartbeat);
        fill(&mut self.format, live.format);
        self.no_attribution |= live.attribution == Some(false);
        fill(&mut self.user, live.user);
        self.quiet |= live.quiet == Some(true);
        fill(&mut self.output, live.output);
        fill(&mut self.keep_ended, live.keep_ended);
        fill(&mut self.metrics, metrics.address);
        self.metrics_per_connection |= metrics.per_connection == Some(true);
        fill(&mut self.record_gaps, record.dir);
        fill(&mut self.record_before, record.before);
        fill(&mut self.record_after, record.after);
        self.record_on_open |= record.on_open == Some(true);
        fill(&mut self.record_max_files, record.max_files);
        fill(&mut self.record_max_mib, record.max_mib);
        fill(&mut self.record_ring_mib, record.ring_mib);
        fill(&mut self.record_ring_secs, record.ring_secs);
    }

    /// What clap cannot check before the file is merged: an interface, and
    /// options that need another one.
    ///
    /// # Errors
    /// A usage message.
    pub fn check(&self) -> Result<(), String> {
        if self.interface.is_none() {
            return Err(
                "give an interface: -i IF (or `interface` in the [live] table of --config FILE); \
                 `hbscope interfaces` lists them"
                    .into(),
            );
        }
        if self.metrics_per_connection && self.metrics.is_none() {
            return Err("--metrics-per-connection needs --metrics ADDR".into());
        }
        if self.record_gaps.is_none() {
            let given = [
                ("--record-before", self.record_before.is_some()),
                ("--record-after", self.record_after.is_some()),
                ("--record-on-open", self.record_on_open),
                ("--record-max-files", self.record_max_files.is_some()),
                ("--record-max-mib", self.record_max_mib.is_some()),
                ("--record-ring-mib", self.record_ring_mib.is_some()),
                ("--record-ring-secs", self.record_ring_secs.is_some()),
            ];
            if let Some((name, _)) = given.iter().find(|(_, on)| *on) {
                return Err(format!(
                    "{name} needs --record-gaps DIR (or `dir` in the [record] table of --config FILE)"
                ));
            }
        }
        if self.quiet && self.format == Some(LiveFormat::Tui) {
            return Err(
                "--quiet cannot be used with --format tui: the live screen is not quiet".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn args(line: &[&str]) -> LiveArgs {
        let mut argv = vec!["hbscope", "live"];
        argv.extend_from_slice(line);
        match Cli::try_parse_from(argv).unwrap().command {
            Command::Live(a) => a,
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_shipped_example_parses_and_sets_the_service() {
        let text = include_str!("../../packaging/hbscope.toml");
        let file = parse(text).unwrap();
        assert_eq!(file.live.interface.as_deref(), Some("any"));
        assert_eq!(
            file.metrics.address,
            Some("127.0.0.1:19672".parse().unwrap())
        );
        let mut a = args(&["--record-gaps", "/var/lib/hbscope", "--quiet"]);
        a.merge(file);
        a.check().unwrap();
        assert_eq!(a.interface.as_deref(), Some("any"));
        assert!(a.quiet);
    }

    #[test]
    fn flags_win_over_the_file() {
        let file = parse(
            r#"
            [live]
            interface = "eth9"
            ports = [5673]
            heartbeat = 30
            format = "json"
            attribution = false
            [metrics]
            address = "127.0.0.1:19672"
            [record]
            dir = "/srv/rec"
            before = 5
            max_files = 7
            "#,
        )
        .unwrap();
        let mut a = args(&[
            "-i",
            "lo",
            "--port",
            "5674",
            "--metrics",
            "[::1]:9",
            "--record-before",
            "1",
        ]);
        a.merge(file);
        assert_eq!(a.interface.as_deref(), Some("lo"));
        assert_eq!(a.ports, [5674]);
        assert_eq!(a.metrics, Some("[::1]:9".parse().unwrap()));
        assert_eq!(a.record_before, Some(1));
        // Left out on the command line: from the file.
        assert_eq!(a.heartbeat, Some(30));
        assert_eq!(a.format, Some(LiveFormat::Json));
        assert!(a.no_attribution);
        assert_eq!(a.record_gaps, Some(PathBuf::from("/srv/rec")));
        assert_eq!(a.record_max_files, Some(7));
        a.check().unwrap();
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e = parse("[live]\ninterfac = \"lo\"\n").unwrap_err();
        assert!(e.contains("unknown field `interfac`"), "{e}");
        assert!(e.contains("line 2"), "{e}");
        assert!(e.contains("docs/live.md"), "{e}");
        let e = parse("[metric]\naddress = \"127.0.0.1:1\"\n").unwrap_err();
        assert!(e.contains("unknown field `metric`"), "{e}");
        let e = parse("[metrics]\naddress = \"localhost\"\n").unwrap_err();
        assert!(e.contains("address"), "{e}");
        let e = parse("[live]\nformat = \"xml\"\n").unwrap_err();
        assert!(e.contains("\"xml\" is not one of"), "{e}");
        let e = parse("[record]\nmax_files = 0\n").unwrap_err();
        assert!(e.contains("record.max_files is out of range"), "{e}");
        let e = parse("[live]\nheartbeat = -1\n").unwrap_err();
        assert!(e.contains("heartbeat"), "{e}");
        assert_eq!(parse("").unwrap(), ConfigFile::default());
    }

    #[test]
    fn check_needs_an_interface_and_the_options_options_need() {
        let e = args(&[]).check().unwrap_err();
        assert!(e.contains("give an interface"), "{e}");
        let e = args(&["-i", "lo", "--record-after", "3"])
            .check()
            .unwrap_err();
        assert!(e.contains("--record-after needs --record-gaps"), "{e}");
        let e = args(&["-i", "lo", "--metrics-per-connection"])
            .check()
            .unwrap_err();
        assert!(e.contains("needs --metrics"), "{e}");
        let e = args(&["-i", "lo", "-q", "--format", "tui"])
            .check()
            .unwrap_err();
        assert!(e.contains("--quiet"), "{e}");
        // The record options with the directory from a file.
        let mut a = args(&["-i", "lo", "--record-after", "3"]);
        a.merge(parse("[record]\ndir = \"/tmp/x\"\n").unwrap());
        a.check().unwrap();
    }
}
