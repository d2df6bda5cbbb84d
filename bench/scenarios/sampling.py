"""A server's RSS (and some of its sockets, and lines of its log) sampled in a thread during a run."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from typing import Any

from bench.servers import Server


def server_sockets(port: int, source_prefix: str) -> dict[str, int]:
    """Server-side TCP sockets of ``port`` from ``source_prefix`` addresses still ESTABLISHED:
    the peer's address and the bytes waiting in the socket's kernel send queue."""
    sockets = {}
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        local, remote, state = parts[1], parts[2], parts[3]
        if state != "01" or int(local.split(":")[1], 16) != port:
            continue
        address, remote_port = remote.split(":")
        ip = socket.inet_ntoa(bytes.fromhex(address)[::-1])
        if ip.startswith(source_prefix):
            sockets[f"{ip}:{int(remote_port, 16)}"] = int(parts[4].split(":")[0], 16)
    return sockets


class Sampler:
    """Samples the server's RSS (and, with ``sockets``, its stalled clients' sockets) in a thread."""

    def __init__(
        self, server: Server, interval: float = 0.2, sockets: str | None = None, log_marker: str | None = None
    ) -> None:
        self.server, self.interval, self.sockets, self.log_marker = server, interval, sockets, log_marker
        self.log_marks_before = server.log_text().count(log_marker) if log_marker else 0
        self.samples: list[dict] = []
        self.seen: dict[str, float] = {}  # with ``sockets``: when each socket was last seen ESTABLISHED
        self.started = time.monotonic()
        self.stopping = threading.Event()
        self.sample()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def sample(self) -> None:
        with contextlib.suppress(OSError, RuntimeError):
            row: dict[str, Any] = {"t": round(time.monotonic() - self.started, 2), "rss_kib": self.server.rss_kib()}
            if self.sockets:
                sockets = server_sockets(self.server.port, self.sockets)
                row["established"], row["send_queue_bytes"] = len(sockets), sum(sockets.values())
                self.seen.update(dict.fromkeys(sockets, row["t"]))
            if self.log_marker:
                row["log_marks"] = self.server.log_text().count(self.log_marker) - self.log_marks_before
            self.samples.append(row)

    def run(self) -> None:
        while not self.stopping.wait(self.interval):
            self.sample()

    def stop(self) -> list[dict]:
        self.stopping.set()
        self.thread.join()
        self.sample()
        return self.samples

    def marked_at(self) -> list[float]:
        """When each server log line with ``log_marker`` appeared (to within a sample)."""
        times, count = [], 0
        for row in self.samples:
            times += [row["t"]] * (row.get("log_marks", 0) - count)
            count = max(count, row.get("log_marks", 0))
        return times

    def closed_at(self) -> list[float]:
        """When each socket seen at some point but not at the end closed (the first sample without it)."""
        if not self.samples:
            return []
        end = self.samples[-1]["t"]
        times = [row["t"] for row in self.samples]
        return sorted(next(t for t in times if t > last) for last in self.seen.values() if last < end)
