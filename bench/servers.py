"""The servers under test, each started fresh for a scenario, and the Redis the scale-out ones share.

A :class:`Server` is one process tree: ``project`` (``run_example.py``, one process), ``plain``
(``plain_server.py``), ``node`` (``node_server.js``, one process), and for the scale-out
scenarios ``project-2w`` / ``project-4w`` (Gunicorn with 2 or 4 workers and Redis, as README's
"Several workers" section runs it) and ``node-cluster`` (``node_server.js --workers 2`` with
``@socket.io/redis-adapter``; ``sticky`` routes its requests by session, for long-polling).
Its CPU, memory and open files are summed over every process of the tree. :class:`Redis` is
Debian's ``redis-server`` on a free port, with no persistence.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from bench import processes

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
SERVERS = ("project", "plain", "node")
SCALE_SERVERS = ("project", "project-2w", "project-4w", "node-cluster")
LABELS = {
    "project": "this project (Django view per connection)",
    "plain": "plain python-socketio (gevent)",
    "node": "Node socket.io 4",
    "project-2w": "this project, 2 Gunicorn workers + Redis",
    "project-4w": "this project, 4 Gunicorn workers + Redis",
    "node-cluster": "Node socket.io 4, node:cluster of 2 + @socket.io/redis-adapter",
}
# Server processes that serve clients (the Gunicorn master and Node's primary come on top).
WORKERS = {"project-2w": 2, "project-4w": 4, "node-cluster": 2}


def needs_redis(name: str) -> bool:
    return name in WORKERS


@dataclass
class Process:
    """One process tree started fresh, ready once it listens on ``port`` (and logged ``ready`` enough times)."""

    name: str
    workdir: Path
    port: int = 0
    process: subprocess.Popen | None = None
    log_path: Path | None = None

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        raise NotImplementedError

    def ready(self) -> bool:
        """Whether the server can take clients, once it listens (every worker up)."""
        return True

    def start(self) -> Self:
        self.port = processes.free_port()
        argv, env, cwd = self.command()
        self.log_path = self.workdir / f"{self.name}-{self.port}.log"
        with open(self.log_path, "wb") as out:
            self.process = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=processes.raise_fd_limit,
                process_group=0,  # stop() ends the whole tree, whatever its master does
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_tail()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=1):
                if self.ready():
                    return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within 60 s:\n{self.log_tail()}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_seconds(self) -> float:
        """utime + stime of every process of the tree (all their threads), in seconds."""
        return processes.tree_cpu_seconds(self.pid)

    def rss_kib(self) -> int:
        return processes.tree_rss_kib(self.pid)

    def open_files(self) -> int:
        return sum(processes.open_files(pid) for pid in processes.process_tree(self.pid))

    def fd_limit(self) -> int:
        return processes.fd_limit(self.pid)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path and self.log_path.exists() else ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(5)  # a graceful shutdown is not what we measure
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, signal.SIGKILL)  # workers the master left behind


@dataclass
class Redis(Process):
    """Debian's redis-server on a free port of 127.0.0.1, nothing saved to disk."""

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        argv = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        return argv, dict(os.environ), self.workdir

    @property
    def redis_url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@dataclass
class Server(Process):
    """One server under test (see the module's docstring for the names)."""

    project_dir: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    redis_url: str | None = None
    sticky: bool = False

    def command(self) -> tuple[list[str], dict[str, str], Path]:
        port = str(self.port)
        env = {**os.environ, **self.env}
        if self.name == "plain":
            return [sys.executable, str(BENCH / "plain_server.py"), "--port", port], env, ROOT
        if self.name.startswith("node"):
            argv = ["node", str(BENCH / "node_server.js"), "--port", port]
            if self.name in WORKERS:
                argv += ["--workers", str(WORKERS[self.name]), "--redis", str(self.redis_url)]
                argv += ["--sticky"] if self.sticky else []
            return argv, env, ROOT
        env["CHAT_DATABASE_PATH"] = str(self.workdir / f"chat-{self.port}.sqlite3")
        # The load generator's sender outpaces any person: the chat's flood limit would refuse it.
        env.setdefault("CHAT_RATE_LIMIT_PER_SECOND", "0")
        if self.name not in WORKERS:
            return [sys.executable, "run_example.py", "--port", port], env, self.project_dir
        env.update(
            REDIS_URL=str(self.redis_url),
            GUNICORN_WORKERS=str(WORKERS[self.name]),
            GUNICORN_BIND=f"127.0.0.1:{port}",
            DJANGO_STATIC_ROOT=str(self.workdir / f"static-{port}"),
            DJANGO_SECRET_KEY="benchmark-only-not-secret",
            SOCKETIO_SHUTDOWN_TIMEOUT="1",  # stop() does not wait for a drain
        )
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py"], env, self.project_dir

    def ready(self) -> bool:
        if self.name not in WORKERS:
            return True
        if self.name.startswith("project"):
            return self.log_text().count("owns the sessions named") >= WORKERS[self.name]
        marker = "sticky primary listening" if self.sticky else "listening on"
        return self.log_text().count(marker) >= (1 if self.sticky else WORKERS[self.name])


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
