//! The JSON rendering: pretty, streamed one connection entry at a time, and
//! written by several threads with the same bytes.

use super::*;

/// Writes the JSON report of `engine` to `w` one connection entry at a time:
/// the same bytes as [`write_json`] of [`build`], without ever holding all
/// the entries (about 1.5 KB each) next to the engine. Returns the summary.
///
/// # Errors
/// Any write error (as [`write_json_threads`]).
pub fn write_json_streamed<W: std::io::Write>(
    engine: &Engine,
    source: &str,
    complete: bool,
    w: W,
) -> std::io::Result<Summary> {
    write_json_threads(engine, source, complete, 1, w)
}

/// Connection entries written per block in [`write_json_threads`].
const ENTRY_BLOCK: usize = 512;

/// As [`write_json_streamed`], with the connection entries turned into text
/// by `threads` threads (each a block of entries at a time; at most two
/// blocks per thread wait to be written, so memory stays bounded) while
/// this one writes them in order: the same bytes for any `threads`.
///
/// # Errors
/// Any write error, as the writer gave it (a broken pipe stays
/// [`std::io::ErrorKind::BrokenPipe`]); a serialisation error as
/// [`std::io::ErrorKind::InvalidData`].
pub fn write_json_threads<W: std::io::Write>(
    engine: &Engine,
    source: &str,
    complete: bool,
    threads: usize,
    w: W,
) -> std::io::Result<Summary> {
    // serde_json hands an io error back as it was, anything else as InvalidData.
    json_threads(engine, source, complete, threads, w).map_err(std::io::Error::from)
}

fn json_threads<W: std::io::Write>(
    engine: &Engine,
    source: &str,
    complete: bool,
    threads: usize,
    mut w: W,
) -> Result<Summary, serde_json::Error> {
    let conns = sorted_connections(engine);
    let head = head(engine, source, complete, &conns);
    // The report without entries, cut where they go: between the brackets
    // of the top-level `"connections": []` (its key is unescaped only there).
    let outline = serde_json::to_string_pretty(&head)?;
    const EMPTY: &str = "\n  \"connections\": []";
    let cut = outline
        .find(EMPTY)
        .map(|at| at + EMPTY.len() - 1)
        .ok_or_else(|| {
            serde_json::Error::io(std::io::Error::other("report outline without connections"))
        })?;
    let (before, after) = outline.split_at(cut);
    let io = serde_json::Error::io;
    w.write_all(before.as_bytes()).map_err(io)?;
    let blocks: Vec<&[&Connection]> = conns.chunks(ENTRY_BLOCK).collect();
    let threads = threads.clamp(1, 8).min(blocks.len().max(1));
    if threads <= 1 {
        let mut buf = Vec::new();
        for (b, block) in blocks.iter().enumerate() {
            buf.clear();
            entries_text(block, b * ENTRY_BLOCK, &mut buf)?;
            w.write_all(&buf).map_err(io)?;
        }
    } else {
        std::thread::scope(|scope| -> Result<(), serde_json::Error> {
            let blocks = &blocks;
            let receivers: Vec<_> = (0..threads)
                .map(|t| {
                    let (tx, rx) = std::sync::mpsc::sync_channel(2);
                    scope.spawn(move || {
                        for b in (t..blocks.len()).step_by(threads) {
                            let mut buf = Vec::new();
                            let r =
                                entries_text(blocks[b], b * ENTRY_BLOCK, &mut buf).map(|()| buf);
                            let failed = r.is_err();
                            if tx.send(r).is_err() || failed {
                                return;
                            }
                        }
                    });
                    rx
                })
                .collect();
            for b in 0..blocks.len() {
                let Some(rx) = receivers.get(b % threads) else {
                    break;
                };
                let buf = rx
                    .recv()
                    .map_err(|_| io(std::io::Error::other("a report thread stopped")))??;
                w.write_all(&buf).map_err(io)?;
            }
            Ok(())
        })?;
    }
    if !conns.is_empty() {
        w.write_all(b"\n  ").map_err(io)?;
    }
    w.write_all(after.as_bytes()).map_err(io)?;
    w.write_all(b"\n").map_err(io)?;
    w.flush().map_err(io)?;
    Ok(head.summary)
}

/// Appends the entries of `conns` (numbered from `skip + 1`) as they appear
/// inside the report's `connections` array, each with the separator before it.
fn entries_text(
    conns: &[&Connection],
    skip: usize,
    buf: &mut Vec<u8>,
) -> Result<(), serde_json::Error> {
    for (k, conn) in conns.iter().enumerate() {
        let id = skip + k + 1;
        buf.extend_from_slice(if id == 1 { b"\n    " } else { b",\n    " });
        let mut ser = serde_json::Serializer::with_formatter(&mut *buf, Nested::at(2));
        connection_report(id, conn).serialize(&mut ser)?;
    }
    Ok(())
}

/// serde_json's pretty printing (two-space indent) of a value that sits
/// `level` levels deep in a pretty-printed document: the same bytes as the
/// value has there.
struct Nested {
    level: usize,
    has_value: bool,
}

impl Nested {
    fn at(level: usize) -> Self {
        Nested {
            level,
            has_value: false,
        }
    }

    fn newline_indent<W: ?Sized + std::io::Write>(&self, w: &mut W) -> std::io::Result<()> {
        // One write for the usual depths (an entry is at most ~8 deep).
        const LINE: &[u8; 33] = b"\n                                ";
        match LINE.get(..1 + 2 * self.level) {
            Some(s) => w.write_all(s),
            None => {
                w.write_all(b"\n")?;
                for _ in 0..self.level {
                    w.write_all(b"  ")?;
                }
                Ok(())
            }
        }
    }
}

impl Nested {
    /// `[` or `{`: one level deeper, nothing in it yet.
    fn open<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level += 1;
        self.has_value = false;
        w.write_all(bracket)
    }

    /// `]` or `}`, on a line of its own when something was in it.
    fn close<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        bracket: &[u8],
    ) -> std::io::Result<()> {
        self.level = self.level.saturating_sub(1);
        if self.has_value {
            self.newline_indent(w)?;
        }
        w.write_all(bracket)
    }

    /// Before an array value or an object key: a comma after the first, a new line.
    fn item<W: ?Sized + std::io::Write>(&mut self, w: &mut W, first: bool) -> std::io::Result<()> {
        if !first {
            w.write_all(b",")?;
        }
        self.newline_indent(w)
    }
}

impl serde_json::ser::Formatter for Nested {
    fn begin_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"[")
    }

    fn end_array<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"]")
    }

    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn end_array_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }

    fn begin_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.open(w, b"{")
    }

    fn end_object<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        self.close(w, b"}")
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        w: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        self.item(w, first)
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(&mut self, w: &mut W) -> std::io::Result<()> {
        w.write_all(b": ")
    }

    fn end_object_value<W: ?Sized + std::io::Write>(&mut self, _w: &mut W) -> std::io::Result<()> {
        self.has_value = true;
        Ok(())
    }
}

/// Renders the report as pretty JSON.
///
/// # Errors
/// Only if serialisation fails, which the report's types do not allow in practice.
pub fn to_json(report: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}

/// Writes the JSON report (as [`to_json`], plus a final newline) straight to
/// `w`, without building the text in memory (20 MB for 10,000 connections).
///
/// # Errors
/// Any write error, as the writer gave it; a serialisation error as
/// [`std::io::ErrorKind::InvalidData`].
pub fn write_json<W: std::io::Write>(report: &Report, mut w: W) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut w, report)?;
    w.write_all(b"\n")?;
    w.flush()
}
