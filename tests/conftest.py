from __future__ import annotations

import uuid

import pytest

from .helpers import Client, ServerProcess
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
