#!/usr/bin/env python3
"""False leaks on the ground-truth workload and on process churn: kleaktrace
against bcc's memleak.

The workload churns 20,000 socketpair/open cycles (all freed, sockets through
RCU), then keeps N socketpairs: exactly 2N socket inodes stay outstanding.
Each tool runs system-wide, in turns, for several rounds; the script prints
the socket inodes each one reports from the socketpair path and how many of
them are phantoms.

Process churn: 2,000 runs of /bin/true, every one of them exited, so none of
the maple tree nodes their address spaces used is outstanding; the kernel
frees them through bulk frees and sheaves, which fire no per-object event.
Each tool runs system-wide while it happens; the script prints the maple
nodes each one reports 3 s after the last process exited (truth: 0 from the
churn) beside what the kernel itself counts live in the cache, all
processes included (/proc/slabinfo).

    sudo .venv/bin/python bench/false_leaks.py [--rounds 3] [--sockets 300]
"""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bpftrace_leak.kernel.headers import find_headers  # noqa: E402
from interleave import interleaved, start_tracer  # noqa: E402


def workload(sockets, churn):
    w = subprocess.Popen([sys.executable, "-m", "bpftrace_leak.sessions.workload", "--churn", str(churn),
                          "--sockets", str(sockets), "--files", "0", "--wait", "--until-eof"],
                         cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return w


def run_leak(w):
    w.stdin.write("go\n")
    w.stdin.flush()
    line = w.stdout.readline()
    assert line.startswith("leaked"), line


def finish(w):
    w.stdin.close()
    w.wait()


def pump(proc, lines, marker=None, seen=None):
    for line in proc.stdout:
        lines.append(line)
        if marker and marker in line and seen is not None:
            seen.append(time.monotonic())


def kleaktrace_round(sockets, churn, extra=()):
    w = workload(sockets, churn)
    t = start_tracer([sys.executable, "-m", "bpftrace_leak.cli", "--format", "json", "--top", "100000", *extra],
                     merged=False)
    run_leak(w)
    time.sleep(2.0)
    t.send_signal(signal.SIGINT)
    out, _ = t.communicate()
    finish(w)
    report = json.loads(out.strip().splitlines()[-1])
    return sum(g["objects"] for g in report["groups"]
               if g["cache"] == "sock_inode_cache" and any("__sys_socketpair" in f for f in g["stack"]))


def memleak_report(act, settle_s, extra=(), before_stop=None):
    """Run memleak-bpfcc (a report every 2 s), ``act()`` once it has attached,
    and wait for a report that started ``settle_s`` after ``act`` and for the
    next to start (so that one is complete). Returns that report's
    (allocations, stack) rows, and what ``before_stop()`` returned just
    before memleak was stopped."""
    m = subprocess.Popen(["memleak-bpfcc", "-o", "1000", "-T", "100000", *extra, "2"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines, headers = [], []
    reader = threading.Thread(target=pump, args=(m, lines, "stacks with outstanding", headers), daemon=True)
    reader.start()
    while not any("Attaching" in line for line in lines):
        time.sleep(0.1)
    act()
    mark = time.monotonic()
    while len([h for h in headers if h > mark + settle_s]) < 2:
        time.sleep(0.1)
    seen = before_stop() if before_stop else None
    m.send_signal(signal.SIGINT)
    m.wait()
    reader.join(5)
    blocks = re.split(r"^\[\d\d:\d\d:\d\d\] Top \d+ stacks with outstanding allocations:\n", "".join(lines),
                      flags=re.M)
    # the second-to-last header's block is complete
    rows = re.findall(r"\t\d+ bytes in (\d+) allocations from stack\n((?:\t\t.*\n)+)", blocks[-2])
    return [(int(allocs), stack) for allocs, stack in rows], seen


def memleak_round(sockets, churn, extra=()):
    w = workload(sockets, churn)
    rows, _ = memleak_report(lambda: run_leak(w), 2.0, extra)
    finish(w)
    return sum(allocs for allocs, stack in rows if "sock_alloc_inode" in stack and "__sys_socketpair" in stack)

CHURN = "i=0; while [ $i -lt 2000 ]; do /bin/true; i=$((i+1)); done"


def maple_active() -> int:
    with open("/proc/slabinfo") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("maple_node "))


def kleaktrace_churn():
    t = start_tracer([sys.executable, "-m", "bpftrace_leak.cli", "--format", "json", "--top", "100000"],
                     merged=False)
    subprocess.run(["sh", "-c", CHURN], check=True)
    time.sleep(3.0)
    active = maple_active()
    t.send_signal(signal.SIGINT)
    out, _ = t.communicate()
    report = json.loads(out.strip().splitlines()[-1])
    return sum(g["objects"] for g in report["groups"] if g["cache"] == "maple_node"), active


def memleak_churn():
    rows, active = memleak_report(lambda: subprocess.run(["sh", "-c", CHURN], check=True), 3.0,
                                  before_stop=maple_active)
    return sum(allocs for allocs, stack in rows if re.search(r"\bmas_|mt_dup|mas_alloc", stack)), active

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--sockets", type=int, default=300)
    ap.add_argument("--churn", type=int, default=20000)
    args = ap.parse_args()
    tree = find_headers(warn=lambda m: None)
    if tree:
        os.environ["BCC_KERNEL_SOURCE"] = tree  # memleak needs it as much as we do
    truth = 2 * args.sockets
    tools = {
        "kleaktrace": lambda: kleaktrace_round(args.sockets, args.churn),
        "kleaktrace --free-copies 2": lambda: kleaktrace_round(args.sockets, args.churn, ("--free-copies", "2")),
        "memleak-bpfcc": lambda: memleak_round(args.sockets, args.churn),
        "memleak-bpfcc --wa-missing-free": lambda: memleak_round(args.sockets, args.churn, ("--wa-missing-free",)),
    }
    results = interleaved(tools, args.rounds, str)  # every tool sees the same machine state
    print(f"socket inodes reported from the socketpair path; truth {truth} "
          f"(churn {args.churn:,}, {args.rounds} rounds, system-wide)")
    print(f"{'tool':36} {'reported per round':28} {'median false leaks':>18}")
    for name, counts in results.items():
        false = statistics.median(c - truth for c in counts)
        print(f"{name:36} {' '.join(map(str, counts)):28} {false:>18}")
    churn = interleaved({"kleaktrace": kleaktrace_churn, "memleak-bpfcc": memleak_churn}, args.rounds,
                        lambda r: f"{r[0]} (kernel: {r[1]})")
    print()
    print(f"maple nodes reported 3 s after 2,000 runs of /bin/true exited; truth 0 ({args.rounds} rounds, "
          "system-wide; in brackets the kernel's count of live maple nodes, every process's)")
    for name, rounds in churn.items():
        print(f"{name:36} {' '.join(f'{n} ({a})' for n, a in rounds):40} median {statistics.median(n for n, _ in rounds)}")


if __name__ == "__main__":
    main()
