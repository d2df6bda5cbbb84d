"""Broadcast fast path: encode an event once, frame it once, write the same bytes to every WebSocket.

python-socketio already encodes a broadcast once, then puts it in each
recipient's queue, where that client's writer greenlet wakes up, frames it
and sends it: a queue hop, a greenlet switch and a framing per recipient.
Here, when a WebSocket client's writer is idle, its ready-made frame goes
straight to the kernel with one non-blocking ``send``; otherwise (the writer
is busy, the kernel buffer is full, the client still polls) it waits in that
client's queue behind what is already there, so each client sees its events
in order. A client whose queue holds ``max_backlog`` packets is too slow to
follow: it is dropped, with a log line, rather than let it grow the server's
memory without bound.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import socket
import ssl
import struct
from typing import Any

import gevent.queue
import socketio
from engineio import packet as eio_packet
from engineio.async_drivers.gevent import WebSocketWSGI

from . import metrics

logger = logging.getLogger("socketio_django")


def text_frame(payload: bytes) -> bytes:
    """A final, unmasked WebSocket text frame (server to client) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x81, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x81, 126, length)
    else:
        header = struct.pack("!BBQ", 0x81, 127, length)
    return header + payload


class RawBytes(bytes):
    """Bytes already framed for the wire, written to the socket as they are."""


class RawPacket(eio_packet.Packet):
    """An Engine.IO packet whose encoding is :class:`RawBytes`, queued like any other."""

    def __init__(self, raw: RawBytes) -> None:
        super().__init__(eio_packet.MESSAGE)
        self.encode_cache = raw


class WriterQueue(gevent.queue.JoinableQueue):
    """An Engine.IO send queue that knows when its writer is idle, and hands out at most 16 packets a batch.

    A batch is one blocking ``get`` and the non-blocking ones after it (engineio's ``Socket.poll``).
    python-engineio's client refuses a long-polling response of more than 16 packets
    (``Payload.max_decode_packets``); the rest wait for the next poll.
    """

    max_batch = 16

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writer_idle = False
        self._batch = 0
        #: Seconds a long-poll waits after its first packet for more; 0 once a WebSocket writes.
        self.linger = 0.001
        #: Frames for an idle writer, written together when this turn of the event loop ends.
        self.pending: list[bytes] = []

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self.pending:  # they came first: they go first
            super().put(RawPacket(self.take_pending()))
        super().put(item, block, timeout)

    def take_pending(self) -> RawBytes:
        """The pending frames as one piece, leaving none pending."""
        data = RawBytes(b"".join(self.pending))
        self.pending.clear()
        return data

    def put_first(self, raw: RawBytes) -> None:
        """Queue ``raw`` when nothing is queued or pending, so it is the next thing written."""
        super().put(RawPacket(raw))

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            if self._batch >= self.max_batch:
                raise gevent.queue.Empty
            self._batch += 1
            return super().get(False)
        self._batch = 1
        if self.qsize():
            return super().get(True, timeout)
        self.writer_idle = True
        try:
            item = super().get(True, timeout)
        finally:
            self.writer_idle = False
        if self.linger:
            # A long-poll answered at the first packet would often carry just that one; what
            # the same burst sends a moment later rides along instead of costing another poll.
            gevent.sleep(self.linger)
        return item


class FrameWebSocket(WebSocketWSGI):
    """python-engineio's gevent WebSocket, which can also write prebuilt frames."""

    def __call__(self, environ: dict, start_response: Any) -> Any:
        # The handler is the engineio Socket's bound _websocket_handler: let broadcasts find us.
        engineio_socket = self.app.__self__
        engineio_socket.queue.linger = 0
        connection = environ["wsgi.websocket"].handler.socket
        # Small frames go out at once: with Nagle's algorithm a frame could wait for the
        # client's delayed ACK, up to 40 ms on Linux.
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if isinstance(connection, ssl.SSLSocket):
            # Behind TLS (Gunicorn with a certificate) bytes must go through the SSL layer:
            # no direct writes, the usual Engine.IO path.
            return super().__call__(environ, start_response)
        engineio_socket.frame_writer = self
        try:
            return super().__call__(environ, start_response)
        finally:
            engineio_socket.frame_writer = None

    def send(self, message: Any) -> Any:
        if isinstance(message, RawBytes):
            return self._sock.raw_write(message)
        return super().send(message)

    def write_now(self, data: bytes) -> int:
        """Write what the kernel takes at once; how many bytes that was (0 if it takes none)."""
        try:
            return _socket.socket.send(self._sock.handler.socket._sock, data)
        except (BlockingIOError, InterruptedError):
            return 0
        except (OSError, AttributeError, TypeError):
            return len(data)  # the connection is gone; its reader cleans up

    def abort(self) -> None:
        """Shut the TCP connection down, so a writer blocked on a stalled peer gives up."""
        with contextlib.suppress(OSError, AttributeError):
            self._sock.handler.socket.shutdown(socket.SHUT_RDWR)


def install(server: socketio.Server) -> None:
    """Make ``server``'s Engine.IO sockets use :class:`WriterQueue` and :class:`FrameWebSocket`."""
    server.eio._async = {**server.eio._async, "queue": WriterQueue, "websocket": FrameWebSocket}


class FanoutManager(socketio.Manager):
    """A client manager whose broadcasts take the fast path described in this module."""

    def __init__(self, max_backlog: int = 1000) -> None:
        super().__init__()
        self.max_backlog = max_backlog
        # Sockets with frames pending; flushed by one loop callback per turn.
        self._to_flush: list[Any] = []

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
        frame = RawBytes(text_frame(("4" + encoded).encode()))
        sockets = self.server.eio.sockets
        delivered = 0
        for sid, eio_sid in self.get_participants(namespace, room):
            if sid in skip:
                continue
            engineio_socket = sockets.get(eio_sid)
            if engineio_socket is not None and not engineio_socket.closed:
                self._deliver(engineio_socket, queued, frame)
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

    def _deliver(self, engineio_socket: Any, queued: eio_packet.Packet, frame: RawBytes) -> None:
        queue = engineio_socket.queue
        if (
            getattr(engineio_socket, "frame_writer", None) is None
            or not engineio_socket.upgraded
            or engineio_socket.upgrading
        ):
            # Long-polling, or a WebSocket not yet in charge: the usual Engine.IO path.
            if queue.qsize() >= self.max_backlog:
                return self._drop(engineio_socket)
            return engineio_socket.send(queued)
        if queue.pending:
            queue.pending.append(frame)  # nothing was queued since: still first in line
        elif queue.writer_idle and not queue.qsize():
            # Written when this turn of the loop ends, with whatever else this client gets in it.
            if not self._to_flush:
                gevent.get_hub().loop.run_callback(self._flush)
            self._to_flush.append(engineio_socket)
            queue.pending.append(frame)
        elif queue.qsize() >= self.max_backlog:
            self._drop(engineio_socket)
        else:
            queue.put(RawPacket(frame))
        return None

    def _flush(self) -> None:
        """Write each client's pending frames with one ``send``; what the kernel refuses goes to its writer.

        Runs as a loop callback queued before any writer could be woken for
        these clients, so the writers are still idle and their queues hold
        nothing that should come before.
        """
        sockets, self._to_flush = self._to_flush, []
        for engineio_socket in sockets:
            queue = engineio_socket.queue
            writer = engineio_socket.frame_writer
            if not queue.pending or writer is None or engineio_socket.closed:
                queue.pending.clear()
                continue
            data = queue.take_pending()
            written = writer.write_now(data)
            if written < len(data):
                queue.put_first(RawBytes(data[written:]))

    def drop_if_backlogged(self, eio_sid: str) -> bool:
        """Drop the client if its send backlog is full (for packets sent outside ``emit``: replies).

        True when nothing should be sent to it: dropped now, or gone already.
        """
        engineio_socket = self.server.eio.sockets.get(eio_sid)
        if engineio_socket is None or engineio_socket.closed:
            return True
        if engineio_socket.queue.qsize() < self.max_backlog:
            return False
        self._drop(engineio_socket)
        return True

    def _drop(self, engineio_socket: Any) -> None:
        metrics.SLOW_CLIENTS.inc()
        logger.warning(
            "dropping %s: %d packets waiting, it reads too slowly", engineio_socket.sid, engineio_socket.queue.qsize()
        )
        engineio_socket.close(wait=False, abort=True, reason=self.server.reason.TRANSPORT_ERROR)
        writer = getattr(engineio_socket, "frame_writer", None)
        if writer is not None:
            writer.abort()
