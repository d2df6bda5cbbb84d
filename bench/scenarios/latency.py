"""Latency: N receivers in one room, a steady message rate: p50 / p99 delivery latency.

On servers whose session ids name their process (this project), the latencies are also split
by whether the receiver sits on the sender's process (the scale-out run, :mod:`.scale_out`).
"""

from __future__ import annotations

from pathlib import Path

from bench.processes import log
from bench.profiling import start_profiler, stop_profiler
from bench.scenarios.base import Config, Meter, Session, per


def run(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    with Session(name, config, workdir, project_dir) as session:
        session.load("sender")
        session.connect(config.latency_clients)
        drained = session.drain()
        profiler = start_profiler(session.server, config.profile_dir, f"{name}-latency", idle=True)
        meter = Meter(session)
        out = session.load(
            "steady",
            rate=config.latency_rate,
            seconds=config.latency_seconds,
            timeout=max(30, config.latency_seconds * 2),
        )
        cpu = meter.stop()
        stop_profiler(profiler)
        session.check_alive()
    seconds = out["seconds"]
    result = {
        "receivers": out["receivers"],
        "rate": config.latency_rate,
        "seconds": config.latency_seconds,
        "expected": out["expected"],
        "delivered": out["delivered"],
        "all_delivered": out["all_delivered"] and drained["connected"] == config.latency_clients,
        "cpu_seconds": cpu["server"],
        "cpu_share": per(cpu["server"], seconds),
        "loadgen_cpu_share": per(cpu["loadgen"], seconds),
        "other_cpu_share": per(cpu["other"], seconds),
        "latency_us": out["latency_us"],
    }
    split = ("sender_server_worker", "receivers_by_server_worker", "latency_us_same_worker", "latency_us_other_worker")
    result.update({key: out[key] for key in split if key in out})
    if cpu["redis"] is not None:
        result["redis_cpu_share"] = per(cpu["redis"], seconds)
    lat = out["latency_us"]
    log(f"  {name} latency: p50 {lat['p50']} us, p99 {lat['p99']} us, {out['delivered']}/{out['expected']} delivered")
    if "latency_us_other_worker" in out and len(out.get("receivers_by_server_worker", {})) > 1:
        other = out["latency_us_other_worker"]
        log(f"  {name} latency, receivers on another worker: p50 {other['p50']} us, p99 {other['p99']} us")
    return result
