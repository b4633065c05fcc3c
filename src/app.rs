//! Running a whole input through the engine: the code shared by the CLI,
//! the tests and (later) the TUI's worker thread.

use std::path::Path;

use crate::capture::{CaptureError, FileSource, LinkType, PacketRecord};
use crate::decode::is_supported;
use crate::engine::{Engine, EngineConfig};
use crate::report::{self, Report};

/// Why an input could not be analysed at all (exit code 2).
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The capture could not be opened.
    #[error("{0}")]
    Open(#[from] CaptureError),
    /// The link type is not one hbscope decodes.
    #[error(
        "{input}: link-layer type {link} is not supported; hbscope reads Ethernet (with VLAN tags), Linux cooked \
         v1/v2 (`tcpdump -i any`), BSD loopback and raw IP captures"
    )]
    UnsupportedLink {
        /// The input.
        input: String,
        /// Its link type.
        link: String,
    },
}

/// Progress while reading (for a UI).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Packets read.
    pub packets: u64,
    /// Bytes of the file consumed.
    pub bytes: u64,
    /// File size when known (not for stdin).
    pub total: Option<u64>,
}

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

/// Opens the capture at `path` and checks its link type without reading
/// packets (to report an unusable input before a UI starts).
///
/// # Errors
/// [`AppError`] when the input cannot be opened or its link type is unsupported.
pub fn check_input(path: &Path) -> Result<(), AppError> {
    let src = FileSource::open(path)?;
    let link = src.link_type();
    if is_supported(link) {
        Ok(())
    } else {
        Err(AppError::UnsupportedLink {
            input: path.display().to_string(),
            link: link.to_string(),
        })
    }
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

/// As [`replay`], and also hands every packet record (with the link type) to
/// `observe` after the engine processed it; two-ended replay
/// ([`crate::merge`]) keeps its segment log this way.
///
/// # Errors
/// [`AppError`] when the input cannot be opened or its link type is unsupported.
pub fn replay_observed(
    path: &Path,
    config: EngineConfig,
    progress: &mut dyn FnMut(Progress),
    observe: &mut dyn FnMut(LinkType, &PacketRecord<'_>),
) -> Result<Replay, AppError> {
    let mut src = FileSource::open(path)?;
    let source = path.display().to_string();
    let link = src.link_type();
    if !is_supported(link) {
        return Err(AppError::UnsupportedLink {
            input: source,
            link: link.to_string(),
        });
    }
    let total = src.file_size();
    let mut engine = Engine::new(config, link);
    let mut complete = true;
    let mut n: u64 = 0;
    loop {
        match src.next_packet() {
            Ok(Some(rec)) => {
                engine.process(&rec);
                observe(link, &rec);
                n += 1;
                if n.is_multiple_of(65_536) {
                    progress(Progress {
                        packets: n,
                        bytes: src.bytes_consumed(),
                        total,
                    });
                }
            }
            Ok(None) => break,
            Err(e) => {
                complete = false;
                engine.warn(e.warning_code(), e.to_string());
                break;
            }
        }
    }
    progress(Progress {
        packets: n,
        bytes: src.bytes_consumed(),
        total,
    });
    engine.finish();
    Ok(Replay {
        engine,
        source,
        complete,
    })
}
