"""broadcast-max: N WebSocket clients in namespace /echo (the project's echo view; the same
behaviour in the reference servers), one event that every other client of the namespace hears
as ``seen``: how many got it, how soon, the server's RSS. The scale-out run does it across 4
workers (:mod:`.scale_out`)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.processes import log
from bench.scenarios.base import Config, Session
from bench.scenarios.sampling import Sampler


def run(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    return run_with(name, config, workdir, project_dir, config.broadcast_clients)


def run_with(
    name: str,
    config: Config,
    workdir: Path,
    project_dir: Path,
    clients: int,
    workers: int | None = None,
    env: dict[str, str] | None = None,
) -> dict:
    """``clients`` in /echo, from ``workers`` load-generator processes, the server's ``env`` added."""
    echo = {"namespace": "/echo"}
    with Session(name, config, workdir, project_dir, env=env, workers=workers) as session:
        session.sender(**echo)
        baseline_rss = session.server.rss_kib()
        started = time.monotonic()
        reply = session.connect(clients, retries=1, attempt_timeout=30, max_pending=64, **echo)
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
        open_files = session.server.open_files()

    def ms(key: str) -> float | None:
        return out[key] / 1000 if out[key] is not None else None

    result = {
        "clients": clients,
        "connected": out["expected"],
        "connect_failed": reply["failed"],
        "connect_failures": reply["failures"],
        "connect_seconds": connect_seconds,
        "received": out["received"],
        "all_received": out["all_received"] and out["expected"] == clients,
        "first_ms": ms("first_us"),
        "p50_ms": ms("p50_us"),
        "p99_ms": ms("p99_us"),
        "last_ms": ms("last_us"),
        "server_cpu_seconds": cpu,
        "baseline_rss_kib": baseline_rss,
        "rss_kib": rss_before,
        "peak_rss_kib": max(row["rss_kib"] for row in samples),
        "closed": stats["closed"],
        "server_open_files": open_files,
        "receivers_by_server_worker": stats.get("receivers_by_server_worker"),
    }
    log(
        f"  {name} broadcast-max: {out['received']}/{out['expected']} received, last after "
        f"{result['last_ms'] or 0:.0f} ms, RSS {rss_before // 1024} MiB (peak {result['peak_rss_kib'] // 1024} MiB)"
    )
    return result
