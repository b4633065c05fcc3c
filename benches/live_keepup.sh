#!/usr/bin/env bash
# Live mode keeps up: PUBLISHERS real pika publishers (benches/flood_publisher.py) push as
# fast as the local RabbitMQ (127.0.0.1:5672, guest/guest) accepts while
# `hbscope live -i lo --duration DURATION --format json` captures on loopback. Prints:
#   - the publishers' message rate (sum of their counts / their run time),
#   - packets hbscope read and the kernel drops (the capture-stopped event's `dropped`),
#   - hbscope's CPU use: user + system seconds over wall seconds (/usr/bin/time), peak RSS,
#   - the connections and gaps hbscope reported (the floods must show no gap).
# Needs root (live capture). Publishers start 2 s after hbscope and stop 2 s before it.
#
# Usage: benches/live_keepup.sh   (PUBLISHERS=4 DURATION=30 SIZE=512 CARGO_TARGET_DIR=target)
set -euo pipefail
cd "$(dirname "$0")/.."
PUBLISHERS=${PUBLISHERS:-4}
DURATION=${DURATION:-30}
SIZE=${SIZE:-512}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release/hbscope"
OUT=$(mktemp -d /tmp/hbscope-keepup.XXXXXX)
export LC_ALL=C

[ "$(id -u)" = 0 ] || { echo "live_keepup.sh: live capture needs root" >&2; exit 2; }
command -v /usr/bin/time >/dev/null || { echo "live_keepup.sh: apt-get install time" >&2; exit 2; }
python3 -c 'import pika' 2>/dev/null || { echo "live_keepup.sh: pip install pika" >&2; exit 2; }
nice cargo build --release --quiet

echo "== machine: nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg), hbscope $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== $PUBLISHERS publishers x ${SIZE}-byte bodies, hbscope live -i lo --duration $DURATION"

/usr/bin/time -o "$OUT/time" -f '%U %S %e %M' \
  "$BIN" live -i lo --duration "$DURATION" --format json >"$OUT/live.jsonl" 2>"$OUT/live.err" &
LIVE=$!
sleep 2
pubs=()
for ((i = 0; i < PUBLISHERS; i++)); do
  python3 benches/flood_publisher.py --duration $((DURATION - 4)) --size "$SIZE" --id "$i" >"$OUT/pub$i.out" 2>&1 &
  pubs+=($!)
done
for p in "${pubs[@]}"; do wait "$p" || echo "publisher $p failed: $(cat "$OUT"/pub*.out | tail -3)"; done
wait "$LIVE" || { echo "hbscope live failed:"; cat "$OUT/live.err"; exit 1; }

python3 - "$OUT" "$PUBLISHERS" <<'EOF'
import glob, json, sys
out, n = sys.argv[1], int(sys.argv[2])
msgs, secs = 0, 0.0
for f in glob.glob(out + '/pub*.out'):
    for line in open(f):
        if line.startswith('published'):
            p = line.split()
            msgs += int(p[1]); secs = max(secs, float(p[3]))
lines = [l for l in open(out + '/live.jsonl') if l.strip()]
stopped = report = None
for l in lines:
    try:
        j = json.loads(l)
    except ValueError:
        continue
    if j.get('event') == 'capture-stopped':
        stopped = j
    elif 'connections' in j and 'capture' in j:
        report = j
u, s, e, rss = open(out + '/time').read().split()[-4:]
u, s, e = float(u), float(s), float(e)
print('publishers: %d messages in %.1f s = %.0f msg/s (%d connections)' % (msgs, secs, msgs / max(secs, 1e-9), n))
if stopped is None:
    print('no capture-stopped event: see ' + out); sys.exit(1)
print('hbscope live: %d packets, kernel drops %d' % (stopped['packets'], stopped['dropped']))
print('hbscope CPU: user %.2f s + sys %.2f s over %.1f s wall = %.1f%% of one core; peak RSS %.1f MiB'
      % (u, s, e, 100 * (u + s) / e, int(rss) / 1024))
if report is not None:
    conns = report['connections']
    keep = [c for c in conns if 'keepup' in json.dumps(c.get('client_properties') or {})]
    gaps = sum(len(c.get('gaps', [])) for c in keep)
    print('report: %d connections (%d flood publishers), %d gaps on the publishers' % (len(conns), len(keep), gaps))
print('RESULT kernel drops = %d (target 0)' % stopped['dropped'])
EOF
echo "(raw output in $OUT)"
