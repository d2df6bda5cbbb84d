"""The blocking socket handle a view finds in ``request.environ["socketio"]``."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent.event
import gevent.queue

if TYPE_CHECKING:
    from .bridge import ViewServer

# Put in the inbox when the client has gone, so a blocked recv() wakes up.
_GONE = object()


@dataclass(frozen=True)
class Message:
    """One event the client emitted: ``socket.emit(event, *args[, callback])``."""

    event: str
    args: tuple[Any, ...]
    _ack: Callable[..., None] | None = field(default=None, repr=False)

    @property
    def data(self) -> Any:
        """The first argument, or ``None`` when the event carried none."""
        return self.args[0] if self.args else None

    @property
    def wants_reply(self) -> bool:
        """Whether the client passed an acknowledgement callback."""
        return self._ack is not None

    def reply(self, *values: Any) -> None:
        """Answer the client's acknowledgement callback with ``values``.

        Does nothing when the client asked for no acknowledgement.
        """
        if self._ack is not None:
            self._ack(*values)


class SocketHandle:
    """One Socket.IO connection, seen from the view that serves it.

    Every call blocks only the calling greenlet. The first call that talks
    to the client (``recv``, ``send``, ``emit``, ``broadcast``, ``join``,
    ``leave``) accepts the connection; a view that returns an error response
    before that refuses it, and the client receives the response body as the
    ``connect_error`` message.
    """

    def __init__(self, server: ViewServer, namespace: str, sid: str, auth: Any, inbox_size: int) -> None:
        self._server = server
        #: The Socket.IO namespace the client connected to, ``"/"`` by default.
        self.namespace = namespace
        #: The connection id, unique across the server.
        self.id = sid
        #: The ``auth`` payload the client sent with its connection request.
        self.auth = auth
        #: Details the view adds (a user name, a room) for the server's connect and disconnect log lines.
        self.info: dict[str, Any] = {}
        self._inbox: gevent.queue.Queue = gevent.queue.Queue(maxsize=inbox_size)
        self._gone = False
        self._accepted = False
        self._last_event_at = -math.inf
        # Set by the view's first call; the server waits on it to answer the client.
        self.accept_requested = gevent.event.Event()
        # Set by the server once the client has been told it is connected.
        self.ready = gevent.event.Event()

    # -- receiving -------------------------------------------------------

    def recv(self) -> Message | None:
        """Wait for the client's next event; ``None`` once the client has gone."""
        self._accept()
        if self._gone and self._inbox.empty():
            return None
        # A chatty client's next event comes soon: keep the view's resources until
        # ``idle_after`` seconds after its last one. A client that has said nothing yet
        # is not chatty: thousands joining at once must not hold a database connection each.
        keep_for = self._last_event_at + self._server.idle_after - time.monotonic()
        try:
            item = self._inbox.get(block=keep_for > 0, timeout=keep_for)
        except gevent.queue.Empty:
            self._server.on_view_idle()
            item = self._inbox.get()
        if item is _GONE:
            return None
        self._last_event_at = time.monotonic()
        return item

    @property
    def transport(self) -> str:
        """``"websocket"`` or ``"polling"``; a polling client may upgrade later."""
        try:
            return self._server.transport(self.id, namespace=self.namespace)
        except KeyError:
            return "gone"

    def connected(self) -> bool:
        """Whether the client is still connected."""
        return not self._gone

    # -- sending ---------------------------------------------------------

    def send(self, data: Any) -> None:
        """Send ``data`` to this client as a ``message`` event."""
        self.emit("message", data)

    def emit(self, event: str, *args: Any) -> None:
        """Send ``event`` with ``args`` to this client."""
        self._accept()
        self._server.emit(event, _payload(args), to=self.id, namespace=self.namespace)

    def broadcast(self, event: str, *args: Any, room: str | None = None) -> None:
        """Send ``event`` to every client in ``room`` but this one.

        With ``room=None`` it goes to every client of this namespace.
        """
        self._accept()
        self._server.emit(event, _payload(args), to=room, skip_sid=self.id, namespace=self.namespace)

    # -- rooms and lifetime ----------------------------------------------

    def join(self, room: str) -> None:
        """Add this client to ``room``."""
        self._accept()
        if not self._gone:  # python-socketio forgets a client's rooms when it leaves
            self._server.enter_room(self.id, room, namespace=self.namespace)

    def leave(self, room: str) -> None:
        """Remove this client from ``room``."""
        self._accept()
        if not self._gone:
            self._server.leave_room(self.id, room, namespace=self.namespace)

    def rooms(self) -> list[str]:
        """The rooms this client is in (its own id among them)."""
        return self._server.rooms(self.id, namespace=self.namespace)

    def disconnect(self) -> None:
        """Close the connection from the server side."""
        if not self._gone:
            self._server.disconnect(self.id, namespace=self.namespace)

    # -- called by the server --------------------------------------------

    def deliver(self, message: Message) -> None:
        """Queue an incoming event; blocks the client's reader while the inbox is full."""
        if not self._gone:
            self._inbox.put(message)

    def close(self) -> None:
        """Mark the client as gone and wake a view blocked in ``recv``."""
        self._gone = True
        # When the inbox is full, recv() finds it drained later and _gone set.
        with contextlib.suppress(gevent.queue.Full):
            self._inbox.put_nowait(_GONE)

    def _accept(self) -> None:
        if self._accepted:
            return
        self._accepted = True
        self.accept_requested.set()
        # Wait until the client has its CONNECT answer, so nothing we send overtakes it. When
        # thousands join at once that wait is long: they must not hold a database connection each.
        if not self.ready.is_set():
            self._server.on_view_idle()
            self.ready.wait()


def _payload(args: tuple[Any, ...]) -> Any:
    # python-socketio sends a tuple as several arguments and anything else as one.
    return args[0] if len(args) == 1 else args
