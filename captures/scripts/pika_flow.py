#!/usr/bin/env python3
"""Steady pika publisher or consumer for the hbscope flow-control captures.

  pika_flow.py publisher --queue Q --size 32768 --rate 4 --duration 20
  pika_flow.py consumer  --queue Q --prefetch 500 --duration 20

Both use a pika BlockingConnection with a heartbeat (default 2 s) and log every event with
a wall-clock timestamp (same format as pika_client.py), so a capture can be lined up with it.

publisher: declares Q, publishes --size byte bodies at --rate messages/s. It logs
  Connection.Blocked / Connection.Unblocked as pika reports them, a progress line every
  second, and every basic_publish call that took longer than 0.5 s (the socket was full:
  BlockingConnection flushes its output before basic_publish returns). With --go-file it
  connects, then waits until that file exists before publishing (the recording script
  starts its capture in between). Between publishes it sleeps with connection.sleep(), so
  pika's heartbeat timers and incoming frames are served.
consumer: declares Q, basic_qos(prefetch), basic_consume with manual acks (one Basic.Ack
  per message), loops on process_data_events(0.25) and logs a progress line every second
  and any jump in its own loop (SIGSTOP).

The queue is declared with x-expires (60 s) and x-max-length, so a failed recording leaves
nothing behind for long and the broker's memory use stays bounded.
If the connection breaks the exception is logged and the process exits with status 3.
"""
import argparse
import os
import sys
import time

import pika


def log(msg):
    t = time.time()
    print('%s.%06d pika_flow[%d] %s' % (time.strftime('%H:%M:%S', time.gmtime(t)),
                                       int((t % 1) * 1e6), os.getpid(), msg), flush=True)


def connect(a):
    params = pika.ConnectionParameters(
        host=a.host, port=a.port,
        credentials=pika.PlainCredentials(a.user, a.password),
        heartbeat=a.heartbeat,
        client_properties={'connection_name': '%s:%d' % (a.name, os.getpid())},
        # no client-side timeout on Connection.Blocked: we want to see the broker's behaviour
        blocked_connection_timeout=None)
    log('%s connecting to %s:%d heartbeat=%d pika=%s' % (a.role, a.host, a.port, a.heartbeat,
                                                        pika.__version__))
    conn = pika.BlockingConnection(params)
    sock = conn._impl._transport._sock
    log('connected local=%s remote=%s negotiated heartbeat=%s' % (
        sock.getsockname()[:2], sock.getpeername()[:2], conn._impl.params.heartbeat))
    ch = conn.channel()
    ch.queue_declare(a.queue, arguments={'x-expires': 60000, 'x-max-length': a.max_length})
    log('channel open, queue %s declared' % a.queue)
    return conn, ch


def publisher(a, conn, ch):
    conn.add_on_connection_blocked_callback(
        lambda _c, m: log('Connection.Blocked received: reason=%r' % m.method.reason))
    conn.add_on_connection_unblocked_callback(
        lambda _c, _m: log('Connection.Unblocked received'))
    if a.go_file:
        log('waiting for %s' % a.go_file)
        while not os.path.exists(a.go_file):
            conn.sleep(0.1)
        log('go')
    body = os.urandom(a.size)
    period = 1.0 / a.rate
    start = time.monotonic()
    deadline = start + a.duration
    nxt = start
    sent = 0
    last_report = start
    while time.monotonic() < deadline:
        t0 = time.monotonic()
        ch.basic_publish(exchange='', routing_key=a.queue, body=body)
        took = time.monotonic() - t0
        sent += 1
        if took > 0.5:
            log('basic_publish #%d took %.2f s (socket full)' % (sent, took))
        now = time.monotonic()
        if now - last_report >= 1.0:
            log('published %d (%d bytes each)' % (sent, a.size))
            last_report = now
        nxt = max(nxt + period, now - period)   # no burst to catch up after a block
        left = nxt - time.monotonic()
        if left > 0:
            conn.sleep(left)
    log('published %d in total' % sent)


def consumer(a, conn, ch):
    got = [0]

    def on_msg(c, method, _props, _body):
        got[0] += 1
        c.basic_ack(method.delivery_tag)
    ch.basic_qos(prefetch_count=a.prefetch)
    ch.basic_consume(a.queue, on_msg, auto_ack=False)
    log('consuming (prefetch %d, manual acks)' % a.prefetch)
    deadline = time.monotonic() + a.duration
    last = last_report = time.monotonic()
    while time.monotonic() < deadline:
        conn.process_data_events(time_limit=0.25)
        now = time.monotonic()
        if now - last > 2.0:
            log('loop resumed after %.1f s' % (now - last))
        last = now
        if now - last_report >= 1.0:
            log('received %d' % got[0])
            last_report = now
    log('received %d in total' % got[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('role', choices=['publisher', 'consumer'])
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5672)
    ap.add_argument('--user', default='guest')
    ap.add_argument('--password', default='guest')
    ap.add_argument('--heartbeat', type=int, default=2)
    ap.add_argument('--queue', default='hbscope.flow')
    ap.add_argument('--max-length', type=int, default=500)
    ap.add_argument('--size', type=int, default=32768, help='publisher: body size in bytes')
    ap.add_argument('--rate', type=float, default=4, help='publisher: messages/s')
    ap.add_argument('--go-file', help='publisher: wait until this file exists to publish')
    ap.add_argument('--prefetch', type=int, default=500, help='consumer: basic_qos prefetch')
    ap.add_argument('--duration', type=float, default=20)
    ap.add_argument('--name', default=None)
    a = ap.parse_args()
    a.name = a.name or 'hbscope-%s' % a.role
    conn, ch = connect(a)
    try:
        (publisher if a.role == 'publisher' else consumer)(a, conn, ch)
    except Exception as e:  # noqa: BLE001 - we want to log whatever pika raises
        log('connection error: %s: %r' % (type(e).__name__, e))
        sys.exit(3)
    log('closing cleanly')
    conn.close()
    log('closed')


if __name__ == '__main__':
    main()
