#!/usr/bin/env python3
"""Soak: ``kleaktrace serve`` system-wide (its defaults: sampled) for a long
run under process, socket and file churn, scraped as Prometheus would.

Every --every seconds it scrapes /metrics and samples the serve process's
resident memory (VmRSS, RssAnon), its CPU seconds, its BPF maps' bytes and
the entries of its exited-process map; at the end it prints the RSS after a
warm-up as max/min (flat: within 10%), the CPU it used as a share of one
core, and the series.

    .venv/bin/python bench/soak.py [--minutes 30] [--every 15] [--warmup 60]
"""

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHURN = r"""
import os, socket, subprocess, sys, time
end = time.monotonic() + float(sys.argv[1])
while time.monotonic() < end:
    subprocess.run(["true"])
    for _ in range(20):
        a, b = socket.socketpair(); a.close(); b.close()
    with open("/proc/self/status") as f:
        f.read()
    time.sleep(0.01)
"""


def status(pid: int) -> dict[str, int]:
    with open(f"/proc/{pid}/status") as f:
        return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in f) if k in ("VmRSS", "RssAnon")}


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def scrape(address: str) -> dict[str, float]:
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(kleaktrace_\w+) (\S+)$", text, re.M)}


def exited_entries() -> int:
    out = subprocess.run(["bpftool", "map", "dump", "name", "exited_comms", "-j"], capture_output=True, text=True)
    return len(json.loads(out.stdout or "[]")) if out.returncode == 0 else -1


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=30)
    ap.add_argument("--every", type=float, default=15)
    ap.add_argument("--warmup", type=float, default=60)
    ap.add_argument("--interval", default="30s", help="serve --interval")
    args = ap.parse_args()
    seconds = args.minutes * 60
    serve = subprocess.Popen([sys.executable, "-m", "bpftrace_leak.cli", "serve", "--listen", "127.0.0.1:0",
                              "--interval", args.interval], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    address = None
    for line in serve.stderr:
        m = re.search(r"http://(\S+)/metrics", line)
        if m:
            address = m.group(1)
            break
    if not address:
        sys.exit("soak: serve did not start")
    churn = subprocess.Popen([sys.executable, "-c", CHURN, str(seconds)])
    t0 = time.monotonic()
    cpu0 = cpu_s(serve.pid)
    rows = []
    try:
        while churn.poll() is None:
            time.sleep(args.every)
            m = scrape(address)
            s = status(serve.pid)
            rows.append((time.monotonic() - t0, s["VmRSS"], s["RssAnon"], cpu_s(serve.pid) - cpu0,
                         m.get("kleaktrace_bpf_map_bytes", 0), exited_entries()))
            print(f"{rows[-1][0]:7.0f} s  rss {s['VmRSS'] / 1024:6.1f} MiB  anon {s['RssAnon'] / 1024:6.1f} MiB  "
                  f"cpu {rows[-1][3]:7.1f} s  maps {rows[-1][4] / 2**20:5.1f} MiB  exited names {rows[-1][5]}",
                  flush=True)
    finally:
        churn.kill()
        serve.send_signal(signal.SIGINT)
        serve.wait(60)
    warm = [r for r in rows if r[0] >= args.warmup]
    if not warm:
        sys.exit("soak: no sample after the warm-up")
    rss = [r[1] for r in warm]
    elapsed = rows[-1][0]
    print(f"soak: {elapsed / 60:.1f} min; RSS after {args.warmup:.0f} s warm-up {min(rss) / 1024:.1f}-"
          f"{max(rss) / 1024:.1f} MiB (max/min {max(rss) / min(rss):.3f}); serve CPU "
          f"{rows[-1][3]:.1f} s = {100 * rows[-1][3] / elapsed:.2f}% of a core; exited names kept "
          f"<= {max(r[5] for r in rows)}; serve exit {serve.returncode}")


if __name__ == "__main__":
    main()
