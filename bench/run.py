#!/usr/bin/env python
"""Benchmark this project's server against plain python-socketio and Node's socket.io.

    python bench/run.py            # the full run (about 16 minutes on 2 cores, 8 of them scale-out)
    python bench/run.py --quick    # a tiny run, seconds: checks that the harness works

Every scenario starts each server fresh, drives it with the same load generator
(bench/loadgen.js: raw Engine.IO v4 / Socket.IO v5 clients over WebSocket or
long-polling, in worker processes, from several 127.0.1.x source addresses) and
reads the server's CPU time and memory from /proc. Scenarios (bench/scenarios/):

- fanout:  N WebSocket receivers in one room, one sender; after the join traffic
           has drained, M messages; server CPU (utime + stime) per delivered message
- latency: N receivers, a steady message rate: p50 / p99 delivery latency
- memory:  idle connections in rooms of 50: RSS per connection at each size, then as
           many connections as one process holds (the fd soft limit raised to the hard one)
- polling: the fan-out again over long-polling receivers
- broadcast-max: N WebSocket clients in namespace /echo of one process (the project's echo
           view; the same behaviour in the reference servers), one event that every
           other client of the namespace hears as ``seen``: how many got it, how soon, RSS
- slow-clients: K receivers and one sender in one room, M messages of about 1 KB, once
           alone and once with S stalled receivers in the room (connected, then they never
           read their socket again): deliveries and latency of the normal receivers, the
           server's RSS during the run, and when the server closed the stalled ones
- join-storm: --storm-clients WebSocket clients join room "lobby" at once (no limit on connections
           in flight): how many were welcomed (Node, plain: the CONNECT answer), closed by the server,
           how soon the last welcome came, server CPU, the kernel's ListenOverflows; then one message
           that every other client should get. Apart: --storm-memory-clients join one room at once,
           --storm-memory-wait seconds later the RSS growth per connection
- scale-fanout, scale-latency, scale-polling: the fan-out, latency and polling scenarios on
           --scale-servers: the project in one process, on 2 and 4 Gunicorn workers sharing a
           Redis (started here, redis-server), and Node's socket.io on a node:cluster of 2 with
           @socket.io/redis-adapter; CPU summed over every server process, Redis's apart
- scale-max: --scale-max-clients WebSocket clients of /echo across 4 Gunicorn workers, one broadcast

Results go to <out>/results.json and <out>/results.md, the plot to --plot. ``bench/
node_modules`` must exist (``npm ci --prefix bench``); the scale-out scenarios need
``redis-server`` on the PATH.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: bench/ is a package of the project's root
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import report  # noqa: E402
from bench.plot import plot  # noqa: E402
from bench.processes import log  # noqa: E402
from bench.scenarios import SCENARIOS  # noqa: E402
from bench.scenarios.base import Config  # noqa: E402
from bench.servers import BENCH, LABELS, ROOT, SCALE_SERVERS, SERVERS, export_project  # noqa: E402

# The defaults of the sizes: (--quick, the full run).
DEFAULTS = {
    "fanout_sizes": ([5], [1000, 5000]),
    "messages": (5, 100),
    "latency_clients": (5, 1000),
    "latency_rate": (20, 20),
    "latency_seconds": (1, 15),
    "memory_sizes": ([10, 20], [1000, 5000, 15000]),
    "max_connections": (30, 19000),
    "polling_sizes": ([3], [250, 1000]),
    "polling_messages": (5, 50),
    "broadcast_clients": (20, 19000),
    "slow_receivers": (4, 50),
    "slow_stalled": (2, 10),
    "slow_messages": (40, 6000),
    "slow_rate": (100, 300),
    "scale_sizes": ([6], [1000, 5000]),
    "scale_polling_sizes": ([6], [1000]),
    "storm_clients": (200, 19000),
    "storm_memory_clients": (20, 5000),  # a size of memory_sizes: the ratio to rooms of 50
    "storm_memory_wait": (0.5, 35),
    "storm_limit": (30, 120),
    "scale_max_clients": (40, 60000),
    "scale_max_workers": (2, 5),
}


def sizes(text: str) -> list[int]:
    return sorted({int(part.replace("_", "")) for part in text.split(",") if part.strip()})


def names(text: str) -> list[str]:
    return [name for name in text.split(",") if name]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    parser.add_argument("--quick", action="store_true", help="a tiny run: a few clients, seconds")
    parser.add_argument(
        "--servers", type=names, default=list(SERVERS), help="comma separated subset of project,plain,node"
    )
    parser.add_argument(
        "--scenarios", type=names, default=list(SCENARIOS), help="comma separated subset of the scenarios"
    )
    parser.add_argument("--fanout-sizes", type=sizes, help="WebSocket receivers, default 1000,5000")
    parser.add_argument("--messages", type=int, help="broadcast messages per fan-out size, default 100")
    parser.add_argument("--window", type=int, default=4, help="messages in flight during a fan-out")
    parser.add_argument("--latency-clients", type=int, help="default 1000")
    parser.add_argument("--latency-rate", type=float, help="messages per second, default 20")
    parser.add_argument("--latency-seconds", type=float, help="default 15")
    parser.add_argument("--memory-sizes", type=sizes, help="idle connections, default 1000,5000,15000")
    parser.add_argument("--max-connections", type=int, help="connections to try, default 19000")
    parser.add_argument("--room-size", type=int, default=50, help="clients per room in the memory scenario")
    parser.add_argument("--polling-sizes", type=sizes, help="long-polling receivers, default 250,1000")
    parser.add_argument("--polling-messages", type=int, help="default 50")
    parser.add_argument("--broadcast-clients", type=int, help="broadcast-max: clients of /echo, default 19000")
    parser.add_argument("--slow-receivers", type=int, help="slow-clients: normal receivers, default 50")
    parser.add_argument("--slow-stalled", type=int, help="slow-clients: stalled receivers, default 10")
    parser.add_argument("--slow-messages", type=int, help="slow-clients: messages per run, default 6000")
    parser.add_argument("--slow-rate", type=float, help="slow-clients: messages per second, default 300")
    parser.add_argument("--slow-pad", type=int, default=1000, help="slow-clients: characters per message text")
    parser.add_argument("--storm-clients", type=int, help="join-storm: clients joining one room at once, default 19000")
    parser.add_argument(
        "--storm-memory-clients", type=int, help="join-storm: clients of the memory-after-a-storm run, default 5000"
    )
    parser.add_argument(
        "--storm-memory-wait", type=float, help="join-storm: seconds from drained to the RSS reading, default 35"
    )
    parser.add_argument(
        "--storm-limit", type=float, help="join-storm: seconds a client may take to be welcomed, default 120"
    )
    parser.add_argument("--max-backlog", type=int, help="SOCKETIO_MAX_BACKLOG for the project (default its own, 1000)")
    parser.add_argument(
        "--scale-servers",
        type=names,
        default=list(SCALE_SERVERS),
        help="comma separated subset of project,project-2w,project-4w,node-cluster for the scale-* scenarios",
    )
    parser.add_argument("--scale-sizes", type=sizes, help="scale-fanout: WebSocket receivers, default 1000,5000")
    parser.add_argument("--scale-polling-sizes", type=sizes, help="scale-polling: long-polling receivers, default 1000")
    parser.add_argument("--scale-max-clients", type=int, help="scale-max: clients across 4 workers, default 60000")
    parser.add_argument("--scale-max-workers", type=int, help="scale-max: load-generator processes, default 5")
    parser.add_argument("--workers", type=int, default=2, help="load generator processes")
    parser.add_argument("--project-ref", help="benchmark the project at this git ref (default: the work tree)")
    parser.add_argument("--out", type=Path, help="results directory (default bench/results, or a temp dir if --quick)")
    parser.add_argument("--plot", type=Path, help="PNG to write (default docs/benchmarks.png; none if --quick)")
    parser.add_argument("--no-plot", action="store_true")
    parser.add_argument(
        "--merge", action="store_true", help="add this run's scenarios to the results already in --out's results.json"
    )
    parser.add_argument(
        "--render", action="store_true", help="run nothing: write results.md (and the plot) again from results.json"
    )
    parser.add_argument("--profile", type=Path, help="py-spy the Python servers during the fan-outs, into this dir")
    args = parser.parse_args(argv)
    for key, (quick, full) in DEFAULTS.items():
        if getattr(args, key) is None:
            setattr(args, key, quick if args.quick else full)
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario {', '.join(unknown)} (known: {', '.join(SCENARIOS)})")
    return args


def config_from(args: argparse.Namespace) -> Config:
    # Every Config field with a command-line option of the same name comes from it.
    options = {item.name: getattr(args, item.name) for item in dataclasses.fields(Config) if hasattr(args, item.name)}
    return Config(
        **options,
        quiet_ms=300 if args.quick else 1500,
        settle_seconds=0.2 if args.quick else 3,
        time_limit=120 if args.quick else 1800,
        profile_dir=args.profile,
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not (BENCH / "node_modules" / "socket.io").is_dir():
        sys.exit("bench/node_modules is missing: run `npm ci --prefix bench` first")
    scenarios = [SCENARIOS[name] for name in args.scenarios]
    if any(scenario.scale_out for scenario in scenarios) and not shutil.which("redis-server"):
        sys.exit("the scale-out scenarios need redis-server (Debian: apt-get install redis-server)")
    config = config_from(args)
    out_dir = args.out or (Path(tempfile.mkdtemp(prefix="bench-quick-")) if args.quick else BENCH / "results")
    plot_path = None if args.no_plot else (args.plot or (None if args.quick else ROOT / "docs" / "benchmarks.png"))
    if args.render:
        return render(out_dir, plot_path)
    command = "python bench/run.py " + " ".join(sys.argv[1:] if argv is None else argv)

    run_servers = {name for scenario in scenarios for name in scenario.servers(config, args.servers)}
    results: dict[str, dict] = {name: {} for name in [*args.servers, *sorted(run_servers - set(args.servers))]}
    merged_from = None
    earlier_scenarios: list[str] = []  # scenarios of the earlier run(s) at the same project commit
    previous = out_dir / "results.json"
    if args.merge and previous.exists():
        earlier = json.loads(previous.read_text())
        results = {**earlier["results"], **{name: dict(earlier["results"].get(name, {})) for name in results}}
        command = f"{earlier['command']}; then {command}"
        merged_from = earlier["machine"].get("merged_from") or earlier["machine"].get("project_commit")
        earlier_commit = earlier["machine"].get("project_commit")
        earlier_scenarios = earlier["machine"].get("scenarios", []) if earlier["machine"].get("merged_from") else []
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        workdir = Path(tmp)
        project_dir = export_project(args.project_ref, workdir) if args.project_ref else ROOT
        machine = report.machine_info(ROOT)
        if args.project_ref:
            machine["project_commit"] = (project_dir / ".git-ref").read_text().strip()[:12]
            machine["project_uncommitted_changes"] = False
        if merged_from:
            machine["merged_from"] = merged_from  # the project commit of the scenarios of the earlier run
            if earlier_commit == machine["project_commit"]:
                args.scenarios = [*earlier_scenarios, *(n for n in args.scenarios if n not in earlier_scenarios)]
            machine["scenarios"] = args.scenarios  # the scenarios measured at project_commit
        for scenario in scenarios:
            for name in scenario.servers(config, args.servers):
                log(f"{scenario.name}: {name}")
                results[name][scenario.key] = scenario.run(name, config, workdir, project_dir)

    out = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": command,
        "seconds": round(time.monotonic() - started, 1),
        "machine": machine,
        "config": {key: value for key, value in vars(config).items() if key not in ("profile_dir", "extra")},
        "servers": {name: LABELS[name] for name in results},
        "results": results,
    }
    write(out, config, args.scenarios, out_dir, plot_path)
    return 0


def write(out: dict, config: Config, scenarios: list[str], out_dir: Path, plot_path: Path | None) -> None:
    """The tables of ``out`` (a run's report), then results.json, results.md and the plot."""
    results = out["results"]
    out["table"] = report.summarize(results, config)
    out["targets"] = report.targets(results, config)
    out["scale_table"] = report.scale_summarize(results, config)
    out["scale_targets"] = report.scale_targets(results, config)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "results.json").write_text(json.dumps(out, indent=2) + "\n")
    md = report.markdown(out, results, config, scenarios)
    (out_dir / "results.md").write_text(md)
    if plot_path is not None:
        plot(results, config, plot_path)
    print(md)
    print(f"results: {out_dir / 'results.json'}" + (f", plot: {plot_path}" if plot_path else ""))


def render(out_dir: Path, plot_path: Path | None) -> int:
    """``--render``: the tables, results.md and the plot again, from results.json (after a change of the report)."""
    out = json.loads((out_dir / "results.json").read_text())
    known = {item.name for item in dataclasses.fields(Config)}
    config = Config(**{key: value for key, value in out["config"].items() if key in known})
    scenarios = out["machine"].get("scenarios") or [
        name for name in SCENARIOS if any(SCENARIOS[name].key in r for r in out["results"].values())
    ]
    write(out, config, scenarios, out_dir, plot_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
