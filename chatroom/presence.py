"""Who is online in each room of this process."""

from __future__ import annotations

from collections import Counter, defaultdict

_online: defaultdict[str, Counter[str]] = defaultdict(Counter)


def enter(room: str, name: str) -> None:
    """Count one more connection of ``name`` in ``room``."""
    _online[room][name] += 1


def leave(room: str, name: str) -> None:
    """Count one connection of ``name`` in ``room`` less."""
    names = _online[room]
    names[name] -= 1
    if names[name] <= 0:
        del names[name]
    if not names:
        del _online[room]


def online(room: str) -> list[str]:
    """The names connected to ``room``, sorted."""
    return sorted(_online.get(room, ()))
