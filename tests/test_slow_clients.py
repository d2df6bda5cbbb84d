"""Slow, idle, malformed and vanishing HTTP clients: cut within the limits, refused in one log line, no traceback."""

from __future__ import annotations

import http.client
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest
import requests

from .helpers import (
    GUNICORN,
    RUN_EXAMPLE,
    RawSocket,
    ServerProcess,
    open_descriptors,
    self_signed_certificate,
    wait_until,
)

HEADERS_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
SEND_TIMEOUT = 2.0
MARGIN = 3.0  # seconds past a limit that the server may take to act on it, on a busy 2-core machine
LIMITS = {
    "SOCKETIO_HEADERS_TIMEOUT": str(HEADERS_TIMEOUT),
    "SOCKETIO_BODY_TIMEOUT": str(BODY_TIMEOUT),
    "SOCKETIO_SEND_TIMEOUT": str(SEND_TIMEOUT),
    "CHAT_API_TOKEN": "test-token",
}
# Request heads that never end: half the attackers trickle the request line too, half only the headers.
TRICKLED = [
    b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: " + b"a" * 1000,
    b"X-Slow: " + b"a" * 1000,
]


class SlowLoris:
    """``count`` connections that send a request's head a byte at a time; records when the server closes each."""

    def __init__(self, port: int, count: int, every: float = 0.5) -> None:
        self.every = every
        self.opened = time.monotonic()
        #: Each connection, and what it trickles.
        self.trickling: dict[socket.socket, bytes] = {}
        for n in range(count):
            sock = socket.create_connection(("127.0.0.1", port))
            if n % 2:  # the request line at once, its headers a byte at a time
                sock.sendall(b"GET /healthz HTTP/1.1\r\n")
            sock.setblocking(False)
            self.trickling[sock] = TRICKLED[n % 2]
        #: Seconds from the start of the attack to the server closing each connection.
        self.closed_after: dict[socket.socket, float] = {}
        #: What the server sent each connection before closing it.
        self.answers: list[bytes] = []
        self._selector = selectors.DefaultSelector()
        for sock in self.trickling:
            self._selector.register(sock, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._trickle, daemon=True)
        self._thread.start()

    def _trickle(self) -> None:
        sent = 0
        while not self._stop.is_set() and not self.all_closed():
            for sock, head in self.trickling.items():
                if sock not in self.closed_after:
                    try:
                        sock.send(head[sent : sent + 1])
                    except OSError:
                        self._closed(sock, b"")
            sent += 1
            deadline = time.monotonic() + self.every
            while (left := deadline - time.monotonic()) > 0:
                for key, _ in self._selector.select(left):
                    try:
                        answer = key.fileobj.recv(4096)  # the answer and the close come together
                    except OSError:
                        answer = b""
                    self._closed(key.fileobj, answer)

    def _closed(self, sock: socket.socket, answer: bytes) -> None:
        self.closed_after[sock] = time.monotonic() - self.opened
        self.answers.append(answer)
        self._selector.unregister(sock)

    def all_closed(self) -> bool:
        return len(self.closed_after) == len(self.trickling)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for sock in self.trickling:
            sock.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A chat server with short head and body limits, shared by this module's tests."""
    process = ServerProcess(tmp_path_factory.mktemp("slow"), env=LIMITS).start()
    yield process
    process.stop()


@pytest.fixture
def attack():
    """Start a :class:`SlowLoris`; every one started is stopped after the test."""
    started: list[SlowLoris] = []

    def start(port: int, count: int) -> SlowLoris:
        started.append(SlowLoris(port, count))
        return started[-1]

    yield start
    for loris in started:
        loris.close()


def chat_until(condition: Callable[[], bool], speaker: RawSocket, what: str) -> list[float]:
    """Send messages until ``condition()``; the seconds each acknowledgement took."""
    latencies = []
    deadline = time.monotonic() + HEADERS_TIMEOUT + MARGIN
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        started = time.monotonic()
        assert speaker.call("message", f"still here {len(latencies)}")["ok"] is True
        latencies.append(time.monotonic() - started)
        time.sleep(0.1)
    return latencies


def test_slow_headers_are_cut_at_the_headers_timeout_while_others_chat(server, attack):
    speaker = RawSocket(server.url, {"room": "slow", "name": "speaker"})
    speaker.next_events(1, "welcome")
    loris = attack(server.port, 300)

    latencies = chat_until(loris.all_closed, speaker, "the server to cut 300 slow connections")

    assert max(loris.closed_after.values()) < HEADERS_TIMEOUT + MARGIN
    assert min(loris.closed_after.values()) > HEADERS_TIMEOUT - 0.5
    # Those whose request had begun are told why; those still in their request line too.
    assert set(loris.answers) == {b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"}
    assert max(latencies) < 1.0, latencies
    # 300 refusals in the log: a few lines, the last saying that more were suppressed.
    refusals = wait_until(lambda: _lines(server, "408 Request Timeout (headers not complete"), what="the log lines")
    assert len(refusals) <= 10 and "more like this suppressed" in refusals[-1], refusals
    speaker.close()


def test_a_client_that_reads_nothing_is_cut_at_the_send_timeout_while_others_chat(server):
    """A "slow read": pipelined requests whose answers the client never reads held its socket for ever."""
    speaker = RawSocket(server.url, {"room": "slow", "name": "reader"})
    speaker.next_events(1, "welcome")
    descriptors = open_descriptors(server)
    request = b"GET /static/js/vendor/socket.io.esm.min.js HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    readers = []
    for _ in range(20):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a tiny window, before connecting
        sock.connect(("127.0.0.1", server.port))
        sock.sendall(request * 300)  # 12 MB of answers: more than the kernel buffers on both sides
        readers.append(sock)
    wait_until(lambda: open_descriptors(server) > descriptors + 10, what="the slow readers served")

    chat_until(lambda: open_descriptors(server) <= descriptors, speaker, "the slow readers cut")

    for sock in readers:  # reset, not closed: the kernel no longer holds their answers either
        sock.settimeout(MARGIN)
        with pytest.raises(ConnectionResetError):
            while sock.recv(65536):
                pass
        sock.close()
    cut = wait_until(lambda: _lines(server, "took none of its response for 2.0s"), what="the log lines")
    assert 1 <= len(cut) <= 10, cut
    assert "Traceback" not in server.log()
    speaker.close()


def test_a_client_that_reads_slowly_gets_its_whole_answer(server):
    """The send timeout bounds each wait for the client, not the whole answer."""
    request = b"GET /static/js/vendor/socket.io.esm.min.js.map HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(request)
    started, answer = time.monotonic(), bytearray()
    with sock:
        while chunk := sock.recv(1024):
            answer += chunk
            time.sleep(0.02)  # at most 50 KB/s: the 190 KB take about twice the send timeout
    head, body = bytes(answer).split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
    assert len(body) == length and time.monotonic() - started > SEND_TIMEOUT, (len(body), length)


def _lines(server: ServerProcess, text: str) -> list[str]:
    return [line for line in server.log().splitlines() if text in line]


def test_an_idle_connection_is_closed_but_idle_clients_are_not(server, clients):
    websocket = clients.join(server.url, "idle", "ws-idler", "websocket")
    polling = clients.join(server.url, "idle", "poll-idler", "polling")
    # A connection that never sends a byte, and one idle in keep-alive after its first request.
    silent = socket.create_connection(("127.0.0.1", server.port), timeout=HEADERS_TIMEOUT + MARGIN)
    kept = http.client.HTTPConnection("127.0.0.1", server.port, timeout=HEADERS_TIMEOUT + MARGIN)
    kept.request("GET", "/healthz")
    assert kept.getresponse().read()
    opened = time.monotonic()

    assert silent.recv(100) == b""  # closed without a word
    assert kept.sock.recv(100) == b""
    assert HEADERS_TIMEOUT - 0.5 < time.monotonic() - opened < HEADERS_TIMEOUT + MARGIN

    # Idle as long, the WebSocket and the long-polling client (its GET waiting for data) are still there.
    assert websocket.say("after the idle spell")["ok"] is True
    assert polling.wait_for("message")["text"] == "after the idle spell"
    assert polling.say("me too")["ok"] is True
    assert websocket.wait_for("message")["text"] == "me too"
    assert not websocket.received("disconnect") and not polling.received("disconnect")


def _polling_session(server: ServerProcess) -> str:
    handshake = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10)
    sid = handshake.text.split('"sid":"')[1].split('"')[0]
    return f"/socket.io/?EIO=4&transport=polling&sid={sid}"


@pytest.mark.parametrize("path", ["/api/rooms/slow/messages", "engine.io"])
def test_a_slow_body_is_answered_408_within_the_body_timeout(server, path):
    path = _polling_session(server) if path == "engine.io" else path
    slow = socket.create_connection(("127.0.0.1", server.port), timeout=BODY_TIMEOUT + MARGIN)
    head = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer test-token\r\nContent-Length: 1000\r\n\r\n"
    )
    slow.sendall(head.encode() + b'{"text": "')  # 10 of the 1,000 bytes announced
    started = time.monotonic()

    answer = slow.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), answer
    assert slow.recv(100) == b""
    assert BODY_TIMEOUT - 0.5 < time.monotonic() - started < BODY_TIMEOUT + MARGIN


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 20_000 + b"\r\n\r\n", b"431"),
        (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(b"X-%d: a\r\n" % n for n in range(150)) + b"\r\n", b"431"),
        (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000\r\n\r\n", b"413"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", b"400"),  # TLS spoken to plain HTTP
        (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", b"400"),
        # Header lines the email parser took (a guess, or the lines after dropped): RFC 9112 refuses them.
        (b"GET /healthz HTTP/1.1\r\nHost : 127.0.0.1\r\n\r\n", b"400"),  # a space before the colon
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: 1\r\n 2\r\n\r\n", b"400"),  # a folded line
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nnot a header\r\n\r\n", b"400"),
        (b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: a\x00b\r\n\r\n", b"400"),
        (
            b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n"
            + b"{}" * 15,
            b"400",
        ),
        (b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: +2\r\n\r\n{}", b"400"),
        (
            b"POST /api/rooms/x/messages HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
            + b"2\r\n{}\r\n0\r\n\r\n",
            b"501",
        ),
    ],
    ids=[
        "long-line",
        "big-headers",
        "many-headers",
        "big-body",
        "garbage",
        "bad-chunk",
        "space-before-colon",
        "folded",
        "no-colon",
        "control-character",
        "two-lengths",
        "signed-length",
        "unknown-coding",
    ],
)
def test_an_oversized_or_malformed_request_is_refused_at_once_in_one_log_line(fresh_server, request_bytes, status):
    server = fresh_server(**LIMITS)  # of its own: the log's rate limit counts each kind of refusal
    refusals = server.log().count("refused a request from 127.0.0.1")
    with socket.create_connection(("127.0.0.1", server.port), timeout=MARGIN) as sock:
        sock.sendall(request_bytes)
        answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 " + status), answer
        assert sock.recv(100) == b""  # closed
    wait_until(lambda: server.log().count("refused a request from 127.0.0.1") == refusals + 1, what="one line")
    assert "Traceback" not in server.log()


def test_answers_on_a_kept_alive_connection_come_at_once(server):
    with requests.Session() as http:  # one connection, kept alive
        took = []
        for _ in range(10):
            started = time.monotonic()
            assert http.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10).status_code == 200
            took.append(time.monotonic() - started)
    # Each answer's body waited for the client's delayed ACK (40 ms) behind its head.
    assert sorted(took)[5] < 0.035, took


def _reset(sock: socket.socket) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()  # RST, not FIN


def _reset_after(port: int, data: bytes, read: bool = False) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(data)
    if read:
        sock.recv(10)  # the answer has begun
    _reset(sock)


def test_clients_resetting_mid_request_and_mid_response_leave_no_traceback(server, clients):
    host = b"Host: 127.0.0.1\r\n"
    upgrade = b"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
    for _ in range(40):
        _reset_after(server.port, b"GET / HTTP/1.1\r\n" + host + b"X-Partial: ab")  # mid-headers
        _reset_after(server.port, b"POST /api/rooms/x/messages HTTP/1.1\r\n" + host + b"Content-Length: 100\r\n\r\n12")
        _reset_after(server.port, b"GET /static/js/vendor/socket.io.esm.min.js.map HTTP/1.1\r\n" + host + b"\r\n", True)
        _reset_after(server.port, b"GET / HTTP/1.1\r\n" + host + b"\r\n")  # before the answer is written
        _reset_after(server.port, b"GET /r/lobby/events HTTP/1.1\r\n" + host + b"\r\n", True)  # an event stream
        key = b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        _reset_after(
            server.port,
            b"GET /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\n" + host + upgrade + key + b"\r\n",
            True,
        )
        _reset_after(server.port, b"GET " + _polling_session(server).encode() + b" HTTP/1.1\r\n" + host + b"\r\n")

    assert requests.get(server.url + "/healthz", timeout=10).status_code == 200
    assert clients.join(server.url, "resets", "speaker").say("still serving")["ok"] is True
    assert "Traceback" not in server.log()


def test_a_flood_of_refusals_takes_a_few_log_lines(fresh_server):
    server = fresh_server(SOCKETIO_MAX_CLIENTS="0")
    with requests.Session() as http:
        for _ in range(300):
            assert http.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=10).status_code != 200

    wait_until(lambda: "more like this suppressed" in server.log(), what="the suppression notice")
    refusals = _lines(server, "SOCKETIO_MAX_CLIENTS (0) reached")
    assert len(refusals) == 10, refusals  # the default burst, within its minute
    assert "more like this suppressed" in refusals[-1]


def test_under_a_low_open_files_limit_health_answers_again_once_slow_clients_are_cut(tmp_path, attack):
    # The hard limit too: the server raises its soft limit to the hard one at start.
    command = ["bash", "-c", 'ulimit -n 200 && exec "$@"', "bash", *RUN_EXAMPLE]
    server = ServerProcess(tmp_path, env=LIMITS, command=command).start()
    try:
        loris = attack(server.port, 300)  # more than the server may open
        health = requests.get(server.url + "/healthz", timeout=3 * HEADERS_TIMEOUT + MARGIN)
        assert health.status_code == 200
        wait_until(loris.all_closed, timeout=3 * HEADERS_TIMEOUT + MARGIN, what="every slow connection cut")
        # Each accept that found no descriptor left took one line, not a traceback.
        assert "cannot accept connections: Too many open files (at most 200 open files)" in server.log()
        assert "Traceback" not in server.log()
    finally:
        server.stop()


def test_gunicorn_cuts_slow_headers_while_others_chat(tmp_path, attack):
    server = ServerProcess(tmp_path, env={**LIMITS, "GUNICORN_BIND": "127.0.0.1:{port}"}, command=GUNICORN).start()
    try:
        speaker = RawSocket(server.url, {"room": "slow", "name": "speaker"})
        speaker.next_events(1, "welcome")
        loris = attack(server.port, 300)
        latencies = chat_until(loris.all_closed, speaker, "Gunicorn to cut 300 slow connections")
        assert max(loris.closed_after.values()) < HEADERS_TIMEOUT + MARGIN
        assert max(latencies) < 1.0, latencies
        speaker.close()
    finally:
        server.stop()


def test_a_tls_handshake_must_end_within_the_headers_timeout(tmp_path):
    """gevent completes the handshake before any handler runs: one never finished held its socket for ever."""
    cert, key = self_signed_certificate(tmp_path)
    env = {**LIMITS, "GUNICORN_BIND": "127.0.0.1:{port}", "GUNICORN_CERTFILE": str(cert), "GUNICORN_KEYFILE": str(key)}
    server = ServerProcess(tmp_path, env=env, command=GUNICORN).start()
    try:
        started = time.monotonic()
        stalled = [
            socket.create_connection(("127.0.0.1", server.port), timeout=HEADERS_TIMEOUT + MARGIN) for _ in range(50)
        ]
        for number, sock in enumerate(stalled):
            if number % 2:
                sock.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc")  # the start of a ClientHello, never the rest
        for sock in stalled:
            assert sock.recv(100) == b""  # closed by the server
            sock.close()
        assert time.monotonic() - started < HEADERS_TIMEOUT + MARGIN
        assert requests.get(server.url.replace("http", "https") + "/healthz", verify=str(cert), timeout=10).ok
        assert "Traceback" not in server.log()
    finally:
        server.stop()
