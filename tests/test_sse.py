"""GET /r/<room>/events: a room's messages as Server-Sent Events, read as curl -N or EventSource would."""

from __future__ import annotations

import json
import threading

import requests

from .helpers import WAIT, RawSocket
from .test_publish import welcomed
from .test_scale_out import raw_sockets_on_every_worker


class EventStream:
    """A streaming GET of a room's events, parsed as EventSource does; :meth:`next` fails after WAIT silent seconds."""

    def __init__(self, url: str, room: str, last_event_id: int | None = None, query: str = "") -> None:
        headers = {"Last-Event-ID": str(last_event_id)} if last_event_id is not None else {}
        self.response = requests.get(f"{url}/r/{room}/events{query}", headers=headers, stream=True, timeout=WAIT)
        self.response.raise_for_status()
        self.lines = self.response.iter_lines(chunk_size=None, decode_unicode=True)
        #: The id of the last event received (what an EventSource sends back as Last-Event-ID).
        self.last_id: int | None = None
        self.comments: list[str] = []

    def next(self, count: int) -> list[dict]:
        """The next ``count`` events' payloads."""
        events: list[dict] = []
        fields: dict[str, str] = {}
        while len(events) < count:
            line = next(self.lines)
            if line.startswith(":"):
                self.comments.append(line)
            elif line:
                name, _, value = line.partition(":")
                fields[name] = fields.get(name, "") + value.removeprefix(" ")
            elif "data" in fields:  # a blank line ends an event
                assert fields.get("event", "message") == "message"
                payload = json.loads(fields["data"])
                assert fields["id"] == str(payload["id"])
                self.last_id = payload["id"]
                events.append(payload)
                fields = {}
            else:
                fields = {}
        return events

    def close(self) -> None:
        self.response.close()


def ids(messages: list[dict]) -> list[int]:
    return [message["id"] for message in messages]


def test_the_stream_sends_the_history_then_live_messages_in_the_order_socketio_clients_see(server, clients, room):
    writer = clients.join(server.url, room, "writer")
    history = [writer.say(f"before {n}")["id"] for n in range(3)]
    stream = EventStream(server.url, room)
    assert stream.response.headers["Content-Type"].startswith("text/event-stream")
    assert stream.response.headers["Cache-Control"] == "no-cache"
    assert ids(stream.next(3)) == history
    watcher = welcomed([RawSocket(server.url, {"room": room, "name": "watcher"})])[0]

    # Two senders at once, over both transports: the stream's order is the Socket.IO clients' order.
    senders = [clients.join(server.url, room, transport, transport) for transport in ("websocket", "polling")]
    threads = [
        threading.Thread(target=lambda sender=sender: [sender.say(f"{n}") for n in range(10)]) for sender in senders
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    live = stream.next(20)
    assert live == watcher.next_events(20, "message")
    assert {message["name"] for message in live} == {"websocket", "polling"}
    watcher.close()
    stream.close()


def test_a_reader_resumes_with_last_event_id_or_last_id_from_the_stored_history(server, clients, room):
    writer = clients.join(server.url, room, "writer")
    stream = EventStream(server.url, room)
    sent = [writer.say(f"message {n}")["id"] for n in range(5)]
    assert ids(stream.next(5)) == sent
    stream.close()

    missed = [writer.say(f"missed {n}")["id"] for n in range(20)]  # more than a history's 15
    back = EventStream(server.url, room, last_event_id=stream.last_id)
    assert ids(back.next(20)) == missed
    live = writer.say("live")["id"]
    assert ids(back.next(1)) == [live]  # nothing twice
    back.close()

    by_query = EventStream(server.url, room, query=f"?last_id={sent[2]}")
    assert ids(by_query.next(23)) == sent[3:] + missed + [live]
    by_query.close()


def test_a_bad_room_or_last_id_is_refused_with_400(server, room):
    assert requests.get(f"{server.url}/r/{'x' * 65}/events", timeout=WAIT).status_code == 400
    answer = requests.get(f"{server.url}/r/{room}/events", headers={"Last-Event-ID": "nope"}, timeout=WAIT)
    assert answer.status_code == 400 and "last" in answer.text
    assert requests.get(f"{server.url}/r/{room}/events?last_id=-1", timeout=WAIT).status_code == 400


def test_streams_on_every_worker_and_instance_get_every_message_in_the_socketio_order(instances, room):
    first, second = instances(workers=3), instances(workers=1)
    # Senders on every worker of both instances; streams on whichever worker takes them.
    senders = welcomed(raw_sockets_on_every_worker(first, room, "a") + raw_sockets_on_every_worker(second, room, "b"))
    listener = welcomed([RawSocket(second.url, {"room": room, "name": "listener"})])[0]
    streams = [EventStream(instance.url, room) for instance in (first,) * 8 + (second,) * 2]

    def send(socket: RawSocket) -> None:
        for n in range(5):
            socket.call("message", f"{socket.auth['name']} {n}")

    threads = [threading.Thread(target=send, args=(sender,)) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    count = 5 * len(senders)
    order = ids(listener.next_events(count, "message"))
    assert len(set(order)) == count
    for stream in streams:
        assert ids(stream.next(count)) == order, "a stream saw another order than a Socket.IO client"
        stream.close()
    for socket in [*senders, listener]:
        socket.close()
