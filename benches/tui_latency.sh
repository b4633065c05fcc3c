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
BIN=${BIN:-target/release/hbscope}
S=hbscope-latency-$$
tmux kill-session -t "$S" 2>/dev/null || true
tmux new-session -d -x 120 -y 40 -s "$S" "$BIN replay $FILE"
trap 'tmux kill-session -t "$S" 2>/dev/null || true' EXIT
sleep 0.3
shown() { tmux capture-pane -p -t "$S" | grep -c 'help (? or Esc' || true; }
loading() { tmux capture-pane -p -t "$S" | head -1 | grep -q '%' && echo loading || echo done; }
for i in $(seq 1 "$N"); do
  before=$(shown)
  state=$(loading)
  t0=$(date +%s%N)
  tmux send-keys -t "$S" '?'
  while [ "$(shown)" = "$before" ]; do :; done
  t1=$(date +%s%N)
  echo "sample $i: $(( (t1 - t0) / 1000000 )) ms ($state)"
  sleep 0.2
done
tmux send-keys -t "$S" q
