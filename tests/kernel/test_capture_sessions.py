"""Recorded sessions on workloads whose leaks are known: rate, replay, kill -9, sockets."""

import json
import os
import signal
import stat
import subprocess
import sys
import time

from conftest import ROOT, Tracer, count

CLI = [sys.executable, "-m", "bpftrace_leak.cli"]


def report_of(path, *args):
    res = subprocess.run(CLI + ["report", str(path), *map(str, args)], cwd=ROOT, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return res.stdout


def test_recorded_leak_rate_within_10_percent(workloads, tmp_path):
    rate = 25  # socketpairs a second: 50 socket inodes a second, 180,000 an hour
    w = workloads(churn=0, sockets=0, files=0, rate=rate, for_s=12)
    cap = tmp_path / "rate.kcap"
    t = Tracer("record", "-p", w.pid, "-w", cap, "--interval", "1s", "--duration", "8").start()
    w.go()
    assert t.wait(timeout=60) == 0, t.stderr
    assert stat.S_IMODE(os.stat(cap).st_mode) == 0o600
    r = json.loads(report_of(cap, "--format", "json", "--cache", "sock_inode_cache"))
    per_h = sum(g["objects_per_h"] for g in r["groups"])
    assert abs(per_h - 2 * rate * 3600) <= 0.10 * 2 * rate * 3600, (per_h, r["headline"])
    assert "leak rate:" in report_of(cap)


def test_report_on_capture_reproduces_live_groups(workloads, tmp_path):
    w = workloads(churn=2000, sockets=40, files=10)
    cap = tmp_path / "live.kcap"
    t = Tracer("-p", w.pid, "--format", "json", "--top", "1000", "-w", cap).start()
    w.go()
    w.leaked()
    time.sleep(1.5)
    assert t.stop(signal.SIGINT) == 0, t.stderr
    live = t.reports()[-1]
    offline = json.loads(report_of(cap, "--format", "json"))
    strip = lambda gs: [{k: g[k] for k in ("kind", "cache", "objects", "bytes", "pids", "stack")} for g in gs]  # noqa: E731
    assert strip(offline["groups"]) == strip(live["groups"])
    assert count(offline, "sock_inode_cache") == 80


def test_kill_9_leaves_a_readable_capture(workloads, tmp_path):
    w = workloads(churn=0, sockets=0, files=0, rate=20, for_s=30)
    cap = tmp_path / "killed.kcap"
    t = Tracer("record", "-p", w.pid, "-w", cap, "--interval", "0.5s", "--min-age", "0").start()
    w.go()
    time.sleep(3.2)
    t.proc.kill()
    t.wait()
    offline = json.loads(report_of(cap, "--format", "json"))
    assert offline["snapshots"] >= 4
    assert count(offline, "sock_inode_cache") > 0
    assert report_of(cap, "--format", "folded").strip()


def test_socket_leak_names_sockets_by_family_and_state(workloads):
    w = workloads(churn=0, sockets=30, files=0)
    t = Tracer("-p", w.pid, "--format", "json", "--min-age", "200ms").start()
    w.go()
    w.leaked()
    time.sleep(0.5)
    assert t.stop() == 0, t.stderr
    socks = t.reports()[-1]["sockets"]
    unix = [s for s in socks if s["family"] == "unix" and s["state"] == "ESTABLISHED" and s["pid"] == w.pid]
    assert unix and unix[0]["count"] == 60
    # each example is one of the pair, its peer the other end
    inodes = {e["inode"] for e in unix[0]["examples"]}
    assert all(e["peer"] for e in unix[0]["examples"]) and len(inodes) == len(unix[0]["examples"]) > 0
