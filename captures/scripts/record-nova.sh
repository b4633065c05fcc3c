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
# It builds /opt/hbscope-nova-venv (override: NOVA_VENV) once with pip:
# oslo.messaging 17.3.2, the last release that still has [oslo_messaging_rabbit]
# heartbeat_in_pthread (removed in 18.0), and eventlet 0.41.3, with their
# dependencies (kombu, amqp, oslo.config, ...). No Apache: nova_api_sim.py plays
# one mod_wsgi prefork child (see captures/README.md). The broker's configuration
# is not touched.
#
# Every recording holds /tmp/hbscope-record.lock (flock) so that it never overlaps
# another recording on the shared broker. If the caller already holds that lock,
# set HBSCOPE_RECORD_LOCK_HELD=1.
#
# Idempotent: each run overwrites the pcap, its .expect.json (generated from the
# capture by verify_nova.py, which also fails the run if the capture does not show
# what it must) and its logs in captures/logs (override: NOVA_LOG_DIR), as the other
# scenarios do: nova-api-CASE.client.log (the simulator's output),
# .driver.log (when each request was sent), .tcpdump.cmd, and .broker.log: the
# RabbitMQ log lines written during the recording about the simulator's own
# connections (lines of other users of the shared broker left out), for
# `hbscope replay --broker-log`.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CAPTURES="$(cd "$HERE/.." && pwd)"
VENV="${NOVA_VENV:-/opt/hbscope-nova-venv}"
OSLO_MESSAGING_VERSION="${OSLO_MESSAGING_VERSION:-17.3.2}"
EVENTLET_VERSION="${EVENTLET_VERSION:-0.41.3}"
LOCK=/tmp/hbscope-record.lock
LOG_DIR="${NOVA_LOG_DIR:-$CAPTURES/logs}"
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
        say "building $VENV (oslo.messaging==$OSLO_MESSAGING_VERSION eventlet==$EVENTLET_VERSION)"
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install -q "oslo.messaging==$OSLO_MESSAGING_VERSION" \
            "eventlet==$EVENTLET_VERSION"
    fi
    "$VENV/bin/python" -W ignore -c 'import eventlet, kombu, amqp, oslo_config, oslo_messaging' \
        2>/dev/null || die "$VENV lacks eventlet/kombu/amqp/oslo.config (remove $VENV and run again)"
    mkdir -p "$LOG_DIR"
}

# record_one CASE PTHREAD(true|false)
record_one() {
    local case="$1" pthread="$2"
    local out="$CAPTURES/nova-api-$case.pcap"
    local tmp; tmp="$(mktemp -d /tmp/hbscope-nova.XXXXXX)"
    local simlog="$LOG_DIR/nova-api-$case.client.log"
    local drvlog="$LOG_DIR/nova-api-$case.driver.log"
    local brklog="$LOG_DIR/nova-api-$case.broker.log"
    ss -ltnH 'sport = :8774' | grep -q . && die "TCP port 8774 is already in use"

    say "recording $case (heartbeat_in_pthread=$pthread) -> $out"
    local rlog_lines; rlog_lines=$(wc -l < "$RABBIT_LOG" 2>/dev/null || echo 0)
    : > "$drvlog"
    echo "tcpdump -i lo --immediate-mode -U -w nova-api-$case.pcap 'tcp port 5672 or tcp port 8774'" \
        > "$LOG_DIR/nova-api-$case.tcpdump.cmd"
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
    # The broker is shared: note the simulator's own AMQP client ports (its sockets
    # in ss) so that other users' connections can be filtered out of the capture.
    ( while kill -0 "$sim_pid" 2>/dev/null; do
          ss -tnpH 'dport = :5672' 2>/dev/null | grep -F "pid=$sim_pid," \
              | awk '{print $4}' | sed 's/.*://' || true
          sleep 0.05
      done > "$tmp/ports.raw" ) &
    local ports_pid=$!
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
    wait "$ports_pid" || true
    local ports; ports=$(sort -un "$tmp/ports.raw" | tr '\n' ' ')
    [ -n "$ports" ] || die "no AMQP socket of the simulator (pid $sim_pid) seen in ss"
    local keep="tcp port 8774"
    local port
    for port in $ports; do keep="$keep or (tcp port 5672 and tcp port $port)"; done
    say "simulator's AMQP client ports: $ports"
    tcpdump -r "$tmp/cap.pcap" -w "$tmp/own.pcap" "$keep" 2>> "$tmp/tcpdump.err"
    echo "then: tcpdump -r nova-api-$case.pcap -w nova-api-$case.pcap '$keep' (the simulator's own connections; other users of the shared broker left out)" \
        >> "$LOG_DIR/nova-api-$case.tcpdump.cmd"
    # The broker is shared: keep only the Erlang processes (<0.N.0>) whose lines name
    # this simulator's connections (oslo.messaging's connection_name is
    # nova_api_sim.py:PID:UUID), every line of each (accepting ... closing, and the
    # "missed heartbeats from client" line that follows the closing one).
    tail -n +"$((rlog_lines + 1))" "$RABBIT_LOG" 2>/dev/null > "$tmp/broker.all" || true
    local pids; pids=$(grep -F "nova_api_sim.py:$sim_pid:" "$tmp/broker.all" \
        | grep -o '<[0-9]*\.[0-9]*\.[0-9]*>' | sort -u | tr '\n' ' ' || true)
    : > "$brklog"
    local p
    for p in $pids; do grep -F " $p " "$tmp/broker.all" >> "$brklog" || true; done
    sort -s -k1,2 -o "$brklog" "$brklog"
    if grep -q 'missed heartbeats' "$brklog"; then
        say "broker log: $(grep 'missed heartbeats' "$brklog")"
    fi
    mv "$tmp/own.pcap" "$out"
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
        --rabbit-log "$LOG_DIR/nova-api-$case.broker.log" \
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
