#!/usr/bin/env python
"""Benchmark this project's server against plain python-socketio and Node's socket.io.

    python bench/run.py            # the full run (about 15 minutes on 2 cores)
    python bench/run.py --quick    # a tiny run, seconds: checks that the harness works

Every scenario starts each server fresh, drives it with the same load generator
(bench/loadgen.js: raw Engine.IO v4 / Socket.IO v5 clients over WebSocket or
long-polling, in worker processes, from several 127.0.1.x source addresses) and
reads the server's CPU time and memory from /proc. Scenarios:

- fanout:  N WebSocket receivers in one room, one sender; after the join traffic
           has drained, M messages; server CPU (utime + stime) per delivered message
- latency: N receivers, a steady message rate: p50 / p99 delivery latency
- memory:  idle connections in rooms of 50: RSS per connection at each size, then as
           many connections as one process holds (the fd soft limit raised to the hard one)
- polling: the fan-out again over long-polling receivers
- broadcast-max: N WebSocket clients in namespace /echo of one process (the project's echo
           view; the same behaviour in the reference servers), one event that every
           other client of the namespace hears as ``seen``: how many got it, how soon, RSS
- slow-clients: K receivers and one sender in one room, M messages of about 1 KB, once
           alone and once with S stalled receivers in the room (connected, then they never
           read their socket again): deliveries and latency of the normal receivers, the
           server's RSS during the run, and when the server closed the stalled ones

Results go to <out>/results.json and <out>/results.md, the plot to --plot. ``bench/
node_modules`` must exist (``npm ci --prefix bench``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import platform
import queue
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS = ("project", "plain", "node")
LABELS = {
    "project": "this project (Django view per connection)",
    "plain": "plain python-socketio (gevent)",
    "node": "Node socket.io 4",
}
CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def raise_fd_limit() -> None:
    """In a child before exec: the open-files soft limit up to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def system_busy_seconds() -> float:
    """CPU time all processes of the machine used (every core), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICK


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- servers -----------------------------------------------------------------------


@dataclass
class Server:
    """One server process under test, started fresh."""

    name: str
    workdir: Path
    project_dir: Path
    env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None
    port: int = 0
    log_path: Path | None = None

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        port = str(self.port)
        env = {**os.environ, **self.env}
        if self.name == "project":
            env["CHAT_DATABASE_PATH"] = str(self.workdir / f"chat-{self.port}.sqlite3")
            # The load generator's sender outpaces any person: the chat's flood limit would refuse it.
            env.setdefault("CHAT_RATE_LIMIT_PER_SECOND", "0")
            return [sys.executable, "run_example.py", "--port", port], env, self.project_dir
        if self.name == "plain":
            return [sys.executable, str(BENCH / "plain_server.py"), "--port", port], env, ROOT
        return ["node", str(BENCH / "node_server.js"), "--port", port], env, ROOT

    def start(self) -> Server:
        self.port = free_port()
        argv, env, cwd = self.command()
        self.log_path = self.workdir / f"{self.name}-{self.port}.log"
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, preexec_fn=raise_fd_limit
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} server exited at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return self
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} server did not listen within 60 s:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """utime + stime of the server process (all its threads), in seconds."""
        return process_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def open_files(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))

    def fd_limit(self) -> int:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return int(line.split()[3])
        return -1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5)  # a graceful shutdown is not what we measure
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


class LoadGenerator:
    """bench/loadgen.js, driven one JSON command per line."""

    def __init__(self, url: str, workers: int, time_limit: float) -> None:
        self.process = subprocess.Popen(
            ["node", str(BENCH / "loadgen.js"), "--url", url, "--workers", str(workers), "--timeout", str(time_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=raise_fd_limit,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def __call__(self, cmd: str, timeout: float = 900, **options: Any) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **options}) + "\n")
        self.process.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"load generator: no answer to {cmd} within {timeout} s") from None
        if line is None:
            raise RuntimeError(f"load generator exited during {cmd}")
        reply = json.loads(line)
        if "error" in reply and cmd != "sender":
            raise RuntimeError(f"load generator: {reply['error']}")
        return reply

    def cpu_seconds(self) -> float:
        """CPU time of the load generator: its coordinator and worker processes."""
        pids = [self.process.pid]
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.process.pid}/task").iterdir():
                pids += [int(pid) for pid in (task / "children").read_text().split()]
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):
                total += process_cpu_seconds(pid)
        return total

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)


# -- scenarios ---------------------------------------------------------------------


@dataclass
class Config:
    fanout_sizes: list[int]
    messages: int
    window: int
    latency_clients: int
    latency_rate: float
    latency_seconds: float
    memory_sizes: list[int]
    max_connections: int
    room_size: int
    polling_sizes: list[int]
    polling_messages: int
    broadcast_clients: int
    slow_receivers: int
    slow_stalled: int
    slow_messages: int
    slow_rate: float
    slow_pad: int
    max_backlog: int | None
    workers: int
    quiet_ms: int
    settle_seconds: float
    time_limit: float
    profile_dir: Path | None = None
    extra: dict = field(default_factory=dict)


class Session:
    """One fresh server plus one load generator, for one scenario."""

    def __init__(
        self, name: str, config: Config, workdir: Path, project_dir: Path, env: dict[str, str] | None = None
    ) -> None:
        self.server = Server(name, workdir, project_dir, env=env or {}).start()
        self.load = LoadGenerator(self.server.url, config.workers, config.time_limit)
        self.config = config

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.load.close()
        self.server.stop()

    def connect(self, count: int, **options: Any) -> dict:
        if count <= 0:
            return self.load("stats")
        reply = self.load("connect", count=count, **options)
        if reply["failed"]:
            log(f"  {reply['failed']} of {count} connections failed: {reply['failures']}")
        return reply

    def drain(self) -> dict:
        return self.load("drain", quiet_ms=self.config.quiet_ms, timeout=self.config.time_limit)

    def check_alive(self) -> None:
        if not self.server.alive():
            raise RuntimeError(f"{self.server.name} server died:\n{self.server.log_tail()}")


def fanout_scenario(name: str, config: Config, workdir: Path, project_dir: Path, transport: str) -> list[dict]:
    sizes = config.fanout_sizes if transport == "websocket" else config.polling_sizes
    messages = config.messages if transport == "websocket" else config.polling_messages
    results = []
    with Session(name, config, workdir, project_dir) as session:
        sender = session.load("sender")
        if sender.get("sender") != "open":
            raise RuntimeError(f"{name}: the sender could not connect: {sender}")
        connected = 0
        for size in sizes:
            started = time.monotonic()
            cpu_before_join = session.server.cpu_seconds()
            session.connect(size - connected, transport=transport)
            drained = session.drain()
            connected = drained["connected"]
            join_seconds = time.monotonic() - started
            join_cpu = session.server.cpu_seconds() - cpu_before_join
            log(f"  {name} {transport}: {connected} receivers, joins drained in {join_seconds:.1f} s")
            profiler = start_profiler(session.server, config, f"{name}-{transport}-{size}")
            cpu0, load_cpu0, busy0 = session.server.cpu_seconds(), session.load.cpu_seconds(), system_busy_seconds()
            out = session.load("fanout", messages=messages, window=config.window, timeout=config.time_limit)
            cpu = session.server.cpu_seconds() - cpu0
            load_cpu = session.load.cpu_seconds() - load_cpu0
            other_cpu = system_busy_seconds() - busy0 - cpu - load_cpu
            stop_profiler(profiler)
            session.check_alive()
            delivered = out["delivered"]
            results.append(
                {
                    "size": size,
                    "transport": transport,
                    "receivers": out["receivers"],
                    "messages": messages,
                    "expected": out["expected"],
                    "delivered": delivered,
                    "all_delivered": out["all_delivered"] and out["receivers"] == size,
                    "cpu_seconds": cpu,
                    "cpu_us_per_delivery": cpu / delivered * 1e6 if delivered else None,
                    "wall_seconds": out["seconds"],
                    # Near 1: the server was the bottleneck (one core), not the load generator.
                    "server_cpu_share": cpu / out["seconds"] if out["seconds"] else None,
                    "loadgen_cpu_us_per_delivery": load_cpu / delivered * 1e6 if delivered else None,
                    # CPU that neither the server nor the load generator used (other processes, the
                    # kernel's share of loopback): well above 0 means the machine was not quiet.
                    "other_cpu_share": other_cpu / out["seconds"] if out["seconds"] else None,
                    "deliveries_per_second": out["deliveries_per_second"],
                    "latency_us": out["latency_us"],
                    "join_seconds": join_seconds,
                    "join_cpu_seconds": join_cpu,
                    "join_packets_received": drained["announcements"] + drained["messages"],
                    "drained": drained["drained"],
                }
            )
            log(
                f"  {name} {transport} fan-out to {size}: {delivered}/{out['expected']} delivered, "
                f"{results[-1]['cpu_us_per_delivery'] or 0:.2f} us CPU per delivery"
            )
    return results


def latency_scenario(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    with Session(name, config, workdir, project_dir) as session:
        session.load("sender")
        session.connect(config.latency_clients)
        drained = session.drain()
        profiler = start_profiler(session.server, config, f"{name}-latency", idle=True)
        cpu0, load_cpu0, busy0 = session.server.cpu_seconds(), session.load.cpu_seconds(), system_busy_seconds()
        out = session.load(
            "steady",
            rate=config.latency_rate,
            seconds=config.latency_seconds,
            timeout=max(30, config.latency_seconds * 2),
        )
        cpu = session.server.cpu_seconds() - cpu0
        load_cpu = session.load.cpu_seconds() - load_cpu0
        other_cpu = system_busy_seconds() - busy0 - cpu - load_cpu
        stop_profiler(profiler)
        session.check_alive()
    result = {
        "receivers": out["receivers"],
        "rate": config.latency_rate,
        "seconds": config.latency_seconds,
        "expected": out["expected"],
        "delivered": out["delivered"],
        "all_delivered": out["all_delivered"] and drained["connected"] == config.latency_clients,
        "cpu_seconds": cpu,
        "cpu_share": cpu / out["seconds"] if out["seconds"] else None,
        "loadgen_cpu_share": load_cpu / out["seconds"] if out["seconds"] else None,
        "other_cpu_share": other_cpu / out["seconds"] if out["seconds"] else None,
        "latency_us": out["latency_us"],
    }
    lat = out["latency_us"]
    log(f"  {name} latency: p50 {lat['p50']} us, p99 {lat['p99']} us, {out['delivered']}/{out['expected']} delivered")
    return result


def memory_scenario(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    room = {"room_size": config.room_size}
    with Session(name, config, workdir, project_dir) as session:
        baseline_rss = session.server.rss_kib()
        warm = min(100, max(1, config.memory_sizes[0] // 10))
        session.connect(warm, **room)
        session.drain()
        time.sleep(config.settle_seconds)
        warm_rss = session.server.rss_kib()
        connected = warm
        sizes = []
        for size in config.memory_sizes:
            reply = session.connect(size - connected, **room)
            session.drain()
            time.sleep(config.settle_seconds)
            stats = session.load("stats")
            connected = stats["connected"]
            rss = session.server.rss_kib()
            per_conn = (rss - warm_rss) / (connected - warm) if connected > warm else None
            sizes.append(
                {
                    "size": size,
                    "connected": connected,
                    "rss_kib": rss,
                    "kib_per_connection": per_conn,
                    "connect_seconds": reply.get("seconds"),
                }
            )
            log(f"  {name} memory: {connected} idle connections, RSS {rss // 1024} MiB, {per_conn or 0:.1f} KiB each")
        # Then as many connections as the process will hold.
        started = time.monotonic()
        reply = session.connect(
            config.max_connections - connected, retries=1, attempt_timeout=30, max_pending=64, **room
        )
        session.drain()
        time.sleep(max(config.settle_seconds, 1))
        stats = session.load("stats")
        max_result = {
            "target": config.max_connections,
            "held": stats["connected"] if session.server.alive() else 0,
            "failed": reply["failed"],
            "closed": stats["closed"],
            "failures": stats["failures"],
            "server_alive": session.server.alive(),
            "server_open_files": session.server.open_files() if session.server.alive() else None,
            "server_fd_limit": session.server.fd_limit() if session.server.alive() else None,
            "rss_kib": session.server.rss_kib() if session.server.alive() else None,
            "seconds": time.monotonic() - started,
        }
        log(f"  {name} max connections: {max_result['held']} held of {config.max_connections} tried")
    return {
        "room_size": config.room_size,
        "baseline_rss_kib": baseline_rss,
        "warm_connections": warm,
        "warm_rss_kib": warm_rss,
        "sizes": sizes,
        "max_connections": max_result,
    }


STALLED_SOURCES = "127.0.2."  # the stalled receivers' source addresses, to find their sockets in /proc/net/tcp


def server_sockets(port: int, source_prefix: str) -> dict[str, int]:
    """Server-side TCP sockets of ``port`` from ``source_prefix`` addresses still ESTABLISHED:
    the peer's address and the bytes waiting in the socket's kernel send queue."""
    sockets = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, state = parts[1], parts[2], parts[3]
        if state != "01" or int(local.split(":")[1], 16) != port:
            continue
        address, remote_port = remote.split(":")
        ip = socket.inet_ntoa(bytes.fromhex(address)[::-1])
        if ip.startswith(source_prefix):
            sockets[f"{ip}:{int(remote_port, 16)}"] = int(parts[4].split(":")[0], 16)
    return sockets


class Sampler:
    """Samples the server's RSS (and, with ``sockets``, its stalled clients' sockets) in a thread."""

    def __init__(
        self, server: Server, interval: float = 0.2, sockets: str | None = None, log_marker: str | None = None
    ) -> None:
        self.server, self.interval, self.sockets, self.log_marker = server, interval, sockets, log_marker
        self.log_marks_before = server.log_text().count(log_marker) if log_marker else 0
        self.samples: list[dict] = []
        self.seen: dict[str, float] = {}  # with ``sockets``: when each socket was last seen ESTABLISHED
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.sample()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            row: dict[str, Any] = {"t": round(time.monotonic() - self.started, 2), "rss_kib": self.server.rss_kib()}
            if self.sockets:
                sockets = server_sockets(self.server.port, self.sockets)
                row["established"], row["send_queue_bytes"] = len(sockets), sum(sockets.values())
                self.seen.update(dict.fromkeys(sockets, row["t"]))
            if self.log_marker:
                row["log_marks"] = self.server.log_text().count(self.log_marker) - self.log_marks_before
            self.samples.append(row)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()

    def stop(self) -> list[dict]:
        self.stopping.set()
        self.thread.join()
        self.sample()
        return self.samples

    def marked_at(self) -> list[float]:
        """When each server log line with ``log_marker`` appeared (to within a sample)."""
        times, count = [], 0
        for row in self.samples:
            times += [row["t"]] * (row.get("log_marks", 0) - count)
            count = max(count, row.get("log_marks", 0))
        return times

    def closed_at(self) -> list[float]:
        """When each socket seen at some point but not at the end closed (the first sample without it)."""
        if not self.samples:
            return []
        end = self.samples[-1]["t"]
        times = [row["t"] for row in self.samples]
        return sorted(next(t for t in times if t > last) for last in self.seen.values() if last < end)


def broadcast_scenario(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    echo = {"namespace": "/echo"}
    with Session(name, config, workdir, project_dir) as session:
        sender = session.load("sender", **echo)
        if sender.get("sender") != "open":
            raise RuntimeError(f"{name}: the sender could not connect to /echo: {sender}")
        baseline_rss = session.server.rss_kib()
        started = time.monotonic()
        reply = session.connect(config.broadcast_clients, retries=1, attempt_timeout=30, max_pending=64, **echo)
        session.drain()
        connect_seconds = time.monotonic() - started
        time.sleep(config.settle_seconds)
        rss_before = session.server.rss_kib()
        cpu0 = session.server.cpu_seconds()
        sampler = Sampler(session.server, interval=0.05)
        out = session.load("broadcast", emit="ping", event="seen", limit=120, quiet_ms=5000, timeout=180)
        samples = sampler.stop()
        cpu = session.server.cpu_seconds() - cpu0
        session.check_alive()
        stats = session.load("stats")
    result = {
        "clients": config.broadcast_clients,
        "connected": out["expected"],
        "connect_failed": reply["failed"],
        "connect_seconds": connect_seconds,
        "received": out["received"],
        "all_received": out["all_received"] and out["expected"] == config.broadcast_clients,
        "first_ms": out["first_us"] / 1000 if out["first_us"] is not None else None,
        "p50_ms": out["p50_us"] / 1000 if out["p50_us"] is not None else None,
        "p99_ms": out["p99_us"] / 1000 if out["p99_us"] is not None else None,
        "last_ms": out["last_us"] / 1000 if out["last_us"] is not None else None,
        "server_cpu_seconds": cpu,
        "baseline_rss_kib": baseline_rss,
        "rss_kib": rss_before,
        "peak_rss_kib": max(row["rss_kib"] for row in samples),
        "closed": stats["closed"],
    }
    log(
        f"  {name} broadcast-max: {out['received']}/{out['expected']} received, last after "
        f"{result['last_ms'] or 0:.0f} ms, RSS {rss_before // 1024} MiB (peak {result['peak_rss_kib'] // 1024} MiB)"
    )
    return result


def slow_clients_scenario(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    env = {"SOCKETIO_MAX_BACKLOG": str(config.max_backlog)} if config.max_backlog and name == "project" else {}
    seconds = config.slow_messages / config.slow_rate
    with Session(name, config, workdir, project_dir, env=env) as session:
        session.load("sender")
        session.connect(config.slow_receivers)
        session.drain()
        time.sleep(config.settle_seconds)

        def run(label: str) -> dict:
            marker = "reads too slowly" if name == "project" else None  # the project logs each client it drops
            sampler = Sampler(session.server, sockets=STALLED_SOURCES, log_marker=marker)
            out = session.load(
                "steady", rate=config.slow_rate, seconds=seconds, pad=config.slow_pad, timeout=seconds + 120
            )
            sent_seconds = time.monotonic() - sampler.started
            time.sleep(max(config.settle_seconds, 1))  # what the server still holds once the sender stops
            samples = sampler.stop()
            stats = session.load("stats")
            rss0 = samples[0]["rss_kib"]
            closed = sampler.closed_at()
            logged = sampler.marked_at() if marker else None
            phase = {
                "stalled": samples[0]["established"],
                "receivers": out["receivers"],
                "messages": out["messages"],
                "expected": out["expected"],
                "delivered": out["delivered"],
                "all_delivered": out["all_delivered"] and out["receivers"] == config.slow_receivers,
                "receivers_closed": stats["closed"],
                "seconds": sent_seconds,
                "latency_us": out["latency_us"],
                "rss_start_kib": rss0,
                "rss_peak_kib": max(row["rss_kib"] for row in samples),
                "rss_end_kib": samples[-1]["rss_kib"],
                "rss_growth_kib": max(row["rss_kib"] for row in samples) - rss0,
                # Stalled clients whose TCP connection the server closed, and when (s from the first message).
                "stalled_closed": len(closed),
                "closed_times_s": closed,
                # Stalled clients the server dropped: its log (the project's), else the closed connections.
                "stalled_dropped": len(logged) if logged is not None else len(closed),
                "drop_times_s": logged if logged is not None else closed,
                "drops_from": "server log" if logged is not None else "closed TCP connections",
                "stalled_send_queue_peak_bytes": max(row["send_queue_bytes"] for row in samples),
                "samples": samples[:: max(1, len(samples) // 200)],
            }
            lat = out["latency_us"]
            log(
                f"  {name} slow-clients {label}: {out['delivered']}/{out['expected']} delivered, p50 {lat['p50']} us, "
                f"p99 {lat['p99']} us, RSS +{phase['rss_growth_kib'] // 1024} MiB, "
                f"stalled dropped {phase['stalled_dropped']}/{phase['stalled']} at {phase['drop_times_s'][:3]} s, "
                f"TCP closed {phase['stalled_closed']}"
            )
            return phase

        alone = run("alone")
        reply = session.connect(config.slow_stalled, stalled=True, source_prefix=STALLED_SOURCES)
        session.drain()
        with_stalled = run(f"with {reply['stalled']} stalled")
        session.check_alive()
    return {
        "receivers": config.slow_receivers,
        "stalled": config.slow_stalled,
        "stalled_connected": reply["stalled"],
        "messages": config.slow_messages,
        "rate": config.slow_rate,
        "message_bytes": config.slow_pad,
        "max_backlog": (config.max_backlog or 1000) if name == "project" else None,
        "alone": alone,
        "with_stalled": with_stalled,
    }


# -- profiling (optional) ------------------------------------------------------------


def start_profiler(server: Server, config: Config, label: str, idle: bool = False) -> subprocess.Popen | None:
    """py-spy on the Python servers during a measurement, when --profile is given.

    ``idle``: sample off-CPU time too (blocking system calls), for latency.
    """
    if config.profile_dir is None or server.name == "node":
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    config.profile_dir.mkdir(parents=True, exist_ok=True)
    output = config.profile_dir / f"{label}.txt"
    argv = [py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "250", "--output", str(output)]
    process = subprocess.Popen(
        argv + (["--idle"] if idle else []),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(1.0)  # let py-spy attach before the measured traffic starts
    return process


def stop_profiler(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()


# -- summary -----------------------------------------------------------------------


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    get: Callable[[dict], float | None]
    lower_is_better: bool = True


def figures(config: Config) -> list[Figure]:
    out: list[Figure] = []

    def fanout_get(kind: str, size: int, field_name: str = "cpu_us_per_delivery") -> Callable[[dict], Any]:
        def get(result: dict) -> Any:
            for row in result.get(kind, []):
                if row["size"] == size:
                    return row[field_name]
            return None

        return get

    for size in config.fanout_sizes:
        label = f"CPU per delivery, fan-out to {size:,} (WebSocket)"
        out.append(Figure(f"cpu_ws_{size}", label, "us", fanout_get("fanout", size)))
    for size in config.fanout_sizes:
        out.append(
            Figure(
                f"rate_ws_{size}",
                f"fan-out throughput to {size:,}, wall clock (shares 2 cores with the load generator)",
                "deliveries/s",
                fanout_get("fanout", size, "deliveries_per_second"),
                lower_is_better=False,
            )
        )
    for size in config.fanout_sizes:
        out.append(
            Figure(
                f"join_ws_{size}",
                f"server CPU to join {size:,} clients to one room (until join traffic drains)",
                "s",
                fanout_get("fanout", size, "join_cpu_seconds"),
            )
        )
    for pct in ("p50", "p99"):
        out.append(
            Figure(
                f"latency_{pct}",
                f"delivery latency {pct}, {config.latency_clients:,} clients at {config.latency_rate:g} msg/s",
                "ms",
                lambda r, pct=pct: r["latency"]["latency_us"][pct] / 1000 if r.get("latency") else None,
            )
        )
    for size in config.memory_sizes:

        def mem(result: dict, size: int = size) -> Any:
            for row in (result.get("memory") or {}).get("sizes", []):
                if row["size"] == size:
                    return row["kib_per_connection"]
            return None

        out.append(Figure(f"mem_{size}", f"RSS per idle connection at {size:,}", "KiB", mem))
    out.append(
        Figure(
            "max_connections",
            f"WebSocket connections one process held (tried {config.max_connections:,})",
            "connections",
            lambda r: (r.get("memory") or {}).get("max_connections", {}).get("held"),
            lower_is_better=False,
        )
    )
    for size in config.polling_sizes:
        out.append(
            Figure(
                f"cpu_polling_{size}",
                f"CPU per delivery, fan-out to {size:,} (long-polling)",
                "us",
                fanout_get("polling", size),
            )
        )
    n = config.broadcast_clients
    out.append(
        Figure(
            "broadcast_received",
            f"clients that got one broadcast, {n:,} WebSocket clients of /echo in one process",
            "clients",
            lambda r: (r.get("broadcast") or {}).get("received"),
            lower_is_better=False,
        )
    )
    out.append(
        Figure(
            "broadcast_last_ms",
            f"time until the last of {n:,} clients got the broadcast",
            "ms",
            lambda r: (r.get("broadcast") or {}).get("last_ms"),
        )
    )
    out.append(
        Figure(
            "broadcast_rss",
            f"server RSS with {n:,} WebSocket clients of /echo",
            "MiB",
            lambda r: r["broadcast"]["rss_kib"] / 1024 if r.get("broadcast") else None,
        )
    )
    k, stalled = config.slow_receivers, config.slow_stalled
    slow_label = f"{k:,} receivers, {config.slow_messages:,} messages of ~1 KB at {config.slow_rate:g}/s"

    def slow(phase: str, get: Callable[[dict], Any]) -> Callable[[dict], Any]:
        return lambda r: get(r["slow"][phase]) if r.get("slow") else None

    out.append(
        Figure(
            "slow_delivered",
            f"messages delivered to the normal receivers with {stalled} stalled clients ({slow_label})",
            "%",
            slow("with_stalled", lambda p: 100 * p["delivered"] / p["expected"] if p["expected"] else None),
            lower_is_better=False,
        )
    )
    for pct in ("p50", "p99"):
        for phase, text in (("alone", "no stalled clients"), ("with_stalled", f"{stalled} stalled clients")):
            out.append(
                Figure(
                    f"slow_{pct}_{phase}",
                    f"delivery latency {pct} to the normal receivers, {text}",
                    "ms",
                    slow(phase, lambda p, pct=pct: p["latency_us"][pct] / 1000 if p["latency_us"][pct] else None),
                )
            )
    for phase, text in (("alone", "no stalled clients"), ("with_stalled", f"{stalled} stalled clients")):
        out.append(
            Figure(
                f"slow_rss_{phase}",
                f"server RSS growth during the run (peak - start), {text}",
                "MiB",
                slow(phase, lambda p: p["rss_growth_kib"] / 1024),
            )
        )
    out.append(
        Figure(
            "slow_dropped",
            f"stalled clients the server dropped during the run (of {stalled})",
            "clients",
            slow("with_stalled", lambda p: p["stalled_dropped"]),
            lower_is_better=False,
        )
    )
    return out


def details(results: dict, config: Config) -> list[str]:
    """Per-server lines for the scenarios the table cannot hold."""
    lines = []
    for name, result in results.items():
        if result.get("broadcast"):
            b = result["broadcast"]
            lines.append(
                f"- broadcast-max, {name}: {b['received']:,} of {b['connected']:,} connected clients "
                f"({b['clients']:,} tried) got it; first after {fmt(b['first_ms'])} ms, half after "
                f"{fmt(b['p50_ms'])} ms, 99% after {fmt(b['p99_ms'])} ms, the last after {fmt(b['last_ms'])} ms; "
                f"server CPU {b['server_cpu_seconds']:.2f} s; RSS {b['rss_kib'] / 1024:,.0f} MiB before, "
                f"peak {b['peak_rss_kib'] / 1024:,.0f} MiB during"
            )
    for name, result in results.items():
        if result.get("slow"):
            slow = result["slow"]
            backlog = f", SOCKETIO_MAX_BACKLOG {slow['max_backlog']}" if slow["max_backlog"] else ""
            for phase in ("alone", "with_stalled"):
                p = slow[phase]
                lat = {key: value / 1000 if value is not None else None for key, value in p["latency_us"].items()}
                queued = p["stalled_send_queue_peak_bytes"] / 2**20
                drops = ", ".join(f"{t:g}" for t in p["drop_times_s"][:5]) + (
                    ", ..." if len(p["drop_times_s"]) > 5 else ""
                )
                lines.append(
                    f"- slow-clients, {name}{backlog}, {p['stalled']} stalled: {p['delivered']:,}/{p['expected']:,} "
                    f"delivered to {p['receivers']} receivers in {p['seconds']:.1f} s, p50 {fmt(lat['p50'])} ms, "
                    f"p99 {fmt(lat['p99'])} ms, max {fmt(lat['max'])} ms; "
                    f"RSS {p['rss_start_kib'] / 1024:,.0f} -> peak {p['rss_peak_kib'] / 1024:,.0f} MiB "
                    f"(+{p['rss_growth_kib'] / 1024:,.1f}), {p['rss_end_kib'] / 1024:,.0f} MiB at the end; "
                    f"stalled dropped: {p['stalled_dropped']} ({p['drops_from']}"
                    + (f", at {drops} s" if drops else "")
                    + f"), TCP connections closed: {p['stalled_closed']}; "
                    f"kernel send queues of the stalled sockets up to {queued:,.1f} MiB"
                )
    return lines


def summarize(results: dict, config: Config) -> list[dict]:
    rows = []
    for figure in figures(config):
        values = {name: figure.get(results[name]) if name in results else None for name in SERVERS}
        if all(value is None for value in values.values()):
            continue  # a scenario that did not run

        def ratio(a: str, b: str, values: dict = values) -> float | None:
            if values[a] is None or not values[b]:
                return None
            return values[a] / values[b]

        rows.append(
            {
                "key": figure.key,
                "figure": figure.label,
                "unit": figure.unit,
                "lower_is_better": figure.lower_is_better,
                **values,
                "project/plain": ratio("project", "plain"),
                "project/node": ratio("project", "node"),
                "plain/node": ratio("plain", "node"),
            }
        )
    return rows


def other_cpu_shares(result: dict) -> list[float]:
    rows = [*result.get("fanout", []), *result.get("polling", [])]
    if result.get("latency"):
        rows.append(result["latency"])
    return [row["other_cpu_share"] for row in rows if row.get("other_cpu_share") is not None]


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


def markdown_table(rows: list[dict]) -> str:
    lines = [
        "| figure | unit | project | plain python-socketio | Node socket.io "
        "| project / plain | project / Node | plain / Node |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in rows:
        cells = [row["figure"], row["unit"], fmt(row["project"]), fmt(row["plain"]), fmt(row["node"])]
        for key in ("project/plain", "project/node", "plain/node"):
            cells.append(f"{row[key]:.2f}x" if row[key] is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def machine_info(project_dir: Path) -> dict:
    cpu_model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break

    def node_package(name: str) -> str | None:
        with contextlib.suppress(OSError, ValueError):
            return json.loads((BENCH / "node_modules" / name / "package.json").read_text())["version"]
        return None

    def py_package(name: str) -> str | None:
        with contextlib.suppress(Exception):
            return version(name)
        return None

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=project_dir, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "socketio_django", "chatroom", "project", "run_example.py"],
        cwd=project_dir,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return {
        "cores": os.cpu_count(),
        "cpu": cpu_model,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "node": subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip(),
        "packages": {
            "Django": py_package("Django"),
            "gevent": py_package("gevent"),
            "gevent-websocket": py_package("gevent-websocket"),
            "python-socketio": py_package("python-socketio"),
            "python-engineio": py_package("python-engineio"),
            "socket.io (node)": node_package("socket.io"),
            "engine.io (node)": node_package("engine.io"),
            "ws (node)": node_package("ws"),
        },
        "project_dir": str(project_dir),
        "project_commit": commit or None,
        "project_uncommitted_changes": bool(dirty),
    }


def plot(results: dict, config: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colors = {"project": "#1f77b4", "plain": "#2ca02c", "node": "#d62728"}
    names = [name for name in SERVERS if name in results]
    fig, grid = plt.subplots(2, 3, figsize=(15, 8.4))
    axes = grid.flatten()

    def bars(ax: Any, groups: list[str], value: Callable[[str, int], float | None], title: str, ylabel: str) -> None:
        width = 0.8 / max(1, len(names))
        for k, name in enumerate(names):
            heights = [value(name, i) or 0 for i in range(len(groups))]
            xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(groups))]
            ax.bar(xs, heights, width, label=LABELS[name], color=colors[name])
        ax.set_xticks(range(len(groups)), groups)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel)

    def fanout_value(kind: str, sizes: list[int]) -> Callable[[str, int], float | None]:
        def value(name: str, i: int) -> float | None:
            for row in results[name].get(kind, []):
                if row["size"] == sizes[i]:
                    return row["cpu_us_per_delivery"]
            return None

        return value

    ws_groups = [f"WS {n:,}" for n in config.fanout_sizes] + [f"poll {n:,}" for n in config.polling_sizes]

    def cpu_value(name: str, i: int) -> float | None:
        if i < len(config.fanout_sizes):
            return fanout_value("fanout", config.fanout_sizes)(name, i)
        return fanout_value("polling", config.polling_sizes)(name, i - len(config.fanout_sizes))

    bars(axes[0], ws_groups, cpu_value, "server CPU per delivered message", "µs (lower is better)")

    def latency_value(name: str, i: int) -> float | None:
        latency = results[name].get("latency")
        return latency["latency_us"][("p50", "p99")[i]] / 1000 if latency and latency["latency_us"]["p50"] else None

    bars(
        axes[1],
        ["p50", "p99"],
        latency_value,
        f"delivery latency, {config.latency_clients:,} clients, {config.latency_rate:g} msg/s",
        "ms (lower is better)",
    )

    def memory_value(name: str, i: int) -> float | None:
        rows = (results[name].get("memory") or {}).get("sizes", [])
        return rows[i]["kib_per_connection"] if i < len(rows) else None

    bars(
        axes[2],
        [f"{n:,}" for n in config.memory_sizes],
        memory_value,
        "RSS per idle WebSocket connection",
        "KiB (lower is better)",
    )

    def max_value(name: str, i: int) -> float | None:
        return (results[name].get("memory") or {}).get("max_connections", {}).get("held")

    bars(
        axes[3],
        [f"tried {config.max_connections:,}"],
        max_value,
        "WebSocket connections held by one process",
        "connections (higher is better)",
    )

    def broadcast_value(name: str, i: int) -> float | None:
        return (results[name].get("broadcast") or {}).get("last_ms")

    bars(
        axes[4],
        [f"{config.broadcast_clients:,} clients"],
        broadcast_value,
        "one broadcast: time until the last client got it",
        "ms (lower is better)",
    )

    def slow_value(name: str, i: int) -> float | None:
        slow = results[name].get("slow")
        return slow[("alone", "with_stalled")[i]]["rss_growth_kib"] / 1024 if slow else None

    bars(
        axes[5],
        ["no stalled clients", f"{config.slow_stalled} stalled clients"],
        slow_value,
        f"server RSS growth, {config.slow_messages:,} messages of ~1 KB",
        "MiB (lower is better)",
    )
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(names), fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# -- main --------------------------------------------------------------------------


def sizes(text: str) -> list[int]:
    return sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})


def export_project(ref: str, workdir: Path) -> Path:
    """A clean copy of the project at git ``ref``, so edits in progress do not leak into a run."""
    target = workdir / "project"
    target.mkdir()
    archive = subprocess.run(["git", "archive", ref], cwd=ROOT, check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(target)], input=archive, check=True)
    (target / ".git-ref").write_text(
        subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True, text=True).stdout
    )
    return target


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run: a few clients, seconds")
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma separated subset of project,plain,node")
    parser.add_argument(
        "--scenarios",
        default="fanout,latency,memory,polling,broadcast-max,slow-clients",
        help="comma separated subset of the scenarios",
    )
    parser.add_argument("--fanout-sizes", type=sizes, help="WebSocket receivers, default 1000,5000")
    parser.add_argument("--messages", type=int, help="broadcast messages per fan-out size, default 100")
    parser.add_argument("--window", type=int, default=4, help="messages in flight during a fan-out")
    parser.add_argument("--latency-clients", type=int, help="default 1000")
    parser.add_argument("--latency-rate", type=float, help="messages per second, default 20")
    parser.add_argument("--latency-seconds", type=float, help="default 15")
    parser.add_argument("--memory-sizes", type=sizes, help="idle connections, default 1000,5000,15000")
    parser.add_argument("--max-connections", type=int, help="connections to try, default 19000")
    parser.add_argument("--room-size", type=int, default=50, help="clients per room in the memory scenario")
    parser.add_argument("--polling-sizes", type=sizes, help="long-polling receivers, default 250,1000")
    parser.add_argument("--polling-messages", type=int, help="default 50")
    parser.add_argument("--broadcast-clients", type=int, help="broadcast-max: clients of /echo, default 19000")
    parser.add_argument("--slow-receivers", type=int, help="slow-clients: normal receivers, default 50")
    parser.add_argument("--slow-stalled", type=int, help="slow-clients: stalled receivers, default 10")
    parser.add_argument("--slow-messages", type=int, help="slow-clients: messages per run, default 6000")
    parser.add_argument("--slow-rate", type=float, help="slow-clients: messages per second, default 300")
    parser.add_argument("--slow-pad", type=int, default=1000, help="slow-clients: characters per message text")
    parser.add_argument("--max-backlog", type=int, help="SOCKETIO_MAX_BACKLOG for the project (default its own, 1000)")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--project-ref", help="benchmark the project at this git ref (default: the work tree)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results, or a temp dir if --quick)")
    parser.add_argument("--plot", type=Path, help="PNG to write (default docs/benchmarks.png; none if --quick)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--merge", action="store_true", help="add this run's scenarios to the results already in --out's results.json"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the Python servers during the fan-outs, into this dir")
    args = parser.parse_args(argv)
    if args.quick:
        defaults = dict(
            fanout_sizes=[5],
            messages=5,
            latency_clients=5,
            latency_rate=20,
            latency_seconds=1,
            memory_sizes=[10, 20],
            max_connections=30,
            polling_sizes=[3],
            polling_messages=5,
            broadcast_clients=20,
            slow_receivers=4,
            slow_stalled=2,
            slow_messages=40,
            slow_rate=100,
        )
    else:
        defaults = dict(
            fanout_sizes=[1000, 5000],
            messages=100,
            latency_clients=1000,
            latency_rate=20,
            latency_seconds=15,
            memory_sizes=[1000, 5000, 15000],
            max_connections=19000,
            polling_sizes=[250, 1000],
            polling_messages=50,
            broadcast_clients=19000,
            slow_receivers=50,
            slow_stalled=10,
            slow_messages=6000,
            slow_rate=300,
        )
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (BENCH / "node_modules" / "socket.io").is_dir():
        sys.exit("bench/node_modules is missing: run `npm ci --prefix bench` first")
    # Every Config field with a command-line option of the same name comes from it.
    options = {item.name: getattr(args, item.name) for item in dataclasses.fields(Config) if hasattr(args, item.name)}
    config = Config(
        **options,
        quiet_ms=300 if args.quick else 1500,
        settle_seconds=0.2 if args.quick else 3,
        time_limit=120 if args.quick else 1800,
        profile_dir=args.profile,
    )
    servers = [name for name in args.servers.split(",") if name]
    scenarios = [name for name in args.scenarios.split(",") if name]
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else BENCH / "results")
    plot_path = None if args.no_plot else (args.plot or (None if args.quick else ROOT / "docs" / "benchmarks.png"))
    command = "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)

    results: dict[str, dict] = {name: {} for name in servers}
    merged_from = None
    previous = out_dir / "results.json"
    if args.merge and previous.exists():
        earlier = json.loads(previous.read_text())
        results = {**earlier["results"], **{name: dict(earlier["results"].get(name, {})) for name in servers}}
        command = f"{earlier['command']}; then {command}"
        merged_from = earlier["machine"].get("merged_from") or earlier["machine"].get("project_commit")
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        project_dir = export_project(args.project_ref, workdir) if args.project_ref else ROOT
        machine = machine_info(ROOT)
        if args.project_ref:
            machine["project_commit"] = (project_dir / ".git-ref").read_text().strip()[:12]
            machine["project_uncommitted_changes"] = False
        if merged_from:
            machine["merged_from"] = merged_from  # the project commit of the scenarios of the earlier run
        for scenario in scenarios:
            for name in servers:
                log(f"{scenario}: {name}")
                if scenario == "fanout":
                    results[name]["fanout"] = fanout_scenario(name, config, workdir, project_dir, "websocket")
                elif scenario == "polling":
                    results[name]["polling"] = fanout_scenario(name, config, workdir, project_dir, "polling")
                elif scenario == "latency":
                    results[name]["latency"] = latency_scenario(name, config, workdir, project_dir)
                elif scenario == "memory":
                    results[name]["memory"] = memory_scenario(name, config, workdir, project_dir)
                elif scenario == "broadcast-max":
                    results[name]["broadcast"] = broadcast_scenario(name, config, workdir, project_dir)
                elif scenario == "slow-clients":
                    results[name]["slow"] = slow_clients_scenario(name, config, workdir, project_dir)
                else:
                    raise SystemExit(f"unknown scenario {scenario}")

    table = summarize(results, config)
    report = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine,
        "config": {key: value for key, value in vars(config).items() if key not in ("profile_dir", "extra")},
        "servers": {name: LABELS[name] for name in results},
        "results": results,
        "table": table,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(report, indent=2) + "\n")
    md = [
        f"# Benchmark results ({report['date']})",
        "",
        f"Command: `{command}` ({report['seconds']:.0f} s)",
        "",
        f"Machine: {machine['cores']} cores ({machine['cpu']}), {machine['memory_gib']} GiB, "
        f"Linux {machine['kernel']}, "
        f"Python {machine['python']}, Node {machine['node']}; project commit {machine['project_commit']}"
        + (" with uncommitted changes" if machine["project_uncommitted_changes"] else "")
        + (
            f" ({', '.join(scenarios)}; the other scenarios: project commit {machine['merged_from']})"
            if machine.get("merged_from")
            else ""
        ),
        "",
        ", ".join(f"{name} {ver}" for name, ver in machine["packages"].items()),
        "",
        markdown_table(table),
        "",
        *details(results, config),
        "",
        "CPU used by neither the server nor the load generator during each measurement (other processes, "
        "kernel threads), in cores; near 0 means a quiet machine: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{share:.2f}" for share in other_cpu_shares(results[name])) for name in results
        ),
        "",
    ]
    (out_dir / "results.md").write_text("\n".join(md))
    if plot_path is not None:
        plot(results, config, plot_path)
    print("\n".join(md))
    print(f"results: {out_dir / 'results.json'}" + (f", plot: {plot_path}" if plot_path else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
