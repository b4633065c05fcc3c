#!/usr/bin/env bash
# Whole-run benchmarks, all figures from ONE run of this script on the same files:
#   hbscope replay --format json FILE   (end to end on every core: MB/s, packets/s, peak RSS;
#                                        (a) also with --threads 1, the one-core figure)
#   tcpdump -r FILE -w /dev/null         (raw libpcap read speed)
#   tshark -r FILE -Y amqp.type==8 -T fields -e frame.time_epoch -e tcp.stream
# and checks that the synthetic captures' verdicts match the injected silences
# (benches/check_verdicts.py, the check tests/synth_verdicts.rs runs in CI on a small capture)
# on (a) a ~1 GB synthetic capture with 10,000 connections (and the same
# traffic 4x longer, ~4 GB, for RSS flatness; deleted after measuring),
# (b) 100,000 concurrent mostly idle connections, (c) captures/healthy-busy.pcap.
# Each command runs REPEAT times; the best time is reported with the spread
# (max/min - 1). The machine may be shared: everything runs under `nice`.
#
# Usage: benches/run.sh            (BENCH_DATA=/work/bench-data REPEAT=3 QUICK=0)
#        QUICK=1 benches/run.sh    (small files, a smoke test of the script)
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${BENCH_DATA:-/work/bench-data}
REPEAT=${REPEAT:-3}
QUICK=${QUICK:-0}
TSHARK_BUDGET_S=${TSHARK_BUDGET_S:-300}
TARGET_DIR=${CARGO_TARGET_DIR:-target}
BIN="$TARGET_DIR/release/hbscope"
mkdir -p "$DATA"
export LC_ALL=C

for tool in tcpdump tshark /usr/bin/time; do
  command -v "$tool" >/dev/null || { echo "run.sh: $tool is needed (apt-get install tcpdump tshark time)" >&2; exit 2; }
done
nice cargo build --release --quiet
echo "== machine"
echo "nproc: $(nproc); cpu: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "memory: $(free -g | awk '/Mem:/ {print $2 " GiB"}'); load average at start: $(cut -d' ' -f1-3 /proc/loadavg) (shared machine: figures are best of $REPEAT)"
echo "hbscope $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $(tcpdump --version 2>&1 | head -1), $(tshark --version 2>/dev/null | head -1)"

# synth NAME ARGS...: generates $DATA/NAME.pcap once (kept between runs when the arguments match).
synth() {
  local name=$1; shift
  local f="$DATA/$name.pcap" stamp="$DATA/$name.args"
  if [ -f "$f" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$*" ]; then return; fi
  local t0=$SECONDS
  nice "$BIN" synth -o "$f" "$@"
  echo "$*" > "$stamp"
  echo "generated $name.pcap ($(du -m "$f" | cut -f1) MB) in $((SECONDS - t0)) s: hbscope synth $*"
}

# best CMD...: runs CMD REPEAT times; sets BEST (s), SPREAD (%), RSS (KiB, peak of the best run).
best() {
  local times=() rss=() i out
  for ((i = 0; i < REPEAT; i++)); do
    nice /usr/bin/time -o "$DATA/.time" -f '%e %M' "$@" >/dev/null 2>/dev/null || true
    out=$(tail -1 "$DATA/.time")
    times+=("${out% *}"); rss+=("${out#* }")
  done
  read -r BEST SPREAD RSS < <(paste -d' ' <(printf '%s\n' "${times[@]}") <(printf '%s\n' "${rss[@]}") |
    sort -g | awk 'NR==1 {b=$1; r=$2} {m=$1} END {if (b <= 0) b = 0.01; if (m < b) m = b; printf "%.2f %.0f %d\n", b, (m/b-1)*100, r}')
}

# Packet count via hbscope's own report (first run only, cached).
packets() {
  local f=$1 c="$DATA/$(basename "$1").packets"
  [ -f "$c" ] && [ "$c" -nt "$f" ] || "$BIN" replay --format json "$f" | python3 -c 'import json,sys; print(json.load(sys.stdin)["capture"]["packets"])' > "$c"
  cat "$c"
}

# loop N CMD...: runs CMD N times in one process tree (for files too small to time once).
loop() {
  local n=$1; shift
  for ((j = 0; j < n; j++)); do "$@" >/dev/null 2>&1 || true; done
}
export -f loop

# verdicts FILE: replays FILE and compares its gaps with FILE's .expect.json (what synth injected).
verdicts() {
  "$BIN" replay --format json "$1" > "$DATA/.report.json"
  echo "  $(python3 benches/check_verdicts.py "$DATA/.report.json" "${1%.pcap}.expect.json" || true)"
}

declare -A ROW
measure() { # measure LABEL FILE [TSHARK_FILE] [LOOP]
  local label=$1 f=$2 tf=${3:-$2} n=${4:-1}
  local mb pk run=()
  [ "$n" -gt 1 ] && run=(bash -c 'loop "$@"' _ "$n")
  mb=$(awk -v b="$(stat -c %s "$f")" -v n="$n" 'BEGIN {printf "%.1f", n*b/1e6}')
  pk=$(( $(packets "$f") * n ))
  best "${run[@]}" "$BIN" replay --format json "$f"; local hb=$BEST hs=$SPREAD hr=$RSS
  best "${run[@]}" tcpdump -r "$f" -w /dev/null; local td=$BEST tds=$SPREAD
  local tmb ts tss note=""
  [ "$n" -gt 1 ] && note=" (each command run $n times in a row)"
  tmb=$(awk -v b="$(stat -c %s "$tf")" -v n="$n" 'BEGIN {printf "%.1f", n*b/1e6}')
  local save=$REPEAT
  [ "$tf" != "$f" ] && note=" (tshark on a ${tmb} MB capture of the same traffic, extrapolated per MB)"
  REPEAT=$(( $(awk -v m="$tmb" 'BEGIN {print (m > 50) ? 1 : 0}') ? 1 : save ))
  best "${run[@]}" tshark -r "$tf" -Y 'amqp.type==8' -T fields -e frame.time_epoch -e tcp.stream; ts=$BEST tss=$SPREAD
  REPEAT=$save
  awk -v l="$label" -v mb="$mb" -v pk="$pk" -v hb="$hb" -v hs="$hs" -v hr="$hr" -v td="$td" -v tds="$tds" \
      -v ts="$ts" -v tss="$tss" -v tmb="$tmb" -v note="$note" 'BEGIN {
    hmbs = mb / hb; tdmbs = mb / td; tsmbs = tmb / ts
    printf "\n== %s: %s MB, %d packets%s\n", l, mb, pk, note
    printf "  hbscope replay --format json  %7.2f s (spread %s%%)  %7.1f MB/s  %9.0f packets/s  peak RSS %.1f MiB\n", hb, hs, hmbs, pk / hb, hr / 1024
    printf "  tcpdump -r -w /dev/null       %7.2f s (spread %s%%)  %7.1f MB/s\n", td, tds, tdmbs
    printf "  tshark -Y amqp.type==8        %7.2f s (spread %s%%)  %7.1f MB/s on %s MB\n", ts, tss, tsmbs, tmb
    printf "  RATIO hbscope/libpcap throughput = %.2f (target >= 0.40)\n", hmbs / tdmbs
    printf "  RATIO hbscope vs tshark speed    = %.1fx (target >= 20x)\n", hmbs / tsmbs
  }'
  ROW[$label]="$hr"
}

if [ "$QUICK" = 1 ]; then
  A="--seed 1 --connections 1000 --duration 120 --heartbeat 60 --busy 0.2 --rate 2 --churn 0.1 --stalls 2"
  A4="--seed 1 --connections 1000 --duration 480 --heartbeat 60 --busy 0.2 --rate 2 --churn 0.1 --stalls 2"
  AS="--seed 2 --connections 1000 --duration 60 --heartbeat 60 --busy 0.2 --rate 2 --churn 0.1 --stalls 0"
  BB="--seed 3 --connections 10000 --duration 200 --heartbeat 60 --busy 0.01 --rate 1 --churn 0 --stalls 2"
else
  # ~1 GB: 10,000 connections, 20% busy at 0.28 msg/s each (mean body ~3 KB), 10 min.
  A="--seed 1 --connections 10000 --duration 600 --heartbeat 60 --busy 0.2 --rate 0.28 --churn 0.1 --stalls 5"
  A4="--seed 1 --connections 10000 --duration 2400 --heartbeat 60 --busy 0.2 --rate 0.28 --churn 0.1 --stalls 5"
  AS="--seed 2 --connections 10000 --duration 90 --heartbeat 60 --busy 0.2 --rate 0.28 --churn 0.1 --stalls 0"
  BB="--seed 3 --connections 100000 --duration 300 --heartbeat 60 --busy 0.01 --rate 1 --churn 0 --stalls 0"
fi
# shellcheck disable=SC2086
synth a-1g $A
# shellcheck disable=SC2086
synth a-small $AS
# shellcheck disable=SC2086
synth b-100k-idle $BB

# tshark on the full (a) file only when a smaller sample says it fits the budget.
nice /usr/bin/time -o "$DATA/.time" -f '%e' tshark -r "$DATA/a-small.pcap" -Y 'amqp.type==8' -T fields -e frame.time_epoch -e tcp.stream >/dev/null 2>/dev/null
probe=$(tail -1 "$DATA/.time")
est=$(awk -v p="$probe" -v s="$(stat -c %s "$DATA/a-small.pcap")" -v b="$(stat -c %s "$DATA/a-1g.pcap")" 'BEGIN {printf "%d", p * b / s}')
if [ "$est" -gt "$TSHARK_BUDGET_S" ]; then
  echo "tshark would take ~${est} s on a-1g.pcap (> ${TSHARK_BUDGET_S} s): measured on a-small.pcap and extrapolated per MB"
  measure "(a) 10,000 connections, ~1 GB" "$DATA/a-1g.pcap" "$DATA/a-small.pcap"
else
  measure "(a) 10,000 connections, ~1 GB" "$DATA/a-1g.pcap"
fi
verdicts "$DATA/a-1g.pcap"
# The figures above use every core (--threads 0, the default); the same file on one thread:
best "$BIN" replay --threads 1 --format json "$DATA/a-1g.pcap"
awk -v t="$BEST" -v s="$SPREAD" -v r="$RSS" -v b="$(stat -c %s "$DATA/a-1g.pcap")" 'BEGIN {
  printf "  one core: hbscope replay --threads 1 --format json  %.2f s (spread %s%%)  %.1f MB/s  peak RSS %.1f MiB (target: 1 GB well under 10 s)\n", t, s, b / 1e6 / t, r / 1024 }'
measure "(b) 100,000 concurrent mostly idle connections" "$DATA/b-100k-idle.pcap"
# 1.5 MB is read in ~10 ms, /usr/bin/time's resolution: each command runs 50 times per measurement.
measure "(c) captures/healthy-busy.pcap" "captures/healthy-busy.pcap" "captures/healthy-busy.pcap" 50

# Memory per idle connection: (b) minus a run of the same traffic with 1/10 of the connections.
# shellcheck disable=SC2086
synth b-10k-idle ${BB/--connections 100000/--connections 10000}
best "$BIN" replay --format json "$DATA/b-10k-idle.pcap"; small_rss=$RSS
best "$BIN" replay --format json "$DATA/b-100k-idle.pcap"; big_rss=$RSS
n_big=$(echo "$BB" | sed -E 's/.*--connections ([0-9]+).*/\1/')
n_small=$(echo "${BB/--connections 100000/--connections 10000}" | sed -E 's/.*--connections ([0-9]+).*/\1/')
awk -v s="$small_rss" -v b="$big_rss" -v ns="$n_small" -v nb="$n_big" 'BEGIN {
  printf "\n== memory per idle connection: peak RSS %.1f MiB at %d connections, %.1f MiB at %d: %.0f bytes per connection (target < 2048)\n", s/1024, ns, b/1024, nb, (b - s) * 1024 / (nb - ns) }'

# RSS flatness: the same traffic 4x longer (~4 GB), then delete it.
# shellcheck disable=SC2086
synth a-4g $A4
save=$REPEAT; REPEAT=1
best "$BIN" replay --format json "$DATA/a-4g.pcap"; r4=$RSS; t4=$BEST
REPEAT=$save
verdicts "$DATA/a-4g.pcap"
mb4=$(awk -v b="$(stat -c %s "$DATA/a-4g.pcap")" 'BEGIN {printf "%.0f", b/1e6}')
awk -v r1="${ROW["(a) 10,000 connections, ~1 GB"]}" -v r4="$r4" -v t4="$t4" -v mb4="$mb4" 'BEGIN {
  printf "\n== RSS flatness: ~1 GB peak RSS %.1f MiB, %d MB (4x longer) peak RSS %.1f MiB (%.2fx), %.1f s, %.0f MB/s (targets: < 64 MiB, flat)\n", r1/1024, mb4, r4/1024, r4/r1, t4, mb4/t4 }'
rm -f "$DATA/a-4g.pcap" "$DATA/a-4g.args" "$DATA/a-4g.pcap.packets" "$DATA/a-4g.expect.json"
