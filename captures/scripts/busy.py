#!/usr/bin/env python3
"""Busy AMQP traffic for the hbscope captures: N publisher/consumer pairs.

Each pair is two connections (one publisher, one consumer with manual acks) on its own
queue. Even pairs use py-amqp directly, odd pairs use kombu (which drives py-amqp).
Message sizes mix small (~100 B) bodies with 4-16 KB bodies. Every connection calls the
library's heartbeat check about 4 times a second, so no direction ever falls silent.
"""
import argparse
import os
import random
import socket
import threading
import time

import amqp
import kombu

stop = threading.Event()
counts = {}
lock = threading.Lock()


def log(msg):
    t = time.time()
    print('%s.%06d busy[%d] %s' % (time.strftime('%H:%M:%S', time.gmtime(t)),
                                  int((t % 1) * 1e6), os.getpid(), msg), flush=True)


def body(rng, large_every):
    if large_every and rng.randrange(large_every) == 0:
        return os.urandom(rng.randint(4096, 16384))
    return b'x' * rng.randint(20, 200)


def bump(key):
    with lock:
        counts[key] = counts.get(key, 0) + 1


def amqp_conn(a, role, i):
    c = amqp.Connection('%s:%d' % (a.host, a.port), userid=a.user, password=a.password,
                        heartbeat=a.heartbeat,
                        client_properties={'connection_name': 'hbscope-busy-%s-%d:%d'
                                           % (role, i, os.getpid())})
    c.connect()
    return c


def drain(conn, timeout):
    try:
        conn.drain_events(timeout=timeout)
    except socket.timeout:
        pass


def amqp_publisher(a, i, q):
    rng = random.Random(i)
    c = amqp_conn(a, 'pub', i)
    ch = c.channel()
    ch.queue_declare(q, auto_delete=False)
    period = 1.0 / a.rate
    nxt = time.monotonic()
    while not stop.is_set():
        ch.basic_publish(amqp.Message(body(rng, a.large_every)), exchange='', routing_key=q)
        bump('pub')
        nxt += period
        while True:
            drain(c, 0.001)       # read broker heartbeats so heartbeat_tick is happy
            c.heartbeat_tick()
            left = nxt - time.monotonic()
            if left <= 0:
                break
            time.sleep(min(left, 0.25))
    c.close()


def amqp_consumer(a, i, q):
    c = amqp_conn(a, 'con', i)
    ch = c.channel()
    ch.queue_declare(q, auto_delete=False)
    ch.basic_qos(0, 20, False)

    def on_msg(m):
        bump('con')
        ch.basic_ack(m.delivery_tag)
    ch.basic_consume(q, callback=on_msg)
    while not stop.is_set():
        drain(c, 0.25)
        c.heartbeat_tick()
    c.close()


def kombu_publisher(a, i, q):
    rng = random.Random(i)
    with kombu.Connection(hostname=a.host, port=a.port, userid=a.user, password=a.password,
                          heartbeat=a.heartbeat, transport_options={
                              'client_properties': {'connection_name': 'hbscope-busy-kpub-%d:%d'
                                                    % (i, os.getpid())}}) as c:
        queue = kombu.Queue(q, routing_key=q, auto_delete=False)
        prod = c.Producer(serializer='raw')
        period = 1.0 / a.rate
        nxt = time.monotonic()
        while not stop.is_set():
            prod.publish(body(rng, a.large_every), routing_key=q, declare=[queue],
                         content_type='application/octet-stream', content_encoding='binary')
            bump('pub')
            nxt += period
            while True:
                try:
                    c.drain_events(timeout=0.001)
                except socket.timeout:
                    pass
                c.heartbeat_check(rate=2)
                left = nxt - time.monotonic()
                if left <= 0:
                    break
                time.sleep(min(left, 0.25))


def kombu_consumer(a, i, q):
    with kombu.Connection(hostname=a.host, port=a.port, userid=a.user, password=a.password,
                          heartbeat=a.heartbeat, transport_options={
                              'client_properties': {'connection_name': 'hbscope-busy-kcon-%d:%d'
                                                    % (i, os.getpid())}}) as c:
        queue = kombu.Queue(q, routing_key=q, auto_delete=False)

        def on_msg(b, m):
            bump('con')
            m.ack()
        with c.Consumer([queue], callbacks=[on_msg], prefetch_count=20, accept=None):
            while not stop.is_set():
                try:
                    c.drain_events(timeout=0.25)
                except socket.timeout:
                    pass
                c.heartbeat_check(rate=2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5672)
    ap.add_argument('--user', default='guest')
    ap.add_argument('--password', default='guest')
    ap.add_argument('--heartbeat', type=int, default=4)
    ap.add_argument('--pairs', type=int, default=2)
    ap.add_argument('--rate', type=float, default=10, help='messages/s per publisher')
    ap.add_argument('--large-every', type=int, default=4,
                    help='one message in N is 4-16 KB (0: never)')
    ap.add_argument('--duration', type=float, default=15)
    ap.add_argument('--pidfile')
    a = ap.parse_args()
    if a.pidfile:
        with open(a.pidfile, 'w') as f:
            f.write('%d\n' % os.getpid())
    log('py-amqp %s kombu %s: %d pairs, %.1f msg/s per publisher, heartbeat %d'
        % (amqp.__version__, kombu.__version__, a.pairs, a.rate, a.heartbeat))
    threads = []
    errors = []

    def run(fn, *args):
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001
            errors.append(e)
            log('%s%r failed: %s: %r' % (fn.__name__, args[1:], type(e).__name__, e))
    for i in range(a.pairs):
        q = 'hbscope.busy.%d' % i
        cons, pub = (amqp_consumer, amqp_publisher) if i % 2 == 0 else \
            (kombu_consumer, kombu_publisher)
        for fn in (cons, pub):
            t = threading.Thread(target=run, args=(fn, a, i, q), daemon=True)
            t.start()
            threads.append(t)
            time.sleep(0.05)
    log('all %d connections started' % (2 * a.pairs))
    time.sleep(a.duration)
    stop.set()
    for t in threads:
        t.join(5)
    log('done: published %d consumed %d errors %d' % (counts.get('pub', 0),
                                                       counts.get('con', 0), len(errors)))


if __name__ == '__main__':
    main()
