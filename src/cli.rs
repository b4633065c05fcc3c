//! The command line: clap types, with the doc comments as help text.

use std::path::PathBuf;

use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

pub mod config;
pub mod generate;

/// Reads AMQP 0-9-1 traffic, rebuilds each connection's heartbeat timeline,
/// flags every silence longer than the negotiated heartbeat and says why it
/// happened: client stall, broker stall, network/host unreachable or capture loss.
#[derive(Debug, Parser)]
#[command(name = "hbscope", version, about, long_about = None, after_help = EXIT_CODES)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// The exit codes, as `--help` and the man page list them (README and
/// docs/architecture.md say the same).
pub const EXIT_CODES: &str = "\
Exit codes:
  0  the input was analysed (also when it was cut short or had no AMQP at all)
  1  the report could not be written in full (-o into a missing directory, a full disk, a
     reader that closed the pipe), or the terminal UI failed
  2  unusable input (missing, empty, not a capture, unsupported link type, unreadable broker
     log, parts of different captures), a usage error, or no capture privileges
  3  replay --fail-on-gap and at least one gap was flagged (the report is still written)
  4  live: the report was written, but the capture was incomplete (it failed after it
     started, or the kernel dropped packets)";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Analyse a pcap or pcapng file ("-" reads stdin, e.g. `tcpdump -w - | hbscope replay -`), several parts of one capture, or two ends (--client-side/--broker-side).
    Replay(ReplayArgs),
    /// Capture live from an interface: the live screen on a terminal, else a stream of events;
    /// stopping prints the final report (docs/live.md).
    Live(LiveArgs),
    /// List the interfaces hbscope can capture on.
    Interfaces,
    /// Write a deterministic synthetic capture and its expected verdicts (FILE.expect.json).
    Synth(SynthArgs),
    /// Print a shell completion script to stdout, e.g. `hbscope completions bash > /etc/bash_completion.d/hbscope`.
    Completions(CompletionsArgs),
    /// Print the manual page (roff) to stdout, e.g. `hbscope man | man -l -`.
    Man,
}

#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum, value_name = "SHELL")]
    pub shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
pub struct LiveArgs {
    /// Read settings from this TOML file (e.g. /etc/hbscope/hbscope.toml, what the service
    /// uses); options given here win over it. See docs/live.md, "Configuration file".
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Interface to capture on ("any" for all interfaces); required, here or in --config.
    #[arg(long, short = 'i', value_name = "IF")]
    pub interface: Option<String>,
    /// Output format [default: tui when stdout is a terminal, else text]; the final report is
    /// printed when the capture stops (after the TUI restores the terminal).
    #[arg(long, value_enum)]
    pub format: Option<LiveFormat>,
    /// Also capture and treat this TCP port as AMQP (repeatable).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// BPF filter replacing the default `tcp port 5672 or tcp port 5671` (and --port additions).
    #[arg(long, value_name = "BPF")]
    pub filter: Option<String>,
    /// Heartbeat timeout in seconds for connections whose negotiation was not seen.
    #[arg(long, value_name = "SECS")]
    pub heartbeat: Option<u16>,
    /// Stop after this many seconds and print the report.
    #[arg(long, value_name = "SECS", value_parser = positive_secs, allow_negative_numbers = true)]
    pub duration: Option<f64>,
    /// Save the captured packets to this new pcap file (created 0600: it holds credentials; never
    /// through a symbolic link; an existing file is refused unless --force).
    #[arg(long, short = 'w', value_name = "FILE")]
    pub write: Option<PathBuf>,
    /// Let --write replace an existing regular file (never a symbolic link).
    #[arg(long, requires = "write")]
    pub force: bool,
    /// Do not look up local processes in /proc.
    #[arg(long)]
    pub no_attribution: bool,
    /// When a Python process's gap opens, attach `py-spy dump --pid PID` (all thread stacks;
    /// at most 5 s, 16 KiB) to the gap. Needs py-spy on PATH (`pip install py-spy`) and root or
    /// CAP_SYS_PTRACE.
    #[arg(long, conflicts_with = "no_attribution")]
    pub py_spy: bool,
    /// After opening the capture (and the --write file), switch to this user, like `tcpdump -Z`
    /// (run as root; process attribution then sees only that user's processes).
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Serve Prometheus metrics on this address, e.g. 127.0.0.1:19672 (port 0 picks one; the
    /// `metrics-listening` event says which). See docs/metrics.md.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Add a `connection="client->broker"` label to the per-connection gauges (more series).
    #[arg(long)]
    pub metrics_per_connection: bool,
    /// Flight recorder: keep recent packets in memory and write one pcapng file per gap into DIR
    /// (the connection's packets around the silence; 0600; a `gap-recorded` event names it).
    /// See docs/live.md.
    #[arg(long, value_name = "DIR")]
    pub record_gaps: Option<PathBuf>,
    /// Seconds of packets kept before the silence starts [default: 30].
    #[arg(long, value_name = "SECS")]
    pub record_before: Option<u64>,
    /// Seconds of packets kept after the silence ends [default: 10].
    #[arg(long, value_name = "SECS")]
    pub record_after: Option<u64>,
    /// Also write a file when a gap opens (the silence still going on), beside the one written
    /// after it closes.
    #[arg(long)]
    pub record_on_open: bool,
    /// Most recordings kept in DIR; the oldest are deleted [default: 200].
    #[arg(long, value_name = "N", 
          value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
    pub record_max_files: Option<usize>,
    /// Most MiB of recordings kept in DIR; the oldest are deleted [default: 1024].
    #[arg(long, value_name = "MIB", 
          value_parser = clap::value_parser!(u64).range(1..))]
    pub record_max_mib: Option<u64>,
    /// Memory for the recorder's packet ring, in MiB [default: 64].
    #[arg(long, value_name = "MIB", 
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=65_536))]
    pub record_ring_mib: Option<usize>,
    /// Packets older than this are dropped from the ring unless a gap is being recorded on their
    /// connection [default: 600].
    #[arg(long, value_name = "SECS", 
          value_parser = clap::value_parser!(u64).range(1..))]
    pub record_ring_secs: Option<u64>,
    /// No event stream on stdout (for services: the metrics, recordings and -o report remain).
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Write the final report to this file instead of stdout (JSON with --format json, else
    /// text; it appears only once complete).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Show clock times in the local time zone (TZ, else /etc/localtime) instead of UTC, in the
    /// text event lines, the live screen and the final text report (JSON stays UTC).
    #[arg(long)]
    pub local_time: bool,
    /// Ended connections kept in full for the final report once they have left the live table
    /// (5 minutes after their last packet); older ones, those without gaps first, are counted by
    /// client host and broker instead, so memory stays bounded on long runs [default: 5000].
    #[arg(long, value_name = "N",
          value_parser = RangedU64ValueParser::<usize>::new().range(0..=10_000_000))]
    pub keep_ended: Option<usize>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable report.
    Text,
    /// The JSON report (schema in docs/report-schema.md).
    Json,
    /// One self-contained HTML file (inline SVG timelines; no network fetches).
    Html,
    /// Markdown, for pasting into a ticket.
    Markdown,
    /// The interactive terminal UI (the default when stdout is a terminal).
    Tui,
}

/// Output of `hbscope live`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LiveFormat {
    /// Events as lines, then the text report.
    Text,
    /// One JSON object per line per event, then the final report.
    Json,
    /// The live terminal UI (the default when stdout is a terminal); q stops, then the text report.
    Tui,
}

impl<'de> serde::Deserialize<'de> for LiveFormat {
    /// As on the command line: "text", "json" or "tui".
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        LiveFormat::from_str(&s, false).map_err(|_| {
            serde::de::Error::custom(format!(
                "format = \"{s}\" is not one of \"text\", \"json\", \"tui\""
            ))
        })
    }
}

#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Capture file (pcap or pcapng), or "-" for stdin. Several files = parts of ONE capture (rotated
    /// or split files, pcap and pcapng mixed), read as one in timestamp order with copies dropped.
    #[arg(required_unless_present = "client_side", num_args = 1.., value_name = "FILE",
          conflicts_with_all = ["client_side", "broker_side"])]
    pub files: Vec<PathBuf>,
    /// Two-ended replay: the capture taken at the client (one or more parts), merged with
    /// --broker-side into one verdict per silence.
    #[arg(long, num_args = 1.., value_name = "FILE", requires = "broker_side")]
    pub client_side: Vec<PathBuf>,
    /// Two-ended replay: the capture taken at the broker (one or more parts).
    #[arg(long, num_args = 1.., value_name = "FILE", requires = "client_side")]
    pub broker_side: Vec<PathBuf>,
    /// Analyse only the packets that match this capture filter (tcpdump's expression syntax,
    /// e.g. 'host 10.0.0.5 and port 5672'), applied with libpcap's offline filter.
    #[arg(long, short = 'f', value_name = "EXPR", conflicts_with_all = ["client_side", "broker_side"])]
    pub filter: Option<String>,
    /// RabbitMQ log file(s) (plain text or JSON logging): their connection lines are joined to
    /// the capture's connections by address:port and shown with each gap (every format).
    #[arg(long, num_args = 1.., value_name = "FILE", conflicts_with_all = ["client_side", "broker_side"])]
    pub broker_log: Vec<PathBuf>,
    /// Show clock times in the local time zone (TZ, else /etc/localtime) instead of UTC, in the
    /// text report and the TUI (JSON stays UTC; HTML shows both).
    #[arg(long)]
    pub local_time: bool,
    /// Output format [default: tui when stdout is a terminal, else text; two-ended: text].
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Play the capture back at N x real time in the TUI (1, 10, 100); 0 reads as fast as possible.
    #[arg(long, value_name = "N", default_value_t = 0.0, value_parser = speed,
          allow_negative_numbers = true, conflicts_with_all = ["summary", "output"])]
    pub speed: f64,
    /// Also treat this TCP port as AMQP (repeatable; 5672 always is).
    #[arg(long = "port", value_name = "PORT")]
    pub ports: Vec<u16>,
    /// Also treat this TCP port as AMQP over TLS (repeatable; 5671 always is).
    #[arg(long = "tls-port", value_name = "PORT")]
    pub tls_ports: Vec<u16>,
    /// Heartbeat timeout in seconds for connections whose negotiation is not in the capture (wins over inference).
    #[arg(long, value_name = "SECS")]
    pub heartbeat: Option<u16>,
    /// Print only one line per flagged connection, grouped by client name, with counts per cause.
    #[arg(long)]
    pub summary: bool,
    /// Exit with code 3 when any gap was flagged (for scripts and CI).
    #[arg(long)]
    pub fail_on_gap: bool,
    /// Write the report to this file instead of stdout (it appears only once complete).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Threads that share the flows of one capture file for reports (0 = one per core, up to 8,
    /// and one for a file under 8 MiB; stdin, the TUI and two-file replay use one; at most 64).
    /// The report is the same for any number.
    #[arg(long, value_name = "N", default_value_t = 0,
          value_parser = RangedU64ValueParser::<usize>::new().range(0..=MAX_THREADS))]
    pub threads: usize,
}

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output pcap file; the expected verdicts go beside it (.expect.json).
    #[arg(long, short = 'o', value_name = "FILE")]
    pub output: PathBuf,
    /// PRNG seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent connections.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    pub connections: u32,
    /// Capture length in seconds.
    #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub duration: u32,
    /// Negotiated heartbeat timeout in seconds.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub heartbeat: u16,
    /// Fraction of busy (publisher/consumer) connections.
    #[arg(long, default_value_t = 0.3, value_parser = fraction, allow_negative_numbers = true)]
    pub busy: f64,
    /// Messages per second per busy connection.
    #[arg(long, default_value_t = 4.0, value_parser = rate, allow_negative_numbers = true)]
    pub rate: f64,
    /// Fraction of connections closed and replaced along the way.
    #[arg(long, default_value_t = 0.2, value_parser = fraction, allow_negative_numbers = true)]
    pub churn: f64,
    /// Injected silences per cause.
    #[arg(long, default_value_t = 2)]
    pub stalls: u32,
    /// TCP maximum segment size.
    #[arg(long, default_value_t = 1448, value_parser = clap::value_parser!(u32).range(64..=65495))]
    pub mss: u32,
}

/// Most threads `--threads` accepts (more only costs memory: the report is the same).
pub const MAX_THREADS: u64 = 64;

fn number(s: &str) -> Result<f64, String> {
    s.trim()
        .parse::<f64>()
        .map_err(|_| format!("{s} is not a number"))
}

/// `--speed`: 0 or a positive, finite factor.
fn speed(s: &str) -> Result<f64, String> {
    match number(s)? {
        v if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(
            "not a playback speed; use 0 (as fast as possible) or a positive factor such as 1, 10 or 100"
                .into(),
        ),
    }
}

/// `live --duration`: a positive, finite number of seconds.
fn positive_secs(s: &str) -> Result<f64, String> {
    match number(s)? {
        v if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err("give a positive number of seconds".into()),
    }
}

/// `synth --busy`, `--churn`: a fraction from 0 to 1.
fn fraction(s: &str) -> Result<f64, String> {
    match number(s)? {
        v if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err("give a fraction from 0 to 1".into()),
    }
}

/// `synth --rate`: messages per second, positive and at most 100,000.
fn rate(s: &str) -> Result<f64, String> {
    match number(s)? {
        v if v > 0.0 && v <= 100_000.0 => Ok(v),
        _ => Err("give a positive number of messages per second, at most 100000".into()),
    }
}

/// Parses the command line, exiting as clap does (code 2, one `error:` line)
/// on a bad value or on options that cannot go together.
#[must_use]
pub fn parse() -> Cli {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Replay(args), Some(("replay", m))) = (&cli.command, matches.subcommand()) {
        if let Some(conflict) = args.conflict(m) {
            let mut cmd = Cli::command();
            cmd.build();
            let err = match cmd.find_subcommand_mut("replay") {
                Some(sub) => sub.error(ErrorKind::ArgumentConflict, conflict),
                None => Cli::command().error(ErrorKind::ArgumentConflict, conflict),
            };
            err.exit();
        }
    }
    cli
}

impl ReplayArgs {
    /// Options that clap cannot refuse alone because the rule depends on a
    /// value (`--format`) or on the number of files.
    fn conflict(&self, m: &ArgMatches) -> Option<String> {
        let format = self
            .format
            .and_then(|f| f.to_possible_value())
            .map(|v| v.get_name().to_owned());
        let speed_given = m.value_source("speed") == Some(ValueSource::CommandLine);
        match self.format {
            Some(Format::Text | Format::Json | Format::Html | Format::Markdown) if speed_given => {
                return Some(format!(
                    "the argument '--speed <N>' cannot be used with '--format {}': --speed sets the TUI's playback speed",
                    format.unwrap_or_default()
                ));
            }
            Some(Format::Html | Format::Markdown | Format::Json | Format::Tui) if self.summary => {
                return Some(format!(
                    "the argument '--summary' cannot be used with '--format {}': the summary is text",
                    format.unwrap_or_default()
                ));
            }
            Some(Format::Tui) if self.output.is_some() => {
                return Some(
                    "the argument '--output <FILE>' cannot be used with '--format tui': the TUI is not written to a file"
                        .into(),
                );
            }
            _ => {}
        }
        if speed_given && !self.client_side.is_empty() {
            return Some(
                "the argument '--speed <N>' cannot be used with two-ended replay (--client-side/--broker-side): it has no TUI"
                    .into(),
            );
        }
        if speed_given && self.files.len() > 1 {
            return Some(
                "the argument '--speed <N>' cannot be used with several files: the TUI shows several parts once read whole; play one file at a time"
                    .into(),
            );
        }
        if speed_given && self.filter.is_some() {
            return Some(
                "the argument '--speed <N>' cannot be used with '--filter': the TUI shows a filtered read once it is whole"
                    .into(),
            );
        }
        None
    }
}
