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

[ $# -eq 1 ] || { echo "usage: $0 NAME" >&2; exit 2; }
[ "$(type -t "sc_$1")" = function ] || { echo "unknown scenario: $1" >&2; exit 2; }
begin_scenario "$1"
"sc_$1"
end_scenario
