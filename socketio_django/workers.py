"""Gunicorn's worker for several workers on one port: ``worker_class = "socketio_django.workers.SocketIOWorker"``.

gevent-websocket's worker, whose workers hand each other the requests of
sessions they do not own (:mod:`.handover`).
"""

from __future__ import annotations

from typing import Any

import gevent
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
    quitting = False
    #: The main greenlet is in run(): where leaving at once is safe (not in Gunicorn's cleanup after it).
    running = False

    def run(self) -> None:
        self.running = True
        try:
            super().run()
        finally:
            self.running = False

    def handle_quit(self, sig: int, frame: Any) -> None:
        # SIGINT (Ctrl-C) or SIGQUIT: stop at once. Gunicorn's gevent worker calls sys.exit() in a
        # greenlet of its own, which gevent reports as a SystemExit traceback (benoitc/gunicorn#3239).
        # Once: Ctrl-C signals the whole group, and the master sends its SIGQUIT too.
        if not self.quitting:
            self.quitting = True
            gevent.spawn(self._quit)

    def _quit(self) -> None:
        self.alive = False
        try:
            self.cfg.worker_int(self)
        finally:
            if self.running:  # the main greenlet leaves, as on sys.exit()
                gevent.get_hub().parent.throw(SystemExit(0))
