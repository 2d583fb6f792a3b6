#!/usr/bin/env python3
"""Triggers each kleaklab scenario a known number of times; writes what to expect.

Runs inside the guest under ``kleaktrace -c``: every allocation the module
makes happens in this process's write() calls, so it is charged to it.
"""

import argparse
import json
import os
import tempfile
import time

PROC = "/proc/kleaklab"

# times each scenario runs; distinct primes, so no count matches by chance
TIMES = {"kmalloc": 17, "cache": 23, "socket": 29, "percpu": 31, "pathref": 13,
         "decoy_park": 41, "decoy_rcu": 43, "decoy_ref": 11}


def trigger(name: str, value: int) -> None:
    with open(os.path.join(PROC, name), "w") as f:
        f.write(str(value))


def on_new_files(name: str, count: int) -> None:
    """Run an fd-taking scenario on ``count`` files created for it, then close them."""
    d = tempfile.mkdtemp(prefix=f"kleaklab-{name}-")
    for i in range(count):
        fd = os.open(os.path.join(d, f"f{i}"), os.O_CREAT | os.O_RDWR, 0o600)
        trigger(name, fd)
        os.close(fd)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--expect", required=True)
    ap.add_argument("--only", help="comma-separated scenarios to run (default: all)")
    args = ap.parse_args()
    run = set(args.only.split(",")) if args.only else set(TIMES)
    for name in ("kmalloc", "cache", "socket", "percpu", "decoy_rcu"):
        if name in run:
            trigger(name, TIMES[name])
    if "decoy_park" in run:
        trigger("decoy_park", TIMES["decoy_park"])
        trigger("decoy_park", 0)  # the module frees what it parked
    for name in ("pathref", "decoy_ref"):
        if name in run:
            on_new_files(name, TIMES[name])
    with open(args.expect, "w") as f:
        json.dump({name: TIMES[name] for name in TIMES if name in run}, f)
    # kfree_rcu batches frees for up to a few seconds (KFREE_DRAIN_JIFFIES)
    time.sleep(7)


if __name__ == "__main__":
    main()
