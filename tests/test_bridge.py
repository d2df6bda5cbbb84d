"""The bridge on its own: views other than the chat, views that fail, and idle connections."""

from __future__ import annotations

import pytest

from .helpers import ServerProcess, wait_until


@pytest.fixture(scope="module")
def bridge_server(tmp_path_factory):
    """A server whose URLconf adds misbehaving socket views (tests/urls.py)."""
    process = ServerProcess(tmp_path_factory.mktemp("bridge"), env={"DJANGO_SETTINGS_MODULE": "tests.settings"}).start()
    yield process
    process.stop()


@pytest.mark.parametrize("transport", ["websocket", "polling", "upgrade"])
def test_echo_view_proves_the_bridge_is_reusable(bridge_server, clients, transport):
    alice = clients(bridge_server.url, transport, namespace="/echo")
    bob = clients(bridge_server.url, "websocket", namespace="/echo")

    assert alice.call("shout", {"n": 1}) == {"echoed": "shout", "user": None}
    assert alice.wait_for("shout") == {"n": 1}
    assert bob.wait_for("seen") == {"from": alice.sio.get_sid("/echo"), "event": "shout"}
    alice.call("round trip")  # anything sent to alice before this answer has arrived by now
    assert alice.received("seen") == []


def test_view_that_raises_disconnects_only_its_client(bridge_server, clients):
    doomed = clients(bridge_server.url, namespace="/crash")
    survivor = clients(bridge_server.url, namespace="/crash")
    chatter = clients(bridge_server.url, auth={"name": "chatter"})
    assert doomed.call("hello") == "alive"

    doomed.sio.emit("crash", namespace="/crash")
    doomed.wait_for("disconnect")

    assert "RuntimeError: crash requested by the test" in bridge_server.log()
    assert survivor.call("still there?") == "alive"
    assert chatter.say("unaffected")["ok"] is True


@pytest.mark.parametrize(
    ("namespace", "reason"),
    [
        ("/refuse", "members only"),
        ("/broken", "Internal Server Error"),
        ("/nowhere", "Not Found"),
    ],
)
def test_view_that_answers_before_accepting_refuses_the_connection(bridge_server, clients, namespace, reason):
    client = clients(bridge_server.url, namespace=namespace, connect=False)
    assert client.try_connect() is not None
    assert client.wait_for("connect_error") == {"message": reason}
    assert clients(bridge_server.url, namespace="/echo").call("ping") == {"echoed": "ping", "user": None}


def test_idle_clients_hold_no_database_connections(bridge_server, clients, room):
    # Every chat view queries the database when its client joins, then waits in recv().
    idle = [clients(bridge_server.url, auth={"room": room, "name": f"idle{n}"}) for n in range(100)]
    for client in idle:
        client.wait_for("history")
        client.wait_for("welcome")
    talker = clients(bridge_server.url, auth={"room": room, "name": "talker"})
    talker.say("one query more")
    for client in idle:
        client.wait_for("message")

    # Views give their connection back once their client has been quiet for SOCKETIO_IDLE_AFTER (1 s).
    wait_until(
        lambda: bridge_server.open_files_matching(bridge_server.database) <= 2,
        what=f"open database connections of {len(idle) + 1} idle clients to fall to 2 at most",
    )
    # ...and they come back when the clients talk.
    assert wait_until(lambda: idle[0].say("back")["ok"]) is True
