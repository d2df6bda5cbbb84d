"""The driver of bench/loadgen.js: one JSON command per line on its stdin, one JSON answer per line back."""

from __future__ import annotations

import contextlib
import json
import queue
import subprocess
import threading
from typing import Any

from bench import processes
from bench.servers import BENCH


class LoadGenerator:
    """bench/loadgen.js with ``workers`` client processes, for the server at ``url``."""

    def __init__(self, url: str, workers: int, time_limit: float) -> None:
        self.process = subprocess.Popen(
            ["node", str(BENCH / "loadgen.js"), "--url", url, "--workers", str(workers), "--timeout", str(time_limit)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            preexec_fn=processes.raise_fd_limit,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def __call__(self, cmd: str, timeout: float = 900, **options: Any) -> dict:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"cmd": cmd, **options}) + "\n")
        self.process.stdin.flush()
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise RuntimeError(f"load generator: no answer to {cmd} within {timeout} s") from None
        if line is None:
            raise RuntimeError(f"load generator exited during {cmd}")
        reply = json.loads(line)
        if "error" in reply and cmd != "sender":
            raise RuntimeError(f"load generator: {reply['error']}")
        return reply

    def cpu_seconds(self) -> float:
        """CPU time of the load generator: its coordinator and worker processes."""
        return processes.tree_cpu_seconds(self.process.pid)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            assert self.process.stdin is not None
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
