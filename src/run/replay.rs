//! Running a whole input through the engine: the code shared by the CLI
//! and the tests. Opening and reading are the driver's
//! ([`crate::driver::open_input`], [`crate::driver::drive`] unpaced), shared
//! with the TUI's worker thread.

use std::path::Path;

use crate::capture::{CaptureError, FileSource, LinkType, PacketRecord};
use crate::driver::{self, DriveOptions, Flow, Sink, StopReason};
pub use crate::driver::{open_input as open_supported, InputError as AppError, Progress};
use crate::engine::{Engine, EngineConfig};
use crate::report::{self, Report};

/// The result of a replay: the finished engine and how reading ended.
pub struct Replay {
    /// The engine, finished.
    pub engine: Engine,
    /// "-" or the path.
    pub source: String,
    /// False when the file was cut short or a read error stopped it.
    pub complete: bool,
}

impl Replay {
    /// The report.
    #[must_use]
    pub fn report(&self) -> Report {
        report::build(&self.engine, &self.source, self.complete)
    }
}

/// The process notes `live --write FILE.pcapng` stored in the file at `path`
/// (owners, gap process reports and diagnoses), for
/// [`report::annotation::apply`]; empty for stdin, classic pcap and files
/// hbscope did not write.
#[must_use]
pub fn stored_notes(path: &Path) -> Vec<String> {
    if path.as_os_str() == "-" {
        return Vec::new();
    }
    crate::capture::pcapng::custom_texts(path)
}

/// Opens the capture at `path` and checks its link type without reading
/// packets (to report an unusable input before a UI starts).
///
/// # Errors
/// [`AppError`] when the input cannot be opened or its link type is unsupported.
pub fn check_input(path: &Path) -> Result<(), AppError> {
    open_supported(path).map(|_| ())
}

/// Reads the whole capture at `path` ("-" = stdin) through the engine.
///
/// A file cut short mid-record is not an error: the packets before the cut
/// are analysed and a warning says what happened.
///
/// # Errors
/// [`AppError`] when the input cannot be opened or its link type is unsupported.
pub fn replay(
    path: &Path,
    config: EngineConfig,
    progress: &mut dyn FnMut(Progress),
) -> Result<Replay, AppError> {
    replay_observed(path, config, progress, &mut |_, _| {})
}

/// Files smaller than this are read by one thread unless more are asked for.
const SMALL_FILE: u64 = 8 << 20;

/// The thread count meant by `--threads N`: N, or for 0 one per core (up to 8).
#[must_use]
pub fn resolve_threads(threads: usize) -> usize {
    match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get().min(8)),
        n => n,
    }
}

/// As [`replay`], with the flows split between `threads` threads (0 = one
/// per core, up to 8, or one for a file under 8 MiB) when the input is a file: every thread reads the whole
/// file and analyses its share of the flows (see [`Engine::new_shard`]), and
/// the shards are combined at the end. The result is the same as one
/// thread's; stdin (`-`) is always read by one thread.
///
/// # Errors
/// [`AppError`] when the input cannot be opened or its link type is unsupported.
pub fn replay_threads(
    path: &Path,
    config: EngineConfig,
    threads: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<Replay, AppError> {
    // Starting a thread per core costs more than it saves on a small file
    // (~15% on a 1.5 MB capture): one thread unless asked for more.
    let small = std::fs::metadata(path).is_ok_and(|m| m.len() < SMALL_FILE);
    let threads = if threads == 0 && small {
        1
    } else {
        resolve_threads(threads)
    };
    if threads <= 1 || path == Path::new("-") {
        return replay(path, config, progress);
    }
    // Opened here first so that an unusable input fails before any thread starts.
    let (src, link) = open_supported(path)?;
    let results: Vec<Result<Replay, AppError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (1..threads)
            .map(|i| {
                let config = config.clone();
                scope.spawn(move || {
                    read_into(
                        path,
                        FileSource::open(path)?,
                        Engine::new_shard(config, link, i, threads),
                        &mut |_| {},
                        &mut |_, _| {},
                    )
                })
            })
            .collect();
        let mut out = vec![read_into(
            path,
            src,
            Engine::new_shard(config.clone(), link, 0, threads),
            progress,
            &mut |_, _| {},
        )];
        for h in handles {
            out.push(h.join().unwrap_or_else(|_| {
                Err(AppError::Open(CaptureError::Read {
                    detail: "a replay thread stopped unexpectedly".to_owned(),
                }))
            }));
        }
        out
    });
    let mut engines = Vec::with_capacity(results.len());
    let mut first: Option<(String, bool)> = None;
    for r in results {
        let r = r?;
        first.get_or_insert((r.source, r.complete));
        engines.push(r.engine);
    }
    let (source, complete) = first.unwrap_or_else(|| (path.display().to_string(), false));
    match Engine::merge_shards(engines) {
        Some(engine) => Ok(Replay {
            engine,
            source,
            complete,
        }),
        None => replay(path, config, progress),
    }
}

/// As [`replay`], and also hands every packet record (with the link type) to
/// `observe` after the engine processed it; two-ended replay
/// ([`crate::run::twoend`]) keeps its segment log this way.
///
/// # Errors
/// [`AppError`] when the input cannot be opened or its link type is unsupported.
pub fn replay_observed(
    path: &Path,
    config: EngineConfig,
    progress: &mut dyn FnMut(Progress),
    observe: &mut dyn FnMut(LinkType, &PacketRecord<'_>),
) -> Result<Replay, AppError> {
    // Opened once: stdin cannot be opened twice.
    let (src, link) = open_supported(path)?;
    read_into(path, src, Engine::new(config, link), progress, observe)
}

/// Packets handed to the engine at once (see [`Engine::process_batch`]).
const BATCH: usize = 1024;

/// Progress reports while reading: one every this many packets.
const PROGRESS_EVERY: u64 = 65_536;

/// Replay's [`Sink`]: progress now and then, every record to `observe`.
struct ReplaySink<'a> {
    progress: &'a mut dyn FnMut(Progress),
    observe: &'a mut dyn FnMut(LinkType, &PacketRecord<'_>),
    next_progress: u64,
}

impl Sink for ReplaySink<'_> {
    fn packets(&mut self, link: LinkType, recs: &[PacketRecord<'_>]) {
        for rec in recs {
            (self.observe)(link, rec);
        }
    }

    fn after_packets(&mut self, _: &Engine, _: crate::model::Timestamp, p: &Progress) -> Flow {
        if p.packets >= self.next_progress {
            self.next_progress = p.packets + PROGRESS_EVERY;
            (self.progress)(*p);
        }
        Flow::Continue
    }
}

/// Reads every packet of `path` into `engine`, then finishes it.
fn read_into(
    path: &Path,
    mut src: FileSource,
    mut engine: Engine,
    progress: &mut dyn FnMut(Progress),
    observe: &mut dyn FnMut(LinkType, &PacketRecord<'_>),
) -> Result<Replay, AppError> {
    let source = path.display().to_string();
    let mut sink = ReplaySink {
        progress,
        observe,
        next_progress: PROGRESS_EVERY,
    };
    let driven = driver::drive(
        &mut src,
        &mut engine,
        &mut sink,
        DriveOptions {
            batch: BATCH,
            paced: None,
            stop: None,
        },
    );
    // A read error is a warning in the report (recorded by the driver).
    let complete = !matches!(driven.reason, StopReason::Error(_));
    (sink.progress)(driven.progress);
    engine.finish();
    Ok(Replay {
        engine,
        source,
        complete,
    })
}
