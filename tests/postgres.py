"""PostgreSQL for the tests, started for real: Debian's ``postgresql`` binaries, in a temporary directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import psycopg

from .helpers import free_port, wait_until

# Debian installs the server programs here, not on PATH (pg_ctlcluster wraps them for system clusters).
BINARIES = Path("/usr/lib/postgresql/15/bin")


class PostgresServer:
    """A PostgreSQL cluster of its own on a free port, TCP on 127.0.0.1 only, every user trusted.

    ``initdb`` and ``pg_ctl`` refuse to run as root: as root they run as the
    ``postgres`` user, in a directory it owns (outside pytest's, which only
    root may enter). Nothing is synced to disk: a crash loses it all, which a
    test never minds.
    """

    def __init__(self) -> None:
        assert (BINARIES / "initdb").exists(), "install Debian's postgresql (tests/run.sh does)"
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="chat-postgres-"))
        self.data = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.workdir, "postgres", "postgres")
            self._as_owner = ["runuser", "-u", "postgres", "--"]

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def _run(self, *command: str | Path) -> None:
        subprocess.run([*self._as_owner, *map(str, command)], check=True, capture_output=True, cwd=self.workdir)

    def start(self) -> PostgresServer:
        if not self.data.exists():
            self._run(BINARIES / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync")
        options = " ".join(
            [
                f"-p {self.port}",
                "-c listen_addresses=127.0.0.1",
                "-c unix_socket_directories=''",
                # Room to count what the chat opens (a leak shows as a number, not as refused connections).
                "-c max_connections=500",
                "-c fsync=off -c synchronous_commit=off -c full_page_writes=off",
            ]
        )
        self._run(BINARIES / "pg_ctl", "start", "-D", self.data, "-l", self.log_path, "-w", "-o", options)
        wait_until(self.answers, what=f"postgres on port {self.port} (log: {self.log_path})")
        return self

    def answers(self) -> bool:
        try:
            with psycopg.connect(self.url(), connect_timeout=1):
                return True
        except psycopg.OperationalError:
            return False

    def execute(self, sql: str, *params: object, database: str = "postgres") -> list[tuple]:
        """Run one statement (autocommit) and return its rows."""
        with psycopg.connect(self.url(database), autocommit=True) as connection:
            cursor = connection.execute(sql, params or None)
            return cursor.fetchall() if cursor.description else []

    def create_database(self) -> str:
        """A new, empty database; its URL."""
        name = "chat_" + uuid.uuid4().hex[:12]
        self.execute(f"CREATE DATABASE {name}")
        return self.url(name)

    def connections_to(self, url: str) -> int:
        """How many client connections the database of ``url`` has (``pg_stat_activity``), not counting this one."""
        database = url.rsplit("/", 1)[1]
        query = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()"
        return self.execute(query, database)[0][0]

    def terminate_connections_to(self, url: str) -> int:
        """Close every client connection of that database from the server's side (as a restart would)."""
        database = url.rsplit("/", 1)[1]
        query = "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s"
        return self.execute(query, database)[0][0]

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(BINARIES / "pg_ctl", "stop", "-D", self.data, "-m", "immediate", "-w")
        shutil.rmtree(self.workdir, ignore_errors=True)
