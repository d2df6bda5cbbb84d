"""Engine.IO v4 and Socket.IO v5 as their specifications say, where python-engineio and python-socketio do not.

The rules come from the ``engine.io-protocol`` and ``socket.io-protocol``
documents and their test suites (``tests/test_protocol.py`` checks each).
Everything else stays python-engineio's, python-socketio's, and
:mod:`.websocket`'s. What this module overrides, and why:

:class:`ProtocolServer` (``engineio.Server``), the HTTP side:

- The handshake announces ``pingInterval`` in milliseconds as configured:
  python-engineio truncates it to whole seconds first (0.3 s became 0).
- ``transport`` is a mandatory query parameter (python-engineio took a missing
  one for ``polling``), and a method other than GET, POST or OPTIONS is a 400
  (python-engineio: 405).
- A POST is answered ``ok`` (python-engineio: ``OK``).
- Before a request for a session is served, the session is brought up to
  date: a missed pong closes it (so that poll is refused, not served the
  ping: python-engineio looks only every ``pingTimeout``), and a WebSocket
  being upgraded to handles what its client sent before this request (so a
  poll after the upgrade's last packet is refused, not answered).

:class:`ProtocolSocket` (the project's :class:`.websocket.EngineSocket`), one session:

- The pong's deadline is a timer: a session whose pong is late is closed
  then, and its pending poll gets the CLOSE packet (python-engineio meant to
  send one, but its ``send`` drops it). So python-engineio's monitor task is
  off (each round held a copy of every session, closed ones too, for a ping
  timeout), and closing a session stops its timers: it is freed at once.
- A client's CLOSE answers its pending poll with a NOOP (python-engineio: an
  empty body, which is no payload at all).
- A second poll while one is pending is refused and closes the session.
- Upgrading: the probe and the UPGRADE packet are handled as soon as they are
  read (:class:`UpgradingWebSocket`), the NOOP meant for a poll is not sent
  over the WebSocket when no poll took it, and a second WebSocket while one
  proves itself is closed (python-engineio let both probe).

:class:`SocketIOProtocol`, a mixin for ``socketio.Server``:

- A session whose first Socket.IO packet is not a CONNECT is closed.
- A session that has connected to no namespace ``connect_timeout`` seconds
  after its handshake is closed (Node's ``connectTimeout``, 45 s).
- Packets are read as Node's parser reads them (:class:`StrictPacket`):
  python-socketio took NaN, Infinity, ack ids of 100 digits, a CONNECT whose
  auth is no object, and placeholders for attachments that do not exist.
"""

from __future__ import annotations

import binascii
import contextlib
import io
import json
import logging
import math
import socket
import ssl
import time
import urllib.parse
from typing import Any

import engineio
import gevent
import gevent.ssl
from engineio import exceptions as eio_exceptions
from engineio import packet as eio_packet
from engineio import payload as eio_payload
from socketio import packet as sio_packet

from . import metrics
from .websocket import EngineSocket, WebSocketConnection, WriterQueue

logger = logging.getLogger("socketio_django")

# Methods Engine.IO answers; any other is a bad request.
METHODS = ("GET", "POST", "OPTIONS")


def milliseconds(seconds: float) -> int:
    return round(seconds * 1000)


class ProtocolServer(engineio.Server):
    """python-engineio's server with the handshake and request checks the specification asks for."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Pong deadlines are timers (ProtocolSocket) and a closed session leaves ``sockets`` at once: python-engineio's
        # monitor task would only hold a copy of every session, closed ones too, for a ping timeout per round.
        kwargs.setdefault("monitor_clients", False)
        super().__init__(*args, **kwargs)

    def handle_request(self, environ: dict, start_response: Any) -> Any:
        with metrics.REQUEST_GREENLETS.track_inprogress():
            return self._handle_request(environ, start_response)

    def _handle_request(self, environ: dict, start_response: Any) -> Any:
        method = environ["REQUEST_METHOD"]
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        if method not in METHODS or (method != "OPTIONS" and "transport" not in query):
            self._log_error_once(f"Bad request: {method} without a transport or not allowed", "bad-request")
            response = self._bad_request("Bad request")
            start_response(response["status"], response["headers"])
            return [response["response"]]
        sid = query["sid"][0] if "sid" in query else None
        session = self.sockets.get(sid)
        if isinstance(session, ProtocolSocket) and not session.closed and method != "OPTIONS":
            session.catch_up()
        if session is not None and session.closed:
            # Closed (by its client's CLOSE, or just now) and kept until a poll looks: python-engineio's
            # POST path raised KeyError for it (a 500 and a traceback). Gone, it is an unknown session: a 400.
            del self.sockets[sid]
        return super().handle_request(environ, start_response)

    def _trigger_event(self, event: str, *args: Any, **kwargs: Any) -> Any:
        if event == "connect" and args[0] in self.sockets:
            # python-engineio built this socket a moment ago and queued its OPEN packet.
            ProtocolSocket.adopt(self.sockets[args[0]])
        return super()._trigger_event(event, *args, **kwargs)

    def disconnect(self, sid: str | None = None) -> None:
        """Close a session without waiting for its send queue to drain.

        python-engineio waits, and only the session's next poll drains a polling
        session's queue: a POST that closed its own session (too big, not
        Engine.IO) was never answered, and its socket leaked.
        """
        if sid is None:
            return super().disconnect()
        session = self.sockets.pop(sid, None)
        if session is not None:
            session.close(wait=False, reason=self.reason.SERVER_DISCONNECT)
        return None

    def _ok(self, packets: Any = None, headers: Any = None, jsonp_index: Any = None) -> dict:
        response = super()._ok(packets, headers, jsonp_index)
        if packets is None:
            response["response"] = b"ok"
        return response


class ProtocolSocket(EngineSocket):
    """One Engine.IO session, with the heartbeat, close and upgrade rules of the specification."""

    def handle_post_request(self, environ: dict) -> None:
        """A long-polling POST: a body that is not Engine.IO packets closes the session (400), in one log line."""
        length = int(environ.get("CONTENT_LENGTH") or 0)
        if length > self.server.max_http_buffer_size:
            logger.warning("closing %s: a long-polling body of %d bytes is over the limit", self.sid, length)
            raise eio_exceptions.ContentTooLongError()
        try:
            body = environ["wsgi.input"].read(length).decode("utf-8")
            packets = eio_payload.Payload(encoded_payload=body).packets
        # RecursionError: python-engineio reads a packet's data as JSON when it can, nested past the stack or not.
        except (
            UnicodeDecodeError,
            ValueError,
            TypeError,
            IndexError,
            KeyError,
            binascii.Error,
            RecursionError,
        ) as error:
            metrics.MALFORMED.inc()
            logger.warning("closing %s: not Engine.IO packets (%s: %s)", self.sid, type(error).__name__, error)
            raise eio_exceptions.EngineIOError() from None
        for pkt in packets:
            self.receive(pkt)

    #: The WebSocket proving itself during an upgrade (None when there is none).
    probing: UpgradingWebSocket | None = None
    #: A poll of this session waits for packets.
    polling = False
    #: The client sent a Socket.IO CONNECT (see SocketIOProtocol).
    namespace_requested = False
    #: Being disconnected for breaking the protocol: what it sent meanwhile is ignored (see SocketIOProtocol.drop).
    dropped = False
    #: The timer of the pong's deadline, while a ping waits for its pong.
    pong_timer: Any = None
    #: The timer of the next ping, while it is not due; the connect timeout's, while it runs.
    ping_timer: Any = None
    connect_timer: Any = None

    @classmethod
    def adopt(cls, engineio_socket: Any) -> None:
        super().adopt(engineio_socket)
        for pkt in engineio_socket.queue.queue:
            if pkt is not None and pkt.packet_type == eio_packet.OPEN:
                server = engineio_socket.server
                interval = server.ping_interval + server.ping_interval_grace_period
                pkt.data["pingInterval"] = milliseconds(interval)
                pkt.data["pingTimeout"] = milliseconds(server.ping_timeout)

    # -- heartbeat -------------------------------------------------------

    def schedule_ping(self) -> None:
        if self.last_ping and not (self.closing or self.closed):
            self.last_ping = None
            if self.pong_timer is not None:  # the pong came: no deadline any more
                self.pong_timer.close()
                self.pong_timer = None
            # The ping counts from when it is due: a timer that fires late does not move the pong's deadline.
            due = time.time() + self.server.ping_interval
            self.ping_timer = timer = gevent.get_hub().loop.timer(self.server.ping_interval)
            timer.start(self._ping_due, timer, due)

    def _ping_due(self, timer: Any, due: float) -> None:
        timer.close()
        self.ping_timer = None
        if self.closing or self.closed:
            return
        self.last_ping = due
        self.send(eio_packet.Packet(eio_packet.PING))
        self._watch_pong(due)

    def _watch_pong(self, ping: float) -> None:
        self.pong_timer = gevent.get_hub().loop.timer(max(0.0, ping + self.server.ping_timeout - time.time()))
        self.pong_timer.start(self._pong_due, self.pong_timer, ping)

    def _pong_due(self, timer: Any, ping: float) -> None:
        timer.close()
        if self.pong_timer is timer:
            self.pong_timer = None
        if self.last_ping != ping or self.closing or self.closed:
            return  # answered (or gone)
        if time.time() - ping <= self.server.ping_timeout:
            return self._watch_pong(ping)  # the loop's clock ran ahead of the wall clock
        # Closing runs the disconnect handlers, which may block: not in the event loop itself.
        gevent.spawn(self._close_if_pong_late)
        return None

    def _close_if_pong_late(self) -> None:
        if not self.closed:
            self.check_ping_timeout()

    def check_ping_timeout(self) -> bool:
        if self.closed:
            raise eio_exceptions.SocketIsClosedError()
        if self.last_ping and time.time() - self.last_ping > self.server.ping_timeout:
            if not self.closing:
                logger.info("%s: no pong within %ss, closing the session", self.sid, self.server.ping_timeout)
                # python-engineio's close(abort=False) sends its CLOSE through send(), which checks
                # the timeout again and drops it: queue it here (a pending poll ends with it).
                self.queue.put(eio_packet.Packet(eio_packet.CLOSE))
                self.close(wait=False, abort=True, reason=self.server.reason.PING_TIMEOUT)
            return False
        return True

    def close(self, wait: bool = True, abort: bool = False, reason: Any = None) -> None:
        # The timers' callbacks are this session's methods (running, they would keep it in memory),
        # and a WebSocket that failed its upgrade points back at it.
        for timer in (self.ping_timer, self.pong_timer, self.connect_timer):
            if timer is not None:
                timer.close()
        if self.probing is not None:
            self.probing.abort()  # its watchers and probe timer would hold it, and this session, for a while
        self.ping_timer = self.pong_timer = self.connect_timer = self.probing = None
        super().close(wait=wait, abort=abort, reason=reason)

    def catch_up(self) -> None:
        """Before a request is served: close the session if its pong is late; let an upgrading WebSocket read."""
        if self.last_ping and time.time() - self.last_ping > self.server.ping_timeout:
            self.check_ping_timeout()
        elif self.probing is not None:
            self.probing.read_now()

    # -- long-polling ----------------------------------------------------

    def handle_get_request(self, environ: dict, start_response: Any) -> Any:
        upgrade = "upgrade" in environ.get("HTTP_CONNECTION", "").lower() and environ.get("HTTP_UPGRADE")
        if upgrade or self.upgrading:
            return super().handle_get_request(environ, start_response)
        if self.polling:
            logger.info("%s: a second poll while one is pending, closing the session", self.sid)
            self.close(wait=False, reason=self.server.reason.TRANSPORT_ERROR)
            raise eio_exceptions.QueueEmpty()
        self.polling = True
        try:
            return super().handle_get_request(environ, start_response)
        finally:
            self.polling = False

    def receive(self, pkt: eio_packet.Packet) -> None:
        if self.closed:
            # Read before the session closed (a refusal closes it from another greenlet): nobody to answer.
            return
        if pkt.packet_type == eio_packet.CLOSE and not self.upgraded:
            self.queue.put(eio_packet.Packet(eio_packet.NOOP))  # ends the pending poll cleanly
        super().receive(pkt)

    # -- upgrade ---------------------------------------------------------

    def _upgrade_websocket(self, environ: dict, start_response: Any) -> Any:
        websocket = environ.get("wsgi.websocket")
        connection = getattr(getattr(websocket, "handler", None), "socket", None)
        plain = connection is not None and not isinstance(connection, (ssl.SSLSocket, gevent.ssl.SSLSocket))
        if self.probing is not None and not self.probing.closed and websocket is not None:
            # One WebSocket per session: a second one while the first proves itself is closed.
            logger.info("%s: a second WebSocket during the upgrade, closing it", self.sid)
            websocket.close()
            return []
        if not plain or not self.connected or self.upgraded:
            return super()._upgrade_websocket(environ, start_response)
        # EngineSocket's upgrade over plain TCP, with an UpgradingWebSocket.
        with contextlib.suppress(OSError):
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upgrading = True
        self.probing = UpgradingWebSocket(self, connection, True)
        environ["wsgi.input"] = io.BytesIO()
        websocket.closed = True
        websocket.handler.close_connection = True
        websocket.handler.rfile.close()
        return []

    def attach(self, transport: WebSocketConnection) -> None:
        self.probing = None
        if isinstance(self.queue, WriterQueue):
            # The NOOP that answered a poll during the probe means nothing on a WebSocket.
            kept = [item for item in self.queue.take_all() if item is None or item.packet_type != eio_packet.NOOP]
            for item in kept:
                self.queue.put(item)
        super().attach(transport)


class UpgradingWebSocket(WebSocketConnection):
    """A WebSocket upgrading a long-polling session: it handles the probe and UPGRADE as soon as it reads them.

    :class:`.websocket.WebSocketConnection` hands every packet to a greenlet
    that runs later; a poll arriving meanwhile would still be served although
    the upgrade's packets came first. These two never block, so they are
    handled where they are read; everything after them goes the usual way.
    """

    __slots__ = ()

    def read_now(self) -> None:
        """Read what the client sent, if the event loop has not yet."""
        if not self.closed and self._reading.active:
            self._on_readable()

    def _hand_over(self, item: Any) -> None:
        if self.probe is not None and self._handler is None and not self._unhandled and isinstance(item, (bytes, str)):
            self._handle(item)
            if self.probe is None or self.closed:
                socket = self.engineio_socket
                if socket.probing is self:
                    socket.probing = None
            return
        super()._hand_over(item)


def _not_json(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if math.isinf(number):
        raise ValueError(f"{text[:20]} is out of a number's range")
    return number


def _integer(text: str) -> int:
    if len(text) > 100:  # as python-engineio's reader: int() of thousands of digits takes milliseconds
        raise ValueError("an integer of more than 100 digits")
    return int(text)


class StrictJSON:
    """JSON as RFC 8259 has it, for what clients send: Python reads NaN and Infinity, and 1e999 as infinity."""

    loads = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite, parse_int=_integer).decode
    dumps = staticmethod(json.dumps)


class StrictPacket(sio_packet.Packet):
    """A Socket.IO packet from a client, malformed (ValueError) where Node's parser would refuse it.

    Besides :class:`StrictJSON`: an ack id past ``MAX_ACK_ID``, a CONNECT whose
    auth is not an object, a binary packet announcing no attachment (it took the
    next packet as one) or more than ``MAX_ATTACHMENTS``, and a placeholder whose
    ``num`` is not an attachment's index (python-socketio took -1 for the last
    one, ``true`` for the second).
    """

    json = StrictJSON
    #: The largest integer a JavaScript client counts to: a larger ack id is no client's counter.
    MAX_ACK_ID = 2**53 - 1
    #: Attachments one packet may announce: python-socketio buffers each until the last one comes.
    MAX_ATTACHMENTS = 10

    def decode(self, encoded_packet: str) -> int:
        attachments = super().decode(encoded_packet)
        if self.id is not None and self.id > self.MAX_ACK_ID:
            raise ValueError("an ack id past 2**53 - 1")
        if self.packet_type == sio_packet.CONNECT and not isinstance(self.data, (dict, type(None))):
            raise ValueError("a CONNECT whose auth is not an object")
        if self.packet_type in (sio_packet.BINARY_EVENT, sio_packet.BINARY_ACK):
            if not attachments:
                raise ValueError("a binary packet with no attachment")
            if attachments > self.MAX_ATTACHMENTS:
                raise ValueError(f"more than {self.MAX_ATTACHMENTS} binary attachments")
            # Its placeholders checked now: one past the attachments would have it wait for them for ever.
            self._reconstruct_binary_internal(self.data, [None] * attachments)
        return attachments

    @classmethod
    def _reconstruct_binary_internal(cls, data: Any, attachments: list) -> Any:
        if isinstance(data, dict) and data.get("_placeholder") and "num" in data:
            index = data["num"]
            if type(index) is not int or not 0 <= index < len(attachments):
                raise ValueError(f"a placeholder for attachment {str(index)[:20]} of {len(attachments)}")
        return super()._reconstruct_binary_internal(data, attachments)


class SocketIOProtocol:
    """A mixin for ``socketio.Server``: :class:`ProtocolServer` underneath, and the connection rules of Socket.IO v5."""

    def __init__(self, *args: Any, connect_timeout: float | None = 45.0, **kwargs: Any) -> None:
        #: Seconds a session may go without connecting to a namespace (None: for ever).
        self.connect_timeout = connect_timeout
        kwargs.setdefault("serializer", StrictPacket)
        super().__init__(*args, **kwargs)

    def _engineio_server_class(self) -> type:
        return ProtocolServer

    def _handle_eio_connect(self, eio_sid: str, environ: dict) -> Any:
        accepted = super()._handle_eio_connect(eio_sid, environ)
        session = self.eio.sockets.get(eio_sid)
        if accepted is not False and self.connect_timeout and isinstance(session, ProtocolSocket):
            session.connect_timer = timer = gevent.get_hub().loop.timer(self.connect_timeout)
            timer.start(self._connect_due, timer, eio_sid)
        return accepted

    def _connect_due(self, timer: Any, eio_sid: str) -> None:
        timer.close()
        session = self.eio.sockets.get(eio_sid)
        if session is None or session.closing or session.closed:
            return
        namespaces = self.manager.get_namespaces()
        if any(self.manager.sid_from_eio_sid(eio_sid, namespace) is not None for namespace in namespaces):
            return
        logger.info("closing %s: no namespace connected within %ss", eio_sid, self.connect_timeout)
        gevent.spawn(session.close, wait=False, reason=self.reason.SERVER_DISCONNECT)

    def drop(self, eio_sid: str) -> None:
        """Disconnect a client that broke the protocol; the packets it sent meanwhile are ignored, not logged again."""
        session = self.eio.sockets.get(eio_sid)
        if session is not None:
            session.dropped = True
        # Not inline: closing waits for the send queue, which a long-polling POST cannot drain.
        self.start_background_task(self.eio.disconnect, eio_sid)

    def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
        session = self.eio.sockets.get(eio_sid)
        if getattr(session, "dropped", False):
            return
        if session is not None and not getattr(session, "namespace_requested", True):
            if not (isinstance(data, str) and data[:1] == "0"):
                logger.warning("disconnecting %s: its first packet is not a CONNECT", eio_sid)
                self.drop(eio_sid)
                return
            session.namespace_requested = True
        if eio_sid in self._binary_packet and not isinstance(data, bytes):
            raise ValueError("a binary attachment that is text")  # python-socketio took it for one
        super()._handle_eio_message(eio_sid, data)
