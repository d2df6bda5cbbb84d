"""Thousands of clients come and go, cleanly or not: the server ends where it started, and chat goes on."""

from __future__ import annotations

import contextlib
import json
import socket
import struct
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests

from .helpers import WAIT, RawSocket, metric_values, open_descriptors, wait_until

CYCLES = 750  # of each kind
VANISHED = 100  # of each transport
# Short enough for vanished clients to be found out within the test, long enough that a ping
# timer holding a closed session would still hold it when the churn ends.
PING_INTERVAL, PING_TIMEOUT = 8, 2
# Sessions this address may hold: above what the churn holds at once (a reset poll's session lives
# until its ping timeout), so that any place not given back shows as a refused handshake at the end.
SESSIONS_PER_ADDRESS = 1500


def websocket_session(url: str) -> RawSocket:
    """A WebSocket client connected to /echo."""
    raw = RawSocket(url, namespace="/echo")
    assert raw.ws.recv().startswith("40/echo,")
    return raw


def reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a client whose process died or whose network dropped the connection."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class PollingSession:
    """A long-polling client connected to /echo, one request at a time."""

    def __init__(self, url: str) -> None:
        self.http = requests.Session()
        self.url = url + "/socket.io/?EIO=4&transport=polling"
        self.sid = json.loads(self.http.get(self.url, timeout=WAIT).text[1:])["sid"]
        self.url += f"&sid={self.sid}"
        assert self.http.post(self.url, data="40/echo,", timeout=WAIT).text == "ok"
        assert self.http.get(self.url, timeout=WAIT).text.startswith("40/echo,")

    def leave(self) -> None:
        """Engine.IO's CLOSE: the clean way."""
        assert self.http.post(self.url, data="1", timeout=WAIT).text == "ok"
        self.http.close()

    def reset_while_polling(self, address: tuple[str, int]) -> None:
        """Send a poll and reset its connection before the answer."""
        sock = socket.create_connection(address, timeout=WAIT)
        path = self.url.split(f"{address[1]}", 1)[1]
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {address[0]}\r\n\r\n".encode())
        reset(sock)
        self.http.close()


def websocket_clean(url: str) -> None:
    websocket_session(url).close()


def websocket_reset(url: str) -> None:
    reset(websocket_session(url).ws.sock)


def polling_clean(url: str) -> None:
    PollingSession(url).leave()


def polling_reset(url: str) -> None:
    PollingSession(url).reset_while_polling(("127.0.0.1", int(url.rsplit(":", 1)[1])))


def process_state(server) -> dict[str, float]:
    """What a client leaves behind: counted from outside the server."""
    metrics = metric_values(server)
    return {
        "connected clients": metrics["socketio_connected_clients"],
        "sessions in memory": metrics["socketio_sessions_in_memory"],
        "greenlets": sum(value for name, value in metrics.items() if name.startswith("socketio_greenlets{")),
        "open descriptors": open_descriptors(server),
    }


def test_churn_leaves_the_server_as_it_was_and_chat_goes_on(fresh_server, clients, room):
    server = fresh_server(
        SOCKETIO_PING_INTERVAL=str(PING_INTERVAL),
        SOCKETIO_PING_TIMEOUT=str(PING_TIMEOUT),
        SOCKETIO_MAX_SESSIONS_PER_ADDRESS=str(SESSIONS_PER_ADDRESS),
    )
    steady = clients.join(server.url, room, "steady")
    start = process_state(server)

    # Clients whose network vanished: no close, no reset, just silence. The pings find them out.
    vanished_websockets = [websocket_session(server.url) for _ in range(VANISHED)]
    for _ in range(VANISHED):
        PollingSession(server.url).http.close()

    acks: list[dict] = []
    churning = threading.Event()

    def chat() -> None:
        while churning.is_set():
            acks.append(steady.say(f"still here {len(acks)}"))
            time.sleep(0.1)

    churning.set()
    chatter = threading.Thread(target=chat)
    chatter.start()
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(12) as pool:
            cycles = [websocket_clean, websocket_reset, polling_clean, polling_reset] * CYCLES
            list(pool.map(lambda cycle: cycle(server.url), cycles))
    finally:
        churning.clear()
        chatter.join()
    print(f"{len(cycles)} cycles in {time.monotonic() - began:.1f}s")

    # At once: a closed session is freed when it closes (only the vanished are still connected).
    wait_until(
        lambda: (state := process_state(server))["sessions in memory"] <= state["connected clients"] + 5,
        timeout=2,
        what="closed sessions freed at once",
    )
    wait_until(lambda: process_state(server)["connected clients"] == start["connected clients"], timeout=WAIT + 5)
    for raw in vanished_websockets:
        raw.ws.sock.close()

    last: dict[str, float] = {}

    def settled() -> bool:
        last.update(process_state(server))
        return all(last[what] <= start[what] + 3 for what in start)

    with contextlib.suppress(AssertionError):
        wait_until(settled)
    assert settled(), f"at the start: {start}, now: {last}"
    assert acks and all(ack.get("ok") for ack in acks)
    assert steady.say("after the churn")["ok"]
    # Every session gave its address's place back: all but steady's are free.
    handshake = server.url + "/socket.io/?EIO=4&transport=polling"
    with ThreadPoolExecutor(8) as pool:
        answers = list(
            pool.map(lambda _: requests.get(handshake, timeout=WAIT).status_code, range(SESSIONS_PER_ADDRESS - 1))
        )
    assert answers.count(200) == SESSIONS_PER_ADDRESS - 1, answers.count(401)
    assert requests.get(handshake, timeout=WAIT).status_code == 401
