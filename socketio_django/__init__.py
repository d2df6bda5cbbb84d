"""Socket.IO for Django on gevent: every connection runs a plain, blocking view.

The view finds a :class:`SocketHandle` in ``request.environ["socketio"]``::

    def echo(request):
        socket = request.environ["socketio"]
        while (message := socket.recv()) is not None:
            socket.emit(message.event, *message.args)
        return HttpResponse()
"""

from __future__ import annotations

import importlib
from typing import Any

# Imported on first use: Gunicorn's master imports socketio_django.workers, and must not load
# Django, Redis or prometheus-client before its workers fork (and gevent patches them).
_EXPORTS = {
    "Message": ".handle",
    "SocketHandle": ".handle",
    "SocketIOApplication": ".bridge",
    "ViewServer": ".bridge",
    "SocketIOServer": ".server",
    "broadcast": ".bridge",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
