"""Summarize py-spy `--format raw` output (collapsed stacks): the share of busy samples in which
each function is on the stack (inclusive) and at the top (self).

    python -m bench.spysummary FILE [--top 25] [--match exports/,resourced/,django]
"""
from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

# threads waiting for work (gunicorn's selector, accept, locks, sleeps) are not work: left out
IDLE = re.compile(r"^(select|poll|accept|wait|_wait_for_tstate_lock|sleep|epoll_wait|recv_into|readinto|"
                  r"wait_for_tstate_lock|run_for_one|_run_once)$")


def load(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        head, _, count = line.rpartition(" ")
        if head and count.isdigit():
            stacks.append(([f for f in head.split(";") if f], int(count)))
    return stacks


def _name(frame: str) -> str:
    """'function (path/to/file.py:123)' -> 'function (to/file.py)'."""
    m = re.match(r"^(.*?) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    return f"{func} ({'/'.join(path.split('/')[-2:])})"


def summarize(path: Path, top: int = 25, match: tuple[str, ...] = ()) -> dict:
    stacks = load(path)
    total = sum(c for _, c in stacks)
    busy = [(f, c) for f, c in stacks if f and not IDLE.match(f[-1].split(" (")[0])]
    busy_total = sum(c for _, c in busy) or 1
    incl, own = Counter(), Counter()
    for frames, count in busy:
        names = [_name(f) for f in frames]
        for n in set(names):
            incl[n] += count
        own[names[-1]] += count

    def keep(n):
        return not match or any(m in n for m in match)

    return {
        "samples": total,
        "busy_samples": busy_total,
        "inclusive": [(n, round(100 * c / busy_total, 1)) for n, c in incl.most_common() if keep(n)][:top],
        "self": [(n, round(100 * c / busy_total, 1)) for n, c in own.most_common(top)],
    }


def format_summary(s: dict) -> str:
    lines = [f"{s['busy_samples']} busy samples of {s['samples']}", "inclusive % (on the stack):"]
    lines += [f"  {p:5.1f}  {n}" for n, p in s["inclusive"]]
    lines.append("self % (top of the stack):")
    lines += [f"  {p:5.1f}  {n}" for n, p in s["self"]]
    return "\n".join(lines)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--match", default="")
    a = ap.parse_args()
    print(format_summary(summarize(Path(a.file), a.top, tuple(filter(None, a.match.split(","))))))
