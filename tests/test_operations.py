"""The three ways operators start the server, graceful shutdown, health, metrics and logs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from .helpers import Client, ServerProcess, alive, metric_values, self_signed_certificate, wait_until

WAYS = {
    "run_example": {"command": [sys.executable, "run_example.py", "--port", "{port}"]},
    "runsocketio": {
        "command": [sys.executable, "manage.py", "runsocketio", "--noreload", "--migrate", "127.0.0.1:{port}"]
    },
    "gunicorn": {
        "command": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"],
        "env": {"GUNICORN_BIND": "127.0.0.1:{port}"},
    },
}
# Not among the ways every test runs: runserver-like development modes.
DEVELOPMENT = {
    "runsocketio-unmigrated": {
        "command": [sys.executable, "manage.py", "runsocketio", "--noreload", "127.0.0.1:{port}"]
    },
    "runsocketio-reloading": {"command": [sys.executable, "manage.py", "runsocketio", "--migrate", "127.0.0.1:{port}"]},
}
SHUTDOWN_TIMEOUT = 5


@pytest.fixture
def start(tmp_path):
    """Start the server one of the WAYS; every server started is stopped after the test."""
    started: list[ServerProcess] = []

    def start_way(way: str, **env: str) -> ServerProcess:
        options = {**WAYS, **DEVELOPMENT}[way]
        process = ServerProcess(tmp_path, env={**options.get("env", {}), **env}, command=options["command"])
        started.append(process)
        return process.start()

    yield start_way
    for process in started:
        process.stop()


@pytest.mark.parametrize("way", list(WAYS))
def test_each_way_serves_chat_health_and_metrics(start, clients, way):
    server = start(way)
    health = requests.get(server.url + "/healthz", timeout=10)
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "database": "ok", "clients": 0}
    before = metric_values(server)

    ws = clients.join(server.url, "ops", "ws", "websocket")
    poll = clients.join(server.url, "ops", "poll", "polling")
    assert ws.wait_for("announcement")["name"] == "poll"  # sent once the room's presence window ends
    assert ws.say("over websocket")["ok"] is True
    assert poll.wait_for("message")["text"] == "over websocket"
    assert poll.say("over polling")["ok"] is True
    assert ws.wait_for("message")["text"] == "over polling"
    assert ws.say("")["error"] == "message is empty"

    after = metric_values(server)
    assert after["socketio_connected_clients"] == 2
    assert requests.get(server.url + "/healthz", timeout=10).json()["clients"] == 2
    assert after["socketio_events_received_total"] - before["socketio_events_received_total"] == 3
    assert after["chat_messages_total{outcome=stored}"] == 2
    assert after["chat_messages_total{outcome=empty}"] == 1
    # history + welcome to each client, one announcement (poll joining), two messages: one recipient each.
    assert after["socketio_events_delivered_total"] - before["socketio_events_delivered_total"] == 4 + 1 + 2

    ws.close()
    wait_until(lambda: metric_values(server)["socketio_connected_clients"] == 1, what="the gauge to drop")
    disconnects = {k: v for k, v in metric_values(server).items() if k.startswith("socketio_disconnects_total")}
    assert sum(disconnects.values()) == 1, disconnects
    log = server.log()
    assert "connect id=" in log and "transport=websocket name=ws room=ops" in log
    assert "disconnect id=" in log and "name=ws room=ops reason=" in log
    assert "rejected id=" in log and "reason='message is empty'" in log
    assert "GET /socket.io/" not in log, "per-request access lines are off by default"


@pytest.mark.parametrize("way", list(WAYS))
def test_sigterm_sends_clients_away_and_keeps_every_acknowledged_message(start, clients, way):
    server = start(way, SOCKETIO_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT))
    ws = clients.join(server.url, "ops", "ws", "websocket")
    poll = clients.join(server.url, "ops", "poll", "polling")
    stayer = clients.adopt(Client(server.url, "websocket", auth={"room": "ops", "name": "stayer"}, reconnect=True))
    stayer.connect().wait_for("history")
    stayer.wait_for("welcome")
    acknowledged = [client.say(f"kept {n}")["id"] for n in range(5) for client in (ws, poll)]

    started = time.monotonic()
    assert server.stop(signal.SIGTERM, timeout=SHUTDOWN_TIMEOUT + 10) == 0
    assert time.monotonic() - started < SHUTDOWN_TIMEOUT + 3
    for client in (ws, poll, stayer):
        client.wait_for("disconnect")
    assert "shut down in" in server.log() or "draining" in server.log()

    # The client was sent away, not told to stay away: it reconnects once the server is back.
    server.start()
    stayer.wait_for("welcome", timeout=30)
    history = stayer.wait_for("history")
    assert [message["id"] for message in history] == acknowledged


def test_gunicorn_stops_at_once_on_ctrl_c_without_a_traceback(start, clients):
    server = start("gunicorn", GUNICORN_WORKERS="2")
    people = [
        clients.join(server.url, "ops", f"{transport}-quitter", transport) for transport in ("websocket", "polling")
    ]
    started = time.monotonic()
    assert server.stop(signal.SIGINT) == 0  # to the whole group, as a terminal does
    assert time.monotonic() - started < 5
    for person in people:
        person.wait_for("disconnect")
    assert "Traceback" not in server.log() and "SystemExit" not in server.log(), server.log()


def test_runsocketio_warns_about_unapplied_migrations(start):
    server = start("runsocketio-unmigrated")
    listening = f"Socket.IO server listening on http://127.0.0.1:{server.port}/"
    wait_until(lambda: listening in server.log(), what="the listening line")  # printed just after binding
    assert "unapplied migration(s)" in server.log()
    assert server.stop(signal.SIGINT) == 0


def test_runsocketio_reloads_on_code_changes_and_stops_on_ctrl_c(start, clients):
    server = start("runsocketio-reloading")
    assert clients.join(server.url, "ops", "before", "websocket").say("before reload")["ok"] is True

    watched = os.path.join(os.path.dirname(__file__), "..", "chatroom", "presence.py")
    wait_until(lambda: "Watching for file changes" in server.log(), what="the reloader to watch")
    os.utime(watched)  # what saving the file in an editor does
    wait_until(lambda: "presence.py changed, reloading" in server.log(), what="the reload")
    reconnected = wait_until(lambda: _try_join(clients, server), timeout=30, what="the reloaded server")
    assert [m["text"] for m in reconnected.wait_for("history")] == ["before reload"]

    assert server.stop(signal.SIGINT, timeout=SHUTDOWN_TIMEOUT + 10) == 0


def _try_join(clients, server):
    client = clients(server.url, "websocket", auth={"room": "ops", "name": "after"}, connect=False)
    return client if client.try_connect() is None else None


def test_gunicorn_serves_compressed_cache_busted_static_files(start):
    server = start("gunicorn")
    page = requests.get(server.url + "/", timeout=10).text
    script = page.split('src="')[1].split('"')[0]
    assert script.startswith("/static/js/chat.") and script != "/static/js/chat.js", script

    response = requests.get(server.url + script, headers={"Accept-Encoding": "gzip"}, timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Encoding"] == "gzip"
    assert "immutable" in response.headers["Cache-Control"]
    # The modules it imports are cache-busted too, so a deploy never mixes old and new files.
    assert 'from "./view.' in response.text and 'from "./view.js"' not in response.text


def test_gunicorn_with_tls_serves_websocket_and_polling(start, tmp_path, clients, room):
    cert, key = self_signed_certificate(tmp_path)
    server = start("gunicorn", GUNICORN_CERTFILE=str(cert), GUNICORN_KEYFILE=str(key))
    url = server.url.replace("http://", "https://")
    # Broadcasts to WebSocket clients must go through TLS too (no raw writes past the SSL layer).
    listener = clients.join(url, room, "listener", "websocket", ca_file=str(cert))
    poller = clients.join(url, room, "poller", "polling", ca_file=str(cert))
    # The sender polls: python-socketio's WebSocket client reads and writes its one SSL socket
    # from two threads at once, which OpenSSL does not allow; on a busy machine that connection
    # breaks now and then (seen before and after the server's own transport changed).
    sender = clients.join(url, room, "sender", "polling", ca_file=str(cert))
    for number in range(20):
        assert sender.say(f"secure {number}")["ok"] is True
    for client in (listener, poller):
        assert sorted(client.wait_for("message")["text"] for _ in range(20)) == sorted(f"secure {n}" for n in range(20))


@pytest.mark.parametrize("transport", ["websocket", "polling"])
def test_max_clients_turns_away_clients_past_the_limit(fresh_server, clients, transport):
    server = fresh_server(SOCKETIO_MAX_CLIENTS="2")
    first = clients(server.url, transport, namespace="/echo")
    clients(server.url, transport, namespace="/echo")

    assert clients(server.url, transport, connect=False, namespace="/echo").try_connect() is not None
    assert "SOCKETIO_MAX_CLIENTS (2) reached" in server.log()
    assert first.call("shout") == {"echoed": "shout", "user": None}

    first.close()
    wait_until(lambda: requests.get(server.url + "/healthz", timeout=10).json()["clients"] == 1, what="first gone")
    assert clients(server.url, transport, connect=False, namespace="/echo").try_connect() is None


@pytest.mark.parametrize("way", list(WAYS))
def test_each_way_queues_a_burst_of_thousands_of_connections(start, way):
    """The listening socket's accept queue is the kernel's largest, not gevent's 128 or Gunicorn's 2048."""
    server = start(way)
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    # For a listening socket, `ss` shows the accept queue's size as Send-Q.
    listening = subprocess.run(["ss", "-ltnH", f"sport = :{server.port}"], capture_output=True, text=True, check=True)
    assert [int(line.split()[2]) for line in listening.stdout.splitlines()] == [somaxconn]


def _children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_runsocketio_reloader_shuts_down_gracefully_on_a_signal_to_its_parent(start, clients, sig):
    server = start("runsocketio-reloading", SOCKETIO_SHUTDOWN_TIMEOUT=str(SHUTDOWN_TIMEOUT))
    client = clients.adopt(Client(server.url, "polling", auth={"room": "ops", "name": "stayer"}))
    client.connect().wait_for("welcome")
    assert client.say("before the signal")["ok"] is True
    parent = server.process.pid
    [child] = wait_until(lambda: _children(parent), what="the reloader's child")

    os.kill(parent, sig)  # the parent alone: it hands the signal on and waits
    assert server.process.wait(SHUTDOWN_TIMEOUT + 10) == 0
    client.wait_for("disconnect")
    assert "shut down in" in server.log(), server.log()
    assert not alive(child)


@pytest.mark.parametrize("way", list(WAYS))
def test_each_way_raises_its_open_files_limit_to_the_hard_limit(tmp_path, way):
    """A common default of 1,024 open files would cap the server near a thousand clients."""
    options = WAYS[way]
    command = ["bash", "-c", 'ulimit -Sn 1024 && exec "$@"', "bash", *options["command"]]
    server = ServerProcess(tmp_path, env=options.get("env", {}), command=command).start()
    try:
        limits = Path(f"/proc/{server.process.pid}/limits").read_text()
        soft, hard = next(line.split()[3:5] for line in limits.splitlines() if line.startswith("Max open files"))
        assert soft == hard and int(soft) > 1024
        wait_until(lambda: f"open files: at most {soft}" in server.log(), what="the limit in the log")
    finally:
        server.stop()
