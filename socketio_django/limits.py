"""Kernel limits a server meets with thousands of clients: open files, and the accept queue.

Every client holds a socket, and a common default soft limit is 1,024 open
files: past about a thousand clients, new connections (and the health check,
and the database) would fail with "Too many open files". The soft limit can
be raised to the hard limit without privileges; the servers do so at start.
"""

from __future__ import annotations

import logging
import resource
from pathlib import Path

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


def listen_backlog() -> int:
    """The kernel's largest accept queue (``net.core.somaxconn``), for bursts of thousands of connections.

    gevent's default, 128 (Gunicorn's, 2,048), overflows when every client reconnects at once
    (after a restart): the kernel then refuses connections the server never sees.
    """
    try:
        return int(Path("/proc/sys/net/core/somaxconn").read_text())
    except (OSError, ValueError):
        return 4096
