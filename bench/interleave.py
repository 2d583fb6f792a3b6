"""Interleaved benchmark rounds, and what the overhead benchmarks read of a
tracer: its CPU, its BPF programs' run times."""

import json
import os
import signal
import subprocess
import sys

TICK = os.sysconf("SC_CLK_TCK")


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


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (its threads included)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (OSError, IndexError, ValueError):
        return 0.0


def programs() -> dict:
    """{id: (name, run_cnt, run_time_ns)} of every loaded BPF program."""
    out = subprocess.run(["bpftool", "prog", "show", "-j"], capture_output=True, text=True).stdout
    return {p["id"]: (p.get("name", "?"), p.get("run_cnt", 0), p.get("run_time_ns", 0))
            for p in json.loads(out or "[]")}


def stop(tracer: subprocess.Popen) -> None:
    """Stop a tracer started with its output piped, as Ctrl-C would,
    draining its final report; killed if it takes over two minutes."""
    tracer.send_signal(signal.SIGINT)
    try:
        tracer.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.communicate()
