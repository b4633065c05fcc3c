#!/usr/bin/env bash
# Flight recorder memory under a publisher flood: PUBLISHERS pika publishers
# (benches/flood_publisher.py) push as fast as the local RabbitMQ accepts for DURATION seconds
# while `hbscope live -i lo --record-gaps DIR` (default ring: 64 MiB, 600 s) captures. hbscope's
# RSS (/proc/PID/status VmRSS) and, from --metrics, the recorder's ring size are sampled every
# EVERY seconds. Halfway through, a quiet pika client (heartbeat 2 s) is SIGSTOPped once: its
# gap must still be recorded, with its packets from before the silence, although the flood
# passed through the ring many times meanwhile. Prints one line per sample, then a summary
# (RSS min/max after the first minute, the recording, kernel drops, machine load).
# Needs root (live capture), python3 + pika, curl.
#
# Usage: benches/recorder_flood.sh  (PUBLISHERS=2 DURATION=600 EVERY=10 SIZE=512 CARGO_TARGET_DIR=target)
set -euo pipefail
cd "$(dirname "$0")/.."
PUBLISHERS=${PUBLISHERS:-2}
DURATION=${DURATION:-600}
EVERY=${EVERY:-10}
SIZE=${SIZE:-512}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release/hbscope"
OUT=$(mktemp -d /tmp/hbscope-recflood.XXXXXX)
export LC_ALL=C

[ "$(id -u)" = 0 ] || { echo "recorder_flood.sh: live capture needs root" >&2; exit 2; }
python3 -c 'import pika' 2>/dev/null || { echo "recorder_flood.sh: pip install pika" >&2; exit 2; }
command -v curl >/dev/null || { echo "recorder_flood.sh: apt-get install curl" >&2; exit 2; }
nice cargo build --release --quiet

echo "== machine: nproc $(nproc), load average $(cut -d' ' -f1-3 /proc/loadavg), hbscope $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== $PUBLISHERS publishers x ${SIZE}-byte bodies for ${DURATION} s, hbscope live -i lo --record-gaps (defaults)"

"$BIN" live -i lo --format json --duration $((DURATION + 20)) --record-gaps "$OUT/rec" \
  --metrics 127.0.0.1:0 >"$OUT/live.jsonl" 2>"$OUT/live.err" &
LIVE=$!
for _ in $(seq 50); do grep -q metrics-listening "$OUT/live.jsonl" 2>/dev/null && break; sleep 0.1; done
URL=$(python3 -c 'import json,sys
for l in open(sys.argv[1]):
    j = json.loads(l)
    if j.get("event") == "metrics-listening": print(j["url"]); break' "$OUT/live.jsonl")
pubs=()
for ((i = 0; i < PUBLISHERS; i++)); do
  python3 benches/flood_publisher.py --duration "$DURATION" --size "$SIZE" --id "$i" >"$OUT/pub$i.out" 2>&1 &
  pubs+=($!)
done
python3 captures/scripts/pika_client.py --heartbeat 2 --duration "$DURATION" \
  --name hbscope-recflood-quiet >"$OUT/quiet.out" 2>&1 &
QUIET=$!
T0=$(date +%s)
STOPPED=0
echo "   t_s  rss_mib  ring_mib  ring_packets"
while :; do
  t=$(( $(date +%s) - T0 ))
  [ "$t" -gt "$DURATION" ] && break
  rss=$(awk '/^VmRSS/ {print $2}' /proc/$LIVE/status)
  m=$(curl -s --max-time 5 "$URL" || true)
  ring=$(awk '/^hbscope_recorder_ring_bytes / {print $2}' <<<"$m")
  pk=$(awk '/^hbscope_recorder_ring_packets / {print $2}' <<<"$m")
  printf '%6d  %7.1f  %8s  %12s\n' "$t" "$(echo "$rss / 1024" | bc -l)" \
    "$( [ -n "$ring" ] && printf '%.1f' "$(echo "$ring / 1048576" | bc -l)" || echo '?')" "${pk:-?}" | tee -a "$OUT/samples"
  if [ "$STOPPED" = 0 ] && [ "$t" -ge $((DURATION / 2)) ]; then
    kill -STOP "$QUIET"; STOPPED=1; sleep 8; kill -CONT "$QUIET"
  fi
  sleep "$EVERY"
done
for p in "${pubs[@]}"; do wait "$p" || echo "publisher $p failed: $(tail -3 "$OUT"/pub*.out)"; done
wait "$QUIET" || true
kill -INT "$LIVE"; wait "$LIVE" || true

python3 - "$OUT" <<'PY'
import glob, json, sys
out = sys.argv[1]
rows = [l.split() for l in open(out + '/samples')]
late = [float(r[1]) for r in rows if int(r[0]) >= 60]
print('RSS after the first minute: min %.1f MiB, max %.1f MiB (%d samples)' % (min(late), max(late), len(late)))
msgs = 0
for f in glob.glob(out + '/pub*.out'):
    for line in open(f):
        if line.startswith('published'):
            msgs += int(line.split()[1])
print('publishers: %d messages' % msgs)
for l in open(out + '/live.jsonl'):
    try:
        j = json.loads(l)
    except ValueError:
        continue
    if j.get('event') == 'gap-recorded' and 'recflood-quiet' in (j.get('client_name') or ''):
        print('quiet client recorded: %s (%d packets, cause %s)' % (j.get('file'), j['packets'], j['cause']))
    if j.get('event') == 'capture-stopped':
        print('hbscope live: %d packets, kernel drops %d' % (j['packets'], j['dropped']))
PY
echo "== load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "(raw output in $OUT)"
