"""The chat as its users see it, over WebSocket, long-polling and polling upgraded to WebSocket."""

from __future__ import annotations

import pytest

from .helpers import TRANSPORTS, RawSocket, wait_until

transports = pytest.mark.parametrize("transport", list(TRANSPORTS))


@transports
def test_history_holds_the_last_15_messages_oldest_first(server, clients, room, transport):
    writer = clients.join(server.url, room, "writer", transport)
    for number in range(20):
        assert writer.say(f"message {number}")["ok"] is True

    reader = clients.join(server.url, room, "reader", transport)
    history = reader.wait_for("history")
    assert [message["text"] for message in history] == [f"message {n}" for n in range(5, 20)]
    assert {message["name"] for message in history} == {"writer"}
    assert all({"id", "name", "text", "time"} <= message.keys() for message in history)


@transports
def test_broadcast_reaches_the_others_and_not_the_sender(server, clients, room, transport):
    alice = clients.join(server.url, room, "alice", transport)
    bob = clients.join(server.url, room, "bob", transport)
    carol = clients.join(server.url, room, "carol", "websocket")

    answer = alice.say("hello room")

    for other in (bob, carol):
        message = other.wait_for("message")
        assert message["text"] == "hello room"
        assert message["name"] == "alice"
        assert message["id"] == answer["id"]


def test_sender_does_not_get_its_own_broadcast(server, clients, room):
    listener = clients.join(server.url, room, "listener")
    alice = RawSocket(server.url, {"room": room, "name": "alice"})
    answer = alice.call("message", "hello room")
    assert listener.wait_for("message")["id"] == answer["id"]
    alice.call("sync")  # answered after anything sent to alice before it (frames are read in order)
    assert alice.events("message") == []
    alice.close()


@transports
def test_ack_carries_the_stored_id(server, clients, room, transport):
    alice = clients.join(server.url, room, "alice", transport)
    first = alice.say("one")
    second = alice.say("two")
    assert first == {"ok": True, "id": first["id"]}
    assert second["id"] > first["id"]

    reader = clients.join(server.url, room, "reader")
    ids = {message["text"]: message["id"] for message in reader.wait_for("history")}
    assert ids == {"one": first["id"], "two": second["id"]}


@transports
def test_announcements_on_connect_and_disconnect(server, clients, room, transport):
    alice = clients.join(server.url, room, "alice")
    bob = clients.join(server.url, room, "bob", transport)
    assert alice.wait_for("announcement") == {"kind": "join", "name": "bob", "text": "bob joined", "online": True}

    bob.close()
    assert alice.wait_for("announcement") == {"kind": "leave", "name": "bob", "text": "bob left", "online": False}


def test_welcome_names_the_client_and_who_is_online(server, clients, room):
    alice = clients(server.url, auth={"room": room, "name": "alice"})
    assert alice.wait_for("welcome") == {"name": "alice", "room": room, "online": ["alice"], "count": 1}
    bob = clients(server.url, auth={"room": room, "name": "bob"})
    assert bob.wait_for("welcome")["online"] == ["alice", "bob"]


def test_guest_name_when_none_is_given(server, clients, room):
    guest = clients(server.url, auth={"room": room})
    assert guest.wait_for("welcome")["name"].startswith("guest-")


def test_room_and_name_from_the_query_string(server, clients, room):
    client = clients(f"{server.url}?room={room}&name=queried")
    assert client.wait_for("welcome") == {"name": "queried", "room": room, "online": ["queried"], "count": 1}


def test_rooms_are_isolated(server, clients, room):
    other_room = room + "-other"
    alice = clients.join(server.url, room, "alice")
    bob = clients.join(server.url, other_room, "bob")
    alice_friend = RawSocket(server.url, {"room": room, "name": "friend"})
    alice_friend.next_events(1, "welcome")

    alice.say("for room one")
    bob.say("for room two")

    assert alice_friend.next_events(1, "message")[0]["text"] == "for room one"
    alice_friend.call("sync")  # answered after anything sent to the friend before it
    assert [m["text"] for m in alice_friend.events("message")] == ["for room one"]
    alice_friend.close()

    assert [m["text"] for m in clients.join(server.url, room, "late").wait_for("history")] == ["for room one"]
    assert [m["text"] for m in clients.join(server.url, other_room, "late").wait_for("history")] == ["for room two"]


def test_logged_in_user_chats_under_their_username(server, clients, room):
    session_key = server.manage(
        "shell",
        "-c",
        "from django.contrib.auth import get_user_model, SESSION_KEY, BACKEND_SESSION_KEY, HASH_SESSION_KEY\n"
        "from django.contrib.sessions.backends.db import SessionStore\n"
        "user, _ = get_user_model().objects.get_or_create(username='margaret')\n"
        "user.set_password('pw'); user.save()\n"
        "s = SessionStore(); s[SESSION_KEY] = str(user.pk)\n"
        "s[BACKEND_SESSION_KEY] = 'django.contrib.auth.backends.ModelBackend'\n"
        "s[HASH_SESSION_KEY] = user.get_session_auth_hash(); s.create(); print(s.session_key)",
    ).splitlines()[-1]
    client = clients(
        server.url, auth={"room": room, "name": "impostor"}, headers={"Cookie": f"sessionid={session_key}"}
    )
    assert client.wait_for("welcome")["name"] == "margaret"

    impostor = clients(server.url, auth={"room": room, "name": "Margaret"}, connect=False)
    assert impostor.try_connect() is not None
    assert impostor.wait_for("connect_error") == {
        "message": "name taken: it belongs to a registered user, who must log in to use it"
    }


def test_history_survives_a_restart(fresh_server, clients, room):
    server = fresh_server()
    writer = clients.join(server.url, room, "writer")
    stored = [writer.say(f"before restart {n}")["id"] for n in range(3)]
    writer.close()
    server.stop()

    server.start()
    history = clients.join(server.url, room, "reader").wait_for("history")
    assert [m["id"] for m in history] == stored
    assert [m["text"] for m in history] == [f"before restart {n}" for n in range(3)]


def test_fifty_concurrent_clients_all_receive_a_broadcast(server, clients, room):
    listeners = [
        clients(server.url, "websocket" if n % 2 else "polling", auth={"room": room, "name": f"user{n}"})
        for n in range(50)
    ]
    sender = clients.join(server.url, room, "sender")
    answer = sender.say("to everyone")
    for listener in listeners:
        assert listener.wait_for("message", lambda m: m["id"] == answer["id"])["text"] == "to everyone"


def test_chat_pages_render(server):
    import requests

    lobby = requests.get(server.url + "/", timeout=10)
    assert lobby.status_code == 200
    assert 'data-room="lobby"' in lobby.text
    other = requests.get(server.url + "/r/kitchen/", timeout=10)
    assert 'data-room="kitchen"' in other.text
    script = requests.get(server.url + "/static/js/vendor/socket.io.esm.min.js", timeout=10)
    assert script.status_code == 200
    assert "Socket.IO v4" in script.text


@transports
def test_any_unicode_text_arrives_intact(server, clients, room, transport):
    sender = clients.join(server.url, room, "sender", transport)
    listener = clients.join(server.url, room, "listener", "websocket")
    text = "héllo 👋 世界 " + "ß" * 300 + " \u202e end"
    assert sender.say(text)["ok"] is True
    assert listener.wait_for("message")["text"] == text


def test_a_flood_is_refused_and_the_sender_recovers(fresh_server, clients, room):
    server = fresh_server(CHAT_RATE_LIMIT_PER_SECOND="2", CHAT_RATE_LIMIT_BURST="3")
    sender = clients.join(server.url, room, "sender")
    listener = clients.join(server.url, room, "listener")
    assert all(sender.say(f"burst {n}")["ok"] for n in range(3))
    assert sender.say("one too many") == {"error": "too many messages: at most 2 a second (bursts of 3)"}
    assert wait_until(lambda: sender.say("later").get("ok"), what="a token to come back") is True
    received = [listener.wait_for("message")["text"] for _ in range(4)]
    assert sorted(received) == ["burst 0", "burst 1", "burst 2", "later"]
