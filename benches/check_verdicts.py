#!/usr/bin/env python3
"""Compares a `hbscope replay --format json` report with the verdicts `hbscope synth` injected.

Usage: check_verdicts.py REPORT.json CAPTURE.expect.json
The same comparison as tests/synth_verdicts.rs, for the big benchmark captures: the connection
count, and the gaps as a multiset of (client port, direction, cause, consequence). Prints one
line and exits 1 when they differ.
"""
import collections
import json
import sys


def main():
    report = json.load(open(sys.argv[1]))
    expect = json.load(open(sys.argv[2]))
    want = collections.Counter(
        (g['client_port'], g['direction'], g['cause'], g['consequence']) for g in expect['gaps'])
    got = collections.Counter()
    for c in report['connections']:
        port = int(c['client'].rsplit(':', 1)[1])
        for g in c['gaps']:
            got[(port, g['direction'], g['cause'], g['consequence'])] += 1
    causes = collections.Counter(k[2] for k in want.elements())
    conns = (len(report['connections']), expect['connections'])
    ok = got == want and conns[0] == conns[1]
    print('verdicts %s: %d connections (expected %d), %d gaps found, %d injected (%s)%s' % (
        'MATCH' if ok else 'DIFFER', conns[0], conns[1], sum(got.values()), sum(want.values()),
        ', '.join('%d %s' % (n, c) for c, n in sorted(causes.items())),
        '' if ok else '; missing %s; unexpected %s' % (dict(want - got), dict(got - want))))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()
