#!/bin/bash
# Record ONE of the TLS or bad-input hbscope captures: scenario-tls.sh NAME
#
#   tls13-healthy  tls13-client-stall  tls12-healthy  tls12-client-stall
#       pika over TLS to 127.0.0.1:5671 (scripts/pika_tls_client.py, heartbeat 2), tcpdump on
#       lo `tcp port 5671`; the TLS secrets go to ../NAME.keylog (NSS key log format) so the
#       capture can be decrypted: tshark -o tls.keylog_file:NAME.keylog -d tcp.port==5671,tls
#       tls12-*: TLS 1.2 only, cipher ECDHE-RSA-AES128-GCM-SHA256. Needs the TLS listener
#       (scripts/tls-setup.sh, which record.sh runs first).
#   tls-on-5672  amqp10-on-5672  http-on-5672
#       scripts/badinput_client.py sends a TLS ClientHello / the AMQP 1.0 headers / an HTTP GET
#       to the plain port 5672; tcpdump filters on the client's own (pre-bound) port(s) so
#       that other connections to the shared broker stay out of the capture.
#
# Must run as root, under `flock /tmp/hbscope-record.lock` (record.sh does that).
# Writes ../NAME.pcap (+ ../NAME.keylog) and ../logs/NAME.*.log. Reuses lib.sh.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

PY=${PYTHON:-python3}
TLSC="$PY -u $SCRIPTS/pika_tls_client.py"
BAD="$PY -u $SCRIPTS/badinput_client.py"
TLS12_CIPHER=ECDHE-RSA-AES128-GCM-SHA256

wait_for_log() {   # LOGNAME PATTERN TIMEOUT_S
    local f=$LOGDIR/$NAME.$1.log t=0
    while ! grep -q "$2" "$f" 2>/dev/null; do
        sleep 0.1; t=$((t + 1)); [ $t -ge $(( $3 * 10 )) ] && return 1
    done
    return 0
}
wait_exit() {      # PID TIMEOUT_S
    local t=0
    while kill -0 "$1" 2>/dev/null; do
        sleep 0.1; t=$((t + 1)); [ $t -ge $(( $2 * 10 )) ] && return 1
    done
    return 0
}

need_tls_listener() {
    ss -ltnH 'sport = :5671' | grep -q . || { mark "no TLS listener on 5671: run scripts/tls-setup.sh"; exit 1; }
}

# tls_scenario VERSION(1.3|1.2) STALL(0|1)
tls_scenario() {
    local ver=$1 stall=$2 keylog=$CAPDIR/$NAME.keylog
    local extra=()
    [ "$ver" = 1.2 ] && extra=(--ciphers "$TLS12_CIPHER")
    need_tls_listener
    rm -f "$keylog"
    cap_start lo "$OUT" -- tcp port 5671
    if [ "$stall" = 0 ]; then
        spawn client $TLSC --tls "$ver" "${extra[@]}" --keylog "$keylog" --heartbeat 2 \
            --duration 15 --name "hbscope-$NAME"
        local cpid=$LAST_PID
        mark "client pid $cpid started (TLS $ver, heartbeat 2, 15 s idle, clean close)"
        wait "$cpid"; mark "client exited rc=$?: $(tail -1 "$LOGDIR/$NAME.client.log")"
    else
        spawn client $TLSC --tls "$ver" "${extra[@]}" --keylog "$keylog" --heartbeat 2 \
            --duration 90 --name "hbscope-$NAME"
        local cpid=$LAST_PID
        wait_for_log client 'channel open' 10 || mark "client did not connect"
        mark "client pid $cpid connected (TLS $ver, heartbeat 2): $(grep -o 'tls=.*' "$LOGDIR/$NAME.client.log")"
        sleep 5
        kill -STOP "$cpid"; mark "SIGSTOP client pid $cpid"
        sleep 10
        kill -CONT "$cpid"; mark "SIGCONT client pid $cpid"
        wait_exit "$cpid" 8 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                            || mark "client still running after CONT"
    fi
    cap_stop 1.5
    chmod 0644 "$keylog" 2>/dev/null
    mark "keylog: $(basename "$keylog") $(wc -l < "$keylog" 2>/dev/null) lines"
}

# badinput_scenario MODE
badinput_scenario() {
    local mode=$1 tmp; tmp=$(mktemp -d /tmp/hbscope-badinput.XXXXXX)
    CLEANUP_HOOKS+=("rm -rf $tmp")
    spawn client $BAD "$mode" --portfile "$tmp/ports" --gofile "$tmp/go"
    local cpid=$LAST_PID t=0
    while [ ! -s "$tmp/ports" ] && [ $t -lt 100 ]; do sleep 0.1; t=$((t + 1)); done
    [ -s "$tmp/ports" ] || { mark "client did not bind"; exit 1; }
    local filt="" p
    for p in $(cat "$tmp/ports"); do filt="${filt:+$filt or }tcp port $p"; done
    cap_start lo "$OUT" -- "tcp port 5672 and ($filt)"
    touch "$tmp/go"
    mark "client pid $cpid ($mode) from local port(s) $(cat "$tmp/ports")"
    wait_exit "$cpid" 40 || mark "client still running after 40 s"
    wait "$cpid"; mark "client exited rc=$?"
    cap_stop 1.5
}

sc_tls13-healthy() { tls_scenario 1.3 0; }
sc_tls13-client-stall() { tls_scenario 1.3 1; }
sc_tls12-healthy() { tls_scenario 1.2 0; }
sc_tls12-client-stall() { tls_scenario 1.2 1; }
sc_tls-on-5672() { badinput_scenario tls; }
sc_amqp10-on-5672() { badinput_scenario amqp10; }
sc_http-on-5672() { badinput_scenario http; }

[ $# -eq 1 ] || { echo "usage: $0 NAME" >&2; exit 2; }
[ "$(type -t "sc_$1")" = function ] || { echo "unknown scenario: $1" >&2; exit 2; }
begin_scenario "$1"
"sc_$1"
end_scenario
