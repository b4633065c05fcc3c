#!/usr/bin/env python3
"""Send something that is not AMQP 0-9-1 to the broker's plain AMQP port and log what comes back.

  badinput_client.py MODE --portfile F --gofile G [--host 127.0.0.1] [--port 5672]

MODE:
  tls     a TLS ClientHello (python ssl, TLS 1.2-1.3, SNI 'localhost'): the hello is produced by
          ssl.SSLObject over a MemoryBIO, written to a plain socket, and whatever the broker
          answers is logged raw and then fed back to the TLS engine (which reports the error).
  amqp10  two connections: the AMQP 1.0 protocol header AMQP\\x00\\x01\\x00\\x00, then the
          AMQP 1.0 SASL header AMQP\\x03\\x01\\x00\\x00.
  http    an HTTP/1.1 GET /.

The local ports are bound first and written to --portfile (space separated) so the recording
script can start tcpdump with a filter on exactly these ports (other people's connections to
the shared broker stay out of the capture); then it waits for --gofile to exist.
Every connection reads until EOF/reset (at most --read-timeout s) and logs each chunk (hex +
repr) with timestamps, then how the connection ended.
"""
import argparse
import os
import socket
import ssl
import sys
import time


def log(msg):
    t = time.time()
    print('%s.%06d badinput[%d] %s' % (time.strftime('%H:%M:%S', time.gmtime(t)),
                                      int((t % 1) * 1e6), os.getpid(), msg), flush=True)


def read_all(s, timeout):
    """read until EOF / error / timeout; returns (bytes, how)"""
    s.settimeout(timeout)
    data = b''
    t0 = time.monotonic()
    while True:
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            return data, 'timeout after %.1f s (connection still open)' % (time.monotonic() - t0)
        except ConnectionResetError as e:
            return data, 'reset by broker after %.3f s (%r)' % (time.monotonic() - t0, e)
        if not chunk:
            return data, 'EOF (broker closed) after %.3f s' % (time.monotonic() - t0)
        log('  received %d bytes: hex %s repr %r' % (len(chunk), chunk.hex(), chunk))
        data += chunk


def one(sock, args, payload, label):
    sock.connect((args.host, args.port))
    log('%s: connected %s -> %s' % (label, sock.getsockname()[:2], sock.getpeername()[:2]))
    sock.sendall(payload)
    log('%s: sent %d bytes: hex %s repr %r' % (label, len(payload), payload.hex(), payload[:120]))
    data, how = read_all(sock, args.read_timeout)
    log('%s: got %d bytes in total; %s' % (label, len(data), how))
    return data


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('mode', choices=['tls', 'amqp10', 'http'])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5672)
    ap.add_argument('--portfile', required=True)
    ap.add_argument('--gofile', required=True)
    ap.add_argument('--read-timeout', type=float, default=15)
    ap.add_argument('--pause', type=float, default=1.0, help='between two connections')
    a = ap.parse_args()
    n = 2 if a.mode == 'amqp10' else 1
    socks = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((a.host, 0))
        socks.append(s)
    with open(a.portfile + '.tmp', 'w') as f:
        f.write(' '.join(str(s.getsockname()[1]) for s in socks) + '\n')
    os.rename(a.portfile + '.tmp', a.portfile)
    log('bound local ports %s, waiting for %s' % ([s.getsockname()[1] for s in socks], a.gofile))
    while not os.path.exists(a.gofile):
        time.sleep(0.05)

    if a.mode == 'tls':
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
        obj = ctx.wrap_bio(inc, out, server_hostname='localhost')
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hello = out.read()
        log('python %s, %s: ClientHello record of %d bytes (TLS 1.2-1.3 offered, SNI localhost)'
            % (sys.version.split()[0], ssl.OPENSSL_VERSION, len(hello)))
        data = one(socks[0], a, hello, 'tls')
        inc.write(data)
        inc.write_eof()
        try:
            obj.do_handshake()
            log('tls: handshake completed?!')
        except ssl.SSLError as e:
            log('tls: python ssl on the broker answer: %s: %s' % (type(e).__name__, e))
    elif a.mode == 'amqp10':
        one(socks[0], a, b'AMQP\x00\x01\x00\x00', 'amqp1.0')
        time.sleep(a.pause)
        one(socks[1], a, b'AMQP\x03\x01\x00\x00', 'amqp1.0-sasl')
    else:
        req = ('GET / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: hbscope-capture/1.0\r\n'
               'Accept: */*\r\n\r\n' % (a.host, a.port)).encode()
        one(socks[0], a, req, 'http')
    for s in socks:
        s.close()
    log('done')


if __name__ == '__main__':
    main()
