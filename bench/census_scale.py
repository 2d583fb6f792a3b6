#!/usr/bin/env python3
"""The reference census over many dentries: how long, beside the report it joins.

A child process makes N files in 100 folders on the disk (/var/tmp, ext4
here) while the tracer traces it, keeping every tenth one open: N + 100
dentries recorded, a tenth pinned by open files, the folders by their
children, the rest cached. The benchmark runs the tracer in this process,
as `kleaktrace -p CHILD` does, and times the census (tracer/pins.py: read
every recorded dentry's count, list every file, fs_struct and mount, walk
the short folders' children) and, side by side, the report it is part of
(read the maps, group, symbolize, render JSON).

    .venv/bin/python bench/census_scale.py [--files 100000]
"""

import argparse
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bpftrace_leak.analysis.report import build_report  # noqa: E402
from bpftrace_leak.config import Config  # noqa: E402
from bpftrace_leak.reporter import render  # noqa: E402
from bpftrace_leak.tracer.census import Census  # noqa: E402
from bpftrace_leak.tracer.pins import PinCensus  # noqa: E402
from bpftrace_leak.tracer.reader import Reader  # noqa: E402
from bpftrace_leak.tracer.session import Session  # noqa: E402

HOLDER = r"""
import os, resource, shutil, sys, tempfile
n = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_NOFILE, (n // 10 + 100, n // 10 + 100))
d = tempfile.mkdtemp(prefix="kleaktrace-census-", dir="/var/tmp")
held = []
try:
    sys.stdin.readline()
    for i in range(n):
        sub = os.path.join(d, str(i % 100))
        if i < 100:
            os.mkdir(sub)
        fd = os.open(os.path.join(sub, str(i)), os.O_CREAT | os.O_WRONLY, 0o600)
        held.append(fd) if i % 10 == 0 else os.close(fd)
    print("made", flush=True)
    sys.stdin.read()
finally:
    shutil.rmtree(d)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(args.files)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    with Session(Config(refs=False), [holder.pid]) as session:
        reader = Reader(session)
        census = Census(session, reader)
        pins = PinCensus(session, reader, census)
        symbolizer = reader.symbolizer()
        pins.start(symbolizer)
        holder.stdin.write("go\n")
        holder.stdin.flush()
        holder.stdout.readline()
        time.sleep(1.0)
        took, report_took = [], []
        for _ in range(args.rounds):
            began = time.perf_counter()
            section = pins.run(500_000_000, symbolizer).section
            took.append(time.perf_counter() - began)
            began = time.perf_counter()
            render(build_report(reader.snapshot(500_000_000), symbolizer, kernel="", started="", duration_s=0,
                                min_age_ms=500, targets=[holder.pid]), "json")
            report_took.append(time.perf_counter() - began)
        pins.close()
        census.close()
        reader.close()
    holder.stdin.close()
    holder.wait()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    c, best, report_best = section, min(took), min(report_took)
    print(f"{c['dentries']:,} dentries recorded ({args.files:,} files made in 100 folders, a tenth kept open): "
          f"{c['pinned']:,} pinned ({c['pinned_by']['file']:,} by open files, {c['pinned_by']['child']:,} by "
          f"children), {c['cached']:,} cached, {c['references']['unexplained']:,} references unexplained")
    print(f"  reference census: {best:.2f} s (best of {args.rounds}; all: {', '.join(f'{t:.2f}' for t in took)})")
    print(f"  the report beside it (read maps, group, symbolize, render JSON): {report_best:.2f} s; "
          f"census/report {best / report_best:.2f}x")
    print(f"  frontend peak RSS: {rss / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
