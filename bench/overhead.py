#!/usr/bin/env python3
"""Overhead on an allocation storm: kleaktrace against the floor, a minimal
exact tracker and bcc's memleak, side by side, in one run.

Builds bench/storm.c, then in each round runs the storm (socketpair+close,
open+close, pinned to one core) untraced and under each tracer in turn:

- the floor: empty BPF programs on the four slab tracepoints (bench/floor.py);
- a minimal exact tracker: hash insert on alloc, delete on free (floor.py hash);
- memleak-bpfcc (kernel mode, system-wide);
- kleaktrace system-wide, ``-p`` on the storm, and ``serve`` (its defaults).

Prints the median throughput of each as a ratio of the untraced runs of the
same rounds, and the tracer's own CPU (user + system, of its process, while
the storm ran: work moved to user space is overhead too). Then, with
kernel.bpf_stats_enabled on for that run only (it adds two clock reads per
program run), one storm under kleaktrace -p and one system-wide: runs and ns
per run of each program, and BPF time as a share of the storm's time; the
same for the floor's empty programs, whose ns per run is the stats' own
cost (a program's net is its ns per run less that). The slab events of a
storm cycle, counted by the floor's programs, turn each row's throughput
into ns added per slab event: a cost with no clock read in it.

    sudo .venv/bin/python bench/overhead.py [--rounds 5] [--seconds 4]
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bpftrace_leak.kernel.headers import find_headers  # noqa: E402
from interleave import bpf_stats, cpu_s, interleaved, programs, run_deltas, start_tracer, stop  # noqa: E402


def build_storm(dest: str) -> str:
    exe = os.path.join(dest, "storm")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(ROOT, "bench", "storm.c")], check=True)
    return exe


def storm(exe: str, seconds: float):
    """Start the storm pinned to CPU 1; ``rate(proc)`` waits for its figure."""
    return subprocess.Popen(["taskset", "-c", "1", exe, str(seconds)], stdout=subprocess.PIPE, text=True)


def rate(proc) -> float:
    out, _ = proc.communicate()
    return float(out.strip())


def with_tracer(cmd, ready: str, exe: str, seconds: float, target_pid=False, stats=None, cwd=ROOT):
    """Start a tracer (in ``cwd``), wait until it prints ``ready``, run the
    storm, stop the tracer: (storm cycles/s, tracer CPU seconds during the
    storm). ``stats``: a dict filled with {program: (runs, ns)} of the
    tracer's programs."""
    before = set(programs()) if stats is not None else set()
    if target_pid:
        # the storm starts stopped, the tracer attaches to it, then it runs
        storm_proc = subprocess.Popen(["sh", "-c", f'kill -STOP $$; exec taskset -c 1 {exe} {seconds}'],
                                      stdout=subprocess.PIPE, text=True)
        time.sleep(0.1)
        cmd = cmd + ["-p", str(storm_proc.pid)]
    tracer = start_tracer(cmd, ready, cwd)
    if stats is not None:
        bpf_stats(True)
        start = programs()
    cpu0 = cpu_s(tracer.pid)
    if target_pid:
        os.kill(storm_proc.pid, signal.SIGCONT)
        result = rate(storm_proc)
    else:
        result = rate(storm(exe, seconds))
    cpu = cpu_s(tracer.pid) - cpu0
    if stats is not None:
        end = programs()
        bpf_stats(False)
        for name, runs, ns in run_deltas(start, end, before):
            stats[name] = (runs, ns)
    stop(tracer)
    return result, cpu


def added_ns(untraced: float, traced: float, per_cycle: float) -> float:
    """The time a tracer adds to each slab event, from the storm's cycles per
    second without and with it and the events of a cycle: no clock read in
    the programs, unlike bpf_stats' ns per run (whose empty program measures
    54-80 ns on the hosts and days measured, 57 on 2026-12-08, most of it
    the stats' own two clock reads)."""
    return (1 / traced - 1 / untraced) * 1e9 / per_cycle


def per_run(stats: dict) -> float:
    """Average ns per run over all of ``stats``' programs."""
    runs = sum(r for r, _ in stats.values())
    return sum(ns for _, ns in stats.values()) / runs if runs else 0.0


def show_stats(title: str, stats: dict, seconds: float, floor_ns: float) -> None:
    """Each program's ns per run, and net of ``floor_ns``: what an empty
    program measures with the stats in the same storm, the stats' own cost
    (two clock reads a run) and the call into the program, none of it the
    program's work."""
    total_ns = sum(ns for _, ns in stats.values())
    total_runs = sum(runs for runs, _ in stats.values())
    print(f"{title}: ns per run from kernel.bpf_stats_enabled over one {seconds:g} s storm, and net of "
          f"an empty program's {floor_ns:.0f}")
    for name, (runs, ns) in sorted(stats.items(), key=lambda kv: -kv[1][1]):
        print(f"  {name:24} {runs:>11,} runs {ns / runs:7.0f} ns/run  net {ns / runs - floor_ns:5.0f} "
              f"{100 * ns / max(total_ns, 1):4.0f}%")
    if total_runs:
        print(f"  total: {total_ns / 1e9:.2f} s of BPF time in {seconds:g} s of storm, "
              f"{total_ns / total_runs:.0f} ns/run on average")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--no-stats", action="store_true", help="leave out the bpf_stats runs")
    args = ap.parse_args()
    tree = find_headers(warn=lambda m: None)
    if tree:
        os.environ["BCC_KERNEL_SOURCE"] = tree
    kleak = [sys.executable, "-m", "bpftrace_leak.cli", "--format", "json", "--kinds", "allocs"]
    # SERVE_ARGS: options for the serve row (e.g. --sample-bytes 0 to see what sampling saves)
    serve = [sys.executable, "-m", "bpftrace_leak.cli", "serve", "--listen", "127.0.0.1:0", "--kinds", "allocs",
             *os.environ.get("SERVE_ARGS", "").split()]
    floor = [sys.executable, os.path.join(ROOT, "bench", "floor.py")]
    with tempfile.TemporaryDirectory() as d:
        exe = build_storm(d)
        runs = {
            "untraced": lambda: (rate(storm(exe, args.seconds)), 0.0),
            "empty BPF programs (floor)": lambda: with_tracer(floor + ["empty"], "ready", exe, args.seconds),
            "minimal hash tracker": lambda: with_tracer(floor + ["hash"], "ready", exe, args.seconds),
            "memleak-bpfcc": lambda: with_tracer(["memleak-bpfcc", "-o", "1000", "3600"], "Attaching",
                                                 exe, args.seconds),
            "kleaktrace (system-wide)": lambda: with_tracer(kleak, "Hit Ctrl-C", exe, args.seconds),
            "kleaktrace -p storm": lambda: with_tracer(kleak, "Hit Ctrl-C", exe, args.seconds, target_pid=True),
            # the always-on exporter: its defaults (sampled, --sample-bytes 65536)
            "kleaktrace serve": lambda: with_tracer(serve, "Hit Ctrl-C", exe, args.seconds),
        }
        results = interleaved(runs, args.rounds, lambda v: f"{v[0]:,.0f} cycles/s, tracer {v[1]:.2f} s CPU")
        stats_p, stats_all, stats_floor = {}, {}, {}
        floor_rate = 0.0
        if not args.no_stats:
            floor_rate, _ = with_tracer(floor + ["empty"], "ready", exe, args.seconds, stats=stats_floor)
            with_tracer(kleak, "Hit Ctrl-C", exe, args.seconds, target_pid=True, stats=stats_p)
            with_tracer(kleak, "Hit Ctrl-C", exe, args.seconds, stats=stats_all)
    base = statistics.median(r for r, _ in results["untraced"])
    print(f"allocation storm (socketpair+close, open+close; one core), {args.rounds} rounds of "
          f"{args.seconds:g} s, median throughput vs untraced ({base:,.0f} cycles/s); the tracer's own CPU "
          "while the storm ran, in % of one core")
    # slab events per storm cycle, counted by the floor's programs (all four
    # tracepoints, every CPU: the storm's core is nearly all of them)
    per_cycle = sum(r for r, _ in stats_floor.values()) / (floor_rate * args.seconds) if floor_rate else 0.0
    for name, vals in results.items():
        traced = statistics.median(r for r, _ in vals)
        cpu = statistics.median(c for _, c in vals) / args.seconds
        added = f"   +{added_ns(base, traced, per_cycle):4.0f} ns/event" if per_cycle and traced else ""
        print(f"  {name:28} {traced / base:5.2f}x   tracer CPU {100 * cpu:5.1f}%{added}")
    if per_cycle:
        print(f"  (ns/event: the storm's time added per slab event, {per_cycle:.2f} events a cycle, by "
              "throughput, with no stats on: what a tracer costs the traced, the floor's share included)")
    floor_ns = per_run(stats_floor)
    if stats_floor:
        print(f"empty BPF programs: {floor_ns:.0f} ns/run with kernel.bpf_stats_enabled, the same storm "
              f"({', '.join(f'{n} {ns / r:.0f}' for n, (r, ns) in sorted(stats_floor.items()))})")
    if stats_p:
        show_stats("kleaktrace -p storm", stats_p, args.seconds, floor_ns)
    if stats_all:
        show_stats("kleaktrace (system-wide)", stats_all, args.seconds, floor_ns)


if __name__ == "__main__":
    main()
