"""The figures a run reports: which number of results.json each table row shows, the rows and
their ratios, the per-server details, the scale-out targets, and results.md.

Two tables: one process of each server (``project``, ``plain``, ``node``), and the scale-out
run (the project in one process, on 2 and 4 Gunicorn workers, and Node's cluster of 2).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from bench.scenarios.base import Config
from bench.servers import BENCH, SCALE_SERVERS, SERVERS


@dataclass
class Figure:
    key: str
    label: str
    unit: str
    get: Callable[[dict], float | None]
    lower_is_better: bool = True


def fanout_get(kind: str, size: int, field_name: str = "cpu_us_per_delivery") -> Callable[[dict], Any]:
    """A field of the row of ``size`` in a fan-out scenario's results."""

    def get(result: dict) -> Any:
        for row in result.get(kind, []):
            if row["size"] == size:
                return row.get(field_name)
        return None

    return get


def broadcast_figures(kind: str, received: str, last: str, rss: str) -> list[Figure]:
    """The figures of a broadcast-max run (``kind``: its key in a server's results), with these labels."""

    def get(name: str) -> Callable[[dict], Any]:
        return lambda r: (r.get(kind) or {}).get(name)

    return [
        Figure(f"{kind}_received", received, "clients", get("received"), lower_is_better=False),
        Figure(f"{kind}_last_ms", last, "ms", get("last_ms")),
        Figure(f"{kind}_rss", rss, "MiB", lambda r: r[kind]["rss_kib"] / 1024 if r.get(kind) else None),
    ]


def figures(config: Config) -> list[Figure]:
    out: list[Figure] = []

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
    out += broadcast_figures(
        "broadcast",
        f"clients that got one broadcast, {n:,} WebSocket clients of /echo in one process",
        f"time until the last of {n:,} clients got the broadcast",
        f"server RSS with {n:,} WebSocket clients of /echo",
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
    return out + storm_figures(config)


def storm_get(part: str, field_name: str) -> Callable[[dict], Any]:
    """A field of the join-storm's ``part`` ("storm" or "memory")."""
    return lambda r: ((r.get("join_storm") or {}).get(part) or {}).get(field_name)


def storm_memory_ratio(result: dict) -> float | None:
    """RSS per connection of the one-room storm / of the memory scenario's rooms at the same size."""
    big = storm_get("memory", "kib_per_connection")(result)
    size = storm_get("memory", "clients")(result)
    small = next(
        (row["kib_per_connection"] for row in (result.get("memory") or {}).get("sizes", []) if row["size"] == size),
        None,
    )
    return big / small if big is not None and small else None


def storm_figures(config: Config) -> list[Figure]:
    n, m = config.storm_clients, config.storm_memory_clients
    joined = f"{n:,} WebSocket clients joining one room at once"
    return [
        Figure(
            "storm_welcomed",
            f"{joined}: welcomed (Node, plain: got the CONNECT answer; no welcome event)",
            "clients",
            storm_get("storm", "welcomed"),
            lower_is_better=False,
        ),
        Figure("storm_closed", f"{joined}: closed by the server", "clients", storm_get("storm", "closed_by_server")),
        Figure(
            "storm_failed",
            f"{joined}: failed otherwise (timed out or refused, {config.storm_limit:g} s each)",
            "clients",
            storm_get("storm", "failed"),
        ),
        Figure(
            "storm_last_welcome",
            f"{joined}: time until the last welcome (Node, plain: CONNECT answer)",
            "s",
            storm_get("storm", "last_welcome_seconds"),
        ),
        Figure(
            "storm_cpu",
            f"{joined}: server CPU until the join traffic drained",
            "s",
            storm_get("storm", "server_cpu_seconds"),
        ),
        Figure(
            "storm_overflows",
            f"{joined}: the kernel's ListenOverflows during the storm",
            "SYNs",
            storm_get("storm", "listen_overflows"),
        ),
        Figure(
            "storm_reach",
            f"{joined}: clients that got one message sent afterwards by one of them (of {n - 1:,})",
            "clients",
            storm_get("storm", "message_reached"),
            lower_is_better=False,
        ),
        Figure(
            "storm_memory",
            f"RSS per connection, {m:,} joined one room at once, {config.storm_memory_wait:g} s after joins drained",
            "KiB",
            storm_get("memory", "kib_per_connection"),
        ),
        Figure(
            "storm_memory_ratio",
            f"RSS per connection, {m:,} in one room after the storm / {m:,} idle in rooms of {config.room_size}",
            "x",
            storm_memory_ratio,
        ),
    ]


def targets(results: dict, config: Config) -> list[dict]:
    """The big-rooms issue's targets for the project in one process: value, limit and whether it met it."""
    out: list[dict] = []
    project, node = results.get("project") or {}, results.get("node") or {}

    def target(text: str, got: float | None, limit: float | None, unit: str, lower: bool = True) -> None:
        met = None if got is None or limit is None else (got <= limit if lower else got >= limit)
        out.append({"target": text, "value": got, "limit": limit, "unit": unit, "met": met, "lower": lower})

    if config.fanout_sizes:
        size = max(config.fanout_sizes)  # the issue's: 5,000
        get = fanout_get("fanout", size, "join_cpu_seconds")
        ours, theirs = get(project), get(node)
        ratio = ours / theirs if ours is not None and theirs else None
        target(f"server CPU to join {size:,} clients to one room / Node's", ratio, 2, "x")
    n = config.storm_clients
    storm = (project.get("join_storm") or {}).get("storm")
    if storm:
        target(
            f"join-storm: clients welcomed, of {n:,} joining one room at once", storm["welcomed"], n, "clients", False
        )
        target(f"join-storm: clients closed by the server, of {n:,}", storm["closed_by_server"], 0, "clients")
        target(f"join-storm: time until the last of {n:,} welcomes", storm["last_welcome_seconds"], 30, "s")
        target(
            f"join-storm: clients that got one message afterwards, of {n - 1:,}",
            storm["message_reached"],
            n - 1,
            "clients",
            False,
        )
    ratio = storm_memory_ratio(project)
    m = config.storm_memory_clients
    target(f"RSS per connection, one room of {m:,} after a storm / rooms of {config.room_size}", ratio, 1.2, "x")
    return [row for row in out if row["value"] is not None]


def storm_details(results: dict) -> list[str]:
    lines = []
    for name, result in results.items():
        js = result.get("join_storm")
        if not js:
            continue
        s, m = js["storm"], js["memory"]
        welcome = "welcome" if s["welcome_event"] else "CONNECT answer (no welcome event)"
        w = s["welcome_ms"]
        ends = ", ".join(f"{key}: {count:,}" for key, count in sorted(s["ends"].items())) or "none"
        lines.append(
            f"- join-storm, {name}: {s['clients']:,} clients of room {s['room']} started at once; "
            f"{s['connect_answered']:,} got the CONNECT answer, {s['welcomed']:,} the {welcome} "
            f"(first {fmt(w['first'])} ms, half {fmt(w['p50'])} ms, 99% {fmt(w['p99'])} ms, last {fmt(w['last'])} ms); "
            f"connections ended: {ends}; every client settled after {s['settled_seconds']:.1f} s, "
            f"the join traffic drained after {s['drained_seconds']:.1f} s; server CPU {s['server_cpu_seconds']:.1f} s; "
            f"ListenOverflows +{s['listen_overflows']:,}, ListenDrops +{s['listen_drops']:,}; "
            f"RSS {s['rss_before_kib'] / 1024:,.0f} -> {s['rss_after_kib'] / 1024:,.0f} MiB; one message then reached "
            f"{s['message_reached']:,} of {s['message_expected']:,} others ({s['message_missed_open']:,} open ones "
            f"missed it) in {s['message_seconds']:.2f} s"
            + (
                "; server log: " + (", ".join(f"{k} {v:,}" for k, v in sorted(s["server_log_reasons"].items())) or "-")
                if s.get("server_log_reasons") is not None
                else ""
            )
        )
        lines.append(
            f"- join-storm memory, {name}: {m['warm_connections']} warm-up clients in rooms, then {m['clients']:,} "
            f"join one room at once ({m['welcomed']:,} welcomed, {m['connected']:,} connected at the end); RSS "
            f"{m['warm_rss_kib'] / 1024:,.0f} MiB before, {m['drained_rss_kib'] / 1024:,.0f} MiB once drained "
            f"({fmt(m['kib_per_connection_drained'])} KiB per connection), {m['rss_kib'] / 1024:,.0f} MiB "
            f"{m['wait_seconds']:g} s later ({fmt(m['kib_per_connection'])} KiB per connection)"
        )
    return lines


def details(results: dict, config: Config) -> list[str]:
    """Per-server lines for the scenarios the table cannot hold."""
    lines = []
    for name, result in results.items():
        if result.get("broadcast"):
            b = result["broadcast"]
            lines.append(
                f"- broadcast-max, {name}: {broadcast_text(b, format(b['clients'], ',') + ' tried')}; "
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


@dataclass(frozen=True)
class Table:
    """The columns of a table (servers, with their headers) and the ratios after them."""

    columns: dict[str, str]  # server -> its header
    ratios: tuple[tuple[str, str], ...]
    short: dict[str, str]  # server -> its name in a ratio's header

    def summarize(self, results: dict, figures: list[Figure]) -> list[dict]:
        """One row per figure that some server has a value for."""
        rows = []
        for figure in figures:
            values = {name: figure.get(results[name]) if name in results else None for name in self.columns}
            if all(value is None for value in values.values()):
                continue  # a scenario that did not run
            row = {
                "key": figure.key,
                "figure": figure.label,
                "unit": figure.unit,
                "lower_is_better": figure.lower_is_better,
                **values,
            }
            for a, b in self.ratios:
                row[f"{a}/{b}"] = values[a] / values[b] if values[a] is not None and values[b] else None
            rows.append(row)
        return rows

    def markdown(self, rows: list[dict]) -> str:
        ratios = [f"{self.short[a]} / {self.short[b]}" for a, b in self.ratios]
        lines = [
            "| " + " | ".join(["figure", "unit", *self.columns.values(), *ratios]) + " |",
            "| --- | --- |" + " ---: |" * (len(self.columns) + len(ratios)),
        ]
        for row in rows:
            cells = [row["figure"], row["unit"], *(fmt(row[name]) for name in self.columns)]
            for a, b in self.ratios:
                value = row[f"{a}/{b}"]
                cells.append(f"{value:.2f}x" if value is not None else "-")
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)


MAIN_TABLE = Table(
    dict(zip(SERVERS, ("project", "plain python-socketio", "Node socket.io"), strict=True)),
    (("project", "plain"), ("project", "node"), ("plain", "node")),
    {"project": "project", "plain": "plain", "node": "Node"},
)
SCALE_TABLE = Table(
    dict(
        zip(
            SCALE_SERVERS,
            ("project, 1 process", "project, 2 workers", "project, 4 workers", "Node, cluster of 2"),
            strict=True,
        )
    ),
    (
        ("project-2w", "project"),
        ("project-4w", "project"),
        ("project-2w", "node-cluster"),
        ("project-4w", "node-cluster"),
    ),
    {"project": "1 process", "project-2w": "2 workers", "project-4w": "4 workers", "node-cluster": "Node cluster"},
)


def broadcast_text(b: dict, tried: str) -> str:
    return (
        f"{b['received']:,} of {b['connected']:,} connected clients ({tried}) got it; first after "
        f"{fmt(b['first_ms'])} ms, half after {fmt(b['p50_ms'])} ms, 99% after {fmt(b['p99_ms'])} ms, "
        f"the last after {fmt(b['last_ms'])} ms"
    )


def summarize(results: dict, config: Config) -> list[dict]:
    return MAIN_TABLE.summarize(results, figures(config))


def other_cpu_shares(result: dict) -> list[float]:
    rows = [*result.get("fanout", []), *result.get("polling", []), *result.get("scale_fanout", [])]
    rows += result.get("scale_polling", [])
    rows += [result[key] for key in ("latency", "scale_latency") if result.get(key)]
    rows += [result["join_storm"]["storm"]] if result.get("join_storm") else []
    return [row["other_cpu_share"] for row in rows if row.get("other_cpu_share") is not None]


def fmt(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}g}"


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
            "gunicorn": py_package("gunicorn"),
            "redis (python)": py_package("redis"),
            "@socket.io/redis-adapter": node_package("@socket.io/redis-adapter"),
            "@socket.io/sticky": node_package("@socket.io/sticky"),
            "redis (node)": node_package("redis"),
            "redis-server": redis_server_version(),
        },
        "project_dir": str(project_dir),
        "project_commit": commit or None,
        "project_uncommitted_changes": bool(dirty),
    }


def redis_server_version() -> str | None:
    with contextlib.suppress(OSError):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        return next((part[2:] for part in out.split() if part.startswith("v=")), None)
    return None


# -- scale-out -----------------------------------------------------------------------


def scale_figures(config: Config) -> list[Figure]:
    out: list[Figure] = []
    for kind, transport, sizes in (
        ("scale_fanout", "WebSocket", config.scale_sizes),
        ("scale_polling", "long-polling", config.scale_polling_sizes),
    ):
        for size in sizes:
            where = f"fan-out to {size:,} ({transport})"
            out += [
                Figure(
                    f"{kind}_cpu_{size}",
                    f"server CPU per delivery, {where}, every server process",
                    "us",
                    fanout_get(kind, size),
                ),
                Figure(
                    f"{kind}_redis_{size}",
                    f"Redis CPU per delivery, {where}",
                    "us",
                    fanout_get(kind, size, "redis_cpu_us_per_delivery"),
                ),
                Figure(
                    f"{kind}_total_{size}", f"server + Redis CPU per delivery, {where}", "us", total_cpu(kind, size)
                ),
            ]
    for size in config.scale_sizes:
        label = f"server CPU to join {size:,} clients to one room (until join traffic drains), every server process"
        out.append(Figure(f"scale_join_{size}", label, "s", fanout_get("scale_fanout", size, "join_cpu_seconds")))
    rate = f"{config.latency_clients:,} clients at {config.latency_rate:g} msg/s"
    for group, text in (("latency_us", "every receiver"), ("latency_us_other_worker", "receivers on another worker")):
        for pct in ("p50", "p99"):
            out.append(
                Figure(f"scale_{group}_{pct}", f"delivery latency {pct}, {rate}, {text}", "ms", latency_get(group, pct))
            )
    out += broadcast_figures(
        "scale_max",
        f"WebSocket clients of /echo that got one broadcast ({config.scale_max_clients:,} tried)",
        "time until the last of them got the broadcast",
        "server RSS with them connected (every process)",
    )
    return out


def total_cpu(kind: str, size: int) -> Callable[[dict], Any]:
    """Server + Redis CPU per delivery (a server without Redis: its own)."""
    with_redis, alone = fanout_get(kind, size, "cpu_us_per_delivery_with_redis"), fanout_get(kind, size)

    def get(result: dict) -> Any:
        value = with_redis(result)
        return alone(result) if value is None else value

    return get


def latency_get(group: str, pct: str, kind: str = "scale_latency") -> Callable[[dict], Any]:
    """A latency percentile in ms; receivers on another worker only where some were (one process: none)."""

    def get(result: dict) -> Any:
        latency = result.get(kind) or {}
        if group != "latency_us" and len(latency.get("receivers_by_server_worker") or {}) < 2:
            return None
        value = (latency.get(group) or {}).get(pct)
        return value / 1000 if value is not None else None

    return get


def scale_summarize(results: dict, config: Config) -> list[dict]:
    return SCALE_TABLE.summarize(results, scale_figures(config))


def scale_targets(results: dict, config: Config) -> list[dict]:
    """The scale-out figures the issue set a target for: each one's value, its target and whether it met it."""
    out = []

    def value(name: str, get: Callable[[dict], Any]) -> Any:
        return get(results[name]) if name in results else None

    def target(text: str, got: float | None, limit: float | None, unit: str, lower: bool = True) -> None:
        met = None if got is None or limit is None else (got <= limit if lower else got >= limit)
        out.append({"target": text, "value": got, "limit": limit, "unit": unit, "met": met})

    for workers in ("project-2w", "project-4w"):
        for size in config.scale_sizes:
            for text, get in (
                ("server", fanout_get("scale_fanout", size)),
                ("server + Redis", total_cpu("scale_fanout", size)),
            ):
                ours, node = value(workers, get), value("node-cluster", get)
                ratio = ours / node if ours is not None and node else None
                target(
                    f"{workers}: {text} CPU per delivery at {size:,} (WebSocket) / Node cluster's", ratio, 1 / 3, "x"
                )
        for pct, margin in (("p50", 1.0), ("p99", 5.0)):
            single = value("project", latency_get("latency_us", pct))
            other = value(workers, latency_get("latency_us_other_worker", pct))
            target(
                f"{workers}: latency {pct} of receivers on another worker - one process's {pct}",
                other - single if other is not None and single is not None else None,
                margin,
                "ms",
            )
        for size in config.scale_polling_sizes:
            get = fanout_get("scale_polling", size)
            ours, single = value(workers, get), value("project", get)
            target(
                f"{workers}: long-polling CPU per delivery at {size:,} / one process's",
                ours / single if ours is not None and single else None,
                1.3,
                "x",
            )
    received = value("project-4w", lambda r: (r.get("scale_max") or {}).get("received"))
    clients = config.scale_max_clients
    target(f"project-4w: WebSocket clients that got one broadcast, of {clients:,}", received, clients, "clients", False)
    return [row for row in out if row["value"] is not None]


def scale_details(results: dict) -> list[str]:
    """How the clients spread over the server's workers, and what scale-max saw."""
    lines = []
    for name in SCALE_SERVERS:
        result = results.get(name) or {}
        for kind in ("scale_fanout", "scale_polling"):
            for row in result.get(kind, []):
                spread = spread_text(row.get("receivers_by_server_worker"))
                if spread:
                    lines.append(f"- {kind.replace('_', '-')}, {name}, {row['size']:,} receivers: {spread}")
        latency = result.get("scale_latency")
        if latency and spread_text(latency.get("receivers_by_server_worker")):
            lines.append(
                f"- scale-latency, {name}: sender on worker {latency.get('sender_server_worker') or '?'}, "
                f"receivers {spread_text(latency['receivers_by_server_worker'])}; "
                f"latency p50/p99 (ms): every receiver {latency_text(latency.get('latency_us'))}, "
                f"on the sender's worker {latency_text(latency.get('latency_us_same_worker'))}, "
                f"on another worker {latency_text(latency.get('latency_us_other_worker'))}"
            )
        if result.get("scale_max"):
            b = result["scale_max"]
            tried = (
                f"{b['clients']:,} tried, {b['connect_failed']:,} failed to connect in {b['connect_seconds']:.0f} s: "
                f"{b['connect_failures'] or '-'}"
            )
            lines.append(
                f"- scale-max, {name} (GUNICORN_WORKER_CONNECTIONS={b['worker_connections']}, "
                f"{b['loadgen_workers']} load-generator processes): {broadcast_text(b, tried)}; "
                f"server RSS {b['rss_kib'] / 1024:,.0f} MiB, open files {b['server_open_files']:,}; "
                f"clients per worker: {spread_text(b['receivers_by_server_worker'])}"
            )
    return lines


def spread_text(counts: dict | None) -> str:
    if not counts or list(counts) == ["?"]:
        return ""
    return ", ".join(f"{token} {n:,}" for token, n in sorted(counts.items()))


def latency_text(latency: dict | None) -> str:
    if not latency or latency.get("p50") is None:
        return "-"
    return f"{latency['p50'] / 1000:.2f} / {latency['p99'] / 1000:.2f}"


def targets_markdown(rows: list[dict]) -> list[str]:
    lines = ["| target | measured | limit | met |", "| --- | ---: | ---: | --- |"]
    for row in rows:
        met = {True: "yes", False: "**no**", None: "-"}[row["met"]]
        sign = "<=" if row.get("lower", row["unit"] != "clients") else ">="
        lines.append(f"| {row['target']} | {fmt(row['value'])} {row['unit']} | {sign} {fmt(row['limit'])} | {met} |")
    return lines


# -- results.md ------------------------------------------------------------------------


def markdown(report: dict, results: dict, config: Config, scenarios: list[str]) -> str:
    machine, command = report["machine"], report["command"]
    lines = [
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
    ]
    if report["table"]:
        lines += ["", MAIN_TABLE.markdown(report["table"]), ""]
        if report.get("targets"):
            lines += ["Targets of the big-rooms issue (the project in one process):", ""]
            lines += [*targets_markdown(report["targets"]), ""]
        lines += [*details(results, config), *storm_details(results)]
    if report.get("scale_table"):
        lines += [
            "",
            "## Scale-out",
            "",
            "The project in one process, on 2 and 4 Gunicorn workers with Redis, and Node's socket.io on a "
            "node:cluster of 2 with @socket.io/redis-adapter (@socket.io/sticky for long-polling). Server CPU "
            "sums every process (Gunicorn master and workers, Node primary and workers); Redis apart.",
            "",
            SCALE_TABLE.markdown(report["scale_table"]),
            "",
            *targets_markdown(report["scale_targets"]),
            "",
            *scale_details(results),
        ]
    lines += [
        "",
        "CPU used by neither the server, Redis nor the load generator during each measurement (other processes, "
        "kernel threads), in cores; near 0 means a quiet machine: "
        + "; ".join(
            f"{name}: " + ", ".join(f"{share:.2f}" for share in other_cpu_shares(results[name])) for name in results
        ),
        "",
    ]
    return "\n".join(lines)
