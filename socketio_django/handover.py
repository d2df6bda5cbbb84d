"""Requests that reach the wrong worker are handed, connection and all, to the worker that owns their session.

Gunicorn's workers share one listening socket and the kernel picks a worker
for each TCP connection, so a long-polling client's requests (and its
WebSocket upgrade) land on any of them, while only the worker that made its
session (the owner) can answer them. The session id names the owner
(:mod:`.sessions`); every worker listens on a Unix datagram socket named
after its token, in a directory all workers share. A worker that reads a
request for another worker's session passes the client's TCP connection
itself (its file descriptor, ``SCM_RIGHTS``) to the owner, with the bytes of
the request it already read. The owner serves that connection from then on,
as if it had accepted it: the answer, the keep-alive requests after it and a
WebSocket upgrade all happen there, and no byte is copied through the worker
that gave it away.

A session whose owner has gone (its socket refuses) is answered by the
worker that got the request: Engine.IO's 400 for an unknown session, after
which clients connect again. TLS connections cannot change process (the TLS
state stays behind): terminate TLS in front of several workers.
"""

from __future__ import annotations

import array
import contextlib
import io
import logging
import os
import socket
import ssl
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import gevent
import gevent.socket
from gevent.pywsgi import WSGIServer

from . import sessions
from .http_handler import HTTPHandler

logger = logging.getLogger("socketio_django")

# Where the workers' sockets are: gunicorn.conf.py makes one directory per Gunicorn master.
DIRECTORY_ENV = "SOCKETIO_HANDOVER_DIR"
# Largest request a worker hands over (head and body): a long-polling POST's body is bounded by
# SOCKETIO_MAX_PAYLOAD, 64 KiB by default; one datagram carries it whole.
MAX_REQUEST = 1024 * 1024
# Headers that describe the body as it was sent; the request is handed over with its body read.
_BODY_HEADERS = {"content-length", "transfer-encoding"}

_receiver: Receiver | None = None


class Receiver:
    """This worker's Unix socket, where other workers hand over connections; serves each on ``server``."""

    def __init__(self, directory: Path, server: WSGIServer) -> None:
        self.directory = directory
        self.server = server
        self.path = directory / f"{sessions.process_token()}.sock"
        self.inbox = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.inbox.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * MAX_REQUEST)
        self.inbox.bind(str(self.path))
        self.outbox = gevent.socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.outbox.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 2 * MAX_REQUEST)
        self.greenlet = gevent.spawn(self._receive_forever)

    def send(self, owner: str, connection: socket.socket, request: bytes) -> bool:
        """Give ``connection`` and the ``request`` read from it to worker ``owner``; False if it is gone."""
        try:
            # Not socket.send_fds: before Python 3.12 it ignores the address.
            rights = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [connection.fileno()]))]
            self.outbox.sendmsg([request], rights, 0, str(self.directory / f"{owner}.sock"))
        except (FileNotFoundError, ConnectionRefusedError):
            return False
        except OSError as error:  # too big, or the owner's queue broken: answer here
            logger.warning("could not hand a request over to worker %s: %s", owner, error)
            return False
        return True

    def _receive_forever(self) -> None:
        # Not imported with this module: Gunicorn's master imports it (for the worker class),
        # before prometheus-client's multiprocess mode is set up for the workers.
        from .metrics import HANDED_OVER

        while True:
            try:
                request, fds, _, _ = socket.recv_fds(self.inbox, MAX_REQUEST, 1)
            except OSError as error:
                logger.warning("handover socket: %s", error)
                continue
            if not fds:
                continue
            connection = gevent.socket.socket(fileno=fds[0])
            for extra in fds[1:]:
                os.close(extra)
            HANDED_OVER.inc()
            (self.server.pool or gevent).spawn(self._serve, connection, request)

    def _serve(self, connection: gevent.socket.socket, request: bytes) -> None:
        try:
            address = connection.getpeername()
        except OSError:
            connection.close()
            return
        rfile = io.BufferedReader(_Replayed(request, connection))
        # Served here from now on: counted here (the worker that handed it over counts it no more).
        with self.server.counted(connection, address) as admitted:
            if admitted:
                self.server.handler_class(connection, address, self.server, rfile=rfile).handle()

    def close(self) -> None:
        self.greenlet.kill(block=False)
        self.inbox.close()
        self.outbox.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class _Replayed(io.RawIOBase):
    """A connection's bytes, starting with those another worker read from it before handing it over."""

    def __init__(self, prefix: bytes, connection: gevent.socket.socket) -> None:
        self._prefix = memoryview(prefix)
        self._connection = connection

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._connection.recv_into(buffer)


def start(server: WSGIServer) -> None:
    """Receive handed-over connections for ``server``, if a handover directory is set (several workers)."""
    global _receiver
    directory = os.environ.get(DIRECTORY_ENV)
    if directory and _receiver is None:
        _receiver = Receiver(Path(directory), server)
        logger.info("worker pid=%d owns the sessions named %s.*", os.getpid(), sessions.process_token())


def stop() -> None:
    """Stop receiving (a worker shutting down): requests for its sessions are answered by the others."""
    global _receiver
    if _receiver is not None:
        _receiver.close()
        _receiver = None


class HandoverHandler(HTTPHandler):
    """The servers' handler, handing requests for other workers' sessions over to them."""

    def handle_one_response(self) -> None:
        owner = self._foreign_owner()
        if owner is None or not self._hand_over(owner):
            super().handle_one_response()

    def _foreign_owner(self) -> str | None:
        """The worker owning the session this request names, when it is another worker of this host."""
        if _receiver is None or "sid=" not in self.environ.get("QUERY_STRING", ""):
            return None
        if isinstance(self.socket, ssl.SSLSocket):
            return None
        sid = parse_qs(self.environ["QUERY_STRING"]).get("sid", [None])[0]
        owner = sessions.owner_of(sid)
        return owner if owner is not None and owner != sessions.process_token() else None

    def _hand_over(self, owner: str) -> bool:
        if self.environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked":
            return False  # Engine.IO clients send a length; such a request is answered here
        length = int(self.environ.get("CONTENT_LENGTH") or 0)
        if length > MAX_REQUEST:
            return False  # before reading it: the local answer turns it away
        body = self.environ["wsgi.input"].read(length) if length else b""
        head = [self.requestline]
        head += [f"{name}: {value}" for name, value in self.headers.items() if name.lower() not in _BODY_HEADERS]
        if body:
            head.append(f"Content-Length: {len(body)}")
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        if len(request) > MAX_REQUEST or not _receiver.send(owner, self.socket, request):
            if body:  # read here already: let the local answer see it
                self.environ["wsgi.input"] = io.BytesIO(body)
            return False
        # The owner has the connection now: close this process's descriptor only (no shutdown, no
        # reading what the client sends next), and end this handler without an answer.
        self.rfile.close()
        self.socket.close()
        self.socket = None
        self.close_connection = True
        return True
