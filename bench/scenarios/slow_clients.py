"""slow-clients: K receivers and one sender in one room, M messages of about 1 KB, once alone and
once with S stalled receivers in the room (connected, then they never read their socket again):
deliveries and latency of the normal receivers, the server's RSS during the run, and when the
server closed the stalled ones."""

from __future__ import annotations

import time
from pathlib import Path

from bench.processes import log
from bench.scenarios.base import Config, Session
from bench.scenarios.sampling import Sampler

STALLED_SOURCES = "127.0.2."  # the stalled receivers' source addresses, to find their sockets in /proc/net/tcp


def run(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    env = {"SOCKETIO_MAX_BACKLOG": str(config.max_backlog)} if config.max_backlog and name == "project" else {}
    with Session(name, config, workdir, project_dir, env=env) as session:
        session.load("sender")
        session.connect(config.slow_receivers)
        session.drain()
        time.sleep(config.settle_seconds)
        alone = phase(session, "alone")
        reply = session.connect(config.slow_stalled, stalled=True, source_prefix=STALLED_SOURCES)
        session.drain()
        with_stalled = phase(session, f"with {reply['stalled']} stalled")
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


def phase(session: Session, label: str) -> dict:
    """One run of the sender, with whatever stalled receivers the room has now."""
    config, name = session.config, session.server.name
    seconds = config.slow_messages / config.slow_rate
    marker = "reads too slowly" if name == "project" else None  # the project logs each client it drops
    sampler = Sampler(session.server, sockets=STALLED_SOURCES, log_marker=marker)
    out = session.load("steady", rate=config.slow_rate, seconds=seconds, pad=config.slow_pad, timeout=seconds + 120)
    sent_seconds = time.monotonic() - sampler.started
    time.sleep(max(config.settle_seconds, 1))  # what the server still holds once the sender stops
    samples = sampler.stop()
    stats = session.load("stats")
    rss0 = samples[0]["rss_kib"]
    closed = sampler.closed_at()
    logged = sampler.marked_at() if marker else None
    result = {
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
        f"p99 {lat['p99']} us, RSS +{result['rss_growth_kib'] // 1024} MiB, "
        f"stalled dropped {result['stalled_dropped']}/{result['stalled']} at {result['drop_times_s'][:3]} s, "
        f"TCP closed {result['stalled_closed']}"
    )
    return result
