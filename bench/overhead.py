#!/usr/bin/env python3
"""Overhead on an allocation storm: kleaktrace against bcc's memleak, side by side.

Builds bench/storm.c, then in each round runs the storm (socketpair+close,
open+close on one core) untraced, under memleak-bpfcc (kernel mode,
system-wide), under kleaktrace system-wide, under kleaktrace -p on the
storm itself and under kleaktrace serve (its always-on defaults), in turn. Prints the median throughput of each as a ratio of the
untraced runs of the same rounds.

    sudo .venv/bin/python bench/overhead.py [--rounds 5] [--seconds 4]
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bpftrace_leak.kernel.headers import find_headers  # noqa: E402
from interleave import interleaved  # noqa: E402


def build_storm(dest: str) -> str:
    exe = os.path.join(dest, "storm")
    subprocess.run(["gcc", "-O2", "-o", exe, os.path.join(ROOT, "bench", "storm.c")], check=True)
    return exe


def storm(exe: str, seconds: float):
    """Start the storm pinned to CPU 1; ``rate(proc)`` waits for its figure."""
    proc = subprocess.Popen(["taskset", "-c", "1", exe, str(seconds)], stdout=subprocess.PIPE, text=True)
    return proc


def rate(proc) -> float:
    out, _ = proc.communicate()
    return float(out.strip())


def with_tracer(cmd, ready: str, exe: str, seconds: float, target_pid=False) -> float:
    """Start a tracer, wait until it prints ``ready``, run the storm, stop the tracer."""
    if target_pid:
        # the storm starts stopped, the tracer attaches to it, then it runs
        storm_proc = subprocess.Popen(["sh", "-c", f'kill -STOP $$; exec taskset -c 1 {exe} {seconds}'],
                                      stdout=subprocess.PIPE, text=True)
        time.sleep(0.1)
        cmd = cmd + ["-p", str(storm_proc.pid)]
    # memleak says it is ready on stdout, kleaktrace on stderr: read both
    tracer = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT)
    for line in tracer.stdout:
        if ready in line:
            break
    else:
        raise SystemExit(f"{cmd[0]} did not start")
    if target_pid:
        os.kill(storm_proc.pid, signal.SIGCONT)
        result = rate(storm_proc)
    else:
        result = rate(storm(exe, seconds))
    tracer.send_signal(signal.SIGINT)
    try:
        tracer.communicate(timeout=120)  # drains its final report
    except subprocess.TimeoutExpired:
        tracer.kill()
        tracer.communicate()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args()
    tree = find_headers(warn=lambda m: None)
    if tree:
        os.environ["BCC_KERNEL_SOURCE"] = tree
    kleak = [sys.executable, "-m", "bpftrace_leak.cli", "--format", "json", "--kinds", "allocs"]
    # SERVE_ARGS: options for the serve row (e.g. --sample-bytes 0 to see what sampling saves)
    serve = [sys.executable, "-m", "bpftrace_leak.cli", "serve", "--listen", "127.0.0.1:0", "--kinds", "allocs",
             *os.environ.get("SERVE_ARGS", "").split()]
    with tempfile.TemporaryDirectory() as d:
        exe = build_storm(d)
        runs = {
            "untraced": lambda: rate(storm(exe, args.seconds)),
            "memleak-bpfcc": lambda: with_tracer(["memleak-bpfcc", "-o", "1000", "3600"], "Attaching",
                                                 exe, args.seconds),
            "kleaktrace (system-wide)": lambda: with_tracer(kleak, "Hit Ctrl-C", exe, args.seconds),
            "kleaktrace -p storm": lambda: with_tracer(kleak, "Hit Ctrl-C", exe, args.seconds, target_pid=True),
            # the always-on exporter: its defaults (sampled, --sample-bytes 65536)
            "kleaktrace serve": lambda: with_tracer(serve, "Hit Ctrl-C", exe, args.seconds),
        }
        results = interleaved(runs, args.rounds, lambda v: f"{v:,.0f} cycles/s")
    base = statistics.median(results["untraced"])
    print(f"allocation storm (socketpair+close, open+close; one core), {args.rounds} rounds of "
          f"{args.seconds:g} s, median throughput vs untraced ({base:,.0f} cycles/s)")
    for name, vals in results.items():
        print(f"  {name:28} {statistics.median(vals) / base:5.2f}x")


if __name__ == "__main__":
    main()
