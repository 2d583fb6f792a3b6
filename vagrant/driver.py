#!/usr/bin/env python3
"""Triggers each kleaklab scenario a known number of times; writes what to expect.

Runs inside the guest under ``kleaktrace -c``: every allocation the module
makes happens in this process's write() calls, so it is charged to it.
"""

import argparse
import json
import os
import shutil
import tempfile
import time

PROC = "/proc/kleaklab"

# times each scenario runs; distinct primes, so no count matches by chance
TIMES = {"kmalloc": 17, "cache": 23, "socket": 29, "percpu": 31, "pathref": 13,
         "decoy_park": 41, "decoy_rcu": 43, "decoy_ref": 11,
         "sheaf": 37, "decoy_bulk": 47, "decoy_rcuvol": 3001, "decoy_churn": 2003,
         "orphan": 19, "cycle": 7, "hold": 5}
# the churn's processes run a copy of true under this name: their allocations
# are told apart by it (labcheck.py's CHURN_COMM)
CHURN_COMM = "kleaklab-churn"


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


def churn(count: int) -> None:
    """Fork and exec ``count`` short processes, one after another, each reaped."""
    d = tempfile.mkdtemp(prefix="kleaklab-churn-")
    prog = os.path.join(d, CHURN_COMM)
    shutil.copy(shutil.which("true"), prog)
    for _ in range(count):
        pid = os.posix_spawn(prog, [prog], {})
        os.waitpid(pid, 0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--expect", required=True)
    ap.add_argument("--only", help="comma-separated scenarios to run (default: all)")
    args = ap.parse_args()
    run = set(args.only.split(",")) if args.only else set(TIMES)
    steps = {"decoy_churn": lambda: churn(TIMES["decoy_churn"])}
    for name in ("kmalloc", "cache", "socket", "percpu", "decoy_rcu", "sheaf", "decoy_bulk", "decoy_rcuvol",
                 "orphan", "cycle", "hold"):
        steps[name] = lambda name=name: trigger(name, TIMES[name])
    # the module frees what it parked when 0 is written
    steps["decoy_park"] = lambda: (trigger("decoy_park", TIMES["decoy_park"]), trigger("decoy_park", 0))
    for name in ("pathref", "decoy_ref"):
        steps[name] = lambda name=name: on_new_files(name, TIMES[name])
    errors = {}
    for name, step in steps.items():
        if name in run:
            try:
                step()
            except OSError as e:  # the scenario fails on this kernel: labcheck says so, the others go on
                errors[name] = str(e)
    with open(args.expect, "w") as f:
        json.dump(dict({name: TIMES[name] for name in TIMES if name in run}, _errors=errors), f)
    # kfree_rcu batches frees for up to a few seconds (KFREE_DRAIN_JIFFIES)
    time.sleep(7)


if __name__ == "__main__":
    main()
