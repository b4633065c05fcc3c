//! Editing classic pcap files in memory, to build messy captures from the
//! shipped ones: every packet twice (a capture merged with itself, `-i any`
//! across a bridge), one packet restamped, packets deleted (a capture that
//! dropped them), every packet cut to a snapshot length.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

/// A classic pcap file: its 24-byte header and its records (16-byte record
/// header plus data).
pub struct Pcap {
    pub header: Vec<u8>,
    pub records: Vec<Vec<u8>>,
    le: bool,
    nanos: bool,
}

impl Pcap {
    pub fn read(path: &Path) -> Pcap {
        let bytes = std::fs::read(path).unwrap();
        let magic = &bytes[..4];
        let le = magic == [0xd4, 0xc3, 0xb2, 0xa1] || magic == [0x4d, 0x3c, 0xb2, 0xa1];
        let nanos = magic == [0x4d, 0x3c, 0xb2, 0xa1] || magic == [0xa1, 0xb2, 0x3c, 0x4d];
        let mut records = Vec::new();
        let mut i = 24;
        while i + 16 <= bytes.len() {
            let f = [bytes[i + 8], bytes[i + 9], bytes[i + 10], bytes[i + 11]];
            let caplen = if le {
                u32::from_le_bytes(f)
            } else {
                u32::from_be_bytes(f)
            } as usize;
            let end = i + 16 + caplen;
            if end > bytes.len() {
                break;
            }
            records.push(bytes[i..end].to_vec());
            i = end;
        }
        Pcap {
            header: bytes[..24].to_vec(),
            records,
            le,
            nanos,
        }
    }

    /// A shipped capture.
    pub fn shipped(name: &str) -> Pcap {
        Pcap::read(&shipped(name))
    }

    fn u32_at(&self, rec: &[u8], at: usize) -> u32 {
        let f = [rec[at], rec[at + 1], rec[at + 2], rec[at + 3]];
        if self.le {
            u32::from_le_bytes(f)
        } else {
            u32::from_be_bytes(f)
        }
    }

    fn put_u32(&self, rec: &mut [u8], at: usize, v: u32) {
        let b = if self.le {
            v.to_le_bytes()
        } else {
            v.to_be_bytes()
        };
        rec[at..at + 4].copy_from_slice(&b);
    }

    /// Record `i`'s timestamp in nanoseconds.
    pub fn ts(&self, i: usize) -> i64 {
        let r = &self.records[i];
        let frac = i64::from(self.u32_at(r, 4));
        i64::from(self.u32_at(r, 0)) * 1_000_000_000 + if self.nanos { frac } else { frac * 1_000 }
    }

    /// Sets record `i`'s timestamp (nanoseconds, truncated to the file's precision).
    pub fn set_ts(&mut self, i: usize, ns: i64) {
        let secs = u32::try_from(ns.div_euclid(1_000_000_000)).unwrap_or(0);
        let sub = ns.rem_euclid(1_000_000_000);
        let frac = u32::try_from(if self.nanos { sub } else { sub / 1_000 }).unwrap();
        let mut r = std::mem::take(&mut self.records[i]);
        self.put_u32(&mut r, 0, secs);
        self.put_u32(&mut r, 4, frac);
        self.records[i] = r;
    }

    /// Every packet twice in a row, the copy `delay_ns` later (0: a capture
    /// merged with itself by `mergecap`; a few microseconds: `-i any` seeing
    /// a packet on a veth and again on the bridge).
    pub fn doubled(&self, delay_ns: i64) -> Pcap {
        let mut out = Pcap {
            header: self.header.clone(),
            records: Vec::new(),
            le: self.le,
            nanos: self.nanos,
        };
        for (i, r) in self.records.iter().enumerate() {
            out.records.push(r.clone());
            out.records.push(r.clone());
            let n = out.records.len() - 1;
            out.set_ts(n, self.ts(i) + delay_ns);
        }
        out
    }

    /// Without the packets numbered `frames` (1-based, as `editcap` and
    /// tshark count them): `editcap in out 33-38` is `without(33..=38)`.
    pub fn without(&self, frames: std::ops::RangeInclusive<usize>) -> Pcap {
        Pcap {
            header: self.header.clone(),
            records: self
                .records
                .iter()
                .enumerate()
                .filter(|(i, _)| !frames.contains(&(i + 1)))
                .map(|(_, r)| r.clone())
                .collect(),
            le: self.le,
            nanos: self.nanos,
        }
    }

    /// Every packet cut to `snaplen` bytes, as `editcap -F pcap -s SNAPLEN`
    /// (or `tcpdump -s SNAPLEN`) writes it: captured lengths and data cut,
    /// original lengths kept, the file header's snapshot length set.
    pub fn cut(&self, snaplen: u32) -> Pcap {
        let mut header = self.header.clone();
        self.put_u32(&mut header, 16, snaplen);
        let mut records = Vec::new();
        for r in &self.records {
            let caplen = self.u32_at(r, 8).min(snaplen);
            let mut r = r[..16 + caplen as usize].to_vec();
            self.put_u32(&mut r, 8, caplen);
            records.push(r);
        }
        Pcap {
            header,
            records,
            le: self.le,
            nanos: self.nanos,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.header.clone();
        for r in &self.records {
            out.extend_from_slice(r);
        }
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.bytes()).unwrap();
    }
}

pub fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("captures")
        .join(format!("{name}.pcap"))
}

pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hbscope-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
