"""Engine.IO's WebSocket transport on event-loop callbacks: no greenlet parked per client.

python-engineio serves a WebSocket with a reader greenlet blocked in ``recv``
for the connection's whole life, a writer greenlet blocked on the send queue
and a greenlet sleeping between pings. A parked greenlet keeps its stack: tens
of KiB for each idle client. Here, once the HTTP handshake is done, the event
loop reads the socket when the kernel has bytes for it (a read watcher), and
what is sent to a client during one turn of the loop goes out with one
``send`` when the turn ends (a write watcher waits when the kernel's buffer is
full). Pings are timers (:mod:`.engine`). What a client sends is handled in a
greenlet that lives only while there is something to handle, since Engine.IO
and Socket.IO handlers may block (a new connection waits for its view to
accept it). Once closed, nothing keeps a connection or its session: they are
freed at once, not by the garbage collector's next full pass.

Behind TLS, bytes must go through the SSL layer: python-engineio's own
transport serves those connections.
"""

from __future__ import annotations

import _socket
import contextlib
import io
import logging
import socket
import ssl
from collections.abc import Iterable
from typing import Any

import gevent
import gevent.queue
import gevent.ssl
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import socket as eio_socket

from . import metrics
from .frames import (
    CLOSE_NORMAL,
    CLOSE_PROTOCOL_ERROR,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameReader,
    close_frame,
    frame,
)

logger = logging.getLogger("socketio_django")

# Messages a client may send ahead of their handling before its socket is no longer read
# (then the kernel's buffers fill, and TCP slows the client down).
MAX_UNHANDLED = 32
# Seconds a closing connection has to write what it still owes its client, then for the client to close its side.
CLOSE_TIMEOUT = 5.0
READ_SIZE = 65536
# Bytes joined for one send when many frames wait: about what a socket buffer takes at once.
WRITE_CHUNK = 256 * 1024
# Handed to a connection's handler after the last message: the client has gone.
_GONE = object()
# Where a closed connection's last bytes from its client go (the event loop reads one at a time).
_dropped = bytearray(READ_SIZE)


class _Flusher:
    """Writes the connections that got something during this turn of the event loop, once it ends."""

    def __init__(self) -> None:
        #: Connections with frames waiting and no write watcher: each is here once.
        self.connections: list[WebSocketConnection] = []
        self._scheduled = False

    def schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            gevent.get_hub().loop.run_callback(self._flush)

    def _flush(self) -> None:
        self._scheduled = False
        connections = self.connections
        self.connections = []
        for connection in connections:
            if not connection.closed:
                connection.write_now()


_flusher = _Flusher()


class WebSocketConnection:
    """One Engine.IO WebSocket, read and written by event-loop callbacks.

    Takes the connection's file descriptor from gevent's socket object, so the
    WSGI handler's greenlet can end without closing it. ``probing`` is true
    when the client upgrades from long-polling: then it first proves the
    WebSocket works (Engine.IO's probe) before the socket's packets move to it.
    """

    # Thousands of these are alive at once and the fan-out loop reads them: slots, not dicts.
    __slots__ = (
        "engineio_socket",
        "sock",
        "out",
        "probe",
        "closing",
        "closed",
        "waiting",
        "_reading",
        "_writing",
        "_deadline",
        "_frames",
        "_unhandled",
        "_handler",
    )

    def __init__(self, engineio_socket: EngineSocket, sock: socket.socket, probing: bool) -> None:
        self.engineio_socket = engineio_socket
        self.sock = _socket.socket(fileno=sock.detach())
        self.sock.setblocking(False)
        loop = gevent.get_hub().loop
        self._reading = loop.io(self.sock.fileno(), 1)
        self._writing = loop.io(self.sock.fileno(), 2)
        #: A timer: the end of the upgrade probe, then of the close.
        self._deadline: Any = None
        self._frames = FrameReader(engineio_socket.server.max_http_buffer_size)
        #: Frames not written yet (the kernel took none of their bytes, or only some).
        #: Lists, not deques: an empty deque costs 600 bytes, and most clients have nothing waiting.
        self.out: list[bytes] = []
        self._unhandled: list[Any] = []
        self._handler: gevent.Greenlet | None = None
        #: The upgrade's next step: "probe", then "upgrade"; None once done (or for a direct WebSocket).
        self.probe: str | None = "probe" if probing else None
        #: Engine.IO closed this connection: what is left is being written, then it closes.
        self.closing = False
        #: Nothing is read or written any more; the descriptor is closed.
        self.closed = False
        #: The kernel's buffer was full: a write watcher waits to write ``out``.
        self.waiting = False
        self._reading.start(self._on_readable)
        if probing:
            self._deadline = loop.timer(engineio_socket.server.ping_timeout)
            self._deadline.start(self._probe_expired)

    # -- writing ---------------------------------------------------------

    def write(self, data: bytes) -> None:
        """Send ``data``, one or more frames, when this turn of the event loop ends."""
        if self.closed or self.closing:
            return
        if not self.out and not self.waiting:
            _flusher.connections.append(self)
            _flusher.schedule()
        self.out.append(data)

    def send_packet(self, pkt: eio_packet.Packet | None) -> None:
        """Send an Engine.IO packet; ``None`` (Engine.IO closed the socket) closes the connection after the rest."""
        if pkt is None:
            return self._finish()
        encoded = pkt.encode()
        if isinstance(encoded, str):
            return self.write(frame(encoded.encode()))
        return self.write(frame(encoded, OP_BINARY))

    def write_now(self) -> None:
        """Write what waits, as much as the kernel takes; a write watcher waits to write the rest."""
        out = self.out
        while out:
            count = len(out) if len(out) <= 16 else self._chunk_count()
            data = out[0] if count == 1 else b"".join(out[:count])
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return self._lost()
            if sent < len(data):
                self._drop_written(sent)
                if not self.waiting:
                    self.waiting = True
                    self._writing.start(self.write_now)
                    # A client that does not read is not read either: its pings and
                    # packets would pile up answers here instead of in its TCP window.
                    self._reading.stop()
                return None
            del out[:count]
        if self.waiting:
            self.waiting = False
            self._writing.stop()
            self._resume_reading()
        if self.closing:
            self._shutdown()
        return None

    def _chunk_count(self) -> int:
        """How many of the waiting frames make up about ``WRITE_CHUNK`` bytes (at least one)."""
        count = size = 0
        for data in self.out:
            count += 1
            size += len(data)
            if size >= WRITE_CHUNK:
                break
        return count

    def _drop_written(self, sent: int) -> None:
        """Forget the first ``sent`` bytes of what waits, keeping the frames' count right."""
        out = self.out
        written = 0
        while len(out[written]) <= sent:
            sent -= len(out[written])
            written += 1
        del out[:written]
        if sent:
            out[0] = out[0][sent:]

    # -- reading ---------------------------------------------------------

    def _on_readable(self) -> None:
        try:
            data = self.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if not data:
            return self._lost()
        for opcode, payload in self._frames.feed(data):
            if opcode == OP_PING:
                self.write(frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                return self._lost(CLOSE_NORMAL)
            elif opcode != OP_PONG:
                self._hand_over(payload)
        error = self._frames.error
        if error is not None:
            metrics.MALFORMED.inc()
            logger.warning("closing WebSocket of %s: %s", self.engineio_socket.sid, error)
            return self._lost(error.code)
        return None

    def _resume_reading(self) -> None:
        """Read the client again, unless its answers or its messages still wait."""
        if not (self.closed or self.waiting or self._reading.active or len(self._unhandled) >= MAX_UNHANDLED):
            self._reading.start(self._on_readable)

    def _hand_over(self, item: Any) -> None:
        """Queue ``item`` for the handler greenlet, starting one if none runs."""
        self._unhandled.append(item)
        if self._handler is None:
            self._handler = gevent.spawn(self._handle_all)
        elif len(self._unhandled) >= MAX_UNHANDLED and self._reading.active and not self.closed:
            self._reading.stop()

    def _handle_all(self) -> None:
        metrics.HANDLER_GREENLETS.inc()
        try:
            while self._unhandled:
                self._handle(self._unhandled.pop(0))
        finally:
            metrics.HANDLER_GREENLETS.dec()
            self._handler = None
            self._resume_reading()

    def _handle(self, item: Any) -> None:
        socket = self.engineio_socket
        if item is _GONE:
            if self.probe is None:
                socket.close(wait=False, abort=True, reason=socket.server.reason.TRANSPORT_CLOSE)
            else:  # a failed upgrade: the client goes on polling
                socket.upgrading = False
            return
        try:
            pkt = eio_packet.Packet(encoded_packet=item)
        # RecursionError: python-engineio reads a packet's data as JSON when it can, nested past the stack or not.
        except (ValueError, TypeError, IndexError, KeyError, RecursionError) as error:
            metrics.MALFORMED.inc()
            logger.warning("disconnecting %s: malformed Engine.IO packet (%s)", socket.sid, error)
            # Nothing more of its packets, but the "client gone" marker stays: dropping it would
            # leave the session open (a ghost, online) until its ping timeout.
            self._unhandled[:] = [later for later in self._unhandled if later is _GONE]
            return self._lost(CLOSE_PROTOCOL_ERROR)
        if self.probe is not None:
            return self._upgrade(pkt)
        try:
            socket.receive(pkt)
        except eio_exceptions.UnknownPacketError:
            pass  # python-engineio ignores them too
        except Exception:
            logger.exception("error handling a packet from %s", socket.sid)
            self._lost(CLOSE_PROTOCOL_ERROR)
        return None

    def _upgrade(self, pkt: eio_packet.Packet) -> None:
        """Engine.IO's upgrade handshake: PING "probe", PONG "probe", then UPGRADE."""
        socket = self.engineio_socket
        if self.closed:
            return  # read before a failed step closed this connection: an UPGRADE would attach it, closed
        if socket.upgraded or socket.closed:  # another WebSocket won, or the client has gone
            self._lost(CLOSE_PROTOCOL_ERROR)
        elif self.probe == "probe" and pkt.packet_type == eio_packet.PING and pkt.data == "probe":
            self.write(frame(eio_packet.Packet(eio_packet.PONG, data="probe").encode().encode()))
            socket.queue.put(eio_packet.Packet(eio_packet.NOOP))  # answers the pending poll
            self.probe = "upgrade"
        elif self.probe == "upgrade" and pkt.packet_type == eio_packet.UPGRADE:
            self.probe = None
            self._deadline.close()
            self._deadline = None
            socket.upgraded, socket.upgrading = True, False
            socket.attach(self)
        else:
            logger.info("%s: failed WebSocket upgrade, got %r", socket.sid, pkt.encode())
            self._lost(CLOSE_PROTOCOL_ERROR)

    # -- closing ---------------------------------------------------------

    def _probe_expired(self) -> None:
        logger.info("%s: WebSocket upgrade not completed in time", self.engineio_socket.sid)
        self._lost(CLOSE_PROTOCOL_ERROR)

    def abort(self) -> None:
        """Close the connection now, dropping what was not written yet."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self._shutdown()

    def _finish(self) -> None:
        if self.closed or self.closing:
            return
        self.write(close_frame(CLOSE_NORMAL))
        self.closing = True  # nothing more after the close frame
        if self._deadline is not None:
            self._deadline.close()
        self._deadline = gevent.get_hub().loop.timer(CLOSE_TIMEOUT)
        self._deadline.start(self.abort)
        self._unregister()

    def _lost(self, code: int | None = None) -> None:
        """The client left or broke the protocol: close now, then tell Engine.IO (after what it sent before)."""
        if self.closed:
            return
        if code is not None and not self.waiting:  # after half a frame, a close frame would garble both
            with contextlib.suppress(OSError):
                self.sock.send(b"".join([*self.out, close_frame(code)]))
        self._shutdown()
        self._hand_over(_GONE)

    def _shutdown(self) -> None:
        """Read and write no more; the descriptor closes once the client has closed its side too."""
        if self.closed:
            return
        self.closed = True
        self.out.clear()
        self._reading.stop()
        self._writing.stop()
        self._writing.close()
        if self._deadline is not None:
            self._deadline.close()
            self._deadline = None
        self._unregister()
        _Drain(self.sock, self._reading)

    def _unregister(self) -> None:
        """Take this connection out of the registry: broadcasts no longer reach it."""
        websockets = self.engineio_socket.server.websockets
        if websockets.get(self.engineio_socket.sid) is self:
            del websockets[self.engineio_socket.sid]


class _Drain:
    """A closed connection's last seconds: what its client still sends is dropped until it closes too.

    Closing with unread bytes resets the connection, and the client could lose what
    was written just before (the close frame). An object of its own, so that the
    connection and its session are freed meanwhile (a client that never closes
    would hold them for ``CLOSE_TIMEOUT``).
    """

    __slots__ = ("sock", "reading", "deadline")

    def __init__(self, sock: _socket.socket, reading: Any) -> None:
        self.sock, self.reading = sock, reading
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_WR)
        # Active watchers keep their callbacks, and so this object, alive.
        self.deadline = gevent.get_hub().loop.timer(CLOSE_TIMEOUT)
        self.deadline.start(self.close)
        reading.start(self.drop_input)

    def drop_input(self) -> None:
        try:
            if self.sock.recv_into(_dropped):
                return None
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            pass
        return self.close()

    def close(self) -> None:
        self.reading.close()
        self.deadline.close()
        self.sock.close()


class WebSocketRegistry(dict):
    """The open :class:`WebSocketConnection` of each Engine.IO socket that has one, by Engine.IO id."""

    def write(
        self, eio_sids: Iterable[str], data: bytes, max_backlog: int
    ) -> tuple[list[str], list[WebSocketConnection]]:
        """Send ``data`` (frames) to each of ``eio_sids`` that has a WebSocket here, when this loop turn ends.

        Returns the ids with no WebSocket here (long-polling, behind TLS, still
        upgrading), and the connections that already had ``max_backlog`` frames
        waiting while the kernel would take no more of their bytes (the client
        does not read): ``data`` was not added to those. Frames that wait only
        for this loop turn's end do not count: a burst is not a slow reader.
        """
        others: list[str] = []
        full: list[WebSocketConnection] = []
        waiting_flush = _flusher.connections
        # WebSocketConnection.write, inlined: this loop runs once per recipient of every broadcast.
        # Registered connections are open (closing ones leave the registry), so no state check.
        for eio_sid in eio_sids:
            connection = self.get(eio_sid)
            if connection is None:
                others.append(eio_sid)
                continue
            out = connection.out
            if not out:
                if not connection.waiting:
                    waiting_flush.append(connection)
            elif connection.waiting and len(out) >= max_backlog:
                full.append(connection)
                continue
            out.append(data)
        if waiting_flush:
            _flusher.schedule()
        return others, full


class WriterQueue(gevent.queue.JoinableQueue):
    """An Engine.IO socket's send queue while it polls: batches of at most 16 packets, a 1 ms linger.

    A batch is one blocking ``get`` and the non-blocking ones after it
    (engineio's ``Socket.poll``): python-engineio's client refuses a
    long-polling response of more than 16 packets
    (``Payload.max_decode_packets``); the rest wait for the next poll.
    """

    max_batch = 16
    #: Nothing goes around the queue: see :class:`WebSocketQueue`.
    transport = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._batch = 0
        #: Seconds a long-poll waits after its first packet for more.
        self.linger = 0.001

    def backlog(self) -> int:
        """Packets waiting to be sent."""
        return self.qsize()

    def take_all(self) -> list[Any]:
        """Every packet queued, leaving none."""
        items = []
        while self.qsize():
            items.append(super().get(False))
            self.task_done()
        return items

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


class WebSocketQueue:
    """An Engine.IO socket's send queue once a :class:`WebSocketConnection` is in charge.

    Packets go straight to the connection, which writes them when the loop
    turn ends. It takes the place of the socket's :class:`WriterQueue` (a
    few KiB, for every idle client). Once the socket has closed, what is put is dropped.
    """

    __slots__ = ("transport",)

    def __init__(self, transport: WebSocketConnection) -> None:
        #: None once the socket has closed.
        self.transport: WebSocketConnection | None = transport

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if self.transport is not None:
            self.transport.send_packet(item)

    def join(self, timeout: float | None = None) -> None:
        """Returns at once: what was put is with the connection already."""

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Nothing waits here (for a poll that was still waiting when the WebSocket took over)."""
        raise gevent.queue.Empty

    def task_done(self) -> None:
        """Nothing to count."""

    def backlog(self) -> int:
        """Frames waiting while the kernel takes no more (none while they only wait for this loop turn's end)."""
        transport = self.transport
        return len(transport.out) if transport is not None and transport.waiting else 0


class EngineSocket(eio_socket.Socket):
    """python-engineio's socket served, over plain TCP, by :class:`WebSocketConnection`; counted until freed."""

    @classmethod
    def adopt(cls, engineio_socket: eio_socket.Socket) -> None:
        """Make a socket python-engineio just built an :class:`EngineSocket` (it builds them itself)."""
        engineio_socket.__class__ = cls
        metrics.count_until_freed(engineio_socket, metrics.SESSIONS_IN_MEMORY)

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        """Close the session, and let it go: it leaves the server's sessions (a request for it is refused alike)."""
        super().close(wait=wait, abort=abort, reason=reason)
        if self.server.sockets.get(self.sid) is self:
            del self.server.sockets[self.sid]
        if isinstance(self.queue, WebSocketQueue):
            # Its connection points back at this socket: without the cycle, both are freed as soon as
            # the connection is done, not at the garbage collector's next full pass.
            self.queue.transport = None

    def attach(self, transport: WebSocketConnection) -> None:
        """Send what is queued, and from now on every packet, through ``transport``."""
        polling_queue = self.queue
        self.queue = WebSocketQueue(transport)
        for item in polling_queue.take_all():
            transport.send_packet(item)
        # Ends a poll that would still wait on the old queue (a client should have let it end).
        polling_queue.put(eio_packet.Packet(eio_packet.NOOP))
        self.server.websockets[self.sid] = transport

    def _upgrade_websocket(self, environ: dict, start_response: Any) -> Any:
        websocket = environ.get("wsgi.websocket")
        connection = getattr(getattr(websocket, "handler", None), "socket", None)
        if connection is not None:
            # Small frames go out at once: with Nagle's algorithm a frame could wait for the
            # client's delayed ACK, up to 40 ms on Linux.
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if connection is None or self.upgraded or isinstance(connection, (ssl.SSLSocket, gevent.ssl.SSLSocket)):
            self.queue.linger = 0
            return super()._upgrade_websocket(environ, start_response)
        probing = self.connected
        if probing:
            self.upgrading = True  # hold packets in the queue until the upgrade is done
        else:
            self.connected = self.upgraded = True
        transport = WebSocketConnection(self, connection, probing)
        if not probing:
            self.attach(transport)
        # The request's environ stays (python-socketio keeps it); what reads the request's body need not.
        environ["wsgi.input"] = io.BytesIO()
        # Handed over: gevent-websocket must not close it when the request ends.
        websocket.closed = True
        websocket.handler.close_connection = True
        # Frees its 8 KiB buffer, which the request's environ (kept by python-socketio) would hold.
        websocket.handler.rfile.close()
        return []


def install(engineio_server: Any) -> None:
    """Serve ``engineio_server``'s WebSocket clients with :class:`WebSocketConnection`.

    Its sockets must be made :class:`EngineSocket` as they are built (see ``EngineSocket.adopt``).
    """
    engineio_server._async = {**engineio_server._async, "queue": WriterQueue}
    engineio_server.websockets = WebSocketRegistry()
