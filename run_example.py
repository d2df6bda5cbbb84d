#!/usr/bin/env python
"""Start the chat: Django and Socket.IO on one gevent server.

    python run_example.py [--host 127.0.0.1] [--port 9000]

Creates or updates the SQLite database first, then serves until Ctrl-C.
"""

from gevent import monkey

monkey.patch_all()

import argparse
import contextlib
import os

import django
from django.core.management import call_command
from django.core.wsgi import get_wsgi_application


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("CHAT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CHAT_PORT", 9000)))
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    call_command("migrate", interactive=False, verbosity=0)

    from socketio_django import SocketIOServer
    from socketio_django.conf import server_options

    server = SocketIOServer((args.host, args.port), get_wsgi_application(), **server_options())
    server.start()
    print(f"Chat server listening on http://{args.host}:{server.server_port}/", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
