//! The project's own vocabulary, shared by every stage of the pipeline.
//!
//! Nothing in here depends on an outside library: capture timestamps, endpoints,
//! flow keys and directions are plain values so that `decode`, `reassembly`,
//! `amqp`, `analysis` and `report` can talk to each other without knowing
//! about `pcap`, `etherparse` or `amq-protocol`.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

/// A point in capture time: nanoseconds since the Unix epoch, as stamped by
/// the capturing kernel. Analysis never reads a clock; this is the only time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(pub i64);

impl Timestamp {
    /// Builds a timestamp from whole seconds and nanoseconds.
    #[must_use]
    pub fn from_parts(secs: i64, nanos: i64) -> Self {
        Timestamp(secs.saturating_mul(1_000_000_000).saturating_add(nanos))
    }

    /// Nanoseconds since the Unix epoch.
    #[must_use]
    pub fn as_nanos(self) -> i64 {
        self.0
    }

    /// Time from `earlier` to `self` (negative when `earlier` is later).
    #[must_use]
    pub fn since(self, earlier: Timestamp) -> Span {
        Span(self.0.saturating_sub(earlier.0))
    }

    /// This timestamp moved forward by `span`.
    #[must_use]
    pub fn plus(self, span: Span) -> Timestamp {
        Timestamp(self.0.saturating_add(span.0))
    }
}

/// A length of capture time in nanoseconds (may be negative when packets
/// arrive with timestamps out of order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Span(pub i64);

impl Span {
    /// A span of whole seconds.
    #[must_use]
    pub fn from_secs(secs: u64) -> Self {
        Span(
            i64::try_from(secs)
                .unwrap_or(i64::MAX / 1_000_000_000)
                .saturating_mul(1_000_000_000),
        )
    }

    /// A span of milliseconds.
    #[must_use]
    pub fn from_millis(ms: i64) -> Self {
        Span(ms.saturating_mul(1_000_000))
    }

    /// The span in (fractional) seconds.
    #[must_use]
    #[allow(clippy::cast_precision_loss)]
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }
}

/// One end of a TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Endpoint {
    /// IPv4 or IPv6 address.
    pub ip: IpAddr,
    /// TCP port.
    pub port: u16,
}

impl Endpoint {
    /// A new endpoint.
    #[must_use]
    pub fn new(ip: IpAddr, port: u16) -> Self {
        Endpoint { ip, port }
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // "ip:port", with IPv6 in brackets, like SocketAddr.
        match self.ip {
            // By hand: the standard library's formatting was ~1,600
            // instructions an address, and a report writes two per connection.
            IpAddr::V4(v4) => {
                let mut buf = [0u8; 21];
                let mut n = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        n = put(&mut buf, n, b".");
                    }
                    n = put_decimal(&mut buf, n, u32::from(octet));
                }
                n = put(&mut buf, n, b":");
                n = put_decimal(&mut buf, n, u32::from(self.port));
                // Only ASCII digits, dots and a colon were written.
                f.write_str(std::str::from_utf8(buf.get(..n).unwrap_or(&[])).unwrap_or(""))
            }
            IpAddr::V6(_) => write!(f, "{}", SocketAddr::new(self.ip, self.port)),
        }
    }
}

/// Copies `bytes` into `buf` at `at` (as far as it fits); returns the new end.
fn put(buf: &mut [u8], at: usize, bytes: &[u8]) -> usize {
    let end = (at + bytes.len()).min(buf.len());
    if let (Some(dst), Some(src)) = (buf.get_mut(at..end), bytes.get(..end - at)) {
        dst.copy_from_slice(src);
    }
    end
}

/// Writes `v` in decimal into `buf` at `at`; returns the new end.
fn put_decimal(buf: &mut [u8], at: usize, mut v: u32) -> usize {
    let mut digits = [0u8; 10];
    let mut i = digits.len();
    loop {
        i -= 1;
        // A digit: fits in u8.
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 || i == 0 {
            break;
        }
    }
    put(buf, at, &digits[i..])
}

/// The two directions of a connection relative to its [`FlowKey`]:
/// `AtoB` is from `FlowKey::a` to `FlowKey::b`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Direction {
    /// From endpoint `a` to endpoint `b` of the flow key.
    AtoB,
    /// From endpoint `b` to endpoint `a` of the flow key.
    BtoA,
}

impl Direction {
    /// The other direction.
    #[must_use]
    pub fn reverse(self) -> Direction {
        match self {
            Direction::AtoB => Direction::BtoA,
            Direction::BtoA => Direction::AtoB,
        }
    }

    /// 0 for `AtoB`, 1 for `BtoA`: an index into two-element per-direction arrays.
    #[must_use]
    pub fn index(self) -> usize {
        match self {
            Direction::AtoB => 0,
            Direction::BtoA => 1,
        }
    }
}

/// A TCP connection's identity independent of packet direction: the two
/// endpoints in canonical order (`a < b`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// The lower endpoint.
    pub a: Endpoint,
    /// The higher endpoint.
    pub b: Endpoint,
}

impl FlowKey {
    /// The canonical key of a packet from `src` to `dst`, and the direction of that packet.
    #[must_use]
    #[inline(always)]
    pub fn from_packet(src: Endpoint, dst: Endpoint) -> (FlowKey, Direction) {
        let in_order = match (src.ip, dst.ip) {
            // The same order as the derived one (address, then port), read
            // as two integers: this runs for every packet.
            (IpAddr::V4(s), IpAddr::V4(d)) => (u32::from(s), src.port) <= (u32::from(d), dst.port),
            _ => src <= dst,
        };
        if in_order {
            (FlowKey { a: src, b: dst }, Direction::AtoB)
        } else {
            (FlowKey { a: dst, b: src }, Direction::BtoA)
        }
    }

    /// The sending endpoint of direction `dir`.
    #[must_use]
    pub fn sender(&self, dir: Direction) -> Endpoint {
        match dir {
            Direction::AtoB => self.a,
            Direction::BtoA => self.b,
        }
    }

    /// The receiving endpoint of direction `dir`.
    #[must_use]
    pub fn receiver(&self, dir: Direction) -> Endpoint {
        self.sender(dir.reverse())
    }
}

impl fmt::Display for FlowKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} <-> {}", self.a, self.b)
    }
}

/// TCP header flags that matter to the analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
#[allow(clippy::struct_excessive_bools)]
pub struct TcpFlags {
    /// SYN.
    pub syn: bool,
    /// ACK (the acknowledgment number is valid).
    pub ack: bool,
    /// FIN.
    pub fin: bool,
    /// RST.
    pub rst: bool,
    /// PSH.
    pub psh: bool,
}

/// One decoded TCP segment, as handed from `decode` to `reassembly`.
///
/// `payload` holds the bytes the capture kept; `payload_len` is the segment's
/// real length taken from the IP header. They differ when the snapshot length
/// cut the packet: the missing tail was sent on the wire at `ts` but its
/// content is unknown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpSegment<'a> {
    /// Capture timestamp of the packet.
    pub ts: Timestamp,
    /// Sender.
    pub src: Endpoint,
    /// Receiver.
    pub dst: Endpoint,
    /// Sequence number of the first payload byte (or of the SYN/FIN).
    pub seq: u32,
    /// Acknowledgment number (valid when `flags.ack`).
    pub ack: u32,
    /// TCP flags.
    pub flags: TcpFlags,
    /// Advertised receive window as on the wire (not scaled).
    pub window: u16,
    /// Window scale option, present only on SYN segments that carry it.
    pub window_scale: Option<u8>,
    /// Captured payload bytes (possibly fewer than `payload_len`).
    pub payload: &'a [u8],
    /// Payload length on the wire, from the IP total length.
    pub payload_len: u32,
    /// IPv4 identification field (0 for IPv6). Linux gives each packet of a
    /// connected socket a new one, so a retransmission differs from the
    /// original here while a second capture of the same packet does not.
    pub ip_id: u16,
    /// TCP timestamp option's TSval, when the segment carries one.
    pub tsval: Option<u32>,
    /// The highest right edge of the segment's SACK blocks (sequence numbers
    /// of the PEER's direction the sender received), when it carries any.
    pub sack_right: Option<u32>,
}

/// "1 gap", "2 gaps": a count with its noun in the right number.
#[must_use]
pub fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    #[test]
    fn endpoints_are_written_as_socket_addresses() {
        for (ip, port) in [
            ([0, 0, 0, 0], 0),
            ([255, 255, 255, 255], 65535),
            ([10, 1, 0, 98], 32768),
            ([127, 0, 0, 1], 5672),
            ([1, 20, 100, 9], 9),
        ] {
            let e = Endpoint::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
            assert_eq!(e.to_string(), SocketAddr::new(e.ip, port).to_string());
        }
        let e = Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 5671);
        assert_eq!(e.to_string(), "[::1]:5671");
    }

    proptest! {
        #[test]
        fn any_ipv4_endpoint_is_written_as_a_socket_address(ip: u32, port: u16) {
            let e = Endpoint::new(IpAddr::V4(Ipv4Addr::from(ip)), port);
            prop_assert_eq!(e.to_string(), SocketAddr::new(e.ip, port).to_string());
        }
    }

    #[test]
    fn counts_take_the_right_number() {
        assert_eq!(count(1u64, "gap", "gaps"), "1 gap");
        assert_eq!(count(0u64, "gap", "gaps"), "0 gaps");
        assert_eq!(count(2u64, "connection", "connections"), "2 connections");
    }

    fn endpoint(v6: bool, ip: u32, port: u16) -> Endpoint {
        let ip = if v6 {
            IpAddr::V6(Ipv6Addr::from(u128::from(ip)))
        } else {
            IpAddr::V4(Ipv4Addr::from(ip))
        };
        Endpoint::new(ip, port)
    }

    proptest! {
        /// The integer comparison for IPv4 gives the derived order's key and direction.
        #[test]
        fn from_packet_orders_like_endpoint_ord(
            a in (any::<bool>(), 0u32..8, 0u16..4),
            b in (any::<bool>(), 0u32..8, 0u16..4),
            high in any::<u32>(),
        ) {
            // Few distinct values, so that equal addresses and ports come up often.
            let src = endpoint(a.0, a.1 ^ high, a.2);
            let dst = endpoint(b.0, b.1 ^ high, b.2);
            let (key, dir) = FlowKey::from_packet(src, dst);
            let want = if src <= dst {
                (FlowKey { a: src, b: dst }, Direction::AtoB)
            } else {
                (FlowKey { a: dst, b: src }, Direction::BtoA)
            };
            prop_assert_eq!(key, want.0);
            prop_assert_eq!(dir, want.1);
        }
    }
}
