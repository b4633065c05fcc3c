#!/usr/bin/env bash
# The live screen under load: `hbscope live -i lo` runs its TUI in a 120x40 tmux pane (a real
# terminal) while the local RabbitMQ (127.0.0.1:5672, guest/guest) takes a publisher flood.
#
#   1. idle: IDLE_SECS with no traffic of ours: hbscope's CPU (user + system ticks from
#      /proc/PID/stat over the window), then KEYS_IDLE key presses;
#   2. load: IDLE_CLIENTS idle heartbeat clients (benches/churn_clients.py idle) and
#      PUBLISHERS flood publishers (benches/flood_publisher.py, 512-byte bodies); after
#      RAMP seconds: hbscope's CPU over CPU_SECS, then KEYS key presses (`?`, the help
#      overlay on and off, every GAP s), then TMUX_KEYS presses timed from the outside;
#   3. the header's kernel drops and packets, the publishers' message rate.
#
# Key-to-redraw latency, two ways:
#   - inside: HBSCOPE_KEY_LATENCY_LOG makes hbscope log, per key, the time from the input
#     thread's read of the key to the end of the redraw after it (src/tui.rs);
#   - outside (an upper bound, tmux's delivery and capture included): `tmux -L "$S" send-keys ?`, then
#     `tmux -L "$S" capture-pane` in a loop until the overlay's title appears or goes
#     (benches/tui_latency.sh's method; the polling itself costs CPU on a 2-core machine).
# Prints median / p95 / max of each, CPU shares, drops; keeps raw data in $OUT. Other clients
# of the broker (other users of this machine) are captured too: the header counts them.
#
# Needs root (live capture), tmux, python3 with pika.
# Usage: benches/live_tui.sh   (PUBLISHERS=4 IDLE_CLIENTS=50 KEYS=200 CARGO_TARGET_DIR=target)
set -euo pipefail
cd "$(dirname "$0")/.."
PUBLISHERS=${PUBLISHERS:-4}
IDLE_CLIENTS=${IDLE_CLIENTS:-50}
IDLE_SECS=${IDLE_SECS:-60}
KEYS_IDLE=${KEYS_IDLE:-50}
KEYS=${KEYS:-200}
TMUX_KEYS=${TMUX_KEYS:-100}
GAP=${GAP:-0.15}
RAMP=${RAMP:-5}
CPU_SECS=${CPU_SECS:-30}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$(realpath "${BIN:-$TARGET_DIR/release/hbscope}")
OUT=$(mktemp -d /tmp/hbscope-livetui.XXXXXX)
S=hbscope-livetui-$$
export LC_ALL=C
# tmux -L: a tmux server of our own, which no other `tmux kill-server` on the machine ends.

[ "$(id -u)" = 0 ] || { echo "live_tui.sh: live capture needs root" >&2; exit 2; }
command -v tmux >/dev/null || { echo "live_tui.sh: apt-get install tmux" >&2; exit 2; }
python3 -c 'import pika' 2>/dev/null || { echo "live_tui.sh: pip install pika" >&2; exit 2; }
nice cargo build --release --quiet --bin hbscope

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  tmux -L "$S" kill-session -t "$S" 2>/dev/null || true
}
trap cleanup EXIT

load() { cut -d' ' -f1-3 /proc/loadavg; }
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU share of one core used by pid $1 over $2 seconds.
cpu_over() {
  local a b
  a=$(ticks "$1"); sleep "$2"; b=$(ticks "$1")
  awk -v a="$a" -v b="$b" -v hz="$(getconf CLK_TCK)" -v s="$2" 'BEGIN { printf "%.1f", (b - a) * 100 / hz / s }'
}
shown() { tmux -L "$S" capture-pane -p -t "$S" | grep -c 'help (? or Esc' || true; }
# Presses `?` $1 times, $GAP s apart (an even count leaves the help closed).
press() { for _ in $(seq 1 "$1"); do tmux -L "$S" send-keys -t "$S" '?'; sleep "$GAP"; done; }
stats() { # label, then one figure per line on stdin (microseconds)
  sort -n | awk -v l="$1" '{ v[NR] = $1 }
    END { if (NR == 0) { print l ": no samples"; exit }
          printf "%s: %d keys, median %.1f ms, p95 %.1f ms, max %.1f ms\n", l, NR,
            v[int((NR + 1) / 2)] / 1000, v[int((NR * 95 + 99) / 100)] / 1000, v[NR] / 1000 }'
}
# No `head` or `grep -q` reading a pipe: with pipefail the writer's SIGPIPE ends the script.
header() { tmux -L "$S" capture-pane -p -t "$S" | sed -n 1p; }

echo "== $(date -u +%FT%TZ); machine: nproc $(nproc), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), hbscope $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "== load average at start: $(load) (other builds and tests may share the machine)"
tmux -L "$S" new-session -d -x 120 -y 40 -s "$S" \
  "HBSCOPE_KEY_LATENCY_LOG=$OUT/keys.log $BIN live -i lo 2>$OUT/live.err; sleep 600"
for _ in $(seq 50); do grep -q 'hbscope live lo' <<< "$(header)" && break; sleep 0.2; done
PID=$(pgrep -n -f "^$BIN live -i lo" || true)
[ -n "$PID" ] || { echo "hbscope did not start: $(cat "$OUT/live.err")"; exit 1; }

echo "== idle: no traffic of ours for ${IDLE_SECS} s"
echo "hbscope CPU idle: $(cpu_over "$PID" "$IDLE_SECS")% of one core (load $(load)); RSS $(awk '/VmRSS/ {print $2}' "/proc/$PID/status") KiB; $(header | sed 's/  */ /g')"
press "$KEYS_IDLE"
sleep 0.5
idle_keys=$(wc -l < "$OUT/keys.log")

echo "== load: $IDLE_CLIENTS idle clients, $PUBLISHERS flood publishers"
python3 benches/churn_clients.py idle --count "$IDLE_CLIENTS" --heartbeat 10 --duration 100000 \
  --name "hbscope-livetui-$$" >"$OUT/idle.out" 2>&1 &
pids+=($!)
# Long enough for the CPU window and both key phases, with a margin.
FLOOD=$(awk -v r="$RAMP" -v c="$CPU_SECS" -v k="$KEYS" -v t="$TMUX_KEYS" -v g="$GAP" \
  'BEGIN { printf "%d", r + c + k * (g + 0.03) * 1.3 + t * (g + 0.3) + 15 }')
for ((i = 0; i < PUBLISHERS; i++)); do
  python3 benches/flood_publisher.py --duration "$FLOOD" --size 512 --id "$i" >"$OUT/pub$i.out" 2>&1 &
  pids+=($!)
done
flood_t0=$(date +%s)
sleep "$RAMP"
echo "hbscope CPU under load: $(cpu_over "$PID" "$CPU_SECS")% of one core (load $(load)); RSS $(awk '/VmRSS/ {print $2}' "/proc/$PID/status") KiB"
press "$KEYS"
sleep 0.5
load_keys=$(wc -l < "$OUT/keys.log")
echo "load average after the keys: $(load)"

# From the outside: send-keys to the overlay's change on the screen.
: > "$OUT/tmux.txt"
for _ in $(seq 1 "$TMUX_KEYS"); do
  before=$(shown)
  t0=$(date +%s%N)
  tmux -L "$S" send-keys -t "$S" '?'
  while [ "$(shown)" = "$before" ]; do :; done
  t1=$(date +%s%N)
  echo $(( (t1 - t0) / 1000 )) >> "$OUT/tmux.txt"
  sleep "$GAP"
done
tmux -L "$S" capture-pane -e -p -t "$S" > "$OUT/screen-load.ansi"
echo "header under load: $(header | sed 's/  */ /g')"
flood_t1=$(date +%s)
for ((i = 0; i < PUBLISHERS; i++)); do wait "${pids[$((i + 1))]}" || true; done
sed -n "1,${idle_keys}p" "$OUT/keys.log" | awk '{print $NF}' | stats "inside, idle"
sed -n "$((idle_keys + 1)),${load_keys}p" "$OUT/keys.log" | awk '{print $NF}' | stats "inside, under load"
stats "outside (tmux), under load" < "$OUT/tmux.txt"
python3 - "$OUT" "$PUBLISHERS" <<'EOF'
import glob, sys
out, n = sys.argv[1], int(sys.argv[2])
msgs, secs = 0, 0.0
for f in glob.glob(out + '/pub*.out'):
    for line in open(f):
        if line.startswith('published'):
            p = line.split()
            msgs += int(p[1]); secs = max(secs, float(p[3]))
print('publishers: %d messages in %.1f s = %.0f msg/s (%d connections)' % (msgs, secs, msgs / max(secs, 1e-9), n))
EOF
drops=$(header | grep -o '[0-9]* dropped' | cut -d' ' -f1)
echo "RESULT kernel drops = ${drops:-?} (header; target 0)"
tmux -L "$S" send-keys -t "$S" q
sleep 2
tmux -L "$S" capture-pane -p -t "$S" -S - | grep -E 'AMQP connection|packets' | sed -n '1,3p' || true
echo "(flood ran $((flood_t1 - flood_t0)) s; raw output in $OUT)"
