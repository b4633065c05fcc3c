#!/bin/bash
# Record ONE two-ended hbscope scenario: scenario-twoend.sh NAME
# The same pika connection is captured at BOTH ends at once:
#   NAME.client.pcap  tcpdump inside the client namespace, on the client's own interface
#   NAME.broker.pcap  tcpdump on the broker host, on the interface the client's traffic arrives on
# Between the two capture points sits a "router" namespace that forwards between them; losses
# are made there (iptables FORWARD DROP), so a packet can be seen leaving one capture point and
# never reach the other. tcpdump sees an outgoing packet after the sender's own netfilter/qdisc
# and an incoming one before the receiver's netfilter, so neither capture point can hide a drop
# made in the router.
#
#   client netns hbs2-c          router netns hbs2-r                  host (broker)
#   hbs2-c0 10.78.1.2  <-veth->  hbs2-r0 10.78.1.1 | hbs2-r1 10.78.2.2  <-veth->  hbs2-h 10.78.2.1:5672
#   ^ client.pcap                 iptables FORWARD DROP here                      ^ broker.pcap
#
# Both tcpdumps share this kernel's clock; tests shift one file's timestamps to exercise the
# clock-offset estimator. Must run as root under `flock /tmp/hbscope-record.lock`, after
# scripts/broker-setup.sh (listener on all interfaces, user hbscope/hbscope).
# Writes ../twoend/NAME.client.pcap, ../twoend/NAME.broker.pcap and ../twoend/logs/NAME.*.log
# (a subdirectory: these pairs are checked by tests/twoend.rs, not by tests/verdicts.rs).
set -uo pipefail
CAPDIR=${CAPDIR:-$(cd "$(dirname "$0")/.." && pwd)/twoend}
source "$(dirname "$0")/lib.sh"

PY=${PYTHON:-python3}
PIKA="$PY -u $SCRIPTS/pika_client.py"
AMQP_FILTER="tcp port 5672"
NSC=hbs2-c
NSR=hbs2-r
BROKER_IP=10.78.2.1

wait_for_log() {
    local f=$LOGDIR/$NAME.$1.log t=0
    while ! grep -q "$2" "$f" 2>/dev/null; do
        sleep 0.1; t=$((t + 1)); [ $t -ge $(( $3 * 10 )) ] && return 1
    done
    return 0
}
wait_exit() {
    local t=0
    while kill -0 "$1" 2>/dev/null; do
        sleep 0.1; t=$((t + 1)); [ $t -ge $(( $2 * 10 )) ] && return 1
    done
    return 0
}

topology_setup() {
    ip netns del $NSC 2>/dev/null; ip netns del $NSR 2>/dev/null; ip link del hbs2-h 2>/dev/null
    ip netns add $NSC
    ip netns add $NSR
    CLEANUP_HOOKS+=("ip netns del $NSC 2>/dev/null; ip netns del $NSR 2>/dev/null; ip link del hbs2-h 2>/dev/null; ip route del 10.78.1.0/24 2>/dev/null")
    ip link add hbs2-c0 type veth peer name hbs2-r0
    ip link set hbs2-c0 netns $NSC
    ip link set hbs2-r0 netns $NSR
    ip link add hbs2-h type veth peer name hbs2-r1
    ip link set hbs2-r1 netns $NSR
    ip addr add $BROKER_IP/24 dev hbs2-h
    ip link set hbs2-h up
    sysctl -qw net.ipv6.conf.hbs2-h.disable_ipv6=1
    ip route replace 10.78.1.0/24 via 10.78.2.2
    ip netns exec $NSR sh -c '
        ip addr add 10.78.1.1/24 dev hbs2-r0; ip addr add 10.78.2.2/24 dev hbs2-r1
        sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip link set hbs2-r0 up; ip link set hbs2-r1 up; ip link set lo up
        sysctl -qw net.ipv4.ip_forward=1'
    ip netns exec $NSC sh -c '
        ip addr add 10.78.1.2/24 dev hbs2-c0
        sysctl -qw net.ipv6.conf.all.disable_ipv6=1
        ip link set hbs2-c0 up; ip link set lo up
        ip route add default via 10.78.1.1'
    sleep 0.5
    ip netns exec $NSC ping -c3 -i0.3 -W2 $BROKER_IP >/dev/null || mark "WARNING: ping through the router failed"
}

# two tcpdumps: the client's interface inside its namespace, and the broker host's interface
TD_C=; TD_B=
caps_start() {
    local fc=$CAPDIR/$NAME.client.pcap fb=$CAPDIR/$NAME.broker.pcap
    rm -f "$fc" "$fb"
    : > "$LOGDIR/$NAME.tcpdump.log"
    {
        echo "ip netns exec $NSC tcpdump --immediate-mode -U -i hbs2-c0 -w $NAME.client.pcap $AMQP_FILTER"
        echo "tcpdump --immediate-mode -U -i hbs2-h -w $NAME.broker.pcap $AMQP_FILTER"
    } > "$LOGDIR/$NAME.tcpdump.cmd"
    ip netns exec $NSC tcpdump --immediate-mode -U -i hbs2-c0 -w "$fc" $AMQP_FILTER \
        2>>"$LOGDIR/$NAME.tcpdump.log" &
    TD_C=$!
    tcpdump --immediate-mode -U -i hbs2-h -w "$fb" $AMQP_FILTER 2>>"$LOGDIR/$NAME.tcpdump.log" &
    TD_B=$!
    for _ in $(seq 50); do
        [ "$(grep -c 'listening on' "$LOGDIR/$NAME.tcpdump.log")" -ge 2 ] && break
        sleep 0.1
    done
    sleep 0.3
    mark "tcpdumps started (client side pid $TD_C, broker side pid $TD_B)"
}
caps_stop() {
    sleep "${1:-1.5}"
    for p in $TD_C $TD_B; do kill -INT "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    chown root:root "$CAPDIR/$NAME.client.pcap" "$CAPDIR/$NAME.broker.pcap" 2>/dev/null
    mark "tcpdumps stopped: $(grep -E 'captured|dropped' "$LOGDIR/$NAME.tcpdump.log" | tr '\n' ' ')"
    TD_C=; TD_B=
}
CLEANUP_HOOKS+=('for p in $TD_C $TD_B; do kill -INT $p 2>/dev/null; done')

# connect a pika client (heartbeat 2) from the client namespace; sets CPID
# client_connect [DURATION_S]: the client closes cleanly after DURATION_S (default 60) if still connected
client_connect() {
    spawn client ip netns exec $NSC $PIKA --host $BROKER_IP --user hbscope --password hbscope \
        --heartbeat 2 --duration "${1:-60}" --name "hbscope-$NAME"
    CPID=$LAST_PID
    wait_for_log client 'channel open' 10 || mark "client did not connect"
    mark "client pid $CPID connected from netns $NSC (10.78.1.2 -> $BROKER_IP:5672 via router $NSR, heartbeat 2)"
}

# router_drop_scenario IN_IFACE: drop everything the router receives on IN_IFACE for 12 s
router_drop_scenario() {
    topology_setup
    caps_start
    client_connect
    sleep 4
    ip netns exec $NSR iptables -A FORWARD -i "$1" -j DROP
    mark "router $NSR: iptables -A FORWARD -i $1 -j DROP"
    sleep 12
    ip netns exec $NSR iptables -F
    mark "router $NSR: rules removed"
    wait_exit "$CPID" 10 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                         || mark "client still running 10 s after the rules were removed"
    caps_stop 2
}

# client -> broker packets lost in the router: the client keeps sending heartbeats (seen in
# client.pcap), none reaches the broker (broker.pcap), the broker cuts the client.
sc_twoend-lost-c2b() { router_drop_scenario hbs2-r0; }
# broker -> client packets lost in the router (heartbeats and ACKs of the broker).
sc_twoend-lost-b2c() { router_drop_scenario hbs2-r1; }

# a brief client -> broker loss (2.5 s): the broker sees a silence longer than the timeout but
# the client's retransmission gets through before the broker gives up; the connection survives
# and the client closes cleanly later.
sc_twoend-lost-c2b-brief() {
    topology_setup
    caps_start
    client_connect 12
    sleep 4
    ip netns exec $NSR iptables -A FORWARD -i hbs2-r0 -j DROP
    mark "router $NSR: iptables -A FORWARD -i hbs2-r0 -j DROP"
    sleep 2.5
    ip netns exec $NSR iptables -F
    mark "router $NSR: rules removed"
    wait_exit "$CPID" 15 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                         || mark "client still running 15 s after the rules were removed"
    caps_stop 2
}

# the client process is stopped: neither capture shows client data; its kernel keeps ACKing.
sc_twoend-client-sigstop() {
    topology_setup
    caps_start
    client_connect
    sleep 4
    kill -STOP "$CPID"; mark "SIGSTOP client pid $CPID"
    sleep 9
    kill -CONT "$CPID"; mark "SIGCONT client pid $CPID"
    wait_exit "$CPID" 8 && mark "client exited: $(tail -1 "$LOGDIR/$NAME.client.log")" \
                        || mark "client still running after CONT"
    caps_stop 1.5
}

[ $# -eq 1 ] || { echo "usage: $0 NAME" >&2; exit 2; }
[ "$(type -t "sc_$1")" = function ] || { echo "unknown scenario: $1" >&2; exit 2; }
begin_scenario "$1"
OUT=$CAPDIR/$NAME.broker.pcap   # for end_scenario's size line
"sc_$1"
end_scenario
