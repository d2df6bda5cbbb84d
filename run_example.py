#!/usr/bin/env python
"""Start the chat: Django and Socket.IO on one gevent server.

    python run_example.py [--host 127.0.0.1] [--port 9000]

Creates or migrates the SQLite database first, then serves until Ctrl-C or
SIGTERM (a graceful shutdown). It is ``manage.py runsocketio --migrate
--noreload`` with the chat's defaults.
"""

from gevent import monkey

monkey.patch_all()

import argparse
import os

import django
from django.core.management import call_command


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("CHAT_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("CHAT_PORT", 9000)))
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    django.setup()
    host = f"[{args.host}]" if ":" in args.host else args.host
    call_command("runsocketio", f"{host}:{args.port}", migrate=True, use_reloader=False, skip_checks=False)


if __name__ == "__main__":
    main()
