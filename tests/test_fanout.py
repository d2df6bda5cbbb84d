"""Broadcast delivery: every client gets every message in order; a stalled client is cut off alone."""

from __future__ import annotations

import contextlib
import socket
import threading

import pytest
import websocket

from .helpers import RawSocket, wait_until
from .test_operations import metric_values


def test_every_websocket_client_gets_every_broadcast_in_order(server, clients, room):
    listeners = [RawSocket(server.url, {"room": room, "name": f"l{n}"}) for n in range(10)]
    sender = clients(server.url, auth={"room": room, "name": "sender"})
    sent = [sender.say(f"burst {n}")["id"] for n in range(100)]

    for listener in listeners:
        assert [message["id"] for message in listener.next_events(len(sent), "message")] == sent
        listener.close()


def test_every_polling_client_gets_every_broadcast(server, clients, room):
    listeners = [clients(server.url, "polling", auth={"room": room, "name": f"l{n}"}) for n in range(10)]
    for listener in listeners:
        listener.wait_for("welcome")
    sender = clients(server.url, auth={"room": room, "name": "sender"})
    sent = [sender.say(f"burst {n}")["id"] for n in range(100)]

    for listener in listeners:
        # More than 16 packets wait between polls: the server hands them out 16 at a time,
        # the most python-engineio's client accepts in one response.
        received = [listener.wait_for("message")["id"] for _ in sent]
        assert sorted(received) == sent  # the python client may reorder (a thread per event)


def test_a_stalled_client_is_dropped_and_delays_nobody(fresh_server, clients, room):
    server = fresh_server(SOCKETIO_MAX_BACKLOG="20")
    # Connects and joins, then never reads: its kernel buffers fill, then its backlog.
    stalled = RawSocket(
        server.url, {"room": room, "name": "stalled"}, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
    )
    follower = RawSocket(server.url, {"room": room, "name": "follower"})
    followed: list[str] = []  # read as it arrives, as a live client does

    def follow() -> None:
        with contextlib.suppress(Exception):  # ends when the test closes the socket
            while True:
                followed.append(follower.next_events(1, "message")[0]["text"])

    threading.Thread(target=follow, daemon=True).start()
    sender = clients(server.url, auth={"room": room, "name": "sender"})

    text = "x" * 1000
    for number in range(5000):
        assert sender.say(f"{number} {text[:990]}")["ok"] is True
        if number % 100 == 99 and metric_values(server).get("socketio_slow_clients_dropped_total"):
            break
    else:
        pytest.fail("the stalled client was never dropped")

    assert "dropping" in server.log() and "reads too slowly" in server.log()
    wait_until(lambda: len(followed) == number + 1, what="the follower to get every message")
    assert [text.split()[0] for text in followed] == [str(n) for n in range(number + 1)]
    wait_until(lambda: metric_values(server)["socketio_connected_clients"] == 2, what="the stalled client to go")
    stalled.frames_until_closed()  # the server really closed the connection: it ends after what was sent
    stalled.close()
    follower.close()  # ends the reader thread


def test_a_client_that_never_reads_its_replies_is_dropped(fresh_server, clients, room):
    server = fresh_server(SOCKETIO_MAX_BACKLOG="20")
    bystander = clients.join(server.url, room, "bystander")
    flooder = RawSocket(
        server.url, {"room": room, "name": "flooder"}, sockopt=((socket.SOL_SOCKET, socket.SO_RCVBUF, 4096),)
    )
    frame = '420["' + "e" * 50 + '"]'  # an unknown event: each one is answered with an error
    sent = 0
    with contextlib.suppress(OSError, websocket.WebSocketException):
        while sent < 200_000:  # ends when the server closes the connection
            flooder.send(frame)
            sent += 1
    assert sent < 200_000, "the server never dropped the client"
    assert bystander.say("unaffected")["ok"] is True
    assert server.log().count("reads too slowly") == 1
