"""Database connections handed from one view to the next, instead of opened for each.

Django gives every thread (here: every greenlet, so every connection's view)
a database connection of its own, opened on first use and closed when the
request ends. A waiting view gives its connection up (see
``ViewServer.on_view_idle``), so that idle clients hold none. Opening one is
the dearest part of a join: with 4,000 clients joining one room at once,
Django's ``get_new_connection`` and ``close`` took 29% of the server's CPU
(py-spy), for two connections a join (the guest name check, then the
history). Here a connection that a view gives up goes to a small free list
(``size`` per database), and the next view that needs one takes it from
there, still open; past ``size`` it is closed as before. It is never shared:
one view has it at a time, and only outside a transaction.

A database with a pool of its own (PostgreSQL with Django's ``"pool"``
option: psycopg_pool) keeps no free list here: a connection given back
returns to the pool, which bounds how many are open; a view that needs one
while all are taken waits for it (:func:`pooled`).
"""

from __future__ import annotations

import _thread
from typing import Any

from django.conf import settings
from django.db import connections

_free: dict[str, list[Any]] = {}
_size = 0
_pooled_aliases: list[str] = []


def install(size: int) -> None:
    """Keep up to ``size`` open connections per database for the next view (0: close them, as Django does)."""
    global _size, _pooled_aliases
    _size = size
    _pooled_aliases = [alias for alias, options in settings.DATABASES.items() if options.get("OPTIONS", {}).get("pool")]
    if size and not hasattr(connections, "_create_unpooled"):
        connections._create_unpooled = connections.create_connection
        connections.create_connection = _create_connection


def _create_connection(alias: str) -> Any:
    free = _free.get(alias)
    if free:
        connection = free.pop()
        # Django checks that a connection stays in the thread that made it: it is this one's now.
        connection._thread_ident = _thread.get_ident()
        # With CONN_HEALTH_CHECKS, one the database closed meanwhile (a PostgreSQL restart) is replaced
        # on first use. Django checks once per request, and a view's request lasts as long as its client.
        connection.health_check_done = False
        connection.close_if_health_check_failed()
        return connection
    return connections._create_unpooled(alias)


def give_back() -> None:
    """The calling view is waiting: its connections go to the free lists (or are closed), and it has none."""
    for connection in connections.all(initialized_only=True):
        if connection.in_atomic_block:
            continue  # closing would break the view's transaction
        free = _free.setdefault(connection.alias, [])
        pooled = connection.alias in _pooled_aliases  # closing gives it back to its pool
        if not pooled and len(free) < _size and connection.connection is not None and not connection.errors_occurred:
            free.append(connection)
        else:
            connection.close()
        del connections[connection.alias]


def pooled() -> bool:
    """Whether a database's connections come from a pool: a view should give its own back as soon as it waits.

    Taking one from the pool again costs next to nothing, while one kept for a
    client that has gone quiet is one the other views may be queueing for.
    """
    return bool(_pooled_aliases)
