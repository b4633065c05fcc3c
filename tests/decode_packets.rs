//! `decode::decode` on packets built here: IP/TCP by etherparse's
//! `PacketBuilder`, link-layer headers by hand (so the link parsing is checked
//! against bytes written independently of it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use etherparse::{
    IpHeaders, IpNumber, Ipv6Extensions, Ipv6FragmentHeader, Ipv6Header, Ipv6RawExtHeader,
    PacketBuilder, TcpOptionElement,
};
use hbscope::capture::{LinkType, PacketRecord};
use hbscope::decode::{decode, is_supported, DecodeError, Decoded};
use hbscope::model::{Endpoint, TcpFlags, TcpSegment, Timestamp};
use proptest::prelude::*;

const SRC4: [u8; 4] = [10, 0, 0, 1];
const DST4: [u8; 4] = [10, 0, 0, 2];
const SRC6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
const DST6: [u8; 16] = [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
const PAYLOAD: &[u8] = b"\x08\x00\x00\x00\x00\x00\x00\xce"; // an AMQP heartbeat
const TS: Timestamp = Timestamp(1_700_000_000_123_456_789);

fn record(data: &[u8]) -> PacketRecord<'_> {
    let len = u32::try_from(data.len()).unwrap();
    PacketRecord {
        ts: TS,
        caplen: len,
        orig_len: len,
        data,
    }
}

/// IPv4 + TCP (PSH|ACK) carrying `PAYLOAD`, no link header.
fn ipv4_tcp() -> Vec<u8> {
    let b = PacketBuilder::ipv4(SRC4, DST4, 64)
        .tcp(40000, 5672, 1000, 512)
        .psh()
        .ack(2000);
    let mut out = Vec::new();
    b.write(&mut out, PAYLOAD).unwrap();
    out
}

/// IPv6 + TCP carrying `PAYLOAD`, no link header.
fn ipv6_tcp() -> Vec<u8> {
    let b = PacketBuilder::ipv6(SRC6, DST6, 64)
        .tcp(40000, 5672, 1000, 512)
        .psh()
        .ack(2000);
    let mut out = Vec::new();
    b.write(&mut out, PAYLOAD).unwrap();
    out
}

fn ethernet(ether_type: u16, rest: &[u8]) -> Vec<u8> {
    let mut out = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    out.extend_from_slice(&ether_type.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

fn vlan_tag(tpid: u16, vid: u16, inner: u16) -> Vec<u8> {
    let mut out = tpid.to_be_bytes().to_vec();
    out.extend_from_slice(&vid.to_be_bytes());
    out.extend_from_slice(&inner.to_be_bytes());
    out
}

fn sll(protocol: u16, rest: &[u8]) -> Vec<u8> {
    // packet type 0 (to us), ARPHRD_ETHER, address length 6, address + 2 pad.
    let mut out = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
    out.extend_from_slice(&protocol.to_be_bytes());
    out.extend_from_slice(rest);
    out
}

fn sll2(protocol: u16, rest: &[u8]) -> Vec<u8> {
    let mut out = protocol.to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 0]); // reserved
    out.extend_from_slice(&7u32.to_be_bytes()); // interface index
    out.extend_from_slice(&[0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]); // ARPHRD, type, len, addr
    out.extend_from_slice(rest);
    out
}

fn family(header: [u8; 4], rest: &[u8]) -> Vec<u8> {
    let mut out = header.to_vec();
    out.extend_from_slice(rest);
    out
}

fn expected_v4() -> TcpSegment<'static> {
    TcpSegment {
        ts: TS,
        src: Endpoint::new(IpAddr::V4(Ipv4Addr::from(SRC4)), 40000),
        dst: Endpoint::new(IpAddr::V4(Ipv4Addr::from(DST4)), 5672),
        seq: 1000,
        ack: 2000,
        flags: TcpFlags {
            psh: true,
            ack: true,
            ..TcpFlags::default()
        },
        window: 512,
        window_scale: None,
        payload: PAYLOAD,
        ip_id: 0,
        tsval: None,
        sack_right: None,
        payload_len: 8,
    }
}

fn expected_v6() -> TcpSegment<'static> {
    TcpSegment {
        src: Endpoint::new(IpAddr::V6(Ipv6Addr::from(SRC6)), 40000),
        dst: Endpoint::new(IpAddr::V6(Ipv6Addr::from(DST6)), 5672),
        ..expected_v4()
    }
}

fn decode_tcp(link: LinkType, data: &[u8]) -> TcpSegment<'_> {
    match decode(link, &record(data)) {
        Ok(Decoded::Tcp(t)) => t,
        other => panic!("expected TCP for {link}, got {other:?}"),
    }
}

/// Every supported link type with an IPv4 and an IPv6 packet.
fn link_cases() -> Vec<(&'static str, LinkType, Vec<u8>, TcpSegment<'static>)> {
    let v4 = ipv4_tcp();
    let v6 = ipv6_tcp();
    let mut qinq = vlan_tag(0x88a8, 100, 0x8100);
    qinq.extend(vlan_tag(0x8100, 200, 0x0800)[2..].iter());
    let mut cases = vec![
        (
            "ethernet v4",
            LinkType::ETHERNET,
            ethernet(0x0800, &v4),
            expected_v4(),
        ),
        (
            "ethernet v6",
            LinkType::ETHERNET,
            ethernet(0x86dd, &v6),
            expected_v6(),
        ),
        (
            "vlan",
            LinkType::ETHERNET,
            {
                let mut tag = vlan_tag(0x8100, 42, 0x0800)[2..].to_vec();
                tag.extend_from_slice(&v4);
                ethernet(0x8100, &tag)
            },
            expected_v4(),
        ),
        (
            "qinq",
            LinkType::ETHERNET,
            {
                let mut tags = qinq[2..].to_vec();
                tags.extend_from_slice(&v4);
                ethernet(0x88a8, &tags)
            },
            expected_v4(),
        ),
        (
            "sll v4",
            LinkType::LINUX_SLL,
            sll(0x0800, &v4),
            expected_v4(),
        ),
        (
            "sll v6",
            LinkType::LINUX_SLL,
            sll(0x86dd, &v6),
            expected_v6(),
        ),
        (
            "sll2 v4",
            LinkType::LINUX_SLL2,
            sll2(0x0800, &v4),
            expected_v4(),
        ),
        (
            "sll2 v6",
            LinkType::LINUX_SLL2,
            sll2(0x86dd, &v6),
            expected_v6(),
        ),
        (
            "null le v4",
            LinkType::NULL,
            family([2, 0, 0, 0], &v4),
            expected_v4(),
        ),
        (
            "null be v4",
            LinkType::NULL,
            family([0, 0, 0, 2], &v4),
            expected_v4(),
        ),
        (
            "loop v4",
            LinkType::LOOP,
            family([0, 0, 0, 2], &v4),
            expected_v4(),
        ),
        ("raw 12 v4", LinkType::RAW, v4.clone(), expected_v4()),
        (
            "raw 14 v6",
            LinkType::RAW_OPENBSD,
            v6.clone(),
            expected_v6(),
        ),
        (
            "raw 101 v6",
            LinkType::LINKTYPE_RAW,
            v6.clone(),
            expected_v6(),
        ),
        ("ipv4", LinkType::IPV4, v4.clone(), expected_v4()),
        ("ipv6", LinkType::IPV6, v6.clone(), expected_v6()),
    ];
    for af6 in [10u32, 24, 28, 30] {
        cases.push((
            "null le v6",
            LinkType::NULL,
            family(af6.to_le_bytes(), &v6),
            expected_v6(),
        ));
        cases.push((
            "loop v6",
            LinkType::LOOP,
            family(af6.to_be_bytes(), &v6),
            expected_v6(),
        ));
    }
    cases
}

#[test]
fn every_link_type_decodes_ipv4_and_ipv6() {
    for (name, link, data, expected) in link_cases() {
        assert!(is_supported(link), "{name}");
        assert_eq!(decode_tcp(link, &data), expected, "{name}");
    }
}

#[test]
fn builder_vlan_frame_decodes() {
    let b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .single_vlan(etherparse::VlanId::try_new(7).unwrap())
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 5672, 1000, 512)
        .psh()
        .ack(2000);
    let mut data = Vec::new();
    b.write(&mut data, PAYLOAD).unwrap();
    assert_eq!(data[12..14], [0x81, 0x00]);
    assert_eq!(decode_tcp(LinkType::ETHERNET, &data), expected_v4());
}

#[test]
fn unsupported_link_type_is_an_error() {
    let data = ethernet(0x0800, &ipv4_tcp());
    assert!(!is_supported(LinkType(105))); // IEEE 802.11
    assert_eq!(
        decode(LinkType(105), &record(&data)),
        Err(DecodeError::UnsupportedLinkType(105))
    );
    let msg = DecodeError::UnsupportedLinkType(105).to_string();
    assert!(msg.contains("not supported"), "{msg}");
}

#[test]
fn non_tcp_traffic_is_not_tcp() {
    let mut udp = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(SRC4, DST4, 64)
        .udp(53, 53)
        .write(&mut udp, b"dns")
        .unwrap();
    let mut icmp = Vec::new();
    PacketBuilder::ipv6(SRC6, DST6, 64)
        .icmpv6_echo_request(1, 1)
        .write(&mut icmp, b"ping")
        .unwrap();
    let arp = ethernet(0x0806, &[0u8; 28]);
    let arp_cut = ethernet(0x0806, &[0u8; 5]);
    let llc = ethernet(0x0030, &[0xaa; 48]); // 802.3 length field
    let other_family = family([7, 0, 0, 0], &ipv4_tcp());
    let sll_netlink = sll(0x0000, &[0; 20]);
    assert_eq!(
        decode(LinkType::ETHERNET, &record(&udp)),
        Ok(Decoded::NotTcp)
    );
    assert_eq!(decode(LinkType::IPV6, &record(&icmp)), Ok(Decoded::NotTcp));
    assert_eq!(
        decode(LinkType::ETHERNET, &record(&arp)),
        Ok(Decoded::NotTcp)
    );
    assert_eq!(
        decode(LinkType::ETHERNET, &record(&arp_cut)),
        Ok(Decoded::NotTcp)
    );
    assert_eq!(
        decode(LinkType::ETHERNET, &record(&llc)),
        Ok(Decoded::NotTcp)
    );
    assert_eq!(
        decode(LinkType::NULL, &record(&other_family)),
        Ok(Decoded::NotTcp)
    );
    assert_eq!(
        decode(LinkType::LINUX_SLL, &record(&sll_netlink)),
        Ok(Decoded::NotTcp)
    );
}

/// The fragment of `data` (panics on anything else).
fn fragment(link: LinkType, data: &[u8]) -> hbscope::decode::IpFragment<'_> {
    match decode(link, &record(data)) {
        Ok(Decoded::Fragment(f)) => f,
        other => panic!("expected a fragment for {link}, got {other:?}"),
    }
}

#[test]
fn ipv4_fragments_are_fragments_for_the_reassembler() {
    let whole = ipv4_tcp();
    let mut first = whole.clone();
    first[6] = 0x20; // MF, offset 0
    let f = fragment(LinkType::IPV4, &first);
    assert_eq!((f.offset, f.more, f.wire_len), (0, true, 28));
    assert_eq!(f.data, &whole[20..], "the TCP header and payload as bytes");
    let mut later = whole.clone();
    later[6] = 0x00;
    later[7] = 0x03; // offset 24 bytes, the last
    let f = fragment(LinkType::IPV4, &later);
    assert_eq!((f.offset, f.more), (24, false));
    // A fragment of another protocol is not TCP.
    let mut udp = later.clone();
    udp[9] = 17;
    assert_eq!(decode(LinkType::IPV4, &record(&udp)), Ok(Decoded::NotTcp));
}

fn ipv6_with_exts(exts: Ipv6Extensions) -> Vec<u8> {
    let header = Ipv6Header {
        source: SRC6,
        destination: DST6,
        hop_limit: 64,
        ..Ipv6Header::default()
    };
    let mut out = Vec::new();
    PacketBuilder::ip(IpHeaders::Ipv6(header, exts))
        .tcp(40000, 5672, 1000, 512)
        .psh()
        .ack(2000)
        .write(&mut out, PAYLOAD)
        .unwrap();
    out
}

#[test]
fn ipv6_extension_headers_are_skipped() {
    let hop = Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[0; 6]).unwrap();
    let dest =
        Ipv6RawExtHeader::new_raw(IpNumber::TCP, &[1, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])
            .unwrap();
    let data = ipv6_with_exts(Ipv6Extensions {
        hop_by_hop_options: Some(hop),
        destination_options: Some(dest),
        ..Ipv6Extensions::default()
    });
    assert_eq!(data[6], 0, "next header is hop-by-hop");
    assert_eq!(decode_tcp(LinkType::IPV6, &data), expected_v6());
    // Cut inside the destination options header.
    let cut = &data[..40 + 8 + 4];
    let rec = PacketRecord {
        orig_len: u32::try_from(data.len()).unwrap(),
        ..record(cut)
    };
    assert!(matches!(
        decode(LinkType::IPV6, &rec),
        Err(DecodeError::Truncated {
            layer: "ipv6 extension",
            got: 52,
            ..
        })
    ));
}

#[test]
fn ipv6_fragments_are_fragments_for_the_reassembler() {
    let first = ipv6_with_exts(Ipv6Extensions {
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::TCP,
            etherparse::IpFragOffset::ZERO,
            true,
            9,
        )),
        ..Ipv6Extensions::default()
    });
    let f = fragment(LinkType::IPV6, &first);
    assert_eq!((f.id, f.offset, f.more, f.wire_len), (9, 0, true, 28));
    assert_eq!(f.data, &first[48..]);
    let later = ipv6_with_exts(Ipv6Extensions {
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::TCP,
            etherparse::IpFragOffset::try_new(3).unwrap(),
            false,
            9,
        )),
        ..Ipv6Extensions::default()
    });
    let f = fragment(LinkType::IPV6, &later);
    assert_eq!((f.offset, f.more), (24, false));
    // A Fragment header that does not fragment (offset 0, last) changes nothing.
    let atomic = ipv6_with_exts(Ipv6Extensions {
        fragment: Some(Ipv6FragmentHeader::new(
            IpNumber::TCP,
            etherparse::IpFragOffset::ZERO,
            false,
            9,
        )),
        ..Ipv6Extensions::default()
    });
    assert_eq!(decode_tcp(LinkType::IPV6, &atomic).payload_len, 8);
}

fn tcp_with(options: &[TcpOptionElement], syn: bool, ack: Option<u32>) -> Vec<u8> {
    let mut b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 5672, 1000, 512);
    if syn {
        b = b.syn();
    }
    if let Some(n) = ack {
        b = b.ack(n);
    }
    let b = b.options(options).unwrap();
    let mut out = Vec::new();
    b.write(&mut out, &[]).unwrap();
    out
}

#[test]
fn window_scale_is_read_on_syn_segments_only() {
    use TcpOptionElement::{
        MaximumSegmentSize, Noop, SelectiveAcknowledgementPermitted, WindowScale,
    };
    let opts = [
        MaximumSegmentSize(1460),
        SelectiveAcknowledgementPermitted,
        Noop,
        WindowScale(7),
    ];
    let syn = tcp_with(&opts, true, None);
    let t = decode_tcp(LinkType::ETHERNET, &syn);
    assert_eq!(t.window_scale, Some(7));
    assert_eq!(
        t.flags,
        TcpFlags {
            syn: true,
            ..TcpFlags::default()
        }
    );
    assert_eq!(t.payload_len, 0);

    let syn_ack = tcp_with(&[Noop, WindowScale(0)], true, Some(1001));
    let t = decode_tcp(LinkType::ETHERNET, &syn_ack);
    assert_eq!(t.window_scale, Some(0));
    assert!(t.flags.syn && t.flags.ack);

    // RFC 7323: shifts above 14 are used as 14.
    let big = tcp_with(&[WindowScale(20)], true, None);
    assert_eq!(decode_tcp(LinkType::ETHERNET, &big).window_scale, Some(14));

    let no_option = tcp_with(&[MaximumSegmentSize(1460)], true, None);
    assert_eq!(
        decode_tcp(LinkType::ETHERNET, &no_option).window_scale,
        None
    );

    let not_syn = tcp_with(&[WindowScale(7)], false, Some(1));
    assert_eq!(decode_tcp(LinkType::ETHERNET, &not_syn).window_scale, None);
}

#[test]
fn fin_and_rst_flags() {
    let mut fin = Vec::new();
    PacketBuilder::ipv4(SRC4, DST4, 64)
        .tcp(1, 2, 3, 4)
        .fin()
        .ack(5)
        .write(&mut fin, &[])
        .unwrap();
    let t = decode_tcp(LinkType::RAW, &fin);
    assert_eq!(
        t.flags,
        TcpFlags {
            fin: true,
            ack: true,
            ..TcpFlags::default()
        }
    );
    let mut rst = Vec::new();
    PacketBuilder::ipv4(SRC4, DST4, 64)
        .tcp(1, 2, 3, 4)
        .rst()
        .write(&mut rst, &[])
        .unwrap();
    let t = decode_tcp(LinkType::RAW, &rst);
    assert_eq!(
        t.flags,
        TcpFlags {
            rst: true,
            ..TcpFlags::default()
        }
    );
}

#[test]
fn ethernet_padding_is_not_payload() {
    let mut ack = Vec::new();
    PacketBuilder::ethernet2([1; 6], [2; 6])
        .ipv4(SRC4, DST4, 64)
        .tcp(1, 2, 3, 4)
        .ack(5)
        .write(&mut ack, &[])
        .unwrap();
    assert_eq!(ack.len(), 54);
    ack.resize(60, 0); // minimum Ethernet frame
    let t = decode_tcp(LinkType::ETHERNET, &ack);
    assert_eq!(t.payload_len, 0);
    assert!(t.payload.is_empty());
}

#[test]
fn zero_ip_length_falls_back_to_captured_plus_cut_bytes() {
    // Segmentation offload: the kernel hands tcpdump a packet whose IPv4
    // total length is 0. The capture cut 3 payload bytes.
    let mut data = ipv4_tcp();
    data[2] = 0;
    data[3] = 0;
    let full = u32::try_from(data.len()).unwrap();
    let cut = &data[..data.len() - 3];
    let rec = PacketRecord {
        orig_len: full,
        ..record(cut)
    };
    let Ok(Decoded::Tcp(t)) = decode(LinkType::IPV4, &rec) else {
        panic!("expected TCP");
    };
    assert_eq!(t.payload_len, 8);
    assert_eq!(t.payload, &PAYLOAD[..5]);
}

#[test]
fn malformed_headers_are_reported() {
    let mut bad_offset = ipv4_tcp();
    bad_offset[20 + 12] = 0x40; // TCP data offset 4 words
    assert!(matches!(
        decode(LinkType::IPV4, &record(&bad_offset)),
        Err(DecodeError::Malformed { layer: "tcp", .. })
    ));

    let mut bad_ihl = ipv4_tcp();
    bad_ihl[0] = 0x44; // IPv4, IHL 4 words
    assert!(matches!(
        decode(LinkType::IPV4, &record(&bad_ihl)),
        Err(DecodeError::Malformed { layer: "ip", .. })
    ));

    // The IP total length leaves no room for the TCP header although the
    // bytes are there: the packet as sent is wrong, not the capture.
    let mut short_total = ipv4_tcp();
    short_total[2] = 0;
    short_total[3] = 30;
    assert!(matches!(
        decode(LinkType::IPV4, &record(&short_total)),
        Err(DecodeError::Malformed { layer: "tcp", .. })
    ));

    let not_ip = [0x50u8; 40];
    assert!(matches!(
        decode(LinkType::RAW, &record(&not_ip)),
        Err(DecodeError::Malformed { layer: "ip", .. })
    ));
}

/// Decodes `full` cut to every length. The expected result is computed
/// from where the headers end: Truncated before the fixed 20 bytes of the
/// TCP header are complete (naming the right layer), TCP with the wire
/// payload length after (no payload and no TSval while the options are cut).
fn sweep(link: LinkType, full: &[u8], link_len: usize, ip_len: usize, tcp_len: usize) {
    let orig_len = u32::try_from(full.len()).unwrap();
    let headers = link_len + ip_len + tcp_len;
    let fixed = link_len + ip_len + 20;
    for cut in 0..=full.len() {
        let rec = PacketRecord {
            ts: TS,
            caplen: u32::try_from(cut).unwrap(),
            orig_len,
            data: &full[..cut],
        };
        let result = decode(link, &rec);
        if cut < fixed {
            let Err(DecodeError::Truncated { layer, needed, got }) = result else {
                panic!("{link} cut {cut}: expected Truncated, got {result:?}");
            };
            assert_eq!(got, cut, "{link} cut {cut}");
            assert!(
                needed > cut && needed <= headers,
                "{link} cut {cut}: needed {needed}"
            );
            let expected_layer = if cut < link_len {
                "link"
            } else if cut < link_len + ip_len {
                "ip"
            } else {
                "tcp"
            };
            let layer_kind = match layer {
                "tcp" => "tcp",
                "ip" | "ipv4" | "ipv6" => "ip",
                _ => "link",
            };
            assert_eq!(
                layer_kind, expected_layer,
                "{link} cut {cut}: layer {layer}"
            );
        } else {
            let Ok(Decoded::Tcp(t)) = result else {
                panic!("{link} cut {cut}: expected TCP, got {result:?}");
            };
            assert_eq!(t.payload_len, 8, "{link} cut {cut}");
            let kept = cut.saturating_sub(headers);
            assert_eq!(t.payload, &PAYLOAD[..kept], "{link} cut {cut}");
            assert_eq!(t.seq, 1000);
            if cut < headers {
                assert_eq!(t.tsval, None, "{link} cut {cut}: options cut");
            }
        }
    }
}

#[test]
fn snaplen_sweep_ethernet_ipv4() {
    let full = ethernet(0x0800, &ipv4_tcp());
    sweep(LinkType::ETHERNET, &full, 14, 20, 20);
}

#[test]
fn snaplen_sweep_with_options_and_vlan() {
    let mut b = PacketBuilder::ethernet2([1; 6], [2; 6])
        .single_vlan(etherparse::VlanId::try_new(7).unwrap())
        .ipv4(SRC4, DST4, 64)
        .tcp(40000, 5672, 1000, 512)
        .ack(2000);
    b = b
        .options(&[
            TcpOptionElement::Noop,
            TcpOptionElement::Noop,
            TcpOptionElement::Timestamp(1, 2),
        ])
        .unwrap();
    let mut full = Vec::new();
    b.write(&mut full, PAYLOAD).unwrap();
    // The VLAN tag counts as link layer here.
    sweep(LinkType::ETHERNET, &full, 18, 20, 32);
}

#[test]
fn snaplen_sweep_every_link_type() {
    for (name, link, full, _) in link_cases() {
        let is_v6 = name.contains("v6") || link == LinkType::IPV6;
        let ip_len = if is_v6 { 40 } else { 20 };
        let link_len = full.len() - ip_len - 20 - PAYLOAD.len();
        sweep(link, &full, link_len, ip_len, 20);
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), link in 0usize..11) {
        let links = [
            LinkType::NULL, LinkType::ETHERNET, LinkType::RAW, LinkType::RAW_OPENBSD,
            LinkType::LINKTYPE_RAW, LinkType::LOOP, LinkType::LINUX_SLL, LinkType::IPV4,
            LinkType::IPV6, LinkType::LINUX_SLL2, LinkType(105),
        ];
        let rec = PacketRecord { ts: TS, caplen: 0, orig_len: u32::MAX, data: &data };
        let _ = decode(links[link], &rec);
    }

    #[test]
    fn mutated_packets_never_panic(
        case in 0usize..24,
        flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..6),
        cut in any::<usize>(),
    ) {
        let cases = link_cases();
        let (_, link, mut data, _) = cases[case % cases.len()].clone();
        for (at, value) in flips {
            let i = at % data.len();
            data[i] = value;
        }
        let cut = cut % (data.len() + 1);
        let rec = PacketRecord { ts: TS, caplen: 0, orig_len: 0, data: &data[..cut] };
        if let Ok(Decoded::Tcp(t)) = decode(link, &rec) {
            prop_assert!(t.payload.len() <= usize::try_from(t.payload_len).unwrap());
        }
    }
}
