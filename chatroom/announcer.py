"""Join and leave announcements, batched per room, so that a join costs the same in a room of any size.

Announcing every join to everyone present makes a room of N people cost N
deliveries per join, N squared for everyone reconnecting at once (after a
restart). Here a view only reports who came and went; each room's changes
wait for a short window (``CHAT_PRESENCE_WINDOW``), then go out together:

- in a room of at most ``CHAT_PRESENCE_NAMES_UP_TO`` people, one
  ``announcement`` per change, to everyone in the room but the person it is
  about, as the chat has always done;
- in a bigger room nobody is named to everyone: the room gets
  ``presence {count}`` at most every ``CHAT_PRESENCE_COUNT_EVERY`` seconds,
  and only the clients that asked (``members`` with ``watch``) get
  ``presence {count, joined, left}`` every window.

Each process batches its own clients' changes and sends them with
``socketio_django.broadcast``: with Redis they reach every process.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from typing import Any

from django.conf import settings

from socketio_django import broadcast

from . import presence

logger = logging.getLogger("chatroom")


def watchers_room(room: str) -> str:
    """The room of the clients that asked for every change of ``room``'s presence (``:`` is no room's)."""
    return f"presence:{room}"


class Announcer:
    """Collects each room's joins and leaves; one thread sends them when each window ends.

    Views only append to a list (no lock is held across a wait, no thread is
    started per room): during a storm thousands of views pass through here,
    each holding its database connection.
    """

    def __init__(self, window: float, names_up_to: int, count_every: float) -> None:
        self.window = window
        self.names_up_to = names_up_to
        self.count_every = count_every
        #: room -> [(kind, name, connection id, namespace)], waiting for the window's end.
        self.pending: dict[str, list[tuple[str, str, str, str]]] = {}
        #: Big rooms (and their namespace) whose count changed since they were last told it, and when each was told.
        self.count_untold: dict[str, str] = {}
        self.count_told_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self._sender: threading.Thread | None = None

    def joined(self, room: str, name: str, socket: Any) -> None:
        """``name`` joined ``room`` through ``socket`` (it is not told of its own arrival)."""
        self._add(room, ("join", name, socket.id, socket.namespace))

    def left(self, room: str, name: str, socket: Any) -> None:
        """``name`` left ``room`` (one of its connections)."""
        self._add(room, ("leave", name, socket.id, socket.namespace))

    def _add(self, room: str, change: tuple[str, str, str, str]) -> None:
        with self._lock:
            self.pending.setdefault(room, []).append(change)
        if self._sender is None:
            self._sender = threading.Thread(target=self._send_forever, name="announcer", daemon=True)
            self._sender.start()

    def _send_forever(self) -> None:
        while True:
            time.sleep(self.window)
            with self._lock:
                pending, self.pending = self.pending, {}
            for room, namespace in {
                **self.count_untold,
                **{room: changes[0][3] for room, changes in pending.items()},
            }.items():
                try:
                    self.flush(room, namespace, pending.get(room, []))
                except Exception:  # one room's failure must not end the thread: every room would go quiet
                    logger.exception("could not announce the presence changes of room %s", room)

    def flush(self, room: str, namespace: str, changes: list[tuple[str, str, str, str]]) -> None:
        """Send ``room``'s ``changes`` (and, in a big room, its count when it is due)."""
        count = presence.count(room)
        if count <= self.names_up_to:
            self.count_untold.pop(room, None)
            self.count_told_at.pop(room, None)
            # Whoever joined after a change found its result in their welcome: they are not told again.
            later_joiners = [sid for kind, _, sid, _ in changes if kind == "join"]
            for kind, name, sid, _ in changes:
                if kind == "join":
                    later_joiners.remove(sid)
                note = {
                    "kind": kind,
                    "name": name,
                    "text": f"{name} {'joined' if kind == 'join' else 'left'}",
                    # Whether the name is online now (another tab may still be): the same answer
                    # however often a client hears of it.
                    "online": presence.is_online(room, name),
                }
                broadcast("announcement", note, room=room, namespace=namespace, skip=[sid, *later_joiners])
            return
        if changes:
            joined = [name for kind, name, _, _ in changes if kind == "join"]
            left = [name for kind, name, _, _ in changes if kind == "leave"]
            change = {"count": count, "joined": joined, "left": left}
            broadcast("presence", change, room=watchers_room(room), namespace=namespace)
            self.count_untold[room] = namespace
        if time.monotonic() >= self.count_told_at.get(room, -float("inf")) + self.count_every:
            self.count_told_at[room] = time.monotonic()
            self.count_untold.pop(room, None)
            broadcast("presence", {"count": count}, room=room, namespace=namespace)


@functools.cache
def announcer() -> Announcer:
    """This process's announcer, from the settings."""
    return Announcer(
        settings.CHAT_PRESENCE_WINDOW, settings.CHAT_PRESENCE_NAMES_UP_TO, settings.CHAT_PRESENCE_COUNT_EVERY
    )
