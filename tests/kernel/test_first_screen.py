"""The system-wide first screen: the tracer is not its own leak, merged caches
are named for the code that allocates, and growth outranks size."""

import os
import signal
import time

from conftest import Tracer


def test_system_wide_leaves_the_tracer_out(workloads):
    w = workloads(churn=2000, sockets=20, files=0)
    t = Tracer("--format", "json", "--min-age", "0", "--top", "100000", "1", "4").start()
    w.go()
    holder = w.leaked()
    assert t.wait(timeout=120) == 0, t.stderr
    report = t.reports()[-1]
    pids = {p for g in report["groups"] for p in g["pids"]}
    assert t.proc.pid not in pids, [g for g in report["groups"] if t.proc.pid in g["pids"]][:3]
    assert holder in pids  # everyone else is traced
    assert report["tracer_maps_bytes"] > 1 << 20
    from bpftrace_leak.reporter import render_text
    assert "kleaktrace's own BPF maps:" in render_text(report)


def test_unix_sockets_named_for_their_alias(workloads):
    aliases = set(os.listdir("/sys/kernel/slab"))
    target = os.path.realpath("/sys/kernel/slab/UNIX") if "UNIX" in aliases else None
    if target is None or os.path.basename(target) == "UNIX":
        import pytest
        pytest.skip("UNIX sockets have a cache of their own here")
    w = workloads(churn=0, sockets=30, files=0)
    t = Tracer("-p", w.pid, "--format", "json", "--min-age", "0").start()
    w.go()
    w.leaked()
    time.sleep(0.3)
    assert t.stop(signal.SIGINT) == 0, t.stderr
    unix = [g for g in t.reports()[-1]["groups"] if any(f.startswith("unix_create1+") for f in g["stack"])]
    assert sum(g["objects"] for g in unix) == 60
    assert {g["cache"] for g in unix} != {"UNIX"}  # the tracepoint calls them by the surviving cache
    assert {g["cache_owner"] for g in unix} == {"UNIX"}, unix
    from bpftrace_leak.reporter import render_text
    assert f"slab UNIX (merged into {unix[0]['cache']}" in render_text(t.reports()[-1])


def test_growth_outranks_size_once_known(workloads):
    # 5,000 files created (their inodes and dentries stay cached: the biggest
    # groups, static) while sockets leak 20 a second
    w = workloads(churn=0, sockets=0, files=0, create=5000, rate=20, for_s=30)
    t = Tracer("-p", w.pid, "--format", "json", "--min-age", "0", "--top", "1000", "2", "9").start()
    w.go()
    assert t.wait(timeout=120) == 0, t.stderr
    first, last = t.reports()[0], t.reports()[-1]
    assert first["ranked_by"] == "bytes"  # one snapshot: growth unknown
    assert last["ranked_by"] == "growth" and last["snapshots"] == 5  # the last 5: the burst has left them
    assert last["groups"][0]["bytes_per_h"] > 0 and last["groups"][0]["cache"] != "filp", last["groups"][:2]
    biggest = max(last["groups"], key=lambda g: g["bytes"])
    assert biggest["objects"] >= 5000 and biggest["bytes_per_h"] == 0 and biggest is not last["groups"][0]
    w.end()
