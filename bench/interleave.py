"""Interleaved benchmark rounds, and what the overhead benchmarks share: a
tracer started and stopped, its CPU, its BPF programs' run times with
kernel.bpf_stats_enabled, the untar workload's tarball."""

import json
import os
import signal
import subprocess
import sys

TICK = os.sysconf("SC_CLK_TCK")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = "/usr/lib/python3.11"  # the untar workloads' tree: Debian's Python standard library


def interleaved(runs: dict, rounds: int, show) -> dict:
    """Run every entry of ``runs`` ({name: fn() -> figure}) once per round, in
    turn, so that slow drifts of a shared host hit every entry alike; each
    round starts one entry further on, so no entry is always first (in one
    fixed order, bench/ablation.py's first row ran 10-16 ns/run slower on
    every program, those its variants leave alone included, 2026-12-07);
    ``show`` formats a figure for the progress lines on stderr. Returns
    {name: figures}."""
    figures = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn = runs[name]
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


def start_tracer(cmd, ready: str = "Hit Ctrl-C", cwd: str = ROOT, merged: bool = True) -> subprocess.Popen:
    """Start a tracer and wait until it prints ``ready``. ``merged``: read
    its stdout and stderr as one (kleaktrace says it is ready on stderr,
    memleak and bench/floor.py on stdout); otherwise its stderr only (its
    stdout, a JSON report, is left to read at its end)."""
    tracer = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, text=True,
                              stderr=subprocess.STDOUT if merged else subprocess.PIPE)
    for line in tracer.stdout if merged else tracer.stderr:
        if ready in line:
            return tracer
    tracer.wait()
    raise SystemExit(f"{' '.join(cmd[:3])} did not start")


def bpf_stats(on: bool) -> None:
    """kernel.bpf_stats_enabled: two clock reads per program run while on."""
    subprocess.run(["sysctl", "-q", f"kernel.bpf_stats_enabled={int(on)}"], check=on)


def run_deltas(start: dict, end: dict, before=()) -> list:
    """[(name, runs, ns)] of each program in ``start`` and ``end``
    (programs() before and after a measurement) that ran between them and
    was not in ``before`` (programs loaded before the tracer)."""
    return [(name, runs - start[p][1], ns - start[p][2]) for p, (name, runs, ns) in end.items()
            if p not in before and p in start and runs > start[p][1]]


def tarball(work: str) -> str:
    """SOURCE tarred once into ``work``: the untar workloads' input."""
    path = os.path.join(work, "tree.tar")
    subprocess.run(["tar", "cf", path, "-C", os.path.dirname(SOURCE), os.path.basename(SOURCE)], check=True)
    return path


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
