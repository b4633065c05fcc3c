#!/usr/bin/env python3
"""Verification aid (not ground truth): per AMQP connection in a pcap, print the
negotiated heartbeat and every silence (time between NEW payload bytes in one direction)
longer than the heartbeat timeout, with what ended it. Uses tshark.

usage: summarize.py FILE.pcap [--heartbeat N]   (N used when Tune-Ok is not in the capture)
"""
import subprocess
import sys
from collections import defaultdict

FIELDS = ['frame.time_relative', 'tcp.stream', 'tcp.srcport', 'tcp.dstport', 'tcp.seq_raw',
          'tcp.len', 'tcp.flags.syn', 'tcp.flags.fin', 'tcp.flags.reset', 'amqp.type',
          'amqp.method.class', 'amqp.method.method', 'amqp.method.arguments.heartbeat',
          'amqp.method.arguments.reply_code']


def main():
    f = sys.argv[1]
    hb_default = None
    if '--heartbeat' in sys.argv:
        hb_default = float(sys.argv[sys.argv.index('--heartbeat') + 1])
    cmd = ['tshark', '-r', f, '-o', 'tcp.relative_sequence_numbers:FALSE', '-d', 'tcp.port==5672,amqp',
           '-Y', 'tcp', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=;']
    for x in FIELDS:
        cmd += ['-e', x]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    streams = defaultdict(lambda: {'pk': [], 'hb': None, 'close': [], 'first': None})
    for line in out.splitlines():
        c = dict(zip(FIELDS, line.split('\t')))
        if '5672' not in (c['tcp.srcport'], c['tcp.dstport']):
            continue
        s = streams[c['tcp.stream']]
        d = 'b2c' if c['tcp.srcport'] == '5672' else 'c2b'
        t = float(c['frame.time_relative'])
        if s['first'] is None:
            s['first'] = t
            s['cport'] = c['tcp.dstport'] if d == 'b2c' else c['tcp.srcport']
        meth = c['amqp.method.method'].split(';') if c['amqp.method.method'] else []
        cls = c['amqp.method.class'].split(';') if c['amqp.method.class'] else []
        for k, m in zip(cls, meth):
            if k == '10' and m == '31' and d == 'c2b':
                s['hb'] = int(c['amqp.method.arguments.heartbeat'].split(';')[0])
            if k == '10' and m == '50':
                s['close'].append((t, d, c['amqp.method.arguments.reply_code']))
        s['pk'].append((t, d, int(c['tcp.seq_raw'] or 0), int(c['tcp.len'] or 0),
                        c['tcp.flags.syn'] == '1', c['tcp.flags.fin'] == '1',
                        c['tcp.flags.reset'] == '1'))
    print('%s: %d TCP connection(s) to port 5672' % (f, len(streams)))
    for sid, s in sorted(streams.items(), key=lambda kv: int(kv[0])):
        hb = s['hb'] if s['hb'] is not None else hb_default
        src = 'tune-ok' if s['hb'] is not None else 'given'
        print(' stream %s client port %s: heartbeat %s (%s), %d packets, first %.3f last %.3f'
              % (sid, s['cport'], hb, src, len(s['pk']), s['pk'][0][0], s['pk'][-1][0]))
        for t, d, code in s['close']:
            print('   Connection.Close %s at %.3f reply_code %s' % (d, t, code))
        for d in ('c2b', 'b2c'):
            hi = None
            last_new = None
            events = []   # (t, kind)
            for t, dd, seq, ln, syn, fin, rst in s['pk']:
                if dd != d:
                    continue
                if syn:
                    hi = seq + 1
                if ln > 0:
                    end = (seq + ln) & 0xffffffff
                    if hi is None or ((end - hi) & 0xffffffff) < 0x80000000 and end != hi:
                        # new bytes
                        if last_new is not None and hb and t - last_new > hb:
                            events.append('   %s silence %.3f -> %.3f = %.2f s (ended by new data)'
                                          % (d, last_new, t, t - last_new))
                        last_new = t
                        hi = end
                    else:
                        events.append('   %s retransmission at %.3f len %d' % (d, t, ln)) \
                            if len(events) < 200 else None
                if fin or rst:
                    kind = 'FIN' if fin else 'RST'
                    sil = (t - last_new) if last_new is not None else 0
                    events.append('   %s %s at %.3f (%.2f s after last new byte)' % (d, kind, t, sil))
                    if kind == 'RST':
                        break
            end_t = s['pk'][-1][0]
            if last_new is not None and hb and end_t - last_new > hb:
                events.append('   %s last new byte at %.3f, nothing new until connection/capture end %.3f (%.2f s)'
                              % (d, last_new, end_t, end_t - last_new))
            # compress retransmission lines
            out = []
            for e in events:
                if e is None:
                    continue
                if 'retransmission' in e and out and 'retransmission' in out[-1]:
                    out[-1] = out[-1].split(' [')[0] + ' [+more, last %s]' % e.split(' at ')[1]
                    continue
                out.append(e)
            for e in out:
                print(e)


if __name__ == '__main__':
    main()
