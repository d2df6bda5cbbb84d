"""Real servers in subprocesses and real Socket.IO clients that record what they see."""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import socketio
from socketio import packet

ROOT = Path(__file__).resolve().parent.parent
TRANSPORTS = {
    "websocket": ["websocket"],
    "polling": ["polling"],
    "upgrade": ["polling", "websocket"],
}
WAIT = 10.0  # seconds any expected event may take
GUNICORN = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"]
RUN_EXAMPLE = [sys.executable, "run_example.py", "--port", "{port}"]
WORKER_LINE = re.compile(r"worker pid=(\d+) owns the sessions named ([0-9a-f]{8})\.")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until(condition: Callable[[], Any], timeout: float = WAIT, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


class ServerProcess:
    """The chat server started for real: ``python run_example.py`` on a free port."""

    def __init__(self, workdir: Path, env: dict[str, str] | None = None, command: list[str] | None = None) -> None:
        self.workdir = workdir
        self.database = workdir / "chat.sqlite3"
        self.log_path = workdir / "server.log"
        self.port = free_port()
        self.command = command or [sys.executable, "run_example.py", "--port", "{port}"]
        self.env = {
            **os.environ,
            "CHAT_DATABASE_PATH": str(self.database),
            "DJANGO_STATIC_ROOT": str(workdir / "static"),
            "DJANGO_SECRET_KEY": "tests-only-secret-key-" + "x" * 40,
            "PYTHONUNBUFFERED": "1",
            # Tests send bursts no person would; test_chat.py checks the limit on a server of its own.
            "CHAT_RATE_LIMIT_PER_SECOND": "0",
            **{name: value.format(port=self.port) for name, value in (env or {}).items()},
        }
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        command = [part.format(port=self.port) for part in self.command]
        with open(self.log_path, "a") as log:
            # A session of its own, so stop() can signal the whole group, as Ctrl-C in a terminal does.
            self.process = subprocess.Popen(
                command, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_until(self._accepting, timeout=30, what=f"server on port {self.port} (log: {self.log_path})")
        return self

    def _accepting(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"server exited with {self.process.returncode}:\n{self.log()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15) -> int:
        """Signal the server's process group and wait for it; kill it after ``timeout``."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def open_files_matching(self, path: Path) -> int:
        """How many of the server's open file descriptors point at ``path``."""
        fd_dir = Path(f"/proc/{self.process.pid}/fd")
        count = 0
        for fd in fd_dir.iterdir():
            try:
                if os.readlink(fd) == str(path):
                    count += 1
            except FileNotFoundError:
                pass  # closed while we looked
        return count

    def manage(self, *args: str) -> str:
        """Run ``manage.py`` against this server's database; return its output."""
        done = subprocess.run(
            [sys.executable, "manage.py", *args], cwd=ROOT, env=self.env, capture_output=True, text=True, check=True
        )
        return done.stdout


class Instance(ServerProcess):
    """One host's chat server sharing Redis with others: Gunicorn with several workers, or ``run_example.py``."""

    def workers(self) -> dict[str, int]:
        """The live workers' session tokens, and their pids (from the log)."""
        return {token: int(pid) for pid, token in WORKER_LINE.findall(self.log()) if alive(int(pid))}


def alive(pid: int) -> bool:
    """Whether a process ``pid`` still runs."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


class Client:
    """A python-socketio client that records every event it receives."""

    def __init__(
        self,
        url: str,
        transport: str = "websocket",
        namespace: str = "/",
        reconnect: bool = False,
        ca_file: str | None = None,
        **connect: Any,
    ) -> None:
        self.url = url
        self.namespace = namespace
        self.transports = TRANSPORTS[transport]
        self.connect_options = connect
        http = None
        if ca_file:  # trust this certificate (and not REQUESTS_CA_BUNDLE from the environment)
            import requests

            http = requests.Session()
            http.trust_env = False
            http.verify = ca_file
        self.sio = socketio.Client(
            reconnection=reconnect, reconnection_delay=0.2, reconnection_delay_max=1, http_session=http
        )
        self._events: list[tuple[str, tuple]] = []
        self._taken: set[int] = set()
        self._changed = threading.Condition()
        self.sio.on("*", self._record, namespace=namespace)
        for event in ("connect", "disconnect", "connect_error"):
            self.sio.on(event, lambda *args, event=event: self._record(event, *args), namespace=namespace)

    def _record(self, event: str, *args: Any) -> None:
        with self._changed:
            self._events.append((event, args))
            self._changed.notify_all()

    def connect(self) -> Client:
        self.sio.connect(self.url, transports=self.transports, namespaces=[self.namespace], **self.connect_options)
        return self

    def try_connect(self) -> Exception | None:
        """Connect, returning the error instead of raising it."""
        try:
            self.connect()
        # A refused WebSocket handshake surfaces from python-engineio as a ValueError.
        except (socketio.exceptions.ConnectionError, ValueError) as error:
            return error
        return None

    def wait_for(self, event: str, match: Callable[..., bool] | None = None, timeout: float = WAIT) -> Any:
        """The first not yet taken ``event`` whose payload satisfies ``match``; its first argument."""
        with self._changed:
            deadline = time.monotonic() + timeout
            while True:
                for index, (name, args) in enumerate(self._events):
                    if index in self._taken or name != event:
                        continue
                    payload = args[0] if args else None
                    if match is None or match(payload):
                        self._taken.add(index)
                        return payload
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = [name for name, _ in self._events]
                    raise AssertionError(f"no {event!r} within {timeout}s; received: {seen}")
                self._changed.wait(remaining)

    def received(self, event: str) -> list[Any]:
        """Every ``event`` payload received so far (first arguments)."""
        with self._changed:
            return [args[0] if args else None for name, args in self._events if name == event]

    def call(self, event: str, *args: Any, timeout: float = WAIT) -> Any:
        """Emit ``event`` and return the server's acknowledgement."""
        data = args[0] if len(args) == 1 else args
        return self.sio.call(event, data, namespace=self.namespace, timeout=timeout)

    def say(self, text: Any) -> dict:
        """Send a chat message and return the server's acknowledgement."""
        return self.call("message", text)

    def close(self) -> None:
        if self.sio.connected:
            if self.sio.transport() == "polling":
                # python-engineio's polling client drops its last POST when disconnect() wins a race
                # with its writer thread: say goodbye first and wait until that is sent.
                self.sio._send_packet(self.sio.packet_class(packet.DISCONNECT, namespace=self.namespace))
                self.sio.eio.queue.join()
            self.sio.disconnect()
        self.sio.shutdown()


class RawSocket:
    """A bare Engine.IO v4 WebSocket that reads every frame in order.

    For packets no real client would send, and for asserting what a client did *not* get:
    python-socketio's client runs each event handler in a thread of its own, so it may
    record events out of order.
    """

    def __init__(self, url: str, namespace_auth: dict | None = None, namespace: str = "/", **options: Any) -> None:
        import websocket

        self.prefix = "" if namespace == "/" else f"{namespace},"
        ws_url = url.replace("http://", "ws://") + "/socket.io/?EIO=4&transport=websocket"
        self.ws = websocket.create_connection(ws_url, timeout=WAIT, **options)
        opened = self.ws.recv()
        assert opened.startswith("0{"), opened
        self.auth = namespace_auth or {}
        #: The Engine.IO session id (it names the process that owns the session).
        self.engine_id = json.loads(opened[1:])["sid"]
        self.ws.send("40" + self.prefix + json.dumps(namespace_auth or {}))
        self.next_ack_id = 0
        #: (event, args) of every event received so far, in order.
        self.seen: list[tuple[str, list]] = []

    def send(self, frame: str | bytes) -> None:
        if isinstance(frame, bytes):
            self.ws.send_binary(frame)
        else:
            self.ws.send(frame)

    def _next_packet(self) -> tuple[str, int | None, Any]:
        """The next Socket.IO packet: (type, ack id, data); events are recorded in ``seen``."""
        while True:
            frame = self.ws.recv()
            if frame == "2":
                self.ws.send("3")
                continue
            if not frame.startswith("4"):
                continue
            kind, rest = frame[1], frame[2:]
            if rest.startswith("/"):
                rest = rest.split(",", 1)[1]
            digits = len(rest) - len(rest.lstrip("0123456789"))
            ack_id = int(rest[:digits]) if digits else None
            data = json.loads(rest[digits:]) if rest[digits:] else None
            if kind == "2":
                self.seen.append((data[0], data[1:]))
            return kind, ack_id, data

    def event_packet(self, event: str, *args: Any) -> tuple[str, int]:
        """An EVENT packet asking for an acknowledgement, and the ack's id (for :meth:`reply_to`)."""
        ack_id, self.next_ack_id = self.next_ack_id, self.next_ack_id + 1
        return f"42{self.prefix}{ack_id}" + json.dumps([event, *args]), ack_id

    def call(self, event: str, *args: Any) -> Any:
        """Emit ``event`` asking for an acknowledgement; its first argument. Events before it land in ``seen``."""
        packet, ack_id = self.event_packet(event, *args)
        self.ws.send(packet)
        return self.reply_to(ack_id)

    def reply_to(self, ack_id: int) -> Any:
        """The first argument of the acknowledgement ``ack_id``. Events before it land in ``seen``."""
        while True:
            kind, received_id, data = self._next_packet()
            if kind == "3" and received_id == ack_id:
                return data[0] if data else None

    def events(self, event: str) -> list[Any]:
        """First arguments of the ``event`` events seen so far."""
        return [args[0] if args else None for name, args in self.seen if name == event]

    def next_events(self, count: int, event: str) -> list[Any]:
        """The first arguments of the next ``count`` ``event`` events, in the order the server sent them."""
        wanted = len(self.events(event)) + count
        while len(self.events(event)) < wanted:
            self._next_packet()
        return self.events(event)[wanted - count :]

    def frames_until_closed(self) -> list[str]:
        """Every frame until the server closes the connection (answering its pings)."""
        import websocket

        frames = []
        while True:
            try:
                frame = self.ws.recv()
            except (websocket.WebSocketConnectionClosedException, ConnectionError):
                return frames
            if not frame:
                return frames
            if frame == "2":
                self.ws.send("3")
            frames.append(frame)

    def close(self) -> None:
        self.ws.close()


def metric_values(server: ServerProcess) -> dict[str, float]:
    """``name{labels}`` -> value, from the server's /metrics."""
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    text = requests.get(server.url + "/metrics", timeout=WAIT).text
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def connect_from(server: Any, source: str) -> socket.socket:
    """A TCP connection to ``server`` from the loopback address ``source`` (any 127.x.y.z is this host)."""
    connection = socket.socket()
    connection.bind((source, 0))
    connection.settimeout(WAIT)
    connection.connect(("127.0.0.1", server.port))
    return connection


def get_from(server: Any, source: str, path: str = "/healthz") -> int:
    """The status of a GET of ``path`` on ``server`` (anything with a ``port``) from the loopback address ``source``."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=WAIT, source_address=(source, 0))
    try:
        connection.request("GET", path)
        return connection.getresponse().status
    finally:
        connection.close()


def open_descriptors(server: ServerProcess) -> int:
    """How many file descriptors the server's process has open."""
    return len(os.listdir(f"/proc/{server.process.pid}/fd"))


def resident_mib(server: ServerProcess) -> float:
    """The server's resident memory (VmRSS), in MiB."""
    status = Path(f"/proc/{server.process.pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE).group(1)) / 1024


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with openssl: ``(cert, key)``."""
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
        + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )
    return cert, key
