#!/usr/bin/env python3
"""Derives IP-fragmented captures from shipped ones, as a path with a small MTU
would have delivered them: chosen TCP segments are sent again as IP fragments
of 16 bytes of IP payload each (so the first fragment does not even hold the
whole TCP header), every other packet is kept byte for byte.

  fragment.py v4 IN.pcap OUT.pcap   IPv4: fragments with the original IP ID,
                                    more-fragments flag, DF cleared
  fragment.py v6 IN.pcap OUT.pcap   IPv6: a Fragment extension header
                                    (identification 0x1000 + packet number)

Segments fragmented (chosen by content, not by position):
  - the client's protocol header (AMQP\\0\\0\\9\\1),
  - Connection.Start (sent in reverse order: last fragment first),
  - Connection.Tune-Ok (the negotiated heartbeat: lost, the limit would
    fall back to the broker's Tune proposal of 60 s and the stall be missed),
  - every other heartbeat frame the broker sent.

Every fragment carries the original packet's timestamp, so a reassembler
that stamps a datagram with its last fragment's time reproduces the
original's silences exactly. Needs scapy (pip install scapy; written with
scapy 2.8.0). Prints what it fragmented.
"""
import sys

from scapy.all import IP, IPv6, IPv6ExtHdrFragment, Raw, TCP, PcapReader, PcapWriter, Ether

PIECE = 16  # bytes of IP payload per fragment (a multiple of 8)
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"


def kind(tcp_payload, sport):
    """What the segment carries, or None when it is left whole."""
    if tcp_payload == b"AMQP\x00\x00\x09\x01":
        return "protocol-header"
    if len(tcp_payload) >= 11 and tcp_payload[0] == 1 and tcp_payload[7:11] == b"\x00\x0a\x00\x0a":
        return "connection.start"
    if len(tcp_payload) >= 11 and tcp_payload[0] == 1 and tcp_payload[7:11] == b"\x00\x0a\x00\x1f":
        return "connection.tune-ok"
    if tcp_payload == HEARTBEAT and sport == 5672:
        return "heartbeat"
    return None


def pieces(data):
    """(offset, chunk, more) for each fragment of `data`."""
    out = []
    for off in range(0, len(data), PIECE):
        chunk = data[off:off + PIECE]
        out.append((off, chunk, off + PIECE < len(data)))
    return out


def fragments_v4(pkt):
    ip = pkt[IP]
    data = bytes(ip.payload)
    out = []
    for off, chunk, more in pieces(data):
        f = IP(src=ip.src, dst=ip.dst, id=ip.id, ttl=ip.ttl, tos=ip.tos, proto=ip.proto,
               flags="MF" if more else 0, frag=off // 8) / Raw(chunk)
        out.append(Ether(src=pkt[Ether].src, dst=pkt[Ether].dst, type=0x0800) / f)
    return out


def fragments_v6(pkt, ident):
    ip = pkt[IPv6]
    data = bytes(ip.payload)
    out = []
    for off, chunk, more in pieces(data):
        f = IPv6(src=ip.src, dst=ip.dst, hlim=ip.hlim, tc=ip.tc, fl=ip.fl, nh=44) / \
            IPv6ExtHdrFragment(nh=6, offset=off // 8, m=1 if more else 0, id=ident) / Raw(chunk)
        out.append(Ether(src=pkt[Ether].src, dst=pkt[Ether].dst, type=0x86DD) / f)
    return out


def main():
    if len(sys.argv) != 4 or sys.argv[1] not in ("v4", "v6"):
        sys.exit(__doc__)
    version, src, dst = sys.argv[1:]
    heartbeats = 0
    # The input's snapshot length (tcpdump writes 262144), kept in the output.
    with open(src, "rb") as f:
        head = f.read(24)
    order = "little" if head[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else "big"
    snaplen = int.from_bytes(head[16:20], order)
    writer = PcapWriter(dst, linktype=1, sync=True, snaplen=snaplen)
    n_in = n_out = 0
    for n, pkt in enumerate(PcapReader(src), start=1):
        n_in += 1
        what = None
        if TCP in pkt:
            what = kind(bytes(pkt[TCP].payload), pkt[TCP].sport)
            if what == "heartbeat":
                heartbeats += 1
                if heartbeats % 2 == 1:
                    what = None
        if what is None:
            writer.write(pkt)
            n_out += 1
            continue
        frags = fragments_v4(pkt) if version == "v4" else fragments_v6(pkt, 0x1000 + n)
        if what == "connection.start":
            frags.reverse()
        for f in frags:
            f.time = pkt.time
            writer.write(f)
            n_out += 1
        print(f"packet {n}: {what}, {len(bytes(pkt[TCP]))} TCP bytes -> {len(frags)} fragments"
              + (" (last first)" if what == "connection.start" else ""))
    writer.close()
    print(f"{src}: {n_in} packets -> {dst}: {n_out} packets")


if __name__ == "__main__":
    main()
