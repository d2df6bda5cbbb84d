"""``GET /r/<room>/events``: a room's messages as Server-Sent Events, for plain HTTP readers.

``curl -N`` can follow it and a browser's ``EventSource`` consume it. Each
message is one event (``id:`` its id, ``data:`` the ``message`` payload
Socket.IO clients get); first the room's history, or, for a reader coming
back (``Last-Event-ID``, or ``?last_id=``), every message it missed, then the
live ones in the order Socket.IO clients see them. The stream waits on the
room's broadcasts (``socketio_django.listeners``: from every process, with
Redis) and reads the database only when it starts; a comment line every
``KEEPALIVE_EVERY`` seconds keeps proxies from closing an idle stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connections
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, StreamingHttpResponse
from django.views.decorators.http import require_GET

from .models import Message
from .validation import clean_last_id, clean_room

# Seconds between comment lines on an idle stream (proxies close connections silent for 30-60 s).
KEEPALIVE_EVERY = 15.0
# Milliseconds an EventSource waits before it reconnects (with Last-Event-ID) after the stream ends.
RETRY_MS = 2000


@require_GET
def events(request: HttpRequest, room: str) -> HttpResponse:
    """The stream of ``room``'s messages."""
    from socketio_django.listeners import RoomListener

    try:
        room = clean_room(room)
        given = request.headers.get("Last-Event-ID", request.GET.get("last_id"))
        last_id = clean_last_id(int(given)) if given not in (None, "") else None
    except (ValidationError, ValueError) as error:
        reason = error.messages[0] if isinstance(error, ValidationError) else "invalid last id: use a message id"
        return HttpResponseBadRequest(reason, content_type="text/plain")
    try:
        listener = RoomListener(room, max_backlog=settings.SOCKETIO_MAX_BACKLOG)
    except RuntimeError:  # not served by the Socket.IO server (runserver, a test client)
        return HttpResponse("the event stream needs the chat server", status=503, content_type="text/plain")
    response = StreamingHttpResponse(stream(listener, last_id), content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event on at once
    return response


def stream(listener, last_id: int | None) -> Iterator[bytes]:
    """What the reader is sent: the past (read after the listener joined, so nothing falls between), then live."""
    from socketio_django.listeners import CLOSED

    with listener:
        yield f"retry: {RETRY_MS}\n\n".encode()  # sends the headers now, whatever the room's past
        if last_id is None:
            past = Message.history(listener.room)
        else:
            limit = settings.CHAT_REPLAY_MAX
            past = Message.after(listener.room, last_id, limit + 1)
            if len(past) > limit:  # too many missed: as a Socket.IO client, the history instead
                yield b": more messages were missed than are replayed; the latest follow\n\n"
                past = Message.history(listener.room)
        # The stream may last hours: it holds no database connection meanwhile.
        connections.close_all()
        replayed = {message.id for message in past}
        for message in past:
            yield _event(message.as_event())
        while (item := listener.get(timeout=KEEPALIVE_EVERY)) is not CLOSED:
            if item is None:
                yield b": keep-alive\n\n"
                continue
            event, args = item
            if event != "message" or not args or not isinstance(args[0], dict):
                continue
            # A message stored as the stream started may come both from the database and live.
            if replayed and args[0].get("id") in replayed:
                replayed.discard(args[0]["id"])
                continue
            yield _event(args[0])


def _event(payload: dict) -> bytes:
    return f"id: {payload['id']}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n".encode()
