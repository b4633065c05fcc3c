#!/usr/bin/env bash
# Every report hbscope writes for the shipped captures, into one folder per
# binary, so two builds can be compared byte for byte:
#
#   benches/outputs.sh OLD_BIN /tmp/out-old
#   benches/outputs.sh NEW_BIN /tmp/out-new
#   diff -r /tmp/out-old /tmp/out-new && echo identical
#
# For each captures/*.pcap: text, json, html, markdown, --summary and json
# with --threads 2; each two-ended pair in captures/twoend as text and json;
# a synthetic capture (300 connections, 60 s; generated once into
# $SYNTH, default /tmp/hbscope-outputs-synth.pcap) as json, text and json on
# two threads; and the --help texts. Name both binaries `hbscope` (e.g. copy
# them into two folders) so the help texts compare equal.
set -u
BIN=$1; OUT=$2; mkdir -p "$OUT"
cd "$(dirname "$0")/.."
SYNTH=${SYNTH:-/tmp/hbscope-outputs-synth.pcap}
for f in captures/*.pcap; do
  n=$(echo "$f" | tr / _)
  for fmt in text json html markdown; do
    "$BIN" replay --format "$fmt" "$f" > "$OUT/$n.$fmt" 2> "$OUT/$n.$fmt.err"; echo "rc=$?" >> "$OUT/$n.$fmt.err"
  done
  "$BIN" replay --summary "$f" > "$OUT/$n.summary" 2>&1
  "$BIN" replay --format json --threads 2 "$f" > "$OUT/$n.t2.json" 2>&1
done
for c in captures/twoend/*.client.pcap; do
  b=${c%.client.pcap}.broker.pcap
  n=$(basename "$c" .client.pcap)
  "$BIN" replay --client-side "$c" --broker-side "$b" > "$OUT/2e-$n.text" 2>&1
  "$BIN" replay --format json --client-side "$c" --broker-side "$b" > "$OUT/2e-$n.json" 2>&1
done
[ -f "$SYNTH" ] || "$BIN" synth -o "$SYNTH" --connections 300 --duration 60 > /dev/null 2>&1
"$BIN" replay --format json "$SYNTH" > "$OUT/synth.json" 2>&1
"$BIN" replay --format text "$SYNTH" > "$OUT/synth.text" 2>&1
"$BIN" replay --format json --threads 2 "$SYNTH" > "$OUT/synth.t2.json" 2>&1
for sub in "" replay live; do "$BIN" $sub --help > "$OUT/help${sub:+-$sub}" 2>&1; done
