"""Log hygiene under attack: what a client did takes one line, and a flood of such lines stays short.

- :class:`ClientErrorsOnOneLine` drops the traceback of records about a
  client's doing (a forged Host header, a connection reset while a view wrote).
- :class:`RefusalsLoggedByTheBridge` drops Django's "Bad Request" line for a
  socket view that refused its client: the bridge's "refused" line says it.
- :class:`RateLimit` lets through a few records of each kind per interval and
  counts the rest: a thousand clients refused in a minute take ten lines.
- :func:`quiet_network_errors` keeps gevent's hub from printing a traceback for
  every greenlet that ended because its client's connection broke, and for
  every accept that found no file descriptor left.
"""

from __future__ import annotations

import errno
import logging
import resource
import ssl
import time
from typing import Any

import gevent
from gevent.baseserver import BaseServer

logger = logging.getLogger("socketio_django")

# Loggers whose records are about a client's request (a forged Host header, a bad CSRF token),
# not about a bug: their tracebacks show Django's code, and an attacker could fill the log with them.
CLIENT_ERROR_LOGGERS = ("django.security.",)
# What a client's connection breaking raises, anywhere: reset, gone, silent, or a TLS session cut or botched.
NETWORK_ERRORS = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError, TimeoutError, ssl.SSLError)
# What accept() raises when the process, or the system, has no file descriptor left.
NO_DESCRIPTORS = (errno.EMFILE, errno.ENFILE)


class ClientErrorsOnOneLine(logging.Filter):
    """Drops the traceback of records from :data:`CLIENT_ERROR_LOGGERS`, or raised by :data:`NETWORK_ERRORS`."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and (
            record.name.startswith(CLIENT_ERROR_LOGGERS) or isinstance(record.exc_info[1], NETWORK_ERRORS)
        ):
            record.exc_info = None
            record.exc_text = None
        return True


class RefusalsLoggedByTheBridge(logging.Filter):
    """Drops ``django.request``'s record of a socket view's 4xx answer (the bridge logs ``refused ... reason=``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name != "django.request" or getattr(record, "status_code", 500) >= 500:
            return True
        request = getattr(record, "request", None)
        return "socketio" not in getattr(request, "environ", {})


class RateLimit(logging.Filter):
    """At most ``burst`` records of one kind every ``interval`` seconds, for warnings and errors.

    A kind is a logger and a message template (``"refused a new client: SOCKETIO_MAX_CLIENTS (%d) reached"``):
    one line per refused client, yet a flood of refused clients takes ``burst``
    lines, the last saying that more are suppressed; the first one let through
    after the interval says how many were. Records below WARNING (a client
    connecting, leaving) are the normal course of things and all pass. A
    record with a traceback is of the kind of its exception and where it was
    raised too: every 500 shares Django's template, and one bug a client can
    set off again and again must not hide another.
    """

    #: Kinds remembered at most (messages formatted before logging, without a template, are a kind each).
    MAX_KINDS = 1000

    def __init__(self, burst: int = 10, interval: float = 60.0) -> None:
        super().__init__()
        self.burst = burst
        self.interval = interval
        #: (logger, template, where an exception came from) -> [start of its interval, let through, suppressed]
        self._kinds: dict[tuple[str, str, str], list] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        now = time.monotonic()
        key = (record.name, str(record.msg), _raised_where(record))
        kind = self._kinds.get(key)
        if kind is None or now - kind[0] >= self.interval:
            if len(self._kinds) >= self.MAX_KINDS:
                self._make_room(now)
            self._kinds[key] = [now, 1, 0]
            if kind is not None and kind[2]:
                self._append(record, f"({kind[2]} more like this suppressed in the last {self.interval:.0f}s)")
            return True
        if kind[1] < self.burst:
            kind[1] += 1
            if kind[1] == self.burst:
                self._append(record, f"(more like this suppressed for {self.interval - (now - kind[0]):.0f}s)")
            return True
        kind[2] += 1
        return False

    def _make_room(self, now: float) -> None:
        """Forget the kinds whose interval has ended, and the oldest if that is not enough."""
        for key in [key for key, kind in self._kinds.items() if now - kind[0] >= self.interval]:
            del self._kinds[key]
        while len(self._kinds) >= self.MAX_KINDS:
            del self._kinds[next(iter(self._kinds))]

    @staticmethod
    def _append(record: logging.LogRecord, note: str) -> None:
        record.msg = f"{record.getMessage()} {note}"
        record.args = None


def _raised_where(record: logging.LogRecord) -> str:
    """``ValueError at views.py:12`` for a record with a traceback (its innermost frame), else ``""``."""
    if not record.exc_info or record.exc_info[2] is None:
        return ""
    tb = record.exc_info[2]
    while tb.tb_next is not None:
        tb = tb.tb_next
    return f"{record.exc_info[0].__name__} at {tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


def quiet_network_errors() -> None:
    """gevent's hub prints no traceback for what a client's connection, or their number, did.

    A client resetting its connection while its handler reads or writes is no
    bug, yet each printed a traceback (hundreds under attack): a greenlet that
    ended with one of :data:`NETWORK_ERRORS` takes one DEBUG line (any
    greenlet's, so one making an outgoing call is still seen with
    ``CHAT_LOG_LEVEL=DEBUG``). A server that
    cannot accept for want of file descriptors (every one held by a client)
    logs one line instead, each time it retries (up to every second). Real
    errors still print theirs.
    """
    hub = gevent.get_hub()
    if "print_exception" in vars(hub):
        return  # done already (a server per listening socket)
    print_exception = hub.print_exception

    def print_one_line_for_client_errors(context: Any, kind: type, error: BaseException, tb: Any) -> None:
        if isinstance(context, BaseServer) and isinstance(error, OSError) and error.errno in NO_DESCRIPTORS:
            limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
            logger.warning("cannot accept connections: %s (at most %d open files)", error.strerror, limit)
        elif isinstance(error, NETWORK_ERRORS):
            logger.debug("%s ended: %s: %s", context, kind.__name__, error)
        else:
            print_exception(context, kind, error, tb)

    hub.print_exception = print_one_line_for_client_errors
