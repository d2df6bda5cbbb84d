"""Operating-system processes: starting them with the limits a load test needs, and reading /proc.

A server under test may be a process tree (a Gunicorn master and its workers, a Node cluster
primary and its workers): every figure here sums over the live tree.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import sys
import time
from pathlib import Path

CLOCK_TICK = os.sysconf("SC_CLK_TCK")


def log(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def raise_fd_limit() -> None:
    """In a child before exec: the open-files soft limit up to the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process (all its threads), in seconds, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICK


def system_busy_seconds() -> float:
    """CPU time all processes of the machine used (every core), from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICK


def process_tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(child) for child in (task / "children").read_text().split()]
    return pids


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` and its live descendants."""
    total = 0.0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            total += process_cpu_seconds(each)
    return total


def status_field(pid: int, name: str) -> int:
    """A number from /proc/<pid>/status (``VmRSS``: KiB)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{name}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {name} in /proc/{pid}/status")


def tree_rss_kib(pid: int) -> int:
    total = 0
    for each in process_tree(pid):
        with contextlib.suppress(OSError):
            total += status_field(each, "VmRSS")
    return total


def open_files(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def fd_limit(pid: int) -> int:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            return int(line.split()[3])
    return -1


def tcp_ext_counters(*names: str) -> dict[str, int]:
    """Counters of the ``TcpExt`` lines of /proc/net/netstat (this network namespace), e.g. ListenOverflows."""
    lines = [line.split() for line in Path("/proc/net/netstat").read_text().splitlines() if line.startswith("TcpExt:")]
    values = dict(zip(lines[0][1:], (int(value) for value in lines[1][1:]), strict=True)) if len(lines) >= 2 else {}
    return {name: values.get(name, 0) for name in names}
