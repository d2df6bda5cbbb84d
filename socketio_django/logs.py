"""Log filters: what a client got wrong takes one line, not a traceback."""

from __future__ import annotations

import logging

# Loggers whose records are about a client's request (a forged Host header, a bad CSRF token),
# not about a bug: their tracebacks show Django's code, and an attacker could fill the log with them.
CLIENT_ERROR_LOGGERS = ("django.security.",)


class ClientErrorsOnOneLine(logging.Filter):
    """Drops the traceback of records from :data:`CLIENT_ERROR_LOGGERS` (the message says what happened)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith(CLIENT_ERROR_LOGGERS) and record.exc_info:
            record.exc_info = None
            record.exc_text = None
        return True
