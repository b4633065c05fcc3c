#!/usr/bin/env python3
"""Idle pika BlockingConnection used by the hbscope capture scenarios.

Connects, optionally declares nothing, then loops on process_data_events() so pika's
heartbeat timer runs, for --duration seconds, and closes cleanly. Every event is
logged with a wall-clock timestamp so the capture can be lined up with it.
If the connection breaks (broker reset, pika heartbeat timeout) the exception is
logged and the process exits with status 3.
"""
import argparse
import logging
import os
import sys
import time

import pika


def log(msg):
    t = time.time()
    print('%s.%06d pika_client[%d] %s' % (time.strftime('%H:%M:%S', time.gmtime(t)),
                                         int((t % 1) * 1e6), os.getpid(), msg),
          flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5672)
    ap.add_argument('--user', default='guest')
    ap.add_argument('--password', default='guest')
    ap.add_argument('--url', help='an amqp://USER:PASSWORD@HOST:PORT URL: overrides --host, '
                    '--port, --user and --password (the credentials then sit in argv as a URL)')
    ap.add_argument('--heartbeat', type=int, default=2)
    ap.add_argument('--duration', type=float, default=15)
    ap.add_argument('--name', default='hbscope-pika')
    ap.add_argument('--name-hex', help='the connection name as hex bytes (for names with '
                    'control characters, which no shell argument carries safely)')
    ap.add_argument('--source-port', type=int,
                    help='bind the client socket to this local port (SO_REUSEADDR) before '
                    'connecting, so a later client can open a new connection on the same 4-tuple')
    ap.add_argument('--rst-on-close', action='store_true',
                    help='SO_LINGER 0: closing the socket (or the process dying) sends RST and '
                    'frees the 4-tuple at once, instead of FIN and a FIN_WAIT socket')
    ap.add_argument('--tune-ok-twice', type=int, metavar='HEARTBEAT',
                    help='after pika\'s own Connection.Tune-Ok, send a second one carrying this '
                    'heartbeat (a protocol violation, to record what the broker does with it)')
    ap.add_argument('--pidfile')
    ap.add_argument('--debug', action='store_true')
    ap.add_argument('--log-heartbeats', action='store_true',
                    help="log pika's heartbeat sends/receipts (logger pika.heartbeat) with "
                    'the same wall-clock timestamps, so a script can act right after a send')
    a = ap.parse_args()
    if a.debug:
        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout,
                            format='%(asctime)s %(name)s %(message)s')
    if a.log_heartbeats:
        class ToLog(logging.Handler):
            def emit(self, record):
                log('pika.heartbeat: %s' % record.getMessage())
        hl = logging.getLogger('pika.heartbeat')
        hl.setLevel(logging.DEBUG)
        hl.addHandler(ToLog())
        hl.propagate = False
    if a.source_port or a.rst_on_close:
        # pika creates and connects the socket itself: set the options on the way.
        import socket
        import struct
        plain_connect = socket.socket.connect

        def connect(sock, addr):
            if addr[1] != a.port:
                # pika's own wake-up socket pair, not the AMQP connection
                return plain_connect(sock, addr)
            if a.rst_on_close:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
            if a.source_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(('', a.source_port))
            return plain_connect(sock, addr)
        socket.socket.connect = connect
    if a.tune_ok_twice is not None:
        from pika import connection as pika_connection, spec

        plain_tune_ok = pika_connection.Connection._send_connection_tune_ok

        def tune_ok_twice(conn):
            plain_tune_ok(conn)
            conn._send_method(0, spec.Connection.TuneOk(conn.params.channel_max,
                                                        conn.params.frame_max, a.tune_ok_twice))
            log('sent a second Connection.Tune-Ok (heartbeat %d)' % a.tune_ok_twice)
        pika_connection.Connection._send_connection_tune_ok = tune_ok_twice
    if a.pidfile:
        with open(a.pidfile, 'w') as f:
            f.write('%d\n' % os.getpid())
    if a.url:
        u = pika.URLParameters(a.url)
        a.host, a.port = u.host, u.port
        credentials = u.credentials
    else:
        credentials = pika.PlainCredentials(a.user, a.password)
    params = pika.ConnectionParameters(
        host=a.host, port=a.port,
        credentials=credentials,
        heartbeat=a.heartbeat,
        client_properties={'connection_name': (bytes.fromhex(a.name_hex).decode('utf-8')
                                               if a.name_hex else
                                               '%s:%d' % (a.name, os.getpid()))},
        # keep pika's own 'blocked connection' machinery out of the picture
        blocked_connection_timeout=None)
    log('connecting to %s:%d heartbeat=%d pika=%s' % (a.host, a.port, a.heartbeat,
                                                     pika.__version__))
    conn = pika.BlockingConnection(params)
    sock = conn._impl._transport._sock
    log('connected local=%s remote=%s negotiated heartbeat=%s' % (
        sock.getsockname()[:2], sock.getpeername()[:2], conn._impl.params.heartbeat))
    ch = conn.channel()
    log('channel open')
    deadline = time.monotonic() + a.duration
    last = time.monotonic()
    try:
        while time.monotonic() < deadline:
            conn.process_data_events(time_limit=0.25)
            now = time.monotonic()
            if now - last > 2.0:
                # a jump in our own loop: we were stopped (SIGSTOP) or starved
                log('loop resumed after %.1f s' % (now - last))
            last = now
    except Exception as e:  # noqa: BLE001 - we want to log whatever pika raises
        log('connection error: %s: %r' % (type(e).__name__, e))
        sys.exit(3)
    log('closing cleanly')
    conn.close()
    log('closed')


if __name__ == '__main__':
    main()
