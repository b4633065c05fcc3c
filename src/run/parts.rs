//! Several files of one capture point replayed as one capture
//! (`hbscope replay F1 F2 ... Fn`), and the checks that they really are
//! parts of one capture.
//!
//! The files are merged in timestamp order by [`MultiSource`] (copies in
//! overlapping parts dropped); each packet is decoded with its own part's
//! link type. After reading, the parts are compared:
//!
//! - two parts that overlap in time, share no packet, but carry the same
//!   TCP segments (same 4-tuple, sequence number and length) are two
//!   capture points of the same traffic: an error that names
//!   `--client-side`/`--broker-side`;
//! - two parts that overlap in time and share nothing else (two
//!   interfaces, or unrelated captures) are merged with a `parts-overlap`
//!   warning;
//! - a stretch without packets between one part's end and the next part's
//!   start, longer than both a second and twice the longest quiet stretch
//!   inside any part, gets a `parts-hole` warning (a missing part, or
//!   parts of different captures).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::capture::bpf::PacketFilter;
use crate::capture::multi::{MultiSource, PartInfo};
use crate::capture::{LinkType, PacketRecord};
use crate::decode::{decode, is_supported, Decoded};
use crate::engine::{Engine, EngineConfig};
use crate::model::{FlowKey, Timestamp};
use crate::run::replay::{self, AppError, Replay};

/// Warning code: parts overlap in time without sharing packets.
pub const PARTS_OVERLAP: &str = "parts-overlap";
/// Warning code: no packets between two parts for a suspiciously long time.
pub const PARTS_HOLE: &str = "parts-hole";

/// Segments remembered per part for the two-ends check.
const SIGNATURE_CAP: usize = 50_000;

/// Why several files could not be replayed as one capture.
#[derive(Debug, thiserror::Error)]
pub enum PartsError {
    /// A file could not be read.
    #[error(transparent)]
    App(#[from] AppError),
    /// The `-f` expression does not compile.
    #[error(transparent)]
    Filter(#[from] crate::capture::bpf::FilterError),
    /// The same file twice.
    #[error("{0} was given twice; give each part of the capture once")]
    SameFile(String),
    /// Two files hold the same traffic seen at two points.
    #[error(
        "{a} and {b} are not parts of one capture: they hold the same TCP segments ({common} seen in both) \
         stamped at different times, as captures of the same traffic at two points do. For a client-side and a \
         broker-side capture use `hbscope replay --client-side {a} --broker-side {b}` (swap them if {b} is the \
         client's); several parts per side go after each flag"
    )]
    TwoEnds {
        /// First file.
        a: String,
        /// Second file.
        b: String,
        /// Segments found in both.
        common: usize,
    },
}

/// A segment's identity at any capture point: flow, direction, sequence
/// number and length.
type Signature = (FlowKey, u8, u32, u32);

/// Reads every file of `paths` as one capture through one engine (one
/// path: exactly as [`replay::replay_observed`]).
///
/// # Errors
/// [`PartsError`]: an unreadable file or unsupported link type, a file
/// given twice, or files that are two ends of the same traffic.
pub fn replay_parts(
    paths: &[PathBuf],
    config: EngineConfig,
    observe: &mut dyn FnMut(LinkType, &PacketRecord<'_>),
) -> Result<Replay, PartsError> {
    replay_filtered(paths, config, None, observe)
}

/// As [`replay_parts`], keeping only the packets that pass the capture
/// filter `filter` (tcpdump's expression syntax; `replay -f`), when given.
///
/// # Errors
/// As [`replay_parts`]; [`PartsError::Filter`] when the expression does
/// not compile.
pub fn replay_filtered(
    paths: &[PathBuf],
    config: EngineConfig,
    filter: Option<&str>,
    observe: &mut dyn FnMut(LinkType, &PacketRecord<'_>),
) -> Result<Replay, PartsError> {
    if let ([one], None) = (paths, filter) {
        return Ok(replay::replay_observed(one, config, &mut |_| {}, observe)?);
    }
    for (i, a) in paths.iter().enumerate() {
        for b in paths.iter().skip(i + 1) {
            if same_file(a, b) {
                return Err(PartsError::SameFile(b.display().to_string()));
            }
        }
    }
    let mut src = MultiSource::open(paths).map_err(AppError::from)?;
    for part in src.parts() {
        if !is_supported(part.link) {
            return Err(AppError::UnsupportedLink {
                input: part.path.display().to_string(),
                link: part.link.to_string(),
            }
            .into());
        }
    }
    let first_link = src.next_link();
    let mut filter = match filter {
        Some(expr) => Some(PacketFilter::new(expr, first_link)?),
        None => None,
    };
    let mut engine = Engine::new(config, first_link);
    let mut link = first_link;
    let n = paths.len();
    let mut signatures: Vec<HashMap<Signature, Timestamp>> = vec![HashMap::new(); n];
    let mut last_ts: Vec<Option<Timestamp>> = vec![None; n];
    let mut quiet_max: i64 = 0;
    while let Some((part, l, rec)) = src.next_packet() {
        if let Some(f) = filter.as_mut() {
            if !f.matches(l, &rec)? {
                continue;
            }
        }
        if l != link {
            link = l;
            engine.set_link(l);
        }
        engine.process(&rec);
        observe(l, &rec);
        if let Some(last) = last_ts.get_mut(part) {
            if let Some(prev) = *last {
                quiet_max = quiet_max.max(rec.ts.since(prev).0);
            }
            *last = Some(rec.ts);
        }
        if let Some(set) = signatures.get_mut(part) {
            if set.len() < SIGNATURE_CAP {
                if let Ok(Decoded::Tcp(seg)) = decode(l, &rec) {
                    if seg.payload_len > 0 {
                        let (key, dir) = FlowKey::from_packet(seg.src, seg.dst);
                        set.entry((key, dir.index() as u8, seg.seq, seg.payload_len))
                            .or_insert(rec.ts);
                    }
                }
            }
        }
    }
    let parts = src.parts();
    let mut complete = true;
    for p in parts {
        if let (Some(code), Some(msg)) = (p.error_code, &p.error) {
            complete = false;
            engine.warn_input(code, msg.clone());
        }
    }
    check_parts(parts, &signatures, quiet_max, &mut engine)?;
    engine.finish();
    let source = if let [one] = paths {
        one.display().to_string()
    } else {
        paths
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(" + ")
    };
    Ok(Replay {
        engine,
        source,
        complete,
    })
}

/// Two parts' time spans overlap.
fn overlap(a: &PartInfo, b: &PartInfo) -> bool {
    match (a.first, a.last, b.first, b.last) {
        (Some(af), Some(al), Some(bf), Some(bl)) => af <= bl && bf <= al,
        _ => false,
    }
}

/// The checks described in the module documentation.
fn check_parts(
    parts: &[PartInfo],
    signatures: &[HashMap<Signature, Timestamp>],
    quiet_max: i64,
    engine: &mut Engine,
) -> Result<(), PartsError> {
    for (i, a) in parts.iter().enumerate() {
        for (j, b) in parts.iter().enumerate().skip(i + 1) {
            if !overlap(a, b) || a.shared.get(j).copied().unwrap_or(0) > 0 {
                continue;
            }
            let (sa, sb) = (&signatures[i], &signatures[j]);
            // The same segment stamped at another time: another capture
            // point (at the same time: the same point, another encapsulation).
            let (mut common, mut same_time) = (0usize, 0usize);
            for (sig, ts) in sa {
                match sb.get(sig) {
                    Some(t) if t == ts => same_time += 1,
                    Some(_) => common += 1,
                    None => {}
                }
            }
            let smaller = sa.len().min(sb.len());
            if common > same_time && common * 2 >= smaller.min(20) {
                return Err(PartsError::TwoEnds {
                    a: a.path.display().to_string(),
                    b: b.path.display().to_string(),
                    common,
                });
            }
            engine.warn_input(
                PARTS_OVERLAP,
                format!(
                    "{} and {} overlap in time but share no packet: they are not parts of one capture \
                     (two interfaces, or different captures); they were merged as one capture point. \
                     If they are unrelated, replay them one at a time",
                    a.path.display(),
                    b.path.display()
                ),
            );
        }
    }
    // Holes between parts, in time order.
    let mut order: Vec<&PartInfo> = parts.iter().filter(|p| p.first.is_some()).collect();
    order.sort_by_key(|p| p.first);
    let mut reach: Option<(Timestamp, &Path)> = None;
    for p in order {
        let (Some(first), Some(last)) = (p.first, p.last) else {
            continue;
        };
        if let Some((end, from)) = reach {
            let hole = first.since(end).0;
            if hole > 1_000_000_000 && hole > quiet_max.saturating_mul(2) {
                engine.warn_input(
                    PARTS_HOLE,
                    format!(
                        "no packet for {:.1} s between the end of {} and the start of {}, longer than any quiet \
                         stretch inside a part: a part may be missing, or the files are different captures \
                         (then replay them one at a time). A silence across it is a hole in the capture",
                        f64::from(u32::try_from(hole / 1_000_000).unwrap_or(u32::MAX)) / 1000.0,
                        from.display(),
                        p.path.display()
                    ),
                );
            }
        }
        if reach.is_none_or(|(end, _)| last > end) {
            reach = Some((last, p.path.as_path()));
        }
    }
    Ok(())
}

/// True when `a` and `b` name the same existing file.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if a == b {
        return true;
    }
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.is_file() && x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}
