"""Where a request comes from, and how many sessions one address may hold and open.

Behind a reverse proxy every TCP connection comes from the proxy, which
names the client in ``X-Forwarded-For``. That header is anyone's to write,
so it is believed only from the configured trusted proxies (by default the
loopback addresses, as Gunicorn's ``forwarded_allow_ips``): reading the
header right to left, the client is the first address that is not a
trusted proxy. IPv6 clients are counted by their /64 network, the block one
customer gets; every address in it would otherwise be a fresh budget.

The limits are per process: with several workers an address may hold up to
that many times the per-address caps (a front proxy such as HAProxy can keep
a cluster-wide count in a stick table).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Iterable, Iterator
from typing import Any

import gevent

from .ratelimit import KeyedBuckets

logger = logging.getLogger("socketio_django")

# The environ key where the TCP peer's own address is kept once REMOTE_ADDR names the client.
PEER_ADDRESS_KEY = "socketio.peer_address"
# How much of an IPv6 address one client controls.
IPV6_CLIENT_PREFIX = 64

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(items: Iterable[str]) -> list[Network]:
    """``10.0.0.5``, ``10.0.0.0/8``, ``::1`` ... as networks; raises ValueError on a malformed one."""
    return [ipaddress.ip_network(item.strip(), strict=False) for item in items if item.strip()]


class ClientAddresses:
    """Finds the client's address of a request, believing ``X-Forwarded-For`` only from ``trusted`` proxies."""

    def __init__(self, trusted_proxies: Iterable[str] = ("127.0.0.1", "::1")) -> None:
        self.trusted = parse_networks(trusted_proxies)

    def is_trusted(self, address: str) -> bool:
        ip = parse_address(address)
        return ip is not None and any(ip in network for network in self.trusted)

    def client_of(self, environ: dict) -> str:
        """The client's address: the peer's, or the forwarded one when the peer is a trusted proxy."""
        address = environ.get("REMOTE_ADDR", "")
        if not self.trusted or not self.is_trusted(address):
            return address
        for forwarded in reversed(environ.get("HTTP_X_FORWARDED_FOR", "").split(",")):
            forwarded = forwarded.strip()
            ip = parse_address(forwarded)
            if ip is None:
                # Not an address: a trusted proxy names the client so, and the client is counted under
                # that name (were it the proxy's, every client would share one budget).
                return forwarded[:100] or address
            address = str(ip)
            if not self.is_trusted(address):
                break
        return address

    def resolve(self, environ: dict) -> None:
        """Make ``REMOTE_ADDR`` the client's address (the peer's is kept under :data:`PEER_ADDRESS_KEY`)."""
        if PEER_ADDRESS_KEY not in environ:
            environ[PEER_ADDRESS_KEY] = environ.get("REMOTE_ADDR", "")
            environ["REMOTE_ADDR"] = self.client_of(environ)


def parse_address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address ``text`` names (``::ffff:a.b.c.d`` as IPv4; a port or brackets allowed), or None."""
    if text.startswith("["):  # [2001:db8::1] or [2001:db8::1]:443
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:  # 203.0.113.5:4444
        text = text.partition(":")[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return None
    return (ip.ipv4_mapped or ip) if ip.version == 6 else ip


def address_key(address: str) -> str:
    """What limits count an address as: itself, or its /64 network for IPv6."""
    ip = parse_address(address)
    if ip is None:
        return address
    if ip.version == 4:
        return str(ip)
    return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))


class Tally:
    """How many of something each key holds; a key back at zero is forgotten, so memory follows what is held."""

    def __init__(self) -> None:
        self._counts: dict[str, int] = {}

    def __getitem__(self, key: str) -> int:
        return self._counts.get(key, 0)

    def add(self, key: str) -> None:
        self._counts[key] = self._counts.get(key, 0) + 1

    def remove(self, key: str) -> None:
        held = self._counts.get(key, 0) - 1
        if held > 0:
            self._counts[key] = held
        else:
            self._counts.pop(key, None)


class SessionLimits:
    """Caps on the sessions of one address: how many at once, and how many new ones a second (0: no cap)."""

    def __init__(self, max_sessions: int = 0, per_second: float = 0.0, burst: int = 0) -> None:
        self.max_sessions = max_sessions
        self.opening = KeyedBuckets(per_second, burst or max(1, round(per_second)))
        self.sessions = Tally()

    @property
    def enabled(self) -> bool:
        return bool(self.max_sessions or self.opening.rate)

    def admit(self, key: str) -> str | None:
        """Count a new session of ``key``, or say why it is refused."""
        held = self.sessions[key]
        if self.max_sessions and held >= self.max_sessions:
            return f"{held} sessions from this address (SOCKETIO_MAX_SESSIONS_PER_ADDRESS)"
        if not self.opening.take(key):
            return "too many new sessions a second from this address (SOCKETIO_SESSION_RATE_PER_ADDRESS)"
        self.sessions.add(key)
        return None

    def release(self, key: str) -> None:
        """A session admitted for ``key`` has ended."""
        self.sessions.remove(key)


class AddressLimitedServer:
    """A mixin for ``socketio.Server``: refuses an Engine.IO session past its address's :class:`SessionLimits`.

    Counting Engine.IO sessions, not namespace connections, means extra
    namespaces or reconnections inside one session buy nothing.
    """

    def __init__(self, *args: object, session_limits: SessionLimits | None = None, **kwargs: object) -> None:
        self.session_limits = session_limits or SessionLimits()
        self._address_of: dict[str, str] = {}
        super().__init__(*args, **kwargs)

    def _handle_eio_connect(self, eio_sid: str, environ: dict) -> object:
        if not self.session_limits.enabled:
            return super()._handle_eio_connect(eio_sid, environ)
        key = address_key(environ.get("REMOTE_ADDR", ""))
        refusal = self.session_limits.admit(key)
        if refusal is not None:
            from .metrics import REFUSED

            REFUSED.inc()
            logger.warning("refused a new session from %s: %s", key, refusal)
            return refusal  # Engine.IO answers 401 with this text; clients retry with backoff
        self._address_of[eio_sid] = key
        # Refused, or raised (Engine.IO then refuses): no disconnect will follow to give the place back.
        try:
            accepted = super()._handle_eio_connect(eio_sid, environ)
        except BaseException:
            self._release(eio_sid)
            raise
        if accepted is not None and accepted is not True:
            self._release(eio_sid)
        return accepted

    def _handle_eio_disconnect(self, eio_sid: str, *args: object) -> None:
        try:
            super()._handle_eio_disconnect(eio_sid, *args)
        finally:
            self._release(eio_sid)

    def _release(self, eio_sid: str) -> None:
        key = self._address_of.pop(eio_sid, None)
        if key is not None:
            self.session_limits.release(key)


class ConnectionsPerAddress:
    """Counts the TCP connections each peer address has open in HTTP, up to ``max_connections`` (0: no cap).

    Trusted proxies carry many clients on their connections and are not
    counted. A WebSocket leaves the count once upgraded (its session counts
    in :class:`SessionLimits`), except over TLS, where python-engineio's
    transport keeps its request running; what stays counted is a connection
    sending its request, waiting for its answer or kept alive between
    requests.
    """

    def __init__(self, max_connections: int, addresses: ClientAddresses) -> None:
        self.max_connections = max_connections
        self.addresses = addresses
        self.open_connections = Tally()

    def open(self, peer: str) -> str | None:
        """Count a new connection from ``peer``: its key, ``""`` when it is not counted, None when refused."""
        if not self.max_connections or not peer or self.addresses.is_trusted(peer):
            return ""  # no cap, a Unix socket, or a proxy
        key = address_key(peer)
        if self.open_connections[key] >= self.max_connections:
            return None
        self.open_connections.add(key)
        return key

    def close(self, key: str) -> None:
        """A connection counted under ``key`` has closed."""
        self.open_connections.remove(key)


# What a peer past its cap reads before its connection is closed.
_REFUSAL = b"too many connections from this address\n"
TOO_MANY_CONNECTIONS = (
    b"HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nContent-Type: text/plain\r\n"
    b"Content-Length: %d\r\n\r\n%s" % (len(_REFUSAL), _REFUSAL)
)


class ConnectionLimitedServer:
    """A mixin for gevent's ``WSGIServer``: a peer past ``SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS`` gets 429 at once.

    The application is a ``SocketIOApplication``, whose ``connections`` keeps the count.
    Over TLS, the handshake (which gevent completes before ``handle()``) is
    counted too, and must end within the handler's ``headers_timeout``: a
    client that never finishes it would hold its socket for ever.
    """

    def handle(self, sock: Any, address: Any) -> None:
        with self.counted(sock, address) as admitted:
            if admitted:
                super().handle(sock, address)

    def wrap_socket_and_handle(self, client_socket: Any, address: Any) -> None:
        with self.counted(client_socket, address, plain=False) as admitted:
            if not admitted:
                return
            timeout = getattr(self.handler_class, "headers_timeout", None)
            try:
                with gevent.Timeout(timeout, TimeoutError("TLS handshake not complete in time")):
                    tls_socket = self.wrap_socket(client_socket, **self.ssl_args)
            except OSError:  # the timeout, a botched handshake (ssl.SSLError), or a reset
                client_socket.close()
                return
            with contextlib.closing(tls_socket):
                super().handle(tls_socket, address)  # the server's own handle(): counted already

    @contextlib.contextmanager
    def counted(self, sock: Any, address: Any, plain: bool = True) -> Iterator[bool]:
        """While it is served, count a connection against its peer's cap; whether it was let in.

        One turned away is closed first (a ``plain`` one, not TLS, reads 429 before).
        """
        connections: ConnectionsPerAddress | None = getattr(self.application, "connections", None)
        peer = address[0] if isinstance(address, tuple) else ""
        key = connections.open(peer) if connections is not None else ""
        if key is None:
            self._turn_away(sock, peer, plain)
            yield False
            return
        try:
            yield True
        finally:
            if key:
                connections.close(key)

    @staticmethod
    def _turn_away(sock: Any, peer: str, plain: bool) -> None:
        # Not imported with this module: Gunicorn's master imports it (for the worker class),
        # before prometheus-client's multiprocess mode is set up for the workers.
        from .metrics import REFUSED

        REFUSED.inc()
        logger.warning("refused a connection from %s: SOCKETIO_MAX_CONNECTIONS_PER_ADDRESS reached", peer)
        if plain:  # a TLS client would not read it
            with contextlib.suppress(OSError):  # it went away first
                sock.sendall(TOO_MANY_CONNECTIONS)
        sock.close()
