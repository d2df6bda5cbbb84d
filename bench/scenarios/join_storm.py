"""join-storm: many WebSocket clients join one room (``lobby``) at once, as after a restart.

Two fresh servers per server under test:

- **the storm** (``storm_clients``, 19,000 in the full run): every client is started before any
  answer is read, from the load generator's source addresses in turn, no retry. Per client: when
  the Socket.IO CONNECT answer came, when ``welcome`` came (the project's; Node and plain
  python-socketio have no welcome: the CONNECT answer counts as it), and whether and why its
  connection ended (closed by the server, or failed: timed out, refused). Once every client was
  welcomed or ended and the join traffic drained, one of them sends one ``message``: how many of
  the others got it. Server CPU from the start until the join traffic drained; the kernel's
  ``ListenOverflows`` / ``ListenDrops`` (/proc/net/netstat) over the storm.
- **memory after a storm** (``storm_memory_clients``, 5,000): after ``room_size``-rooms of warm-up
  clients, that many join one room at once; once the traffic drained, ``storm_memory_wait``
  seconds (35: the project gives freed heap back to the kernel 30 s after a burst,
  socketio_django/memory.py), then the RSS growth per connection, beside the memory scenario's
  rooms of 50.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

from bench.processes import log, tcp_ext_counters
from bench.scenarios.base import Config, Meter, Session

ROOM = "lobby"
COUNTERS = ("ListenOverflows", "ListenDrops")


def log_reasons(text: str) -> dict[str, int]:
    """The project's log: how many connections were refused or disconnected, by reason."""
    counts: Counter[str] = Counter()
    for match in re.finditer(r" (refused|disconnect) .*reason=(['\"])(.*?)\2", text):
        counts[f"{match.group(1)}: {match.group(3)}"] += 1
    return dict(counts)


def welcome_event(name: str) -> str | None:
    """The event that tells a client it joined: the project's ``welcome``; the others have none."""
    return "welcome" if name.startswith("project") else None


def run(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    return {
        "memory": memory(name, config, workdir, project_dir),
        "storm": storm(name, config, workdir, project_dir, config.storm_clients),
    }


def storm(name: str, config: Config, workdir: Path, project_dir: Path, clients: int) -> dict:
    limit = config.storm_limit
    with Session(name, config, workdir, project_dir) as session:
        rss_before = session.server.rss_kib()
        counters_before = tcp_ext_counters(*COUNTERS)
        cpu_before = session.server.cpu_seconds()
        meter = Meter(session)
        joined = session.load(
            "storm",
            count=clients,
            room=ROOM,
            welcome=welcome_event(name),
            limit=limit,
            quiet_ms=config.quiet_ms,
            timeout=limit + 180,
        )
        cpu = session.server.cpu_seconds() - cpu_before
        machine = meter.stop()
        counters = {key: value - counters_before[key] for key, value in tcp_ext_counters(*COUNTERS).items()}
        rss_after = session.server.rss_kib()
        session.check_alive()
        message = session.load("storm_message", limit=60, quiet_ms=5000, timeout=120)
        report = session.load("storm_report")
        session.check_alive()
        server_log = log_reasons(session.server.log_text()) if name.startswith("project") else None
    last = report["welcome_us"]["last"]
    result = {
        "clients": clients,
        "room": ROOM,
        "welcome_event": welcome_event(name),
        "limit_seconds": limit,
        "welcomed": report["welcomed"],
        "connect_answered": report["opened"],
        "closed_by_server": report["closed_by_server"],
        "failed": report["failed"],
        "ends": report["ends"],
        "open_at_end": report["open_now"],
        "settled_seconds": joined["settled_seconds"],
        "drained_seconds": joined["seconds"],
        "last_welcome_seconds": last / 1e6 if last is not None else None,
        "welcome_ms": {key: value / 1000 if value is not None else None for key, value in report["welcome_us"].items()},
        "connect_answer_ms": {
            key: value / 1000 if value is not None else None for key, value in report["open_us"].items()
        },
        "server_cpu_seconds": cpu,
        "loadgen_cpu_seconds": machine["loadgen"],
        # CPU of other processes during the storm, in cores: well above 0, the machine was not quiet.
        "other_cpu_share": machine["other"] / joined["seconds"] if joined["seconds"] else None,
        "server_log_reasons": server_log,
        "listen_overflows": counters["ListenOverflows"],
        "listen_drops": counters["ListenDrops"],
        "rss_before_kib": rss_before,
        "rss_after_kib": rss_after,
        "message_sent": message["sent"],
        "message_reached": report["final_reached"],
        "message_expected": report["final_expected"],
        "message_missed_open": report["final_missed_open"],
        "message_seconds": message["seconds"],
    }
    log(
        f"  {name} join-storm of {clients}: {result['welcomed']} welcomed, {result['closed_by_server']} closed by the "
        f"server, {result['failed']} failed, last welcome after {result['last_welcome_seconds'] or 0:.1f} s, "
        f"CPU {cpu:.1f} s, ListenOverflows +{counters['ListenOverflows']}; message reached "
        f"{result['message_reached']}/{result['message_expected']}"
    )
    return result


def memory(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    clients = config.storm_memory_clients
    with Session(name, config, workdir, project_dir) as session:
        warm = min(100, max(1, clients // 10))
        session.connect(warm, room_size=config.room_size)
        session.drain()
        time.sleep(config.settle_seconds)
        warm_rss = session.server.rss_kib()
        joined = session.load(
            "storm",
            count=clients,
            room=ROOM,
            welcome=welcome_event(name),
            limit=config.storm_limit,
            quiet_ms=config.quiet_ms,
            timeout=config.storm_limit + 180,
        )
        drained_rss = session.server.rss_kib()
        time.sleep(config.storm_memory_wait)
        session.check_alive()
        rss = session.server.rss_kib()
        stats = session.load("stats")
    connected = stats["connected"] - warm
    result = {
        "clients": clients,
        "connected": connected,
        "welcomed": joined["welcomed"],
        "warm_connections": warm,
        "warm_rss_kib": warm_rss,
        "drained_rss_kib": drained_rss,
        "wait_seconds": config.storm_memory_wait,
        "rss_kib": rss,
        "kib_per_connection": (rss - warm_rss) / connected if connected > 0 else None,
        "kib_per_connection_drained": (drained_rss - warm_rss) / connected if connected > 0 else None,
    }
    log(
        f"  {name} storm memory: {connected} in one room, RSS {drained_rss // 1024} MiB when drained, "
        f"{rss // 1024} MiB {config.storm_memory_wait:g} s later: {result['kib_per_connection'] or 0:.1f} KiB each"
    )
    return result
