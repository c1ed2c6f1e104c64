#!/usr/bin/env python3
"""Prints the markdown table of a bench/runtime.sh results directory: one row per
crimux-bench run (scenario, runtime, round, load before the run, cycle p50/p99), then the
median over rounds of each (scenario, runtime), then the RSS lines.

    python3 bench/summarize.py target/bench-results/runtime-<stamp>
"""
import json
import re
import statistics
import sys
from pathlib import Path

NAMES = {"crimux": "crimux", "cri": "containerd CRI", "floor": "containerd API floor"}


def runs(out):
    """(scenario, side, round, load, report) for every <label>.json in `out`."""
    for path in sorted(out.glob("*.json")):
        m = re.fullmatch(r"(?:(pod-cycle|container-cycle|relist)-(crimux|cri)|floor)-r(\d+)", path.stem)
        if not m:
            continue
        scenario, side = (m.group(1), m.group(2)) if m.group(1) else ("container-cycle", "floor")
        load_file = path.with_suffix(".load")
        load = load_file.read_text().strip() if load_file.exists() else "?"
        yield scenario, side, int(m.group(3)), load, json.loads(path.read_text())


def main():
    out = Path(sys.argv[1])
    rows = sorted(runs(out), key=lambda r: (r[0], r[1], r[2]))
    print("| scenario | runtime | round | load (1 min) | n | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    by_key = {}
    for scenario, side, rnd, load, rep in rows:
        c = rep["cycle"]
        print(f"| {scenario} | {NAMES[side]} | {rnd} | {load} | {c['count']} "
              f"| {c['p50_ms']:.1f} | {c['p99_ms']:.1f} |")
        by_key.setdefault((scenario, side), []).append(c)
    print()
    print("Median over rounds:")
    print()
    print("| scenario | runtime | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for (scenario, side), cs in sorted(by_key.items()):
        p50 = statistics.median(c["p50_ms"] for c in cs)
        p99 = statistics.median(c["p99_ms"] for c in cs)
        print(f"| {scenario} | {NAMES[side]} | {p50:.1f} | {p99:.1f} |")
    idle = out / "rss-idle.txt"
    if idle.exists():
        print()
        print(idle.read_text().rstrip())
    print()
    print("VmRSS (MiB, median of the 0.5 s samples taken while every pod of the relist run was")
    print("running; running = containerd tasks, 2 per pod):")
    print()
    print("| runtime | round | running tasks | samples | process | VmRSS MiB |")
    print("|---|---|---|---|---|---|")
    procs = {"crimux": ["crimux", "its containerd (CRI off)"], "cri": ["containerd with CRI"]}
    for path in sorted(out.glob("rss-relist-*.samples")):
        side, rnd = re.fullmatch(r"rss-relist-(crimux|cri)-r(\d+)", path.stem).groups()
        rows = [list(map(int, l.split())) for l in path.read_text().splitlines()
                if l.strip() and all(f.isdigit() for f in l.split())]
        if not rows:
            continue
        full = max(r[0] for r in rows)
        held = [r for r in rows if r[0] == full]
        for i, name in enumerate(procs[side]):
            rss = statistics.median(r[i + 1] for r in held) / 1024
            print(f"| {NAMES[side]} | {rnd} | {full} | {len(held)} | {name} | {rss:.1f} |")


if __name__ == "__main__":
    main()
