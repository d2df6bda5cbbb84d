"""Engine.IO's WebSocket transport on event-loop callbacks: no greenlet parked per client.

python-engineio serves a WebSocket with a reader greenlet blocked in ``recv``
for the connection's whole life, a writer greenlet blocked on the send queue
and a greenlet sleeping between pings. A parked greenlet keeps its stack: tens
of KiB for each idle client. Here, once the HTTP handshake is done, the event
loop reads the socket when the kernel has bytes for it (a read watcher), and
what is sent to a client during one turn of the loop goes out with one
``send`` when the turn ends (a write watcher waits when the kernel's buffer is
full). Pings are timers. What a client sends is handled in a greenlet that
lives only while there is something to handle, since Engine.IO and Socket.IO
handlers may block (a new connection waits for its view to accept it).

Behind TLS, bytes must go through the SSL layer: python-engineio's own
transport serves those connections.
"""

from __future__ import annotations

import _socket
import contextlib
import logging
import socket
import ssl
import struct
import time
from typing import Any

import gevent
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import socket as eio_socket

from . import metrics
from .speedups import unmask

logger = logging.getLogger("socketio_django")

OP_CONTINUATION, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
# RFC 6455 close codes.
CLOSE_NORMAL, CLOSE_PROTOCOL_ERROR, CLOSE_INVALID_DATA, CLOSE_TOO_BIG = 1000, 1002, 1007, 1009
# Messages a client may send ahead of their handling before its socket is no longer read
# (then the kernel's buffers fill, and TCP slows the client down).
MAX_UNHANDLED = 32
# Seconds a closing connection has to write what it still owes its client.
CLOSE_TIMEOUT = 5.0
READ_SIZE = 65536
# Handed to a connection's handler after the last message: the client has gone.
_GONE = object()


def frame(payload: bytes, opcode: int = OP_TEXT) -> bytes:
    """A final, unmasked WebSocket frame (server to client) carrying ``payload``."""
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", 0x80 | opcode, length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", 0x80 | opcode, 126, length)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, length)
    return header + payload


def close_frame(code: int) -> bytes:
    """A close frame carrying status ``code``."""
    return frame(struct.pack("!H", code), OP_CLOSE)


class ProtocolError(Exception):
    """The client broke RFC 6455; ``code`` is the status its close frame gets."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code


class FrameReader:
    """Turns the bytes a client sends into whole messages (RFC 6455 section 5).

    Client frames must be masked; fragmented messages are reassembled; text is
    decoded (strictly: invalid UTF-8 is an error); no message may exceed
    ``max_size`` bytes, which is checked before its payload is buffered.
    """

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buffer = bytearray()
        self._fragments: list[bytes] = []
        self._fragments_size = 0
        self._message_opcode = OP_TEXT

    def feed(self, data: bytes) -> list[tuple[int, bytes | str]]:
        """The frames ``data`` completes, as ``(opcode, payload)``: control frames, and data messages whole."""
        buffer = self._buffer
        buffer += data
        messages = []
        offset, end = 0, len(buffer)
        while end - offset >= 2:
            first, second = buffer[offset], buffer[offset + 1]
            if first & 0x70:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "reserved bits set")
            if not second & 0x80:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "unmasked client frame")
            fin, opcode, length, header = first & 0x80, first & 0x0F, second & 0x7F, 2
            if length == 126:
                header = 4
            elif length == 127:
                header = 10
            if end - offset < header:
                break
            if header > 2:
                length = int.from_bytes(buffer[offset + 2 : offset + header], "big")
            if opcode >= OP_CLOSE:
                if not fin or length > 125:
                    raise ProtocolError(CLOSE_PROTOCOL_ERROR, "fragmented or long control frame")
            elif self._fragments_size + length > self.max_size:
                raise ProtocolError(CLOSE_TOO_BIG, f"message of more than {self.max_size} bytes")
            start = offset + header + 4
            if end - start < length:
                break
            payload = unmask(buffer[start : start + length], bytes(buffer[start - 4 : start]))
            offset = start + length
            message = self._message(bool(fin), opcode, payload)
            if message is not None:
                messages.append(message)
        del buffer[:offset]
        return messages

    def _message(self, fin: bool, opcode: int, payload: bytearray) -> tuple[int, bytes | str] | None:
        if opcode >= OP_CLOSE:
            return opcode, bytes(payload)
        if opcode == OP_CONTINUATION:
            if not self._fragments:
                raise ProtocolError(CLOSE_PROTOCOL_ERROR, "continuation frame with no message to continue")
        elif opcode not in (OP_TEXT, OP_BINARY):
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, f"unknown opcode {opcode}")
        elif self._fragments:
            raise ProtocolError(CLOSE_PROTOCOL_ERROR, "new message inside a fragmented one")
        else:
            self._message_opcode = opcode
        self._fragments.append(payload)
        self._fragments_size += len(payload)
        if not fin:
            return None
        data = b"".join(self._fragments)
        self._fragments.clear()
        self._fragments_size = 0
        if self._message_opcode == OP_BINARY:
            return OP_BINARY, data
        try:
            return OP_TEXT, data.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError(CLOSE_INVALID_DATA, "text that is not UTF-8") from None


class _Flusher:
    """Writes the connections that got something during this turn of the event loop, once it ends."""

    def __init__(self) -> None:
        self._connections: list[WebSocketConnection] = []

    def add(self, connection: WebSocketConnection) -> None:
        if not self._connections:
            gevent.get_hub().loop.run_callback(self._flush)
        self._connections.append(connection)

    def _flush(self) -> None:
        connections = self._connections
        self._connections = []
        for connection in connections:
            connection.flush()


_flusher = _Flusher()


class WebSocketConnection:
    """One Engine.IO WebSocket, read and written by event-loop callbacks.

    Takes the connection's file descriptor from gevent's socket object, so the
    WSGI handler's greenlet can end without closing it. ``probing`` is true
    when the client upgrades from long-polling: then it first proves the
    WebSocket works (Engine.IO's probe) before the socket's packets move to it.
    """

    def __init__(self, engineio_socket: EngineSocket, sock: socket.socket, probing: bool) -> None:
        self.engineio_socket = engineio_socket
        self.sock = _socket.socket(fileno=sock.detach())
        self.sock.setblocking(False)
        loop = gevent.get_hub().loop
        self._reading = loop.io(self.sock.fileno(), 1)
        self._writing = loop.io(self.sock.fileno(), 2)
        self._close_timer: Any = None
        self._frames = FrameReader(engineio_socket.server.max_http_buffer_size)
        # Lists, not deques: an empty deque costs 600 bytes, and most clients have nothing waiting.
        self._out: list[bytes] = []
        self._flush_pending = False
        self._unhandled: list[Any] = []
        self._handler: gevent.Greenlet | None = None
        #: The upgrade's next step: "probe", then "upgrade"; None once done (or for a direct WebSocket).
        self.probe: str | None = "probe" if probing else None
        #: Engine.IO closed this connection: what is left is being written, then it closes.
        self.closing = False
        #: Nothing is read or written any more; the descriptor is closed.
        self.closed = False
        self._reading.start(self._on_readable)

    # -- writing ---------------------------------------------------------

    @property
    def backlog(self) -> int:
        """Frames waiting to be written (the kernel took none of their bytes, or only some)."""
        return len(self._out)

    def write(self, data: bytes) -> None:
        """Send ``data``, one or more frames, when this turn of the event loop ends."""
        if self.closed or self.closing:
            return
        self._out.append(data)
        if not self._flush_pending and not self._writing.active:
            self._flush_pending = True
            _flusher.add(self)

    def send_packet(self, pkt: eio_packet.Packet | None) -> None:
        """Send an Engine.IO packet; ``None`` (Engine.IO closed the socket) closes the connection after the rest."""
        if pkt is None:
            return self._finish()
        encoded = pkt.encode()
        if isinstance(encoded, str):
            return self.write(frame(encoded.encode()))
        return self.write(frame(encoded, OP_BINARY))

    def flush(self) -> None:
        """Write what is waiting, unless a write watcher already waits for the kernel."""
        self._flush_pending = False
        if not self._writing.active:
            self._write()

    def _write(self) -> None:
        out = self._out
        if self.closed:
            return
        if out:
            data = out[0] if len(out) == 1 else b"".join(out)
            try:
                sent = self.sock.send(data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                return self._lost()
            if sent < len(data):
                self._drop_written(sent)
                if not self._writing.active:
                    self._writing.start(self._write)
                return None
            out.clear()
        if self._writing.active:
            self._writing.stop()
        if self.closing:
            self._shutdown()
        return None

    def _drop_written(self, sent: int) -> None:
        """Forget the first ``sent`` bytes of what waits, keeping the frames' count right."""
        out = self._out
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
        try:
            messages = self._frames.feed(data)
        except ProtocolError as error:
            metrics.MALFORMED.inc()
            logger.warning("closing WebSocket of %s: %s", self.engineio_socket.sid, error)
            return self._lost(error.code)
        for opcode, payload in messages:
            if opcode == OP_PING:
                self.write(frame(payload, OP_PONG))
            elif opcode == OP_CLOSE:
                return self._lost(CLOSE_NORMAL)
            elif opcode != OP_PONG:
                self._hand_over(payload)
        return None

    def _hand_over(self, item: Any) -> None:
        """Queue ``item`` for the handler greenlet, starting one if none runs."""
        self._unhandled.append(item)
        if self._handler is None:
            self._handler = gevent.spawn(self._handle_all)
        elif len(self._unhandled) >= MAX_UNHANDLED and self._reading.active:
            self._reading.stop()

    def _handle_all(self) -> None:
        try:
            while self._unhandled:
                self._handle(self._unhandled.pop(0))
        finally:
            self._handler = None
            if not self.closed and not self._reading.active:
                self._reading.start(self._on_readable)

    def _handle(self, item: Any) -> None:
        socket = self.engineio_socket
        if item is _GONE:
            if self.probe is None:
                socket.close(wait=False, abort=True, reason=socket.server.reason.TRANSPORT_CLOSE)
                self._forget()
            else:  # a failed upgrade: the client goes on polling
                socket.upgrading = False
            return
        try:
            pkt = eio_packet.Packet(encoded_packet=item)
        except (ValueError, TypeError, IndexError, KeyError) as error:
            metrics.MALFORMED.inc()
            logger.warning("disconnecting %s: malformed Engine.IO packet (%s)", socket.sid, error)
            self._unhandled.clear()
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
        if self.probe == "probe" and pkt.packet_type == eio_packet.PING and pkt.data == "probe":
            self.write(frame(eio_packet.Packet(eio_packet.PONG, data="probe").encode().encode()))
            socket.queue.put(eio_packet.Packet(eio_packet.NOOP))  # answers the pending poll
            self.probe = "upgrade"
        elif self.probe == "upgrade" and pkt.packet_type == eio_packet.UPGRADE:
            self.probe = None
            socket.upgraded, socket.upgrading = True, False
            socket.queue.attach(self)
        else:
            logger.info("%s: failed WebSocket upgrade, got %r", socket.sid, pkt.encode())
            self._lost(CLOSE_PROTOCOL_ERROR)

    # -- closing ---------------------------------------------------------

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
        self._close_timer = gevent.get_hub().loop.timer(CLOSE_TIMEOUT)
        self._close_timer.start(self.abort)
        self._forget()

    def _lost(self, code: int | None = None) -> None:
        """The client left or broke the protocol: close now, then tell Engine.IO (after what it sent before)."""
        if self.closed:
            return
        if code is not None:
            with contextlib.suppress(OSError):
                self.sock.send(close_frame(code))
        self._shutdown()
        self._hand_over(_GONE)

    def _shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._out.clear()
        self._reading.stop()
        self._writing.stop()
        if self._close_timer is not None:
            self._close_timer.close()
        self._reading.close()
        self._writing.close()
        # Read what the client sent last: closing with unread bytes resets the connection, and
        # the client could lose what was written just before (the close frame).
        with contextlib.suppress(OSError):
            for _ in range(4):
                if not self.sock.recv(READ_SIZE):
                    break
        self.sock.close()

    def _forget(self) -> None:
        """Remove the closed Engine.IO socket from its server (python-engineio would, when its handler returned)."""
        sockets = self.engineio_socket.server.sockets
        if sockets.get(self.engineio_socket.sid) is self.engineio_socket:
            del sockets[self.engineio_socket.sid]


class EngineSocket(eio_socket.Socket):
    """python-engineio's socket with timer pings and, over plain TCP, :class:`WebSocketConnection`."""

    @classmethod
    def adopt(cls, engineio_socket: eio_socket.Socket) -> None:
        """Make a socket python-engineio just built an :class:`EngineSocket` (it builds them itself)."""
        engineio_socket.__class__ = cls

    def schedule_ping(self) -> None:
        if self.last_ping:  # as python-engineio: the next ping once the last one was answered
            self.last_ping = None
            timer = gevent.get_hub().loop.timer(self.server.ping_interval)
            timer.start(self._ping, timer)

    def _ping(self, timer: Any) -> None:
        timer.close()
        if not self.closing and not self.closed:
            self.last_ping = time.time()
            self.send(eio_packet.Packet(eio_packet.PING))

    def _upgrade_websocket(self, environ: dict, start_response: Any) -> Any:
        websocket = environ.get("wsgi.websocket")
        connection = getattr(getattr(websocket, "handler", None), "socket", None)
        if connection is not None:
            # Small frames go out at once: with Nagle's algorithm a frame could wait for the
            # client's delayed ACK, up to 40 ms on Linux.
            with contextlib.suppress(OSError):
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if connection is None or self.upgraded or isinstance(connection, ssl.SSLSocket):
            self.queue.linger = 0
            return super()._upgrade_websocket(environ, start_response)
        probing = self.connected
        if probing:
            self.upgrading = True  # hold packets in the queue until the upgrade is done
        else:
            self.connected = self.upgraded = True
        transport = WebSocketConnection(self, connection, probing)
        if not probing:
            self.queue.attach(transport)
        # Handed over: gevent-websocket must not close it when the request ends.
        websocket.closed = True
        websocket.handler.close_connection = True
        # Frees its 8 KiB buffer, which the request's environ (kept by python-socketio) would hold.
        websocket.handler.rfile.close()
        return []
