"""Emit to the clients of a room from anywhere: a view, a management command, a task queue's worker.

What this module owns: :func:`emit`, which picks the way out. In a process
that runs the Socket.IO server it is :func:`.bridge.broadcast` (which, with
Redis, reaches every process as well). In any other process (``manage.py``,
a Celery worker) it is :class:`RedisEmitter`: a write-only publisher that
puts the emit on the room's Redis channel in the format every server's
:class:`.RedisFanoutManager` receives (the encoding is shared with
:mod:`.redis_fanout`, which owns it). Without a server here and without
``SOCKETIO_REDIS_URL`` there is no way to live clients, and :func:`emit` says
so by returning False.
"""

from __future__ import annotations

import sys
from typing import Any

from .redis_fanout import channel_for, encode_message, encode_packet

# The prefix of the channel names, as RedisFanoutManager's default.
PREFIX = "socketio"
# Seconds a publish may take before it fails (connecting or waiting for Redis' answer).
SOCKET_TIMEOUT = 2.0


class RedisEmitter:
    """Publishes emits for the Socket.IO servers sharing one Redis; it receives nothing."""

    def __init__(self, url: str, *, prefix: str = PREFIX, socket_timeout: float = SOCKET_TIMEOUT) -> None:
        import redis
        from socketio import packet

        self.packet_class = packet.Packet
        self.prefix = prefix
        self.redis = redis.Redis.from_url(url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)

    def emit(self, event: str, *args: Any, room: Any = None, namespace: str = "/") -> int:
        """Publish ``event`` to the clients of ``room`` (None: the whole namespace); how many servers heard it.

        Raises ``redis.RedisError`` when Redis does not take it.
        """
        encoded, attachments = encode_packet(self.packet_class, namespace, [event, *args])
        message = encode_message(namespace, [room], [], encoded, attachments)
        return self.redis.publish(channel_for(self.prefix, namespace, room), message)

    def close(self) -> None:
        self.redis.close()


_emitters: dict[str, RedisEmitter] = {}


def _server() -> Any:
    """The Socket.IO server running in this process, or None."""
    bridge = sys.modules.get(f"{__package__}.bridge")  # not imported: no server here
    return getattr(bridge, "_running", None)


def _redis_url() -> str | None:
    from django.conf import settings

    # Not through .conf, which loads the whole server (gevent included) into a management command.
    return getattr(settings, "SOCKETIO_REDIS_URL", None)


def reaches_clients() -> bool:
    """Whether :func:`emit` from this process reaches live clients: a server runs here, or Redis is set."""
    return _server() is not None or bool(_redis_url())


def emit(event: str, *args: Any, room: Any = None, namespace: str = "/") -> bool:
    """Send ``event`` to every client of ``room`` on every process; False if nothing can reach them from here.

    Inside a server process this is :func:`.bridge.broadcast`; elsewhere it is
    published on Redis (``SOCKETIO_REDIS_URL``), and raises ``redis.RedisError``
    when Redis does not take it.
    """
    if _server() is not None:
        from .bridge import broadcast

        broadcast(event, *args, room=room, namespace=namespace)
        return True
    url = _redis_url()
    if not url:
        return False
    emitter = _emitters.get(url)
    if emitter is None:
        emitter = _emitters[url] = RedisEmitter(url)
    emitter.emit(event, *args, room=room, namespace=namespace)
    return True
