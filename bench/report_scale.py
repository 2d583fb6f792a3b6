#!/usr/bin/env python3
"""Reports over a million live objects: how long, how much memory.

A child process creates N empty files on a tmpfs while kleaktrace traces it
(each file leaves about three slab objects live: inode, dentry, LSM blobs;
tmpfs keeps them), then holds them. The benchmark runs the tracer in this
process, as `kleaktrace -p CHILD` does, and times what the final report
does: read the maps, group, symbolize, render as JSON. It prints that time,
the peak RSS of this process (BCC's compile included), and the BPF maps'
memory (bpftool's bytes_memlock) at the default --max-objects and at a
larger one.

    .venv/bin/python bench/report_scale.py [--files 320000]
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bpftrace_leak.report import build_report  # noqa: E402
from bpftrace_leak.reporter import render  # noqa: E402
from bpftrace_leak.tracer import Options, Tracer  # noqa: E402

HOLDER = r"""
import os, shutil, sys, tempfile
n = int(sys.argv[1])
d = tempfile.mkdtemp(prefix="kleaktrace-scale-", dir="/dev/shm")
try:
    sys.stdin.readline()
    for i in range(n):
        os.close(os.open(os.path.join(d, str(i)), os.O_CREAT | os.O_WRONLY, 0o600))
    print("leaked", flush=True)
    sys.stdin.read()
finally:
    shutil.rmtree(d)
"""


def map_memory(tracer) -> int:
    """bytes_memlock of this session's maps."""
    ids = set()
    for name in ("slots", "page_slots", "live", "stacks", "sites", "site_marks", "targets", "counters",
                 "exited_comms", "irq_state", "free_running", "free_covered", "free_last"):
        try:
            fd = tracer.bpf[name].map_fd
        except KeyError:
            continue
        with open(f"/proc/self/fdinfo/{fd}") as f:
            info = dict(line.split(":", 1) for line in f if ":" in line)
        ids.add((int(info["map_id"]), int(info["memlock"])))
    return sum(m for _, m in ids)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=320_000)
    ap.add_argument("--max-objects", type=int, default=4_000_000, help="the larger setting measured")
    args = ap.parse_args()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(args.files)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    with Tracer(Options(targets=[holder.pid], refs=False)) as tracer:
        memory = map_memory(tracer)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        holder.stdout.readline()
        time.sleep(1.0)
        symbolizer = tracer.symbolizer()
        began = time.perf_counter()
        report = build_report(tracer.snapshot(500_000_000), symbolizer, kernel="", started="",
                              duration_s=0, min_age_ms=500, targets=[holder.pid])
        text = render(report, "json")
        took = time.perf_counter() - began
    holder.stdin.close()
    holder.wait()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    totals = json.loads(text)["totals"]
    objects = totals["objects"]
    with Tracer(Options(targets=[os.getpid()], refs=False, max_objects=args.max_objects)) as big:
        big_memory = map_memory(big)
    print(f"{objects:,} live objects ({args.files:,} tmpfs files created; {totals['dropped']:,} not recorded: maps full)")
    print(f"  report (read maps, group, symbolize, render JSON): {took:.2f} s")
    print(f"  frontend peak RSS: {rss / 2**20:.0f} MiB")
    print(f"  BPF maps at the default --max-objects 1000000: {memory / 2**20:.0f} MiB")
    print(f"  BPF maps at --max-objects {args.max_objects}: {big_memory / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
