"""What a closed connection leaves in the server's memory: nothing, from the moment it closed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import requests
import websocket

from .helpers import WAIT, RawSocket, metric_values, open_descriptors, wait_until

BURST = 1000


def sessions_in_memory(server) -> float:
    return metric_values(server)["socketio_sessions_in_memory"]


def connected(server) -> float:
    return metric_values(server)["socketio_connected_clients"]


def test_websockets_that_close_are_released_at_once(fresh_server):
    """Their ping timers (25 s) held closed sessions: 1,625 of them, 67 MB, after one burst."""
    server = fresh_server()
    start = sessions_in_memory(server)
    with ThreadPoolExecutor(16) as pool:
        sockets = list(pool.map(lambda _: RawSocket(server.url, namespace="/echo"), range(BURST)))
        wait_until(lambda: connected(server) == BURST, what=f"{BURST} clients connected")
        assert sessions_in_memory(server) >= start + BURST
        list(pool.map(RawSocket.close, sockets))
    wait_until(lambda: connected(server) == 0, what="every client gone")
    # Well within the ping interval: nothing but the sessions' own references held them.
    wait_until(lambda: sessions_in_memory(server) <= start + 5, timeout=5, what="closed sessions freed")


def test_sessions_closed_while_upgrading_are_released_at_once(fresh_server):
    """The WebSocket opened to upgrade them (no probe sent yet) held them until the probe's deadline (20 s)."""
    server = fresh_server()
    start = sessions_in_memory(server)
    upgrades = []
    for _ in range(50):
        handshake = requests.get(server.url + "/socket.io/?EIO=4&transport=polling", timeout=WAIT).text
        sid = handshake.split('"sid":"')[1].split('"')[0]
        url = f"{server.url}/socket.io/?EIO=4&transport=polling&sid={sid}"
        upgrades.append(websocket.create_connection(url.replace("http", "ws").replace("polling", "websocket")))
        assert requests.post(url, data="1", timeout=WAIT).text == "ok"  # the client's CLOSE, mid-upgrade
    wait_until(lambda: sessions_in_memory(server) <= start + 5, timeout=5, what="closed sessions freed")
    for upgrade in upgrades:
        upgrade.close()


def test_websockets_whose_client_fell_silent_are_released_at_their_ping_timeout(fresh_server):
    """A closed WebSocket waits up to 5 s for its client's side to close; it held the session all that time."""
    server = fresh_server(SOCKETIO_PING_INTERVAL="1", SOCKETIO_PING_TIMEOUT="1")
    start, descriptors = sessions_in_memory(server), open_descriptors(server)
    silent = [RawSocket(server.url, namespace="/echo") for _ in range(50)]  # they never answer a ping
    try:
        wait_until(lambda: connected(server) == 0, what="the silent clients timed out")
        # Freed while their descriptors still wait for the clients' side to close: only the socket waited.
        wait_until(
            lambda: sessions_in_memory(server) <= start + 5 and open_descriptors(server) >= descriptors + 40,
            what="timed-out sessions freed, their sockets still draining",
        )
    finally:
        for raw in silent:
            raw.ws.close()
