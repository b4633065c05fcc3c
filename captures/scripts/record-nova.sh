#!/usr/bin/env bash
# Record the nova-api (mod_wsgi prefork + eventlet) heartbeat captures for hbscope.
#
#   captures/nova-api-eventlet.pcap  heartbeat_in_pthread = False: the green heartbeat
#                                    thread starves while the process blocks in native
#                                    accept(); RabbitMQ cuts the connection; the next
#                                    HTTP request wakes the process, which reconnects.
#   captures/nova-api-pthread.pcap   heartbeat_in_pthread = True (the historical fix):
#                                    same workload, the connection survives.
#
# Usage: captures/scripts/record-nova.sh [eventlet|pthread|all]   (default: all)
#
# Needs: root (tcpdump on lo), tcpdump, tshark, curl, flock, python3 (>= 3.9) with
# venv + pip (network access to PyPI the first time), a RabbitMQ broker on
# 127.0.0.1:5672 accepting guest/guest, and TCP port 8774 free on 127.0.0.1.
# It builds /opt/hbscope-nova-venv (override: NOVA_VENV) once: system site-packages
# (eventlet, kombu, amqp, oslo.config, oslo.utils, ...) plus oslo.messaging 17.3.2,
# the last release that still has [oslo_messaging_rabbit] heartbeat_in_pthread
# (removed in 18.0).
#
# Every recording holds /tmp/hbscope-record.lock (flock) so that it never overlaps
# another recording on the shared broker. If the caller already holds that lock,
# set HBSCOPE_RECORD_LOCK_HELD=1.
#
# Idempotent: each run overwrites the pcap, its .expect.json (generated from the
# capture by verify_nova.py, which also fails the run if the capture does not show
# what it must) and nothing else. Client logs go to $NOVA_LOG_DIR (default
# /tmp/hbscope-nova-logs).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CAPTURES="$(cd "$HERE/.." && pwd)"
VENV="${NOVA_VENV:-/opt/hbscope-nova-venv}"
OSLO_MESSAGING_VERSION="${OSLO_MESSAGING_VERSION:-17.3.2}"
LOCK=/tmp/hbscope-record.lock
LOG_DIR="${NOVA_LOG_DIR:-/tmp/hbscope-nova-logs}"
RABBIT_LOG="${RABBIT_LOG:-/var/log/rabbitmq/rabbit@localhost.log}"
IDLE_S="${NOVA_IDLE_S:-22}"      # silence between the two HTTP requests
TAIL_S="${NOVA_TAIL_S:-2.5}"     # after the last request, before SIGTERM (< timeout 4 s)

die() { echo "record-nova: $*" >&2; exit 1; }
say() { echo "record-nova: $*" >&2; }

check_prereqs() {
    [ "$(id -u)" = 0 ] || die "must run as root (tcpdump on lo)"
    local t
    for t in tcpdump tshark curl flock python3; do
        command -v "$t" >/dev/null || die "needs '$t' in PATH"
    done
    command -v ss >/dev/null || die "needs 'ss' (iproute2)"
    # No test connection to 5672: it would land in another helper's recording.
    if ! ss -ltnH 'sport = :5672' | grep -q .; then
        if command -v rabbitmqctl >/dev/null; then
            say "broker not listening on 5672, waiting (rabbitmqctl await_startup)"
            rabbitmqctl await_startup --timeout 120 >/dev/null 2>&1 || true
        fi
        ss -ltnH 'sport = :5672' | grep -q . \
            || die "needs RabbitMQ listening on 127.0.0.1:5672 (start it: rabbitmq-server -detached)"
    fi
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" - <<EOF 2>/dev/null
import importlib.metadata as m, sys
sys.exit(m.version('oslo.messaging') != '$OSLO_MESSAGING_VERSION')
EOF
    then
        say "building $VENV (system site-packages + oslo.messaging==$OSLO_MESSAGING_VERSION)"
        python3 -m venv --system-site-packages "$VENV"
        "$VENV/bin/pip" install -q --no-deps "oslo.messaging==$OSLO_MESSAGING_VERSION"
    fi
    "$VENV/bin/python" -W ignore -c 'import eventlet, kombu, amqp, oslo_config, oslo_messaging' \
        2>/dev/null || die "$VENV lacks eventlet/kombu/amqp/oslo.config (pip install them into python3)"
    mkdir -p "$LOG_DIR"
}

# record_one CASE PTHREAD(true|false)
record_one() {
    local case="$1" pthread="$2"
    local out="$CAPTURES/nova-api-$case.pcap"
    local tmp; tmp="$(mktemp -d /tmp/hbscope-nova.XXXXXX)"
    local simlog="$LOG_DIR/nova-api-$case.client.log"
    local drvlog="$LOG_DIR/nova-api-$case.driver.log"
    ss -ltnH 'sport = :8774' | grep -q . && die "TCP port 8774 is already in use"

    say "recording $case (heartbeat_in_pthread=$pthread) -> $out"
    local rlog_lines; rlog_lines=$(wc -l < "$RABBIT_LOG" 2>/dev/null || echo 0)
    : > "$drvlog"
    tcpdump -i lo --immediate-mode -U -w "$tmp/cap.pcap" \
        'tcp port 5672 or tcp port 8774' 2> "$tmp/tcpdump.err" &
    local tcpdump_pid=$!
    local i
    for i in $(seq 100); do grep -q "listening on" "$tmp/tcpdump.err" && break; sleep 0.1; done
    grep -q "listening on" "$tmp/tcpdump.err" || { kill "$tcpdump_pid"; die "tcpdump did not start: $(cat "$tmp/tcpdump.err")"; }
    sleep 1

    "$VENV/bin/python" -W ignore "$HERE/nova_api_sim.py" \
        --heartbeat-in-pthread "$pthread" --port 8774 2> "$simlog" &
    local sim_pid=$!
    for i in $(seq 150); do grep -q "listening on 127.0.0.1:8774" "$simlog" && break; sleep 0.1; done
    grep -q "listening on 127.0.0.1:8774" "$simlog" || { kill "$sim_pid" "$tcpdump_pid" || true; die "simulator did not start, see $simlog"; }
    sleep 0.5

    echo "$(date -u +%FT%T.%N) request 1" >> "$drvlog"
    curl -sS --max-time 60 -o /dev/null -w '%{http_code}\n' \
        http://127.0.0.1:8774/v2.1/servers >> "$drvlog"
    say "$case: first request done, idle ${IDLE_S}s"
    sleep "$IDLE_S"
    echo "$(date -u +%FT%T.%N) request 2" >> "$drvlog"
    curl -sS --max-time 60 -o /dev/null -w '%{http_code}\n' \
        http://127.0.0.1:8774/v2.1/servers >> "$drvlog"
    sleep "$TAIL_S"
    echo "$(date -u +%FT%T.%N) SIGTERM" >> "$drvlog"
    kill -TERM "$sim_pid"
    wait "$sim_pid" || true
    sleep 1
    kill -INT "$tcpdump_pid"
    wait "$tcpdump_pid" || true
    tail -n +"$((rlog_lines + 1))" "$RABBIT_LOG" > "$LOG_DIR/nova-api-$case.rabbit.log" 2>/dev/null || true
    mv "$tmp/cap.pcap" "$out"
    cat "$tmp/tcpdump.err" >&2
    rm -rf "$tmp"
}

record_locked() {
    if [ "${HBSCOPE_RECORD_LOCK_HELD:-}" = 1 ]; then
        record_one "$@"
    else
        (
            flock 9
            record_one "$@"
        ) 9>"$LOCK"
    fi
}

verify() {
    local case="$1"
    "$VENV/bin/python" "$HERE/verify_nova.py" "$case" \
        --pcap "$CAPTURES/nova-api-$case.pcap" \
        --client-log "$LOG_DIR/nova-api-$case.client.log" \
        --rabbit-log "$LOG_DIR/nova-api-$case.rabbit.log" \
        --write-expect "$CAPTURES/nova-api-$case.expect.json"
}

what="${1:-all}"
case "$what" in
    eventlet|pthread|all) ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) die "usage: $0 [eventlet|pthread|all]" ;;
esac
check_prereqs
if [ "$what" = eventlet ] || [ "$what" = all ]; then
    record_locked eventlet false
    verify eventlet
fi
if [ "$what" = pthread ] || [ "$what" = all ]; then
    record_locked pthread true
    verify pthread
fi
