#!/usr/bin/env python3
"""Offline reports over a long capture: how long `kleaktrace report` takes.

Writes a capture of SNAPSHOTS snapshots of GROUPS groups each (the groups
grow slowly, a few come and go, stacks of 6 to 14 frames, as a long
system-wide recording holds), then times `kleaktrace report FILE` as text
and as HTML, each the median of a few runs, as a subprocess (reading,
checking, growth and rendering included). Also prints the capture's size
and the report's peak RSS.

    .venv/bin/python bench/report_offline.py [--cases 100x5000,200x20000] [--runs 3]

Peak RSS is the child's (getrusage RUSAGE_CHILDREN: the largest of the runs so
far); reading streams the snapshots, so it follows the largest snapshot, not
the file.
"""

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bpftrace_leak.output.capture import CaptureWriter  # noqa: E402

FUNCS = ["sock_alloc_inode", "alloc_inode", "__d_alloc", "alloc_empty_file", "path_openat", "do_filp_open",
         "do_sys_openat2", "__x64_sys_openat", "do_syscall_64", "entry_SYSCALL_64_after_hwframe", "ext4_alloc_inode",
         "kernfs_new_node", "__sys_socketpair", "unix_create1", "sk_alloc", "getname_flags", "vfs_mkdir", "mas_alloc_nodes"]


def groups_of(n: int, rnd: random.Random) -> list[dict]:
    out = []
    for i in range(n):
        depth = rnd.randint(6, 14)
        stack = [f"{rnd.choice(FUNCS)}+0x{rnd.randint(1, 0x3ff):x}" for _ in range(depth)] + [f"leaf_{i}+0x1"]
        out.append({"kind": "slab", "cache": f"cache_{i % 300}", "cache_aliases": [], "objects": rnd.randint(1, 500),
                    "bytes": 0, "oldest_ms": 1000, "pids": [1000 + i % 50], "comms": [f"proc{i % 50}"],
                    "stack": stack, "site_stack_objects": 0})
    return out


def write(path: str, snapshots: int, n: int) -> None:
    rnd = random.Random(1)
    base = groups_of(n, rnd)
    w = CaptureWriter(path, header={"kernel": "6.18", "started": "2026-11-25T00:00:00+00:00", "targets": [],
                                    "command": None, "min_age_ms": 1000, "interval_s": 60})
    for s in range(snapshots):
        groups = []
        for i, g in enumerate(base):
            if (i + s) % 97 == 0:
                continue  # a few groups absent from some snapshots
            objects = g["objects"] + (s * (i % 7))
            groups.append(dict(g, objects=objects, bytes=objects * 192))
        groups.sort(key=lambda g: -g["bytes"])
        report = {"schema": "kleaktrace.report/1", "kernel": "6.18", "started": "2026-11-25T00:00:00+00:00",
                  "duration_s": 60.0 * (s + 1), "min_age_ms": 1000, "targets": [],
                  "totals": {"objects": sum(g["objects"] for g in groups), "bytes": sum(g["bytes"] for g in groups),
                             "allocs": 0, "frees": 0, "missed_frees": 0, "dropped": 0, "skipped_frees": 0},
                  "groups": groups, "refs_tracking": "off", "refs": []}
        w.snapshot(60.0 * (s + 1), "2026-11-25T00:00:00+00:00", report,
                   {"meminfo_slab_kb": 1000, "caches": {f"cache_{c}": {"objects": 100 + s, "objsize": 192}
                                                        for c in range(300)}})
    w.close()


def timed(args) -> tuple[float, int]:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", "report", *args], cwd=ROOT,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    took = time.monotonic() - t0
    if res.returncode != 0:
        sys.exit(f"report failed: {res.stderr.strip()}")
    return took, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss >> 10


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", default="100x5000,200x20000",
                    help="SNAPSHOTSxGROUPS, comma-separated (200x20000: a 1.6 GB capture, as 8 h at 2.5 min)")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    for case in args.cases.split(","):
        snapshots, groups = map(int, case.split("x"))
        with tempfile.TemporaryDirectory(prefix="kleaktrace-bench-") as d:
            cap = os.path.join(d, "long.kcap")
            write(cap, snapshots, groups)
            size = os.path.getsize(cap)
            print(f"capture: {snapshots} snapshots x {groups:,} groups, {size / 1e6:.0f} MB, "
                  f"{size / snapshots / 1e6:.1f} MB a snapshot")
            medians = {}
            for fmt in ("text", "html"):
                runs = [timed([cap, "--format", fmt, "-o", os.path.join(d, f"out.{fmt}"), "--force"])
                        for _ in range(args.runs)]
                medians[fmt] = statistics.median(t for t, _ in runs)
                print(f"  report --format {fmt:5} median {medians[fmt]:.2f} s "
                      f"(runs: {', '.join(f'{t:.2f}' for t, _ in runs)}), peak RSS {max(m for _, m in runs)} MiB, "
                      f"{size / 1e6 / medians[fmt]:.0f} MB/s")
            print(f"  html / text: {medians['html'] / medians['text']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
