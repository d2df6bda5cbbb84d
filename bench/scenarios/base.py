"""What every scenario shares: its settings (:class:`Config`), one fresh server with its load
generator (:class:`Session`, with Redis for the scale-out servers), and the CPU of one
measurement (:class:`Meter`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import processes
from bench.loadgen import LoadGenerator
from bench.processes import log
from bench.servers import Redis, Server, needs_redis


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
    scale_servers: list[str]
    scale_sizes: list[int]
    scale_polling_sizes: list[int]
    scale_max_clients: int
    scale_max_workers: int
    quiet_ms: int
    settle_seconds: float
    time_limit: float
    # join-storm (defaults: a results.json of before the scenario still renders)
    storm_clients: int = 19000
    storm_memory_clients: int = 5000
    storm_memory_wait: float = 35
    storm_limit: float = 120
    profile_dir: Path | None = None
    extra: dict = field(default_factory=dict)


class Session:
    """One fresh server (and its Redis, if it needs one) plus one load generator, for one scenario.

    ``sticky``: Node's cluster routes requests by session (long-polling needs it).
    ``workers``: load-generator processes, default ``config.workers``.
    """

    def __init__(
        self,
        name: str,
        config: Config,
        workdir: Path,
        project_dir: Path,
        env: dict[str, str] | None = None,
        sticky: bool = False,
        workers: int | None = None,
    ) -> None:
        self.config = config
        self.redis = Redis("redis", workdir).start() if needs_redis(name) else None
        try:
            redis_url = self.redis.redis_url if self.redis else None
            server = Server(name, workdir, project_dir=project_dir, env=env or {}, redis_url=redis_url, sticky=sticky)
            self.server = server.start()
        except BaseException:
            if self.redis:
                self.redis.stop()
            raise
        self.load = LoadGenerator(self.server.url, workers or config.workers, config.time_limit)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.load.close()
        self.server.stop()
        if self.redis:
            self.redis.stop()

    def connect(self, count: int, **options: Any) -> dict:
        if count <= 0:
            return self.load("stats")
        reply = self.load("connect", count=count, **options)
        if reply["failed"]:
            log(f"  {reply['failed']} of {count} connections failed: {reply['failures']}")
        return reply

    def sender(self, **options: Any) -> dict:
        reply = self.load("sender", **options)
        if reply.get("sender") != "open":
            raise RuntimeError(f"{self.server.name}: the sender could not connect: {reply}")
        return reply

    def drain(self) -> dict:
        return self.load("drain", quiet_ms=self.config.quiet_ms, timeout=self.config.time_limit)

    def check_alive(self) -> None:
        if not self.server.alive():
            raise RuntimeError(f"{self.server.name} server died:\n{self.server.log_tail()}")


class Meter:
    """CPU over one measurement: the server's processes, Redis's, the load generator's, the rest of the machine."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.before = self._read()

    def _read(self) -> tuple[float, float, float, float]:
        session = self.session
        redis = session.redis.cpu_seconds() if session.redis else 0.0
        return session.server.cpu_seconds(), redis, session.load.cpu_seconds(), processes.system_busy_seconds()

    def stop(self) -> dict:
        server, redis, load, busy = (after - before for before, after in zip(self.before, self._read(), strict=True))
        return {
            "server": server,
            "redis": redis if self.session.redis else None,
            "loadgen": load,
            # CPU that neither the server, Redis nor the load generator used (other processes, the
            # kernel's share of loopback): well above 0 means the machine was not quiet.
            "other": busy - server - redis - load,
        }


def per(value: float | None, count: float) -> float | None:
    """``value / count``, None when either is missing or zero."""
    return value / count if value is not None and count else None
