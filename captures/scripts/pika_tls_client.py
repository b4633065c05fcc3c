#!/usr/bin/env python3
"""Idle pika BlockingConnection over TLS (amqps, port 5671) for the hbscope tls* captures.

Same behaviour as pika_client.py (connect, open a channel, loop on process_data_events()
so pika's heartbeat timer runs, for --duration seconds, close cleanly; on a broken
connection log the exception and exit 3), but through an ssl.SSLContext that
  * verifies the broker against captures/tls/ca_certificate.pem (server name 'localhost'),
  * can be limited to TLS 1.2 (--tls 1.2) and a TLS 1.2 cipher list (--ciphers),
  * writes the TLS session secrets in NSS key log format to --keylog (SSLKEYLOGFILE format,
    what Wireshark/tshark read with -o tls.keylog_file:FILE).
"""
import argparse
import os
import ssl
import sys
import time

import pika

HERE = os.path.dirname(os.path.abspath(__file__))


def log(msg):
    t = time.time()
    print('%s.%06d pika_tls_client[%d] %s' % (time.strftime('%H:%M:%S', time.gmtime(t)),
                                             int((t % 1) * 1e6), os.getpid(), msg),
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5671)
    ap.add_argument('--user', default='guest')
    ap.add_argument('--password', default='guest')
    ap.add_argument('--heartbeat', type=int, default=2)
    ap.add_argument('--duration', type=float, default=15)
    ap.add_argument('--name', default='hbscope-pika-tls')
    ap.add_argument('--tls', choices=['1.2', '1.3'], default='1.3')
    ap.add_argument('--ciphers', help='OpenSSL cipher list for TLS <= 1.2 (e.g. ECDHE-RSA-AES128-GCM-SHA256)')
    ap.add_argument('--cafile', default=os.path.join(HERE, '..', 'tls', 'ca_certificate.pem'))
    ap.add_argument('--keylog', help='write TLS secrets here (NSS key log format)')
    a = ap.parse_args()

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(a.cafile)
    if a.tls == '1.3':
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    else:
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if a.ciphers:
        ctx.set_ciphers(a.ciphers)
    if a.keylog:
        ctx.keylog_filename = a.keylog
    params = pika.ConnectionParameters(
        host=a.host, port=a.port,
        credentials=pika.PlainCredentials(a.user, a.password),
        heartbeat=a.heartbeat,
        ssl_options=pika.SSLOptions(ctx, server_hostname='localhost'),
        client_properties={'connection_name': '%s:%d' % (a.name, os.getpid())},
        blocked_connection_timeout=None)
    log('connecting to %s:%d (TLS %s) heartbeat=%d pika=%s %s' % (
        a.host, a.port, a.tls, a.heartbeat, pika.__version__, ssl.OPENSSL_VERSION))
    conn = pika.BlockingConnection(params)
    sock = conn._impl._transport._sock
    log('connected local=%s remote=%s negotiated heartbeat=%s tls=%s cipher=%s' % (
        sock.getsockname()[:2], sock.getpeername()[:2], conn._impl.params.heartbeat,
        sock.version(), sock.cipher()[0]))
    ch = conn.channel()
    log('channel open')
    deadline = time.monotonic() + a.duration
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.25)
            now = time.monotonic()
            if now - last > 2.0:
                log('loop resumed after %.1f s' % (now - last))
            last = now
    except Exception as e:  # noqa: BLE001
        log('connection error: %s: %r' % (type(e).__name__, e))
        sys.exit(3)
    log('closing cleanly')
    conn.close()
    log('closed')


if __name__ == '__main__':
    main()
