//! The `hbscope` command: parse the CLI, run the app, map errors to exit codes
//! (0 analysed, 1 the report could not be written or the TUI failed, 2
//! unusable input, a usage error or no capture privileges, 3 `--fail-on-gap`
//! and a gap was flagged, 4 a live capture was incomplete; the table is
//! [`cli::EXIT_CODES`]).

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use hbscope::engine::EngineConfig;
use hbscope::os::outfile::AtomicFile;
use hbscope::report::{self, WriteError, Zone};
use hbscope::run::live;
use hbscope::run::recorder::RecordOptions;
use hbscope::run::replay;

mod cli;

use cli::{Command, Format, LiveArgs, LiveFormat, ReplayArgs, SynthArgs};

fn main() -> ExitCode {
    let cli = cli::parse();
    match cli.command {
        Command::Replay(args) => replay(&args),
        Command::Live(mut args) => {
            if let Some(path) = args.config.clone() {
                match cli::config::load(&path) {
                    Ok(file) => args.merge(file),
                    Err(e) => {
                        eprintln!("hbscope: {e}");
                        return ExitCode::from(2);
                    }
                }
            }
            if let Err(e) = args.check() {
                eprintln!("hbscope: {e}");
                return ExitCode::from(2);
            }
            live(&args)
        }
        Command::Interfaces => interfaces(),
        Command::Synth(args) => synth(&args),
        Command::Completions(args) => {
            cli::generate::print(Ok(cli::generate::completions(args.shell)))
        }
        Command::Man => cli::generate::print(cli::generate::man()),
    }
}

fn interfaces() -> ExitCode {
    match hbscope::capture::live::list_interfaces() {
        Ok(list) => {
            for d in list {
                let mut flags = Vec::new();
                for (on, name) in [
                    (d.up, "up"),
                    (d.running, "running"),
                    (d.loopback, "loopback"),
                ] {
                    if on {
                        flags.push(name);
                    }
                }
                println!(
                    "{:<16} [{}] {} {}",
                    d.name,
                    flags.join(","),
                    d.addresses.join(" "),
                    d.description.unwrap_or_default()
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hbscope: {e}");
            ExitCode::from(2)
        }
    }
}

/// `hbscope live`, with the config file merged and checked.
fn live(args: &LiveArgs) -> ExitCode {
    let format = args.format.unwrap_or_else(|| {
        if std::io::stdout().is_terminal() && !args.quiet && args.output.is_none() {
            LiveFormat::Tui
        } else {
            LiveFormat::Text
        }
    });
    let mut config = EngineConfig::default();
    for p in &args.ports {
        if !config.amqp_ports.contains(p) {
            config.amqp_ports.push(*p);
        }
    }
    config.analysis.heartbeat_override = args.heartbeat;
    // A long capture folds connections that left the live table away.
    config.timeline_keep_ended = Some(hbscope::tui::live::KEEP_ENDED);
    config.max_ended = Some(args.keep_ended.unwrap_or(live::KEEP_ENDED_DEFAULT));
    // clap refused anything but a positive, finite number.
    let duration = args
        .duration
        .map(|d| std::time::Duration::from_secs_f64(d.min(1e9)));
    let opts = live::LiveOptions {
        capture: hbscope::capture::live::LiveConfig {
            interface: args.interface.clone().unwrap_or_default(),
            filter: live::bpf_filter(args.filter.as_deref(), &args.ports),
        },
        engine: config,
        duration,
        write: args.write.clone(),
        attribution: !args.no_attribution,
        py_spy: args.py_spy,
        user: args.user.clone(),
        force: args.force,
        metrics: args.metrics.map(|addr| hbscope::metrics::MetricsOptions {
            addr,
            per_connection: args.metrics_per_connection,
        }),
        record: args.record_gaps.as_ref().map(|dir| {
            let mut r = RecordOptions::new(dir.clone());
            if let Some(s) = args.record_before {
                r.before = std::time::Duration::from_secs(s);
            }
            if let Some(s) = args.record_after {
                r.after = std::time::Duration::from_secs(s);
            }
            r.on_open = args.record_on_open;
            if let Some(n) = args.record_max_files {
                r.max_files = n;
            }
            if let Some(m) = args.record_max_mib {
                r.max_bytes = m.saturating_mul(1 << 20);
            }
            if let Some(m) = args.record_ring_mib {
                r.ring_bytes = m << 20;
            }
            if let Some(s) = args.record_ring_secs {
                r.ring_age = std::time::Duration::from_secs(s);
            }
            r
        }),
    };
    let stop = match live::stop_on_signals() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("hbscope: {e}");
            return ExitCode::from(2);
        }
    };
    let quiet = args.quiet;
    let zone = if args.local_time {
        Zone::Local
    } else {
        Zone::Utc
    };
    let mut emit = |e: &live::LiveEvent| -> std::io::Result<()> {
        if quiet {
            return Ok(());
        }
        let line = match format {
            LiveFormat::Json => serde_json::to_string(e).map_err(std::io::Error::other)?,
            LiveFormat::Text | LiveFormat::Tui => live::event_text_in(e, zone),
        };
        let mut out = std::io::stdout().lock();
        writeln!(out, "{line}")?;
        out.flush()
    };
    let ran = if format == LiveFormat::Tui {
        live::run_tui(&opts, &stop, zone)
    } else {
        live::run(&opts, &stop, &mut emit)
    };
    let rep = match ran {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hbscope: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match format {
        LiveFormat::Text if args.quiet || args.output.is_some() => report::to_text_in(&rep, zone),
        LiveFormat::Text => format!("\n{}", report::to_text_in(&rep, zone)),
        LiveFormat::Tui => report::to_text_in(&rep, zone),
        LiveFormat::Json => match serde_json::to_string(&rep) {
            Ok(j) => format!("{j}\n"),
            Err(e) => {
                eprintln!("hbscope: could not write the JSON report: {e}");
                return ExitCode::from(1);
            }
        },
    };
    // --quiet: the report only goes to -o.
    if args.output.is_some() || !args.quiet {
        if let Err(e) = write_text(args.output.as_deref(), &text) {
            eprintln!("hbscope: the final report was not written: {e}");
            return ExitCode::from(1);
        }
    }
    if !rep.capture.complete {
        // The report was written, but from an incomplete capture (it failed
        // after it started, or the kernel dropped packets): a script must
        // not take it as a full record.
        return ExitCode::from(4);
    }
    ExitCode::SUCCESS
}

fn replay(args: &ReplayArgs) -> ExitCode {
    if let Some(out) = &args.output {
        let inputs = args
            .files
            .iter()
            .chain(&args.client_side)
            .chain(&args.broker_side);
        if let Some(input) = inputs.into_iter().find(|f| same_file(f, out)) {
            eprintln!(
                "hbscope: -o {} is the input capture {}: writing the report there would destroy it; choose another file",
                out.display(),
                input.display()
            );
            return ExitCode::from(2);
        }
    }
    let format = args.format.unwrap_or_else(|| {
        if args.output.is_none()
            && !args.summary
            && !args.files.is_empty()
            && std::io::stdout().is_terminal()
        {
            Format::Tui
        } else {
            Format::Text
        }
    });
    let mut config = EngineConfig::default();
    for p in &args.ports {
        if !config.amqp_ports.contains(p) {
            config.amqp_ports.push(*p);
        }
    }
    for p in &args.tls_ports {
        if !config.tls_ports.contains(p) {
            config.tls_ports.push(*p);
        }
    }
    config.analysis.heartbeat_override = args.heartbeat;
    if format == Format::Html && !args.summary {
        // The HTML draws each connection's heartbeat and data marks.
        config.timeline_events = hbscope::analysis::timeline::Timeline::CAP;
    }
    if !args.client_side.is_empty() {
        return replay_two(args, &config, format);
    }
    let zone = if args.local_time {
        Zone::Local
    } else {
        Zone::Utc
    };
    // Read the log first: a wrong path is said before a long replay.
    let log = if args.broker_log.is_empty() {
        None
    } else {
        match hbscope::run::brokerlog::BrokerLog::read(&args.broker_log) {
            Ok(log) => Some(log),
            Err(e) => {
                eprintln!("hbscope: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let Some(file) = args.files.first() else {
        eprintln!("hbscope: give a capture file, or --client-side and --broker-side");
        return ExitCode::from(2);
    };
    if format == Format::Tui && !args.summary {
        config.timeline_events = hbscope::analysis::timeline::Timeline::CAP;
        if args.files.len() > 1 || args.filter.is_some() {
            // Several parts, or a filtered read: read whole first (with the
            // checks that they are parts of one capture), then shown.
            eprintln!(
                "hbscope: reading {} before opening the terminal UI ...",
                args.files
                    .iter()
                    .map(|f| f.display().to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let r = match hbscope::run::parts::replay_filtered(
                &args.files,
                config,
                args.filter.as_deref(),
                &mut |_, _| {},
            ) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("hbscope: {e}");
                    return ExitCode::from(2);
                }
            };
            let loaded = hbscope::tui::Loaded {
                engine: r.engine,
                source: r.source,
                complete: r.complete,
            };
            return match hbscope::tui::show(loaded, zone) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("hbscope: terminal UI failed: {e}");
                    ExitCode::from(1)
                }
            };
        }
        // Say what is wrong with the input before taking over the terminal
        // (stdin can only be read once, so the worker reports its errors).
        if file.as_os_str() != "-" {
            if let Err(e) = replay::check_input(file) {
                eprintln!("hbscope: {e}");
                return ExitCode::from(2);
            }
        }
        let cfg = hbscope::tui::WorkerConfig {
            path: file.clone(),
            engine: config,
            speed: args.speed,
        };
        return match hbscope::tui::replay(cfg, zone) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("hbscope: terminal UI failed: {e}");
                ExitCode::from(1)
            }
        };
    }
    let result = if args.files.len() > 1 || args.filter.is_some() {
        let filter = args.filter.as_deref();
        hbscope::run::parts::replay_filtered(&args.files, config, filter, &mut |_, _| {})
            .map_err(|e| e.to_string())
    } else {
        replay::replay_threads(file, config, args.threads, &mut |_| {}).map_err(|e| e.to_string())
    };
    let result = match result {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hbscope: {e}");
            return ExitCode::from(2);
        }
    };
    // Process notes a live capture stored in its pcapng (`live --write FILE.pcapng`).
    let notes = if args.files.len() == 1 {
        replay::stored_notes(file)
    } else {
        Vec::new()
    };
    if format == Format::Json && !args.summary && log.is_none() && notes.is_empty() {
        // Streamed: one connection entry at a time, the JSON text never held in memory.
        // Each writer type monomorphised: serde_json writes many tiny pieces.
        let (engine, source, complete) = (&result.engine, result.source.as_str(), result.complete);
        let threads = replay::resolve_threads(args.threads);
        let written = write_report(args.output.as_deref(), |w| {
            report::write_json_threads(engine, source, complete, threads, w).map(|_| ())
        });
        let gaps = result.engine.connections().map(|c| c.gaps().len()).sum();
        // The process ends next: freeing 100,000 connections one by one
        // would only delay it (~0.1 s).
        std::mem::forget(result);
        return finish(args, gaps, written);
    }
    let mut rep = result.report();
    if !notes.is_empty() {
        report::annotation::apply(&mut rep, &notes);
    }
    if let Some(log) = &log {
        let joined = hbscope::run::brokerlog::join(log, &result.engine);
        hbscope::run::brokerlog::attach(log, &joined, &args.broker_log, &mut rep);
    }
    drop(result);
    let text = match format {
        _ if args.summary => hbscope::report::html::to_summary(&rep),
        Format::Text | Format::Tui => report::to_text_in(&rep, zone),
        Format::Html => hbscope::report::html::to_html(&rep),
        Format::Markdown => hbscope::report::html::to_markdown(&rep),
        Format::Json => match report::to_json(&rep) {
            Ok(mut j) => {
                j.push('\n');
                j
            }
            Err(e) => {
                eprintln!("hbscope: could not write the JSON report: {e}");
                return ExitCode::from(1);
            }
        },
    };
    let written = write_text(args.output.as_deref(), &text);
    finish(args, rep.summary.gaps, written)
}

/// Writes a rendered report to `-o FILE`, else to stdout.
fn write_text(output: Option<&Path>, text: &str) -> Result<(), WriteError> {
    write_report(output, |w| w.write_all(text.as_bytes()))
}

/// Runs `write` on `-o FILE` (which appears only once complete: a failure
/// leaves no partial file) or on stdout, through a buffer.
fn write_report(
    output: Option<&Path>,
    write: impl FnOnce(&mut std::io::BufWriter<&mut dyn Write>) -> std::io::Result<()>,
) -> Result<(), WriteError> {
    fn through(
        w: &mut dyn Write,
        write: impl FnOnce(&mut std::io::BufWriter<&mut dyn Write>) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        let mut buf = std::io::BufWriter::new(w);
        write(&mut buf)?;
        buf.flush()
    }
    match output {
        Some(path) => {
            let failed = |source| WriteError::File {
                path: path.display().to_string(),
                source,
            };
            // Ctrl-C while the report is written: stop, and remove the
            // unfinished file rather than die leaving it (the handler is in
            // place before the file exists).
            let stop = hbscope::run::live::stop_on_signals();
            let mut file = AtomicFile::create(path).map_err(failed)?;
            if let Ok(stop) = stop {
                file = file.stop_on(stop);
            }
            through(&mut file, write).map_err(failed)?;
            file.commit().map_err(failed)
        }
        None => through(&mut std::io::stdout().lock(), write).map_err(WriteError::Stdout),
    }
}

/// `hbscope replay --client-side A... --broker-side B...`: text, JSON,
/// HTML, Markdown or `--summary` (the TUI is single-capture).
fn replay_two(args: &ReplayArgs, config: &EngineConfig, format: Format) -> ExitCode {
    if args.format == Some(Format::Tui) {
        eprintln!(
            "hbscope: --format tui is not supported with two-ended replay; use text, json, html or markdown"
        );
        return ExitCode::from(2);
    }
    let zone = if args.local_time {
        Zone::Local
    } else {
        Zone::Utc
    };
    let rep = match hbscope::run::twoend::replay_sides(&args.client_side, &args.broker_side, config)
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hbscope: {e}");
            return ExitCode::from(2);
        }
    };
    let text = match format {
        _ if args.summary => hbscope::report::html::to_summary(&rep),
        Format::Json => match report::to_json(&rep) {
            Ok(mut j) => {
                j.push('\n');
                j
            }
            Err(e) => {
                eprintln!("hbscope: could not write the JSON report: {e}");
                return ExitCode::from(1);
            }
        },
        Format::Html => hbscope::report::html::to_html(&rep),
        Format::Markdown => hbscope::report::html::to_markdown(&rep),
        Format::Text | Format::Tui => report::twoend_text_in(&rep, zone),
    };
    let written = write_text(args.output.as_deref(), &text);
    finish(
        args,
        rep.merge.as_ref().map_or(0, |m| m.summary.gaps),
        written,
    )
}

/// True when `a` and `b` name the same existing file (same device and inode:
/// also through links and different spellings of the path).
fn same_file(a: &std::path::Path, b: &std::path::Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

fn finish(args: &ReplayArgs, gaps: usize, written: Result<(), WriteError>) -> ExitCode {
    if let Err(e) = written {
        // A reader that went away (`| head`) still means the report was not
        // written in full: exit 1 says so to a script.
        if e.is_broken_pipe() {
            eprintln!("hbscope: the report was cut short: its reader closed the pipe");
        } else {
            eprintln!("hbscope: cannot write the report: {e}");
        }
        return ExitCode::from(1);
    }
    if args.fail_on_gap && gaps > 0 {
        return ExitCode::from(3);
    }
    ExitCode::SUCCESS
}

fn synth(a: &SynthArgs) -> ExitCode {
    let cfg = hbscope::synth::SynthConfig {
        seed: a.seed,
        connections: a.connections,
        duration_s: a.duration,
        heartbeat_s: a.heartbeat,
        busy_fraction: a.busy,
        msg_rate: a.rate,
        churn: a.churn,
        stalls_per_cause: a.stalls,
        mss: a.mss,
    };
    // Ctrl-C while writing: the temporary file goes (the handler is in place
    // before it exists).
    let stop = hbscope::run::live::stop_on_signals().ok();
    match hbscope::synth::write_files(&cfg, &a.output, stop) {
        Ok(s) => {
            eprintln!(
                "hbscope: wrote {} ({}, {}, {}, {})",
                a.output.display(),
                hbscope::model::count(s.packets, "packet", "packets"),
                hbscope::model::count(s.bytes, "byte", "bytes"),
                hbscope::model::count(s.connections_opened, "connection", "connections"),
                hbscope::model::count(s.gaps.len() as u64, "expected gap", "expected gaps")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hbscope: {e}");
            ExitCode::from(2)
        }
    }
}
