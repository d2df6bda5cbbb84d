"""Every bad input gets a clear error, hurts nobody else, and loses no stored message."""

from __future__ import annotations

import contextlib
import json
import socket

import pytest
import requests
import websocket

from .helpers import RawSocket, open_descriptors, wait_until


def history(clients, server, room):
    return [message["text"] for message in clients.join(server.url, room, "auditor").wait_for("history")]


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "message is empty"),
        ("   \n\t", "message is empty"),
        (42, "message must be a string"),
        (None, "message must be a string"),
        ({"text": "hi"}, "message must be a string"),
        (["hi"], "message must be a string"),
        ("x" * 1001, "message is too long: 1001 characters, the limit is 1000"),
    ],
)
@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_bad_message_is_rejected_and_neither_stored_nor_broadcast(server, clients, room, transport, text, reason):
    sender = clients.join(server.url, room, "sender", transport)
    listener = clients.join(server.url, room, "listener")
    kept = sender.say("kept")

    assert sender.say(text) == {"error": reason}

    # The connection stays up, and the sender's next message is the first the listener gets after "kept":
    # the bad one was never broadcast (one greenlet sends both, in order).
    after = sender.say("after")
    assert after["ok"] is True
    assert [listener.wait_for("message")["text"] for _ in range(2)] == ["kept", "after"]
    assert history(clients, server, room) == ["kept", "after"]
    assert after["id"] > kept["id"]


def test_message_at_the_length_limit_is_accepted(server, clients, room):
    sender = clients.join(server.url, room, "sender")
    assert sender.say("y" * 1000)["ok"] is True


def test_unknown_event_gets_an_error(server, clients, room):
    sender = clients.join(server.url, room, "sender")
    assert sender.call("shout", "hi") == {"error": "unknown event 'shout'"}
    assert sender.say("still here")["ok"] is True


@pytest.mark.parametrize(
    ("auth", "reason"),
    [
        ({"name": "n" * 33}, "invalid name: use 1-32 printable characters"),
        ({"name": "bell\x07"}, "invalid name: use 1-32 printable characters"),
        ({"name": "   "}, "invalid name: use 1-32 printable characters"),
        ({"name": 7}, "invalid name: it must be a string"),
        ({"room": "../etc"}, "invalid room: use 1-64 letters, digits, '-' or '_'"),
        ({"room": "r" * 65}, "invalid room: use 1-64 letters, digits, '-' or '_'"),
        ({"room": ["lobby"]}, "invalid room: use 1-64 letters, digits, '-' or '_'"),
    ],
)
def test_invalid_name_or_room_refuses_the_connection_with_the_reason(server, clients, auth, reason):
    client = clients(server.url, auth=auth, connect=False)
    assert client.try_connect() is not None
    assert client.wait_for("connect_error") == {"message": reason}


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_oversized_packet_disconnects_only_its_sender(server, clients, room, transport):
    sender = clients.join(server.url, room, "sender", transport)
    bystander = clients.join(server.url, room, "bystander")
    stored = bystander.say("stored before")["id"]

    sender.sio.emit("message", "z" * 70_000)
    sender.wait_for("disconnect")

    assert bystander.say("still chatting")["ok"] is True
    newcomer = clients.join(server.url, room, "newcomer")
    assert [m["id"] for m in newcomer.wait_for("history")][0] == stored
    assert history(clients, server, room) == ["stored before", "still chatting"]


def first_websocket_frame(url: str, origin: str) -> str:
    """The Engine.IO open packet a WebSocket handshake from ``origin`` gets, or "" if it is closed at once."""
    import websocket

    ws = websocket.create_connection(url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket", origin=origin)
    try:
        return ws.recv()
    except websocket.WebSocketConnectionClosedException:
        return ""
    finally:
        ws.close()


def test_foreign_origin_is_refused_over_websocket(server):
    assert first_websocket_frame(server.url, origin="http://evil.example") == ""
    assert first_websocket_frame(server.url, origin=server.url).startswith("0{")


def test_foreign_origin_is_refused_over_polling(server, clients):
    foreign = clients(server.url, "polling", headers={"Origin": "http://evil.example"}, connect=False)
    assert foreign.try_connect() is not None
    assert "http://evil.example is not an accepted origin" in server.log()
    same = clients(server.url, "polling", headers={"Origin": server.url})
    assert same.wait_for("welcome")


def test_allowed_origins_setting_opens_the_server_to_listed_origins(fresh_server, clients):
    server = fresh_server(SOCKETIO_ALLOWED_ORIGINS="http://friend.example")
    assert first_websocket_frame(server.url, origin="http://friend.example").startswith("0{")
    assert first_websocket_frame(server.url, origin="http://evil.example") == ""
    friend = clients(server.url, "polling", headers={"Origin": "http://friend.example"})
    assert friend.wait_for("welcome")


# Each of these gets its sender disconnected.
MALFORMED_FRAMES = [
    "",  # empty Engine.IO packet
    "x",  # unknown Engine.IO packet type
    "4",  # message with no Socket.IO packet
    "4x",  # unknown Socket.IO packet type
    "42",  # event with no data
    "42[",  # truncated JSON
    "42{}",  # event data that is not a list
    "42[]",  # event with no name
    '42[7,"x"]',  # event name that is not a string
    b"\x00\xff\xfe",  # binary garbage
    "40{oops",  # second CONNECT with broken JSON
    "44",  # CONNECT_ERROR from a client
    '42[{"event":"message"},"x"]',  # event name that is an object
    '42["message",' + "9" * 5000 + "]",  # an integer of 5,000 digits
    '42-1["message","x"]',  # a negative ack id
    '42abc["message","x"]',  # an ack id that is no number
    '451-["message",{"_placeholder":true,"num":3}]',  # announces an attachment, points past it
]


@pytest.mark.parametrize("frame", MALFORMED_FRAMES, ids=repr)
def test_malformed_packets_never_affect_other_clients(server, clients, room, frame):
    bystander = clients.join(server.url, room, "bystander")
    before = bystander.say("before")["id"]

    raw = RawSocket(server.url, {"room": room, "name": "raw"})
    raw.send(frame)
    raw.frames_until_closed()

    assert bystander.say("after")["ok"] is True
    texts = history(clients, server, room)
    assert texts[0] == "before" and texts[-1] == "after"
    assert before in [m["id"] for m in clients.join(server.url, room, "auditor2").wait_for("history")]


def test_binary_event_whose_attachment_never_comes_blocks_nobody(server, clients, room):
    bystander = clients.join(server.url, room, "bystander")
    raw = RawSocket(server.url, {"room": room, "name": "raw"})
    raw.send('451-["message",{"_placeholder":true,"num":0}]')
    assert bystander.say("unaffected")["ok"] is True
    raw.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        # Not Engine.IO packets, or too big: that POST is refused and its session closed.
        (b"garbage", 400),
        (b"\xff\xfe", 400),
        (b"4" + b"x" * 200_000, 400),
        # Engine.IO messages that are not Socket.IO packets: the bridge closes that session.
        (b"4:", 200),
        (b'42["message"', 200),
    ],
)
def test_malformed_polling_request_affects_only_its_session(server, clients, room, body, status):
    bystander = clients.join(server.url, room, "bystander", "polling")
    tracebacks = server.log().count("Traceback")
    handshake = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10)
    sid = handshake.text.split('"sid":"')[1].split('"')[0]
    session = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
    assert requests.post(session, data=body, timeout=10).status_code == status  # answered at once
    poll = requests.get(session, timeout=10)  # answered at once with a CLOSE packet ("1"), or refused
    assert poll.status_code == 400 or "1" in poll.text.split("\x1e"), (poll.status_code, poll.text)
    assert bystander.say("unaffected")["ok"] is True
    assert server.log().count("Traceback") == tracebacks


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_deeply_nested_json_disconnects_its_sender_with_one_log_line(fresh_server, clients, room, transport):
    server = fresh_server()
    listener = clients.join(server.url, room, "listener")
    nested = "[" * 10_000 + "]" * 10_000  # deeper than Python's recursion limit, under the 64 KB packet limit
    if transport == "websocket":
        attacker = RawSocket(server.url, {"room": room, "name": "attacker"})
        attacker.send(f'42["message",{nested}]')
        assert attacker.frames_until_closed() is not None
    else:
        attacker = clients.join(server.url, room, "attacker", "polling")
        attacker.sio.eio.send(f'2["message",{nested}]')  # an Engine.IO MESSAGE carrying that Socket.IO packet
        attacker.wait_for("disconnect")
    assert "malformed packet (RecursionError" in server.log()
    assert "Traceback" not in server.log()
    assert listener.say("still here")["ok"] is True


def test_a_malformed_packet_then_a_close_leaves_no_ghost(fresh_server, clients, room):
    server = fresh_server()
    watcher = clients.join(server.url, room, "watcher")
    ghost = RawSocket(server.url, {"room": room, "name": "ghost"})
    ghost.next_events(1, "welcome")
    # In one segment: a packet that is not Engine.IO, then the close handshake.
    frames = [websocket.ABNF.create_frame("x", websocket.ABNF.OPCODE_TEXT), websocket.ABNF.create_frame(b"", 8)]
    ghost.ws.sock.sendall(b"".join(frame.format() for frame in frames))
    ghost.ws.sock.close()
    # Gone at once, not at the ping timeout (45 s).
    assert watcher.wait_for("announcement", lambda note: note["kind"] == "leave")["name"] == "ghost"


@pytest.mark.parametrize("namespace", ["//", "///", "/echo/", "//echo"])
def test_a_namespace_spelled_with_extra_slashes_is_refused(server, namespace):
    # Each would reach the chat's or the echo's view again: one more session on the same connection.
    raw = RawSocket(server.url, {"room": "lobby", "name": "slasher"}, namespace=namespace)
    assert raw.ws.recv() == f'44{namespace},{{"message":"Invalid namespace"}}'
    raw.close()


def test_a_forged_host_header_is_refused_in_one_log_line(fresh_server):
    server = fresh_server()
    assert requests.get(server.url + "/", headers={"Host": "evil.example"}, timeout=10).status_code == 400
    wait_until(lambda: "Invalid HTTP_HOST header: 'evil.example'" in server.log(), what="the log line")
    assert "Traceback" not in server.log()


def polling_session(server) -> str:
    """The URL of a new long-polling session (Engine.IO handshake only)."""
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    return base + "&sid=" + requests.get(base, timeout=10).text.split('"sid":"')[1].split('"')[0]


def test_a_post_for_a_session_its_client_closed_is_refused_400(fresh_server):
    server = fresh_server()
    session = polling_session(server)
    assert requests.post(session, data=b"1", timeout=10).status_code == 200  # the client's CLOSE
    # python-engineio still held the closed session: a POST for it raised KeyError (500, a traceback).
    assert requests.post(session, data=b"40", timeout=10).status_code == 400
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("transport", ["polling", "websocket"])
def test_a_handshake_with_a_forged_host_gets_no_session(fresh_server, transport):
    server = fresh_server()
    url = server.url.replace("http", "ws" if transport == "websocket" else "http")
    if transport == "polling":
        answer = requests.get(f"{url}/socket.io/?EIO=4&transport=polling", headers={"Host": "evil.example"}, timeout=10)
        assert (answer.status_code, answer.json()) == (401, "Invalid host")
    else:
        import websocket

        # gevent-websocket has answered 101 before Engine.IO refuses: the socket closes with no OPEN packet.
        ws = websocket.create_connection(
            f"{url}/socket.io/?EIO=4&transport=websocket", host="evil.example", origin="http://evil.example", timeout=10
        )
        assert ws.recv() == ""
        ws.close()
    wait_until(lambda: "refused a new client: Host 'evil.example' is not allowed" in server.log(), what="the log line")
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("namespace", ["/\U0010b6b6", "/日本"])
def test_a_namespace_outside_latin_1_is_refused_as_unknown_without_a_traceback(fresh_server, namespace):
    server = fresh_server()
    raw = RawSocket(server.url, {"room": "lobby", "name": "wanderer"}, namespace=namespace)
    # Its view's URL could not be built (Django takes PATH_INFO as Latin-1): a traceback, and a 500 refusal.
    assert raw.ws.recv() == f'44{namespace},{{"message":"Not Found"}}'
    raw.close()
    assert "Traceback" not in server.log()


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_an_engineio_packet_nested_too_deep_closes_its_session_with_one_log_line(
    fresh_server, clients, room, transport
):
    # python-engineio reads an Engine.IO packet's data as JSON when it can: here, before Socket.IO sees it.
    server = fresh_server()
    listener = clients.join(server.url, room, "listener")
    nested = "4" + "[" * 10_000 + "]" * 10_000
    if transport == "websocket":
        attacker = RawSocket(server.url, {"room": room, "name": "attacker"})
        attacker.send(nested)
        attacker.frames_until_closed()  # it stayed open, and a traceback was logged
    else:
        session = polling_session(server)
        assert requests.post(session, data=nested.encode(), timeout=10).status_code == 400  # it was a 200
    wait_until(lambda: "maximum recursion depth exceeded" in server.log(), what="the log line")
    assert "Traceback" not in server.log()
    assert listener.say("still here")["ok"] is True


def test_packets_after_a_refused_first_packet_are_ignored(fresh_server, clients):
    # Not a CONNECT (the session is closed for it, in a greenlet of its own), then a CONNECT and an
    # UPGRADE read with it: the CONNECT ran a view for the closing session, and the UPGRADE was
    # answered on the closed one (a traceback).
    server = fresh_server()
    ws = websocket.create_connection(server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket")
    engine_id = json.loads(ws.recv()[1:])["sid"]
    packets = ['42["message","too early"]', '40{"room":"lobby","name":"hasty"}', "5"]
    frames = [websocket.ABNF.create_frame(packet, websocket.ABNF.OPCODE_TEXT) for packet in packets]
    ws.sock.sendall(b"".join(frame.format() for frame in frames))  # in one segment: read at once
    with contextlib.suppress(websocket.WebSocketConnectionClosedException, ConnectionError):
        while ws.recv():  # until the server closes it
            pass
    clients.join(server.url, "lobby", "later")  # after what the server did for the closed session
    log = server.log()
    assert log.count(f"disconnecting {engine_id}") == 1 and "refused" not in log and "Traceback" not in log


# Values and shapes Node's Socket.IO parser refuses and python-socketio took; each disconnects its sender now.
HOSTILE_PACKETS = [
    ['42["message",NaN]'],
    ['42["message",-Infinity]'],
    ['42["message",1e999999]'],  # past a float's range: read as infinity
    ['42["members",{"after":1e999999}]'],
    ['429007199254740992["message","x"]'],  # an ack id past 2**53 - 1: no JavaScript client counts there
    ["42" + "9" * 99 + '["message","x"]'],
    ['40["not","an","object"]'],  # a CONNECT whose auth is not an object
    ['450-["message","x"]'],  # a binary event announcing no attachment: it took the next packet as one
    ['451-["message",{"_placeholder":true,"num":-1}]', b"\x01"],  # -1 was the last attachment
    ['452-["message",{"_placeholder":true,"num":true}]', b"\x01", b"\x02"],  # true was the second
    ['451-["message",{"_placeholder":true,"num":0}]', '42["message","x"]'],  # an attachment that is text
]


@pytest.mark.parametrize("packets", HOSTILE_PACKETS, ids=repr)
def test_hostile_values_disconnect_their_sender_with_one_log_line(fresh_server, clients, room, packets):
    server = fresh_server()
    bystander = clients.join(server.url, room, "bystander")
    hostile = RawSocket(server.url, {"room": room, "name": "hostile"})
    hostile.next_events(1, "welcome")
    for packet in packets:
        hostile.send(packet)
    hostile.frames_until_closed()
    line = f"disconnecting {hostile.engine_id}: malformed packet (ValueError"
    wait_until(lambda: line in server.log(), what="the log line")
    assert server.log().count(f"disconnecting {hostile.engine_id}") == 1
    assert "Traceback" not in server.log()
    assert bystander.say("unaffected")["ok"] is True
    assert "unaffected" in history(clients, server, room) and "x" not in history(clients, server, room)


def test_a_hostile_value_over_long_polling_disconnects_its_sender(fresh_server, clients, room):
    server = fresh_server()
    bystander = clients.join(server.url, room, "bystander")
    hostile = clients.join(server.url, room, "hostile", "polling")
    hostile.sio.eio.send('2["message",NaN]')  # an Engine.IO MESSAGE carrying that Socket.IO packet
    hostile.wait_for("disconnect")
    assert "malformed packet (ValueError: NaN is not JSON)" in server.log()
    assert bystander.say("unaffected")["ok"] is True


def test_an_upgrade_packet_after_a_failed_upgrade_leaks_no_descriptor(fresh_server):
    server = fresh_server()
    session = polling_session(server)
    descriptors = open_descriptors(server)
    ws = websocket.create_connection(session.replace("http", "ws", 1).replace("polling", "websocket"))
    # The probe, a packet that fails the upgrade, then the UPGRADE, read together: the UPGRADE was
    # still handled on the closed connection, and took the timer that was to close its descriptor.
    frames = [websocket.ABNF.create_frame(packet, websocket.ABNF.OPCODE_TEXT) for packet in ("2probe", "6", "5")]
    ws.sock.sendall(b"".join(frame.format() for frame in frames))
    ws.sock.shutdown(socket.SHUT_WR)
    ws.sock.settimeout(10)
    while ws.sock.recv(65536):
        pass
    ws.sock.close()
    wait_until(lambda: open_descriptors(server) <= descriptors, what="the WebSocket's descriptor closed")
    assert "Traceback" not in server.log()


def test_a_burst_of_malformed_packets_takes_one_log_line(fresh_server, room):
    server = fresh_server()
    hostile = RawSocket(server.url, {"room": room, "name": "hostile"})
    hostile.next_events(1, "welcome")
    frames = [websocket.ABNF.create_frame("42[", websocket.ABNF.OPCODE_TEXT) for _ in range(5)]
    hostile.ws.sock.sendall(b"".join(frame.format() for frame in frames))  # read together, before it is closed
    hostile.frames_until_closed()
    wait_until(lambda: f"disconnecting {hostile.engine_id}" in server.log(), what="the log line")
    assert server.log().count(f"disconnecting {hostile.engine_id}") == 1  # it was one a packet


def test_a_polling_post_over_the_packet_limit_is_refused_before_its_body_is_read(server):
    # Bodies up to SOCKETIO_MAX_BODY_SIZE (1 MiB) are read before the application runs; Engine.IO's
    # take no more than SOCKETIO_MAX_PAYLOAD (64 KiB): this one is refused on its announced length.
    session = polling_session(server)
    path = session.split(str(server.port), 1)[1]
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 900000\r\n\r\n".encode())
        answer = sock.recv(4096)  # no byte of the body sent: it waited for it, up to the body timeout
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert requests.get(session, timeout=10).status_code == 400  # and its session is closed
