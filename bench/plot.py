"""docs/benchmarks.png: the figures of a run as bars, one colour per server.

The first two rows: one process of each server; the last row: the scale-out run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.report import fanout_get, latency_get, total_cpu
from bench.scenarios.base import Config
from bench.servers import LABELS, SCALE_SERVERS, SERVERS

COLORS = {
    "project": "#1f77b4",
    "plain": "#2ca02c",
    "node": "#d62728",
    "project-2w": "#6baed6",
    "project-4w": "#08306b",
    "node-cluster": "#fc9272",
}
Value = Callable[[dict], float | None]


def bars(ax: Any, results: dict, names: list[str], groups: dict[str, Value], title: str, ylabel: str) -> None:
    """One group of bars per entry of ``groups`` (its label: a getter of a server's results), a bar per server."""
    width = 0.8 / max(1, len(names))
    for k, name in enumerate(names):
        heights = [get(results[name]) or 0 for get in groups.values()]
        xs = [i + (k - (len(names) - 1) / 2) * width for i in range(len(groups))]
        ax.bar(xs, heights, width, label=LABELS[name], color=COLORS[name])
    ax.set_xticks(range(len(groups)), list(groups))
    ax.set_title(title, fontsize=10)
    ax.set_ylabel(ylabel)


def plot(results: dict, config: Config, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [name for name in SERVERS if name in results]
    scale = [name for name in SCALE_SERVERS if name in results and results[name].get("scale_fanout")]
    storm = any(results[name].get("join_storm") for name in names)
    rows = 2 + storm + bool(scale)
    fig, grid = plt.subplots(rows, 3, figsize=(15, 4.2 * rows))
    axes = list(grid.flatten())
    storm_axes = axes[6:9] if storm else []
    if storm:
        del axes[6:9]  # the scale-out row comes after the storm's

    cpu = {f"WS {n:,}": fanout_get("fanout", n) for n in config.fanout_sizes}
    cpu |= {f"poll {n:,}": fanout_get("polling", n) for n in config.polling_sizes}
    bars(axes[0], results, names, cpu, "server CPU per delivered message", "µs (lower is better)")
    bars(
        axes[1],
        results,
        names,
        {pct: latency_get("latency_us", pct, "latency") for pct in ("p50", "p99")},
        f"delivery latency, {config.latency_clients:,} clients, {config.latency_rate:g} msg/s",
        "ms (lower is better)",
    )

    def memory(i: int) -> Value:
        def get(result: dict) -> float | None:
            rows = (result.get("memory") or {}).get("sizes", [])
            return rows[i]["kib_per_connection"] if i < len(rows) else None

        return get

    memory_groups = {f"{n:,}": memory(i) for i, n in enumerate(config.memory_sizes)}
    bars(axes[2], results, names, memory_groups, "RSS per idle WebSocket connection", "KiB (lower is better)")
    bars(
        axes[3],
        results,
        names,
        {f"tried {config.max_connections:,}": lambda r: (r.get("memory") or {}).get("max_connections", {}).get("held")},
        "WebSocket connections held by one process",
        "connections (higher is better)",
    )
    bars(
        axes[4],
        results,
        names,
        {f"{config.broadcast_clients:,} clients": lambda r: (r.get("broadcast") or {}).get("last_ms")},
        "one broadcast: time until the last client got it",
        "ms (lower is better)",
    )

    def slow(phase: str) -> Value:
        return lambda r: r["slow"][phase]["rss_growth_kib"] / 1024 if r.get("slow") else None

    bars(
        axes[5],
        results,
        names,
        {"no stalled clients": slow("alone"), f"{config.slow_stalled} stalled clients": slow("with_stalled")},
        f"server RSS growth, {config.slow_messages:,} messages of ~1 KB",
        "MiB (lower is better)",
    )
    if storm:
        plot_storm(storm_axes, results, names, config)
    handles, labels = axes[0].get_legend_handles_labels()
    if scale:
        scale_cpu = {f"WS {n:,}": total_cpu("scale_fanout", n) for n in config.scale_sizes}
        scale_cpu |= {f"poll {n:,}": total_cpu("scale_polling", n) for n in config.scale_polling_sizes}
        title = "scale-out: CPU per delivery, every server process + Redis"
        bars(axes[6], results, scale, scale_cpu, title, "µs (lower is better)")
        latency = {
            f"{pct}{suffix}": latency_get(group, pct)
            for group, suffix in (("latency_us", ""), ("latency_us_other_worker", "\nother worker"))
            for pct in ("p50", "p99")
        }
        title = f"scale-out: delivery latency, {config.latency_clients:,} clients, {config.latency_rate:g} msg/s"
        bars(axes[7], results, scale, latency, title, "ms (lower is better)")
        bars(
            axes[8],
            results,
            scale,
            {f"{config.scale_max_clients:,} tried": lambda r: (r.get("scale_max") or {}).get("received")},
            "scale-out: clients that got one broadcast, 4 workers",
            "clients (higher is better)",
        )
        for handle, label in zip(*axes[6].get_legend_handles_labels(), strict=True):
            if label not in labels:  # the one-process project is there already
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.tight_layout(rect=(0, 0.24 / rows, 1, 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_storm(axes: list, results: dict, names: list[str], config: Config) -> None:
    """The join-storm's row: who joined, how long and how much CPU it took, memory in one room after it."""

    def storm(field: str) -> Value:
        return lambda r: ((r.get("join_storm") or {}).get("storm") or {}).get(field)

    n, m = config.storm_clients, config.storm_memory_clients
    groups = {"welcomed": storm("welcomed"), "got the message\nafterwards": storm("message_reached")}
    title = f"{n:,} clients join one room at once (Node, plain: CONNECT answer)"
    bars(axes[0], results, names, groups, title, "clients (higher is better)")
    groups = {"until the last welcome": storm("last_welcome_seconds"), "server CPU": storm("server_cpu_seconds")}
    bars(axes[1], results, names, groups, f"{n:,} clients join one room at once", "s (lower is better)")

    def rooms(result: dict) -> float | None:
        rows = (result.get("memory") or {}).get("sizes", [])
        return next((row["kib_per_connection"] for row in rows if row["size"] == m), None)

    def one_room(result: dict) -> float | None:
        return ((result.get("join_storm") or {}).get("memory") or {}).get("kib_per_connection")

    groups = {
        f"rooms of {config.room_size}": rooms,
        f"one room, {config.storm_memory_wait:g} s after a storm": one_room,
    }
    bars(axes[2], results, names, groups, f"RSS per connection, {m:,} connections", "KiB (lower is better)")
