"""HAProxy (deploy/haproxy.cfg) in front of two instances on one Redis and one database."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import pytest
import requests
import websocket

from .helpers import ROOT, TRANSPORTS, WAIT, Client, connect_from, free_port, get_from, metric_values, wait_until


class HAProxy:
    """Debian's haproxy with the shipped configuration, in front of ``servers``."""

    def __init__(self, workdir: Path, servers: list[str], **settings: str) -> None:
        assert shutil.which("haproxy"), "install Debian's haproxy (tests/run.sh does)"
        self.port = free_port()
        self.log_path = workdir / "haproxy.log"
        self.env = {**os.environ, "CHAT_BIND": f"127.0.0.1:{self.port}"}
        self.env.update({f"CHAT_SERVER_{n}": server for n, server in enumerate(servers, start=1)})
        self.env.update(settings)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> HAProxy:
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                ["haproxy", "-db", "-f", str(ROOT / "deploy" / "haproxy.cfg")],
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until(self._healthy, what="haproxy and its instances up")
        return self

    def _healthy(self) -> bool:
        try:
            return requests.get(self.url + "/healthz", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


@pytest.fixture
def front(instances, tmp_path):
    """Two instances (Gunicorn, 2 workers each, one Redis, one database) behind HAProxy."""
    backends = [instances(workers=2, SOCKETIO_SHUTDOWN_TIMEOUT="5") for _ in range(2)]
    proxy = HAProxy(tmp_path, [f"127.0.0.1:{backend.port}" for backend in backends]).start()
    yield proxy, backends
    proxy.stop()


def test_every_transport_through_haproxy_reaches_everyone(front, clients, room):
    proxy, backends = front
    people = [
        clients.join(proxy.url, room, f"{transport}-{n}", transport) for n in range(2) for transport in TRANSPORTS
    ]
    # New clients are spread over both instances.
    assert all("connect id=" in backend.log() for backend in backends)
    acknowledged = [person.say(f"from {n}")["id"] for n, person in enumerate(people)]
    for n, person in enumerate(people):
        others = sorted(acknowledged[:n] + acknowledged[n + 1 :])
        assert sorted(person.wait_for("message")["id"] for _ in others) == others
    assert "Invalid session" not in "".join(backend.log() for backend in backends)


def test_an_instance_shutting_down_sends_its_clients_to_the_other_and_loses_nothing(front, clients, room):
    proxy, (leaving, staying) = front
    people = [
        clients.adopt(Client(proxy.url, transport, reconnect=True, auth={"room": room, "name": f"{transport}-{n}"}))
        for n in range(3)
        for transport in ("websocket", "polling")
    ]
    for person in people:
        person.connect().wait_for("welcome")
    on_leaving = [person for person in people if f"name={person.connect_options['auth']['name']} " in leaving.log()]
    assert on_leaving, "leastconn put nobody on the first instance"
    sender = clients.adopt(Client(proxy.url, "polling", reconnect=True, auth={"room": room, "name": "sender"}))
    sender.connect().wait_for("welcome")
    acknowledged: list[int] = []
    done = threading.Event()

    def send() -> None:
        while not done.is_set():
            try:
                acknowledged.append(sender.say(f"tick {len(acknowledged)}")["id"])
            except Exception:  # the connection was sent away mid-call: the next call goes to the other
                wait_until(lambda: sender.sio.connected, timeout=30, what="the sender back")

    ticker = threading.Thread(target=send)
    ticker.start()
    try:
        wait_until(lambda: len(acknowledged) >= 5, what="messages before the shutdown")
        leaving.stop(signal.SIGTERM, timeout=20)
        for person in on_leaving:
            person.wait_for("disconnect")
            person.wait_for("welcome", timeout=30)  # back, through HAProxy, on the instance that stays
        count = len(acknowledged)
        wait_until(lambda: len(acknowledged) >= count + 5, timeout=30, what="messages after the shutdown")
    finally:
        done.set()
        ticker.join()
    # Straight from the database (the replay's bound is smaller than what the ticker sent).
    ids = f"Message.objects.filter(room={room!r}).values_list('id', flat=True)"
    listing = f"from chatroom.models import Message; print(list({ids}))"
    stored = set(json.loads(staying.manage("shell", "-c", listing).strip().splitlines()[-1]))
    assert set(acknowledged) <= stored, "an acknowledged message was lost"
    assert "connect id=" in staying.log()


def websocket_from(source: str, proxy: HAProxy) -> websocket.WebSocket:
    """A client of /echo over WebSocket through ``proxy``, from the local address ``source`` (of 127.0.0.0/8)."""
    sock = connect_from(proxy, source)
    url = proxy.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    connection = websocket.create_connection(url, socket=sock, timeout=WAIT)
    assert connection.recv().startswith("0{")
    connection.send("40/echo,")
    assert connection.recv().startswith("40/echo,")
    return connection


def test_haproxy_holds_one_address_to_its_connections_across_instances(fresh_server, tmp_path):
    """The instances' per-address caps count per process; HAProxy's counts every instance and worker."""
    backends = [fresh_server(), fresh_server()]
    servers = [f"127.0.0.1:{backend.port}" for backend in backends]
    proxy = HAProxy(tmp_path, servers, CHAT_MAX_CONNECTIONS_PER_ADDRESS="4").start()
    try:
        held = [websocket_from("127.0.0.2", proxy) for _ in range(4)]
        connected = [metric_values(backend)["socketio_connected_clients"] for backend in backends]
        assert connected == [2, 2], connected  # leastconn: two on each instance
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket_from("127.0.0.2", proxy)
        assert refused.value.status_code == 429
        others = [websocket_from("127.0.0.3", proxy) for _ in range(4)]  # another address has its own
        assert requests.get(proxy.url + "/healthz", timeout=WAIT).status_code == 200  # from 127.0.0.1
        held.pop().close()
        held.append(wait_until(lambda: _accepted("127.0.0.2", proxy), what="a place given back"))
        for connection in held + others:
            connection.close()
    finally:
        proxy.stop()


def _accepted(source: str, proxy: HAProxy) -> websocket.WebSocket | None:
    try:
        return websocket_from(source, proxy)
    except websocket.WebSocketBadStatusException:
        return None


def handshake_from(source: str, proxy: HAProxy, query: str = "") -> int:
    """The status of an Engine.IO polling request through ``proxy`` from the local address ``source``."""
    return get_from(proxy, source, "/socket.io/?EIO=4&transport=polling" + query)


def test_haproxy_holds_one_address_to_its_handshakes_across_instances(fresh_server, tmp_path):
    backends = [fresh_server(), fresh_server()]
    servers = [f"127.0.0.1:{backend.port}" for backend in backends]
    proxy = HAProxy(tmp_path, servers, CHAT_HANDSHAKES_PER_ADDRESS="6").start()
    try:
        assert [handshake_from("127.0.0.2", proxy) for _ in range(6)] == [200] * 6
        assert handshake_from("127.0.0.2", proxy) == 429  # a seventh session within 10 s
        assert handshake_from("127.0.0.3", proxy) == 200  # another address has its own
        # Requests of a session (naming its sid) are not handshakes: an unknown one is the server's 400.
        assert handshake_from("127.0.0.2", proxy, "&sid=unknown") == 400
    finally:
        proxy.stop()
