from __future__ import annotations

import uuid

import pytest

from .helpers import Client, ServerProcess


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


@pytest.fixture
def clients():
    """Make connected clients; all are closed after the test."""
    made: list[Client] = []

    def connect(url: str, transport: str = "websocket", connect: bool = True, **options) -> Client:
        client = Client(url, transport, **options)
        made.append(client)
        return client.connect() if connect else client

    yield connect
    for client in made:
        client.close()
