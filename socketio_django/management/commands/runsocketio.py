"""``manage.py runsocketio [addr:]port``: Django and Socket.IO on one gevent server.

It follows ``runserver``: the same address syntax, the auto-reloader
(``--noreload`` turns it off), the system checks and the warning about
unapplied migrations (``--migrate`` applies them instead). SIGTERM or Ctrl-C
shuts down gracefully within ``SOCKETIO_SHUTDOWN_TIMEOUT`` seconds.

gevent must patch the standard library before Django loads: ``manage.py``
does that when its first argument is ``runsocketio``.
"""

from __future__ import annotations

import errno
import gc
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections

from socketio_django.conf import get_socketio_application, setting
from socketio_django.server import SocketIOServer

BIND_ERRORS = {
    errno.EACCES: "You don't have permission to access that port.",
    errno.EADDRINUSE: "That port is already in use.",
    errno.EADDRNOTAVAIL: "That IP address can't be assigned to.",
}


class Command(RunserverCommand):
    help = "Starts the Socket.IO server: the Django site and its socket views on one gevent server."
    default_port = "9000"

    def add_arguments(self, parser: Any) -> None:
        super().add_arguments(parser)
        parser.add_argument("--migrate", action="store_true", help="Apply unapplied migrations before serving.")

    def inner_run(self, *args: Any, **options: Any) -> None:
        from django.utils import autoreload

        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        if options["migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        self.check_migrations()
        for connection in connections.all(initialized_only=True):
            connection.close()

        try:
            server = SocketIOServer((self.addr, int(self.port)), get_socketio_application())
            server.start()
        except OSError as error:
            self.stderr.write(f"Error: {BIND_ERRORS.get(error.errno, error)}")
            sys.exit(1)
        # What start-up loaded stays: keep the garbage collector from scanning it again and again.
        gc.freeze()
        address = f"[{self.addr}]" if self._raw_ipv6 else self.addr
        self.stdout.write(
            f"Socket.IO server listening on http://{address}:{server.server_port}/\nQuit the server with CONTROL-C."
        )
        server.serve_until_stopped(setting("SOCKETIO_SHUTDOWN_TIMEOUT"))
