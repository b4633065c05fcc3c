# Shared helpers for the hbscope capture scenarios. Sourced by scenario.sh.
# Everything here runs as root under `flock /tmp/hbscope-record.lock`.

SCRIPTS=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
CAPDIR=${CAPDIR:-$(cd "$SCRIPTS/.." && pwd)}   # where NAME.pcap and logs/ go
LOGDIR=$CAPDIR/logs
BROKER_LOG=${BROKER_LOG:-/var/log/rabbitmq/rabbit@localhost.log}
mkdir -p "$LOGDIR"

TCPDUMP_PID=
BROKER_STOPPED_PID=
CHILD_PIDS=()
CLEANUP_HOOKS=()

now() { date -u +%H:%M:%S.%N | cut -c1-15; }
# timeline line: goes to the terminal and to logs/NAME.timeline.log
mark() { echo "$(now) [$NAME] $*" | tee -a "$LOGDIR/$NAME.timeline.log" >&2; }

broker_pid() { pgrep -f 'beam.smp.*-s rabbit boot' | head -1; }

stop_broker() {
    BROKER_STOPPED_PID=$(broker_pid)
    [ -n "$BROKER_STOPPED_PID" ] || { echo "no beam.smp found" >&2; return 1; }
    kill -STOP "$BROKER_STOPPED_PID"
    mark "SIGSTOP broker beam.smp pid $BROKER_STOPPED_PID"
}
cont_broker() {
    if [ -n "$BROKER_STOPPED_PID" ]; then
        kill -CONT "$BROKER_STOPPED_PID" && mark "SIGCONT broker beam.smp pid $BROKER_STOPPED_PID"
        BROKER_STOPPED_PID=
    fi
}

# cap_start IFACE FILE [tcpdump options...] -- FILTER...
cap_start() {
    local iface=$1 file=$2; shift 2
    local opts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    rm -f "$file"
    : > "$LOGDIR/$NAME.tcpdump.log"
    echo "tcpdump --immediate-mode -U -i $iface ${opts[*]} -w $(basename "$file") $*" \
        > "$LOGDIR/$NAME.tcpdump.cmd"
    tcpdump --immediate-mode -U -i "$iface" "${opts[@]}" -w "$file" "$@" \
        2>>"$LOGDIR/$NAME.tcpdump.log" &
    TCPDUMP_PID=$!
    for _ in $(seq 50); do
        grep -q 'listening on' "$LOGDIR/$NAME.tcpdump.log" && break
        sleep 0.1
    done
    sleep 0.3
    mark "tcpdump started (pid $TCPDUMP_PID): $(cat "$LOGDIR/$NAME.tcpdump.cmd")"
}
cap_stop() {
    [ -n "$TCPDUMP_PID" ] || return 0
    sleep "${1:-1.2}"
    kill -INT "$TCPDUMP_PID" 2>/dev/null
    wait "$TCPDUMP_PID" 2>/dev/null
    chown root:root "$OUT" 2>/dev/null   # tcpdump drops to user tcpdump when writing
    mark "tcpdump stopped: $(tr '\n' ' ' < "$LOGDIR/$NAME.tcpdump.log" | sed 's/.*listening on/listening on/')"
    TCPDUMP_PID=
}

# spawn LOGNAME command... : run a client in the background, remember its pid in $LAST_PID
spawn() {
    local lname=$1; shift
    "$@" >>"$LOGDIR/$NAME.$lname.log" 2>&1 &
    LAST_PID=$!
    CHILD_PIDS+=("$LAST_PID")
}

broker_log_begin() { BROKER_LOG_LINES=$(wc -l < "$BROKER_LOG"); }
broker_log_end() {
    tail -n +"$((BROKER_LOG_LINES + 1))" "$BROKER_LOG" > "$LOGDIR/$NAME.broker.log"
    if grep -q 'missed heartbeats' "$LOGDIR/$NAME.broker.log"; then
        mark "broker log: $(grep 'missed heartbeats' "$LOGDIR/$NAME.broker.log" | tr '\n' ' ')"
    fi
}

cleanup() {
    local rc=$?
    cont_broker               # never leave the broker stopped
    for p in "${CHILD_PIDS[@]}"; do
        kill -CONT "$p" 2>/dev/null
        kill "$p" 2>/dev/null
    done
    for h in "${CLEANUP_HOOKS[@]}"; do eval "$h" || true; done
    if [ -n "$TCPDUMP_PID" ]; then kill -INT "$TCPDUMP_PID" 2>/dev/null; wait "$TCPDUMP_PID" 2>/dev/null; fi
    return $rc
}

begin_scenario() {
    NAME=$1
    OUT=$CAPDIR/$NAME.pcap
    rm -f "$LOGDIR/$NAME".*.log "$LOGDIR/$NAME".tcpdump.cmd
    trap cleanup EXIT
    trap 'exit 130' INT TERM HUP
    broker_log_begin
    mark "begin; broker pid $(broker_pid), $(rabbitmqctl version 2>/dev/null | tail -1 | sed 's/^/RabbitMQ /')"
}
end_scenario() {
    broker_log_end
    mark "end: $(ls -l "$OUT" | awk '{print $5}') bytes"
}
