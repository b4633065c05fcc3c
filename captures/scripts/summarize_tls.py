#!/usr/bin/env python3
"""Verification aid for the tls* captures (not ground truth): decrypts NAME.pcap with
NAME.keylog through tshark and prints, per TCP connection to port 5671:
  - TLS version and cipher suite (from the ServerHello),
  - the Connection.Tune / Tune-Ok heartbeat values (only readable with the keys),
  - the TLS record payload length (and TCP payload length) of every record that carries
    exactly one heartbeat frame, per direction, and the heartbeat period,
  - what a tool WITHOUT the keys sees: silences between new application-data records longer
    than the heartbeat timeout, per direction, and the FIN/RST that ended the connection.

usage: summarize_tls.py FILE.pcap [--keylog FILE.keylog] [--port 5671]
"""
import collections
import os
import statistics
import subprocess
import sys

F = ['frame.number', 'frame.time_relative', 'tcp.stream', 'tcp.srcport', 'tcp.dstport',
     'tcp.len', 'tcp.flags.fin', 'tcp.flags.reset', 'tcp.analysis.retransmission',
     'tls.record.opaque_type', 'tls.record.content_type', 'tls.record.length',
     'tls.handshake.type', 'tls.handshake.ciphersuite',
     'tls.handshake.extensions.supported_version', 'tls.record.version', 'amqp.type',
     'amqp.method.class', 'amqp.method.method', 'amqp.method.arguments.heartbeat']
CIPHERS = {'0x1301': 'TLS_AES_128_GCM_SHA256', '0x1302': 'TLS_AES_256_GCM_SHA384',
           '0x1303': 'TLS_CHACHA20_POLY1305_SHA256', '0xc02f': 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256',
           '0xc030': 'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384'}


def main():
    pcap = sys.argv[1]
    keylog = os.path.splitext(pcap)[0] + '.keylog'
    port = '5671'
    if '--keylog' in sys.argv:
        keylog = sys.argv[sys.argv.index('--keylog') + 1]
    if '--port' in sys.argv:
        port = sys.argv[sys.argv.index('--port') + 1]
    cmd = ['tshark', '-r', pcap, '-o', 'tls.keylog_file:' + keylog, '-d', 'tcp.port==%s,tls' % port,
           '-Y', 'tcp', '-T', 'fields', '-E', 'occurrence=a', '-E', 'aggregator=;']
    for x in F:
        cmd += ['-e', x]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    S = collections.OrderedDict()
    for line in out.splitlines():
        c = dict(zip(F, line.split('\t')))
        d = 'b2c' if c['tcp.srcport'] == port else 'c2b'
        s = S.setdefault(c['tcp.stream'], {'cport': c['tcp.dstport'] if d == 'b2c' else c['tcp.srcport'],
                                           'pk': [], 'tune': None, 'tuneok': None, 'ver': None,
                                           'cipher': None, 'hb': {'c2b': [], 'b2c': []}})
        t = float(c['frame.time_relative'])
        hs = c['tls.handshake.type'].split(';') if c['tls.handshake.type'] else []
        if '2' in hs:   # ServerHello
            s['cipher'] = CIPHERS.get(c['tls.handshake.ciphersuite'].split(';')[0],
                                      c['tls.handshake.ciphersuite'])
            sv = c['tls.handshake.extensions.supported_version']
            s['ver'] = 'TLS 1.3' if '0x0304' in sv else 'TLS 1.2' if '0x0303' in (
                c['tls.record.version'] or '') else sv
        cls = c['amqp.method.class'].split(';') if c['amqp.method.class'] else []
        mth = c['amqp.method.method'].split(';') if c['amqp.method.method'] else []
        hbv = c['amqp.method.arguments.heartbeat'].split(';') if c['amqp.method.arguments.heartbeat'] else []
        for k, m in zip(cls, mth):
            if k == '10' and m == '30' and hbv:
                s['tune'] = int(hbv[0])
            if k == '10' and m == '31' and hbv:
                s['tuneok'] = int(hbv[-1])
        ctypes = c['tls.record.opaque_type'] or c['tls.record.content_type']
        ctypes = ctypes.split(';') if ctypes else []
        lens = c['tls.record.length'].split(';') if c['tls.record.length'] else []
        atypes = c['amqp.type'].split(';') if c['amqp.type'] else []
        appdata = ctypes.count('23') if c['tls.record.opaque_type'] else \
            [x for x in (c['tls.record.content_type'] or '').split(';')].count('23')
        if atypes == ['8'] and len(lens) == 1:
            s['hb'][d].append((t, int(lens[0]), int(c['tcp.len'])))
        s['pk'].append((t, d, int(c['tcp.len'] or 0), appdata, c['tcp.flags.fin'] == '1',
                        c['tcp.flags.reset'] == '1', bool(c['tcp.analysis.retransmission'])))
    print('%s: %d TCP connection(s) to port %s (keylog %s)' % (pcap, len(S), port,
                                                           keylog if os.path.exists(keylog) else 'MISSING'))
    for sid, s in S.items():
        hb = s['tuneok']
        print(' stream %s client port %s: %s %s; Tune %s, Tune-Ok %s; %d packets %.3f..%.3f' % (
            sid, s['cport'], s['ver'], s['cipher'], s['tune'], s['tuneok'], len(s['pk']),
            s['pk'][0][0], s['pk'][-1][0]))
        for d in ('c2b', 'b2c'):
            h = s['hb'][d]
            if h:
                iv = [b[0] - a[0] for a, b in zip(h, h[1:])]
                print('   %s heartbeats: %d, TLS record length %s, TCP payload %s, period median %.3f s (min %.3f max %.3f)'
                      % (d, len(h), sorted({x[1] for x in h}), sorted({x[2] for x in h}),
                         statistics.median(iv) if iv else 0, min(iv) if iv else 0, max(iv) if iv else 0))
        # the view without keys: new application data per direction
        timeout = hb or 2
        for d in ('c2b', 'b2c'):
            last = None
            for t, dd, ln, appdata, fin, rst, retr in s['pk']:
                if dd != d:
                    continue
                if ln > 0 and not retr:
                    if last is not None and t - last > timeout:
                        print('   %s silence (no new TLS data) %.3f -> %.3f = %.2f s' % (d, last, t, t - last))
                    last = t
                if fin or rst:
                    print('   %s %s at %.3f (%.2f s after its last data)' % (
                        d, 'FIN' if fin else 'RST', t, t - last if last else 0))
            end = s['pk'][-1][0]
            if last is not None and end - last > timeout:
                print('   %s no new data from %.3f to the end %.3f (%.2f s)' % (d, last, end, end - last))


if __name__ == '__main__':
    main()
