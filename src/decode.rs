//! Link, IP and TCP decoding: turns a captured [`PacketRecord`] into a
//! [`TcpSegment`].
//!
//! This is the only module that touches `etherparse`. Link-layer headers are
//! read here by hand (etherparse has no Linux cooked v2 support and no lax
//! entry point for v1); everything from the ether type down (VLAN tags, IPv4,
//! IPv6 and its extension headers) goes through etherparse's *lax* slicing so
//! that packets cut by the snapshot length still decode. The TCP header is
//! read last, from whatever bytes the capture kept: when the snapshot length
//! cut its options, from its fixed 20 bytes (no window scale, no TSval).
//!
//! Lengths: [`TcpSegment::payload_len`] is the segment's length on the wire,
//! computed from the IP header (total length or payload length, minus IP and
//! TCP headers), never from the number of captured bytes; only when the IP
//! length field is unusable (0, as with TCP segmentation offload, or smaller
//! than the header) does it fall back to captured bytes plus the bytes the
//! snapshot length cut (`orig_len - caplen`).
//!
//! Supported link types: Ethernet with 802.1Q/802.1ad tags (up to three),
//! Linux cooked v1 and v2, BSD loopback (`NULL`, `LOOP`), raw IP
//! (`RAW`, `IPV4`, `IPV6`).

use std::net::IpAddr;

use etherparse::err::packet::SliceError;
use etherparse::err::Layer;
use etherparse::{
    EtherType, Ipv6ExtensionSlice, LaxIpPayloadSlice, LaxNetSlice, LaxSlicedPacket, LenSource,
    TcpHeaderSlice, TcpOptionElement,
};

use crate::capture::{LinkType, PacketRecord};
use crate::model::{Endpoint, TcpFlags, TcpSegment, Timestamp};

pub mod defrag;
pub mod flowof;

/// What a captured packet turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded<'a> {
    /// A TCP segment (possibly with a payload cut by the snapshot length).
    Tcp(TcpSegment<'a>),
    /// A piece of a fragmented IP datagram carrying TCP: [`defrag`] puts the
    /// datagram back together.
    Fragment(IpFragment<'a>),
    /// Anything else: ARP, UDP, ICMP, non-IP frames, fragments of other
    /// protocols, IP packets whose extension headers hide the transport.
    NotTcp,
}

/// One fragment of an IPv4 datagram (more-fragments flag or a fragment
/// offset) or of an IPv6 datagram (a Fragment extension header that
/// fragments) whose protocol is TCP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpFragment<'a> {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Source address.
    pub src: IpAddr,
    /// Destination address.
    pub dst: IpAddr,
    /// The datagram's identification (IPv4: 16 bits; IPv6: 32).
    pub id: u32,
    /// Where this fragment's data goes in the datagram's payload, in bytes.
    pub offset: u32,
    /// More fragments follow (false for the last one).
    pub more: bool,
    /// Bytes of data this fragment carries on the wire (from the IP length).
    pub wire_len: u32,
    /// The captured part of that data (fewer bytes when the snapshot length cut it).
    pub data: &'a [u8],
}

/// Why a packet could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The capture's link-layer type is not one this decoder reads.
    #[error(
        "link-layer type {0} is not supported; hbscope reads Ethernet, Linux cooked (SLL, SLL2), \
         BSD loopback and raw IP captures: capture again on an Ethernet interface, on loopback or with `-i any`"
    )]
    UnsupportedLinkType(i32),
    /// The captured bytes end inside a header the decoder needs.
    #[error(
        "packet cut short in its {layer} header: {needed} bytes needed, {got} captured; \
         capture with a larger snapshot length (`tcpdump -s 0`)"
    )]
    Truncated {
        /// The header that was cut.
        layer: &'static str,
        /// Bytes (from the start of the captured data) needed to read that header.
        needed: usize,
        /// Bytes captured.
        got: usize,
    },
    /// A header has impossible contents.
    #[error("malformed {layer} header: {detail}")]
    Malformed {
        /// The header at fault.
        layer: &'static str,
        /// What is wrong with it.
        detail: String,
    },
}

/// Whether [`decode`] understands packets of this link type. Check it once
/// when a capture is opened, to report an unsupported capture up front.
#[must_use]
pub fn is_supported(link: LinkType) -> bool {
    matches!(
        link,
        LinkType::NULL
            | LinkType::ETHERNET
            | LinkType::RAW
            | LinkType::RAW_OPENBSD
            | LinkType::LINKTYPE_RAW
            | LinkType::LOOP
            | LinkType::LINUX_SLL
            | LinkType::IPV4
            | LinkType::IPV6
            | LinkType::LINUX_SLL2
    )
}

/// Decodes one captured packet of link type `link`.
///
/// # Errors
/// [`DecodeError::UnsupportedLinkType`] for a link type outside
/// [`is_supported`]; [`DecodeError::Truncated`] when the capture ends before
/// the link, IP or TCP header is complete; [`DecodeError::Malformed`] for
/// impossible header contents. Never panics, whatever the bytes.
pub fn decode<'a>(link: LinkType, rec: &PacketRecord<'a>) -> Result<Decoded<'a>, DecodeError> {
    let data = rec.data;
    let Some((offset, ether_type)) = link_layer(link, data)? else {
        return Ok(Decoded::NotTcp);
    };
    let network = data.get(offset..).unwrap_or(&[]);
    if ether_type == EtherType::IPV4 {
        if let Some(seg) = ipv4_tcp_fast(rec.ts, network) {
            return Ok(Decoded::Tcp(seg));
        }
    }
    decode_network(rec, data, offset, ether_type, network)
}

/// The common case read by hand, before building the segment: a whole,
/// unfragmented IPv4 packet without an authentication header, carrying a
/// whole TCP segment that is not a SYN. `None` for anything else, which
/// [`decode`] reads through its general path (etherparse); for these
/// packets [`decode`] gives exactly [`FastHead::segment`] (checked on every
/// packet of the shipped captures by a test). Lets a caller look at the
/// endpoints first, and skip the packet without building the segment (a
/// thread skips the packets of flows another thread analyses).
#[must_use]
pub fn fast_head(link: LinkType, data: &[u8]) -> Option<FastHead<'_>> {
    let (offset, ether_type) = link_layer(link, data).ok()??;
    if ether_type != EtherType::IPV4 {
        return None;
    }
    ipv4_tcp_head(data.get(offset..)?)
}

/// The IPv4 and TCP header fields of a packet [`fast_head`] accepted.
#[derive(Debug, Clone, Copy)]
pub struct FastHead<'a> {
    src: [u8; 4],
    dst: [u8; 4],
    src_port: u16,
    dst_port: u16,
    /// TCP header bytes 4..16: sequence, acknowledgement, data offset, flags, window.
    rest: [u8; 12],
    payload: &'a [u8],
    payload_len: u32,
    ip_id: u16,
    tsval: Option<u32>,
    sack_right: Option<u32>,
}

impl<'a> FastHead<'a> {
    /// (source address, source port, destination address, destination port).
    #[must_use]
    pub fn endpoints(&self) -> ([u8; 4], u16, [u8; 4], u16) {
        (self.src, self.src_port, self.dst, self.dst_port)
    }

    /// The segment, as [`decode`] gives it, captured at `ts`.
    #[must_use]
    pub fn segment(self, ts: Timestamp) -> TcpSegment<'a> {
        let [a0, a1, a2, a3, b0, b1, b2, b3, _, flags, w0, w1] = self.rest;
        TcpSegment {
            ts,
            src: Endpoint::new(
                IpAddr::V4(std::net::Ipv4Addr::from(self.src)),
                self.src_port,
            ),
            dst: Endpoint::new(
                IpAddr::V4(std::net::Ipv4Addr::from(self.dst)),
                self.dst_port,
            ),
            seq: u32::from_be_bytes([a0, a1, a2, a3]),
            ack: u32::from_be_bytes([b0, b1, b2, b3]),
            flags: TcpFlags {
                syn: false,
                ack: flags & 0x10 != 0,
                fin: flags & 0x01 != 0,
                rst: flags & 0x04 != 0,
                psh: flags & 0x08 != 0,
            },
            window: u16::from_be_bytes([w0, w1]),
            window_scale: None,
            payload: self.payload,
            payload_len: self.payload_len,
            ip_id: self.ip_id,
            tsval: self.tsval,
            sack_right: self.sack_right,
        }
    }
}

/// [`fast_head`] after the link layer: the checks and the fields. Half the
/// decoding cost of the general path was copying etherparse's slice structures.
#[inline(always)]
fn ipv4_tcp_head(ip: &[u8]) -> Option<FastHead<'_>> {
    let ip_head: &[u8; 20] = ip.get(..20)?.try_into().ok()?;
    let [ver_ihl, _, tl0, tl1, id0, id1, fl0, fl1, _, proto, _, _, s0, s1, s2, s3, d0, d1, d2, d3] =
        *ip_head;
    let ihl = usize::from(ver_ihl & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([tl0, tl1]));
    // Version 4, TCP, no "more fragments" flag and offset 0, the whole packet captured.
    if ver_ihl >> 4 != 4 || ihl < 20 || proto != 6 || (fl0 & 0x3f) != 0 || fl1 != 0 {
        return None;
    }
    let tcp = ip.get(ihl..total)?;
    let tcp_head: &[u8; 20] = tcp.get(..20)?.try_into().ok()?;
    let [p0, p1, q0, q1, r @ .., _, _, _, _] = *tcp_head;
    let [_, _, _, _, _, _, _, _, doff, flags, _, _] = r;
    let header_len = usize::from(doff >> 4) * 4;
    // SYNs carry the window scale option: the general path reads options.
    if header_len < 20 || flags & 0x02 != 0 {
        return None;
    }
    let payload = tcp.get(header_len..)?;
    let (tsval, sack_right) = match tcp.get(20..header_len) {
        Some(options) => ts_sack_of(options),
        None => (None, None),
    };
    Some(FastHead {
        src: [s0, s1, s2, s3],
        dst: [d0, d1, d2, d3],
        src_port: u16::from_be_bytes([p0, p1]),
        dst_port: u16::from_be_bytes([q0, q1]),
        rest: r,
        payload,
        payload_len: u32::try_from(payload.len()).ok()?,
        ip_id: u16::from_be_bytes([id0, id1]),
        tsval,
        sack_right,
    })
}

/// The TSval of the TCP timestamp option and the highest right edge of the
/// SACK blocks among `options` (the TCP header past its first 20 bytes), for
/// the options that come before the list ends or turns out malformed. Linux
/// puts the timestamp first after two NOPs: that layout is read without the
/// loop, and when nothing follows it (no SACK) the options end there.
#[inline(always)]
fn ts_sack_of(options: &[u8]) -> (Option<u32>, Option<u32>) {
    if options.is_empty() {
        return (None, None);
    }
    if let Some([1, 1, 8, 10, a, b, c, d, ..]) = options.get(..12) {
        let tsval = Some(u32::from_be_bytes([*a, *b, *c, *d]));
        if options.len() <= 12 {
            return (tsval, None);
        }
        return (tsval, options_loop(&options[12..]).1);
    }
    options_loop(options)
}

/// [`ts_sack_of`] for any layout.
#[cold]
fn options_loop(options: &[u8]) -> (Option<u32>, Option<u32>) {
    let (mut tsval, mut sack) = (None, None::<u32>);
    let mut i = 0usize;
    while let Some(&kind) = options.get(i) {
        match kind {
            0 => break,
            1 => i += 1,
            _ => {
                let Some(len) = options.get(i + 1).map(|l| usize::from(*l)) else {
                    break;
                };
                let Some(body) = options.get(i + 2..i + len.max(2)) else {
                    break;
                };
                if len < 2 {
                    break;
                }
                match (kind, len) {
                    (8, 10) => {
                        tsval = Some(u32::from_be_bytes([body[0], body[1], body[2], body[3]]));
                    }
                    // SACK: blocks of (left, right) edges; the highest right edge,
                    // compared in sequence space (RFC 793 arithmetic).
                    (5, _) if (len - 2) % 8 == 0 => {
                        for block in body.chunks_exact(8) {
                            let right =
                                u32::from_be_bytes([block[4], block[5], block[6], block[7]]);
                            let higher = sack.is_none_or(|s| (right.wrapping_sub(s) as i32) > 0);
                            if higher {
                                sack = Some(right);
                            }
                        }
                    }
                    _ => {}
                }
                i += len;
            }
        }
    }
    (tsval, sack)
}

/// [`ipv4_tcp_head`] as a segment.
fn ipv4_tcp_fast(ts: Timestamp, ip: &[u8]) -> Option<TcpSegment<'_>> {
    ipv4_tcp_head(ip).map(|h| h.segment(ts))
}

/// Everything after the link layer, through etherparse.
fn decode_network<'a>(
    rec: &PacketRecord<'a>,
    data: &'a [u8],
    offset: usize,
    ether_type: EtherType,
    network: &'a [u8],
) -> Result<Decoded<'a>, DecodeError> {
    let packet = LaxSlicedPacket::from_ether_type(ether_type, network);
    if let Some((err, layer)) = &packet.stop_err {
        if let Some(e) = stop_error(err, *layer, offset) {
            return Err(e);
        }
    }
    // Bytes of the packet the snapshot length cut off.
    let cut = usize::try_from(rec.orig_len.saturating_sub(rec.caplen)).unwrap_or(usize::MAX);
    match &packet.net {
        Some(LaxNetSlice::Ipv4(ip)) => {
            let header = ip.header();
            let header_len = header.slice().len();
            if header.is_fragmenting_payload() {
                let payload = ip.payload();
                if payload.ip_number != etherparse::IpNumber::TCP || ip.extensions().auth.is_some()
                {
                    return Ok(Decoded::NotTcp);
                }
                let wire = usize::from(header.total_len()).checked_sub(header_len);
                let wire = wire.and_then(|n| u32::try_from(n).ok()).ok_or_else(|| {
                    DecodeError::Malformed {
                        layer: "ipv4",
                        detail: format!(
                            "a fragment whose total length {} is below its header's {header_len} bytes",
                            header.total_len()
                        ),
                    }
                })?;
                return Ok(Decoded::Fragment(IpFragment {
                    ts: rec.ts,
                    src: IpAddr::V4(header.source_addr()),
                    dst: IpAddr::V4(header.destination_addr()),
                    id: u32::from(header.identification()),
                    offset: u32::from(header.fragments_offset().value()) * 8,
                    more: header.more_fragments(),
                    wire_len: wire,
                    data: payload.payload,
                }));
            }
            let auth_len = ip.extensions().auth.map_or(0, |a| a.slice().len());
            // A total length smaller than the header is unusable (e.g. 0 under TSO).
            let declared = usize::from(header.total_len())
                .checked_sub(header_len)
                .and_then(|n| n.checked_sub(auth_len));
            let ips = (
                IpAddr::V4(header.source_addr()),
                IpAddr::V4(header.destination_addr()),
            );
            tcp(
                rec.ts,
                ips,
                header.identification(),
                ip.payload(),
                declared,
                cut,
                data.len(),
            )
        }
        Some(LaxNetSlice::Ipv6(ip)) => {
            let header = ip.header();
            // Extension bytes through the Fragment header: its data follows.
            let mut through = 0usize;
            for ext in ip.extensions().clone() {
                through += match ext {
                    Ipv6ExtensionSlice::HopByHop(e)
                    | Ipv6ExtensionSlice::Routing(e)
                    | Ipv6ExtensionSlice::DestinationOptions(e) => e.slice().len(),
                    Ipv6ExtensionSlice::Authentication(e) => e.slice().len(),
                    Ipv6ExtensionSlice::Fragment(frag) => {
                        if !frag.is_fragmenting_payload() {
                            continue;
                        }
                        return ipv6_fragment(rec.ts, header, frag, network, through);
                    }
                };
            }
            let declared = match header.payload_length() {
                // 0: jumbogram or length not filled in (segmentation offload).
                0 => None,
                n => usize::from(n).checked_sub(ip.extensions().slice().len()),
            };
            let ips = (
                IpAddr::V6(header.source_addr()),
                IpAddr::V6(header.destination_addr()),
            );
            tcp(rec.ts, ips, 0, ip.payload(), declared, cut, data.len())
        }
        Some(LaxNetSlice::Arp(_)) | None => Ok(Decoded::NotTcp),
    }
}

/// Bytes of an IPv6 header without extensions.
const IPV6_HEADER: usize = 40;
/// Bytes of an IPv6 Fragment extension header.
const IPV6_FRAGMENT_HEADER: usize = 8;

/// An IPv6 packet whose Fragment header `frag` (after `before` bytes of
/// other extension headers) fragments it; `network` starts at the IPv6 header.
fn ipv6_fragment<'a>(
    ts: Timestamp,
    header: etherparse::Ipv6HeaderSlice<'a>,
    frag: etherparse::Ipv6FragmentHeaderSlice<'a>,
    network: &'a [u8],
    before: usize,
) -> Result<Decoded<'a>, DecodeError> {
    // Only a datagram whose fragmentable part is TCP itself.
    if frag.next_header() != etherparse::IpNumber::TCP {
        return Ok(Decoded::NotTcp);
    }
    let through = before + IPV6_FRAGMENT_HEADER;
    let payload_length = usize::from(header.payload_length());
    let wire = payload_length
        .checked_sub(through)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| DecodeError::Malformed {
            layer: "ipv6",
            detail: format!(
                "a fragment whose payload length {payload_length} is below its {through} bytes of extension headers"
            ),
        })?;
    let start = IPV6_HEADER + through;
    let end = start.saturating_add(wire as usize).min(network.len());
    Ok(Decoded::Fragment(IpFragment {
        ts,
        src: IpAddr::V6(header.source_addr()),
        dst: IpAddr::V6(header.destination_addr()),
        id: frag.identification(),
        offset: u32::from(frag.fragment_offset().value()) * 8,
        more: frag.more_fragments(),
        wire_len: wire,
        data: network.get(start..end).unwrap_or(&[]),
    }))
}

/// The TCP segment of a datagram [`defrag`] put back together.
///
/// # Errors
/// As [`decode`]: the TCP header is malformed, or the capture kept fewer
/// than its fixed 20 bytes.
pub fn datagram_segment(d: &defrag::Datagram) -> Result<Decoded<'_>, DecodeError> {
    let wire = d.wire_len as usize;
    let kept = d.bytes.len().min(wire);
    let payload = LaxIpPayloadSlice {
        incomplete: kept < wire,
        ip_number: etherparse::IpNumber::TCP,
        fragmented: false,
        len_source: if kept < wire {
            LenSource::Slice
        } else {
            LenSource::Ipv4HeaderTotalLen
        },
        payload: d.bytes.get(..kept).unwrap_or(&[]),
    };
    tcp(
        d.ts,
        (d.src, d.dst),
        d.ip_id,
        &payload,
        Some(wire),
        wire - kept,
        kept,
    )
}

fn be16(data: &[u8], at: usize) -> Option<u16> {
    let bytes = data.get(at..at.checked_add(2)?)?;
    Some(u16::from_be_bytes([*bytes.first()?, *bytes.get(1)?]))
}

fn need(layer: &'static str, needed: usize, data: &[u8]) -> Result<(), DecodeError> {
    if data.len() < needed {
        Err(DecodeError::Truncated {
            layer,
            needed,
            got: data.len(),
        })
    } else {
        Ok(())
    }
}

/// Ether types below this are 802.3 lengths, not protocol numbers.
const MIN_ETHER_TYPE: u16 = 0x0600;
const ETHERNET_HEADER: usize = 14;
const SLL_HEADER: usize = 16;
const SLL2_HEADER: usize = 20;
const LOOPBACK_HEADER: usize = 4;
const AF_INET: u32 = 2;
/// `AF_INET6` on Linux, NetBSD/OpenBSD, FreeBSD, and macOS.
const AF_INET6: [u32; 4] = [10, 24, 28, 30];

/// Reads the link-layer header: where the network layer starts and its ether
/// type, or `None` when the frame carries no IP.
#[inline(always)]
fn link_layer(link: LinkType, data: &[u8]) -> Result<Option<(usize, EtherType)>, DecodeError> {
    let at = |offset: usize, ether_type: u16| Ok(Some((offset, EtherType(ether_type))));
    match link {
        LinkType::ETHERNET => {
            need("ethernet", ETHERNET_HEADER, data)?;
            match be16(data, 12) {
                Some(t) if t >= MIN_ETHER_TYPE => at(ETHERNET_HEADER, t),
                _ => Ok(None),
            }
        }
        LinkType::LINUX_SLL => {
            need("linux cooked (SLL)", SLL_HEADER, data)?;
            be16(data, 14).map_or(Ok(None), |t| at(SLL_HEADER, t))
        }
        LinkType::LINUX_SLL2 => {
            need("linux cooked v2 (SLL2)", SLL2_HEADER, data)?;
            be16(data, 0).map_or(Ok(None), |t| at(SLL2_HEADER, t))
        }
        LinkType::NULL | LinkType::LOOP => {
            need("loopback", LOOPBACK_HEADER, data)?;
            let raw: [u8; 4] = data
                .get(..LOOPBACK_HEADER)
                .and_then(|b| b.try_into().ok())
                .unwrap_or_default();
            let family = if link == LinkType::LOOP {
                u32::from_be_bytes(raw)
            } else {
                // Host byte order of the capturing machine, which is unknown:
                // address families are small, so the order that gives a small
                // number is the right one.
                let little = u32::from_le_bytes(raw);
                if little & 0xffff_0000 == 0 {
                    little
                } else {
                    u32::from_be_bytes(raw)
                }
            };
            if family == AF_INET {
                at(LOOPBACK_HEADER, EtherType::IPV4.0)
            } else if AF_INET6.contains(&family) {
                at(LOOPBACK_HEADER, EtherType::IPV6.0)
            } else {
                Ok(None)
            }
        }
        LinkType::RAW | LinkType::RAW_OPENBSD | LinkType::LINKTYPE_RAW => {
            need("ip", 1, data)?;
            match data.first().map(|b| b >> 4) {
                Some(4) => at(0, EtherType::IPV4.0),
                Some(6) => at(0, EtherType::IPV6.0),
                other => Err(DecodeError::Malformed {
                    layer: "ip",
                    detail: format!(
                        "IP version {} in a raw IP capture (expected 4 or 6)",
                        other.unwrap_or_default()
                    ),
                }),
            }
        }
        LinkType::IPV4 => at(0, EtherType::IPV4.0),
        LinkType::IPV6 => at(0, EtherType::IPV6.0),
        LinkType(other) => Err(DecodeError::UnsupportedLinkType(other)),
    }
}

/// Maps an error that stopped etherparse's slicing to a decode error, or
/// `None` when it is about a layer hbscope does not need (ARP, UDP, ICMP, or
/// TCP, which is re-read below with the IP length in hand).
fn stop_error(err: &SliceError, layer: Layer, link_offset: usize) -> Option<DecodeError> {
    let name = match layer {
        Layer::VlanHeader => "vlan",
        Layer::MacsecHeader | Layer::MacsecPacket => "macsec",
        Layer::IpHeader => "ip",
        Layer::Ipv4Header | Layer::Ipv4Packet => "ipv4",
        Layer::IpAuthHeader => "ip authentication",
        Layer::Ipv6Header | Layer::Ipv6Packet => "ipv6",
        Layer::Ipv6ExtHeader
        | Layer::Ipv6HopByHopHeader
        | Layer::Ipv6DestOptionsHeader
        | Layer::Ipv6RouteHeader
        | Layer::Ipv6FragHeader => "ipv6 extension",
        _ => return None,
    };
    Some(match err {
        SliceError::Len(len) if len.len_source == LenSource::Slice => DecodeError::Truncated {
            layer: name,
            needed: link_offset
                .saturating_add(len.layer_start_offset)
                .saturating_add(len.required_len),
            got: link_offset
                .saturating_add(len.layer_start_offset)
                .saturating_add(len.len),
        },
        // A length field inside the packet says the header cannot fit.
        other => DecodeError::Malformed {
            layer: name,
            detail: other.to_string(),
        },
    })
}

/// Largest window scale shift allowed (RFC 7323 section 2.3).
const MAX_WINDOW_SCALE: u8 = 14;

/// Reads the TCP header from the IP payload. `declared` is the IP payload
/// length from the IP header when usable; `cut` the bytes the snapshot length
/// removed; `captured` the length of the whole captured packet; `ip_id`
/// the IPv4 identification (0 for IPv6).
fn tcp<'a>(
    ts: Timestamp,
    (src_ip, dst_ip): (IpAddr, IpAddr),
    ip_id: u16,
    ip_payload: &LaxIpPayloadSlice<'a>,
    declared: Option<usize>,
    cut: usize,
    captured: usize,
) -> Result<Decoded<'a>, DecodeError> {
    if ip_payload.ip_number != etherparse::IpNumber::TCP {
        return Ok(Decoded::NotTcp);
    }
    let bytes: &'a [u8] = ip_payload.payload;
    let header = match TcpHeaderSlice::from_slice(bytes) {
        Ok(h) => h,
        Err(etherparse::err::tcp::HeaderSliceError::Len(_))
            if ip_payload.len_source == LenSource::Slice && bytes.len() >= TCP_FIXED_HEADER =>
        {
            return cut_options(ts, (src_ip, dst_ip), ip_id, bytes, declared, cut);
        }
        Err(etherparse::err::tcp::HeaderSliceError::Len(len)) => {
            // When the IP length limited the slice, the header does not fit in
            // the packet as sent; otherwise the capture cut it.
            return Err(if ip_payload.len_source == LenSource::Slice {
                let start = captured.saturating_sub(bytes.len());
                DecodeError::Truncated {
                    layer: "tcp",
                    needed: start.saturating_add(len.required_len),
                    got: captured,
                }
            } else {
                DecodeError::Malformed {
                    layer: "tcp",
                    detail: format!(
                        "the TCP header needs {} bytes but the IP length leaves {}",
                        len.required_len, len.len
                    ),
                }
            });
        }
        Err(etherparse::err::tcp::HeaderSliceError::Content(c)) => {
            return Err(DecodeError::Malformed {
                layer: "tcp",
                detail: c.to_string(),
            })
        }
    };
    let header_len = header.slice().len();
    let kept = bytes.get(header_len..).unwrap_or(&[]);
    let payload_len = match declared {
        Some(ip_len) => ip_len
            .checked_sub(header_len)
            .ok_or_else(|| DecodeError::Malformed {
                layer: "tcp",
                detail: format!(
                    "the TCP header is {header_len} bytes but the IP length leaves {ip_len}"
                ),
            })?,
        None => kept.len().saturating_add(cut),
    };
    let payload = kept.get(..payload_len).unwrap_or(kept);
    let (tsval, sack_right) = header.slice().get(20..).map_or((None, None), ts_sack_of);
    let syn = header.syn();
    let window_scale = if syn {
        header
            .options_iterator()
            .map_while(Result::ok)
            .find_map(|o| match o {
                TcpOptionElement::WindowScale(shift) => Some(shift.min(MAX_WINDOW_SCALE)),
                _ => None,
            })
    } else {
        None
    };
    Ok(Decoded::Tcp(TcpSegment {
        ts,
        src: Endpoint::new(src_ip, header.source_port()),
        dst: Endpoint::new(dst_ip, header.destination_port()),
        seq: header.sequence_number(),
        ack: header.acknowledgment_number(),
        flags: TcpFlags {
            syn,
            ack: header.ack(),
            fin: header.fin(),
            rst: header.rst(),
            psh: header.psh(),
        },
        window: header.window_size(),
        window_scale,
        payload,
        payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
        ip_id,
        tsval,
        sack_right,
    }))
}

/// Bytes of a TCP header without options.
const TCP_FIXED_HEADER: usize = 20;

/// A TCP header whose options the snapshot length cut (e.g. `tcpdump -s 60`
/// with timestamps on, or 54 on Ethernet): the fixed 20 bytes are enough
/// for the connection's facts; the options (window scale, TSval) are
/// unknown and the payload is wholly cut. `bytes` holds the captured IP
/// payload, at least [`TCP_FIXED_HEADER`] bytes.
fn cut_options<'a>(
    ts: Timestamp,
    (src_ip, dst_ip): (IpAddr, IpAddr),
    ip_id: u16,
    bytes: &'a [u8],
    declared: Option<usize>,
    cut: usize,
) -> Result<Decoded<'a>, DecodeError> {
    let field = |at: usize| be16(bytes, at).unwrap_or_default();
    let word = |at: usize| u32::from(field(at)) << 16 | u32::from(field(at + 2));
    let (doff, flags) = (
        bytes.get(12).copied().unwrap_or_default(),
        bytes.get(13).copied().unwrap_or_default(),
    );
    let header_len = usize::from(doff >> 4) * 4;
    if header_len < TCP_FIXED_HEADER {
        return Err(DecodeError::Malformed {
            layer: "tcp",
            detail: format!("data offset {header_len} bytes is below the 20-byte minimum"),
        });
    }
    // On the wire: from the IP length, else the captured bytes plus the cut ones.
    let segment_len = declared.unwrap_or_else(|| bytes.len().saturating_add(cut));
    let payload_len =
        segment_len
            .checked_sub(header_len)
            .ok_or_else(|| DecodeError::Malformed {
                layer: "tcp",
                detail: format!(
                    "the TCP header is {header_len} bytes but the IP length leaves {segment_len}"
                ),
            })?;
    Ok(Decoded::Tcp(TcpSegment {
        ts,
        src: Endpoint::new(src_ip, field(0)),
        dst: Endpoint::new(dst_ip, field(2)),
        seq: word(4),
        ack: word(8),
        flags: TcpFlags {
            syn: flags & 0x02 != 0,
            ack: flags & 0x10 != 0,
            fin: flags & 0x01 != 0,
            rst: flags & 0x04 != 0,
            psh: flags & 0x08 != 0,
        },
        window: field(14),
        window_scale: None,
        payload: &[],
        payload_len: u32::try_from(payload_len).unwrap_or(u32::MAX),
        ip_id,
        tsval: None,
        sack_right: None,
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::capture::FileSource;

    /// The TCP options of a real duplicate ACK with a SACK block
    /// (captures/twoend/twoend-lost-c2b-brief.broker.pcap, packet 35), and
    /// other layouts: blocks in any order across the sequence wrap, a list
    /// cut short, malformed lengths.
    #[test]
    fn timestamp_and_sack_options() {
        let real = [
            0x01, 0x01, 0x08, 0x0a, 0x9b, 0x90, 0x29, 0x68, 0xeb, 0x1e, 0xa4, 0xbb, 0x01, 0x01,
            0x05, 0x0a, 0xe4, 0x1b, 0xea, 0x9e, 0xe4, 0x1b, 0xea, 0xa6,
        ];
        assert_eq!(ts_sack_of(&real), (Some(0x9b90_2968), Some(0xe41b_eaa6)));
        assert_eq!(ts_sack_of(&real[..12]), (Some(0x9b90_2968), None));
        // SACK first, two blocks: the later right edge (past the wrap) wins.
        let two = [
            0x05, 0x12, 0xff, 0xff, 0xff, 0x00, 0xff, 0xff, 0xff, 0xf0, 0x00, 0x00, 0x00, 0x10,
            0x00, 0x00, 0x00, 0x20, 0x01, 0x01, 0x08, 0x0a, 0, 0, 0, 7, 0, 0, 0, 0,
        ];
        assert_eq!(ts_sack_of(&two), (Some(7), Some(0x20)));
        // Cut inside the SACK option, or a length that is not 2 + 8n.
        assert_eq!(ts_sack_of(&real[..20]), (Some(0x9b90_2968), None));
        let odd = [0x05, 0x05, 0, 0, 0, 0x01, 0x01];
        assert_eq!(ts_sack_of(&odd), (None, None));
        assert_eq!(ts_sack_of(&[0x05, 0x01, 0x08]), (None, None));
        assert_eq!(ts_sack_of(&[]), (None, None));
    }

    /// Ethernet + IPv4 + a TCP header of `tcp_len` bytes (options: NOPs,
    /// then window scale 7 on a SYN) + `payload` bytes.
    fn packet(syn: bool, tcp_len: usize, payload: usize) -> Vec<u8> {
        let mut p = vec![0u8; 14];
        p[12..14].copy_from_slice(&[0x08, 0x00]);
        let total = u16::try_from(20 + tcp_len + payload).unwrap();
        let mut ip = vec![
            0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 10, 0, 0, 1, 10, 0, 0, 2,
        ];
        ip[2..4].copy_from_slice(&total.to_be_bytes());
        p.extend_from_slice(&ip);
        let mut tcp = vec![0u8; tcp_len];
        tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
        tcp[2..4].copy_from_slice(&5672u16.to_be_bytes());
        tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
        tcp[8..12].copy_from_slice(&2000u32.to_be_bytes());
        tcp[12] = u8::try_from(tcp_len / 4).unwrap() << 4;
        tcp[13] = if syn { 0x02 } else { 0x18 };
        tcp[14..16].copy_from_slice(&512u16.to_be_bytes());
        for b in tcp.iter_mut().skip(20) {
            *b = 1;
        }
        if syn && tcp_len >= 24 {
            tcp[21..24].copy_from_slice(&[3, 3, 7]);
        }
        p.extend_from_slice(&tcp);
        p.extend(std::iter::repeat_n(0xAB, payload));
        p
    }

    fn cut_to(data: &[u8], snaplen: usize) -> Result<Decoded<'_>, DecodeError> {
        let kept = &data[..snaplen.min(data.len())];
        let rec = PacketRecord {
            ts: Timestamp(0),
            caplen: u32::try_from(kept.len()).unwrap(),
            orig_len: u32::try_from(data.len()).unwrap(),
            data: kept,
        };
        decode(LinkType::ETHERNET, &rec)
    }

    /// A TCP header whose options the snapshot length cut still gives the
    /// segment: ports, numbers, flags, window, and the payload length from
    /// the IP header (the payload wholly cut, the options unknown).
    #[test]
    fn tcp_options_cut_by_the_snapshot_length_still_decode() {
        let whole = packet(false, 32, 8);
        let Ok(Decoded::Tcp(full)) = cut_to(&whole, usize::MAX) else {
            panic!("whole packet");
        };
        assert_eq!(full.payload_len, 8);
        for snaplen in 54..66 {
            let Ok(Decoded::Tcp(seg)) = cut_to(&whole, snaplen) else {
                panic!("cut to {snaplen}");
            };
            assert_eq!(
                (seg.src, seg.dst, seg.seq, seg.ack, seg.flags, seg.window),
                (
                    full.src,
                    full.dst,
                    full.seq,
                    full.ack,
                    full.flags,
                    full.window
                ),
                "cut to {snaplen}"
            );
            assert_eq!(seg.payload_len, 8, "cut to {snaplen}");
            assert!(seg.payload.is_empty());
            assert_eq!((seg.tsval, seg.ip_id), (None, 0x1234));
        }
        // A SYN's window scale is unknown once its options are cut.
        let syn = packet(true, 40, 0);
        let Ok(Decoded::Tcp(s)) = cut_to(&syn, usize::MAX) else {
            panic!("syn");
        };
        assert_eq!(s.window_scale, Some(7));
        let Ok(Decoded::Tcp(s)) = cut_to(&syn, 60) else {
            panic!("cut syn");
        };
        assert!(s.flags.syn);
        assert_eq!((s.window_scale, s.payload_len), (None, 0));
        // Fewer than 20 TCP bytes: still an error that names the snapshot length.
        assert!(matches!(
            cut_to(&whole, 53),
            Err(DecodeError::Truncated { layer: "tcp", .. })
        ));
        // An impossible data offset is malformed, cut or not.
        let mut bad = packet(false, 32, 8);
        bad[14 + 20 + 12] = 0x40;
        assert!(matches!(
            cut_to(&bad, 60),
            Err(DecodeError::Malformed { layer: "tcp", .. })
        ));
    }

    /// The hand-read IPv4/TCP path gives exactly what the general path gives,
    /// on every packet of every shipped capture, and also with the captured
    /// bytes cut at every length (where it must step aside or agree).
    #[test]
    fn fast_path_agrees_with_the_general_path() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("captures");
        let mut fast = 0u64;
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if !path
                .extension()
                .is_some_and(|x| x == "pcap" || x == "pcapng")
            {
                continue;
            }
            let Ok(mut src) = FileSource::open(&path) else {
                continue;
            };
            files += 1;
            let link = src.link_type();
            if !is_supported(link) {
                continue;
            }
            let mut n = 0;
            while let Ok(Some(rec)) = src.next_packet() {
                n += 1;
                let cuts: Vec<usize> = if n % 50 == 1 {
                    (0..=rec.data.len()).collect()
                } else {
                    vec![rec.data.len()]
                };
                for cut in cuts {
                    let data = &rec.data[..cut];
                    let r = PacketRecord {
                        data,
                        caplen: u32::try_from(cut).unwrap(),
                        ..rec
                    };
                    let Ok(Some((offset, ether_type))) = link_layer(link, data) else {
                        continue;
                    };
                    let network = &data[offset..];
                    let general = decode_network(&r, data, offset, ether_type, network);
                    if ether_type == EtherType::IPV4 {
                        if let Some(seg) = ipv4_tcp_fast(r.ts, network) {
                            fast += 1;
                            assert_eq!(
                                general,
                                Ok(Decoded::Tcp(seg)),
                                "{}: packet {n} cut at {cut}",
                                path.display()
                            );
                        }
                    }
                    assert_eq!(decode(link, &r), general);
                    // The endpoint peek answers exactly for the fast path's packets, with its endpoints.
                    let peek = fast_head(link, data).map(|h| h.endpoints());
                    let want = match (ether_type == EtherType::IPV4)
                        .then(|| ipv4_tcp_fast(r.ts, network))
                        .flatten()
                    {
                        Some(seg) => {
                            let v4 = |ip| match ip {
                                IpAddr::V4(a) => a.octets(),
                                IpAddr::V6(_) => unreachable!("the fast path is IPv4"),
                            };
                            Some((v4(seg.src.ip), seg.src.port, v4(seg.dst.ip), seg.dst.port))
                        }
                        None => None,
                    };
                    assert_eq!(peek, want, "{}: packet {n} cut at {cut}", path.display());
                }
            }
        }
        assert!(files >= 20, "{files} captures");
        assert!(fast > 5_000, "only {fast} packets took the fast path");
    }
}
