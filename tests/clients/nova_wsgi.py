"""A nova-api-like WSGI app for the founding-case test (tests/live_diagnosis.rs).

Loaded by a real Apache httpd with mod_wsgi in embedded mode under MPM prefork
(tests/clients/apache_wsgi.sh writes the configuration). Like nova-api it calls
eventlet.monkey_patch() before anything else and talks to RabbitMQ through
oslo.messaging, configured through oslo.config with a short heartbeat:

  heartbeat_timeout_threshold = 4, heartbeat_rate = 3 (the default)
  heartbeat_in_pthread = HBSCOPE_PTHREAD (environment: "true" or "false")

Each request casts one RPC message (the first one opens the connection) and
answers "pid PID" so the test knows which Apache child owns the connection.
Between requests the child sits in Apache's accept() on the HTTP listener:
with the heartbeat in a green thread nothing sends heartbeats then.
"""
import os
import sys

if os.environ.get("HBSCOPE_WSGI_SITE"):
    # py-amqp 5.4.2 ahead of Debian's 5.1.1 (see apache_wsgi.sh).
    sys.path.insert(0, os.environ["HBSCOPE_WSGI_SITE"])

import eventlet  # noqa: E402

eventlet.monkey_patch()

from oslo_config import cfg  # noqa: E402
import oslo_messaging  # noqa: E402

PTHREAD = os.environ.get("HBSCOPE_PTHREAD", "false")
URL = os.environ.get("HBSCOPE_AMQP_URL", "rabbit://guest:guest@127.0.0.1:5672/")

CONF = cfg.CONF  # as nova: the global CONF
_TRANSPORT = None
_CLIENT = None


def _client():
    global _TRANSPORT, _CLIENT
    if _CLIENT is None:
        CONF([], project="hbscope-nova-wsgi")
        oslo_messaging.set_transport_defaults("hbscope")
        _TRANSPORT = oslo_messaging.get_rpc_transport(CONF, url=URL)
        CONF.set_override("heartbeat_timeout_threshold", 4, group="oslo_messaging_rabbit")
        CONF.set_override("heartbeat_in_pthread", PTHREAD == "true", group="oslo_messaging_rabbit")
        target = oslo_messaging.Target(topic="hbscope-nova-wsgi-%d" % os.getpid(), version="1.0")
        _CLIENT = oslo_messaging.get_rpc_client(_TRANSPORT, target) \
            if hasattr(oslo_messaging, "get_rpc_client") else oslo_messaging.RPCClient(_TRANSPORT, target)
    return _CLIENT


def application(environ, start_response):
    _client().cast({}, "ping", n=1)
    import amqp

    body = ("pid %d pthread %s amqp %s\n" % (os.getpid(), PTHREAD, amqp.__version__)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
