"""Prometheus metrics for the bridge, in prometheus-client's default registry.

Under Gunicorn with several workers, prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``, which gunicorn.conf.py sets) adds up the
workers' values for a scrape: gauges say how they combine.
"""

import functools
import weakref

import gevent
from prometheus_client import Counter, Gauge

CONNECTED = Gauge("socketio_connected_clients", "Clients connected now", multiprocess_mode="livesum")
CONNECTIONS = Counter("socketio_connections_total", "Connections accepted by a view")
REFUSED = Counter("socketio_refused_connections_total", "Connections a view refused, or that were refused for it")
RECEIVED = Counter("socketio_events_received_total", "Events received from clients")
DELIVERED = Counter("socketio_events_delivered_total", "Events sent to clients, one per recipient")
MALFORMED = Counter("socketio_malformed_packets_total", "Packets that could not be decoded; their sender is dropped")
DISCONNECTS = Counter("socketio_disconnects_total", "Clients that left, by reason", ["reason"])
SLOW_CLIENTS = Counter("socketio_slow_clients_dropped_total", "Clients dropped because their send backlog was full")
REDIS_CONNECTED = Gauge(
    "socketio_redis_subscriber_connected",
    "1 while the Redis subscriber is connected (of every worker: 0 if one is not)",
    multiprocess_mode="livemin",
)
REDIS_RECONNECTS = Counter("socketio_redis_connection_losses_total", "Times the Redis subscriber lost its connection")
REDIS_PUBLISH_FAILURES = Counter(
    "socketio_redis_publish_failures_total", "Emits Redis did not take (delivered locally)"
)
HANDED_OVER = Counter(
    "socketio_handed_over_requests_total", "Connections another worker handed to this one (its sessions)"
)
SESSIONS_IN_MEMORY = Gauge(
    "socketio_sessions_in_memory",
    "Engine.IO sessions not freed yet, closed ones included (more than the clients connected: memory held for nothing)",
    multiprocess_mode="livesum",
)
GREENLETS = Gauge(
    "socketio_greenlets",
    "Greenlets serving clients, by role (request: an HTTP request in Engine.IO; handler: a WebSocket's messages;"
    " view: a connection's view)",
    ["role"],
    multiprocess_mode="livesum",
)
REQUEST_GREENLETS = GREENLETS.labels("request")
HANDLER_GREENLETS = GREENLETS.labels("handler")
VIEW_GREENLETS = GREENLETS.labels("view")

# Weak references to the objects counted until freed (a weak reference's callback runs only while it lives).
_counted: set[weakref.ref] = set()


def count_until_freed(obj: object, gauge: Gauge) -> None:
    """Add one to ``gauge`` until ``obj`` is freed."""
    gauge.inc()
    _counted.add(weakref.ref(obj, functools.partial(_freed, gauge)))


def _freed(gauge: Gauge, ref: weakref.ref) -> None:
    _counted.discard(ref)
    # Later, from the event loop: an object may be freed anywhere, even while the gauge's lock is held.
    gevent.get_hub().loop.run_callback(gauge.dec)
