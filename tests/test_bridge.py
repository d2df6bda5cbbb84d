"""The bridge on its own: views other than the chat, views that fail, and idle connections."""

from __future__ import annotations

import json
import threading

import pytest
import requests

from .helpers import RawSocket, ServerProcess, wait_until


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


def test_broadcast_skips_the_sender(bridge_server, clients):
    bob = clients(bridge_server.url, namespace="/echo")
    alice = RawSocket(bridge_server.url, namespace="/echo")
    alice.call("shout")
    bob.wait_for("seen")
    alice.call("round trip")  # answered after anything sent to alice before it
    assert alice.events("seen") == []
    assert alice.events("shout") == [None]  # the echo to the sender itself
    alice.close()


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

    # Views give their connection back once their client has been quiet for SOCKETIO_IDLE_AFTER (1 s):
    # at most SOCKETIO_DB_CONNECTIONS_KEPT (8) stay open, for the next views.
    wait_until(
        lambda: bridge_server.open_files_matching(bridge_server.database) <= 8,
        what=f"open database connections of {len(idle) + 1} idle clients to fall to 8 at most",
    )
    # ...and they come back when the clients talk.
    assert wait_until(lambda: idle[0].say("back")["ok"]) is True


def test_client_that_leaves_before_its_view_accepts_is_forgotten(bridge_server):
    # Over long-polling the leaving (an Engine.IO CLOSE) can arrive while the view still decides.
    url = bridge_server.url + "/socket.io/?EIO=4&transport=polling"
    sid = json.loads(requests.get(url, timeout=10).text[1:])["sid"]
    connecting = threading.Thread(
        target=requests.post, args=(f"{url}&sid={sid}",), kwargs={"data": '40/gate,{"wait":1}', "timeout": 10}
    )
    connecting.start()
    health = bridge_server.url + "/healthz"
    wait_until(lambda: requests.get(health, timeout=10).json()["clients"] == 1, what="the view to start deciding")
    requests.post(f"{url}&sid={sid}", data="1", timeout=10)  # CLOSE
    connecting.join()
    wait_until(lambda: "reason='the client left'" in bridge_server.log(), what="the refusal")
    assert requests.get(health, timeout=10).json()["clients"] == 0


def test_clients_not_yet_accepted_hear_no_broadcasts(bridge_server, clients):
    pending = RawSocket(bridge_server.url, {"wait": 1, "refuse": True}, namespace="/gate")
    member = RawSocket(bridge_server.url, namespace="/gate")
    assert member.call("hello", "the launch codes") == "ok"
    kind = ""
    while kind != "4":  # until the CONNECT_ERROR
        kind, _, data = pending._next_packet()
    assert data == {"message": "members only"}
    assert pending.seen == []
    pending.close()
    member.close()


def test_binary_packet_announcing_too_many_attachments_drops_its_sender(bridge_server, clients):
    bystander = clients(bridge_server.url, namespace="/echo")
    raw = RawSocket(bridge_server.url, namespace="/echo")
    raw.call("ping")
    raw.send('45999-["ping",{"_placeholder":true,"num":0}]')
    raw.frames_until_closed()
    assert "more than 10 binary attachments" in bridge_server.log()
    assert bystander.call("still here") == {"echoed": "still here", "user": None}


def test_binary_payloads_go_through(bridge_server, clients):
    alice = clients(bridge_server.url, namespace="/echo")
    bob = clients(bridge_server.url, namespace="/echo")
    assert alice.call("blob", b"\x00\xffbinary") == {"echoed": "blob", "user": None}
    assert alice.wait_for("blob") == b"\x00\xffbinary"
    assert bob.wait_for("seen")["event"] == "blob"
