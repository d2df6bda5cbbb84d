"""Broadcasts across processes and hosts through Redis pub/sub, with one channel per room.

What :class:`RedisFanoutManager` owns: publishing every emit for a room (or a
namespace, or a client of another process) to Redis, subscribing this
process to the channels of the rooms it has clients in, and handing what
arrives to :class:`.FanoutManager`'s local fast path (framed once for all of
this process's recipients). It leaves rooms and local delivery to
:mod:`.fanout`, and session ids to :mod:`.sessions`.

Why not python-socketio's ``RedisManager``: it delivers to its own clients
first and publishes afterwards, so two processes emitting to one room at
once show their clients different orders; and it publishes every room on one
channel that every process decodes. Here a room's emits are delivered only
as they come back from Redis, which orders each channel: every client of a
room sees its messages in the same order, whichever process sent them. A
process not subscribed to a room's channel never receives its traffic.

When Redis cannot be reached, an emit is delivered to this process's clients
(and is missed by the others); the subscriber reconnects by itself, and a
subscriber connection that goes silent (a half-open TCP connection, a
stopped server) is found by pinging it and replaced.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import time
from typing import Any

import gevent
import gevent.event
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from socketio import packet

from . import metrics, sessions
from .fanout import FanoutManager

logger = logging.getLogger("socketio_django")

# Seconds a client's join waits for its room's subscription to be confirmed: messages sent
# after the join (and after the history the view reads next) must not be missed.
SUBSCRIBE_TIMEOUT = 2.0
# One retry, at once, when a connection fails (a pooled one may be left over from before a Redis
# restart); never after a timeout: the command went out, and Redis may run it yet (twice, if retried).
ONE_RETRY = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
# Seconds of backoff between attempts to reach Redis again, doubling up to the second figure.
RECONNECT_DELAYS = (0.1, 5.0)


class RedisFanoutManager(FanoutManager):
    """A client manager whose emits reach the clients of every process sharing one Redis."""

    def __init__(
        self,
        url: str,
        max_backlog: int = 1000,
        *,
        prefix: str = "socketio",
        health_interval: float = 5.0,
        socket_timeout: float = 2.0,
    ) -> None:
        super().__init__(max_backlog)
        self.url = url
        self.prefix = prefix
        #: Seconds of silence after which the subscriber pings Redis; twice that without an answer, it reconnects.
        self.health_interval = health_interval
        self.redis = redis.Redis.from_url(
            url, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout, retry=ONE_RETRY
        )
        #: channel -> its confirmation, for every channel this process should be subscribed to.
        self._channels: dict[bytes, gevent.event.Event] = {}
        self._pubsub: Any = None
        self._listener: gevent.Greenlet | None = None
        #: When the subscriber lost Redis (None while connected), and whether its current attempt got through.
        self._lost_since: float | None = None
        self._connected = False
        self._publish_failing = False
        self.own_channel = process_channel(prefix, sessions.process_token())
        self._channels[self.own_channel] = gevent.event.Event()

    def initialize(self) -> None:
        super().initialize()
        if self._listener is None:
            self._listener = gevent.spawn(self._listen_forever)

    # -- emitting --------------------------------------------------------

    def emit(
        self,
        event: str,
        data: Any,
        namespace: str,
        room: Any = None,
        skip_sid: Any = None,
        callback: Any = None,
        to: Any = None,
        **kwargs: Any,
    ) -> None:
        room = to or room
        if callback or (isinstance(room, str) and self.is_sid_room(namespace, room)):
            # One client of this process (or an emit waiting for its ack): nothing to share.
            return super().emit(event, data, namespace, room=room, skip_sid=skip_sid, callback=callback, **kwargs)
        skip = skip_sid if isinstance(skip_sid, list) else [] if skip_sid is None else [skip_sid]
        args = list(data) if isinstance(data, tuple) else [] if data is None else [data]
        encoded, attachments = self._encode_for_redis(namespace, [event, *args])
        rooms = list(room) if isinstance(room, (list, tuple)) else [room]
        for index, target in enumerate(rooms):
            # Each room's channel; a receiver skips its clients in the rooms before this one, which got it there.
            message = encode_message(namespace, rooms[: index + 1], skip, encoded, attachments)
            if self._publish(channel_for(self.prefix, namespace, target), message) is False:
                super().emit(event, data, namespace, room=target, skip_sid=skip_sid, **kwargs)

    def _encode_for_redis(self, namespace: str, data: list) -> tuple[bytes, list[bytes]]:
        """The Socket.IO packet as text, and its binary attachments in base64."""
        encoded = self._encode_event(namespace, data)
        if encoded is not None:
            return encoded.encode(), []
        return encode_packet(self.server.packet_class, namespace, data)

    def _publish(self, channel: bytes, message: bytes) -> bool | None:
        """Publish ``message``: True if Redis took it, False if not (then the caller delivers
        locally), None if it went out but Redis did not answer in time (it may deliver it yet).

        While the subscriber has lost Redis, nothing is tried: this process would not hear its
        own emits back, and a Redis that does not answer would hold every emit for a timeout.
        """
        if self._lost_since is not None:
            return False
        try:
            self.redis.publish(channel, message)
        except (redis.RedisError, OSError) as error:
            metrics.REDIS_PUBLISH_FAILURES.inc()
            if not self._publish_failing:
                logger.warning("Redis did not take an emit (%s)", error)
            self._publish_failing = True
            return None if isinstance(error, redis.TimeoutError) else False
        self._publish_failing = False
        return True

    # -- channels --------------------------------------------------------

    def basic_enter_room(self, sid: str, namespace: str, room: Any, eio_sid: str | None = None) -> None:
        # Subscribed first: once the client is in the room, what it is sent live is what was
        # published after (a view reading the room's past next misses nothing, repeats little).
        if room != sid:
            self._subscribe(channel_for(self.prefix, namespace, room))
        super().basic_enter_room(sid, namespace, room, eio_sid=eio_sid)

    def basic_leave_room(self, sid: str, namespace: str, room: Any) -> None:
        super().basic_leave_room(sid, namespace, room)
        if room != sid and room not in self.rooms.get(namespace, {}):
            channel = channel_for(self.prefix, namespace, room)
            if self._channels.pop(channel, None) is not None and self._pubsub is not None:
                self._command(self._pubsub.unsubscribe, channel)

    def _subscribe(self, channel: bytes) -> None:
        """Subscribe to ``channel`` (if not yet) and wait (briefly) until Redis has confirmed it."""
        confirmed = self._channels.get(channel)
        if confirmed is None:
            confirmed = self._channels[channel] = gevent.event.Event()
            if self._pubsub is not None:
                self._command(self._pubsub.subscribe, channel)
        # Otherwise the subscriber is connecting and subscribes to it too. During an outage
        # nobody waits: the subscriber subscribes to every channel once it is back.
        if not confirmed.is_set() and self._lost_since is None and gevent.getcurrent() is not self._listener:
            confirmed.wait(SUBSCRIBE_TIMEOUT)

    def _command(self, command: Any, *args: Any) -> bool:
        try:
            command(*args)
            return True
        except (redis.RedisError, OSError):
            return False  # the listener notices the broken connection and starts again

    # -- listening -------------------------------------------------------

    def _listen_forever(self) -> None:
        delay = RECONNECT_DELAYS[0]
        while True:
            self._connected = False
            try:
                self._listen()
            except (redis.RedisError, OSError, _Silent) as error:
                if self._lost_since is None:
                    self._lost_since = time.monotonic()
                    metrics.REDIS_RECONNECTS.inc()
                    logger.warning("Redis subscriber connection lost (%s): reconnecting", error)
            finally:
                self._close_pubsub()
            delay = RECONNECT_DELAYS[0] if self._connected else min(delay * 2, RECONNECT_DELAYS[1])
            gevent.sleep(delay)

    def _listen(self) -> None:
        pubsub = self.redis.pubsub()
        for confirmed in self._channels.values():
            confirmed.clear()
        channels = list(self._channels)
        pubsub.subscribe(*channels)
        # Rooms entered or left while that went out: from now on _subscribe sees self._pubsub.
        self._pubsub = pubsub
        if entered := [channel for channel in self._channels if channel not in channels]:
            pubsub.subscribe(*entered)
        if left := [channel for channel in channels if channel not in self._channels]:
            pubsub.unsubscribe(*left)
        heard, pinged = time.monotonic(), None
        while True:
            message = pubsub.get_message(timeout=self.health_interval / 2)
            now = time.monotonic()
            if message is None:
                if pinged is not None and now - pinged >= self.health_interval:
                    raise _Silent(f"no answer from Redis for {now - heard:.1f}s")
                if pinged is None and now - heard >= self.health_interval:
                    pubsub.ping()
                    pinged = now
                continue
            heard, pinged = now, None
            kind = message["type"]
            if kind == "message":
                try:
                    self._receive(message["data"])
                except Exception:  # a bug, or a foreign message on our channel: this one only
                    logger.exception("could not deliver a message from Redis")
            elif kind == "subscribe" and (confirmed := self._channels.get(message["channel"])) is not None:
                confirmed.set()
                if message["channel"] == self.own_channel:
                    self._on_connected(now)

    def _on_connected(self, now: float) -> None:
        self._connected = True
        metrics.REDIS_CONNECTED.set(1)
        if self._lost_since is not None:
            logger.warning(
                "Redis subscriber reconnected after %.1fs: %d channels", now - self._lost_since, len(self._channels)
            )
            self._lost_since = None

    def _close_pubsub(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        metrics.REDIS_CONNECTED.set(0)
        if pubsub is not None:
            with contextlib.suppress(redis.RedisError, OSError):
                pubsub.reset()

    def _receive(self, message: bytes) -> None:
        """Deliver a published emit to this process's clients."""
        header, encoded, *attachments = message.split(b"\n")
        namespace, rooms, skip, attachment_count = json.loads(header)
        *earlier, room = rooms
        skip = set(skip)
        for other in earlier:
            skip.update(sid for sid, _ in self.get_participants(namespace, other))
        if not attachment_count:
            return self.deliver_encoded(namespace, room, skip, encoded.decode())
        pkt = self.server.packet_class(encoded_packet=encoded.decode())
        for attachment in attachments:
            pkt.add_attachment(base64.b64decode(attachment))
        event, *args = pkt.data
        FanoutManager.emit(self, event, tuple(args), namespace, room=room, skip_sid=list(skip))
        return None

    def redis_reachable(self) -> bool:
        """Whether Redis answers a PING now (for the health check)."""
        try:
            return bool(self.redis.ping())
        except (redis.RedisError, OSError):
            return False


def channel_for(prefix: str, namespace: str, room: Any) -> bytes:
    """The Redis channel of ``room`` in ``namespace`` (None: the whole namespace), or, when ``room``
    is a client's id, the channel of the process that owns it."""
    owner = sessions.owner_of(room)
    if owner is not None:
        return process_channel(prefix, owner)
    # JSON: no namespace and room make the name of another pair ("/:a" and "a" against "/" and ":a:a").
    return f"{prefix}:{json.dumps([namespace, room], separators=(',', ':'))}".encode()


def process_channel(prefix: str, token: str) -> bytes:
    """The Redis channel of the process whose session ids start with ``token`` (JSON names start with "[")."""
    return f"{prefix}:#{token}".encode()


def encode_message(namespace: str, rooms: list, skip: list, encoded: bytes, attachments: list[bytes]) -> bytes:
    """What is published for an emit: a JSON header line, the Socket.IO packet, its attachments in base64.

    ``rooms`` ends with the room of the channel it goes to; a receiver skips its clients
    of the rooms before it (they got it there), and the session ids in ``skip``.
    """
    header = json.dumps([namespace, rooms, skip, len(attachments)]).encode()
    return b"\n".join([header, encoded, *attachments])


def encode_packet(packet_class: Any, namespace: str, data: list) -> tuple[bytes, list[bytes]]:
    """A Socket.IO EVENT packet as text, and its binary attachments in base64."""
    encoded = packet_class(packet.EVENT, namespace=namespace, data=data).encode()
    if isinstance(encoded, str):
        return encoded.encode(), []
    text, *attachments = encoded
    return text.encode(), [base64.b64encode(attachment) for attachment in attachments]


class _Silent(Exception):
    """The subscriber's connection stopped answering."""
