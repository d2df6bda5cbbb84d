"""The WebSocket transport itself (RFC 6455 framing), through the bridge's /echo view."""

from __future__ import annotations

import json
import os
import select
import socket
import struct
import time

import pytest
import requests
import websocket

from .helpers import WAIT, RawSocket, resident_mib

MAX_PAYLOAD = 64 * 1024  # SOCKETIO_MAX_PAYLOAD's default


def client_frame(payload: bytes, opcode: int = 0x1, fin: bool = True, masked: bool = True, rsv: int = 0) -> bytes:
    """A client frame built by hand, so it can break the rules."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first, length | (0x80 if masked else 0))
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, 126 | (0x80 if masked else 0), length)
    else:
        header = struct.pack("!BBQ", first, 127 | (0x80 if masked else 0), length)
    if not masked:
        return header + payload
    mask = os.urandom(4)
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def announced_only(length: int, opcode: int = 0x1, fin: bool = True) -> bytes:
    """The header and mask of a frame announcing ``length`` bytes, without them."""
    return client_frame(b"x" * length, opcode, fin)[: 10 + 4]


def close_code(ws: websocket.WebSocket) -> int:
    """Read until the server's close frame; its status code."""
    while True:
        opcode, frame = ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", frame.data[:2])[0]
        if frame.data == b"2":
            ws.send("3")


@pytest.fixture
def echo(server):
    raw = RawSocket(server.url, namespace="/echo")
    yield raw
    raw.close()


def test_fragmented_message_is_reassembled(echo):
    packet, ack_id = echo.event_packet("shout", {"text": "é" * 50})
    data = packet.encode()
    echo.ws.sock.sendall(
        client_frame(data[:7], fin=False)
        + client_frame(b"", opcode=0x0, fin=False)
        + client_frame(b"ping me", opcode=0x9)  # control frames may come between fragments
        + client_frame(data[7:], opcode=0x0)
    )
    assert echo.reply_to(ack_id) == {"echoed": "shout", "user": None}
    assert echo.events("shout") == [{"text": "é" * 50}]


def test_message_arriving_a_byte_at_a_time_is_whole(echo):
    packet, ack_id = echo.event_packet("shout", "slowly")
    echo.ws.sock.setsockopt(6, 1, 1)  # TCP_NODELAY: each byte its own segment
    for byte in client_frame(packet.encode()):
        echo.ws.sock.sendall(bytes([byte]))
    assert echo.reply_to(ack_id) == {"echoed": "shout", "user": None}


def test_websocket_ping_gets_its_pong(echo):
    echo.ws.ping(b"are you there")
    while True:
        opcode, frame = echo.ws.recv_data_frame(True)
        if opcode == websocket.ABNF.OPCODE_PONG:
            break
    assert frame.data == b"are you there"
    assert echo.call("shout") == {"echoed": "shout", "user": None}


def test_client_close_frame_is_answered(echo):
    echo.ws.send_close()
    assert close_code(echo.ws) == 1000


VIOLATIONS = {
    "unmasked": (client_frame(b"42[]", masked=False), 1002),
    "reserved bits": (client_frame(b"42[]", rsv=0b100), 1002),
    "unknown opcode": (client_frame(b"42[]", opcode=0x3), 1002),
    "continuation of nothing": (client_frame(b"42[]", opcode=0x0), 1002),
    "reserved control opcode": (client_frame(b"", opcode=0xB), 1002),
    "close frame with half a status code": (client_frame(b"\x03", opcode=0x8), 1002),
    "fragmented ping": (client_frame(b"x", opcode=0x9, fin=False), 1002),
    "long ping": (client_frame(b"x" * 126, opcode=0x9), 1002),
    "new message inside a fragmented one": (client_frame(b"4", fin=False) + client_frame(b"2[]"), 1002),
    "invalid UTF-8": (client_frame(b"42\xff\xfe"), 1007),
    "one frame too big (refused before its payload)": (announced_only(MAX_PAYLOAD + 1), 1009),
    "fragments too big together": (
        client_frame(b"4" + b" " * 40_000, fin=False) + announced_only(MAX_PAYLOAD - 40_000, opcode=0x0),
        1009,
    ),
}


@pytest.mark.parametrize("data, code", VIOLATIONS.values(), ids=VIOLATIONS.keys())
def test_protocol_violation_closes_only_that_websocket(server, clients, data, code):
    bystander = clients(server.url, namespace="/echo")
    raw = RawSocket(server.url, namespace="/echo")
    raw.ws.sock.sendall(data)
    assert close_code(raw.ws) == code
    assert bystander.call("shout") == {"echoed": "shout", "user": None}


def test_failed_upgrade_leaves_the_client_polling(server):
    polling = server.url + "/socket.io/?EIO=4&transport=polling"
    http = requests.Session()
    sid = json.loads(http.get(polling, timeout=WAIT).text[1:])["sid"]
    polling += f"&sid={sid}"
    http.post(polling, data="40/echo,", timeout=WAIT)
    assert http.get(polling, timeout=WAIT).text.startswith("40/echo,")

    ws_url = polling.replace("http://", "ws://").replace("transport=polling", "transport=websocket")
    upgrade = websocket.create_connection(ws_url, timeout=WAIT)
    upgrade.send("2not a probe")
    assert close_code(upgrade) == 1002

    http.post(polling, data='42/echo,0["shout"]', timeout=WAIT)
    deadline, packets = time.monotonic() + WAIT, []
    while '43/echo,0[{"echoed":"shout","user":null}]' not in packets:
        assert time.monotonic() < deadline, packets
        packets += http.get(polling, timeout=WAIT).text.split("\x1e")
    assert '42/echo,["shout"]' in packets


def test_messages_before_a_violation_are_still_handled(server, clients, echo):
    bystander = clients(server.url, namespace="/echo")
    packet, _ = echo.event_packet("last words")
    echo.ws.sock.sendall(client_frame(packet.encode()) + client_frame(b"42[]", opcode=0x3))
    assert close_code(echo.ws) == 1002
    assert bystander.wait_for("seen")["event"] == "last words"


def test_client_that_sends_without_reading_is_read_no_further(server, clients):
    """Pings (each answered) from a client that never reads: TCP slows it down, not the server's memory."""
    bystander = clients(server.url, namespace="/echo")
    raw = RawSocket(server.url, namespace="/echo")
    raw.ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    pings = client_frame(b"x" * 125, opcode=0x9) * 500
    raw.ws.sock.setblocking(False)
    sent, limit = 0, 200 * 1024 * 1024  # the server would answer this many pings with as many bytes of pongs
    while sent < limit:
        try:
            sent += raw.ws.sock.send(pings[sent % len(pings) :])  # whole frames, in order
        except BlockingIOError:
            # The server no longer reads: the socket stays full.
            if not select.select([], [raw.ws.sock], [], 2)[1]:
                break
    assert sent < limit
    assert bystander.call("shout") == {"echoed": "shout", "user": None}


def test_a_flood_of_empty_fragments_closes_its_sender_and_holds_no_memory(fresh_server, clients):
    """2,000,000 empty continuation frames (12 MB): each kept fragment counts against the message limit."""
    server = fresh_server()  # its own log: warnings of one kind are rate-limited
    bystander = clients(server.url, namespace="/echo")
    raw = RawSocket(server.url, namespace="/echo")
    assert raw.ws.recv().startswith("40/echo,")  # connected: what comes next is the server's answer
    before = resident_mib(server)
    raw.ws.sock.sendall(client_frame(b"4", fin=False))
    empty_fragments = client_frame(b"", opcode=0x0, fin=False) * 10_000
    sent = 0
    while sent < 2_000_000 and not select.select([raw.ws.sock], [], [], 0)[0]:
        raw.ws.sock.sendall(empty_fragments)
        sent += 10_000
    grown = resident_mib(server) - before
    assert grown < 10, f"{grown:.0f} MiB for {sent} empty fragments"
    assert close_code(raw.ws) == 1009
    assert bystander.call("shout") == {"echoed": "shout", "user": None}
    assert server.log().count(f"closing WebSocket of {raw.engine_id}: message of more than") == 1
