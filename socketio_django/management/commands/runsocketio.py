"""``manage.py runsocketio [addr:]port``: Django and Socket.IO on one gevent server.

It follows ``runserver``: the same address syntax, the auto-reloader
(``--noreload`` turns it off), the system checks and the warning about
unapplied migrations (``--migrate`` applies them instead). SIGTERM or Ctrl-C
shuts down gracefully within ``SOCKETIO_SHUTDOWN_TIMEOUT`` seconds; under the
auto-reloader too: its parent process hands the signal to the serving child
and waits for it (Django's would kill the child at once).

gevent must patch the standard library before Django loads: ``manage.py``
does that when its first argument is ``runsocketio``.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import signal
import subprocess
import sys
from typing import Any

from django.core.management import call_command
from django.core.management.commands.runserver import Command as RunserverCommand
from django.db import connections

from socketio_django.conf import get_socketio_application, setting
from socketio_django.limits import raise_open_files_limit
from socketio_django.server import SocketIOServer

# The signals that stop the server gracefully.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)

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

    def run(self, **options: Any) -> None:
        from django.utils import autoreload

        if options["use_reloader"] and os.environ.get(autoreload.DJANGO_AUTORELOAD_ENV) != "true":
            sys.exit(serve_through_reloader())
        super().run(**options)  # the reloader's child (Django's reloader watches files), or --noreload

    def inner_run(self, *args: Any, **options: Any) -> None:
        from django.utils import autoreload

        if options["use_reloader"]:
            # A Ctrl-C reaches the parent and this child alike, and the parent passes it on too:
            # the second must not end the drain the first started (with no handler, it would kill).
            import gevent

            self.repeated_signals = [gevent.signal_handler(signum, lambda: None) for signum in STOP_SIGNALS]
        autoreload.raise_last_exception()
        if not options["skip_checks"]:
            self.stdout.write("Performing system checks...\n\n")
            self.check(display_num_errors=True)
        if options["migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        self.check_migrations()
        for connection in connections.all(initialized_only=True):
            connection.close()

        raise_open_files_limit()
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
        if options["use_reloader"]:
            # Django's reloader watches files in the main thread for ever: this child ends here.
            sys.stdout.flush()
            sys.stderr.flush()
            logging.shutdown()
            os._exit(0)


def serve_through_reloader() -> int:
    """The reloader's parent: run the server in a child, again each time it exits to reload (status 3).

    Django's ``restart_with_reloader`` kills the child when the parent gets
    SIGTERM or Ctrl-C, cutting its graceful shutdown short. Here the parent
    passes the signal on to the child and waits for it to finish.
    """
    from django.utils import autoreload

    environ = {**os.environ, autoreload.DJANGO_AUTORELOAD_ENV: "true"}
    stopping = False
    while True:
        child = subprocess.Popen(autoreload.get_child_arguments(), env=environ, close_fds=False)

        def forward(signum: int, frame: Any, child: subprocess.Popen = child) -> None:
            nonlocal stopping
            stopping = True
            if child.poll() is None:
                child.send_signal(signum)

        previous = {signum: signal.signal(signum, forward) for signum in STOP_SIGNALS}
        try:
            returncode = child.wait()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
        if returncode != 3 or stopping:
            return returncode
