"""``SocketIOServer``: one gevent server for Socket.IO and the rest of the site."""

from __future__ import annotations

import logging
import signal
import time
from typing import Any

import gevent
import gevent.event
from gevent.pywsgi import WSGIServer

from .addresses import ConnectionLimitedServer
from .bridge import SocketIOApplication, ViewServer, WSGIApplication
from .http_handler import HTTPHandler
from .limits import listen_backlog
from .logs import quiet_network_errors

logger = logging.getLogger("socketio_django")


class SocketIOServer(ConnectionLimitedServer, WSGIServer):
    """A gevent WSGI server that speaks Socket.IO (WebSocket and long-polling).

    ``SocketIOServer(("127.0.0.1", 9000), application).serve_forever()`` serves
    ``application`` (for instance Django's ``WSGIHandler``) on every path, and
    Socket.IO under ``/<resource>/``, where each connection runs
    ``application`` once with ``environ["socketio"]`` set. ``options`` go to
    :class:`socketio.Server` (``cors_allowed_origins``, ``max_http_buffer_size``, ...).
    An application that is already a :class:`SocketIOApplication` is served as it is.
    """

    def __init__(
        self,
        listener: Any,
        application: WSGIApplication,
        resource: str = "socket.io",
        *,
        log: Any = None,
        **options: Any,
    ) -> None:
        if not isinstance(application, SocketIOApplication):
            application = SocketIOApplication(application, resource=resource, **options)
        self.socketio_app = application
        backlog = None if hasattr(listener, "accept") else listen_backlog()  # a socket is listening already
        handler_class = HTTPHandler.with_settings()
        super().__init__(listener, application, handler_class=handler_class, log=log, backlog=backlog)
        quiet_network_errors()

    @property
    def sio(self) -> ViewServer:
        """The underlying :class:`socketio.Server`."""
        return self.socketio_app.server

    def serve_until_stopped(self, shutdown_timeout: float = 10.0) -> None:
        """Serve until SIGTERM or SIGINT, then shut down within ``shutdown_timeout`` seconds.

        Shutting down stops accepting connections, sends every client away
        (socket.io-client then reconnects by itself), lets the views handle
        what they already received, and ends whatever is still running when
        the time is up.
        """
        stop = gevent.event.Event()
        watchers = [gevent.signal_handler(signum, stop.set) for signum in (signal.SIGTERM, signal.SIGINT)]
        try:
            if not self.started:
                self.start()
            stop.wait()
        finally:
            for watcher in watchers:
                watcher.cancel()
        started = time.monotonic()
        logger.info("shutting down: %d clients, at most %.0fs", len(self.sio.handles), shutdown_timeout)
        self.close()
        finished = self.sio.shutdown_gracefully(shutdown_timeout)
        self.stop(timeout=max(0.0, shutdown_timeout - (time.monotonic() - started)))
        logger.info("shut down in %.1fs%s", time.monotonic() - started, "" if finished else " (views cut short)")
