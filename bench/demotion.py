#!/usr/bin/env python3
"""What promoted call sites cost once the work they grew with goes on in
cycles: kleaktrace system-wide over a loop of untars (extract Debian's
Python standard library, delete it, again; pinned to one core), its sites
promoted for good (--demote-after 1h: as before demotion) against the
default (a promoted site that sets no new high for 60 s is demoted,
docs/stacks.md). After --warmup seconds (the promotions, and a minute later
the demotions), kernel.bpf_stats_enabled for --seconds: the slab
allocation programs' runs and ns per run, the share of allocations that
took their own stack (the tracer's counters), and the tracer process's CPU.

    sudo .venv/bin/python bench/demotion.py [--warmup 100] [--seconds 60]
"""

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bpftrace_leak import layout  # noqa: E402
from bpftrace_leak.kernel.headers import find_headers  # noqa: E402
from interleave import bpf_stats, cpu_s, programs, run_deltas, start_tracer, stop, tarball  # noqa: E402

LOOP = "while :; do rm -rf {work}/x; mkdir {work}/x && tar xf {tarball} -C {work}/x; done"
PROGRAMS = ("alloc_kmem_cache", "alloc_kmalloc")
INDEX = {name: idx for idx, name in layout.COUNTER_NAMES.items()}


def counters() -> dict:
    """{counter name: sum over CPUs} of the running tracer's `counters` map."""
    out = subprocess.run(["bpftool", "-j", "map", "dump", "name", "counters"], capture_output=True, text=True,
                         check=True).stdout
    sums = {}
    for entry in json.loads(out):
        f = entry.get("formatted", entry)
        sums[int(f["key"])] = sum(int(v["value"]) for v in f["values"])
    return {name: sums.get(idx, 0) for name, idx in INDEX.items()}


def measure(demote_after: str, tree: str, work: str, warmup: float, seconds: float) -> dict:
    tracer = start_tracer([sys.executable, "-m", "bpftrace_leak.cli", "--format", "json", "--kinds", "allocs",
                           "--no-scan", "--no-census", "--demote-after", demote_after])
    loop = subprocess.Popen(["taskset", "-c", "1", "sh", "-c", LOOP.format(work=work, tarball=tree)],
                            start_new_session=True)
    try:
        time.sleep(warmup)
        bpf_stats(True)
        start, count0, cpu0 = programs(), counters(), cpu_s(tracer.pid)
        time.sleep(seconds)
        end, count1, cpu1 = programs(), counters(), cpu_s(tracer.pid)
        bpf_stats(False)
    finally:
        os.killpg(loop.pid, signal.SIGKILL)  # tar or rm with it
        loop.wait()
        subprocess.run(["rm", "-rf", os.path.join(work, "x")])
        stop(tracer)
    runs = {name: [0, 0] for name in PROGRAMS}
    for name, n, ns in run_deltas(start, end):
        if name in runs:
            runs[name][0] += n
            runs[name][1] += ns
    allocs = count1["allocs"] - count0["allocs"]
    return {"runs": runs, "allocs": allocs, "own": count1["own_stacks"] - count0["own_stacks"],
            "tracer_s": cpu1 - cpu0}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--warmup", type=float, default=100.0)
    ap.add_argument("--seconds", type=float, default=60.0)
    args = ap.parse_args()
    headers = find_headers(warn=lambda m: None)
    if headers:
        os.environ["BCC_KERNEL_SOURCE"] = headers
    with tempfile.TemporaryDirectory(dir="/tmp") as work:
        tree = tarball(work)
        rows = {}
        for label, after in (("promoted for good (--demote-after 1h)", "1h"), ("demoted after 60 s (default)", "60s")):
            rows[label] = measure(after, tree, work, args.warmup, args.seconds)
            print(f"{label}: done", file=sys.stderr, flush=True)
    print(f"kleaktrace system-wide over a loop of untars, {args.seconds:.0f} s measured after {args.warmup:.0f} s")
    for label, r in rows.items():
        share = r["own"] / r["allocs"] if r["allocs"] else 0.0
        progs = "  ".join(f"{name} {n:,} x {ns / n:.0f} ns" if n else f"{name} -"
                          for name, (n, ns) in r["runs"].items())
        print(f"  {label:40s} own stacks {r['own']:,} of {r['allocs']:,} allocations ({share:.0%})  {progs}"
              f"  tracer CPU {r['tracer_s'] / args.seconds:.1%}")


if __name__ == "__main__":
    main()
