"""Server options read from Django settings, with safe defaults."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import DisallowedHost

from .bridge import SocketIOApplication

DEFAULTS: dict[str, Any] = {
    # Socket.IO lives under /<resource>/; the URLconf routes that path to the socket view.
    "SOCKETIO_RESOURCE": "socket.io",
    # None: same-origin only. A list of origins, or "*" for any.
    "SOCKETIO_ALLOWED_ORIGINS": None,
    # Largest Engine.IO packet a client may send; a bigger one disconnects that client.
    "SOCKETIO_MAX_PAYLOAD": 64 * 1024,
    # Events a view may leave unread before that client's reader waits for it.
    "SOCKETIO_INBOX_SIZE": 100,
    # Packets waiting to be sent to one client; past that it is too slow to follow and is dropped.
    "SOCKETIO_MAX_BACKLOG": 1000,
    # Seconds after a client's last event that its waiting view keeps its database connection.
    "SOCKETIO_IDLE_AFTER": 1.0,
    # Seconds a view may take before it accepts or refuses a connection.
    "SOCKETIO_ACCEPT_TIMEOUT": 30.0,
    # Open database connections kept per database for the next view that needs one (0: close each).
    "SOCKETIO_DB_CONNECTIONS_KEPT": 8,
    # Clients one process serves at most (None: no limit); past it, new handshakes are refused.
    "SOCKETIO_MAX_CLIENTS": None,
    # Redis shared by every process and host of the chat (None: this process alone, no Redis needed).
    "SOCKETIO_REDIS_URL": None,
    # Seconds of silence after which the Redis subscriber pings; twice that unanswered, it reconnects.
    "SOCKETIO_REDIS_HEALTH_INTERVAL": 5.0,
    # Seconds a graceful shutdown (SIGTERM) may take before what still runs is cut short.
    "SOCKETIO_SHUTDOWN_TIMEOUT": 10.0,
    # Engine.IO heartbeat: seconds between the server's pings, and seconds a client has to answer one.
    "SOCKETIO_PING_INTERVAL": 25.0,
    "SOCKETIO_PING_TIMEOUT": 20.0,
    # Seconds a client may stay without connecting to any namespace before it is closed (Node's connectTimeout).
    "SOCKETIO_CONNECT_TIMEOUT": 45.0,
    # Proxies whose X-Forwarded-For names the client (addresses or networks); loopback as Gunicorn's default.
    "SOCKETIO_TRUSTED_PROXIES": ["127.0.0.1", "::1"],
    # Sessions one client address may hold at once (0: no cap; behind NAT many people share one).
    "SOCKETIO_MAX_SESSIONS_PER_ADDRESS": 0,
    # New sessions a second one address may open (0: no cap), in bursts of SOCKETIO_SESSION_BURST_PER_ADDRESS.
    "SOCKETIO_SESSION_RATE_PER_ADDRESS": 0.0,
    "SOCKETIO_SESSION_BURST_PER_ADDRESS": 10,
    # TCP connections one peer address (not a trusted proxy) may have open in HTTP at once (0: no cap).
    "SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS": 0,
    # Seconds a request's line and headers may take (an idle keep-alive connection waits for them too):
    # slow clients (slowloris) would hold their sockets for ever.
    "SOCKETIO_HEADERS_TIMEOUT": 10.0,
    # Seconds a request's body may take once its headers are in (408 past it).
    "SOCKETIO_BODY_TIMEOUT": 30.0,
    # Seconds a response's write may wait for its client to read (slow readers would hold sockets for ever).
    "SOCKETIO_SEND_TIMEOUT": 30.0,
    # Bytes of request headers taken (431 past it): Node's default, room for a browser's cookies.
    "SOCKETIO_MAX_HEADERS_SIZE": 16 * 1024,
    # Bytes of request body taken (413 past it), read into memory before the view runs; the chat's are 64 KiB.
    "SOCKETIO_MAX_BODY_SIZE": 1024 * 1024,
}


def setting(name: str) -> Any:
    """A ``SOCKETIO_*`` setting, or its default."""
    return getattr(settings, name, DEFAULTS[name])


def server_options() -> dict[str, Any]:
    """Keyword arguments for :class:`SocketIOApplication` from the project's settings."""
    origins = setting("SOCKETIO_ALLOWED_ORIGINS")
    options = {
        "resource": setting("SOCKETIO_RESOURCE"),
        "max_http_buffer_size": setting("SOCKETIO_MAX_PAYLOAD"),
        "inbox_size": setting("SOCKETIO_INBOX_SIZE"),
        "accept_timeout": setting("SOCKETIO_ACCEPT_TIMEOUT"),
        "max_backlog": setting("SOCKETIO_MAX_BACKLOG"),
        "idle_after": setting("SOCKETIO_IDLE_AFTER"),
        "max_clients": setting("SOCKETIO_MAX_CLIENTS"),
        "db_connections_kept": setting("SOCKETIO_DB_CONNECTIONS_KEPT"),
        "redis_url": setting("SOCKETIO_REDIS_URL"),
        "redis_health_interval": setting("SOCKETIO_REDIS_HEALTH_INTERVAL"),
        "ping_interval": setting("SOCKETIO_PING_INTERVAL"),
        "ping_timeout": setting("SOCKETIO_PING_TIMEOUT"),
        "connect_timeout": setting("SOCKETIO_CONNECT_TIMEOUT"),
        "trusted_proxies": setting("SOCKETIO_TRUSTED_PROXIES"),
        "max_sessions_per_address": setting("SOCKETIO_MAX_SESSIONS_PER_ADDRESS"),
        "session_rate_per_address": setting("SOCKETIO_SESSION_RATE_PER_ADDRESS"),
        "session_burst_per_address": setting("SOCKETIO_SESSION_BURST_PER_ADDRESS"),
        "max_connections_per_address": setting("SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS"),
        "host_allowed": host_allowed,
    }
    if origins is not None:
        options["cors_allowed_origins"] = origins
    return options


def http_limits() -> dict[str, Any]:
    """The limits of :class:`~.http_handler.HTTPHandler` (class attributes) from the project's settings."""
    return {
        "headers_timeout": setting("SOCKETIO_HEADERS_TIMEOUT"),
        "body_timeout": setting("SOCKETIO_BODY_TIMEOUT"),
        "send_timeout": setting("SOCKETIO_SEND_TIMEOUT"),
        "max_headers_size": setting("SOCKETIO_MAX_HEADERS_SIZE"),
        "max_body_size": setting("SOCKETIO_MAX_BODY_SIZE"),
        "socketio_path": "/" + setting("SOCKETIO_RESOURCE").strip("/") + "/",
        "max_socketio_body_size": setting("SOCKETIO_MAX_PAYLOAD"),
    }


def host_allowed(environ: dict) -> bool:
    """Whether Django serves the request's Host (``ALLOWED_HOSTS``, ``USE_X_FORWARDED_HOST``)."""
    from django.core.handlers.wsgi import WSGIRequest

    try:
        WSGIRequest(environ).get_host()
    except DisallowedHost:
        return False
    return True


def get_socketio_application() -> SocketIOApplication:
    """The Django project as a WSGI application that also serves Socket.IO."""
    from django.core.wsgi import get_wsgi_application

    return SocketIOApplication(get_wsgi_application(), **server_options())
