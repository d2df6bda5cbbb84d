"""Gunicorn's worker for several workers on one port: ``worker_class = "socketio_django.workers.SocketIOWorker"``.

gevent-websocket's worker, whose workers hand each other the requests of
sessions they do not own (:mod:`.handover`).
"""

from __future__ import annotations

from geventwebsocket.gunicorn.workers import GeventWebSocketWorker
from gunicorn.workers.ggevent import PyWSGIServer

from . import handover
from .addresses import ConnectionLimitedServer


class HandoverServer(ConnectionLimitedServer, PyWSGIServer):
    """Gunicorn's pywsgi server that also receives connections handed over by the other workers."""

    def start(self) -> None:
        super().start()
        handover.start(self)

    def close(self) -> None:
        handover.stop()
        super().close()


class SocketIOWorker(GeventWebSocketWorker):
    server_class = HandoverServer
    wsgi_handler = handover.HandoverHandler
