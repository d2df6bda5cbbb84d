"""Summarize py-spy ``--format raw`` profiles (collapsed stacks) written by ``run.py --profile``.

    python bench/profile_summary.py bench/results/profile/project-websocket-5000.txt [more.txt ...] [--top 25]

Prints, per profile, the share of samples in each function: inclusive (the
function or anything it called was running) and self (it was the innermost frame).
``Hub.run (gevent/hub.py)`` as the innermost frame is gevent's event loop: its own
CPU work in an on-CPU profile, and mostly waiting in epoll in an ``--idle`` one (the
latency profiles), where blocking calls (SQLite's commit) show up too.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# "function (path/to/file.py:123)" -> "function (file.py)"; keep package dirs for context.
FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^:]*)(?::\d+)?\)$")


def short(frame: str) -> str:
    match = FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    parts = Path(match["path"]).parts
    for marker in ("site-packages", "main", "project", "bench"):
        if marker in parts:
            parts = parts[parts.index(marker) + 1 :]
            break
    return f"{match['func']} ({'/'.join(parts[-2:])})"


def load(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        match = LINE.match(line)
        if match:
            frames = tuple(short(frame) for frame in match["stack"].split(";") if frame)
            stacks[frames] += int(match["count"])
    return stacks


def summarize(path: Path, top: int) -> str:
    stacks = load(path)
    total = sum(stacks.values())
    busy = total or 1
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for frames, n in stacks.items():
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            self_time[frames[-1]] += n
    lines = [f"## {path.name}: {total} samples", ""]
    lines.append("inclusive:")
    lines += [f"  {n / busy:6.1%}  {frame}" for frame, n in inclusive.most_common(top)]
    lines.append("self:")
    lines += [f"  {n / busy:6.1%}  {frame}" for frame, n in self_time.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("profiles", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print("\n\n".join(summarize(path, args.top) for path in args.profiles))


if __name__ == "__main__":
    main()
