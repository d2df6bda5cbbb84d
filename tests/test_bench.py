"""The benchmark harness (bench/run.py) in its smallest mode, so it cannot rot.

No timing assertions: only that every server delivered every message in every
scenario and that every figure was produced (the scale-out scenarios too, when
redis-server is installed).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SERVERS = ("project", "plain", "node")
SCALE_SERVERS = ("project", "project-2w", "project-4w", "node-cluster")
ONE_PROCESS = "fanout,latency,memory,polling,broadcast-max,slow-clients,join-storm"


def assert_all_delivered(rows: list[dict], where: tuple) -> None:
    assert rows, where
    for row in rows:
        assert row["all_delivered"], (*where, row)
        assert row["delivered"] == row["expected"] == row["size"] * row["messages"] > 0
        assert row["cpu_us_per_delivery"] is not None


@pytest.mark.timeout(300)
def test_quick_benchmark_delivers_every_message(tmp_path: Path) -> None:
    assert shutil.which("node"), "the benchmark needs Node.js"
    assert (ROOT / "bench" / "node_modules" / "socket.io").is_dir(), "run `npm ci --prefix bench` (tests/run.sh does)"
    scale_out = shutil.which("redis-server") is not None

    run = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--no-plot", "--out", str(tmp_path)]
        + ([] if scale_out else ["--scenarios", ONE_PROCESS]),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    report = json.loads((tmp_path / "results.json").read_text())
    assert (tmp_path / "results.md").read_text().count("\n|") >= len(report["table"]) + len(report["scale_table"])

    for name in SERVERS:
        result = report["results"][name]
        for kind in ("fanout", "polling"):
            assert_all_delivered(result[kind], (name, kind))
        latency = result["latency"]
        assert latency["all_delivered"] and latency["delivered"] == latency["expected"] > 0, (name, latency)
        assert latency["latency_us"]["p50"] is not None and latency["latency_us"]["p99"] is not None
        memory = result["memory"]
        assert all(row["kib_per_connection"] is not None for row in memory["sizes"]), (name, memory)
        assert memory["max_connections"]["held"] == memory["max_connections"]["target"], (name, memory)
        broadcast = result["broadcast"]
        assert broadcast["all_received"] and broadcast["received"] == broadcast["clients"] > 0, (name, broadcast)
        assert broadcast["last_ms"] is not None and broadcast["rss_kib"] > 0
        slow = result["slow"]
        assert slow["alone"]["stalled"] == 0 and slow["with_stalled"]["stalled"] == slow["stalled"] > 0, (name, slow)
        for phase in ("alone", "with_stalled"):
            row = slow[phase]
            assert row["all_delivered"] and row["delivered"] == row["expected"] > 0, (name, phase, row)
            assert row["latency_us"]["p99"] is not None and row["rss_growth_kib"] is not None

        storm = result["join_storm"]["storm"]
        assert storm["welcomed"] == storm["clients"] > 0 and storm["closed_by_server"] == 0, (name, storm)
        assert storm["message_reached"] == storm["message_expected"] == storm["clients"] - 1, (name, storm)
        assert storm["last_welcome_seconds"] is not None and storm["server_cpu_seconds"] > 0
        assert storm["listen_overflows"] is not None
        storm_memory = result["join_storm"]["memory"]
        assert storm_memory["connected"] == storm_memory["clients"], (name, storm_memory)
        assert storm_memory["kib_per_connection"] is not None

    targets = {row["target"] for row in report["targets"]}
    # (Not the join CPU / Node's: 5 joins may cost Node less than one clock tick.)
    assert any("join-storm" in target for target in targets), targets
    assert any("rooms of" in target for target in targets), targets

    for row in report["table"]:
        for name in SERVERS:
            assert row[name] is not None, (row["key"], name)

    # --render writes the same report again from results.json.
    written = (tmp_path / "results.md").read_text()
    subprocess.run(
        [sys.executable, "bench/run.py", "--render", "--no-plot", "--out", str(tmp_path)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    assert (tmp_path / "results.md").read_text() == written

    if not scale_out:
        return
    for name in SCALE_SERVERS:
        result = report["results"][name]
        for kind in ("scale_fanout", "scale_polling"):
            assert_all_delivered(result[kind], (name, kind))
            if name != "project":
                assert all(row["redis_cpu_us_per_delivery"] is not None for row in result[kind]), (name, kind)
        latency = result["scale_latency"]
        assert latency["all_delivered"] and latency["latency_us"]["p99"] is not None, (name, latency)
    for name in ("project-2w", "project-4w"):
        # The project's session ids name their worker: the load generator sees the clients spread over them.
        latency = report["results"][name]["scale_latency"]
        assert "?" not in latency["receivers_by_server_worker"], latency
    most = report["results"]["project-4w"]["scale_max"]
    assert most["all_received"] and most["received"] == most["clients"] > 0, most
    assert report["scale_targets"], "no scale-out target measured"
