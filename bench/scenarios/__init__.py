"""The scenarios, one module each (the scale-out ones together), and the table run.py picks them from.

Every scenario starts each server fresh (:class:`.base.Session`), drives it with the load
generator and returns what it measured, which goes to ``results[server][key]`` of
results.json.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.scenarios import broadcast, fanout, join_storm, latency, memory, scale_out, slow_clients
from bench.scenarios.base import Config


@dataclass(frozen=True)
class Scenario:
    name: str  # on the command line
    key: str  # in results.json, per server
    run: Callable[[str, Config, Path, Path], Any]  # (server, config, workdir, project dir) -> its results
    scale_out: bool = False  # run for --scale-servers instead of --servers
    only: tuple[str, ...] = ()  # of those, only these servers

    def servers(self, config: Config, servers: list[str]) -> list[str]:
        names = config.scale_servers if self.scale_out else servers
        return [name for name in names if name in self.only] if self.only else names


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("fanout", "fanout", fanout.websocket),
        Scenario("latency", "latency", latency.run),
        Scenario("memory", "memory", memory.run),
        Scenario("polling", "polling", fanout.polling),
        Scenario("broadcast-max", "broadcast", broadcast.run),
        Scenario("slow-clients", "slow", slow_clients.run),
        Scenario("join-storm", "join_storm", join_storm.run),
        Scenario("scale-fanout", "scale_fanout", scale_out.fanout, scale_out=True),
        Scenario("scale-latency", "scale_latency", scale_out.latency, scale_out=True),
        Scenario("scale-polling", "scale_polling", scale_out.polling, scale_out=True),
        Scenario("scale-max", "scale_max", scale_out.max_clients, scale_out=True, only=(scale_out.MAX_SERVER,)),
    )
}
