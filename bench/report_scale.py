#!/usr/bin/env python3
"""Reports over a million live objects: how long, how much memory.

A child process creates N empty files on a tmpfs while kleaktrace traces it
(each file leaves about three slab objects live: inode, dentry, LSM blobs;
tmpfs keeps them), then holds them. The benchmark runs the tracer in this
process, as `kleaktrace -p CHILD` does, and times what the final report
does: read the maps, group, symbolize, render as JSON. The child also
touches --anon-mib of anonymous memory, traced as user pages (--user-pages),
for the page census's sake (one BPF_PROG_TEST_RUN per aged page record:
tracer/census_pages.py). It prints that time, the peak RSS of this process
(BCC's compile included), the slab census that runs before each report
(tracer/census.py), the page census run apart, and the BPF maps'
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

from bpftrace_leak import layout  # noqa: E402
from bpftrace_leak.analysis.report import build_report  # noqa: E402
from bpftrace_leak.config import Config  # noqa: E402
from bpftrace_leak.reporter import render  # noqa: E402
from bpftrace_leak.tracer.census import Census  # noqa: E402
from bpftrace_leak.tracer.census_pages import look_at_pages  # noqa: E402
from bpftrace_leak.tracer.reader import Reader  # noqa: E402
from bpftrace_leak.tracer.session import Session  # noqa: E402

HOLDER = r"""
import mmap, os, shutil, sys, tempfile
n, anon = int(sys.argv[1]), int(sys.argv[2]) << 20
d = tempfile.mkdtemp(prefix="kleaktrace-scale-", dir="/dev/shm")
try:
    sys.stdin.readline()
    for i in range(n):
        os.close(os.open(os.path.join(d, str(i)), os.O_CREAT | os.O_WRONLY, 0o600))
    held = mmap.mmap(-1, max(anon, 4096))
    for at in range(0, anon, 4096):
        held[at] = 1
    print("leaked", flush=True)
    sys.stdin.read()
finally:
    shutil.rmtree(d)
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=320_000)
    ap.add_argument("--max-objects", type=int, default=4_000_000, help="the larger setting measured")
    ap.add_argument("--anon-mib", type=int, default=400, help="user pages the holder touches (--user-pages)")
    args = ap.parse_args()
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(args.files), str(args.anon_mib)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    with Session(Config(refs=False, user_pages=True), [holder.pid]) as session:
        reader = Reader(session)
        memory = reader.map_memory()
        holder.stdin.write("go\n")
        holder.stdin.flush()
        holder.stdout.readline()
        time.sleep(1.0)
        symbolizer = reader.symbolizer()
        census = Census(session, reader) if session.plan.census else None
        page_space = reader.records(500_000_000)["space"] == layout.ENUMS["space"]["SPACE_PAGE"]
        page_records = int(page_space.sum())
        began = time.perf_counter()
        if census and "census_page" in census.fds:  # the page census alone, skipped page free or not
            look_at_pages(census.fds, reader, reader.records(500_000_000), 500_000_000)
        pages_took = time.perf_counter() - began
        skipped = layout.ENUMS["space"]["SPACE_PAGE"] in reader.skipped_spaces()
        began = time.perf_counter()
        found = census.run(500_000_000, seeds=reader.sites()[0]) if census else 0
        census_took = time.perf_counter() - began
        began = time.perf_counter()
        report = build_report(reader.snapshot(500_000_000), symbolizer, kernel="", started="",
                              duration_s=0, min_age_ms=500, targets=[holder.pid])
        text = render(report, "json")
        reader.close()
        took = time.perf_counter() - began
    holder.stdin.close()
    holder.wait()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    totals = json.loads(text)["totals"]
    objects = totals["objects"]
    with Session(Config(refs=False, max_objects=args.max_objects), [os.getpid()]):
        big_memory = Reader.map_memory()
    print(f"{objects:,} live objects ({args.files:,} tmpfs files created; {totals['dropped']:,} not recorded: maps full)")
    print(f"  census (every slab page holding them, every CPU's freelists and sheaves; the page census below "
          f"if a page free was skipped): {census_took:.2f} s, "
          f"{found:,} found free")
    print(f"  page census (census_page, one run per aged page record: {page_records:,}, most of them the "
          f"holder's {args.anon_mib} MiB of user pages): {pages_took:.2f} s, "
          f"{1e6 * pages_took / max(page_records, 1):.1f} us a record, paid only once a page free was skipped "
          f"({'so in this run' if skipped else 'none was in this run'})")
    print(f"  report (read maps, group, symbolize, render JSON): {took:.2f} s")
    print(f"  frontend peak RSS: {rss / 2**20:.0f} MiB")
    print(f"  BPF maps at the default --max-objects 1000000: {memory / 2**20:.0f} MiB")
    print(f"  BPF maps at --max-objects {args.max_objects}: {big_memory / 2**20:.0f} MiB")


if __name__ == "__main__":
    main()
