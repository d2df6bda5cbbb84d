"""Who is online in each room: this process's count, or every process's through Redis.

A name is online in a room while it has at least one connection there (two
tabs are one name). Without ``CHAT_REDIS_URL`` the counts live in this
process (:class:`LocalPresence`); with it, every process and host sharing the
Redis sees the same list (:mod:`.presence_redis`).
"""

from __future__ import annotations

import bisect
import functools
from collections import Counter, defaultdict

from django.conf import settings


class LocalPresence:
    """Connections per name and room, and each room's names in order, in this process."""

    def __init__(self) -> None:
        self.counts: defaultdict[str, Counter[str]] = defaultdict(Counter)
        # Kept sorted as names come and go: a page of names costs a bisection, not a sort of the room.
        self.sorted: defaultdict[str, list[str]] = defaultdict(list)

    def enter(self, room: str, name: str) -> None:
        """Count one more connection of ``name`` in ``room``."""
        names = self.counts[room]
        names[name] += 1
        if names[name] == 1:
            bisect.insort(self.sorted[room], name)

    def leave(self, room: str, name: str) -> None:
        """Count one connection of ``name`` in ``room`` less."""
        names = self.counts[room]
        names[name] -= 1
        if names[name] <= 0:
            del names[name]
            ordered = self.sorted[room]
            del ordered[bisect.bisect_left(ordered, name)]
        if not names:
            del self.counts[room], self.sorted[room]

    def count(self, room: str) -> int:
        """How many names are online in ``room``."""
        return len(self.counts.get(room, ()))

    def is_online(self, room: str, name: str) -> bool:
        """Whether ``name`` has a connection in ``room``."""
        return name in self.counts.get(room, ())

    def names(self, room: str, after: str | None = None, limit: int | None = None) -> list[str]:
        """The names online in ``room``, sorted: ``limit`` of them (all when None) after ``after``."""
        ordered = self.sorted.get(room, [])
        start = 0 if after is None else bisect.bisect_right(ordered, after)
        return ordered[start : None if limit is None else start + limit]


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


def count(room: str) -> int:
    """How many names are online in ``room``."""
    return backend().count(room)


def is_online(room: str, name: str) -> bool:
    """Whether ``name`` has a connection in ``room``."""
    return backend().is_online(room, name)


def names(room: str, after: str | None = None, limit: int | None = None) -> list[str]:
    """The names online in ``room``, sorted: ``limit`` of them (all when None) after ``after``."""
    return backend().names(room, after, limit)
