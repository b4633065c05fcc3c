#!/usr/bin/env python3
"""Check a nova-api capture with tshark and write its NAME.expect.json.

  verify_nova.py eventlet|pthread --pcap F [--client-log L] [--rabbit-log R]
                 [--write-expect OUT.json]

Independent of hbscope: reads the capture with tshark only, and fails (exit 1) if
the capture does not show what the case must show:

  eventlet: 2 AMQP connections, both Tune-Ok heartbeat 4; on the first the client
            sends no new byte for > 4 s while the broker keeps sending heartbeats
            and the client's kernel keeps ACKing them; the broker closes the socket
            (FIN or RST) without Connection.Close; an inbound HTTP connection
            (port 8774) starts after that and before the client's next AMQP byte
            (the reconnection); no other silence > 4 s.
  pthread:  1 AMQP connection, Tune-Ok heartbeat 4, no silence > 4 s in either
            direction, closed by the client (Connection.Close) at the end.

Silence of a direction = time between consecutive NEW payload bytes in that
direction (retransmissions do not count), or from the last one to the end of the
connection (FIN/RST) or of the capture.
"""
import argparse
import datetime
import json
import os
import re
import subprocess
import sys

AMQP_PORT = 5672
HTTP_PORT = 8774
FIELDS = ['frame.number', 'frame.time_relative', 'frame.time_epoch',
          'tcp.srcport', 'tcp.dstport', 'tcp.flags.syn', 'tcp.flags.ack',
          'tcp.flags.fin', 'tcp.flags.reset', 'tcp.len', 'tcp.seq', 'tcp.ack',
          'amqp.method.class', 'amqp.method.method',
          'amqp.method.arguments.heartbeat', 'amqp.type', 'tcp.payload']


def tshark(pcap):
    cmd = ['tshark', '-r', pcap, '-o', 'tcp.relative_sequence_numbers:TRUE',
           '-d', 'tcp.port==%d,amqp' % AMQP_PORT, '-T', 'fields',
           '-E', 'separator=|', '-E', 'occurrence=a', '-E', 'aggregator=,']
    for f in FIELDS:
        cmd += ['-e', f]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    pkts = []
    for line in out.splitlines():
        v = dict(zip(FIELDS, line.split('|')))
        pkts.append(v)
    return pkts


class Flow:
    def __init__(self, server_port, client_port):
        self.server_port = server_port
        self.client_port = client_port
        self.syn_t = None
        self.data = {'c2s': [], 's2c': []}   # (t, frame) of packets with new bytes
        self.next_seq = {'c2s': 0, 's2c': 0}
        self.acks = {'c2s': [], 's2c': []}    # (t, ack) of pure ACKs
        self.fin = {'c2s': None, 's2c': None}
        self.rst = {'c2s': None, 's2c': None}
        self.methods = []                     # (t, dir, class, method)
        self.heartbeats = {'c2s': [], 's2c': []}  # t of packets holding heartbeat frames
        self.tune_ok_hb = None
        self.tune_hb = None
        self.connection_name = None
        self.pid = None
        self.retrans = 0

    def end_t(self):
        ts = [t for d in ('c2s', 's2c') for t in (self.fin[d], self.rst[d]) if t]
        return min(ts) if ts else None


def build_flows(pkts):
    flows = {}
    last_t = 0.0
    for p in pkts:
        if not p.get('tcp.srcport'):
            continue
        t = float(p['frame.time_relative'])
        last_t = t
        sp, dp = int(p['tcp.srcport']), int(p['tcp.dstport'])
        if dp in (AMQP_PORT, HTTP_PORT):
            key, d = (dp, sp), 'c2s'
        elif sp in (AMQP_PORT, HTTP_PORT):
            key, d = (sp, dp), 's2c'
        else:
            continue
        syn = p['tcp.flags.syn'] in ('1', 'True')
        if key not in flows or (syn and d == 'c2s' and flows[key].syn_t is not None
                                and flows[key].end_t() is not None):
            flows[key] = Flow(*key)
            flows[key].first_frame = int(p['frame.number'])
        fl = flows[key]
        if syn and d == 'c2s':
            fl.syn_t = t
            fl.syn_epoch = float(p['frame.time_epoch'])
        ln = int(p['tcp.len'] or 0)
        seq = int(p['tcp.seq'] or 0)
        if ln > 0:
            if seq + ln > fl.next_seq[d]:
                fl.data[d].append((t, int(p['frame.number'])))
                fl.next_seq[d] = seq + ln
            else:
                fl.retrans += 1
        elif not syn and p['tcp.flags.fin'] not in ('1', 'True') \
                and p['tcp.flags.reset'] not in ('1', 'True'):
            fl.acks[d].append((t, int(p['tcp.ack'] or 0)))
        if p['tcp.flags.fin'] in ('1', 'True') and fl.fin[d] is None:
            fl.fin[d] = t
        if p['tcp.flags.reset'] in ('1', 'True') and fl.rst[d] is None:
            fl.rst[d] = t
        if key[0] == AMQP_PORT and '8' in p['amqp.type'].split(','):
            fl.heartbeats[d].append(t)
        if key[0] == AMQP_PORT and p['amqp.method.class']:
            cls = p['amqp.method.class'].split(',')
            mth = p['amqp.method.method'].split(',')
            for c, m in zip(cls, mth):
                fl.methods.append((t, d, int(c), int(m)))
                if (int(c), int(m)) == (10, 31) and p['amqp.method.arguments.heartbeat']:
                    fl.tune_ok_hb = int(p['amqp.method.arguments.heartbeat'].split(',')[0])
                if (int(c), int(m)) == (10, 30) and p['amqp.method.arguments.heartbeat']:
                    fl.tune_hb = int(p['amqp.method.arguments.heartbeat'].split(',')[0])
                if (int(c), int(m)) == (10, 11) and p['tcp.payload']:
                    raw = bytes.fromhex(p['tcp.payload'].replace(':', ''))
                    i = raw.find(b'\x0fconnection_nameS')
                    if i >= 0:
                        j = i + len(b'\x0fconnection_nameS')
                        n = int.from_bytes(raw[j:j + 4], 'big')
                        fl.connection_name = raw[j + 4:j + 4 + n].decode()
                        parts = fl.connection_name.split(':')
                        if len(parts) == 3 and parts[1].isdigit():
                            fl.pid = int(parts[1])
    ordered = sorted(flows.values(), key=lambda f: f.first_frame)
    return ordered, last_t


def silences(fl, d, capture_end):
    """[(start, end, end_kind)] of silences of direction d."""
    ts = [t for t, _ in fl.data[d]]
    out = []
    for a, b in zip(ts, ts[1:]):
        out.append((a, b, 'next-byte'))
    if ts:
        end = fl.end_t()
        out.append((ts[-1], end if end is not None else capture_end,
                    'connection-end' if end is not None else 'capture-end'))
    return out


def fmt(t):
    return '%.3f' % t


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('case', choices=['eventlet', 'pthread'])
    ap.add_argument('--pcap', required=True)
    ap.add_argument('--client-log')
    ap.add_argument('--rabbit-log')
    ap.add_argument('--write-expect')
    ap.add_argument('--timeout', type=float, default=4.0)
    args = ap.parse_args()

    pkts = tshark(args.pcap)
    flows, capture_end = build_flows(pkts)
    amqp = [f for f in flows if f.server_port == AMQP_PORT]
    http = [f for f in flows if f.server_port == HTTP_PORT]
    problems = []

    def need(cond, msg):
        if not cond:
            problems.append(msg)

    hbs = {f.tune_ok_hb for f in amqp}
    print('AMQP connections: %d, HTTP connections: %d, capture end t=%s'
          % (len(amqp), len(http), fmt(capture_end)))
    for f in amqp:
        print('  AMQP client port %d: SYN t=%s Tune hb=%s Tune-Ok hb=%s name=%s '
              'end t=%s (FIN c2s=%s s2c=%s, RST c2s=%s s2c=%s) retrans=%d'
              % (f.client_port, fmt(f.syn_t), f.tune_hb, f.tune_ok_hb,
                 f.connection_name, f.end_t(), f.fin['c2s'], f.fin['s2c'],
                 f.rst['c2s'], f.rst['s2c'], f.retrans))
    for f in http:
        print('  HTTP client port %d: SYN t=%s' % (f.client_port, fmt(f.syn_t)))
    need(hbs == {int(args.timeout)}, 'Tune-Ok heartbeat values %s' % hbs)
    for f in amqp:
        need(f.connection_name and f.pid, 'no connection_name <argv0>:<pid>:<uuid> on %d'
             % f.client_port)
        need(all(fl.retrans == 0 for fl in flows), 'retransmissions present')

    gaps = []
    long_sil = []
    for f in amqp:
        for d in ('c2s', 's2c'):
            for a, b, kind in silences(f, d, capture_end):
                if b - a > args.timeout:
                    long_sil.append((f, d, a, b, kind))
    for f, d, a, b, kind in long_sil:
        print('  silence > %gs: port %d %s from t=%s to t=%s (%.3f s, ends: %s)'
              % (args.timeout, f.client_port, d, fmt(a), fmt(b), b - a, kind))

    rabbit_lines = []
    if args.rabbit_log and os.path.exists(args.rabbit_log):
        rabbit_lines = open(args.rabbit_log).read().splitlines()
    client_lines = []
    if args.client_log and os.path.exists(args.client_log):
        client_lines = open(args.client_log).read().splitlines()

    def rabbit_missed(port):
        for i, line in enumerate(rabbit_lines):
            if ('127.0.0.1:%d ->' % port) in line and 'closing AMQP connection' in line \
                    and i + 1 < len(rabbit_lines) and 'missed heartbeats' in rabbit_lines[i + 1]:
                return line.split(' [')[0], rabbit_lines[i + 1].split('> ', 1)[-1].strip()
        return None

    notes = []
    pids = sorted({f.pid for f in amqp if f.pid})
    names = sorted({f.connection_name for f in amqp if f.connection_name})

    if args.case == 'eventlet':
        need(len(amqp) == 2, 'expected 2 AMQP connections, got %d' % len(amqp))
        need(len(http) == 2, 'expected 2 HTTP connections, got %d' % len(http))
        need(len(long_sil) == 1, 'expected exactly 1 silence > timeout, got %d' % len(long_sil))
        if problems:
            fail(problems)
        c1, c2 = amqp
        f, d, a, b, kind = long_sil[0]
        need(f is c1 and d == 'c2s' and kind == 'connection-end',
             'the silence is not client-to-broker on the first connection ending with its end')
        need(not any(m[1] == 's2c' and (m[2], m[3]) == (10, 50) for m in c1.methods),
             'broker sent Connection.Close on the first connection')
        broker_end = min(x for x in (c1.fin['s2c'], c1.rst['s2c']) if x is not None)
        need(c1.fin['c2s'] is None and c1.rst['c2s'] is None or
             min(x for x in (c1.fin['c2s'], c1.rst['c2s']) if x is not None) > broker_end,
             'client closed first')
        end_kind = 'RST' if c1.rst['s2c'] == broker_end else 'FIN'
        hb_in_gap = [t for t in c1.heartbeats['s2c'] if a < t < b]
        acks_in_gap = [(t, k) for t, k in c1.acks['c2s'] if hb_in_gap and hb_in_gap[0] <= t <= b]
        need(len(hb_in_gap) >= 2, 'broker sent < 2 heartbeats during the silence')
        need(len([t for t, _ in c1.data['s2c'] if hb_in_gap[0] <= t < b]) == len(hb_in_gap),
             'broker sent other data than heartbeats during the silence')
        need(len(acks_in_gap) >= len(hb_in_gap) and
             all(y[1] > x[1] for x, y in zip(acks_in_gap, acks_in_gap[1:])),
             'client kernel did not keep ACKing with advancing ack numbers')
        resume = c2.data['c2s'][0][0]
        wake = [h for h in http if b <= h.syn_t < resume]
        need(len(wake) == 1, 'no inbound HTTP connection between the reset and the resume')
        need(c2.connection_name == c1.connection_name,
             'reconnection uses another connection_name (unexpected, not fatal)')
        need(c2.syn_t >= wake[0].syn_t if wake else False, 'order')
        rl = rabbit_missed(c1.client_port)
        need(rl is not None or not rabbit_lines,
             'broker log has no "missed heartbeats from client" for port %d' % c1.client_port)
        if problems:
            fail(problems)
        wake_t = wake[0].syn_t
        gaps.append({'direction': 'client-to-broker', 'cause': 'client-stall',
                     'consequence': 'broker-reset', 'wakeup': True})
        last_m = [m for m in c1.methods if m[1] == 'c2s' and m[0] == a]
        last_m = ('%d.%d' % last_m[-1][2:]).replace('60.40', 'Basic.Publish of the cast') \
            if last_m else 'no method'
        hb_period = (hb_in_gap[-1] - hb_in_gap[0]) / max(1, len(hb_in_gap) - 1)
        notes.append(
            'observed timings (capture-relative): first HTTP request SYN t=%s; AMQP '
            'connection 1 (client port %d) opened t=%s, client\'s last byte t=%s '
            '(%s); client silent %.3f s while the broker sent %d '
            'heartbeats (every %.2f s) and the client kernel ACKed each (%d pure ACKs, ack '
            'numbers advancing; %d bytes left unread in the client\'s receive queue); broker %s at '
            't=%s (no Connection.Close); HTTP SYN t=%s; client resumes t=%s (SYN of AMQP '
            'connection 2, client port %d, first AMQP byte t=%s: %.3f s after the HTTP SYN '
            'because oslo.messaging waits rabbit_retry_interval=1 s before reconnecting); '
            'connection 2 closed cleanly by the client (Connection.Close at t=%s, broker '
            'answers Close-Ok then RST: RabbitMQ closes with linger 0)'
            % (fmt(http[0].syn_t), c1.client_port, fmt(c1.syn_t), fmt(a), last_m, b - a,
               len(hb_in_gap), hb_period, len(acks_in_gap), 8 * len(hb_in_gap),
               end_kind, fmt(broker_end), fmt(wake_t), fmt(c2.syn_t), c2.client_port,
               fmt(resume), resume - wake_t,
               fmt(next((m[0] for m in c2.methods if m[1] == 'c2s' and (m[2], m[3]) == (10, 50)), float('nan')))))
        notes.append('pid %s; both connections carry connection_name %s (oslo.messaging '
                     'reuses its uuid on reconnect)' % (', '.join(map(str, pids)),
                                                        ' / '.join(names)))
        if rl:
            notes.append('broker log: %s closing AMQP connection (127.0.0.1:%d -> '
                         '127.0.0.1:5672 - %s): %s'
                         % (rl[0], c1.client_port, c1.connection_name, rl[1]))
        cl = [l for l in client_lines if 'Connection reset by peer' in l
              and ('unreachable' in l or 'ERROR' in l)]
        if cl:
            notes.append('client log: ' + re.sub(r'^\S+ \d+ ', '', cl[0]))
        description = ('nova-api under mod_wsgi prefork + eventlet (simulated): green '
                       'Rabbit-heartbeat thread starves while the process blocks in native '
                       'accept(); RabbitMQ resets the connection; the next HTTP request wakes '
                       'the process, which reconnects')
    else:
        need(len(amqp) == 1, 'expected 1 AMQP connection, got %d' % len(amqp))
        need(len(http) == 2, 'expected 2 HTTP connections, got %d' % len(http))
        need(not long_sil, 'silences > timeout present')
        if problems:
            fail(problems)
        c1 = amqp[0]
        need(any(m[1] == 'c2s' and (m[2], m[3]) == (10, 50) for m in c1.methods),
             'no client Connection.Close at the end')
        need(not rabbit_missed(c1.client_port), 'broker log reports missed heartbeats')
        if problems:
            fail(problems)
        mx = {d: max((b - a for a, b, k in silences(c1, d, capture_end)
                      if k == 'next-byte'), default=0) for d in ('c2s', 's2c')}
        n_hb_c = sum(1 for t, _ in c1.data['c2s'] if http[0].syn_t + 0.5 < t < http[1].syn_t)
        close_t = next(m[0] for m in c1.methods if m[1] == 'c2s' and (m[2], m[3]) == (10, 50))
        notes.append(
            'observed timings (capture-relative): HTTP SYNs at t=%s and t=%s; one AMQP '
            'connection (client port %d) from t=%s to the client\'s Connection.Close at '
            't=%s; between the requests the native Rabbit-heartbeat thread kept sending '
            '(%d client packets with new bytes while the main thread sat in accept()); '
            'longest silence client-to-broker %.3f s, broker-to-client %.3f s (timeout 4 s); '
            'the second request reused the connection'
            % (fmt(http[0].syn_t), fmt(http[1].syn_t), c1.client_port, fmt(c1.syn_t),
               fmt(close_t), n_hb_c, mx['c2s'], mx['s2c']))
        notes.append('pid %s; connection_name %s' % (', '.join(map(str, pids)),
                                                       ' / '.join(names)))
        notes.append('broker log: no "missed heartbeats" line for this connection')
        description = ('nova-api under mod_wsgi prefork + eventlet (simulated) with the '
                       'historical fix heartbeat_in_pthread = True: the native heartbeat '
                       'thread keeps the connection alive while the process blocks in '
                       'native accept()')

    print('OK')
    for n in notes:
        print('  ' + n)
    if args.write_expect:
        write_expect(args, description, len(amqp), hbs, gaps, notes, flows)


def versions():
    import importlib.metadata as m
    v = {}
    for p in ('oslo.messaging', 'kombu', 'amqp', 'eventlet', 'oslo.config'):
        try:
            v[p] = m.version(p)
        except Exception:
            v[p] = '?'
    try:
        rmq = subprocess.run(['rabbitmqctl', 'version'], capture_output=True,
                             text=True, timeout=30).stdout.strip()
    except Exception:
        rmq = '?'
    try:
        td = subprocess.run(['tcpdump', '--version'], capture_output=True,
                            text=True).stdout.splitlines()[0]
    except Exception:
        td = '?'
    return v, rmq, td


def write_expect(args, description, nconn, hbs, gaps, notes, flows):
    v, rmq, td = versions()
    syn = min(f.syn_epoch for f in flows if f.syn_t is not None)
    date = datetime.datetime.fromtimestamp(syn, datetime.timezone.utc).strftime(
        '%Y-%m-%dT%H:%M:%SZ')
    pthread = 'True' if args.case == 'pthread' else 'False'
    doc = {
        'description': description,
        'provenance': [
            'captures/scripts/record-nova.sh (captures/scripts/nova_api_sim.py '
            '--heartbeat-in-pthread %s, driven by curl: request, %s s idle, request)'
            % (pthread.lower(), os.environ.get('NOVA_IDLE_S', '22')),
            'python %s; oslo.messaging %s (last release with heartbeat_in_pthread), '
            'kombu %s, amqp (py-amqp) %s, eventlet %s, oslo.config %s'
            % (sys.version.split()[0], v['oslo.messaging'], v['kombu'], v['amqp'],
               v['eventlet'], v['oslo.config']),
            '[oslo_messaging_rabbit] heartbeat_timeout_threshold = 4, heartbeat_rate = 3 '
            '(default), heartbeat_in_pthread = %s' % pthread,
            'RabbitMQ %s on 127.0.0.1:5672 (default tcp_listen_options, linger {true,0})' % rmq,
            'tcpdump -i lo --immediate-mode -U -w captures/nova-api-%s.pcap '
            '\'tcp port 5672 or tcp port 8774\' (%s), then filtered to the '
            'simulator\'s own connections (captures/logs/nova-api-%s.tcpdump.cmd)'
            % (args.case, td, args.case),
            'logs in captures/logs/nova-api-%s.*.log: the RabbitMQ log lines of these '
            'connections (broker.log), the simulator\'s output (client.log), the '
            'request times (driver.log)' % args.case,
            'recorded %s' % date,
        ],
        'connections': nconn,
        'heartbeat': ({'value_s': hbs.pop(), 'source': 'tune-ok'} if len(hbs) == 1
                      else None),
        'gaps': gaps,
        'notes': '; '.join(notes),
    }
    with open(args.write_expect, 'w') as f:
        json.dump(doc, f, indent=2)
        f.write('\n')
    print('wrote ' + args.write_expect)


def fail(problems):
    for p in problems:
        print('FAIL: ' + p, file=sys.stderr)
    sys.exit(1)


if __name__ == '__main__':
    main()
