#!/usr/bin/env python3
"""Simulate one Apache mod_wsgi (MPM prefork) child of nova-api for hbscope captures.

What makes this faithful to the real failure:
  * eventlet.monkey_patch() is called first, as nova does on import
    (nova/monkey_patch.py), so oslo.messaging's `Rabbit-heartbeat` thread is a
    green thread unless [oslo_messaging_rabbit] heartbeat_in_pthread = True.
  * oslo.messaging is configured through oslo.config from a real config file
    (nova.conf style), with a small heartbeat_timeout_threshold so the test is short.
  * Between HTTP requests the process blocks in a NATIVE accept() (the unpatched
    socket module), the way an Apache prefork child sits in apr_socket_accept():
    the eventlet hub does not run, so green threads (the heartbeat) starve.
  * Each HTTP request does an RPC cast through oslo.messaging (nova-api casts to
    conductor/compute), answers 200, and goes back to accept().

SIGTERM/SIGINT: cleans up the transport (Connection.Close) and exits.

Usage:
  nova_api_sim.py --heartbeat-in-pthread false|true [--port 8774]
                  [--url rabbit://guest:guest@127.0.0.1:5672/] [--threshold 4]

Needs an oslo.messaging that still has `heartbeat_in_pthread` (<= 17.x; it was
removed in 18.0). record-nova.sh builds such a venv.
"""
import eventlet

eventlet.monkey_patch()

import argparse  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402

# The process blocks here between requests, outside the eventlet hub.
native_socket = eventlet.patcher.original('socket')

LOG = logging.getLogger('nova_api_sim')


class Stop(Exception):
    pass


def _on_signal(signum, frame):
    raise Stop()


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--heartbeat-in-pthread', choices=['true', 'false'],
                   required=True)
    p.add_argument('--url', default='rabbit://guest:guest@127.0.0.1:5672/')
    p.add_argument('--threshold', type=int, default=4,
                   help='heartbeat_timeout_threshold (s)')
    p.add_argument('--host', default='127.0.0.1')
    p.add_argument('--port', type=int, default=8774)
    p.add_argument('--topic', default='conductor')
    return p.parse_args()


def write_conf(args):
    fd, path = tempfile.mkstemp(prefix='nova-api-sim-', suffix='.conf')
    with os.fdopen(fd, 'w') as f:
        f.write('[DEFAULT]\n'
                'transport_url = %s\n'
                '\n'
                '[oslo_messaging_rabbit]\n'
                'heartbeat_timeout_threshold = %d\n'
                '# heartbeat_rate left at its default\n'
                'heartbeat_in_pthread = %s\n'
                % (args.url, args.threshold, args.heartbeat_in_pthread))
    return path


def read_request(conn):
    data = b''
    while b'\r\n\r\n' not in data:
        chunk = conn.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def main():
    args = parse_args()
    logging.basicConfig(
        stream=sys.stderr, level=logging.DEBUG,
        format='%(asctime)s.%(msecs)03d %(process)d %(threadName)s '
               '%(levelname)s %(name)s: %(message)s',
        datefmt='%Y-%m-%dT%H:%M:%S')
    for noisy in ('stevedore', 'oslo_config', 'oslo.metrics',
                  'oslo_messaging._drivers.pool'):
        logging.getLogger(noisy).setLevel(logging.INFO)

    conf_path = write_conf(args)
    CONF = cfg.CONF  # nova uses the global CONF (nova.conf.CONF)
    CONF(['--config-file', conf_path], project='nova', prog='nova-api-sim')
    transport = oslo_messaging.get_rpc_transport(CONF)
    rabbit = CONF.oslo_messaging_rabbit
    LOG.info('pid=%d argv0=%s oslo.messaging heartbeat_timeout_threshold=%s '
             'heartbeat_rate=%s heartbeat_in_pthread=%s eventlet patched '
             'thread=%s', os.getpid(), os.path.basename(sys.argv[0]),
             rabbit.heartbeat_timeout_threshold, rabbit.heartbeat_rate,
             rabbit.heartbeat_in_pthread,
             eventlet.patcher.is_monkey_patched('thread'))
    target = oslo_messaging.Target(topic=args.topic, version='1.0')
    client = oslo_messaging.get_rpc_client(transport, target)

    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)

    srv = native_socket.socket(native_socket.AF_INET, native_socket.SOCK_STREAM)
    srv.setsockopt(native_socket.SOL_SOCKET, native_socket.SO_REUSEADDR, 1)
    srv.bind((args.host, args.port))
    srv.listen(16)
    LOG.info('listening on %s:%d (native accept)', args.host, args.port)
    sys.stderr.flush()

    n = 0
    try:
        while True:
            # Blocks the whole process (hub included), like Apache prefork.
            conn, peer = srv.accept()
            n += 1
            t0 = time.time()
            req = read_request(conn)
            line = req.split(b'\r\n', 1)[0].decode('latin-1', 'replace')
            LOG.info('HTTP request #%d from %s:%d: %s', n, peer[0], peer[1],
                     line)
            status, body = '200 OK', 'ok\n'
            try:
                client.cast({'request_id': 'req-%d' % n}, 'ping',
                            request=n, sent_at=t0)
                LOG.info('RPC cast #%d done in %.3fs', n, time.time() - t0)
            except Exception as exc:  # nova would answer 500
                LOG.exception('RPC cast #%d failed', n)
                status, body = '500 Internal Server Error', '%s\n' % exc
            resp = ('HTTP/1.1 %s\r\nContent-Type: text/plain\r\n'
                    'Content-Length: %d\r\nConnection: close\r\n\r\n%s'
                    % (status, len(body), body)).encode()
            conn.sendall(resp)
            conn.close()
            sys.stderr.flush()
    except Stop:
        LOG.info('signal received, cleaning up transport')
    finally:
        srv.close()
        transport.cleanup()
        os.unlink(conf_path)
        LOG.info('exit')


if __name__ == '__main__':
    main()
