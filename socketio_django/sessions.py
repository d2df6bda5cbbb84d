"""Session ids that name the process owning them.

Every Engine.IO session id (and the Socket.IO ids, which python-socketio
draws from the same generator) starts with a token that this process picked
at random when it started: ``3f9a2c1e.`` followed by python-engineio's own
random id. Whoever receives a request or a message for a session can tell
which process holds it, with no shared table: :mod:`.handover` passes a
request that reached the wrong Gunicorn worker to the owner, and
:mod:`.redis_fanout` sends an emit for a client of another process to that
process's channel. (Gunicorn gives its workers no stable index, gunicorn
#1352, and pids repeat: a random token does neither.)
"""

from __future__ import annotations

import os
import re
import secrets
from typing import Any

_SID = re.compile(r"([0-9a-f]{8})\.[A-Za-z0-9_-]{20}")
_token: tuple[int, str] | None = None


def process_token() -> str:
    """This process's token: eight hex digits, new in every process (a fork gets its own)."""
    global _token
    if _token is None or _token[0] != os.getpid():
        _token = (os.getpid(), secrets.token_hex(4))
    return _token[1]


def owner_of(sid: Any) -> str | None:
    """The token of the process that owns session ``sid``; None if ``sid`` is no such id."""
    if isinstance(sid, str) and (match := _SID.fullmatch(sid)):
        return match.group(1)
    return None


def install(engineio_server: Any) -> None:
    """Make ``engineio_server`` (and the Socket.IO server above it) hand out ids that name this process."""
    generate = engineio_server.generate_id

    def generate_id() -> str:
        return f"{process_token()}.{generate()}"

    engineio_server.generate_id = generate_id
