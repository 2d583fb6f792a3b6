#!/usr/bin/env python3
"""Overhead on a realistic workload: untar a source tree and delete it.

The tree is Debian's Python standard library (/usr/lib/python3.11: some
thousands of files and directories), tarred once. Each run syncs, then
extracts it in --dir (default /tmp, the root filesystem; /dev/shm is the
worst case, all kernel work and no I/O) and removes it, a few times over,
pinned to one core; the CPU time it takes (user and system, its children's
included: where the probes' cost lands, as they run in its context; wall
time on ext4 swung +-10% with writeback) is compared between untraced runs,
kleaktrace system-wide, kleaktrace -p on the workload with --children (tar
and rm are its children) and kleaktrace serve, interleaved, several rounds.
Prints each median as a throughput ratio (untraced time / traced time) and
as overhead.

The untraced runs alone spread 2.5 to 4.1 s on this project's host (a VM):
medians cannot tell +2% from +4% there. So then, with
kernel.bpf_stats_enabled on for those runs only, one more run of each traced
mode prints the direct cost, with little noise: the kleaktrace programs' run
time during the run and the tracer process's own CPU, each as a share of the
workload's CPU time in that run (what it misses: cache lines the programs
take from the workload; the stats add two clock reads a program run). Last,
the floor's empty programs (bench/floor.py) run with the stats through one
more untar: their ns per run, the stats' own, is taken off each run of ours
for the net line (the program's own work; the dispatch into BPF, which any
per-event tracer pays and the stats do not time, is in neither).

    .venv/bin/python bench/realistic.py [--rounds 5] [--repeat 3]
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bpftrace_leak.kernel.headers import find_headers  # noqa: E402
from interleave import SOURCE, bpf_stats, cpu_s, interleaved, programs, run_deltas, start_tracer, stop, tarball  # noqa: E402,E501

WORKLOAD = r"""
sync
read go
for i in $(seq {repeat}); do
    mkdir {work}/x && tar xf {tarball} -C {work}/x && rm -rf {work}/x
done
"""


def workload(tree: str, work: str, repeat: int):
    script = WORKLOAD.format(tarball=tree, work=work, repeat=repeat)
    return subprocess.Popen(["taskset", "-c", "1", "sh", "-c", script], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def finish(proc) -> float:
    """The CPU seconds the workload took (it and every child it reaped)."""
    proc.stdin.write("go\n")
    proc.stdin.close()
    _pid, _status, usage = os.wait4(proc.pid, 0)  # its rusage includes tar's and rm's, reaped by it
    proc.returncode = 0
    return usage.ru_utime + usage.ru_stime


def traced(cmd, tree, work, repeat, target=False, cost=None, ready="Hit Ctrl-C") -> float:
    """The workload's CPU seconds under the tracer ``cmd``, once it printed
    ``ready``; with ``cost`` (a dict), bpf_stats on: cost gets runs and bpf_s
    (its programs' runs and run time during the run) and tracer_s (the tracer
    process's CPU during it)."""
    before = set(programs()) if cost is not None else set()
    proc = workload(tree, work, repeat)
    if target:
        cmd = cmd + ["-p", str(proc.pid), "--children"]
    tracer = start_tracer(cmd, ready)
    if cost is not None:
        bpf_stats(True)
        start, cpu0 = programs(), cpu_s(tracer.pid)
    took = finish(proc)
    if cost is not None:
        end, cost["tracer_s"] = programs(), cpu_s(tracer.pid) - cpu0
        bpf_stats(False)
        ours = run_deltas(start, end, before)
        cost["runs"], cost["bpf_s"] = sum(r for _, r, _ in ours), sum(ns for _, _, ns in ours) / 1e9
        cost["top"] = sorted(ours, key=lambda o: -o[2])[:3]
    stop(tracer)
    return took


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3, help="extract+delete cycles per run")
    ap.add_argument("--dir", default="/tmp", help="where to extract")
    args = ap.parse_args()
    headers = find_headers(warn=lambda m: None)
    if headers:
        os.environ["BCC_KERNEL_SOURCE"] = headers
    kleak = [sys.executable, "-m", "bpftrace_leak.cli", "--format", "json", "--kinds", "allocs"]
    serve = [sys.executable, "-m", "bpftrace_leak.cli", "serve", "--listen", "127.0.0.1:0", "--kinds", "allocs"]
    fstype = subprocess.run(["findmnt", "-n", "-o", "FSTYPE", "--target", args.dir],
                            capture_output=True, text=True).stdout.strip()
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        tree = tarball(work)
        files = sum(len(f) + len(d) for _, d, f in os.walk(SOURCE))
        runs = {
            "untraced": lambda: finish(workload(tree, work, args.repeat)),
            "kleaktrace (system-wide)": lambda: traced(kleak, tree, work, args.repeat),
            "kleaktrace -p --children": lambda: traced(kleak, tree, work, args.repeat, target=True),
            "kleaktrace serve": lambda: traced(serve, tree, work, args.repeat),
        }
        times = interleaved(runs, args.rounds, lambda v: f"{v:.2f} s")
        costs = {}
        for name, target, cmd in (("kleaktrace (system-wide)", False, kleak),
                                  ("kleaktrace -p --children", True, kleak), ("kleaktrace serve", False, serve)):
            cost: dict = {}
            costs[name] = (traced(cmd, tree, work, args.repeat, target=target, cost=cost), cost)
        # the floor's empty programs on the slab tracepoints, with the stats, in
        # one more run: their ns per run is the stats' own clock reads, none
        # of it a program's work
        floor: dict = {}
        traced([sys.executable, os.path.join(ROOT, "bench", "floor.py"), "empty"], tree, work,
               args.repeat, cost=floor, ready="ready")
        floor_ns = floor["bpf_s"] * 1e9 / max(1, floor["runs"])
    base = statistics.median(times["untraced"])
    print(f"untar and delete {SOURCE} ({files:,} files and directories) x{args.repeat} in {args.dir} ({fstype}), "
          f"one core, {args.rounds} rounds, median {base:.2f} s untraced")
    for name, vals in times.items():
        ratio = base / statistics.median(vals)
        print(f"  {name:28} {ratio:5.3f}x  (overhead {100 * (1 / ratio - 1):+.1f}%)")
    print("direct cost, one run each with kernel.bpf_stats_enabled, as a share of the workload's CPU time:")
    for name, (took, cost) in costs.items():
        print(f"  {name:28} BPF {100 * cost['bpf_s'] / took:4.1f}%  tracer process {100 * cost['tracer_s'] / took:4.1f}%"
              f"  (workload {took:.2f} s CPU; {cost['runs']:,} program runs, "
              f"{1e9 * cost['bpf_s'] / max(1, cost['runs']):.0f} ns each)")
        print("    most: " + ", ".join(f"{name} {runs:,} x {ns / max(1, runs):.0f} ns" for name, runs, ns in cost["top"]))
    print(f"net of what an empty program measures with the stats in the same untar ({floor_ns:.0f} ns/run, "
          f"{floor['runs']:,} runs on the four slab tracepoints):")
    for name, (took, cost) in costs.items():
        net_s = max(0.0, cost["bpf_s"] - cost["runs"] * floor_ns / 1e9)
        print(f"  {name:28} BPF {100 * net_s / took:4.1f}%  with the tracer process "
              f"{100 * (net_s + cost['tracer_s']) / took:4.1f}%  ({1e9 * net_s / max(1, cost['runs']):.0f} ns a run net)")


if __name__ == "__main__":
    main()
