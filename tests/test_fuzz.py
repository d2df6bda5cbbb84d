"""A bounded fuzz run: hostile raw clients send random and broken packets while good clients chat.

Hypothesis draws the attacks with a fixed seed (``derandomize``) and a fixed budget: ``FUZZ_EXAMPLES``
hostile connections (default 1,500, about 15 s; ``FUZZ_EXAMPLES=20000`` runs a long campaign). Each is a
raw WebSocket or long-polling session, connected to the good clients' room or not, that sends Engine.IO /
Socket.IO packets (random, mutated from real ones, or hostile values: deep nesting, huge numbers, NaN,
odd types, placeholders for attachments that never come), raw WebSocket frames, or odd HTTP requests,
then leaves. Meanwhile good clients (WebSocket, long-polling, upgraded) chat with acknowledgements.

What the users and the operator see: no acknowledged message lost, the good clients stay connected,
no HTTP 5xx, no traceback in the log, memory growth bounded, and no socket left in CLOSE-WAIT.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import socket
import struct
import threading
import urllib.parse
from pathlib import Path

import pytest
import requests
import websocket
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .helpers import WAIT, Client, RawSocket, metric_values, open_descriptors, resident_mib, wait_until

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))
ROOM = "fuzz"
AUTH = {"room": ROOM, "name": "fuzzer"}
# What the server's RSS may grow by over the run: the closed sessions are gone, not kept.
RSS_GROWTH_MIB = 40
# Seconds the server may take to close a connection its client has closed.
CLOSE_WAIT = 5.0

# Packets honest clients send, for mutations to start from.
SEEDS = [
    '40{"room":"fuzz","name":"fuzzer"}',
    '42["message","hello"]',
    '420["message","hello"]',
    '421["members",{"after":"a","watch":true}]',
    '451-["message",{"_placeholder":true,"num":0}]',
    '430["ok"]',
    "41",
    '4/echo,0["shout",1]',
    "2probe",
    "3",
    "5",
    "1",
]
# Values no honest client sends, as JSON text: non-finite and huge numbers, nesting deeper than
# Python's stack, placeholders pointing anywhere, odd strings.
HOSTILE_JSON = [
    "1e999999",
    "-1e999999",
    "NaN",
    "Infinity",
    "-Infinity",
    "9" * 5000,
    "-" + "9" * 4000,
    "1" + "0" * 400 + ".5",
    "[" * 5000 + "]" * 5000,
    '{"a":' * 3000 + "1" + "}" * 3000,
    '{"_placeholder":true,"num":0}',
    '{"_placeholder":true,"num":7}',
    '{"_placeholder":true,"num":-1}',
    '{"_placeholder":true,"num":"0"}',
    '{"_placeholder":true,"num":true}',
    '{"_placeholder":true}',
    '"\\ud800"',
    '"\\u0000"',
    "{}",
    "[]",
    "null",
    "-0",
    "1.5e308",
]
EVENT_NAMES = [
    '"message"',
    '"members"',
    '"connect"',
    '"disconnect"',
    '""',
    "7",
    "null",
    "{}",
    "[]",
    '"' + "e" * 300 + '"',
]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)
json_text = json_values.map(json.dumps) | st.sampled_from(HOSTILE_JSON)


@st.composite
def event_data(draw: st.DrawFn) -> str:
    """An event's JSON: a name (or something else) and arguments, some hostile."""
    parts = [draw(st.sampled_from(EVENT_NAMES) | json_text), *draw(st.lists(json_text, max_size=3))]
    return "[" + ",".join(parts) + "]"


@st.composite
def socketio_packets(draw: st.DrawFn) -> str:
    """A Socket.IO packet: type, attachment count, namespace, ack id and data, each sometimes wrong."""
    kind = draw(st.sampled_from("0123456") | st.text(max_size=2))
    attachments = draw(st.sampled_from(["", "", "", "1-", "0-", "2-", "11-", "99999999999-", "x-"]))
    namespace = draw(
        st.sampled_from(["", "", "", "/,", "/echo,", "//,", "/nope,", "/echo", "/echo?x=1,"])
        | st.text(max_size=5).map(lambda name: f"/{name},")
    )
    ack = draw(st.sampled_from(["", "", "", "0", "7", "-1", "9" * 16, "9" * 99, "9" * 120, "1.5", "x"]))
    data = draw(st.sampled_from(["", "{}"]) | event_data() | json_text | st.text(max_size=20))
    return kind + attachments + namespace + ack + data


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A real packet with a few characters inserted, deleted, replaced, cut off or repeated."""
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(text)))
        how = draw(st.sampled_from(["insert", "delete", "replace", "cut", "repeat"]))
        if how == "insert":
            text = text[:at] + draw(st.text(min_size=1, max_size=3)) + text[at:]
        elif how == "delete":
            text = text[:at] + text[at + 1 :]
        elif how == "replace":
            text = text[:at] + draw(st.characters(codec="utf-8")) + text[at + 1 :]
        elif how == "cut":
            text = text[:at]
        else:
            text = text[:at] + text[at:] * draw(st.integers(2, 20))
    return text


engineio_packets = st.one_of(
    socketio_packets().map(lambda packet: "4" + packet),
    mutated(),
    st.tuples(st.sampled_from("0123456789b"), json_text | st.text(max_size=12)).map("".join),
    st.binary(max_size=64),  # a binary message: an attachment, or garbage
)


@st.composite
def raw_frames(draw: st.DrawFn) -> bytes:
    """WebSocket frames built by hand: reserved bits, any opcode, unmasked, lengths that lie, stray fragments."""
    data = b""
    for _ in range(draw(st.integers(1, 4))):
        packet = draw(engineio_packets | st.binary(max_size=40))
        payload = packet.encode() if isinstance(packet, str) else packet
        fin = draw(st.booleans())
        rsv = draw(st.sampled_from([0, 0, 0, 1, 2, 4, 7]))
        opcode = draw(st.sampled_from([0, 1, 1, 2, 8, 9, 10]) | st.integers(0, 15))
        length = draw(st.sampled_from([len(payload)] * 6 + [0, 125, 126, 65535, 1 << 16, (1 << 63) - 1]))
        mask = draw(st.one_of(st.binary(min_size=4, max_size=4), st.binary(min_size=4, max_size=4), st.none()))
        data += frame_bytes(payload, fin, rsv, opcode, length, mask)
    return data


def frame_bytes(payload: bytes, fin: bool, rsv: int, opcode: int, length: int, mask: bytes | None) -> bytes:
    """One client frame announcing ``length`` bytes (whatever ``payload`` has); unmasked when ``mask`` is None."""
    first = (0x80 if fin else 0) | rsv << 4 | opcode
    masked = 0 if mask is None else 0x80
    if length < 126:
        header = struct.pack("!BB", first, masked | length)
    elif length < 1 << 16:
        header = struct.pack("!BBH", first, masked | 126, length)
    else:
        header = struct.pack("!BBQ", first, masked | 127, length)
    if mask is None:
        return header + payload
    return header + mask + bytes(byte ^ mask[i % 4] for i, byte in enumerate(payload))


def polling_packet(packet: str | bytes) -> str:
    """An Engine.IO packet as long-polling carries it: binary ones in base64 after a ``b``."""
    return packet if isinstance(packet, str) else "b" + base64.b64encode(packet).decode()


polling_bodies = st.one_of(
    st.lists(engineio_packets.map(polling_packet), min_size=1, max_size=4).map(
        lambda packets: "\x1e".join(packets).encode()
    ),
    st.sampled_from([b"b!!!", b"b", b"bAAA", b"\x1e\x1e", b"1\x1e1", "4é".encode("latin-1")]),
    st.binary(max_size=64),
)
queries = st.sampled_from(
    [
        "EIO=4&transport=polling",
        "EIO=3&transport=polling",
        "transport=polling",
        "EIO=4",
        "EIO=4&transport=flashsocket",
        "EIO=4&transport=polling&sid=",
        "EIO=4&transport=polling&sid=unknown",
        "EIO=4&transport=polling&sid=%ff%fe",
        "EIO=4&transport=polling&j=x",
        "EIO=4&transport=polling&j=1&sid=unknown",
        "EIO=4&transport=polling&b64=1",
        "EIO=4&transport=websocket",
        "EIO=4&transport=websocket&sid=unknown",
    ]
) | st.text(max_size=30).map(urllib.parse.quote)


# -- the attacks -------------------------------------------------------------


def send_packets(ws: websocket.WebSocket, packets: list[str | bytes]) -> None:
    """Send Engine.IO packets, each in a frame of its own (text or binary)."""
    for packet in packets:
        with contextlib.suppress(OSError, websocket.WebSocketException):  # the server may have closed already
            ws.send_binary(packet) if isinstance(packet, bytes) else ws.send(packet)


@dataclasses.dataclass
class WebSocketAttack:
    """A raw WebSocket sends Engine.IO packets, each in a frame of its own."""

    connect: bool
    packets: list[str | bytes]

    def run(self, url: str) -> None:
        ws = open_websocket(url, self.connect)
        send_packets(ws, self.packets)
        assert_closed_after_we_leave(ws.sock)


@dataclasses.dataclass
class FrameAttack:
    """A raw WebSocket sends frames that may break RFC 6455."""

    connect: bool
    frames: bytes

    def run(self, url: str) -> None:
        ws = open_websocket(url, self.connect)
        with contextlib.suppress(OSError):
            ws.sock.sendall(self.frames)
        assert_closed_after_we_leave(ws.sock)


@dataclasses.dataclass
class PollingAttack:
    """A long-polling session POSTs bodies, then closes; a request on the closed session is a 400."""

    connect: bool
    bodies: list[bytes]

    def run(self, url: str) -> None:
        session = polling_session(url, self.connect)
        for body in self.bodies:
            checked(requests.post(session, data=body, timeout=WAIT))
        checked(requests.post(session, data=b"1", timeout=WAIT))
        # Closed by its client or for its bodies: answered at once, with a 400 or the CLOSE packet.
        poll = checked(requests.get(session, timeout=WAIT))
        assert poll.status_code == 400 or "1" in poll.text.split("\x1e"), (poll.status_code, poll.text)


@dataclasses.dataclass
class UpgradeAttack:
    """A long-polling session upgrades to a WebSocket that sends the probe, then Engine.IO packets."""

    connect: bool
    packets: list[str | bytes]

    def run(self, url: str) -> None:
        session = polling_session(url, self.connect)
        ws = websocket.create_connection(
            session.replace("http://", "ws://").replace("polling", "websocket"), timeout=WAIT
        )
        send_packets(ws, ["2probe", *self.packets])
        assert_closed_after_we_leave(ws.sock)
        checked(requests.post(session, data=b"1", timeout=WAIT))  # closes it, if the upgrade failed


@dataclasses.dataclass
class RequestAttack:
    """An HTTP request to the Engine.IO endpoint with odd parameters."""

    method: str
    query: str
    body: bytes

    def run(self, url: str) -> None:
        response = checked(
            requests.request(self.method, f"{url}/socket.io/?{self.query}", data=self.body, timeout=WAIT)
        )
        if response.ok and response.text.startswith("0{"):  # it opened a session: close it
            sid = json.loads(response.text[1:])["sid"]
            checked(requests.post(f"{url}/socket.io/?EIO=4&transport=polling&sid={sid}", data=b"1", timeout=WAIT))


attacks = st.one_of(
    st.builds(WebSocketAttack, st.booleans(), st.lists(engineio_packets, min_size=1, max_size=4)),
    st.builds(FrameAttack, st.booleans(), raw_frames()),
    st.builds(PollingAttack, st.booleans(), st.lists(polling_bodies, min_size=1, max_size=3)),
    st.builds(UpgradeAttack, st.booleans(), st.lists(st.just("5") | engineio_packets, min_size=1, max_size=3)),
    st.builds(RequestAttack, st.sampled_from(["GET", "POST", "PUT", "OPTIONS"]), queries, st.binary(max_size=32)),
)


def open_websocket(url: str, connect: bool) -> websocket.WebSocket:
    """A raw Engine.IO WebSocket, in the chat's room when ``connect``."""
    if connect:
        return RawSocket(url, AUTH).ws
    ws = websocket.create_connection(
        url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket", timeout=WAIT
    )
    assert ws.recv().startswith("0{")
    return ws


def polling_session(url: str, connect: bool) -> str:
    """The URL of a new long-polling session, in the chat's room when ``connect``."""
    base = f"{url}/socket.io/?EIO=4&transport=polling"
    session = base + "&sid=" + json.loads(checked(requests.get(base, timeout=WAIT)).text[1:])["sid"]
    if connect:
        assert checked(requests.post(session, data=b"40" + json.dumps(AUTH).encode(), timeout=WAIT)).ok
    return session


def assert_closed_after_we_leave(sock: socket.socket) -> None:
    """Half-close, then read until the server closes its side too (else its socket sits in CLOSE-WAIT)."""
    sock.settimeout(CLOSE_WAIT)
    try:
        sock.shutdown(socket.SHUT_WR)
        while sock.recv(65536):
            pass
    except TimeoutError:
        raise AssertionError(f"the server kept the connection open {CLOSE_WAIT}s after its client left") from None
    except OSError:
        pass  # reset: closed too
    finally:
        sock.close()


def checked(response: requests.Response) -> requests.Response:
    assert response.status_code < 500, (response.status_code, response.text[:200])
    return response


# -- the good clients --------------------------------------------------------


class Chat:
    """Good clients take turns sending acknowledged messages, in a thread, until stopped."""

    def __init__(self, members: list[Client]) -> None:
        self.members = members
        self.acked: dict[Client, list[int]] = {member: [] for member in members}
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Chat:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(WAIT)

    def _run(self) -> None:
        count = 0
        # Paced: a person's chat, not a load test (the fuzzing shares the machine).
        while not self._stop.wait(0.05):
            for member in self.members:
                count += 1
                try:
                    self.acked[member].append(member.say(f"good {count}")["id"])
                except BaseException as error:  # noqa: BLE001 - reported by the test
                    self.errors.append(error)
                    return

    def missing(self, member: Client) -> set[int]:
        """Ids the others had acknowledged that ``member`` has not received (yet)."""
        expected = {id for other, ids in self.acked.items() if other is not member for id in ids}
        return expected - {message["id"] for message in member.received("message")}


# -- what the operator sees --------------------------------------------------


def close_wait_sockets(port: int) -> int:
    """TCP sockets on ``port`` whose peer has closed and the server has not (state 08 in /proc/net/tcp)."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "08":
            count += 1
    return count


# About 8 ms a hostile client here; a long campaign gets the time it needs.
@pytest.mark.timeout(60 + EXAMPLES // 40)
def test_hostile_clients_fuzzing_both_transports_hurt_nobody(fresh_server, clients):
    server = fresh_server()
    good = [
        clients.join(server.url, ROOM, f"good-{transport}", transport)
        for transport in ("websocket", "polling", "upgrade")
    ]

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example],
    )
    @given(attack=attacks)
    def attack_once(attack: WebSocketAttack | FrameAttack | PollingAttack | UpgradeAttack | RequestAttack) -> None:
        attack.run(server.url)

    with Chat(good) as chat:
        # Measured once every good client has sent and stored a message (the database's files are open).
        wait_until(lambda: all(chat.acked.values()), what="a first message from each good client")
        rss_before, descriptors_before = resident_mib(server), open_descriptors(server)
        attack_once()
    assert not chat.errors, chat.errors
    assert sum(len(ids) for ids in chat.acked.values()) > 10  # they did chat meanwhile

    for member in good:
        wait_until(lambda member=member: not chat.missing(member), what=f"every acknowledged message at {member}")
        assert member.sio.connected and not member.received("disconnect")
    wait_until(lambda: close_wait_sockets(server.port) == 0, what="no socket in CLOSE-WAIT")
    wait_until(lambda: open_descriptors(server) <= descriptors_before + 5, what="descriptors back to their count")
    growth = resident_mib(server) - rss_before
    assert growth < RSS_GROWTH_MIB, f"RSS grew by {growth:.0f} MiB over {EXAMPLES} hostile clients"
    log = server.log()
    # The figures of a run, for a long campaign's report (pytest -s shows them).
    metrics = metric_values(server)
    print(
        f"fuzz: {EXAMPLES} hostile clients, {metrics['socketio_malformed_packets_total']:.0f} malformed packets"
        f" refused, {sum(map(len, chat.acked.values()))} good messages acknowledged, RSS {rss_before:.0f} ->"
        f" {rss_before + growth:.0f} MiB, {metrics.get('socketio_sessions_in_memory', 0):.0f} sessions in memory"
    )
    assert "Traceback" not in log, log[log.index("Traceback") - 300 :][:3000]
