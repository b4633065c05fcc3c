#!/usr/bin/env python3
"""AMQP connections that come and go, or stay idle, for benches/live_soak.sh and live_tui.sh.

  churn_clients.py idle  --count N [--heartbeat S] [--duration D] [--name NAME]
      opens N connections and keeps them idle (heartbeats serviced) for D seconds.
  churn_clients.py churn --rate R [--hold-min A] [--hold-max B] [--duration D] [--name NAME]
      opens R connections a second (pika BlockingConnection, guest@127.0.0.1:5672), each
      declares nothing, lives a random A..B seconds answering heartbeats, then closes
      (Connection.Close); some (1 in 10) are dropped without a close (socket shut), as a
      crashed client would.

Connection names are NAME-idle-I or NAME-churn-I, so the run's connections can be told from
other clients of the broker. Prints one line at the end:
`opened N closed M failed F max-open K in S s`.
"""
import argparse
import random
import socket
import time

import pika


def connect(name, heartbeat):
    params = pika.ConnectionParameters(
        host='127.0.0.1', port=5672, heartbeat=heartbeat,
        blocked_connection_timeout=None,
        credentials=pika.PlainCredentials('guest', 'guest'),
        client_properties={'connection_name': name})
    return pika.BlockingConnection(params)


def service(conns):
    """Answers heartbeats; returns the connections still open."""
    alive = []
    for item in conns:
        try:
            item[0].process_data_events(time_limit=0)
            alive.append(item)
        except Exception:  # noqa: BLE001 - the broker closed it: forget it
            pass
    return alive


def close(conn, abrupt):
    try:
        if abrupt:
            # No Connection.Close: the socket just goes away (FIN).
            conn._impl._transport._sock.shutdown(socket.SHUT_RDWR)  # pylint: disable=protected-access
        else:
            conn.close()
    except Exception:  # noqa: BLE001
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('mode', choices=['idle', 'churn'])
    ap.add_argument('--count', type=int, default=50)
    ap.add_argument('--rate', type=float, default=5.0)
    ap.add_argument('--hold-min', type=float, default=1.0)
    ap.add_argument('--hold-max', type=float, default=20.0)
    ap.add_argument('--heartbeat', type=int, default=10)
    ap.add_argument('--duration', type=float, default=60.0)
    ap.add_argument('--name', default='hbscope-bench')
    ap.add_argument('--seed', type=int, default=1)
    a = ap.parse_args()
    rnd = random.Random(a.seed)
    t0 = time.monotonic()
    end = t0 + a.duration
    opened = closed = failed = max_open = 0
    conns = []  # (connection, close_at)
    if a.mode == 'idle':
        for i in range(a.count):
            try:
                conns.append((connect('%s-idle-%d' % (a.name, i), a.heartbeat), end))
                opened += 1
            except Exception:  # noqa: BLE001
                failed += 1
        max_open = len(conns)
        print('idle: %d open' % len(conns), flush=True)
        while time.monotonic() < end:
            conns = service(conns)
            time.sleep(0.5)
    else:
        next_open = t0
        last_service = t0
        while time.monotonic() < end:
            now = time.monotonic()
            while next_open <= now:
                next_open += 1.0 / a.rate
                try:
                    c = connect('%s-churn-%d' % (a.name, opened + failed), a.heartbeat)
                    conns.append((c, now + rnd.uniform(a.hold_min, a.hold_max)))
                    opened += 1
                except Exception:  # noqa: BLE001
                    failed += 1
            max_open = max(max_open, len(conns))
            keep = []
            for c, at in conns:
                if at <= now:
                    close(c, rnd.random() < 0.1)
                    closed += 1
                else:
                    keep.append((c, at))
            conns = keep
            if now - last_service >= 0.5:
                conns = service(conns)
                last_service = now
            time.sleep(0.01)
    for c, _ in conns:
        close(c, False)
        closed += 1
    print('opened %d closed %d failed %d max-open %d in %.1f s'
          % (opened, closed, failed, max_open, time.monotonic() - t0), flush=True)


if __name__ == '__main__':
    main()
