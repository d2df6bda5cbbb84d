"""Scale-out: the project on 2 and 4 Gunicorn workers sharing one Redis, against the project in
one process and Node's socket.io on a node:cluster of 2 with ``@socket.io/redis-adapter``
(``--scale-servers``), with the same load generator as the one-process scenarios.

- ``scale-fanout`` / ``scale-polling``: :mod:`.fanout` over WebSocket / long-polling receivers;
  server CPU summed over every process (Gunicorn master and workers, Node primary and
  workers), Redis's CPU apart. With several project workers, long-polling requests that
  reach a worker other than their session's owner are handed over to it (file descriptor
  passing); Node's cluster routes them in its primary (``@socket.io/sticky``).
- ``scale-latency``: :mod:`.latency`; the project's session ids name their worker, so the
  receivers on another worker than the sender's are reported apart.
- ``scale-max``: :mod:`.broadcast` with ``--scale-max-clients`` WebSocket clients across the
  4 workers, from ``--scale-max-workers`` load-generator processes and 8 source addresses.
"""

from __future__ import annotations

from pathlib import Path

from bench.scenarios import broadcast
from bench.scenarios import fanout as fanout_scenario
from bench.scenarios import latency as latency_scenario
from bench.scenarios.base import Config

MAX_SERVER = "project-4w"
# Connections per Gunicorn worker for scale-max (GUNICORN_WORKER_CONNECTIONS, default 10,000): up to
# the 20,000 open files a process may have here, less what a worker keeps open besides its clients.
MAX_WORKER_CONNECTIONS = 19500


def fanout(name: str, config: Config, workdir: Path, project_dir: Path) -> list[dict]:
    return fanout_scenario.run(name, config, workdir, project_dir, "websocket", config.scale_sizes, config.messages)


def polling(name: str, config: Config, workdir: Path, project_dir: Path) -> list[dict]:
    sizes, messages = config.scale_polling_sizes, config.polling_messages
    return fanout_scenario.run(name, config, workdir, project_dir, "polling", sizes, messages)


def latency(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    return latency_scenario.run(name, config, workdir, project_dir)


def max_clients(name: str, config: Config, workdir: Path, project_dir: Path) -> dict:
    env = {"GUNICORN_WORKER_CONNECTIONS": str(MAX_WORKER_CONNECTIONS)}
    clients, workers = config.scale_max_clients, config.scale_max_workers
    result = broadcast.run_with(name, config, workdir, project_dir, clients, workers=workers, env=env)
    return {**result, "worker_connections": MAX_WORKER_CONNECTIONS, "loadgen_workers": workers}
