"""Memory: idle connections in rooms of ``room_size``: RSS per connection at each size, then as
many connections as one process holds (its open-files soft limit raised to the hard one)."""

from __future__ import annotations

import time
from pathlib import Path

from bench.processes import log
from bench.scenarios.base import Config, Session


def run(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
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
        alive = session.server.alive()
        max_result = {
            "target": config.max_connections,
            "held": stats["connected"] if alive else 0,
            "failed": reply["failed"],
            "closed": stats["closed"],
            "failures": stats["failures"],
            "server_alive": alive,
            "server_open_files": session.server.open_files() if alive else None,
            "server_fd_limit": session.server.fd_limit() if alive else None,
            "rss_kib": session.server.rss_kib() if alive else None,
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
