//! Several files of one capture point read as one capture, as `mergecap`
//! merges them: rotated parts (`tcpdump -C`/`-G`, `editcap -c`), pcap and
//! pcapng mixed, each part with its own link type.
//!
//! Packets come out in timestamp order (a k-way merge on each part's next
//! packet; ties keep the order the parts were given in). Parts that overlap
//! hold the same packets twice: a packet with the same timestamp and the
//! same bytes as one already handed out from *another* part is dropped (one
//! copy per copy: a part's own repeated packets stay, the engine judges
//! those). What the merge saw per part (time span, packets, copies shared
//! with each other part) is kept in [`PartInfo`] so that the caller can tell
//! rotated parts from captures of different points.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::path::{Path, PathBuf};

use super::{CaptureError, FileSource, LinkType, PacketRecord};
use crate::model::Timestamp;

/// A packet copied out of its part (the merge holds one per part).
#[derive(Debug, Default)]
struct Owned {
    ts: Timestamp,
    caplen: u32,
    orig_len: u32,
    data: Vec<u8>,
}

/// What the merge saw of one part.
#[derive(Debug, Clone)]
pub struct PartInfo {
    /// The path given.
    pub path: PathBuf,
    /// The part's link type.
    pub link: LinkType,
    /// Timestamp of its earliest packet.
    pub first: Option<Timestamp>,
    /// Timestamp of its latest packet.
    pub last: Option<Timestamp>,
    /// Packets read from it (copies dropped included).
    pub packets: u64,
    /// Its packets dropped as copies of another part's.
    pub copies_dropped: u64,
    /// `shared[j]`: packets it has in common with part `j` (copies dropped
    /// either way).
    pub shared: Vec<u64>,
    /// The error that ended it early (a cut-short file), if any.
    pub error: Option<String>,
    /// The warning code of that error.
    pub error_code: Option<&'static str>,
}

struct Part {
    src: FileSource,
    /// Its next packet (already read), `None` once it is exhausted.
    head: Option<Owned>,
}

/// Several capture files merged into one stream of packets.
pub struct MultiSource {
    parts: Vec<Part>,
    info: Vec<PartInfo>,
    /// Parts with a head packet, earliest first.
    heap: BinaryHeap<Reverse<(Timestamp, usize)>>,
    /// The packet last handed out, and which part it came from.
    current: Owned,
    current_part: usize,
    /// False before the first packet and after a dropped copy.
    current_valid: bool,
    /// Packets already handed out with the timestamp of `current`
    /// (part, bytes, still unmatched by a copy from another part).
    window: Vec<(usize, Owned, bool)>,
    /// Buffers for reuse.
    spare: Vec<Owned>,
}

impl std::fmt::Debug for MultiSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MultiSource")
            .field("parts", &self.info)
            .finish_non_exhaustive()
    }
}

impl MultiSource {
    /// Opens every part (each as [`FileSource::open`] does) and reads its
    /// first packet.
    ///
    /// # Errors
    /// The first part that cannot be opened, as [`FileSource::open`].
    pub fn open(paths: &[PathBuf]) -> Result<Self, CaptureError> {
        let mut m = MultiSource {
            parts: Vec::with_capacity(paths.len()),
            info: Vec::with_capacity(paths.len()),
            heap: BinaryHeap::new(),
            current: Owned::default(),
            current_part: 0,
            current_valid: false,
            window: Vec::new(),
            spare: Vec::new(),
        };
        for path in paths {
            let src = FileSource::open(path)?;
            m.info.push(PartInfo {
                path: path.clone(),
                link: src.link_type(),
                first: None,
                last: None,
                packets: 0,
                copies_dropped: 0,
                shared: vec![0; paths.len()],
                error: None,
                error_code: None,
            });
            m.parts.push(Part { src, head: None });
        }
        for i in 0..m.parts.len() {
            m.refill(i);
        }
        Ok(m)
    }

    /// The parts, in the order given.
    #[must_use]
    pub fn parts(&self) -> &[PartInfo] {
        &self.info
    }

    /// The path and link type of each part.
    #[must_use]
    pub fn links(&self) -> Vec<(&Path, LinkType)> {
        self.info
            .iter()
            .map(|p| (p.path.as_path(), p.link))
            .collect()
    }

    /// The link type of the part whose packet comes next (of the first part
    /// when every part is empty).
    #[must_use]
    pub fn next_link(&self) -> LinkType {
        let i = self.heap.peek().map_or(0, |Reverse((_, i))| *i);
        self.info.get(i).map_or(LinkType::ETHERNET, |p| p.link)
    }

    /// Reads part `i`'s next packet into its head.
    fn refill(&mut self, i: usize) {
        let (Some(part), Some(info)) = (self.parts.get_mut(i), self.info.get_mut(i)) else {
            return;
        };
        match part.src.next_packet() {
            Ok(Some(rec)) => {
                let mut o = self.spare.pop().unwrap_or_default();
                o.ts = rec.ts;
                o.caplen = rec.caplen;
                o.orig_len = rec.orig_len;
                o.data.clear();
                o.data.extend_from_slice(rec.data);
                info.packets += 1;
                info.first = Some(info.first.map_or(rec.ts, |f| f.min(rec.ts)));
                info.last = Some(info.last.map_or(rec.ts, |l| l.max(rec.ts)));
                self.heap.push(Reverse((o.ts, i)));
                part.head = Some(o);
            }
            Ok(None) => part.head = None,
            Err(e) => {
                part.head = None;
                info.error_code = Some(e.warning_code());
                info.error = Some(format!("{}: {e}", info.path.display()));
            }
        }
    }

    /// The next packet in timestamp order, with its part (index in the
    /// order given) and that part's link type;
    /// `None` when every part is exhausted. A part that ends with an error
    /// ends there (see [`PartInfo::error`]); the others go on.
    pub fn next_packet(&mut self) -> Option<(usize, LinkType, PacketRecord<'_>)> {
        loop {
            let Reverse((ts, i)) = self.heap.pop()?;
            let Some(pkt) = self.parts.get_mut(i).and_then(|p| p.head.take()) else {
                continue;
            };
            self.refill(i);
            // The packet handed out last joins the window of its timestamp.
            let prev = std::mem::replace(&mut self.current, pkt);
            let prev_part = self.current_part;
            self.current_part = i;
            if std::mem::replace(&mut self.current_valid, true) {
                self.window.push((prev_part, prev, true));
            } else {
                self.spare.push(prev);
            }
            if self.window.first().is_some_and(|(_, w, _)| w.ts != ts) {
                let keep_last = self.window.last().is_some_and(|(_, w, _)| w.ts == ts);
                let last = if keep_last { self.window.pop() } else { None };
                for (_, o, _) in self.window.drain(..) {
                    self.spare.push(o);
                }
                self.window.extend(last);
            }
            let cur = &self.current;
            let copy = self.window.iter_mut().find(|(p, o, unmatched)| {
                *unmatched
                    && *p != i
                    && o.ts == cur.ts
                    && o.orig_len == cur.orig_len
                    && o.data == cur.data
            });
            if let Some((p, _, unmatched)) = copy {
                *unmatched = false;
                let p = *p;
                if let Some(info) = self.info.get_mut(i) {
                    info.copies_dropped += 1;
                    if let Some(s) = info.shared.get_mut(p) {
                        *s += 1;
                    }
                }
                if let Some(s) = self.info.get_mut(p).and_then(|x| x.shared.get_mut(i)) {
                    *s += 1;
                }
                // Dropped: it stays out of the window (its twin is there).
                self.current_valid = false;
                continue;
            }
            let link = self.info.get(i).map_or(LinkType::ETHERNET, |p| p.link);
            let cur = &self.current;
            return Some((
                i,
                link,
                PacketRecord {
                    ts: cur.ts,
                    caplen: cur.caplen,
                    orig_len: cur.orig_len,
                    data: &cur.data,
                },
            ));
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn capture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("captures")
            .join(name)
    }

    #[test]
    fn a_file_twice_is_read_once() {
        let f = capture("healthy-idle.pcap");
        let mut one = FileSource::open(&f).unwrap();
        let mut n = 0;
        while one.next_packet().unwrap().is_some() {
            n += 1;
        }
        let mut m = MultiSource::open(&[f.clone(), f]).unwrap();
        let mut got = 0;
        while m.next_packet().is_some() {
            got += 1;
        }
        assert_eq!(got, n);
        assert_eq!(m.parts()[1].copies_dropped, n);
        assert_eq!(m.parts()[0].shared[1], n);
    }
}
