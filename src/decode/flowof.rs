//! Which TCP flow a captured packet belongs to, IP fragments included, for
//! those that keep packets by flow (the live screen's `w` ring, the flight
//! recorder): a fragment after the first carries no TCP header, so its flow
//! is the one its datagram's first fragment named.
//!
//! Fragments of a datagram are matched by source, destination and
//! identification, as [`super::defrag`] matches them. A fragment that comes
//! before its datagram's first one (a sender that sends the last piece
//! first) is held, copied, until the first one names the flow, then handed
//! out with it; held fragments are bounded (at most [`FlowOf::HELD_CAP`]
//! packets, dropped oldest first, and none older than
//! [`FlowOf::HELD_FOR`]), and so are the datagrams remembered
//! ([`FlowOf::KNOWN_CAP`]).

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;

use super::{decode, Decoded, IpFragment};
use crate::capture::{LinkType, PacketRecord};
use crate::model::{Endpoint, FlowKey, Span, Timestamp};

type DatagramId = (IpAddr, IpAddr, u32);

/// A fragment held until its datagram's first fragment names the flow.
#[derive(Debug)]
struct Held {
    id: DatagramId,
    ts: Timestamp,
    orig_len: u32,
    data: Vec<u8>,
}

/// Finds the flow of each packet (see the module documentation).
#[derive(Debug, Default)]
pub struct FlowOf {
    /// Datagrams whose first fragment was seen: their flow, oldest first.
    known: HashMap<DatagramId, FlowKey>,
    known_order: VecDeque<DatagramId>,
    held: VecDeque<Held>,
}

impl FlowOf {
    /// Most datagrams remembered by their first fragment.
    pub const KNOWN_CAP: usize = 1024;
    /// Most fragments held before their first.
    pub const HELD_CAP: usize = 256;
    /// Held fragments older than this (packet time) are given up: Linux
    /// gives up a datagram after 30 s too.
    pub const HELD_FOR: Span = Span(30_000_000_000);

    /// A keyer that knows no datagram yet.
    #[must_use]
    pub fn new() -> Self {
        FlowOf::default()
    }

    /// Calls `out` with `rec`'s flow and `rec`; when `rec` is a datagram's
    /// first fragment, first with the fragments of it that were held. A packet
    /// that is not TCP, or a fragment whose flow is not known yet, gives no
    /// call (the fragment is held).
    pub fn packet(
        &mut self,
        link: LinkType,
        rec: &PacketRecord<'_>,
        out: &mut dyn FnMut(FlowKey, &PacketRecord<'_>),
    ) {
        match decode(link, rec) {
            Ok(Decoded::Tcp(seg)) => out(FlowKey::from_packet(seg.src, seg.dst).0, rec),
            Ok(Decoded::Fragment(f)) => self.fragment(&f, rec, out),
            _ => {}
        }
    }

    fn fragment(
        &mut self,
        f: &IpFragment<'_>,
        rec: &PacketRecord<'_>,
        out: &mut dyn FnMut(FlowKey, &PacketRecord<'_>),
    ) {
        let id = (f.src, f.dst, f.id);
        if let Some(key) = self.known.get(&id) {
            out(*key, rec);
            return;
        }
        // The first fragment carries the TCP ports in its first 4 bytes.
        let ports = (f.offset == 0)
            .then(|| f.data.get(0..4))
            .flatten()
            .map(|p| {
                (
                    u16::from_be_bytes([p[0], p[1]]),
                    u16::from_be_bytes([p[2], p[3]]),
                )
            });
        let Some((sport, dport)) = ports else {
            self.hold(id, rec);
            return;
        };
        let key = FlowKey::from_packet(
            Endpoint {
                ip: f.src,
                port: sport,
            },
            Endpoint {
                ip: f.dst,
                port: dport,
            },
        )
        .0;
        if self.known_order.len() >= Self::KNOWN_CAP {
            if let Some(old) = self.known_order.pop_front() {
                self.known.remove(&old);
            }
        }
        self.known.insert(id, key);
        self.known_order.push_back(id);
        // Fragments of this datagram that came first, in the order they
        // came, then this one: capture order is kept.
        let mut rest = VecDeque::with_capacity(self.held.len());
        for h in std::mem::take(&mut self.held) {
            if h.id == id {
                let held = PacketRecord {
                    ts: h.ts,
                    caplen: u32::try_from(h.data.len()).unwrap_or(u32::MAX),
                    orig_len: h.orig_len,
                    data: &h.data,
                };
                out(key, &held);
            } else {
                rest.push_back(h);
            }
        }
        self.held = rest;
        out(key, rec);
    }

    fn hold(&mut self, id: DatagramId, rec: &PacketRecord<'_>) {
        while self
            .held
            .front()
            .is_some_and(|h| rec.ts.since(h.ts) > Self::HELD_FOR)
            || self.held.len() >= Self::HELD_CAP
        {
            self.held.pop_front();
        }
        self.held.push_back(Held {
            id,
            ts: rec.ts,
            orig_len: rec.orig_len,
            data: rec.data.to_vec(),
        });
    }
}
