from __future__ import annotations

import os
import uuid

import pytest

from .helpers import GUNICORN, RUN_EXAMPLE, Client, Instance, ServerProcess, wait_until
from .services import RedisServer


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory):
    """One chat server shared by the tests that only need a running server."""
    process = ServerProcess(tmp_path_factory.mktemp("server")).start()
    yield process
    process.stop()


@pytest.fixture
def fresh_server(tmp_path):
    """A chat server of this test's own, for tests that restart or break it."""
    processes: list[ServerProcess] = []

    def start(**env: str) -> ServerProcess:
        process = ServerProcess(tmp_path, env=env).start()
        processes.append(process)
        return process

    yield start
    for process in processes:
        process.stop()


@pytest.fixture
def room() -> str:
    """A room no other test uses."""
    return "t-" + uuid.uuid4().hex[:12]


class ClientFactory:
    """Makes connected clients, and closes every one it made or adopted."""

    def __init__(self) -> None:
        self.made: list[Client] = []

    def __call__(self, url: str, transport: str = "websocket", connect: bool = True, **options) -> Client:
        client = self.adopt(Client(url, transport, **options))
        return client.connect() if connect else client

    def join(self, url: str, room: str, name: str, transport: str = "websocket", **options) -> Client:
        """A client in ``room`` that has received its history and welcome."""
        client = self(url, transport, auth={"room": room, "name": name}, **options)
        client.wait_for("welcome")
        return client

    def adopt(self, client: Client) -> Client:
        self.made.append(client)
        return client

    def close_all(self) -> None:
        for client in self.made:
            client.close()


@pytest.fixture
def clients():
    """Make connected clients; all are closed after the test."""
    factory = ClientFactory()
    yield factory
    factory.close_all()


@pytest.fixture
def redis_server(tmp_path):
    """A redis-server of this test's own (tests kill, freeze and restart it)."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def instances(tmp_path, redis_server):
    """Start chat instances that share one Redis and one database; all are stopped after the test.

    ``instances(workers=3)`` is Gunicorn with 3 workers (None: its default, one per core),
    ``instances(workers=1)`` is ``run_example.py``.
    """
    started: list[Instance] = []

    def start(workers: int | None = 3, **env: str) -> Instance:
        workdir = tmp_path / f"instance-{len(started)}"
        workdir.mkdir()
        env = {"REDIS_URL": redis_server.url, "CHAT_DATABASE_PATH": str(tmp_path / "chat.sqlite3"), **env}
        if workers == 1:
            instance = Instance(workdir, env=env, command=RUN_EXAMPLE)
        else:
            env["GUNICORN_BIND"] = "127.0.0.1:{port}"
            if workers is not None:
                env["GUNICORN_WORKERS"] = str(workers)
            instance = Instance(workdir, env=env, command=GUNICORN)
        started.append(instance)
        instance.start()
        if workers != 1:
            expected = workers or os.cpu_count()
            wait_until(lambda: len(instance.workers()) == expected, what=f"{expected} workers up")
        return instance

    yield start
    for instance in started:
        instance.stop()


@pytest.fixture(scope="session")
def postgres():
    """One PostgreSQL server for the session's tests (tests/postgres.py); each test makes its own database."""
    from .postgres import PostgresServer

    server = PostgresServer().start()
    yield server
    server.stop()
