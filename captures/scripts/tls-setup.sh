#!/bin/bash
# Give the local RabbitMQ a TLS listener on 5671 for the hbscope tls* captures.
#
#   captures/scripts/tls-setup.sh              (root; idempotent)
#   captures/scripts/tls-setup.sh --certs-only (only step 1 and the copy; no config, no restart)
#   captures/scripts/tls-setup.sh --restart    (enable the listener by restarting the broker)
#
# 1. Makes a self-signed test CA and a server certificate for localhost / 127.0.0.1 / ::1
#    in captures/tls/ (only if missing): ca_certificate.pem, ca_key.pem,
#    server_certificate.pem, server_key.pem. These are throw-away TEST certificates,
#    committed on purpose (the pcaps contain the server certificate anyway).
# 2. Copies them to /etc/rabbitmq/hbscope-tls/ (readable by the rabbitmq user; the work tree
#    may not be) and appends to /etc/rabbitmq/rabbitmq.conf, if not there yet:
#        listeners.ssl.default = 5671, ssl_options.{cacertfile,certfile,keyfile},
#        ssl_options.verify = verify_none, ssl_options.fail_if_no_peer_cert = false,
#        ssl_options.versions.1 = tlsv1.3, ssl_options.versions.2 = tlsv1.2
#    The plain listener (listeners.tcp.* = 5672) is left exactly as it is.
#    The new config is checked first against RabbitMQ's own cuttlefish schema (in the
#    running broker, rabbitmqctl eval); nothing is written if it does not translate.
# 3. If 5671 is not listening yet, starts the TLS listener in the RUNNING broker, without a
#    restart (rabbitmqctl eval: the ssl_options/ssl_listeners that the config translates to
#    are set in the rabbit application env, then rabbit_networking:ensure_ssl() and
#    start_ssl_listener(5671, ...), which is what the broker's boot step does). Connections on
#    5672 are not touched. The next broker restart reads the same from rabbitmq.conf.
#    With --restart it restarts the broker instead: rabbitmqctl stop; rabbitmq-server
#    -detached started with every fd > 2 closed (else beam.smp inherits the fd of
#    `flock /tmp/hbscope-record.lock` and holds the recording lock for ever); waits until
#    `rabbitmqctl await_startup` succeeds (a freshly started node is not reachable for the
#    first seconds, and boot took ~40 s here); only if beam.smp dies is the previous config
#    restored and the broker started again.
# It takes /tmp/hbscope-record.lock itself (so no recording is running during the restart);
# if the caller already holds it, set HBSCOPE_RECORD_LOCK_HELD=1.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
TLS=$(cd "$HERE/.." && pwd)/tls
CONF=/etc/rabbitmq/rabbitmq.conf
ETC_TLS=/etc/rabbitmq/hbscope-tls
LOCK=/tmp/hbscope-record.lock
say() { echo "tls-setup: $*" >&2; }
die() { say "$*"; exit 1; }
[ "$(id -u)" = 0 ] || die "must run as root"
for t in openssl rabbitmqctl rabbitmq-server ss; do command -v $t >/dev/null || die "needs $t"; done

if [ "${HBSCOPE_RECORD_LOCK_HELD:-}" != 1 ] && [ "${1:-}" != --certs-only ]; then
    exec 9>"$LOCK"
    say "waiting for $LOCK"
    flock 9
fi

# ---- 1. certificates ------------------------------------------------------------------
mkdir -p "$TLS"
if [ ! -s "$TLS/server_certificate.pem" ] || [ ! -s "$TLS/ca_certificate.pem" ]; then
    say "creating test CA and server certificate in $TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -sha256 -days 7300 \
        -subj "/O=hbscope test/CN=hbscope test CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -keyout "$TLS/ca_key.pem" -out "$TLS/ca_certificate.pem" 2>/dev/null
    openssl req -new -newkey rsa:2048 -nodes -sha256 -subj "/O=hbscope test/CN=localhost" \
        -keyout "$TLS/server_key.pem" -out "$TLS/server.csr" 2>/dev/null
    cat > "$TLS/server.ext" <<EXT
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1
EXT
    openssl x509 -req -in "$TLS/server.csr" -CA "$TLS/ca_certificate.pem" -CAkey "$TLS/ca_key.pem" \
        -CAcreateserial -days 7300 -sha256 -extfile "$TLS/server.ext" \
        -out "$TLS/server_certificate.pem" 2>/dev/null
    rm -f "$TLS/server.csr" "$TLS/server.ext" "$TLS/ca_certificate.srl"
    chmod 0644 "$TLS"/*.pem   # test keys, meant to be shipped
fi
openssl verify -CAfile "$TLS/ca_certificate.pem" "$TLS/server_certificate.pem" >/dev/null \
    || die "server certificate does not verify against the CA"

install -d -m 0750 -o root -g rabbitmq "$ETC_TLS"
for f in ca_certificate.pem server_certificate.pem server_key.pem; do
    install -m 0640 -o root -g rabbitmq "$TLS/$f" "$ETC_TLS/$f"
done

if [ "${1:-}" = --certs-only ]; then ls -l "$ETC_TLS" >&2; exit 0; fi

# ---- 2. config ------------------------------------------------------------------------
SCHEMA=$(ls /usr/lib/rabbitmq/lib/rabbitmq_server-*/plugins/rabbit-*/priv/schema/rabbit.schema 2>/dev/null | tail -1)
# translate a rabbitmq.conf with the broker's own schema; prints the rabbit app env terms
translate() {
    local f=$1
    chmod a+r "$f"
    rabbitmqctl eval "
        Schema = cuttlefish_schema:files([\"$SCHEMA\"]),
        Conf = cuttlefish_conf:files([\"$f\"]),
        case cuttlefish_generator:map(Schema, Conf) of
            {error, _, _} = E -> E;
            R -> Rabbit = proplists:get_value(rabbit, R),
                 {ok, [{K, proplists:get_value(K, Rabbit)} || K <- [tcp_listeners, ssl_listeners, ssl_options]]}
        end."
}
changed=0
if ! grep -q '^listeners\.ssl\.default *= *5671' "$CONF"; then
    NEW=$(mktemp /tmp/hbscope-rabbitmq.conf.XXXXXX)
    sed '/^ssl_options\./d; /^listeners\.ssl\./d' "$CONF" > "$NEW"
    cat >> "$NEW" <<CFG
# (hbscope captures) TLS listener for the tls* captures, see captures/scripts/tls-setup.sh
listeners.ssl.default = 5671
ssl_options.cacertfile = $ETC_TLS/ca_certificate.pem
ssl_options.certfile = $ETC_TLS/server_certificate.pem
ssl_options.keyfile = $ETC_TLS/server_key.pem
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
ssl_options.versions.1 = tlsv1.3
ssl_options.versions.2 = tlsv1.2
CFG
    if [ -n "$SCHEMA" ]; then
        out=$(translate "$NEW" 2>&1) || true
        case $out in
            "{ok,"*ssl_listeners,\[5671\]*) say "new config translates: $(echo $out)" ;;
            *) rm -f "$NEW"; die "new config does not translate with $SCHEMA: $out" ;;
        esac
    else
        say "WARNING: rabbit.schema not found, config not checked"
    fi
    cp -n "$CONF" "$CONF.hbscope-orig" 2>/dev/null || true
    cp "$CONF" "$CONF.hbscope-pre-tls"
    cat "$NEW" > "$CONF"; rm -f "$NEW"
    changed=1
    say "updated $CONF (previous: $CONF.hbscope-pre-tls)"
fi

# ---- 3. listener ------------------------------------------------------------------------
listening() { ss -ltnH "sport = :$1" | grep -q .; }
broker_alive() { pgrep -f 'beam.smp.*-s rabbit boot' >/dev/null; }
start_broker() {
    setsid bash -c 'for fd in $(ls /proc/$$/fd); do [ "$fd" -gt 2 ] && eval "exec $fd>&-"; done; exec rabbitmq-server -detached' </dev/null >/dev/null 2>&1
    local t=0
    while [ $t -lt 180 ]; do
        sleep 2; t=$((t + 2))
        rabbitmqctl await_startup --timeout 10 >/dev/null 2>&1 && return 0
        broker_alive || { sleep 3; broker_alive || return 1; }   # died during boot
    done
    return 1
}
if [ "${1:-}" = --restart ] && { [ $changed = 1 ] || ! listening 5671; }; then
    say "restarting RabbitMQ to enable the TLS listener on 5671 ($(rabbitmqctl list_connections --silent 2>/dev/null | wc -l) client connections open now)"
    rabbitmqctl stop >/dev/null 2>&1 || true
    for _ in $(seq 60); do broker_alive || break; sleep 0.5; done
    if ! start_broker; then
        say "broker did not start with the TLS config: restoring $CONF.hbscope-pre-tls and starting again"
        cp "$CONF.hbscope-pre-tls" "$CONF"
        start_broker || die "broker failed to start even with the previous config"
        die "TLS listener not enabled (see /var/log/rabbitmq/)"
    fi
elif ! listening 5671; then
    rabbitmqctl await_startup --timeout 30 >/dev/null 2>&1 || die "RabbitMQ is not running"
    say "starting the TLS listener on 5671 in the running broker (no restart)"
    out=$(translate "$CONF" 2>&1) || true
    case $out in "{ok,"*) ;; *) die "cannot translate $CONF: $out" ;; esac
    rabbitmqctl eval "
        {ok, Env} = $out,
        SslOpts0 = proplists:get_value(ssl_options, Env),
        Listeners = proplists:get_value(ssl_listeners, Env),
        ok = application:set_env(rabbit, ssl_options, SslOpts0),
        ok = application:set_env(rabbit, ssl_listeners, Listeners),
        SslOpts = rabbit_networking:ensure_ssl(),
        [rabbit_networking:start_ssl_listener(L, SslOpts,
             application:get_env(rabbit, num_ssl_acceptors, 10),
             application:get_env(rabbit, num_conns_sups, 1)) || L <- Listeners]." >&2 \
        || die "could not start the TLS listener at runtime (try --restart)"
    sleep 1
fi
listening 5671 || die "broker runs but does not listen on 5671"
listening 5672 || die "broker does not listen on 5672"
ss -ltn | grep -E ':567[12]\b' >&2
