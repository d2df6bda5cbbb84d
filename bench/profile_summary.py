"""Summarize py-spy ``--format raw`` profiles (collapsed stacks) written by ``run.py --profile``.

    python bench/profile_summary.py bench/results/profile/project-websocket-5000.txt [more.txt ...] [--top 25]

Prints, per profile, the share of samples in each function: inclusive (the
function or anything it called was running) and self (it was the innermost frame).
Samples where the server was idle (the gevent hub waiting in its event loop) are
counted apart, so the shares are of the time the server was busy.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
# "function (path/to/file.py:123)" -> "function (file.py)"; keep package dirs for context.
FRAME = re.compile(r"^(?P<func>.*?) \((?P<path>[^:]*)(?::\d+)?\)$")
IDLE = ("run (gevent/hub.py)",)


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
    # py-spy samples the running OS thread: an idle gevent server sits in the hub's loop.
    idle = sum(n for frames, n in stacks.items() if frames and frames[-1] in IDLE)
    busy = total - idle or 1
    inclusive: Counter[str] = Counter()
    self_time: Counter[str] = Counter()
    for frames, n in stacks.items():
        if frames and frames[-1] in IDLE:
            continue
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            self_time[frames[-1]] += n
    lines = [f"## {path.name}: {total} samples, {idle} idle ({idle / (total or 1):.0%}); shares of busy samples", ""]
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
