#!/usr/bin/env bash
# By hand (about 5 minutes, root, RabbitMQ on 127.0.0.1:5672, pika, prometheus installed):
# a real Prometheus scrapes `hbscope live --metrics` every 5 s with docs/prometheus-alerts.yml
# loaded while a pika client with heartbeat 60 s is SIGSTOPped; prints, every ~5 s, the client's
# silence ratio, its client-stall gap counter and the alerts. Expected: the ratio passes 1 about
# 60 s after the client's last byte, AmqpHeartbeatSilenceOverLimit is pending then firing 30 s
# later, RabbitMQ resets the connection 120-180 s after the last byte, the series disappears,
# gaps_total becomes 1 and AmqpHeartbeatGaps fires.
# Usage: sudo tests/clients/prometheus_e2e.sh [HBSCOPE_BINARY]   (output in $WORK/run.out too)
set -u
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${1:-$ROOT/target/debug/hbscope}
WORK=$(mktemp -d /tmp/hbscope-prom-e2e.XXXXXX)
cd "$WORK"
"$BIN" live -i lo --format json --duration 400 --metrics 127.0.0.1:19187 > events.jsonl 2> hbscope.err &
HB=$!
sleep 2
cat > prometheus.yml <<YML
global: {scrape_interval: 5s, evaluation_interval: 5s}
rule_files: ["$ROOT/docs/prometheus-alerts.yml"]
scrape_configs:
  - job_name: hbscope
    static_configs: [{targets: ["127.0.0.1:19187"]}]
YML
prometheus --config.file=prometheus.yml --storage.tsdb.path=data --web.listen-address=127.0.0.1:19090 > prom.log 2>&1 &
PROM=$!
python3 -u "$ROOT/tests/clients/hb_client.py" serve 60 10 hbscope-e2e > client.log 2>&1 &
CL=$!
trap 'kill -CONT $CL 2>/dev/null; kill $CL $PROM 2>/dev/null; kill -INT $HB 2>/dev/null' EXIT
sleep 8
T0=$(date +%s)
kill -STOP $CL
echo "SIGSTOP at $(date -u +%T)" | tee run.out
q() { curl -s "http://127.0.0.1:19090/api/v1/query" --data-urlencode "query=$1" |
  python3 -c 'import json,sys; print([x["value"][1] for x in json.load(sys.stdin)["data"]["result"]])'; }
for _ in $(seq 1 48); do
  sleep 5
  al=$(curl -s 'http://127.0.0.1:19090/api/v1/alerts' | python3 -c 'import json,sys
print(" ".join("%s:%s" % (a["labels"]["alertname"], a["state"]) for a in json.load(sys.stdin)["data"]["alerts"]))')
  r=$(q 'hbscope_silence_ratio{client_name="hbscope-e2e",direction="client-to-broker"}')
  g=$(q 'hbscope_gaps_total{client_name="hbscope-e2e",cause="client-stall"}')
  echo "t+$(( $(date +%s) - T0 ))s ratio=$r gaps=$g alerts=[$al]" | tee -a run.out
done
