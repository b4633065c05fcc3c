#!/usr/bin/env python3
"""Writes an out-of-order flood capture for the memory-budget figure in
docs/robustness.md: FLOWS AMQP connections (client port 40000+i -> 5672), each
sending the AMQP protocol header, then, behind one missing segment, SEGS
segments of SIZE bytes that reassembly can only buffer (each flow reaches the
1 MiB per-direction cap with the defaults). Ethernet/IPv4, microsecond pcap.

Usage: benches/ooo_flood.py OUT.pcap [FLOWS=600] [SEGS=131] [SIZE=8000]
"""
import struct
import sys


def packet(sport, seq, payload):
    ip_len = 20 + 20 + len(payload)
    eth = b'\x00' * 12 + b'\x08\x00'
    ip = struct.pack('>BBHHHBBH4s4s', 0x45, 0, ip_len, 0, 0x4000, 64, 6, 0,
                     bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]))
    tcp = struct.pack('>HHIIBBHHH', sport, 5672, seq, 1, 0x50, 0x18, 65535, 0, 0)
    return eth + ip + tcp + payload


def main():
    out = sys.argv[1]
    flows = int(sys.argv[2]) if len(sys.argv) > 2 else 600
    segs = int(sys.argv[3]) if len(sys.argv) > 3 else 131
    size = int(sys.argv[4]) if len(sys.argv) > 4 else 8000
    body = b'x' * size
    t = 1_700_000_000_000_000
    with open(out, 'wb') as f:
        f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 262144, 1))

        def rec(p):
            nonlocal t
            t += 10
            f.write(struct.pack('<IIII', t // 1_000_000, t % 1_000_000, len(p), len(p)))
            f.write(p)
        for i in range(flows):
            sport = 40000 + i
            rec(packet(sport, 1000, b'AMQP\x00\x00\x09\x01'))
            for k in range(1, segs + 1):
                rec(packet(sport, 1008 + k * size, body))


if __name__ == '__main__':
    main()
