#!/bin/bash
# Re-record the hbscope test captures against the local RabbitMQ.
#
#   captures/record.sh            record every scenario (and the nova ones, see below)
#   captures/record.sh NAME...    record only these (e.g. client-sigstop ipv6 nova-api-eventlet)
#   captures/record.sh --list     list scenario names
#
# Each scenario runs under `flock /tmp/hbscope-record.lock` (one recording at a time on the
# shared broker). It writes captures/NAME.pcap and captures/logs/NAME.*.log, then prints a
# tshark-based summary (scripts/summarize.py) to compare with captures/NAME.expect.json.
# The expect.json files are NOT rewritten: they are hand-checked ground truth; after
# re-recording, compare the summary and update the timings in their "notes" if needed.
# nova-* captures are recorded by scripts/record-nova.sh (written by another helper; it
# takes the lock itself, writes its own expect.json and keeps its logs in logs/ too).
# tls*-* and *-on-5672 captures are recorded by scripts/scenario-tls.sh (same lock); the tls
# ones need the broker's TLS listener on 5671, which scripts/tls-setup.sh sets up first (it
# takes the lock itself; no broker restart, see its header).
# The PENDING scenarios go to captures/pending/ (NAME.pcap, or NAME.client.pcap +
# NAME.broker.pcap, logs in pending/logs/): hbscope has no verdict rules for them yet, so
# tests/verdicts.rs must not see them. broker-blocked raises a memory alarm on the broker for
# ~10 s (every publisher on it is blocked meanwhile) and always restores the watermark; the
# haproxy-* ones need haproxy installed (only its binary: the script runs its own process).
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
S=$HERE/scripts
OUT=${CAPDIR:-$HERE}      # CAPDIR=/some/dir records there instead (for trying things out)
export CAPDIR=$OUT
LOCK=/tmp/hbscope-record.lock

ALL=(client-sigstop healthy-idle healthy-busy broker-sigstop netns-blackhole after-handshake
     heartbeat-disabled netns-oneway many-busy-one-stalled small-snaplen any-interface
     any-interface-sll1 ipv6 empty non-amqp
     tls13-healthy tls13-client-stall tls12-healthy tls12-client-stall
     tls-on-5672 amqp10-on-5672 http-on-5672 hostile-names
     broker-blocked consumer-zero-window haproxy-idle-hb0 haproxy-idle-hb-long late-heartbeats bridge-any
     port-reuse tune-ok-twice churn)
PENDING=()
ALL+=("${PENDING[@]}")
NEEDS_ALL_INTERFACES=" netns-blackhole netns-oneway ipv6 "
NEEDS_TLS=" tls13-healthy tls13-client-stall tls12-healthy tls12-client-stall "

say() { echo "record.sh: $*" >&2; }
die() { say "$*"; exit 1; }

if [ "${1:-}" = --list ]; then printf '%s\n' "${ALL[@]}"; exit 0; fi

names=("$@"); nova=()
if [ ${#names[@]} -eq 0 ]; then
    names=("${ALL[@]}"); nova=(all)
else
    rest=()
    for n in "${names[@]}"; do
        case $n in
            nova-api-*) nova+=("${n#nova-api-}") ;;
            nova*) nova+=(all) ;;
            *) printf '%s\n' "${ALL[@]}" | grep -qx "$n" || die "unknown scenario '$n' (try --list)"
               rest+=("$n") ;;
        esac
    done
    names=("${rest[@]}")
fi

# ---- what we need --------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (tcpdump, SIGSTOP of the broker, netns, iptables)"
for t in tcpdump tshark flock python3 rabbitmqctl rabbitmq-server ip iptables ss curl pgrep; do
    command -v "$t" >/dev/null || die "needs '$t' in PATH (apt: tcpdump tshark util-linux python3 rabbitmq-server iproute2 iptables curl procps)"
done
if ! python3 -c 'import pika, amqp, kombu' 2>/dev/null; then
    say "installing python modules pika, amqp, kombu with pip"
    python3 -m pip install --quiet 'pika>=1.3,<2' 'amqp>=5.1,<6' 'kombu>=5.3,<6' \
        || die "pip install failed: needs python3 modules pika (1.x), amqp (5.x), kombu (5.x)"
fi
say "python: $(python3 -c 'import pika, amqp, kombu; print("pika", pika.__version__, "amqp", amqp.__version__, "kombu", kombu.__version__)')"
# No AMQP test connection here: it could land in someone else's recording.
if ! rabbitmqctl await_startup --timeout 10 >/dev/null 2>&1; then
    die "RabbitMQ is not running (start it: rabbitmq-server -detached; rabbitmqctl await_startup)"
fi
ss -ltnH 'sport = :5672' | grep -q . || die "RabbitMQ is not listening on 5672"
say "broker: RabbitMQ $(rabbitmqctl version 2>/dev/null | tail -1)"
for n in "${names[@]}"; do
    if [[ $NEEDS_ALL_INTERFACES == *" $n "* ]]; then
        # listeners.tcp.default = 5672 (IPv4+IPv6, all interfaces) and user hbscope/hbscope
        flock "$LOCK" "$S/broker-setup.sh" || die "broker-setup.sh failed"
        break
    fi
done

for n in "${names[@]}"; do
    if [[ $NEEDS_TLS == *" $n "* ]]; then
        # TLS listener on 5671 + test certificates in captures/tls/ (takes the lock itself)
        "$S/tls-setup.sh" || die "tls-setup.sh failed"
        break
    fi
done

# ---- record ---------------------------------------------------------------------------
failed=()
for n in "${names[@]}"; do
    say "=== recording $n"
    case $n in
        tls1*-*|*-on-5672) script=$S/scenario-tls.sh ;;
        *) script=$S/scenario.sh ;;
    esac
    if printf '%s\n' "${PENDING[@]}" | grep -qx "$n"; then
        mkdir -p "$OUT/pending"
        if ! CAPDIR=$OUT/pending flock "$LOCK" "$script" "$n"; then failed+=("$n"); continue; fi
        for f in "$OUT/pending/$n.pcap" "$OUT/pending/$n.client.pcap" "$OUT/pending/$n.broker.pcap"; do
            [ -f "$f" ] && "$S/summarize.py" "$f"
        done
        continue
    fi
    if ! flock "$LOCK" "$script" "$n"; then failed+=("$n"); continue; fi
    case $n in
        tls1*-*) "$S/summarize_tls.py" "$OUT/$n.pcap" ;;
        *-on-5672) tshark -r "$OUT/$n.pcap" -d tcp.port==5672,amqp 2>/dev/null ;;
        after-handshake) "$S/summarize.py" "$OUT/$n.pcap" --heartbeat 4 ;;
        small-snaplen) "$S/summarize.py" "$OUT/$n.pcap" --heartbeat 2 ;;
        empty|non-amqp) capinfos -c "$OUT/$n.pcap" 2>/dev/null | tail -1 ;;
        haproxy-*) for f in "$OUT/$n.client.pcap" "$OUT/$n.broker.pcap"; do "$S/summarize.py" "$f"; done ;;
        *) "$S/summarize.py" "$OUT/$n.pcap" ;;
    esac
done
if [ ${#nova[@]} -gt 0 ]; then
    if [ -x "$S/record-nova.sh" ]; then
        for v in $(printf '%s\n' "${nova[@]}" | sort -u); do
            say "=== recording nova ($v) with scripts/record-nova.sh"
            "$S/record-nova.sh" "$v" || failed+=("nova-$v")
        done
    else
        say "scripts/record-nova.sh not found: nova captures skipped"
    fi
fi
[ ${#failed[@]} -eq 0 ] || die "failed: ${failed[*]}"
say "done"
