#!/bin/bash
# Reconfigure the local RabbitMQ so that it also listens on all interfaces (IPv4 + IPv6),
# which the netns-* and ipv6 captures need, and create the user hbscope/hbscope for
# non-loopback clients (guest stays loopback-only). Idempotent. Run under the record lock.
set -euo pipefail
CONF=/etc/rabbitmq/rabbitmq.conf
need_restart=0
if ! grep -q '^listeners.tcp.default *= *5672' "$CONF"; then
    cp -n "$CONF" "$CONF.hbscope-orig" || true
    sed -i 's/^listeners\.tcp\.local.*/# (hbscope captures) was: &/' "$CONF"
    echo 'listeners.tcp.default = 5672' >> "$CONF"
    need_restart=1
fi
if [ $need_restart = 1 ]; then
    echo "broker-setup: restarting RabbitMQ to listen on all interfaces" >&2
    rabbitmqctl stop >/dev/null 2>&1 || true
    sleep 1
    # Start the broker with every fd above 2 closed: otherwise beam.smp inherits the
    # fd of `flock /tmp/hbscope-record.lock` and holds the recording lock forever.
    setsid bash -c 'for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec rabbitmq-server -detached' </dev/null >/dev/null 2>&1
    sleep 2
    rabbitmqctl await_startup >/dev/null
fi
if ! rabbitmqctl list_users --silent 2>/dev/null | grep -q '^hbscope\b'; then
    rabbitmqctl add_user hbscope hbscope >/dev/null
    rabbitmqctl set_permissions -p / hbscope '.*' '.*' '.*' >/dev/null
fi
ss -ltn | grep -E ':5672\b' >&2
