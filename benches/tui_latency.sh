#!/usr/bin/env bash
# Key-to-redraw latency of the TUI while it is still loading a large capture.
# Usage: benches/tui_latency.sh FILE [SAMPLES]   (BIN=path/to/hbscope to override)
# Runs hbscope in a 120x40 tmux pane, presses `?` (help overlay on/off) and
# times until the overlay's title appears or disappears on the screen; each
# sample also records whether the header still showed loading progress.
# The figure includes tmux's own delivery and capture time (an upper bound).
set -euo pipefail
FILE=${1:?capture file}
N=${2:-20}
GAP=${GAP:-0.1}
BIN=${BIN:-target/release/hbscope}
S=hbscope-latency-$$
tmux kill-session -t "$S" 2>/dev/null || true
tmux new-session -d -x 120 -y 40 -s "$S" "$BIN replay $FILE"
trap 'tmux kill-session -t "$S" 2>/dev/null || true' EXIT
sleep 0.3
shown() { tmux capture-pane -p -t "$S" | grep -c 'help (? or Esc' || true; }
loading() { tmux capture-pane -p -t "$S" | head -1 | grep -q '%' && echo loading || echo done; }
echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $(basename "$FILE") $(stat -c %s "$FILE") bytes"
RES=$(mktemp)
for i in $(seq 1 "$N"); do
  before=$(shown)
  state=$(loading)
  t0=$(date +%s%N)
  tmux send-keys -t "$S" '?'
  while [ "$(shown)" = "$before" ]; do :; done
  t1=$(date +%s%N)
  ms=$(( (t1 - t0) / 1000000 ))
  echo "sample $i: $ms ms ($state)"
  echo "$state $ms" >> "$RES"
  sleep "$GAP"
done
tmux send-keys -t "$S" q
for st in loading done; do
  grep "^$st " "$RES" | cut -d' ' -f2 | sort -n | awk -v st="$st" '
    { v[NR] = $1 }
    END { if (NR == 0) { print st ": no samples"; exit }
          p95 = v[int((NR * 95 + 99) / 100)]
          printf "%s: %d samples, median %d ms, p95 %d ms, max %d ms\n", st, NR, v[int((NR + 1) / 2)], p95, v[NR] }'
done
rm -f "$RES"
