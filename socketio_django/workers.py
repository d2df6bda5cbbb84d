"""Gunicorn's worker for several workers on one port: ``worker_class = "socketio_django.workers.SocketIOWorker"``.

gevent-websocket's worker, whose workers hand each other the requests of
sessions they do not own (:mod:`.handover`).
"""

from __future__ import annotations

from typing import Any

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.workers.ggevent import PyWSGIServer

from . import handover
from .addresses import ConnectionLimitedServer
from .logs import quiet_network_errors


class HandoverServer(ConnectionLimitedServer, PyWSGIServer):
    """Gunicorn's pywsgi server that also receives connections handed over by the other workers."""

    def __init__(self, *args: Any, handler_class: type[handover.HandoverHandler], **kwargs: Any) -> None:
        # Built in the worker, after the application set Django up: the handler's limits are the settings'.
        super().__init__(*args, handler_class=handler_class.with_settings(), **kwargs)
        quiet_network_errors()

    def start(self) -> None:
        super().start()
        handover.start(self)

    def close(self) -> None:
        handover.stop()
        super().close()


class SocketIOWorker(GeventWebSocketWorker):
    server_class = HandoverServer
    wsgi_handler = handover.HandoverHandler
