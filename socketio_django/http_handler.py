"""The servers' HTTP handler: gevent-websocket's, with time and size limits on what a client sends.

pywsgi waits as long as a client likes for a request's headers and body, and
takes headers of any size: a few hundred connections sending a byte now and
then (slowloris) hold as many sockets, and with them the process's open
files, for ever. This handler, used by :class:`~.server.SocketIOServer` and
by the Gunicorn worker (:mod:`.workers`, through :mod:`.handover`):

- gives a request's line and headers ``headers_timeout`` seconds, counted from
  when the connection starts waiting for a request: an idle keep-alive
  connection waiting for its next request is waiting for headers too. A
  connection that sent nothing by then is closed without a word (as Node's
  ``keepAliveTimeout``); one whose request had begun gets 408;
- reads a request's body in full before the application runs, within
  ``body_timeout`` seconds (408), so that no view, Engine.IO included, ever
  waits on a slow body;
- answers headers over ``max_headers_size`` bytes (or over 100 lines) with 431
  and a body announced over ``max_body_size`` with 413, without reading them;
- parses the header lines itself, strictly: a line that is not
  ``token ":" value`` (a space before the colon, a folded line, a control
  character, no colon), a ``Content-Length`` not all digits, two different
  ones or two ``Transfer-Encoding`` get 400, a coding other than ``chunked``
  501, where the standard library's email parser guessed (and dropped the
  lines after the first it could not read) and pywsgi read the body by
  whichever length it found. It is also 3 times faster (8 us, not 26, for a
  browser's headers): parsing took a quarter of the CPU of long-polling;
  pywsgi answers a request line over 8 KiB with 414 and a malformed request
  with 400;
- gives each wait of a response's writes ``send_timeout`` seconds (refusals
  included; 0: no limit): a client that takes no byte for that long (a "slow
  read": a tiny receive window, many pipelined requests) held its socket and
  greenlet for ever. Its connection is reset, so the kernel drops what it
  still held for it too. A client that reads slowly but reads is served.

Each answer closes the connection and takes one log line (which
:class:`~.logs.RateLimit` keeps short under a flood); a client that went away
mid-request takes none. Once the application has a request, nothing here
limits it but the send timeout: a WebSocket after its upgrade, a long-poll
or an event stream waiting for data.
"""

from __future__ import annotations

import contextlib
import errno
import io
import logging
import re
import socket
import struct
from typing import IO, Any, Self

import gevent
from gevent.pywsgi import MAX_REQUEST_LINE, Input, OldMessage, _InvalidClientInput
from geventwebsocket.handler import WebSocketHandler

logger = logging.getLogger("socketio_django.http")

#: One header line (RFC 9112, section 5): a token, a colon, a value of visible characters, spaces and tabs.
FIELD_LINE = re.compile(r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([\t\x20-\x7e\x80-\xff]*)\r?")
#: Header lines a request may send (http.client's limit too).
MAX_HEADER_LINES = 100


class Refused(Exception):
    """A request turned away before the application saw it: the status it gets, and why (for the log)."""

    def __init__(self, status: str, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    def response(self) -> tuple[str, bytes]:
        """The ``(code, bytes)`` pywsgi's ``handle()`` sends before it closes the connection."""
        head = f"HTTP/1.1 {self.status}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
        return self.status.split()[0], head.encode("latin-1")


class HTTPHandler(WebSocketHandler):
    """gevent-websocket's handler with time limits on a request's head and body, and size limits on both."""

    #: Seconds a request's line and headers may take to arrive, from when the connection waits for it.
    headers_timeout: float = 10.0
    #: Seconds a request's body may take to arrive once its headers are in.
    body_timeout: float = 30.0
    #: Bytes of headers (after the request line, which pywsgi bounds to 8 KiB) a request may send.
    max_headers_size: int = 16 * 1024
    #: Seconds a response's write may wait for the client to read (pywsgi's writes: not a WebSocket's frames).
    send_timeout: float = 30.0
    #: Bytes of body a request may send; the server reads that much into memory before the application runs.
    max_body_size: int = 1024 * 1024
    #: Engine.IO's requests (under this path) take no more than its largest packet, SOCKETIO_MAX_PAYLOAD.
    socketio_path: str = "/socket.io/"
    max_socketio_body_size: int = 64 * 1024

    #: The running clock of the request being read (its line and headers).
    _head_deadline: gevent.Timeout | None = None
    #: The body of the request being handled, read in full (None: it has none).
    _body: bytes | None = None

    @classmethod
    def with_settings(cls) -> type[Self]:
        """This class with the limits of the project's settings (``SOCKETIO_HEADERS_TIMEOUT``, ...)."""
        # Not imported with this module: Gunicorn's master imports it before Django is set up.
        from .conf import http_limits

        return type(cls.__name__, (cls,), http_limits())

    def handle(self) -> None:
        # pywsgi sends a response's head and body in two writes: with Nagle's algorithm, each answer
        # after the first on a keep-alive connection waited for the client's delayed ACK (40 ms).
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().handle()

    #: A send timeout ends the response as a reset does: no traceback, the connection closed.
    ignored_socket_errors = (*WebSocketHandler.ignored_socket_errors, errno.ETIMEDOUT)

    def _sendall(self, data: bytes) -> None:
        # pywsgi's, with a time limit on each wait for the client to take more bytes (not on the
        # whole write: a client that reads slowly is served), through the socket's own timeout,
        # which costs nothing unless the kernel's buffer is full.
        sock = self.socket
        previous = sock.gettimeout()
        sock.settimeout(self.send_timeout or None)
        unsent = memoryview(data)
        try:
            while unsent:
                unsent = unsent[sock.send(unsent) :]
        except TimeoutError:
            self._abort_slow_reader()
            raise OSError(errno.ETIMEDOUT, "the client took nothing in time") from None
        except OSError as error:
            self.status = f"socket error: {error}"
            if self.code and self.code > 0:
                self.code = -self.code
            raise
        finally:
            sock.settimeout(previous)
        self.response_length += len(data)

    def _abort_slow_reader(self) -> None:
        """Reset the connection: closing it would leave the kernel holding (and retrying) what the client never read."""
        logger.warning(
            "closed a connection of %s: it took none of its response for %ss", self._peer(), self.send_timeout
        )
        with contextlib.suppress(OSError):
            self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _peer(self) -> str:
        return self.client_address[0] if isinstance(self.client_address, tuple) else self.client_address

    def handle_one_request(self) -> Any:
        try:
            result = super().handle_one_request()
        except Refused as refused:  # while the request line came in: its deadline, or its length
            result = self._handle_client_error(refused)
        finally:
            if self._head_deadline is not None:
                self._head_deadline.cancel()
        if isinstance(result, tuple):
            # A refusal, which pywsgi would write with no time limit (to a client reading nothing,
            # after pipelined requests filled its buffers): written here, then the connection closes.
            with contextlib.suppress(OSError):
                self._sendall(result[1])
            return None
        return result

    def read_requestline(self) -> str:
        self._head_deadline = gevent.Timeout.start_new(
            self.headers_timeout, Refused("408 Request Timeout", f"headers not complete within {self.headers_timeout}s")
        )
        try:
            if not self.rfile.peek(1):
                return ""  # the client closed the connection
        except (Refused, OSError):
            return ""  # nothing came (an idle keep-alive connection), or the client went: closed quietly
        line = super().read_requestline()
        if len(line) >= MAX_REQUEST_LINE:  # pywsgi would answer 414 too, but say nothing
            raise Refused("414 URI Too Long", f"a request line over {MAX_REQUEST_LINE} bytes")
        if not line.endswith("\n"):
            return ""  # the client closed the connection mid-line: not a request to answer
        return line

    def read_request(self, raw_requestline: str) -> bool:
        try:
            super().read_request(raw_requestline)
        finally:
            self._head_deadline.cancel()
        self._body = self._read_body()
        return True

    def MessageClass(self, fp: IO[bytes], *args: Any) -> OldMessage:  # noqa: N802 (pywsgi's name)
        return parse_headers(self._read_headers(fp))

    def _read_headers(self, fp: IO[bytes]) -> bytes:
        """The header lines, up to the blank line that ends them, at most ``max_headers_size`` bytes."""
        head = bytearray()
        while True:
            line = fp.readline(self.max_headers_size + 1 - len(head))
            head += line
            if len(head) > self.max_headers_size:
                raise Refused("431 Request Header Fields Too Large", f"headers over {self.max_headers_size} bytes")
            if not line:
                raise EOFError("closed mid-request")  # not a request to answer
            if line in (b"\r\n", b"\n"):
                return bytes(head)

    def _read_body(self) -> bytes | None:
        chunked = self.headers.get("transfer-encoding", "").lower() == "chunked"
        if not chunked and not self.content_length:
            return None
        engineio = self.path.startswith(self.socketio_path)
        limit = self.max_socketio_body_size if engineio else self.max_body_size
        if (self.content_length or 0) > limit:
            if engineio:
                return None  # unread: Engine.IO refuses it on its length, and closes its session
            raise Refused("413 Content Too Large", f"a body of {self.content_length} bytes (at most {limit})")
        # pywsgi's Input: it reads chunked bodies and answers "Expect: 100-continue".
        expecting = self.headers.get("expect", "").lower() == "100-continue"
        body = Input(self.rfile, self.content_length, socket=self.socket if expecting else None, chunked_input=chunked)
        late = Refused("408 Request Timeout", f"body not complete within {self.body_timeout}s")
        with gevent.Timeout(self.body_timeout, late):
            data = body.read(limit + 1)
        if len(data) > limit:
            raise Refused("413 Content Too Large", f"a chunked body over {limit} bytes")
        return data

    def get_environ(self) -> dict:
        environ = super().get_environ()
        if self._body is not None:
            # Read already: the application reads it from memory, with its length known.
            self.wsgi_input = Input(io.BytesIO(self._body), len(self._body))
            environ["wsgi.input"] = self.wsgi_input
            environ["CONTENT_LENGTH"] = str(len(self._body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return environ

    def _handle_client_error(self, error: Exception) -> tuple[str, bytes] | None:
        """One log line and an answer for a request the client got wrong; nothing for a client that went away."""
        if isinstance(error, Refused):
            refused = error
        elif isinstance(error, (OSError, EOFError)) and not isinstance(error, _InvalidClientInput):
            return None  # reset, or closed mid-request: nobody to answer
        elif isinstance(error, (ValueError, _InvalidClientInput)):
            refused = Refused("400 Bad Request", f"malformed request ({str(error)[:120]})")
        else:
            return super()._handle_client_error(error)  # a bug: its traceback
        # The status in the template: each status is a kind of its own for logs.RateLimit.
        logger.warning("refused a request from %s: " + refused.status + " (%s)", self._peer(), refused.reason)
        return refused.response()


def parse_headers(head: bytes) -> OldMessage:
    """pywsgi's headers from a request's header lines (``head``, up to and with the blank line)."""
    # Lines end with CRLF; a bare LF is taken too (as pywsgi does for the request line).
    lines = head.decode("latin-1").split("\n")[:-2]  # the blank line, and nothing after it
    if len(lines) > MAX_HEADER_LINES:
        raise Refused("431 Request Header Fields Too Large", f"over {MAX_HEADER_LINES} header lines")
    headers = OldMessage()
    for line in lines:
        field = FIELD_LINE.fullmatch(line)
        if field is None:
            raise Refused("400 Bad Request", f"malformed header line {line[:60]!r}")
        name, value = field[1], field[2].strip(" \t")
        _check_framing(headers, name.lower(), value)
        headers[name] = value
    return headers


def _check_framing(headers: OldMessage, name: str, value: str) -> None:
    """Refuse what would let a proxy and this server read a request's length differently (request smuggling)."""
    if name == "content-length":
        if not value.isdigit() or not value.isascii():  # int() would take "+5", "1_0" and " 7"
            raise Refused("400 Bad Request", f"a Content-Length of {value[:20]!r}")
        if headers.get(name, value) != value:
            raise Refused("400 Bad Request", "two different Content-Length")
    elif name == "transfer-encoding":
        # pywsgi knows "chunked" alone, and reads any other coding's body by its Content-Length.
        if value.lower() != "chunked":
            raise Refused("501 Not Implemented", f"Transfer-Encoding {value[:40]!r}")
        if "transfer-encoding" in headers:
            raise Refused("400 Bad Request", "two Transfer-Encoding lines")
