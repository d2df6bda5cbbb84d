"""Broadcast fast path: encode an event once, frame it once, hand the same bytes to every WebSocket.

python-socketio already encodes a broadcast once, then puts it in each
recipient's queue, where that client's writer frames and sends it. Here a
WebSocket client (:mod:`.websocket`) gets the ready-made frame, written with
whatever else it gets in this turn of the event loop; a long-polling client
(or one behind TLS, or still upgrading) gets the packet in its queue, as usual.
A client with ``max_backlog`` packets waiting is too slow to follow: it is
dropped, with a log line, rather than let it grow the server's memory without
bound.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import gevent.queue
import socketio
from engineio import packet as eio_packet

from . import metrics
from .websocket import frame

if TYPE_CHECKING:
    from .websocket import WebSocketConnection

logger = logging.getLogger("socketio_django")


class WriterQueue(gevent.queue.JoinableQueue):
    """An Engine.IO send queue that can hand its packets to a WebSocket transport, and batches at most 16.

    Once :meth:`attach`-ed, packets go straight to the transport. Otherwise a
    batch is one blocking ``get`` and the non-blocking ones after it
    (engineio's ``Socket.poll``): python-engineio's client refuses a
    long-polling response of more than 16 packets
    (``Payload.max_decode_packets``); the rest wait for the next poll.
    """

    max_batch = 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch = 0
        #: Seconds a long-poll waits after its first packet for more.
        self.linger = 0.001
        #: The WebSocket that sends this socket's packets, once it is in charge.
        self.transport: WebSocketConnection | None = None

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self.transport is not None:
            return self.transport.send_packet(item)
        return super().put(item, block, timeout)

    def attach(self, transport: WebSocketConnection) -> None:
        """Send what is queued, and from now on every packet, through ``transport``."""
        while self.qsize():
            item = super().get(False)
            self.task_done()
            transport.send_packet(item)
        self.transport = transport

    def backlog(self) -> int:
        """Packets waiting to be sent."""
        return self.qsize() + (self.transport.backlog if self.transport is not None else 0)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            if self._batch >= self.max_batch:
                raise gevent.queue.Empty
            self._batch += 1
            return super().get(False)
        self._batch = 1
        if self.qsize() or not self.linger:
            return super().get(True, timeout)
        item = super().get(True, timeout)
        # A long-poll answered at the first packet would often carry just that one; what
        # the same burst sends a moment later rides along instead of costing another poll.
        gevent.sleep(self.linger)
        return item


def install(server: socketio.Server) -> None:
    """Make ``server``'s Engine.IO sockets send through :class:`WriterQueue`."""
    server.eio._async = {**server.eio._async, "queue": WriterQueue}


class FanoutManager(socketio.Manager):
    """A client manager whose broadcasts take the fast path described in this module."""

    def __init__(self, max_backlog: int = 1000) -> None:
        super().__init__()
        self.max_backlog = max_backlog

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
        # Clients whose view has not accepted them yet are in the namespace's rooms already:
        # they must not hear anything before their CONNECT (they may yet be refused).
        skip.update(self.pending_connect.get(namespace, ()))
        if callback or namespace not in self.rooms:
            return self._emit_slowly(event, data, namespace, room, skip, callback, **kwargs)
        # As python-socketio does: a tuple is several arguments, None is none.
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded = self._encode_event(namespace, [event, *args])
        if encoded is None:  # binary attachments
            return self._emit_slowly(event, data, namespace, room, skip, callback, **kwargs)
        queued = eio_packet.Packet(eio_packet.MESSAGE, encoded)
        framed = frame(("4" + encoded).encode())
        sockets = self.server.eio.sockets
        delivered = 0
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            engineio_socket = sockets.get(eio_sid)
            if engineio_socket is not None and not engineio_socket.closed:
                self._deliver(engineio_socket, queued, framed)
                delivered += 1
        metrics.DELIVERED.inc(delivered)

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
        metrics.DELIVERED.inc(sum(sid not in skip for sid, _ in self.get_participants(namespace, room)))
        return super().emit(event, data, namespace, room=room, skip_sid=list(skip), callback=callback, **kwargs)

    def _deliver(self, engineio_socket: Any, queued: eio_packet.Packet, framed: bytes) -> None:
        queue = engineio_socket.queue
        if queue.backlog() >= self.max_backlog:
            return self._drop(engineio_socket)
        if queue.transport is None:
            # Long-polling, TLS, or a WebSocket still upgrading: the usual Engine.IO path.
            return engineio_socket.send(queued)
        return queue.transport.write(framed)

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
