"""Fan-out: N receivers in one room, one sender; after the join traffic has drained, M messages
(at most ``window`` not yet delivered to everyone): server CPU (utime + stime) per delivered message.

The same over WebSocket (``fanout``) and long-polling (``polling``) receivers; the scale-out
scenarios run it on several server processes (:mod:`.scale_out`).
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.processes import log
from bench.profiling import start_profiler, stop_profiler
from bench.scenarios.base import Config, Meter, Session, per


def websocket(name: str, config: Config, workdir: Path, project_dir: Path) -> list[dict]:
    return run(name, config, workdir, project_dir, "websocket", config.fanout_sizes, config.messages)


def polling(name: str, config: Config, workdir: Path, project_dir: Path) -> list[dict]:
    return run(name, config, workdir, project_dir, "polling", config.polling_sizes, config.polling_messages)


def run(
    name: str, config: Config, workdir: Path, project_dir: Path, transport: str, sizes: list[int], messages: int
) -> list[dict]:
    """One row per size (receivers added to the same room from one size to the next)."""
    results = []
    with Session(name, config, workdir, project_dir, sticky=transport == "polling") as session:
        session.sender()
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
            profiler = start_profiler(session.server, config.profile_dir, f"{name}-{transport}-{size}")
            meter = Meter(session)
            out = session.load("fanout", messages=messages, window=config.window, timeout=config.time_limit)
            cpu = meter.stop()
            stop_profiler(profiler)
            session.check_alive()
            delivered, seconds = out["delivered"], out["seconds"]
            row = {
                "size": size,
                "transport": transport,
                "receivers": out["receivers"],
                "messages": messages,
                "expected": out["expected"],
                "delivered": delivered,
                "all_delivered": out["all_delivered"] and out["receivers"] == size,
                "cpu_seconds": cpu["server"],
                "cpu_us_per_delivery": per(cpu["server"] * 1e6, delivered),
                "wall_seconds": seconds,
                # Near 1: the server was the bottleneck (one core), not the load generator.
                "server_cpu_share": per(cpu["server"], seconds),
                "loadgen_cpu_us_per_delivery": per(cpu["loadgen"] * 1e6, delivered),
                "other_cpu_share": per(cpu["other"], seconds),
                "deliveries_per_second": out["deliveries_per_second"],
                "latency_us": out["latency_us"],
                "join_seconds": join_seconds,
                "join_cpu_seconds": join_cpu,
                "join_packets_received": drained["announcements"] + drained["messages"],
                "drained": drained["drained"],
            }
            if session.redis:
                row["redis_cpu_seconds"] = cpu["redis"]
                row["redis_cpu_us_per_delivery"] = per(cpu["redis"] * 1e6, delivered)
                row["cpu_us_per_delivery_with_redis"] = per((cpu["server"] + cpu["redis"]) * 1e6, delivered)
                row["receivers_by_server_worker"] = out.get("receivers_by_server_worker")
            results.append(row)
            log(
                f"  {name} {transport} fan-out to {size}: {delivered}/{out['expected']} delivered, "
                f"{row['cpu_us_per_delivery'] or 0:.2f} us CPU per delivery"
                + (f" (+{row['redis_cpu_us_per_delivery'] or 0:.2f} Redis)" if session.redis else "")
            )
    return results
