"""/healthz tells a load balancer the truth about the database."""

from __future__ import annotations

import sys

import requests

from .helpers import ServerProcess, wait_until


def test_an_unmigrated_database_is_not_ready(tmp_path):
    command = [sys.executable, "manage.py", "runsocketio", "--noreload", "127.0.0.1:{port}"]  # no --migrate
    server = ServerProcess(tmp_path, command=command).start()
    try:
        health = requests.get(server.url + "/healthz", timeout=10)
        assert (health.status_code, health.json()["database"]) == (503, "unmigrated")
        server.manage("migrate", "--no-input")
        wait_until(lambda: requests.get(server.url + "/healthz", timeout=10).status_code == 200, what="ready")
    finally:
        server.stop()
