"""Interleaved benchmark rounds, shared by the overhead benchmarks."""

import sys


def interleaved(runs: dict, rounds: int, show) -> dict:
    """Run every entry of ``runs`` ({name: fn() -> figure}) once per round, in
    turn, so that slow drifts of a shared host hit every entry alike; ``show``
    formats a figure for the progress lines on stderr. Returns {name: figures}."""
    figures = {name: [] for name in runs}
    for r in range(rounds):
        for name, fn in runs.items():
            figures[name].append(fn())
            print(f"round {r + 1}: {name}: {show(figures[name][-1])}", file=sys.stderr, flush=True)
    return figures
