"""py-spy on the Python servers during a measurement, with ``--profile DIR`` (``profile_summary.py`` reads it)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import WORKERS, Server


def start_profiler(server: Server, profile_dir: Path | None, label: str, idle: bool = False) -> subprocess.Popen | None:
    """py-spy on ``server`` (its main process), when ``profile_dir`` is given; None for Node.

    ``idle``: sample off-CPU time too (blocking system calls), for latency.
    """
    if profile_dir is None or server.name.startswith("node"):
        return None
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    profile_dir.mkdir(parents=True, exist_ok=True)
    output = profile_dir / f"{label}.txt"
    argv = [py_spy, "record", "--pid", str(server.pid), "--format", "raw", "--rate", "250", "--output", str(output)]
    if server.name in WORKERS:
        argv.append("--subprocesses")  # Gunicorn's workers
    process = subprocess.Popen(
        argv + (["--idle"] if idle else []), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    time.sleep(1.0)  # let py-spy attach before the measured traffic starts
    return process


def stop_profiler(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    process.send_signal(signal.SIGINT)
    try:
        process.wait(30)
    except subprocess.TimeoutExpired:
        process.kill()
