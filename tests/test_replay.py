"""A client that comes back says the last message it saw, and gets every message it missed."""

from __future__ import annotations

import threading

import pytest

from .helpers import TRANSPORTS, RawSocket


def say_all(client, texts) -> list[int]:
    return [client.say(text)["id"] for text in texts]


@pytest.mark.parametrize("transport", list(TRANSPORTS))
def test_a_returning_client_gets_what_it_missed_in_order_instead_of_the_history(server, clients, room, transport):
    writer = clients.join(server.url, room, "writer")
    seen = say_all(writer, ["before 1", "before 2"])
    missed = say_all(writer, [f"missed {n}" for n in range(20)])  # more than the 15 of a history

    back = clients(server.url, transport, auth={"room": room, "name": "back", "last_id": seen[-1]})
    replay = back.wait_for("replay")
    assert replay["complete"] is True and replay["after"] == seen[-1]
    assert [message["id"] for message in replay["messages"]] == missed
    back.wait_for("welcome")
    assert back.received("history") == []  # nothing twice
    writer.say("live")
    assert back.wait_for("message")["text"] == "live"


def test_a_client_away_for_too_long_is_told_it_missed_some(fresh_server, clients, room):
    server = fresh_server(CHAT_REPLAY_MAX="5")
    writer = clients.join(server.url, room, "writer")
    first = writer.say("seen")["id"]
    say_all(writer, [f"missed {n}" for n in range(8)])

    back = clients(server.url, auth={"room": room, "name": "back", "last_id": first})
    assert back.wait_for("replay") == {"after": first, "messages": [], "complete": False}
    assert [message["text"] for message in back.wait_for("history")] == ["seen", *(f"missed {n}" for n in range(8))]


def test_replay_comes_from_the_database_across_a_restart(fresh_server, clients, room):
    server = fresh_server()
    writer = clients.join(server.url, room, "writer")
    seen = writer.say("seen")["id"]
    missed = say_all(writer, ["one", "two"])
    writer.close()
    server.stop()
    server.start()
    back = clients(server.url, auth={"room": room, "name": "back", "last_id": seen})
    assert [message["id"] for message in back.wait_for("replay")["messages"]] == missed


def test_reconnecting_again_and_again_under_live_traffic_loses_and_repeats_nothing(server, clients, room):
    sender = clients.join(server.url, room, "sender")
    sent: list[int] = []
    done = threading.Event()

    def send() -> None:
        while not done.is_set():
            sent.append(sender.say(f"tick {len(sent)}")["id"])

    ticker = threading.Thread(target=send)
    ticker.start()
    received: list[int] = []
    try:
        last_id = 0
        for _ in range(15):  # each connection reads a little, then drops, and the next one says where it was
            reader = RawSocket(server.url, {"room": room, "name": "reader", "last_id": last_id})
            received += [message["id"] for message in reader.next_events(1, "replay")[0]["messages"]]
            received += [message["id"] for message in reader.next_events(5, "message")]
            reader.close()
            last_id = received[-1]
    finally:
        done.set()
        ticker.join()
    assert len(received) >= 75
    assert received == sent[: len(received)], "a message was lost, repeated or reordered"


def test_across_workers_a_returning_client_gets_what_it_missed(instances, clients, room):
    server = instances(workers=3)
    writer = clients.join(server.url, room, "writer", "polling")
    seen = writer.say("seen")["id"]
    missed = say_all(writer, ["one", "two", "three"])
    for _ in range(3):  # whichever worker the kernel picks
        back = clients(server.url, "websocket", auth={"room": room, "name": "back", "last_id": seen})
        assert [message["id"] for message in back.wait_for("replay")["messages"]] == missed
        back.close()


@pytest.mark.parametrize("last_id", [-1, "12", 1.5, True, [3]])
def test_a_bad_last_id_is_refused_with_a_reason(server, clients, room, last_id):
    client = clients(server.url, auth={"room": room, "name": "odd", "last_id": last_id}, connect=False)
    assert client.try_connect() is not None
    assert client.wait_for("connect_error") == {"message": "invalid last_id: use the id of the last message seen"}
