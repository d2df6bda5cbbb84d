"""Broadcast fast path: encode an event once, frame it once, hand the same bytes to every WebSocket.

python-socketio already encodes a broadcast once, then puts it in each
recipient's queue, where that client's writer frames and sends it. Here a
WebSocket client (:mod:`.websocket`) gets the ready-made frame, written with
whatever else it gets in this turn of the event loop; a long-polling client
(or one behind TLS, or still upgrading) gets the packet in its queue, as usual.
A client with ``max_backlog`` packets waiting that it did not read (for a
WebSocket: while the kernel takes no more of its bytes; for long-polling:
until it polls) is too slow to follow: it is dropped, with a log line, rather
than let it grow the server's memory without bound.
"""

from __future__ import annotations

import logging
from typing import Any

import socketio
from engineio import packet as eio_packet

from . import metrics
from .frames import frame

logger = logging.getLogger("socketio_django")


class FanoutManager(socketio.Manager):
    """A client manager whose broadcasts take the fast path described in this module."""

    def __init__(self, max_backlog: int = 1000) -> None:
        super().__init__()
        self.max_backlog = max_backlog
        #: (namespace, sid) -> the rooms it is in (None and its own among them). python-socketio
        #: finds a leaving client's rooms by looking through every room of the namespace, and each
        #: client is a room: 19,000 clients leaving at once cost 19,000 squared lookups.
        self.rooms_of: dict[tuple[str, str], set[Any]] = {}
        #: (namespace, room) -> {token: callback(encoded packet)}: plain HTTP views waiting on its broadcasts.
        self.listeners: dict[tuple[str, Any], dict[str, Any]] = {}

    def add_listener(self, namespace: str, room: Any, token: str, callback: Any) -> None:
        """Call ``callback`` with each Socket.IO packet (text) broadcast to ``room`` from now on (:mod:`.listeners`).

        ``token`` enters the room as a participant with no Engine.IO socket, so that a
        backend (Redis) subscribes for it as for a client; deliveries skip it.
        """
        self.listeners.setdefault((namespace, room), {})[token] = callback
        self.basic_enter_room(token, namespace, room, eio_sid=token)

    def _listeners_of(self, namespace: str, room: Any) -> dict[str, Any]:
        rooms = room if isinstance(room, (list, tuple)) else [room]
        found: dict[str, Any] = {}
        for each in rooms:
            found.update(self.listeners.get((namespace, each), {}))
        return found

    def remove_listener(self, namespace: str, room: Any, token: str) -> None:
        listeners = self.listeners.get((namespace, room), {})
        if listeners.pop(token, None) is not None:
            if not listeners:
                del self.listeners[(namespace, room)]
            self.basic_leave_room(token, namespace, room)

    def pre_connect(self, eio_sid: str, namespace: str) -> str | None:
        # python-socketio keeps the clients waiting for their CONNECT in a list: each emit would
        # copy it and each accept search it, thousands long when everyone reconnects at once.
        self.pending_connect.setdefault(namespace, _SidSet())
        return super().pre_connect(eio_sid, namespace)

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)
        self.rooms_of.setdefault((namespace, sid), set()).add(room)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        rooms = self.rooms_of.get((namespace, sid))
        if rooms is not None:
            rooms.discard(room)
            if not rooms:
                del self.rooms_of[(namespace, sid)]

    def basic_disconnect(self, sid: str, namespace: str, **kwargs: Any) -> None:
        # python-socketio's, but leaving only the rooms the client is in.
        for room in list(self.rooms_of.get((namespace, sid), ())):
            self.basic_leave_room(sid, namespace, room)
        self.callbacks.pop(sid, None)
        for pending in (self.pending_connect, self.pending_disconnect):
            if sid in pending.get(namespace, ()):
                pending[namespace].remove(sid)
                if not pending[namespace]:
                    del pending[namespace]

    def get_rooms(self, sid: str, namespace: str) -> list[Any]:
        return [room for room in self.rooms_of.get((namespace, sid), ()) if room is not None]

    def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        skip = set(skip_sid) if isinstance(skip_sid, list) else {skip_sid}
        if callback or namespace not in self.rooms:
            return self._emit_slowly(event, data, namespace, room, skip, callback, **kwargs)
        # As python-socketio does: a tuple is several arguments, None is none.
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self._encode_event(namespace, [event, *args])
        if encoded is None:  # binary attachments
            return self._emit_slowly(event, data, namespace, room, skip, callback, **kwargs)
        return self.deliver_encoded(namespace, room, skip, encoded)

    def deliver_encoded(self, namespace: str, room: Any, skip: set, encoded: str) -> None:
        """Send an encoded Socket.IO packet to this process's clients of ``room`` but those in ``skip``."""
        # Clients whose view has not accepted them yet are in the namespace's rooms already:
        # they must not hear anything before their CONNECT (they may yet be refused).
        pending = self.pending_connect.get(namespace) or ()
        recipients = [
            eio_sid for sid, eio_sid in self.get_participants(namespace, room) if sid not in skip and sid not in pending
        ]
        eio = self.server.eio
        others, full = eio.websockets.write(recipients, frame(("4" + encoded).encode()), self.max_backlog)
        for connection in full:
            self._drop(connection.engineio_socket)
        delivered = len(recipients) - len(others) - len(full)
        # Long-polling, TLS, or a WebSocket still upgrading: the usual Engine.IO path.
        queued = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        for eio_sid in others:
            engineio_socket = eio.sockets.get(eio_sid)
            if engineio_socket is None or engineio_socket.closed:
                continue
            if engineio_socket.queue.backlog() >= self.max_backlog:
                self._drop(engineio_socket)
            else:
                engineio_socket.send(queued)
                delivered += 1
        metrics.DELIVERED.inc(delivered)
        if self.listeners:
            for token, callback in list(self._listeners_of(namespace, room).items()):
                if token not in skip:
                    callback(encoded)

    def _encode_event(self, namespace: str, data: list) -> str | None:
        """A Socket.IO EVENT packet as python-socketio encodes it; None if ``data`` holds bytes.

        python-socketio first walks the whole payload looking for bytes: for a
        long list (everyone online in a big room) that walk costs more than
        the encoding, which fails on bytes anyway.
        """
        prefix = "2" if namespace == "/" else f"2{namespace},"
        try:
            return prefix + self.server.packet_class.json.dumps(data, separators=(",", ":"))
        except TypeError:  # bytes (or something JSON cannot hold): python-socketio's own path decides
            return None

    def _emit_slowly(self, event: str, data: Any, namespace: str, room: Any, skip: set, callback: Any, **kwargs: Any):
        """python-socketio's own emit, for acknowledged or binary events."""
        skip.update(self.pending_connect.get(namespace, ()))
        skip.update(self._listeners_of(namespace, room))  # no socket to send to (binary events: not heard)
        metrics.DELIVERED.inc(sum(sid not in skip for sid, _ in self.get_participants(namespace, room)))
        return super().emit(event, data, namespace, room=room, skip_sid=list(skip), callback=callback, **kwargs)

    def drop_if_backlogged(self, eio_sid: str) -> bool:
        """Drop the client if its send backlog is full (for packets sent outside ``emit``: replies).

        True when nothing should be sent to it: dropped now, or gone already.
        """
        engineio_socket = self.server.eio.sockets.get(eio_sid)
        if engineio_socket is None or engineio_socket.closed:
            return True
        if engineio_socket.queue.backlog() < self.max_backlog:
            return False
        self._drop(engineio_socket)
        return True

    def _drop(self, engineio_socket: Any) -> None:
        metrics.SLOW_CLIENTS.inc()
        queue = engineio_socket.queue
        logger.warning("dropping %s: %d packets waiting, it reads too slowly", engineio_socket.sid, queue.backlog())
        engineio_socket.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        if queue.transport is not None:
            queue.transport.abort()


class _SidSet(dict):
    """The list python-socketio keeps of the clients waiting for their CONNECT, with O(1) ``in`` and ``remove``."""

    def append(self, sid: str) -> None:
        self[sid] = None

    def remove(self, sid: str) -> None:
        del self[sid]
