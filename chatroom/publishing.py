"""Publishing from anywhere: a message stored and broadcast as if a user had sent it.

For Django code that has no chat connection: a view, a management command
(``manage.py chat_say``), a Celery task, a signal handler. The message goes
through the same checks as a client's (``chatroom.validation``), into the
same history, and out as the same ``message`` event to every client of the
room on every process. How it gets out (inside a server process, or through
Redis from any other) is the bridge's business (``socketio_django.emitter``).
"""

from __future__ import annotations

import logging

from .metrics import MESSAGES
from .models import Message
from .validation import clean_name, clean_room
from .views import store

logger = logging.getLogger("chatroom")

DEFAULT_NAME = "system"


def publish(room: str, text: str, name: str = DEFAULT_NAME) -> Message:
    """Store ``text`` in ``room`` under ``name`` and send it to every connected client of the room.

    Returns the stored :class:`Message`. Raises ``ValidationError`` (why, in
    its ``messages``) for an invalid room, name or text, or when the database
    did not store it; nothing is sent then. The name is not checked against
    registered users: the caller is trusted code. Once stored, a message that
    cannot reach live clients (no server in this process and no ``REDIS_URL``,
    or Redis down) is logged, not raised: clients get it from the history
    when they next connect.
    """
    from socketio_django import emitter

    room = clean_room(room)
    name = clean_name(name)
    message = store(text, room, name)
    MESSAGES.labels("stored").inc()
    try:
        delivered = emitter.emit("message", message.as_event(), room=room)
    except Exception as error:  # redis.RedisError, OSError: it is stored, clients get it on reconnection
        logger.warning("message %s stored in room %s but not broadcast: %s", message.id, room, error)
    else:
        if not delivered:
            logger.warning("message %s stored in room %s; live clients see it only with REDIS_URL", message.id, room)
    return message


def reaches_live_clients() -> bool:
    """Whether :func:`publish` from this process reaches connected clients (a server runs here, or REDIS_URL)."""
    from socketio_django import emitter

    return emitter.reaches_clients()
