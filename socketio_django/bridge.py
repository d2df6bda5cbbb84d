"""Run a WSGI application once per Socket.IO connection, as a blocking view."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterable
from typing import Any

import gevent
import gevent.pool
import socketio
from socketio import packet

from . import dbconnections, memory, metrics, sessions, speedups, websocket
from .addresses import AddressLimitedServer, ClientAddresses, ConnectionsPerAddress, SessionLimits
from .engine import SocketIOProtocol
from .fanout import FanoutManager
from .handle import Message, SocketHandle
from .redis_fanout import RedisFanoutManager

logger = logging.getLogger("socketio_django")

WSGIApplication = Callable[[dict, Callable], Iterable[bytes]]

NAMESPACE = "/"
# Every request's environ carries the ViewServer under this key (the health view reads it).
SERVER_ENVIRON_KEY = "socketio.server"


# The server of this process, for broadcast() from code that has no socket handle.
_running: ViewServer | None = None


def broadcast(event: str, *args: Any, room: str | None = None, namespace: str = NAMESPACE, skip: Any = ()) -> None:
    """Send ``event`` to every client in ``room`` (the whole namespace when None), but the ids in ``skip``.

    For code running in the server's process without a socket handle (a
    timer, a signal handler). With Redis it reaches the clients of every
    process, as a view's ``broadcast`` does.
    """
    if _running is None:
        raise RuntimeError("no Socket.IO server runs in this process")
    _running.emit(event, args[0] if len(args) == 1 else args, to=room, skip_sid=list(skip), namespace=namespace)


class ViewServer(AddressLimitedServer, SocketIOProtocol, socketio.Server):
    """A gevent-mode ``socketio.Server`` that hands every connection to a WSGI view.

    On connect it runs ``view_application`` in a new greenlet with a copy of
    the connecting request's environ, plus ``environ["socketio"]``: a
    :class:`SocketHandle`. The namespace picks the path: ``/`` is
    ``/<resource>/``, ``/echo`` is ``/<resource>/echo/``, so the URLconf maps
    namespaces to views. Incoming events go to the handle's inbox; the view's
    return ends the connection. The protocol rules python-engineio and
    python-socketio miss (heartbeat, handshake, upgrade, connect timeout)
    come from :mod:`.engine`; the caps on one address's sessions from
    :mod:`.addresses`.
    """

    def __init__(
        self,
        view_application: WSGIApplication,
        *,
        resource: str = "socket.io",
        inbox_size: int = 100,
        accept_timeout: float = 30.0,
        max_backlog: int = 1000,
        idle_after: float = 1.0,
        max_clients: int | None = None,
        redis_url: str | None = None,
        redis_health_interval: float = 5.0,
        db_connections_kept: int = 8,
        max_sessions_per_address: int = 0,
        session_rate_per_address: float = 0.0,
        session_burst_per_address: int = 0,
        host_allowed: Callable[[dict], bool] | None = None,
        **options: Any,
    ) -> None:
        # Handlers only queue work for the view greenlet, so they run in the
        # reader's greenlet: no greenlet spawned per incoming event.
        options.setdefault("async_handlers", False)
        if "client_manager" not in options:
            options["client_manager"] = (
                RedisFanoutManager(redis_url, max_backlog, health_interval=redis_health_interval)
                if redis_url
                else FanoutManager(max_backlog)
            )
        limits = SessionLimits(max_sessions_per_address, session_rate_per_address, session_burst_per_address)
        super().__init__(async_mode="gevent", namespaces="*", session_limits=limits, **options)
        sessions.install(self.eio)
        websocket.install(self.eio)
        speedups.install()
        dbconnections.install(db_connections_kept)
        if dbconnections.pooled():
            idle_after = 0.0  # a waiting view gives its pooled connection back at once, for the views queueing
        self.view_application = view_application
        self.resource = resource.strip("/")
        self.inbox_size = inbox_size
        self.accept_timeout = accept_timeout
        self.idle_after = idle_after
        self.max_clients = max_clients
        #: Whether a handshake's Host header names this site (None: any).
        self.host_allowed = host_allowed
        self.handles: dict[str, SocketHandle] = {}
        self.trimmer = memory.Trimmer()
        self.views = gevent.pool.Group()
        #: Set by shutdown(): new connections are turned away.
        self.draining = False
        self.on("connect", self._on_connect, namespace="*")
        self.on("disconnect", self._on_disconnect, namespace="*")
        global _running
        _running = self

    # -- connection lifetime ---------------------------------------------

    def _on_connect(self, namespace: str, sid: str, environ: dict, auth: Any) -> None:
        if not _canonical(namespace):
            # "//" or "/echo/" would reach the same view as "/" or "/echo" (the URL ignores the
            # slashes): every spelling one more session on one connection, each with its own limits.
            metrics.REFUSED.inc()
            raise socketio.exceptions.ConnectionRefusedError("Invalid namespace")
        handle = SocketHandle(self, namespace, sid, auth, self.inbox_size)
        self.handles[sid] = handle
        view = self.views.spawn(self._run_view, handle, self._view_environ(environ, handle))
        # Wait for the view to talk to the socket (accept) or to return (refuse).
        finished = gevent.wait([handle.accept_requested, view], count=1, timeout=self.accept_timeout)
        if handle.accept_requested.is_set():
            engineio_socket = self.eio.sockets.get(self.manager.eio_sid_from_sid(sid, namespace))
            if engineio_socket is not None and not engineio_socket.closed:
                metrics.CONNECTED.inc()
                metrics.CONNECTIONS.inc()
                self.trimmer.count()
                logger.info("connect %s", self._describe(handle))
                return
            # It left while its view decided: python-socketio will not report that disconnect.
            reason = "the client left"
        elif not finished:
            view.kill(block=False)
            reason = "the server took too long to accept"
        else:
            reason = view.value or "connection refused"
        logger.info("refused %s reason=%r", self._describe(handle), reason)
        self._forget(handle)
        metrics.REFUSED.inc()
        raise socketio.exceptions.ConnectionRefusedError(reason)

    def _on_disconnect(self, namespace: str, sid: str, reason: str) -> None:
        handle = self.handles.pop(sid, None)
        if handle is not None:
            metrics.CONNECTED.dec()
            self.trimmer.count()
            metrics.DISCONNECTS.labels(reason).inc()
            logger.info("disconnect %s reason=%r", self._describe(handle), reason)
            handle.close()

    def _describe(self, handle: SocketHandle) -> str:
        """``key=value`` pairs for the log: id, namespace, transport, and what the view added."""
        details = {
            "id": handle.id,
            # Engine.IO's id, which the malformed-packet and slow-client lines name.
            "engine_id": self.manager.eio_sid_from_sid(handle.id, handle.namespace),
            "namespace": handle.namespace,
            "transport": handle.transport,
            **handle.info,
        }
        return " ".join(f"{key}={value}" for key, value in details.items())

    def _handle_eio_connect(self, eio_sid: str, environ: dict) -> bool | None:
        if self.draining:
            return False  # Engine.IO refuses the handshake; clients retry, elsewhere or later
        # An idle WebSocket holds no request greenlet, so a WSGI server's own connection limit
        # (Gunicorn's worker_connections) does not count it: this is the bound.
        if self.max_clients is not None and len(self.eio.sockets) > self.max_clients:
            metrics.REFUSED.inc()
            logger.warning("refused a new client: SOCKETIO_MAX_CLIENTS (%d) reached", self.max_clients)
            return False
        # Before a session exists: its view would refuse that Host anyway, after the session cost its place.
        if self.host_allowed is not None and not self.host_allowed(environ):
            metrics.REFUSED.inc()
            logger.warning("refused a new client: Host %.100r is not allowed", environ.get("HTTP_HOST", ""))
            return "Invalid host"
        return super()._handle_eio_connect(eio_sid, environ)

    def shutdown_gracefully(self, timeout: float) -> bool:
        """Turn new clients away, send every client off, and let the views finish.

        Clients see their transport close, not a Socket.IO disconnect, so
        Socket.IO clients reconnect on their own (to another server, or to
        this one once it is back). Events already received are still handed
        to their views. Returns whether every view ended within ``timeout``.
        """
        self.draining = True
        for socket in list(self.eio.sockets.values()):
            # abort: no Engine.IO CLOSE packet, which python-socketio's client takes as "do not reconnect".
            socket.close(wait=False, abort=True, reason=self.reason.SERVER_DISCONNECT)
        return self.views.join(timeout)

    def _handle_connect(self, eio_sid: str, namespace: str, data: Any) -> None:
        # python-socketio sends CONNECT after our connect handler returns; only
        # then may the view's first emit go out, or the client could get it first.
        try:
            super()._handle_connect(eio_sid, namespace, data)
        finally:
            sid = self.manager.sid_from_eio_sid(eio_sid, namespace or NAMESPACE)
            handle = self.handles.get(sid) if sid else None
            if handle is not None:
                handle.ready.set()

    def _forget(self, handle: SocketHandle) -> None:
        self.handles.pop(handle.id, None)
        handle.close()
        handle.ready.set()

    def _run_view(self, handle: SocketHandle, environ: dict) -> str | None:
        """Run the view; return the refusal reason if it answered with an error."""
        with metrics.VIEW_GREENLETS.track_inprogress():
            return self._view_outcome(handle, environ)

    def _view_outcome(self, handle: SocketHandle, environ: dict) -> str | None:
        status: list[str] = []

        def start_response(status_line: str, headers: list, exc_info: Any = None) -> None:
            status.append(status_line)

        try:
            body = self.view_application(environ, start_response)
            try:
                content = b"".join(body)
            finally:
                if hasattr(body, "close"):
                    body.close()  # fires Django's request_finished: closes DB connections
        except Exception:
            logger.exception("socket view crashed for %s", handle.id)
            status, content = ["500 Internal Server Error"], b""
        if not status:  # a WSGI application that never called start_response
            status = ["500 Internal Server Error"]
        code = int(status[0].split()[0])
        if handle.accept_requested.is_set():
            if code >= 500:
                logger.error("socket view for %s ended with %s", handle.id, status[0])
            handle.disconnect()
            return None
        return _refusal_reason(code, status[0], content)

    def _view_environ(self, environ: dict, handle: SocketHandle) -> dict:
        """A GET request for the view, built from the request that opened the connection."""
        path = "/".join(part for part in (self.resource, handle.namespace.strip("/")) if part)
        view_environ = dict(environ)
        view_environ.update(
            {
                "REQUEST_METHOD": "GET",
                # As a WSGI server passes it (PEP 3333): the URL's UTF-8 bytes, read as Latin-1.
                "PATH_INFO": f"/{path}/".encode().decode("latin-1"),
                "CONTENT_LENGTH": "0",
                "wsgi.input": io.BytesIO(),
                "socketio": handle,
            }
        )
        view_environ.pop("CONTENT_TYPE", None)
        return view_environ

    def on_view_idle(self) -> None:
        """Called when a view waits for a client that has sent nothing for ``idle_after`` seconds (or at all).

        A connection may stay idle for hours: give its database connection
        back rather than holding one per connected client (to the next view
        that needs one, or closed: :mod:`.dbconnections`), and drop Django's
        wrapper object from this view too.
        """
        dbconnections.give_back()

    # -- incoming events -------------------------------------------------

    def _handle_eio_message(self, eio_sid: str, data: str | bytes) -> None:
        # A packet python-socketio cannot decode (or engine.StrictPacket refuses) is a protocol
        # violation: drop that client with one log line instead of a traceback per packet.
        try:
            super()._handle_eio_message(eio_sid, data)
        # RecursionError: JSON nested deeper than Python's stack (python-socketio's decoder).
        except (ValueError, TypeError, KeyError, IndexError, RecursionError) as error:
            metrics.MALFORMED.inc()
            logger.warning("disconnecting %s: malformed packet (%s: %s)", eio_sid, type(error).__name__, error)
            self.drop(eio_sid)

    def _handle_event(self, eio_sid: str, namespace: str, id: int | None, data: list) -> None:
        if not isinstance(data, list) or not data or not isinstance(data[0], str):
            raise ValueError("an event needs a name")
        namespace = namespace or NAMESPACE
        sid = self.manager.sid_from_eio_sid(eio_sid, namespace)
        handle = self.handles.get(sid)
        if handle is None or not self.manager.is_connected(sid, namespace):
            return
        metrics.RECEIVED.inc()
        ack = None
        if id is not None:

            def ack(*values: Any) -> None:
                if isinstance(self.manager, FanoutManager) and self.manager.drop_if_backlogged(eio_sid):
                    return  # gone, or it does not read its replies either
                self._send_packet(eio_sid, self.packet_class(packet.ACK, namespace=namespace, id=id, data=list(values)))

        handle.deliver(Message(event=data[0], args=tuple(data[1:]), _ack=ack))


def _canonical(namespace: str) -> bool:
    """Whether ``namespace`` is written one way only: ``/``, or ``/name`` with single slashes inside."""
    return namespace == NAMESPACE or (
        namespace.startswith("/") and not namespace.endswith("/") and "//" not in namespace
    )


def _refusal_reason(code: int, status_line: str, content: bytes) -> str:
    """What the client's ``connect_error`` says: a plain-text 4xx body, else the status phrase."""
    text = content.decode("utf-8", "replace").strip()
    if code < 500 and text and "<" not in text and len(text) <= 200:
        return text
    return status_line.split(" ", 1)[-1]


class SocketIOApplication:
    """A WSGI application: Socket.IO under ``/<resource>/``, ``application`` for the rest.

    Each Socket.IO connection runs ``application`` once, as a GET request to
    ``/<resource>/``, so the project's URLconf routes it to a view. Every
    request's ``REMOTE_ADDR`` is its client's, forwarded by ``trusted_proxies``.
    """

    def __init__(
        self,
        application: WSGIApplication,
        resource: str = "socket.io",
        trusted_proxies: Iterable[str] = ("127.0.0.1", "::1"),
        max_connections_per_address: int = 0,
        **options: Any,
    ) -> None:
        self.server = ViewServer(application, resource=resource, **options)
        self.addresses = ClientAddresses(trusted_proxies)
        #: Read by the WSGI server (:class:`.addresses.ConnectionLimitedServer`) as it accepts.
        self.connections = ConnectionsPerAddress(max_connections_per_address, self.addresses)
        self._app = socketio.WSGIApp(self.server, application, socketio_path=self.server.resource)

    def __call__(self, environ: dict, start_response: Callable) -> Iterable[bytes]:
        environ[SERVER_ENVIRON_KEY] = self.server  # for the health view
        # REMOTE_ADDR names the client, not a proxy in front: for the limits, the views and the log.
        self.addresses.resolve(environ)
        return self._app(environ, start_response)
