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
