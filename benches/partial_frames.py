#!/usr/bin/env python3
"""Writes a capture of partial method frames for the memory-budget figure in
docs/robustness.md: FLOWS AMQP connections (client 10.0.0.1:port -> 5672),
each sending the AMQP protocol header and then the first SENT bytes of a
Connection.Start-Ok method frame that claims SIZE payload bytes, never the
rest. hbscope's framer buffers connection methods up to 64 KiB to decode
them, so every flow holds a partial frame to the end. Ethernet/IPv4,
microsecond pcap; OUT may be "-" (standard output).

Usage: benches/partial_frames.py OUT.pcap [FLOWS=8000] [SIZE=60000] [SENT=59000]
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
    flows = int(sys.argv[2]) if len(sys.argv) > 2 else 8000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 60000
    sent = int(sys.argv[4]) if len(sys.argv) > 4 else 59000
    # Method frame: type 1, channel 0, size; class 10 (Connection), method 11 (Start-Ok).
    frame = struct.pack('>BHIHH', 1, 0, size, 10, 11) + b'x' * (sent - 11)
    stream = b'AMQP\x00\x00\x09\x01' + frame
    t = 1_700_000_000_000_000
    f = sys.stdout.buffer if out == '-' else open(out, 'wb')
    f.write(struct.pack('<IHHiIII', 0xa1b2c3d4, 2, 4, 0, 0, 262144, 1))
    for i in range(flows):
        sport = 10000 + i
        for k in range(0, len(stream), 1448):
            t += 10
            p = packet(sport, 1000 + k, stream[k:k + 1448])
            f.write(struct.pack('<IIII', t // 1_000_000, t % 1_000_000, len(p), len(p)))
            f.write(p)
    f.flush()


if __name__ == '__main__':
    main()
