from __future__ import annotations

import functools
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render

from socketio_django.addresses import address_key
from socketio_django.ratelimit import KeyedBuckets, TokenBucket

from . import presence
from .announcer import announcer, watchers_room
from .csp import content_security_policy
from .metrics import MESSAGES
from .models import Message
from .validation import DEFAULT_ROOM, clean_guest_name, clean_last_id, clean_room, clean_text

logger = logging.getLogger("chatroom")


# Messages of all the connections of one client address (CHAT_ADDRESS_RATE_LIMIT_*): twenty
# connections must not buy twenty times the per-connection rate.
@functools.cache
def address_buckets() -> KeyedBuckets:
    return KeyedBuckets(settings.CHAT_ADDRESS_RATE_LIMIT_PER_SECOND, settings.CHAT_ADDRESS_RATE_LIMIT_BURST)


def check_rate(bucket: TokenBucket, address: str) -> None:
    """Spend one message of this connection's and this address's budgets, or raise why not.

    The connection's first: a connection flooding past its own rate then spends nothing of the
    budget its neighbours at the same address share.
    """
    if not bucket.take():
        raise ValidationError(
            f"too many messages: at most {bucket.rate:g} a second (bursts of {bucket.burst})", code="rate-limited"
        )
    shared = address_buckets()
    if not shared.take(address):
        raise ValidationError(
            f"too many messages from your address: at most {shared.rate:g} a second (bursts of {shared.burst})",
            code="rate-limited",
        )


@content_security_policy
def chat_page(request: HttpRequest, room: str = DEFAULT_ROOM) -> HttpResponse:
    """The chat page for ``room``."""
    return render(request, "chatroom/chat.html", {"room": room, "max_length": settings.CHAT_MAX_MESSAGE_LENGTH})


def store(text: Any, room: str, name: str) -> Message:
    """Store a client's ``message`` event; a ValidationError says why it was not."""
    text = clean_text(text)
    try:
        return Message.objects.create(room=room, name=name, text=text)
    except DatabaseError:
        logger.exception("could not store a message in room %s", room)
        raise ValidationError("the message could not be stored, please send it again", code="not-stored") from None


def members(socket: Any, room: str, request: Any) -> dict:
    """A ``members`` request: the next page of names after ``after``; ``watch`` asks for (or stops) every change."""
    request = request if isinstance(request, dict) else {}
    after = request.get("after")
    if after is not None and not isinstance(after, str):
        raise ValidationError("after must be a name", code="bad-request")
    if request.get("watch") is True:
        socket.join(watchers_room(room))
    elif request.get("watch") is False:
        socket.leave(watchers_room(room))
    return {"names": presence.names(room, after, settings.CHAT_MEMBERS_PAGE), "count": presence.count(room)}


def catch_up(socket: Any, room: str, last_id: int | None) -> None:
    """What a client sees of the past on arrival: the room's history, or what it missed since ``last_id``.

    Read after the client joined the room, so nothing stored meanwhile falls
    between this and the live messages. Past ``CHAT_REPLAY_MAX`` missed
    messages it is told so (``complete: false``) and gets the history instead.
    """
    if last_id is not None:
        limit = settings.CHAT_REPLAY_MAX
        missed = Message.after(room, last_id, limit + 1)
        complete = len(missed) <= limit
        replay = [message.as_event() for message in missed] if complete else []
        socket.emit("replay", {"after": last_id, "messages": replay, "complete": complete})
        if complete:
            return
    socket.emit("history", [message.as_event() for message in Message.history(room)])


def chat_socket(request: HttpRequest) -> HttpResponse:
    """Serve one chat connection, from join to leave.

    The client names its room and display name in its Socket.IO ``auth``
    payload (``{"room": ..., "name": ..., "last_id": ...}``) or the query
    string; a logged-in user always chats under their username. A client that
    was here before names the last message it saw (``last_id``) and is sent
    what it missed.
    """
    socket = request.environ["socketio"]
    auth = socket.auth if isinstance(socket.auth, dict) else {}

    def given(key: str) -> Any:
        # The query string only when auth lacks it: parsing it was 5% of a join's CPU.
        return auth[key] if key in auth else request.GET.get(key)

    try:
        room = clean_room(given("room"))
        last_id = clean_last_id(auth.get("last_id"))
        user = request.user
        name = user.get_username() if user.is_authenticated else clean_guest_name(given("name"))
    except ValidationError as error:
        return HttpResponseBadRequest(error.messages[0])

    socket.info.update(name=name, room=room)
    socket.join(room)
    catch_up(socket, room, last_id)
    bucket = TokenBucket(settings.CHAT_RATE_LIMIT_PER_SECOND, settings.CHAT_RATE_LIMIT_BURST)
    address = address_key(request.META.get("REMOTE_ADDR", ""))
    presence.enter(room, name)
    try:
        online = presence.names(room, limit=settings.CHAT_MEMBERS_PAGE)
        socket.emit("welcome", {"name": name, "room": room, "online": online, "count": presence.count(room)})
        announcer().joined(room, name, socket)
        flooding = False
        while (incoming := socket.recv()) is not None:
            try:
                check_rate(bucket, address)
                if incoming.event == "members":
                    incoming.reply(members(socket, room, incoming.data))
                    continue
                if incoming.event != "message":
                    raise ValidationError(f"unknown event {incoming.event[:50]!r}", code="unknown-event")
                message = store(incoming.data, room, name)
            except ValidationError as error:
                MESSAGES.labels(error.code).inc()
                # A client over its rate hears it each time and is logged once a streak: a flood is one line.
                if not (flooding and error.code == "rate-limited"):
                    logger.info("rejected id=%s name=%s room=%s reason=%r", socket.id, name, room, error.messages[0])
                flooding = error.code == "rate-limited"
                incoming.reply({"error": error.messages[0]})
                continue
            flooding = False
            MESSAGES.labels("stored").inc()
            incoming.reply({"ok": True, "id": message.id})
            socket.broadcast("message", message.as_event(), room=room)
    finally:
        presence.leave(room, name)
        announcer().left(room, name, socket)
    return HttpResponse(status=204)
