"""Who is online in each room: this process's count, or every process's through Redis.

A name is online in a room while it has at least one connection there (two
tabs are one name). Without ``CHAT_REDIS_URL`` the counts live in this
process (:class:`LocalPresence`); with it, every process and host sharing the
Redis sees the same list (:mod:`.presence_redis`).
"""

from __future__ import annotations

import functools
from collections import Counter, defaultdict

from django.conf import settings


class LocalPresence:
    """Connections per name and room, in this process."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)

    def enter(self, room: str, name: str) -> None:
        """Count one more connection of ``name`` in ``room``."""
        self.counts[room][name] += 1

    def leave(self, room: str, name: str) -> None:
        """Count one connection of ``name`` in ``room`` less."""
        names = self.counts[room]
        names[name] -= 1
        if names[name] <= 0:
            del names[name]
        if not names:
            del self.counts[room]

    def online(self, room: str) -> list[str]:
        """The names connected to ``room``, sorted."""
        return sorted(self.counts.get(room, ()))


@functools.cache
def backend() -> LocalPresence:
    """The presence store the settings choose (one per process)."""
    if settings.CHAT_REDIS_URL:
        from .presence_redis import RedisPresence

        return RedisPresence(settings.CHAT_REDIS_URL, ttl=settings.CHAT_PRESENCE_TTL)
    return LocalPresence()


def enter(room: str, name: str) -> None:
    """``name`` has one more connection in ``room``."""
    backend().enter(room, name)


def leave(room: str, name: str) -> None:
    """``name`` has one connection less in ``room``."""
    backend().leave(room, name)


def online(room: str) -> list[str]:
    """The names online in ``room``, sorted."""
    return backend().online(room)
