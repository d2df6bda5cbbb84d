"""Presence shared by every process and host through Redis, and forgotten when a process dies.

Keys (``chat:`` prefix):

- ``online:<room>``: a hash, name -> connections in every process; and
  ``names:<room>``, its names in a sorted set (all scores 0, so ordered by
  name). The room's count is the set's size and a page of names a range of
  it: neither walks the room, however big.
- ``held:<process>``: a hash, ``<room>\\n<name>`` -> what this process added to
  ``online:``; it is what must be taken back when the process is gone.
- ``alive:<process>``: set with a time to live (``ttl``) and renewed every
  ``ttl / 3`` seconds by the process; ``procs``: the processes that hold anything.

A process that dies stops renewing its ``alive`` key; the next live process
to look takes its entries back (one script, so two processes cleaning at
once take nothing twice). A process whose own ``alive`` key is missing (Redis
restarted, or it could not reach Redis for a while) writes its entries again
from its own counts, which stay the truth for its own clients.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .presence import LocalPresence

logger = logging.getLogger("chatroom")

PREFIX = "chat:"
# Replace everything process ARGV[2] holds by the field/count pairs after ARGV[3]; with ARGV[3] "reap",
# by nothing, and only if the process is still not alive (it may have come back since it was found dead).
_REPLACE = """
local prefix, process = ARGV[1], ARGV[2]
if ARGV[3] == 'reap' and redis.call('EXISTS', prefix .. 'alive:' .. process) == 1 then return 0 end
local held_key = prefix .. 'held:' .. process
local held = redis.call('HGETALL', held_key)
for i = 1, #held, 2 do
  local room, name = string.match(held[i], '^(.-)\\n(.*)$')
  if redis.call('HINCRBY', prefix .. 'online:' .. room, name, -tonumber(held[i + 1])) <= 0 then
    redis.call('HDEL', prefix .. 'online:' .. room, name)
    redis.call('ZREM', prefix .. 'names:' .. room, name)
  end
end
redis.call('DEL', held_key)
for i = 4, #ARGV, 2 do
  local room, name = string.match(ARGV[i], '^(.-)\\n(.*)$')
  if redis.call('HINCRBY', prefix .. 'online:' .. room, name, ARGV[i + 1]) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', prefix .. 'names:' .. room, 0, name)
  end
  redis.call('HSET', held_key, ARGV[i], ARGV[i + 1])
end
if #ARGV > 3 then redis.call('SADD', prefix .. 'procs', process) else redis.call('SREM', prefix .. 'procs', process) end
return #held / 2
"""
# Add ARGV[3] (1 or -1) to name ARGV[2] of room KEYS[1] (names KEYS[4]) and to this process's field ARGV[1] (KEYS[2]).
# A -1 this process never added (its +1 did not reach Redis) must not take another process's connection away.
_ADD = """
if tonumber(ARGV[3]) < 0 and tonumber(redis.call('HGET', KEYS[2], ARGV[1]) or '0') <= 0 then return end
local connections = redis.call('HINCRBY', KEYS[1], ARGV[2], ARGV[3])
if connections <= 0 then
  redis.call('HDEL', KEYS[1], ARGV[2])
  redis.call('ZREM', KEYS[4], ARGV[2])
elseif connections == 1 and tonumber(ARGV[3]) == 1 then
  redis.call('ZADD', KEYS[4], 0, ARGV[2])
end
if redis.call('HINCRBY', KEYS[2], ARGV[1], ARGV[3]) <= 0 then redis.call('HDEL', KEYS[2], ARGV[1]) end
if tonumber(ARGV[3]) > 0 then redis.call('SADD', KEYS[3], ARGV[4]) end
"""


class RedisPresence(LocalPresence):
    """Presence in Redis, with this process's own counts kept beside it (see the module's docstring)."""

    def __init__(self, url: str, ttl: float = 15.0) -> None:
        super().__init__()
        self.ttl = ttl
        self.process = secrets.token_hex(6)
        # One retry, at once, when a connection fails (a pooled one may predate a Redis restart); none
        # after a timeout: the script went out, and Redis may run it yet (twice, if sent again).
        retry = Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,))
        self.redis = redis.Redis.from_url(
            url, socket_timeout=2, socket_connect_timeout=2, retry=retry, decode_responses=True
        )
        self._replace = self.redis.register_script(_REPLACE)
        self._add = self.redis.register_script(_ADD)
        #: Redis may have missed a change of this process's counts: write them all again.
        self._stale = False
        self._beating: threading.Thread | None = None
        self._beaten = False

    def enter(self, room: str, name: str) -> None:
        super().enter(room, name)
        self._change(room, name, 1)
        if self._beating is None:
            self._beating = threading.Thread(target=self._beat_forever, name="presence", daemon=True)
            self._beating.start()

    def leave(self, room: str, name: str) -> None:
        super().leave(room, name)
        self._change(room, name, -1)

    def count(self, room: str) -> int:
        try:
            return self.redis.zcard(PREFIX + "names:" + room)
        except redis.RedisError as error:
            self._unreachable(error)
            return super().count(room)

    def is_online(self, room: str, name: str) -> bool:
        try:
            return bool(self.redis.hexists(PREFIX + "online:" + room, name))
        except redis.RedisError as error:
            self._unreachable(error)
            return super().is_online(room, name)

    def names(self, room: str, after: str | None = None, limit: int | None = None) -> list[str]:
        page = {} if limit is None else {"offset": 0, "num": limit}
        start = "-" if after is None else "(" + after
        try:
            return self.redis.zrange(PREFIX + "names:" + room, start, "+", bylex=True, **page)
        except redis.RedisError as error:
            self._unreachable(error)
            return super().names(room, after, limit)

    def _unreachable(self, error: Exception) -> None:
        logger.warning("presence: Redis unreachable (%s), answering with this process's clients only", error)

    def _change(self, room: str, name: str, delta: int) -> None:
        keys = [PREFIX + "online:" + room, PREFIX + "held:" + self.process, PREFIX + "procs", PREFIX + "names:" + room]
        try:
            self._add(keys=keys, args=[f"{room}\n{name}", name, delta, self.process])
        except redis.RedisError as error:
            if not self._stale:
                logger.warning("presence: Redis unreachable (%s), will write this process's list again", error)
            self._stale = True

    # -- keeping it true -------------------------------------------------

    def _beat_forever(self) -> None:
        while True:
            try:
                self.beat()
            except redis.RedisError as error:
                self._stale = True
                logger.warning("presence: Redis unreachable (%s)", error)
            time.sleep(self.ttl / 3)

    def beat(self) -> None:
        """Renew this process's life, write its entries again if Redis lost them, reap dead processes."""
        was_alive = self.redis.set(PREFIX + "alive:" + self.process, "1", ex=max(1, round(self.ttl)), get=True)
        if was_alive is None or self._stale:
            self._stale = False
            entries = [
                (f"{room}\n{name}", count) for room, names in self.counts.items() for name, count in names.items()
            ]
            self._replace(args=[PREFIX, self.process, "replace", *(part for entry in entries for part in entry)])
            if was_alive is None and entries and self._beaten:
                logger.warning("presence: wrote this process's %d entries to Redis again", len(entries))
        self._beaten = True
        for process in self.redis.smembers(PREFIX + "procs"):
            if process != self.process and not self.redis.exists(PREFIX + "alive:" + process):
                reaped = self._replace(args=[PREFIX, process, "reap"])
                if reaped:
                    logger.warning("presence: process %s stopped renewing; removed its %d entries", process, reaped)
