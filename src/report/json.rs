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
    let mut ser = Pretty::at(buf, 2);
    for (k, conn) in conns.iter().enumerate() {
        let id = skip + k + 1;
        ser.out
            .extend_from_slice(if id == 1 { b"\n    " } else { b",\n    " });
        connection_report(id, conn).serialize(&mut ser)?;
    }
    Ok(())
}

type Error = serde_json::Error;

/// serde_json's pretty printing (two-space indent) of a value that sits
/// `level` levels deep in a pretty-printed document, into a `Vec`: the same
/// bytes as `serde_json::to_writer_pretty` gives the value there. Its own
/// serializer rather than a serde_json `Formatter`: serde_json looks up
/// every byte of every key and string in its escape table, ~20% of the
/// report's instructions; here a string is checked in one pass the compiler
/// vectorises and copied whole (serde_json writes the rare one that needs
/// escapes). Numbers are written by serde_json's own formatter.
struct Pretty<'a> {
    out: &'a mut Vec<u8>,
    level: usize,
    /// Whether the innermost open array or object has an element yet.
    has_value: bool,
    /// For `collect_str`.
    scratch: String,
}

impl<'a> Pretty<'a> {
    fn at(out: &'a mut Vec<u8>, level: usize) -> Self {
        Pretty {
            out,
            level,
            has_value: false,
            scratch: String::new(),
        }
    }

    fn newline_indent(&mut self) {
        // One write for the usual depths (an entry is at most ~8 deep): the
        // whole line, cut to length, so that the copy has a constant size
        // (inlined, not a call to memcpy; ~850,000 of them for 10,000
        // connections).
        const LINE: &[u8; 33] = b"\n                                ";
        let n = 1 + 2 * self.level;
        if n <= LINE.len() {
            let at = self.out.len();
            self.out.extend_from_slice(LINE);
            self.out.truncate(at + n);
        } else {
            self.out.push(b'\n');
            for _ in 0..self.level {
                self.out.extend_from_slice(b"  ");
            }
        }
    }

    /// `[` or `{`: one level deeper, nothing in it yet.
    fn open(&mut self, bracket: u8) {
        self.level += 1;
        self.has_value = false;
        self.out.push(bracket);
    }

    /// `]` or `}`, on a line of its own when something was in it.
    fn close(&mut self, bracket: u8) {
        self.level = self.level.saturating_sub(1);
        if self.has_value {
            self.newline_indent();
        }
        self.out.push(bracket);
    }

    /// Before an array value or an object key: a comma after the first, a new line.
    fn item(&mut self, first: bool) {
        if !first {
            self.out.push(b',');
        }
        self.newline_indent();
    }

    /// A string, quoted and escaped as serde_json does.
    #[inline]
    fn string(&mut self, s: &str) -> Result<(), Error> {
        let b = s.as_bytes();
        if plain(b) {
            self.out.reserve(b.len() + 2);
            self.out.push(b'"');
            self.out.extend_from_slice(b);
            self.out.push(b'"');
            Ok(())
        } else {
            serde_json::to_writer(&mut *self.out, s)
        }
    }

    /// A struct's field name: the schema's own names, never escaped.
    fn field_name(&mut self, key: &'static str) {
        debug_assert!(plain(key.as_bytes()), "{key}");
        self.out.reserve(key.len() + 2);
        self.out.push(b'"');
        self.out.extend_from_slice(key.as_bytes());
        self.out.push(b'"');
    }

    fn number<F>(&mut self, write: F) -> Result<(), Error>
    where
        F: FnOnce(&mut serde_json::ser::CompactFormatter, &mut Vec<u8>) -> std::io::Result<()>,
    {
        write(&mut serde_json::ser::CompactFormatter, self.out).map_err(Error::io)
    }

    fn null(&mut self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
}

/// Whether `b` needs no escape in a JSON string (no control character,
/// quote or backslash): eight bytes at a time, with the classic tests for
/// "some byte is zero" (`(x - 0x01..) & !x & 0x80..`) and "some byte is
/// below n" (`(x - n * 0x01..) & !x & 0x80..`, exact for n <= 128).
#[inline]
fn plain(b: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let bad = |x: u64| {
        let control = x.wrapping_sub(ONES * 0x20) & !x;
        let q = x ^ (ONES * u64::from(b'"'));
        let quote = q.wrapping_sub(ONES) & !q;
        let s = x ^ (ONES * u64::from(b'\\'));
        let backslash = s.wrapping_sub(ONES) & !s;
        (control | quote | backslash) & HIGH
    };
    let mut chunks = b.chunks_exact(8);
    let mut found = 0;
    for c in &mut chunks {
        found |= <[u8; 8]>::try_from(c).map_or(HIGH, |w| bad(u64::from_le_bytes(w)));
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        // Padded with spaces, which need no escape.
        let mut last = [b' '; 8];
        if let Some(dst) = last.get_mut(..rest.len()) {
            dst.copy_from_slice(rest);
        }
        found |= bad(u64::from_le_bytes(last));
    }
    found == 0
}

use serde::ser::{
    Impossible, SerializeMap, SerializeSeq, SerializeStruct, SerializeStructVariant,
    SerializeTuple, SerializeTupleStruct, SerializeTupleVariant,
};
use serde_json::ser::Formatter as _;

/// An open array or object: whether it was empty from the start (closed
/// already, as serde_json does for a length of 0), and whether the next
/// element is the first.
struct Compound<'p, 'a> {
    ser: &'p mut Pretty<'a>,
    state: State,
}

#[derive(PartialEq)]
enum State {
    Empty,
    First,
    Rest,
}

impl<'p, 'a> Compound<'p, 'a> {
    fn open(ser: &'p mut Pretty<'a>, bracket: u8, len: Option<usize>) -> Self {
        ser.open(bracket);
        let state = if len == Some(0) {
            ser.close(if bracket == b'[' { b']' } else { b'}' });
            State::Empty
        } else {
            State::First
        };
        Compound { ser, state }
    }

    fn next(&mut self) {
        self.ser.item(self.state == State::First);
        self.state = State::Rest;
    }

    fn end(self, bracket: u8) {
        if self.state != State::Empty {
            self.ser.close(bracket);
        }
    }

    fn element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.next();
        value.serialize(&mut *self.ser)?;
        self.ser.has_value = true;
        Ok(())
    }

    fn key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        self.next();
        key.serialize(MapKey(&mut *self.ser))
    }

    fn value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.ser.out.extend_from_slice(b": ");
        value.serialize(&mut *self.ser)?;
        self.ser.has_value = true;
        Ok(())
    }

    /// The end of an enum variant's content inside `{"variant": ...}`.
    fn end_variant(self, bracket: u8) {
        let ser = &mut *self.ser;
        if self.state != State::Empty {
            ser.close(bracket);
        }
        ser.has_value = true;
        ser.close(b'}');
    }
}

impl<'p, 'a> serde::Serializer for &'p mut Pretty<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'p, 'a>;
    type SerializeTuple = Compound<'p, 'a>;
    type SerializeTupleStruct = Compound<'p, 'a>;
    type SerializeTupleVariant = Compound<'p, 'a>;
    type SerializeMap = Compound<'p, 'a>;
    type SerializeStruct = Compound<'p, 'a>;
    type SerializeStructVariant = Compound<'p, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.number(|f, w| f.write_i64(w, v))
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.number(|f, w| f.write_i128(w, v))
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.number(|f, w| f.write_u64(w, v))
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.number(|f, w| f.write_u128(w, v))
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        if v.is_finite() {
            self.number(|f, w| f.write_f32(w, v))
        } else {
            self.null()
        }
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        if v.is_finite() {
            self.number(|f, w| f.write_f64(w, v))
        } else {
            self.null()
        }
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.string(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // As serde_json's `write_byte_array`: an array of numbers.
        self.open(b'[');
        for (i, b) in v.iter().enumerate() {
            self.item(i == 0);
            self.serialize_u64(u64::from(*b))?;
            self.has_value = true;
        }
        self.close(b']');
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.null()
    }
    fn serialize_some<T: ?Sized + Serialize>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.null()
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        self.null()
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.string(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.open(b'{');
        self.item(true);
        self.string(variant)?;
        self.out.extend_from_slice(b": ");
        value.serialize(&mut *self)?;
        self.has_value = true;
        self.close(b'}');
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'p, 'a>, Error> {
        Ok(Compound::open(self, b'[', len))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'p, 'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Compound<'p, 'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'p, 'a>, Error> {
        self.open(b'{');
        self.item(true);
        self.string(variant)?;
        self.out.extend_from_slice(b": ");
        self.serialize_seq(Some(len))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'p, 'a>, Error> {
        Ok(Compound::open(self, b'{', len))
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Compound<'p, 'a>, Error> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'p, 'a>, Error> {
        self.open(b'{');
        self.item(true);
        self.string(variant)?;
        self.out.extend_from_slice(b": ");
        self.serialize_map(Some(len))
    }
    fn collect_str<T: ?Sized + std::fmt::Display>(self, value: &T) -> Result<(), Error> {
        use std::fmt::Write as _;
        let mut s = std::mem::take(&mut self.scratch);
        s.clear();
        let r = write!(s, "{value}");
        let out = match r {
            Ok(()) => self.string(&s),
            Err(_) => Err(serde::ser::Error::custom("a value's Display failed")),
        };
        self.scratch = s;
        out
    }
}

impl SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, b']');
        Ok(())
    }
}

impl SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, b']');
        Ok(())
    }
}

impl SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, b']');
        Ok(())
    }
}

impl SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.element(value)
    }
    fn end(self) -> Result<(), Error> {
        self.end_variant(b']');
        Ok(())
    }
}

impl SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: ?Sized + Serialize>(&mut self, key: &T) -> Result<(), Error> {
        self.key(key)
    }
    fn serialize_value<T: ?Sized + Serialize>(&mut self, value: &T) -> Result<(), Error> {
        self.value(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, b'}');
        Ok(())
    }
}

impl SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.next();
        self.ser.field_name(key);
        self.value(value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self, b'}');
        Ok(())
    }
}

impl SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: ?Sized + Serialize>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.next();
        self.ser.field_name(key);
        self.value(value)
    }
    fn end(self) -> Result<(), Error> {
        self.end_variant(b'}');
        Ok(())
    }
}

/// An object's key: a string, as serde_json's key serializer writes it
/// (numbers and booleans quoted); anything else is an error there too.
struct MapKey<'p, 'a>(&'p mut Pretty<'a>);

fn key_error() -> Error {
    serde::ser::Error::custom("key must be a string")
}

impl MapKey<'_, '_> {
    fn quoted<F>(self, write: F) -> Result<(), Error>
    where
        F: FnOnce(&mut serde_json::ser::CompactFormatter, &mut Vec<u8>) -> std::io::Result<()>,
    {
        self.0.out.push(b'"');
        self.0.number(write)?;
        self.0.out.push(b'"');
        Ok(())
    }
}

impl serde::Serializer for MapKey<'_, '_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        self.0.string(v)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.0.string(variant)
    }
    fn serialize_newtype_struct<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        self.0.string(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.0
            .out
            .extend_from_slice(if v { b"\"true\"" } else { b"\"false\"" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.quoted(|f, w| f.write_i64(w, v))
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        self.quoted(|f, w| f.write_i128(w, v))
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.quoted(|f, w| f.write_u64(w, v))
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        self.quoted(|f, w| f.write_u128(w, v))
    }
    fn serialize_f32(self, _v: f32) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_f64(self, _v: f64) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_bytes(self, _v: &[u8]) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_some<T: ?Sized + Serialize>(self, _value: &T) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_newtype_variant<T: ?Sized + Serialize>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        Err(key_error())
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Error> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        Err(key_error())
    }
    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Error> {
        Err(key_error())
    }
    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, Error> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        Err(key_error())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Serialize)]
    enum E {
        Unit,
        New(u8),
        Tuple(u8, i64),
        Struct { a: Option<f64>, b: Vec<u8> },
    }

    #[derive(Serialize)]
    struct S<'s> {
        text: &'s str,
        chr: char,
        nums: (i8, u128, f32, f64, f64),
        empty: Vec<u32>,
        none: Option<u8>,
        unit: (),
        enums: Vec<E>,
        map: BTreeMap<String, BTreeMap<u16, bool>>,
        bools: BTreeMap<bool, ()>,
        #[serde(with = "serde_bytes_like")]
        bytes: Vec<u8>,
        nested: Deep,
    }

    /// Deeper than the one-write indent covers.
    type Deep = Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<Vec<u8>>>>>>>>>>>>>>>>;

    mod serde_bytes_like {
        pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
            s.serialize_bytes(v)
        }
    }

    #[test]
    fn plain_finds_every_byte_that_needs_an_escape() {
        for len in 1..=17 {
            for at in 0..len {
                for c in 0..=255u8 {
                    let mut b = vec![b'a'; len];
                    b[at] = c;
                    let want = c >= 0x20 && c != b'"' && c != b'\\';
                    assert_eq!(plain(&b), want, "{len} {at} {c}");
                }
            }
        }
        assert!(plain(b""));
    }

    /// The same bytes as serde_json's pretty printing, at any depth.
    #[test]
    fn writes_what_serde_json_writes() {
        let mut map = BTreeMap::new();
        map.insert(
            "k\"ey\n\u{1}é".to_owned(),
            BTreeMap::from([(7, true), (9, false)]),
        );
        map.insert("plain".to_owned(), BTreeMap::new());
        let s = S {
            text: "tab\t quote\" backslash\\ del\u{7f} ctl\u{1f} ünï 🦀 a long plain run of text",
            chr: '"',
            nums: (-5, u128::MAX, 1.5, f64::NAN, -0.000_123_4),
            empty: vec![],
            none: None,
            unit: (),
            enums: vec![
                E::Unit,
                E::New(3),
                E::Tuple(1, -2),
                E::Struct {
                    a: Some(2.0),
                    b: vec![],
                },
                E::Struct {
                    a: None,
                    b: vec![1],
                },
            ],
            map,
            bools: BTreeMap::from([(true, ())]),
            bytes: vec![0, 255],
            nested: vec![vec![vec![vec![vec![vec![vec![vec![vec![vec![vec![
                vec![vec![vec![vec![vec![1, 2]]]]],
            ]]]]]]]]]]],
        };
        let want = serde_json::to_string_pretty(&vec![vec![&s]]).unwrap();
        let mut got = b"[\n  [\n    ".to_vec();
        s.serialize(&mut Pretty::at(&mut got, 2)).unwrap();
        got.extend_from_slice(b"\n  ]\n]");
        assert_eq!(String::from_utf8(got).unwrap(), want);
    }
}
