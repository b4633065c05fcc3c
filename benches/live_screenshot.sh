#!/usr/bin/env bash
# The README's picture of the live screen, from a real run: `hbscope live -i lo` in a 120x40
# tmux pane against the local RabbitMQ (127.0.0.1:5672, guest/guest), with a few idle clients
# (benches/churn_clients.py idle, heartbeat 10 s) and two that service heartbeats
# (tests/clients/hb_client.py serve, heartbeat 5 s); one of those is SIGSTOPped. Once its
# silence has passed the limit (gap open, provisional cause, the process pane's `stopped`
# verdict), the screen is captured:
#   docs/live-screen.txt  the text (tmux capture-pane)
#   docs/live-screen.png  rendered from the ANSI capture (benches/ansi_html.py) by headless chromium
# The table is filtered (`/demo`) to this script's connections; the header counts every
# AMQP connection on lo, other users' included.
#
# Needs root (live capture), tmux, python3 with pika, chromium.
# Usage: benches/live_screenshot.sh   (CARGO_TARGET_DIR=target; AFTER=8 seconds after SIGSTOP)
set -euo pipefail
cd "$(dirname "$0")/.."
AFTER=${AFTER:-8}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN=$(realpath "$TARGET_DIR/release/hbscope")
OUT=$(mktemp -d /tmp/hbscope-shot.XXXXXX)
S=hbscope-shot-$$
export LC_ALL=C.UTF-8
# tmux -L: a tmux server of our own, which no other `tmux kill-server` on the machine ends.
T=(tmux -L "$S")

[ "$(id -u)" = 0 ] || { echo "live_screenshot.sh: live capture needs root" >&2; exit 2; }
for t in tmux chromium; do
  command -v $t >/dev/null || { echo "live_screenshot.sh: apt-get install $t" >&2; exit 2; }
done
python3 -c 'import pika' 2>/dev/null || { echo "live_screenshot.sh: pip install pika" >&2; exit 2; }
nice cargo build --release --quiet --bin hbscope

pids=()
stopped=
cleanup() {
  [ -n "$stopped" ] && kill -CONT "$stopped" 2>/dev/null || true
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "${T[@]}" kill-server 2>/dev/null || true
}
trap cleanup EXIT
screen() { "${T[@]}" capture-pane -p -t "$S"; }
wait_for() { # seconds, grep pattern
  for _ in $(seq $(($1 * 5))); do grep -q "$2" <<< "$(screen)" && return 0; sleep 0.2; done
  echo "not on screen within $1 s: $2"; screen; exit 1
}

"${T[@]}" new-session -d -x 120 -y 40 -s "$S" "$BIN live -i lo; sleep 600"
wait_for 10 'hbscope live lo'
python3 benches/churn_clients.py idle --count 3 --heartbeat 10 --duration 600 --name demo-orders \
  >"$OUT/idle.out" 2>&1 &
pids+=($!)
for who in billing-api reports-worker; do
  python3 tests/clients/hb_client.py serve 5 0 "demo-$who" >"$OUT/$who.out" 2>&1 &
  pids+=($!)
done
for _ in $(seq 50); do grep -q ready "$OUT/billing-api.out" && break; sleep 0.2; done
victim=$(awk '/^ready/ {print $2}' "$OUT/billing-api.out")
[ -n "$victim" ] || { echo "the client did not connect: $(cat "$OUT/billing-api.out")"; exit 1; }
"${T[@]}" send-keys -t "$S" / ; "${T[@]}" send-keys -t "$S" -l demo ; "${T[@]}" send-keys -t "$S" Enter
wait_for 15 'connections [0-9]*/5 '
sleep 6
kill -STOP "$victim"
stopped=$victim
sleep "$AFTER"
# The flagged connection sorts first: select it; its process verdict fills the pane.
"${T[@]}" send-keys -t "$S" g
wait_for 10 'client stopped (gap open)'
"${T[@]}" capture-pane -p -t "$S" > docs/live-screen.txt
"${T[@]}" capture-pane -e -p -t "$S" > "$OUT/screen.ansi"
kill -CONT "$victim"
stopped=
python3 benches/ansi_html.py "$OUT/screen.ansi" > "$OUT/screen.html"
# 120 x 40 cells of 14 px DejaVu Sans Mono (about 8.43 x 17 px) and 8 px of padding, some to spare.
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1030,696 \
  --screenshot="$OUT/screen.png" "file://$OUT/screen.html" >/dev/null 2>&1
cp "$OUT/screen.png" docs/live-screen.png
echo "wrote docs/live-screen.txt and docs/live-screen.png (raw capture in $OUT)"
