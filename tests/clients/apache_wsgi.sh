#!/usr/bin/env bash
# Runs a real Apache httpd (Debian apache2, MPM prefork, one child) with
# mod_wsgi in embedded mode serving tests/clients/nova_wsgi.py, in the
# foreground, on 127.0.0.1:PORT, from its own configuration in DIR. The
# system's Apache configuration is not read or changed. Stop it with SIGTERM
# (apache2 -DFOREGROUND stops its children and exits).
#
# Usage: apache_wsgi.sh DIR PORT PTHREAD(true|false)
# Needs: apache2 and libapache2-mod-wsgi-py3 (apt), python3-oslo.messaging and
# python3-eventlet for /usr/bin/python3 (the interpreter mod_wsgi embeds), and
# once, network access to PyPI: Debian 12's py-amqp 5.1.1 sends a client
# heartbeat only after a whole timeout without traffic (silences of timeout +
# ~1 s, flagged as gaps even with heartbeat_in_pthread), so py-amqp 5.4.2 (it
# sends every timeout/rate) is installed into $HBSCOPE_WSGI_SITE (default
# /opt/hbscope-wsgi-site) and put first on the app's sys.path.
set -euo pipefail
DIR="$1"; PORT="$2"; PTHREAD="$3"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
SITE="${HBSCOPE_WSGI_SITE:-/opt/hbscope-wsgi-site}"
if [ ! -f "$SITE/amqp/__init__.py" ]; then
    python3 -m pip install --quiet --no-deps --target "$SITE" amqp==5.4.2 >&2 \
        || { echo "apache_wsgi: cannot pip install amqp==5.4.2 into $SITE" >&2; exit 3; }
    chmod -R a+rX "$SITE"
fi
export HBSCOPE_WSGI_SITE="$SITE"
MODS=/usr/lib/apache2/modules
for m in mod_mpm_prefork.so mod_authz_core.so mod_wsgi.so; do
    [ -e "$MODS/$m" ] || { echo "apache_wsgi: $MODS/$m missing: apt-get install apache2 libapache2-mod-wsgi-py3" >&2; exit 3; }
done
mkdir -p "$DIR"
chmod 755 "$DIR"
cp "$HERE/nova_wsgi.py" "$DIR/app.wsgi"
chmod 644 "$DIR/app.wsgi"
cat > "$DIR/httpd.conf" <<CONF
ServerRoot "$DIR"
ServerName 127.0.0.1
PidFile "$DIR/httpd.pid"
ErrorLog "$DIR/error.log"
LogLevel warn
Mutex file:$DIR default
DefaultRuntimeDir "$DIR"
LoadModule mpm_prefork_module $MODS/mod_mpm_prefork.so
LoadModule authz_core_module $MODS/mod_authz_core.so
LoadModule wsgi_module $MODS/mod_wsgi.so
User www-data
Group www-data
Listen 127.0.0.1:$PORT
StartServers 1
MinSpareServers 1
MaxSpareServers 1
ServerLimit 1
MaxRequestWorkers 1
MaxConnectionsPerChild 0
KeepAlive Off
WSGIScriptAlias / "$DIR/app.wsgi"
WSGIApplicationGroup %{GLOBAL}
<Directory "$DIR">
    Require all granted
</Directory>
CONF
export HBSCOPE_PTHREAD="$PTHREAD"
exec /usr/sbin/apache2 -f "$DIR/httpd.conf" -DFOREGROUND
