"""Broadcast delivery: every client gets every message in order; a stalled client is cut off alone."""

from __future__ import annotations

import socket

import pytest

from .helpers import RawSocket, wait_until
from .test_operations import metric_values


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_every_client_gets_every_broadcast_in_order(server, clients, room, transport):
    listeners = [clients(server.url, transport, auth={"room": room, "name": f"l{n}"}) for n in range(10)]
    for listener in listeners:
        listener.wait_for("welcome")
    sender = clients(server.url, auth={"room": room, "name": "sender"})
    sent = [sender.say(f"burst {n}")["id"] for n in range(100)]

    for listener in listeners:
        received = [listener.wait_for("message")["id"] for _ in sent]
        assert received == sent


def test_a_stalled_client_is_dropped_and_delays_nobody(fresh_server, clients, room):
    server = fresh_server(SOCKETIO_MAX_BACKLOG="20")
    # Connects and joins, then never reads: its kernel buffers fill, then its backlog.
    stalled = RawSocket(
        server.url, {"room": room, "name": "stalled"}, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
    )
    follower = clients(server.url, auth={"room": room, "name": "follower"})
    follower.wait_for("welcome")
    sender = clients(server.url, auth={"room": room, "name": "sender"})

    text = "x" * 1000
    for number in range(5000):
        assert sender.say(f"{number} {text[:990]}")["ok"] is True
        if number % 100 == 99 and metric_values(server).get("socketio_slow_clients_dropped_total"):
            break
    else:
        pytest.fail("the stalled client was never dropped")

    assert "dropping" in server.log() and "reads too slowly" in server.log()
    for expected in range(number + 1):
        assert follower.wait_for("message")["text"].startswith(f"{expected} ")
    wait_until(lambda: metric_values(server)["socketio_connected_clients"] == 2, what="the stalled client to go")
    stalled.close()
