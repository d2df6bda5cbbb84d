"""A plain HTTP view (a Server-Sent Events stream, a long poll) waiting on a room's broadcasts.

What this module owns: :class:`RoomListener`, which registers with the
server's client manager (:meth:`.FanoutManager.add_listener`) and hands the
view each event broadcast to the room from then on, from this process or,
with Redis, from any other (the manager subscribes to the room's channel for
it as for a client). Waiting costs nothing: the view's greenlet sleeps until
a broadcast or its timeout. It leaves what the events mean, and how they are
written to the HTTP client, to the view.

A listener that lets ``max_backlog`` events pile up unread is too slow to
follow: it is closed (``get`` answers :data:`CLOSED`), as a slow Socket.IO
client is dropped.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

import gevent.queue

#: What :meth:`RoomListener.get` answers once the listener is closed.
CLOSED = object()


class RoomListener:
    """The broadcasts to one room, as ``(event, args)``; use it as a context manager."""

    def __init__(self, room: str, namespace: str = "/", max_backlog: int = 1000) -> None:
        from .bridge import _running

        if _running is None:
            raise RuntimeError("no Socket.IO server runs in this process")
        self.manager = _running.manager
        self.room = room
        self.namespace = namespace
        self.max_backlog = max_backlog
        self.token = f"listener.{secrets.token_hex(8)}"
        self.closed = False
        self._queue: gevent.queue.Queue = gevent.queue.Queue()
        # A packet of another namespace starts "2/<namespace>,", one of "/" just "2".
        self._prefix = "2" if namespace == "/" else f"2{namespace},"

    def __enter__(self) -> RoomListener:
        self.manager.add_listener(self.namespace, self.room, self.token, self._deliver)
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.manager.remove_listener(self.namespace, self.room, self.token)
            self._queue.put(CLOSED)

    def _deliver(self, encoded: str) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self.max_backlog:
            self.close()
            return
        self._queue.put(encoded)

    def get(self, timeout: float | None = None) -> tuple[str, list] | object | None:
        """The next ``(event, args)``; None after ``timeout`` seconds without one; :data:`CLOSED` once closed."""
        try:
            encoded = self._queue.get(timeout=timeout)
        except gevent.queue.Empty:
            return None
        if encoded is CLOSED:
            self._queue.put(CLOSED)  # for every later call too
            return CLOSED
        event, *args = json.loads(encoded[len(self._prefix) :])
        return event, args
