"""What a refused or flooding client leaves in the log: one line each, not one per packet."""

from __future__ import annotations

import logging
import sys

from socketio_django.logs import RateLimit

from .helpers import RawSocket, wait_until


def test_a_refused_client_takes_one_line(fresh_server, clients):
    server = fresh_server()
    refused = clients(server.url, connect=False, auth={"room": "lobby", "name": "\u202eevil"})
    assert refused.try_connect() is not None
    wait_until(lambda: "refused id=" in server.log(), what="the refusal line")
    lines = [line for line in server.log().splitlines() if "/socket.io/" in line or "refused" in line]
    # Django's "Bad Request: /socket.io/" said the same again, for every refused client.
    assert len(lines) == 1, lines
    assert "reason=" in lines[0]


def test_a_client_over_its_rate_is_logged_once_per_streak(fresh_server):
    server = fresh_server(CHAT_RATE_LIMIT_PER_SECOND="1", CHAT_RATE_LIMIT_BURST="2")
    flooder = RawSocket(server.url, {"room": "lobby", "name": "flooder"})
    replies = [flooder.call("message", f"spam {number}") for number in range(200)]
    refused = [reply for reply in replies if "error" in reply]
    assert len(refused) >= 190 and refused[0]["error"].startswith("too many messages")
    flooder.call("members", {})  # handled after every message: the log has all it will get
    flooder.close()
    rejected = [line for line in server.log().splitlines() if "rejected" in line and "flooder" in line]
    # Told every time, logged once a streak (a message that passes starts a new one).
    assert 1 <= len(rejected) <= 1 + len(replies) - len(refused), rejected


def test_one_bug_set_off_again_and_again_does_not_hide_another():
    limit = RateLimit(burst=3, interval=60)

    def record(error: Exception) -> logging.LogRecord:
        try:
            raise error
        except Exception:
            return logging.LogRecord(
                "django.request", logging.ERROR, __file__, 1, "Internal Server Error: %s", ("/x",), sys.exc_info()
            )

    assert [limit.filter(record(KeyError("a"))) for _ in range(5)] == [True, True, True, False, False]
    assert limit.filter(record(ValueError("b")))  # another bug: a budget of its own
