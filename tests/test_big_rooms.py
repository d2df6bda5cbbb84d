"""Big rooms: hundreds join at once, nobody is dropped, and presence stays cheap and correct."""

from __future__ import annotations

import pytest
import websocket

from .helpers import RawSocket, wait_until

BIG_ROOM = {
    # Small enough that a few hundred clients make a "big" room, and a slow-reader bound that
    # one announcement per join per client (what the server used to send) would overflow.
    "CHAT_PRESENCE_NAMES_UP_TO": "20",
    "CHAT_MEMBERS_PAGE": "50",
    "CHAT_PRESENCE_COUNT_EVERY": "0.5",
    "SOCKETIO_MAX_BACKLOG": "50",
}
CROWD = 300


@pytest.fixture
def big_server(fresh_server):
    return fresh_server(**BIG_ROOM)


def crowd(server, room: str, count: int, prefix: str = "p") -> list[RawSocket]:
    """``count`` raw WebSocket clients in ``room``, each having read its welcome."""
    people = [RawSocket(server.url, {"room": room, "name": f"{prefix}{n:04d}"}) for n in range(count)]
    for person in people:
        person.next_events(1, "welcome")
    return people


def test_hundreds_join_one_room_and_nobody_is_dropped(big_server, room):
    people = crowd(big_server, room, CROWD)

    for joined, person in enumerate(people, start=1):
        welcome = person.events("welcome")[0]
        # Bounded: the first names and the total, never the whole room.
        assert welcome["count"] >= joined
        assert welcome["online"] == sorted(welcome["online"])
        assert len(welcome["online"]) == min(50, welcome["count"])
    # Everyone learns the room's final count, and is still connected (nobody dropped as slow).
    for person in people:
        while person.events("presence")[-1:] != [{"count": CROWD}]:
            person.next_events(1, "presence")
    assert "reads too slowly" not in big_server.log()
    # No one was told of each arrival: past 20 people the room hears counts only.
    assert max(len(person.events("announcement")) for person in people) <= 20
    sender, listener = people[0], people[-1]
    sent = sender.call("message", "hello, crowd")
    assert listener.next_events(1, "message")[0]["id"] == sent["id"]
    for person in people:
        person.close()


def test_the_member_list_comes_in_pages(big_server, room):
    people = crowd(big_server, room, 120)
    asker = people[0]
    names, after = [], None
    while True:
        page = asker.call("members", {"after": after})
        assert page["count"] == 120
        if not page["names"]:
            break
        assert len(page["names"]) <= 50
        names += page["names"]
        after = page["names"][-1]
    assert names == sorted(f"p{n:04d}" for n in range(120))
    assert asker.call("members", {"after": 5}) == {"error": "after must be a name"}
    for person in people:
        person.close()


def test_a_small_room_names_who_came_in_one_batch(big_server, room):
    first = RawSocket(big_server.url, {"room": room, "name": "first"})
    first.next_events(1, "welcome")
    # Ten arrive within one presence window: each is announced once, to whoever did not see them in its welcome.
    arrivals = [RawSocket(big_server.url, {"room": room, "name": f"a{n}"}) for n in range(10)]
    announced = [note["name"] for note in first.next_events(10, "announcement")]
    assert sorted(announced) == [f"a{n}" for n in range(10)]
    assert all(note["kind"] == "join" and note["online"] is True for note in first.events("announcement"))
    everyone = {"first", *announced}
    for person in arrivals:
        person.call("sync")  # answered after everything the server sent it before
        # What it was told plus what its welcome listed is everyone, and nobody twice.
        told = [note["name"] for note in person.events("announcement")]
        listed = person.events("welcome")[0]["online"]
        assert sorted(told + listed) == sorted(everyone)

    arrivals[3].close()
    assert first.next_events(1, "announcement") == [{"kind": "leave", "name": "a3", "text": "a3 left", "online": False}]
    for person in [first, *arrivals]:
        person.close()


def test_watchers_of_a_big_room_hear_who_came_and_went(big_server, room):
    people = crowd(big_server, room, 30)
    watcher, other = people[0], people[1]
    assert watcher.call("members", {"watch": True})["count"] == 30

    newcomer = RawSocket(big_server.url, {"room": room, "name": "newcomer"})
    change = watcher.next_events(1, "presence")[0]
    while "newcomer" not in change.get("joined", []):  # plain counts, or the crowd's own arrival, may come first
        change = watcher.next_events(1, "presence")[0]
    assert (change["count"], change["left"]) == (31, [])
    other.call("sync")
    assert all("joined" not in event for event in other.events("presence")), "only watchers get names"
    newcomer.close()
    for person in people:
        person.close()


def test_a_burst_to_a_reader_is_not_a_slow_reader(fresh_server, room):
    """Frames waiting for the loop turn's end are not unread bytes: only what the kernel refused counts."""
    server = fresh_server(SOCKETIO_MAX_BACKLOG="5")
    listener = RawSocket(server.url, {"room": room, "name": "listener"})
    sender = RawSocket(server.url, {"room": room, "name": "sender"})
    # Twenty messages in one TCP segment: the server broadcasts them all before its next loop turn.
    frames = [sender.event_packet("message", f"burst {n}")[0] for n in range(20)]
    sender.ws.sock.sendall(
        b"".join(websocket.ABNF.create_frame(f, websocket.ABNF.OPCODE_TEXT).format() for f in frames)
    )
    texts = [message["text"] for message in listener.next_events(20, "message")]
    assert texts == [f"burst {n}" for n in range(20)]
    assert "reads too slowly" not in server.log()
    wait_until(lambda: server.log().count("connect id=") >= 2, what="the log")
    listener.close()
    sender.close()
