#!/usr/bin/env python3
"""The holder scan's cost on this host: what it reads, how long, how much memory.

Starts a system-wide session, lets it record for a few seconds, then runs the
holder scan (tracer/scan.py, BPF reads) ROUNDS times on the recorded objects
and prints, per round, the bytes read (memmap + the frames the kernel owns),
seconds and the scan's own peak RSS (VmHWM after /proc/self/clear_refs,
above what the session already held). Beside it, numpy's raw rate on the
same number of words: a compare for kernel addresses and a binary search of
the survivors among the targets, on random data (the limit for matching,
reading left out).

    sudo .venv/bin/python bench/scan.py [--rounds 3] [--record 5]
"""

import argparse
import os
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def status(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def raw_rate(words: int, targets: int) -> float:
    """MB/s numpy matches ``words`` random words against ``targets`` ranges."""
    rng = np.random.default_rng(1)
    starts = np.sort(rng.integers(0xFFFF888000000000, 0xFFFF888800000000, targets, dtype=np.uint64))
    w = rng.integers(0, 2**64 - 1, words, dtype=np.uint64, endpoint=True)
    w[::5] = rng.integers(0xFFFF888000000000, 0xFFFF888800000000, len(w[::5]), dtype=np.uint64)  # a fifth pointers
    t0 = time.monotonic()
    for at in range(0, words, 1 << 19):  # 4 MiB at a time, as the scan reads
        chunk = w[at:at + (1 << 19)]
        v = chunk[chunk >= np.uint64(0xFF00000000000000)]
        j = np.searchsorted(starts, v, "right") - 1
        (v < starts[np.maximum(j, 0)] + np.uint64(256)).sum()
    return words * 8 / 1e6 / (time.monotonic() - t0)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--record", type=float, default=5.0, help="seconds of recording before the scans")
    args = ap.parse_args()
    from bpftrace_leak.config import Config
    from bpftrace_leak.kernel.slabs import cache_aliases
    from bpftrace_leak.tracer.collect import Collector
    from bpftrace_leak.tracer.session import Session
    cfg = Config(include_self=False).validate()
    session = Session(cfg, [])
    session.start()
    try:
        collector = Collector(session, cfg, cache_aliases(), None, [], "", time.monotonic())
        time.sleep(args.record)
        print(f"holder scan, system-wide, after {args.record:g} s of recording; {args.rounds} rounds")
        for r in range(args.rounds):
            if collector.census:  # as a report does: what the allocator holds free is retired first
                collector.census.run(cfg.min_age_ns)
            snap = collector.reader.snapshot(cfg.min_age_ns)
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # VmHWM back to VmRSS
            before = status("VmRSS")
            t0 = time.monotonic()
            section = collector.scan(snap)["section"]
            took = time.monotonic() - t0
            if section.get("skipped"):
                sys.exit(f"scan skipped: {section['skipped']}")
            peak = status("VmHWM") - before
            print(f"  round {r + 1}: {section['targets']:,} targets, read {section['bytes'] / 2**20:,.0f} MiB "
                  f"({section['pages']:,} pages, {section['passes']} pass{'es' if section['passes'] > 1 else ''}) "
                  f"in {took:.2f} s = {section['bytes'] / 2**20 / took:,.0f} MiB/s; scan peak RSS +{peak / 1024:.0f} MiB; "
                  f"{section['orphaned']} orphaned, {section['orphan_cycle']} in cycles, {section['unknown']} unknown "
                  f"({section['phantoms']} phantoms retired)")
        words = section["bytes"] // 8
        print(f"  numpy alone on {section['bytes'] / 2**20:,.0f} MiB of random words against "
              f"{max(section['targets'], 1):,} targets: {raw_rate(words, max(section['targets'], 1)):,.0f} MB/s")
        collector.close()
    finally:
        session.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
