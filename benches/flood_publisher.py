#!/usr/bin/env python3
"""One pika publisher pushing as fast as the broker takes it, for benches/live_keepup.sh.

Publishes BODY-byte messages in a tight loop on one connection (heartbeat 10 s) to a queue
capped at 10,000 messages (x-max-length, drop-head), so the broker's memory stays flat
however long it runs. Every 200 messages it waits for the broker (a channel round trip), so
it goes no faster than the broker accepts and never buffers without bound in the client.
Prints one line at the end: `published N in S s`.
"""
import argparse
import time

import pika


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--host', default='127.0.0.1')
    ap.add_argument('--port', type=int, default=5672)
    ap.add_argument('--duration', type=float, default=30)
    ap.add_argument('--size', type=int, default=512, help='body bytes')
    ap.add_argument('--id', type=int, default=0)
    a = ap.parse_args()
    params = pika.ConnectionParameters(
        host=a.host, port=a.port, heartbeat=10,
        credentials=pika.PlainCredentials('guest', 'guest'),
        client_properties={'connection_name': 'hbscope-keepup-%d' % a.id})
    conn = pika.BlockingConnection(params)
    ch = conn.channel()
    q = 'hbscope.keepup'
    ch.queue_declare(q, arguments={'x-max-length': 10000})
    body = b'k' * a.size
    n = 0
    t0 = time.monotonic()
    end = t0 + a.duration
    while time.monotonic() < end:
        for _ in range(200):
            ch.basic_publish(exchange='', routing_key=q, body=body)
        n += 200
        # A synchronous round trip: the broker has taken everything before it.
        conn.process_data_events(time_limit=0)
        ch.queue_declare(q, passive=True)
    dt = time.monotonic() - t0
    conn.close()
    print('published %d in %.2f s' % (n, dt), flush=True)


if __name__ == '__main__':
    main()
