"""``SocketIOServer``: one gevent server for Socket.IO and the rest of the site."""

from __future__ import annotations

from typing import Any

from gevent.pywsgi import WSGIServer
from geventwebsocket.handler import WebSocketHandler

from .bridge import SocketIOApplication, WSGIApplication


class SocketIOServer(WSGIServer):
    """A gevent WSGI server that speaks Socket.IO (WebSocket and long-polling).

    ``SocketIOServer(("127.0.0.1", 9000), application).serve_forever()`` serves
    ``application`` (for instance Django's ``WSGIHandler``) on every path, and
    Socket.IO under ``/<resource>/``, where each connection runs
    ``application`` once with ``environ["socketio"]`` set. ``options`` go to
    :class:`socketio.Server` (``cors_allowed_origins``, ``max_http_buffer_size``, ...).
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
        self.socketio_app = SocketIOApplication(application, resource=resource, **options)
        super().__init__(listener, self.socketio_app, handler_class=WebSocketHandler, log=log)

    @property
    def sio(self):
        """The underlying :class:`socketio.Server`."""
        return self.socketio_app.server
