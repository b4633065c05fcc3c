#!/bin/bash
# Record ONE hbscope capture scenario: scenario.sh NAME
# Must run as root, under `flock /tmp/hbscope-record.lock` (record.sh does that).
# Writes ../NAME.pcap and ../logs/NAME.*.log (timeline, client output, broker log excerpt).
set -uo pipefail
source "$(dirname "$0")/lib.sh"

PY=${PYTHON:-python3}
PIKA="$PY -u $SCRIPTS/pika_client.py"
BUSY="$PY -u $SCRIPTS/busy.py"
AMQP_FILTER="tcp port 5672"

# wait_for_log LOGNAME PATTERN TIMEOUT_S
wait_for_log() {
    local f=$LOGDIR/$NAME.$1.log t=0
    while ! grep -q "$2" "$f" 2>/dev/null; do
        sleep 0.1; t=$((t + 1)); [ $t -ge $(( $3 * 10 )) ] && return 1
    done
    return 0
}
# wait_exit PID TIMEOUT_S
wait_exit() {
    local t=0
    while kill -0 "$1" 2>/dev/null; do
        sleep 0.1; t=$((t + 1)); [ $t -ge $(( $2 * 10 )) ] && return 1
    done
    return 0
}
stop_client() { kill -STOP "$1"; mark "SIGSTOP client pid $1"; }
cont_client() { kill -CONT "$1"; mark "SIGCONT client pid $1"; }

# generic "idle pika client gets SIGSTOPped" scenario
# sigstop_scenario IFACE HEARTBEAT HEALTHY_S STOP_S [tcpdump opts...] ; extra client args in $CLIENT_ARGS
sigstop_scenario() {
    local iface=$1 hb=$2 healthy=$3 stopped=$4; shift 4
    cap_start "$iface" "$OUT" "$@" -- $AMQP_FILTER
    spawn client $PIKA --heartbeat "$hb" --duration 90 --name "hbscope-$NAME" ${CLIENT_ARGS:-}
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "client pid $cpid connected (heartbeat $hb)"
    sleep "$healthy"
    stop_client "$cpid"
    sleep "$stopped"
    cont_client "$cpid"
    wait_exit "$cpid" 8 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                        || mark "client still running after CONT"
    cap_stop 1.5
}

netns_setup() {
    NS=hbscope-c
    ip netns del $NS 2>/dev/null; ip link del hbs-h 2>/dev/null
    ip netns add $NS
    CLEANUP_HOOKS+=("ip netns del $NS 2>/dev/null; ip link del hbs-h 2>/dev/null")
    ip link add hbs-h type veth peer name hbs-c
    ip link set hbs-c netns $NS
    ip addr add 10.77.0.1/24 dev hbs-h
    ip link set hbs-h up
    ip netns exec $NS ip addr add 10.77.0.2/24 dev hbs-c
    ip netns exec $NS ip link set hbs-c up
    ip netns exec $NS ip link set lo up
    # no IPv6 chatter (router solicitations, MLD) on the link
    sysctl -qw net.ipv6.conf.hbs-h.disable_ipv6=1
    ip netns exec $NS sysctl -qw net.ipv6.conf.hbs-c.disable_ipv6=1
    sleep 0.5
    ip netns exec $NS ping -c3 -i0.3 -W2 10.77.0.1 >/dev/null || mark "WARNING: veth ping failed"
}

# netns_scenario CHAINS... : blackhole the given iptables chains inside the client namespace
netns_scenario() {
    netns_setup
    cap_start hbs-h "$OUT" -- $AMQP_FILTER
    spawn client ip netns exec $NS $PIKA --host 10.77.0.1 --user hbscope --password hbscope \
        --heartbeat 2 --duration 90 --name "hbscope-$NAME"
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "client pid $cpid connected from netns $NS (10.77.0.2 -> 10.77.0.1:5672, heartbeat 2)"
    sleep 5
    for ch in "$@"; do ip netns exec $NS iptables -A "$ch" -j DROP; done
    mark "iptables DROP on $* inside $NS"
    sleep 15
    ip netns exec $NS iptables -F
    mark "iptables rules removed"
    wait_exit "$cpid" 12 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                         || mark "client still running 12 s after rules removed"
    # keep recording: the client's kernel retransmits what was dropped (backoff of seconds)
    sleep 8
    cap_stop 1.5
    ip netns exec $NS ss -tnoi > "$LOGDIR/$NAME.ss-after.log" 2>&1 || true
}

sc_healthy-idle() {
    cap_start lo "$OUT" -- $AMQP_FILTER
    spawn client $PIKA --heartbeat 2 --duration 15 --name hbscope-healthy-idle
    mark "client pid $LAST_PID started (heartbeat 2, 15 s idle, clean close)"
    wait "$LAST_PID"; mark "client exited rc=$?"
    cap_stop
}

sc_healthy-busy() {
    cap_start lo "$OUT" -- $AMQP_FILTER
    spawn busy $BUSY --pairs 2 --rate 8 --large-every 4 --heartbeat 4 --duration 15
    mark "busy pid $LAST_PID started (2 pairs = 4 connections, heartbeat 4, 15 s)"
    wait "$LAST_PID"; mark "busy exited rc=$?: $(tail -1 "$LOGDIR/$NAME.busy.log")"
    cap_stop
}

sc_client-sigstop() { sigstop_scenario lo 2 5 10; }

sc_broker-sigstop() {
    cap_start lo "$OUT" -- $AMQP_FILTER
    spawn client $PIKA --heartbeat 2 --duration 60 --name hbscope-broker-sigstop
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "client pid $cpid connected (heartbeat 2)"
    sleep 5
    stop_broker
    # pika checks every timeout+5 = 7 s: wait until it gives up (at most 20 s)
    wait_exit "$cpid" 20 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                         || mark "client still running after 20 s of broker stop"
    sleep 1
    cont_broker
    sleep 3
    cap_stop 1.5
}

sc_netns-blackhole() { netns_scenario INPUT OUTPUT; }
sc_netns-oneway() { netns_scenario OUTPUT; }

sc_after-handshake() {
    spawn client $PIKA --heartbeat 4 --duration 90 --name hbscope-after-handshake
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "client pid $cpid connected (heartbeat 4); capture starts 3 s later"
    sleep 3
    cap_start lo "$OUT" -- $AMQP_FILTER
    sleep 25
    stop_client "$cpid"
    sleep 14
    cont_client "$cpid"
    wait_exit "$cpid" 8 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                        || mark "client still running after CONT"
    cap_stop 1.5
}

sc_heartbeat-disabled() {
    cap_start lo "$OUT" -- $AMQP_FILTER
    spawn client $PIKA --heartbeat 0 --duration 15 --name hbscope-heartbeat-disabled
    mark "client pid $LAST_PID started (heartbeat 0, 15 s idle, clean close)"
    wait "$LAST_PID"; mark "client exited rc=$?"
    cap_stop
}

sc_many-busy-one-stalled() {
    cap_start lo "$OUT" -- $AMQP_FILTER
    spawn busy $BUSY --pairs 7 --rate 4 --large-every 0 --heartbeat 2 --duration 32
    local bpid=$LAST_PID
    wait_for_log busy 'all 14 connections started' 10
    mark "busy pid $bpid: 7 pairs = 14 connections, heartbeat 2"
    spawn client $PIKA --heartbeat 2 --duration 90 --name hbscope-many-busy-stalled
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "idle client pid $cpid connected (heartbeat 2)"
    sleep 6
    stop_client "$cpid"
    sleep 10
    cont_client "$cpid"
    wait_exit "$cpid" 8 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")"
    wait "$bpid"; mark "busy exited: $(tail -1 "$LOGDIR/$NAME.busy.log")"
    cap_stop
}

sc_small-snaplen() {
    cap_start lo "$OUT" -s 80 -- $AMQP_FILTER
    spawn busy $BUSY --pairs 1 --rate 10 --large-every 4 --heartbeat 2 --duration 22
    local bpid=$LAST_PID
    wait_for_log busy 'all 2 connections started' 10
    mark "busy pid $bpid: 1 pair = 2 connections, heartbeat 2"
    spawn client $PIKA --heartbeat 2 --duration 90 --name hbscope-small-snaplen
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "idle client pid $cpid connected (heartbeat 2)"
    sleep 5
    stop_client "$cpid"
    sleep 10
    cont_client "$cpid"
    wait_exit "$cpid" 8 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")"
    wait "$bpid"; mark "busy exited: $(tail -1 "$LOGDIR/$NAME.busy.log")"
    cap_stop
}

# A client whose connection_name tries to take over the terminal (ESC sequences clear the
# screen and set the title), forge report lines (newline) and break Markdown/HTML.
sc_hostile-names() {
    local name=$'\e[2J\e]0;owned\a\nhbscope: 0 flagged, all healthy | # Heading [x](http://e) <script>alert(1)</script>'
    CLIENT_ARGS="--name-hex $(printf '%s' "$name" | od -An -tx1 | tr -d ' \n')" sigstop_scenario lo 2 5 10
}

sc_any-interface() { sigstop_scenario any 2 5 10; }
sc_any-interface-sll1() { sigstop_scenario any 2 5 10 -y LINUX_SLL; }

sc_ipv6() { CLIENT_ARGS="--host ::1" sigstop_scenario lo 2 8 10; }

sc_empty() {
    cap_start lo "$OUT" -- tcp port 1
    sleep 1
    cap_stop 0
}

sc_non-amqp() {
    local dir; dir=$(mktemp -d); echo "hello from hbscope non-amqp capture" > "$dir/index.html"
    CLEANUP_HOOKS+=("rm -rf $dir")
    cap_start lo "$OUT" -- tcp port 8765
    spawn http $PY -m http.server 8765 --bind 127.0.0.1 --directory "$dir"
    local hpid=$LAST_PID
    sleep 1
    curl -s http://127.0.0.1:8765/index.html >> "$LOGDIR/$NAME.http.log"
    mark "HTTP GET done (server pid $hpid)"
    sleep 0.5
    kill "$hpid"; wait "$hpid" 2>/dev/null
    cap_stop
}

# ---- captures/pending/: broker flow control, middlebox idle timeouts, late heartbeats -----
# record.sh runs these with CAPDIR=captures/pending (their verdict rules do not exist yet, so
# tests/verdicts.rs must not see them).
FLOW="$PY -u $SCRIPTS/pika_flow.py"

# local port of a pika client, from its "connected local=('127.0.0.1', 40000) ..." log line
client_port() { sed -n "s/.*connected local=('[^']*', \([0-9]*\)).*/\1/p" "$LOGDIR/$NAME.$1.log" | head -1; }
# Other people's tests use the same broker on lo:5672 while we record: keep only our own
# connections in the capture (tcpdump -r/-w copies the packets unchanged: same link type,
# snaplen and timestamps). keep_ports FILE PORT...
keep_ports() {
    local f=$1; shift
    local filt="tcp port $1" p; shift
    for p in "$@"; do filt="$filt or tcp port $p"; done
    local before; before=$(tcpdump -r "$f" 2>/dev/null | wc -l)
    tcpdump -r "$f" -w "$f.keep" "$filt" 2>/dev/null && mv "$f.keep" "$f" && chown root:root "$f"
    echo "tcpdump -r $(basename "$f") -w $(basename "$f") '$filt'   # after recording" >> "$LOGDIR/$NAME.tcpdump.cmd"
    mark "kept only $filt: $(tcpdump -r "$f" 2>/dev/null | wc -l) of $before packets"
}
# ss view (queues, windows, timers) of the connection whose local port is $2, into logs/NAME.$1.log
ss_snapshot() {
    { echo "== $(now) ss -tnmioe ( sport = :$2 or dport = :$2 )"
      ss -tnmioe "( sport = :$2 or dport = :$2 )"; } >> "$LOGDIR/$NAME.$1.log" 2>&1
}

# The memory high watermark as arguments of `rabbitmqctl set_vm_memory_high_watermark`
# ("0.4" or "absolute N"), and the broker's alarms, from `rabbitmqctl status`.
watermark_args() {
    rabbitmqctl status --formatter json 2>/dev/null | $PY -c '
import json, sys
w = json.load(sys.stdin)["vm_memory_high_watermark_setting"]
print(w["relative"] if "relative" in w else "absolute %s" % w["absolute"])'
}
broker_alarms() {
    rabbitmqctl status --formatter json 2>/dev/null | $PY -c 'import json, sys; print(json.load(sys.stdin)["alarms"])'
}
WM_ORIG=
# put the watermark back (cleanup hook too: runs on every exit, also on failure or Ctrl-C)
restore_watermark() {
    [ -n "$WM_ORIG" ] || return 0
    if rabbitmqctl set_vm_memory_high_watermark $WM_ORIG >/dev/null 2>&1; then
        mark "restored: rabbitmqctl set_vm_memory_high_watermark $WM_ORIG (alarms now: $(broker_alarms))"
        WM_ORIG=
    else
        mark "FAILED to restore the memory watermark: run rabbitmqctl set_vm_memory_high_watermark $WM_ORIG"
        return 1
    fi
}

# A steady publisher (32 KB bodies, 3/s) when the broker raises a memory alarm for 10 s: the
# broker sends Connection.Blocked, stops reading the socket at the next publish, its receive
# window fills to zero; the client's kernel can only send zero-window probes. The watermark is
# then restored (Connection.Unblocked). Every connection on this broker that publishes is
# blocked for those 10 s (shared broker: keep it short).
sc_broker-blocked() {
    local wm; wm=$(watermark_args)
    [ -n "$wm" ] || { mark "cannot read the memory watermark from rabbitmqctl status: broker untouched"; return 1; }
    [ "$(broker_alarms)" = "[]" ] || { mark "broker already has alarms: $(broker_alarms); not recording"; return 1; }
    CLEANUP_HOOKS+=("restore_watermark")
    # -B: 64 KB loopback segments in bursts overflow tcpdump's default 2 MB buffer
    cap_start lo "$OUT" -B 16384 -- $AMQP_FILTER
    spawn publisher $FLOW publisher --heartbeat 2 --queue hbscope.blocked --size 32768 --rate 3 \
        --duration 18 --name hbscope-broker-blocked
    local ppid=$LAST_PID
    wait_for_log publisher 'queue .* declared' 10 || mark "publisher did not connect"
    local port; port=$(client_port publisher)
    mark "publisher pid $ppid connected, port $port (heartbeat 2, 32768-byte bodies at 3/s)"
    sleep 2     # rabbitmqctl itself takes ~2 s more
    WM_ORIG=$wm
    rabbitmqctl set_vm_memory_high_watermark 0.0000001 >> "$LOGDIR/$NAME.rabbitmqctl.log" 2>&1
    mark "memory alarm: rabbitmqctl set_vm_memory_high_watermark 0.0000001 (was $wm); alarms: $(broker_alarms)"
    wait_for_log publisher 'Connection.Blocked' 5 && mark "publisher logged: $(grep 'Connection.Blocked' "$LOGDIR/$NAME.publisher.log" | head -1)"
    sleep 4
    ss_snapshot ss "$port"
    sleep 5
    ss_snapshot ss "$port"
    restore_watermark
    wait_for_log publisher 'Connection.Unblocked' 5 && mark "publisher logged: $(grep 'Connection.Unblocked' "$LOGDIR/$NAME.publisher.log" | head -1)"
    wait_exit "$ppid" 15 && mark "publisher exited: $(tail -1 "$LOGDIR/$NAME.publisher.log")" \
                         || mark "publisher still running 15 s after the alarm was cleared"
    cap_stop 1.5
    keep_ports "$OUT" "$port"
}

# A consumer (prefetch 500, manual acks, heartbeat 2) receiving 32 KB messages at 8/s from a
# publisher on another connection, SIGSTOPped 8 s: its receive window fills to zero and the
# broker can only send zero-window probes. Only the consumer's connection is kept in the
# capture (the publisher's would double the size).
sc_consumer-zero-window() {
    local dir; dir=$(mktemp -d /tmp/hbscope-zw.XXXXXX); CLEANUP_HOOKS+=("rm -rf $dir")
    spawn publisher $FLOW publisher --heartbeat 2 --queue hbscope.zerowindow --size 32768 --rate 8 \
        --duration 12 --go-file "$dir/go" --name hbscope-zw-publisher
    local ppid=$LAST_PID
    wait_for_log publisher 'waiting for' 10 || mark "publisher did not connect"
    local pport; pport=$(client_port publisher)
    mark "publisher pid $ppid connected, port $pport (heartbeat 2, 32768-byte bodies at 8/s once told to go); not captured"
    cap_start lo "$OUT" -B 16384 -- $AMQP_FILTER and not tcp port "$pport"   # keep_ports below
    spawn client $FLOW consumer --heartbeat 2 --queue hbscope.zerowindow --prefetch 500 \
        --duration 20 --name hbscope-consumer-zero-window
    local cpid=$LAST_PID
    wait_for_log client 'consuming' 10 || mark "consumer did not connect"
    local cport; cport=$(client_port client)
    mark "consumer pid $cpid connected, port $cport (heartbeat 2, prefetch 500)"
    touch "$dir/go"
    mark "publisher told to go"
    sleep 3
    stop_client "$cpid"
    sleep 3
    ss_snapshot ss "$cport"
    sleep 5
    ss_snapshot ss "$cport"
    sleep 0.01
    cont_client "$cpid"
    wait_exit "$cpid" 15 && mark "consumer exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                        || mark "consumer still running 15 s after CONT"
    wait_exit "$ppid" 10 && mark "publisher exited: $(tail -1 "$LOGDIR/$NAME.publisher.log")"
    cap_stop 1.5
    keep_ports "$OUT" "$cport"
}

# Two tcpdumps at once: $CAPDIR/NAME.client.pcap (IFACE1, FILTER1) and NAME.broker.pcap
# (IFACE2, FILTER2). caps2_start IFACE1 FILTER1 IFACE2 FILTER2
TD_C=; TD_B=
caps2_start() {
    local fc=$CAPDIR/$NAME.client.pcap fb=$CAPDIR/$NAME.broker.pcap
    rm -f "$fc" "$fb"
    : > "$LOGDIR/$NAME.tcpdump.log"
    {
        echo "tcpdump --immediate-mode -U -i $1 -w $NAME.client.pcap $2"
        echo "tcpdump --immediate-mode -U -i $3 -w $NAME.broker.pcap $4"
    } > "$LOGDIR/$NAME.tcpdump.cmd"
    tcpdump --immediate-mode -U -i "$1" -w "$fc" $2 2>>"$LOGDIR/$NAME.tcpdump.log" &
    TD_C=$!
    tcpdump --immediate-mode -U -i "$3" -w "$fb" $4 2>>"$LOGDIR/$NAME.tcpdump.log" &
    TD_B=$!
    CLEANUP_HOOKS+=('for p in $TD_C $TD_B; do kill -INT $p 2>/dev/null; done')
    for _ in $(seq 50); do
        [ "$(grep -c 'listening on' "$LOGDIR/$NAME.tcpdump.log")" -ge 2 ] && break
        sleep 0.1
    done
    sleep 0.3
    mark "tcpdumps started (client side pid $TD_C on $1, broker side pid $TD_B on $3)"
}
caps2_stop() {
    sleep "${1:-1.5}"
    for p in $TD_C $TD_B; do kill -INT "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    chown root:root "$CAPDIR/$NAME.client.pcap" "$CAPDIR/$NAME.broker.pcap" 2>/dev/null
    mark "tcpdumps stopped: $(grep -E 'captured|dropped' "$LOGDIR/$NAME.tcpdump.log" | tr '\n' ' ')"
    TD_C=; TD_B=
}

# Our own haproxy (never the system service): mode tcp, 5 s client/server idle timeouts,
# listening on BIND, connecting to the broker at 127.0.0.1:5672 from SOURCE (a loopback address
# of its own, so the broker-side capture can filter on it and the broker still sees a loopback
# peer: guest is allowed). Logs (tcplog) go to logs/NAME.haproxy.log. haproxy_start BIND SOURCE
haproxy_start() {
    command -v haproxy >/dev/null || { mark "needs haproxy (apt-get install -y haproxy; do not start the service)"; return 1; }
    local dir; dir=$(mktemp -d /tmp/hbscope-haproxy.XXXXXX); CLEANUP_HOOKS+=("rm -rf $dir")
    cat > "$dir/haproxy.cfg" <<EOF
global
    log stdout format raw local0 info
    maxconn 64
defaults
    mode tcp
    log global
    option tcplog
    timeout connect 2s
    timeout client 5s
    timeout server 5s
frontend amqp_in
    bind $1
    default_backend rabbitmq
backend rabbitmq
    server rmq 127.0.0.1:5672 source $2
EOF
    cp "$dir/haproxy.cfg" "$LOGDIR/$NAME.haproxy.cfg"
    spawn haproxy haproxy -db -f "$dir/haproxy.cfg"
    HAPROXY_PID=$LAST_PID
    local t=0
    while ! ss -ltnH "src ${1%:*} and sport = :${1##*:}" | grep -q .; do
        sleep 0.1; t=$((t + 1))
        [ $t -ge 50 ] && { mark "haproxy is not listening on $1: $(tail -3 "$LOGDIR/$NAME.haproxy.log")"; return 1; }
    done
    mark "haproxy $(haproxy -v | head -1 | awk '{print $3}') pid $HAPROXY_PID listening on $1 -> 127.0.0.1:5672 (source $2), timeout client/server 5s, connect 2s"
}

# haproxy_idle_scenario HEARTBEAT: an idle pika client in netns hbscope-c connects through
# haproxy (10.77.0.1:5672 on the host side of the veth) to the broker; the proxy's 5 s idle
# timeout ends it unless heartbeats come more often than that. Captured on both sides of the
# proxy at once: client side on hbs-h, broker side on lo (haproxy's source 127.0.0.2).
haproxy_idle_scenario() {
    if ss -ltnH 'sport = :5672' | grep -qE '(\*|0\.0\.0\.0|\[::\]):5672'; then
        mark "the broker listens on all interfaces (broker-setup.sh): haproxy cannot bind 10.77.0.1:5672"; return 1
    fi
    netns_setup
    haproxy_start 10.77.0.1:5672 127.0.0.2 || return 1
    OUT=$CAPDIR/$NAME.broker.pcap   # for end_scenario's size line
    caps2_start hbs-h "tcp port 5672" lo "tcp port 5672 and host 127.0.0.2"
    spawn client ip netns exec $NS $PIKA --host 10.77.0.1 --heartbeat "$1" --duration 30 \
        --name "hbscope-$NAME" --log-heartbeats
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "client pid $cpid connected from netns $NS (10.77.0.2 -> haproxy 10.77.0.1:5672 -> 127.0.0.2 -> 127.0.0.1:5672, heartbeat $1)"
    wait_exit "$cpid" 20 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                         || mark "client still running 20 s after connecting"
    sleep 2
    caps2_stop 1
    kill "$HAPROXY_PID" 2>/dev/null; wait "$HAPROXY_PID" 2>/dev/null
    mark "haproxy stopped; its log: $(tr '\n' ' ' < "$LOGDIR/$NAME.haproxy.log")"
}
sc_haproxy-idle-hb0() { haproxy_idle_scenario 0; }
sc_haproxy-idle-hb-long() { haproxy_idle_scenario 30; }

# pika heartbeat 4 (one frame every 2 s) SIGSTOPped right after it sent a heartbeat, for
# 2.5, 3.0, 3.5 and 3.0 s: silences just below the 4 s timeout (near-misses), no gap.
sc_late-heartbeats() {
    cap_start lo "$OUT" -- $AMQP_FILTER
    spawn client $PIKA --heartbeat 4 --duration 40 --name hbscope-late-heartbeats --log-heartbeats
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    local port; port=$(client_port client)
    mark "client pid $cpid connected, port $port (heartbeat 4: pika sends every 2 s)"
    sleep 5
    local d n t
    for d in 2.5 3.0 3.5 3.0; do
        n=$(grep -c 'Sending heartbeat frame' "$LOGDIR/$NAME.client.log")
        t=0
        while [ "$(grep -c 'Sending heartbeat frame' "$LOGDIR/$NAME.client.log")" -le "$n" ]; do
            sleep 0.02; t=$((t + 1)); [ $t -ge 250 ] && break
        done
        sleep 0.05    # let the frame leave pika's output buffer
        stop_client "$cpid"
        sleep "$d"
        cont_client "$cpid"
        mark "client was stopped $d s right after a heartbeat send"
        sleep 4
    done
    wait_exit "$cpid" 25 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                         || mark "client still running"
    cap_stop
    keep_ports "$OUT" "$port"
}

# A Docker/Kubernetes-like host: the client in its own namespace behind a Linux bridge, the
# broker in the root namespace, `tcpdump -i any` there. Every packet is captured twice: on the
# client's veth and on the bridge. The broker listens on 127.0.0.1 only, so the bridge address
# is DNATed to it (route_localnet): no broker restart. The client logs in as hbscope/hbscope
# (guest is loopback-only), a user this scenario adds and removes again if it was not there.
sc_bridge-any() {
    local ns=hbs-br-ns added_user=0
    ip netns del $ns 2>/dev/null; ip link del hbs-br 2>/dev/null; ip link del hbs-brh 2>/dev/null
    ip netns add $ns
    ip link add hbs-br type bridge
    ip link add hbs-brh type veth peer name hbs-brc
    ip link set hbs-brc netns $ns
    ip link set hbs-brh master hbs-br
    ip addr add 10.79.0.1/24 dev hbs-br
    ip link set hbs-br up; ip link set hbs-brh up
    sysctl -qw net.ipv6.conf.hbs-br.disable_ipv6=1 net.ipv6.conf.hbs-brh.disable_ipv6=1
    ip netns exec $ns sysctl -qw net.ipv6.conf.hbs-brc.disable_ipv6=1
    ip netns exec $ns ip addr add 10.79.0.2/24 dev hbs-brc
    ip netns exec $ns ip link set hbs-brc up
    ip netns exec $ns ip link set lo up
    sysctl -qw net.ipv4.conf.hbs-br.route_localnet=1
    # With br_netfilter calling iptables for bridged frames, the DNAT happens before the capture
    # on the bridge sees the frame: the client's packets would appear once to 10.79.0.1 and once
    # to 127.0.0.1 (what a Docker host with a published port shows). Off while recording, so
    # both copies are the same packet; restored afterwards.
    local nfcall; nfcall=$(sysctl -n net.bridge.bridge-nf-call-iptables 2>/dev/null)
    if [ -n "$nfcall" ]; then
        sysctl -qw net.bridge.bridge-nf-call-iptables=0
        CLEANUP_HOOKS+=("sysctl -qw net.bridge.bridge-nf-call-iptables=$nfcall")
    fi
    iptables -t nat -A PREROUTING -i hbs-br -p tcp -d 10.79.0.1 --dport 5672 -j DNAT --to-destination 127.0.0.1:5672
    CLEANUP_HOOKS+=("iptables -t nat -D PREROUTING -i hbs-br -p tcp -d 10.79.0.1 --dport 5672 -j DNAT --to-destination 127.0.0.1:5672; ip netns del $ns; ip link del hbs-br")
    if ! rabbitmqctl list_users --silent 2>/dev/null | grep -q '^hbscope\b'; then
        rabbitmqctl add_user hbscope hbscope >/dev/null && added_user=1
        rabbitmqctl set_permissions -p / hbscope '.*' '.*' '.*' >/dev/null
        CLEANUP_HOOKS+=("rabbitmqctl delete_user hbscope >/dev/null")
    fi
    mark "bridge hbs-br 10.79.0.1 <- veth -> netns $ns 10.79.0.2; DNAT 10.79.0.1:5672 -> 127.0.0.1:5672; user hbscope added: $added_user"
    cap_start any "$OUT" -- $AMQP_FILTER
    spawn client ip netns exec $ns $PIKA --host 10.79.0.1 --user hbscope --password hbscope \
        --heartbeat 2 --duration 90 --name "hbscope-$NAME"
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "client pid $cpid connected from netns $ns (10.79.0.2 -> 10.79.0.1:5672, heartbeat 2)"
    sleep 5
    stop_client "$cpid"
    sleep 10
    cont_client "$cpid"
    wait_exit "$cpid" 8 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                        || mark "client still running after CONT"
    cap_stop 1.5
}

# A client host whose connection ends unseen, then a new connection on the same 4-tuple.
# Client in netns hbs-pr-ns (10.78.0.2) behind veth hbs-prh (10.78.0.1, DNAT to the broker's
# 127.0.0.1:5672, so the broker need not listen on other addresses; user hbscope added for the
# run). pika bound to source port 41000 with SO_LINGER 0 is SIGKILLed after 4 s while iptables
# drops every RST and FIN of that 4-tuple both ways before the capture point (the client's in
# its namespace, the broker's in the host's OUTPUT chain): neither end is seen. The broker goes
# on sending heartbeats (the client's kernel answers RST, dropped) and cuts the connection 2-3
# timeouts later (its RST dropped too). The rules go, and a second pika client connects from
# the same port 41000: a SYN on a 4-tuple whose connection the capture never saw end.
sc_port-reuse() {
    local ns=hbs-pr-ns port=41000 added_user=0
    ip netns del $ns 2>/dev/null; ip link del hbs-prh 2>/dev/null
    ip netns add $ns
    CLEANUP_HOOKS+=("ip netns del $ns 2>/dev/null; ip link del hbs-prh 2>/dev/null")
    ip link add hbs-prh type veth peer name hbs-prc
    ip link set hbs-prc netns $ns
    ip addr add 10.78.0.1/24 dev hbs-prh
    ip link set hbs-prh up
    sysctl -qw net.ipv6.conf.hbs-prh.disable_ipv6=1
    ip netns exec $ns sysctl -qw net.ipv6.conf.hbs-prc.disable_ipv6=1
    ip netns exec $ns ip addr add 10.78.0.2/24 dev hbs-prc
    ip netns exec $ns ip link set hbs-prc up
    ip netns exec $ns ip link set lo up
    sysctl -qw net.ipv4.conf.hbs-prh.route_localnet=1
    iptables -t nat -A PREROUTING -i hbs-prh -p tcp -d 10.78.0.1 --dport 5672 -j DNAT --to-destination 127.0.0.1:5672
    CLEANUP_HOOKS+=("iptables -t nat -D PREROUTING -i hbs-prh -p tcp -d 10.78.0.1 --dport 5672 -j DNAT --to-destination 127.0.0.1:5672")
    if ! rabbitmqctl list_users --silent 2>/dev/null | grep -q '^hbscope\b'; then
        rabbitmqctl add_user hbscope hbscope >/dev/null && added_user=1
        rabbitmqctl set_permissions -p / hbscope '.*' '.*' '.*' >/dev/null
        CLEANUP_HOOKS+=("rabbitmqctl delete_user hbscope >/dev/null")
    fi
    mark "veth hbs-prh 10.78.0.1 <-> netns $ns 10.78.0.2; DNAT 10.78.0.1:5672 -> 127.0.0.1:5672; user hbscope added: $added_user"
    cap_start hbs-prh "$OUT" -- $AMQP_FILTER
    spawn client ip netns exec $ns $PIKA --host 10.78.0.1 --user hbscope --password hbscope \
        --heartbeat 2 --duration 90 --source-port $port --rst-on-close --name "hbscope-$NAME-first"
    local cpid=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "first client did not connect"
    mark "first client pid $cpid connected from 10.78.0.2:$port (heartbeat 2, SO_LINGER 0)"
    sleep 4
    local rule
    for rule in "OUTPUT -p tcp --sport $port --tcp-flags RST RST -j DROP" \
                "OUTPUT -p tcp --sport $port --tcp-flags FIN FIN -j DROP"; do
        ip netns exec $ns iptables -A $rule
    done
    for rule in "OUTPUT -p tcp -d 10.78.0.2 --dport $port --tcp-flags RST RST -j DROP" \
                "OUTPUT -p tcp -d 10.78.0.2 --dport $port --tcp-flags FIN FIN -j DROP"; do
        iptables -I $rule
        CLEANUP_HOOKS+=("iptables -D $rule 2>/dev/null")
    done
    mark "iptables: RST and FIN of the 4-tuple dropped both ways before the capture point"
    kill -KILL "$cpid"
    mark "SIGKILL first client pid $cpid (its RST is dropped; the socket is gone)"
    # RabbitMQ cuts a client silent for 2-3 timeouts (4-6 s); wait past that.
    sleep 9
    iptables -D OUTPUT -p tcp -d 10.78.0.2 --dport $port --tcp-flags RST RST -j DROP
    iptables -D OUTPUT -p tcp -d 10.78.0.2 --dport $port --tcp-flags FIN FIN -j DROP
    ip netns exec $ns iptables -F
    mark "iptables rules removed; sockets on the 4-tuple now: host [$(ss -tnH "dport = :$port" | tr -s ' ' | tr '\n' ';')] netns [$(ip netns exec $ns ss -tnaH "sport = :$port" | tr -s ' ' | tr '\n' ';')]"
    spawn client ip netns exec $ns $PIKA --host 10.78.0.1 --user hbscope --password hbscope \
        --heartbeat 2 --duration 5 --source-port $port --name "hbscope-$NAME-second"
    local c2=$LAST_PID
    mark "second client pid $c2 started from the same port $port"
    wait_exit "$c2" 20 && mark "second client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                       || mark "second client still running after 20 s"
    cap_stop 1.5
}

# Connections that come and go, for live mode's folding of ended connections (--keep-ended):
# benches/churn_clients.py opens 4 pika connections a second for 60 s (heartbeat 2), each
# living 1-6 s (1 in 10 dropped without Connection.Close); two more pika clients (heartbeat 2)
# are SIGSTOPped for 7 s at 10 s and 35 s, so the broker cuts them: two flagged connections
# that end among ~240 healthy ones.
sc_churn() {
    cap_start lo "$OUT" -- $AMQP_FILTER
    spawn churn $PY -u "$SCRIPTS/../../benches/churn_clients.py" churn --rate 4 --hold-min 1 \
        --hold-max 6 --heartbeat 2 --duration 60 --name "hbscope-$NAME"
    local churn=$LAST_PID
    mark "churn pid $churn started (4 connections/s for 60 s, each 1-6 s, heartbeat 2)"
    local at
    for at in 10 25; do
        sleep "$at"
        spawn client $PIKA --heartbeat 2 --duration 40 --name "hbscope-$NAME-stalled-$at"
        local cpid=$LAST_PID
        wait_for_log client 'channel open' 10 || mark "stalled client $at did not connect"
        sleep 2
        stop_client "$cpid"
        sleep 7
        cont_client "$cpid"
        wait_exit "$cpid" 8 && mark "client $cpid exited" || mark "client $cpid still running"
    done
    wait "$churn"; mark "churn exited: $(tail -1 "$LOGDIR/$NAME.churn.log")"
    cap_stop 1.5
}

# A client that answers Connection.Tune with two Connection.Tune-Ok (heartbeat 2, then 30):
# pika with its Tune-Ok sending patched (pika_client.py --tune-ok-twice), bound to port 41001
# so the capture holds only its connection.
sc_tune-ok-twice() {
    local port=41001
    cap_start lo "$OUT" -- "tcp port 5672 and tcp port $port"
    spawn client $PIKA --heartbeat 2 --duration 5 --source-port $port --tune-ok-twice 30 \
        --name "hbscope-$NAME"
    local cpid=$LAST_PID
    mark "client pid $cpid started from port $port (Tune-Ok heartbeat 2, then a second one with 30)"
    wait_exit "$cpid" 15 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                         || mark "client still running after 15 s"
    cap_stop 1.5
}

[ $# -eq 1 ] || { echo "usage: $0 NAME" >&2; exit 2; }
[ "$(type -t "sc_$1")" = function ] || { echo "unknown scenario: $1" >&2; exit 2; }
begin_scenario "$1"
"sc_$1"
end_scenario
