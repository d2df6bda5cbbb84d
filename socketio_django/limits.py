"""The process's open-files limit, raised to what the system allows.

Every client holds a socket, and a common default soft limit is 1,024 open
files: past about a thousand clients, new connections (and the health check,
and the database) would fail with "Too many open files". The soft limit can
be raised to the hard limit without privileges; the servers do so at start.
"""

from __future__ import annotations

import logging
import resource

logger = logging.getLogger("socketio_django")


def raise_open_files_limit() -> int:
    """Raise the soft open-files limit to the hard limit; return the limit now in force (and log it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1_048_576)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError) as error:
            logger.warning("could not raise the open-files limit from %d: %s", soft, error)
    logger.info("open files: at most %d (about that many clients per process)", soft)
    return soft
