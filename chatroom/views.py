from __future__ import annotations

import logging

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from . import presence
from .csp import content_security_policy
from .metrics import MESSAGES
from .models import Message
from .validation import DEFAULT_ROOM, clean_name, clean_room, clean_text

logger = logging.getLogger("chatroom")


@content_security_policy
def chat_page(request: HttpRequest, room: str = DEFAULT_ROOM) -> HttpResponse:
    """The chat page for ``room``."""
    return render(request, "chatroom/chat.html", {"room": room, "max_length": settings.CHAT_MAX_MESSAGE_LENGTH})


def chat_socket(request: HttpRequest) -> HttpResponse:
    """Serve one chat connection, from join to leave.

    The client names its room and display name in its Socket.IO ``auth``
    payload (``{"room": ..., "name": ...}``) or the query string; a logged-in
    user always chats under their username.
    """
    socket = request.environ["socketio"]
    auth = socket.auth if isinstance(socket.auth, dict) else {}
    try:
        room = clean_room(auth.get("room", request.GET.get("room")))
        if request.user.is_authenticated:
            name = request.user.get_username()
        else:
            name = clean_name(auth.get("name", request.GET.get("name")))
    except ValidationError as error:
        return HttpResponseBadRequest(error.messages[0])

    socket.info.update(name=name, room=room)
    socket.join(room)
    socket.emit("history", [message.as_event() for message in Message.history(room)])
    presence.enter(room, name)
    socket.emit("welcome", {"name": name, "room": room, "online": presence.online(room)})
    socket.broadcast("announcement", {"kind": "join", "name": name, "text": f"{name} joined"}, room=room)
    try:
        while (incoming := socket.recv()) is not None:
            try:
                if incoming.event != "message":
                    raise ValidationError(f"unknown event {incoming.event[:50]!r}", code="unknown-event")
                text = clean_text(incoming.data)
            except ValidationError as error:
                MESSAGES.labels(error.code).inc()
                logger.info("rejected id=%s name=%s room=%s reason=%r", socket.id, name, room, error.messages[0])
                incoming.reply({"error": error.messages[0]})
                continue
            message = Message.objects.create(room=room, name=name, text=text)
            MESSAGES.labels("stored").inc()
            incoming.reply({"ok": True, "id": message.id})
            socket.broadcast("message", message.as_event(), room=room)
    finally:
        presence.leave(room, name)
        socket.broadcast("announcement", {"kind": "leave", "name": name, "text": f"{name} left"}, room=room)
    return HttpResponse(status=204)
