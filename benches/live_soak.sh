#!/usr/bin/env bash
# Memory of a long live run: `hbscope live -i lo` runs its TUI in a 120x40 tmux pane for
# DURATION seconds while connections churn on the local RabbitMQ (127.0.0.1:5672, guest/guest):
# benches/churn_clients.py opens RATE connections a second, each living HOLD_MIN..HOLD_MAX s
# with heartbeats (1 in 10 dropped without Connection.Close), plus IDLE idle heartbeat clients
# for the whole run. Every INTERVAL s it records hbscope's RSS (VmRSS), its CPU seconds, the
# load average and the header's counts; then TAIL s without our traffic (ended connections
# leave the live table 5 minutes after their last packet), then `q`.
#
# Writes $OUT/rss.csv (elapsed_s,rss_kib,cpu_s,load1,connections_in_table,header) and prints
# one line a minute and a summary: RSS at each 5 minutes, and the growth per 1,000
# connections opened after the first 5 minutes (when the first ended ones start leaving).
#
# Needs root (live capture), tmux, python3 with pika.
# Usage: benches/live_soak.sh   (DURATION=1800 RATE=10 IDLE=200 INTERVAL=10 TAIL=420;
#   LIVE_ARGS="--keep-ended 2000" adds options to `hbscope live`;
#   BIN=path/to/hbscope, a copy of the release binary by another name, and NAME=connection and
#   tmux name prefix keep a shared machine's `pkill -f hbscope` from ending the run)
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-1800}
RATE=${RATE:-10}
HOLD_MIN=${HOLD_MIN:-1}
HOLD_MAX=${HOLD_MAX:-30}
IDLE=${IDLE:-200}
INTERVAL=${INTERVAL:-10}
TAIL=${TAIL:-420}
LIVE_ARGS=${LIVE_ARGS:-}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$(realpath "${BIN:-$TARGET_DIR/release/hbscope}")
NAME=${NAME:-hbscope-soak-$$}
OUT=${OUT:-$(mktemp -d /tmp/hbscope-soak.XXXXXX)}
S=$NAME
export LC_ALL=C
# tmux -L: a tmux server of our own, which no other `tmux kill-server` on the machine ends.

[ "$(id -u)" = 0 ] || { echo "live_soak.sh: live capture needs root" >&2; exit 2; }
command -v tmux >/dev/null || { echo "live_soak.sh: apt-get install tmux" >&2; exit 2; }
python3 -c 'import pika' 2>/dev/null || { echo "live_soak.sh: pip install pika" >&2; exit 2; }
nice cargo build --release --quiet --bin hbscope
cmp -s "$BIN" "$TARGET_DIR/release/hbscope" || echo "note: $BIN is not the freshly built $TARGET_DIR/release/hbscope"

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  tmux -L "$S" kill-session -t "$S" 2>/dev/null || true
}
trap cleanup EXIT

echo "== $(date -u +%FT%TZ); machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), hbscope $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (other builds and tests may share the machine)"
echo "== ${DURATION} s: $RATE connections/s living ${HOLD_MIN}-${HOLD_MAX} s, $IDLE idle clients; then ${TAIL} s quiet"
echo "== $BIN live -i lo $LIVE_ARGS"
tmux -L "$S" new-session -d -x 120 -y 40 -s "$S" "$BIN live -i lo $LIVE_ARGS 2>$OUT/live.err; sleep 3600"
for _ in $(seq 50); do grep -q 'hbscope live lo' <<< "$(tmux -L "$S" capture-pane -p -t "$S")" && break; sleep 0.2; done
PID=$(pgrep -n -f "^$BIN live -i lo" || true)
[ -n "$PID" ] || { echo "hbscope did not start: $(cat "$OUT/live.err")"; exit 1; }

python3 benches/churn_clients.py idle --count "$IDLE" --heartbeat 10 --duration "$DURATION" \
  --name "$NAME" >"$OUT/idle.out" 2>&1 &
pids+=($!)
python3 benches/churn_clients.py churn --rate "$RATE" --hold-min "$HOLD_MIN" --hold-max "$HOLD_MAX" \
  --heartbeat 10 --duration "$DURATION" --name "$NAME" >"$OUT/churn.out" 2>&1 &
pids+=($!)

hz=$(getconf CLK_TCK)
echo "elapsed_s,rss_kib,cpu_s,load1,connections_in_table,header" > "$OUT/rss.csv"
t0=$(date +%s)
end=$((t0 + DURATION + TAIL))
while :; do
  now=$(date +%s)
  [ "$now" -le "$end" ] || break
  el=$((now - t0))
  [ -d "/proc/$PID" ] || { echo "hbscope exited after ${el} s: $(cat "$OUT/live.err")"; break; }
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$PID/status")
  cpu=$(awk -v hz="$hz" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$PID/stat")
  screen=$(tmux -L "$S" capture-pane -p -t "$S" || true)
  # No `head` or `grep -q` in pipelines: with pipefail the writer's SIGPIPE ends the script.
  hdr=$(sed -n '1,2p' <<< "$screen" | tr -s ' ' | tr '\n' ' ' | tr ',' ';')
  rows=$(grep -o 'connections [0-9]*/[0-9]*' <<< "$screen" | sed -n 1p | cut -d/ -f2 || true)
  echo "$el,$rss,$cpu,$(cut -d' ' -f1 /proc/loadavg),${rows:-0},$hdr" >> "$OUT/rss.csv"
  if [ $((el / 60)) -ne "${shown:--1}" ]; then
    shown=$((el / 60))
    echo "t=${el}s RSS $((rss / 1024)) MiB, CPU ${cpu} s, load $(cut -d' ' -f1 /proc/loadavg), table ${rows:-0} rows; $(echo "$hdr" | cut -c1-150)"
  fi
  sleep "$INTERVAL"
done
for p in "${pids[@]}"; do wait "$p" || true; done
cat "$OUT/churn.out" "$OUT/idle.out"
tmux -L "$S" send-keys -t "$S" q
sleep 3
tmux -L "$S" capture-pane -p -t "$S" -S - | grep -E 'AMQP connection|packets' | sed -n '1,2p' || true
python3 - "$OUT" "$DURATION" <<'EOF'
import csv, sys
out, duration = sys.argv[1], int(sys.argv[2])
rows = list(csv.DictReader(open(out + '/rss.csv')))
def at(t):
    return min(rows, key=lambda r: abs(int(r['elapsed_s']) - t))
opened = 0
for line in open(out + '/churn.out'):
    if line.startswith('opened'):
        opened = int(line.split()[1])
print('RSS (MiB) by time:', ', '.join('%dm %.1f' % (t // 60, int(at(t)['rss_kib']) / 1024)
      for t in range(0, int(rows[-1]['elapsed_s']) + 1, 300)))
print('peak RSS %.1f MiB; CPU %.1f s over %d s' % (max(int(r['rss_kib']) for r in rows) / 1024,
      float(rows[-1]['cpu_s']), int(rows[-1]['elapsed_s'])))
a, b = at(300), at(duration)
if opened and duration > 300:
    per_s = opened / duration
    n = per_s * (int(b['elapsed_s']) - int(a['elapsed_s']))
    d = (int(b['rss_kib']) - int(a['rss_kib'])) * 1024
    print('churn: %d connections opened (%.1f/s); RSS %+.1f MiB from 5 min to the end of the churn'
          ' = %+.0f bytes per connection opened' % (opened, per_s, d / 2**20, d / max(n, 1)))
    # Once ended connections are folded away (--keep-ended), RSS should stop growing: the
    # second half of the churn on its own.
    a = at(duration // 2)
    n = per_s * (int(b['elapsed_s']) - int(a['elapsed_s']))
    d = (int(b['rss_kib']) - int(a['rss_kib'])) * 1024
    print('second half of the churn (%d to %d min): RSS %+.1f MiB = %+.0f bytes per connection opened'
          % (int(a['elapsed_s']) // 60, int(b['elapsed_s']) // 60, d / 2**20, d / max(n, 1)))
print('(data in %s/rss.csv)' % out)
EOF
