"""Containers: outstanding kernel memory attributed to cgroups, live and after
they are removed, checked against the kernel's own count of memory cgroups."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, Tracer, count

from bpftrace_leak.kernel.cgroups import memory_on_v1, mount_point

ROOT_CG = mount_point(1) if memory_on_v1() else mount_point(2)

pytestmark = pytest.mark.skipif(ROOT_CG is None, reason="no memory cgroup hierarchy mounted")

# a child that joins a cgroup, charges page cache to it and keeps sockets,
# then moves back out: the cgroup can be removed, its memory cgroup dies
CHILD = r"""
import os, socket, sys
cg, parent, n, scratch = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
def join(folder):
    with open(os.path.join(folder, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
join(cg)
with open(scratch, "wb") as f:  # page cache charged to the cgroup: keeps it dying after rmdir
    f.write(os.urandom(1 << 20))
    f.flush()
    os.fsync(f.fileno())
held = [socket.socketpair() for _ in range(n)]
join(parent)
print("ready", flush=True)
sys.stdin.read()
"""


def num_memory_cgroups() -> int:
    """The kernel's count of memory cgroups, dying ones included."""
    if memory_on_v1():
        with open("/proc/cgroups") as f:
            return next(int(line.split()[2]) for line in f if line.startswith("memory"))
    with open(os.path.join(ROOT_CG, "cgroup.stat")) as f:
        stat = dict(line.split() for line in f)
    return int(stat["nr_descendants"]) + int(stat["nr_dying_descendants"]) + 1


def make_cgroup(name: str) -> str:
    folder = os.path.join(ROOT_CG, name)
    os.mkdir(folder)
    return folder


def parent_of_self() -> str:
    with open("/proc/self/cgroup") as f:
        for line in f:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if (memory_on_v1() and "memory" in controllers.split(",")) or (not memory_on_v1() and controllers == ""):
                return os.path.join(ROOT_CG, path.lstrip("/"))
    return ROOT_CG


def test_removed_cgroups_keep_their_sockets_and_their_own_memcg(tmp_path):
    k, n = 3, 7
    before = num_memory_cgroups()
    t = Tracer("--format", "json", "--min-age", "0", "--top", "100000", "--by", "cgroup").start()
    children = []
    try:
        for i in range(k):
            folder = make_cgroup(f"kleaktrace-test-{os.getpid()}-{i}")
            child = subprocess.Popen([sys.executable, "-c", CHILD, folder, parent_of_self(), str(n),
                                      str(tmp_path / f"scratch{i}")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
            assert child.stdout.readline().strip() == "ready"
            os.rmdir(folder)  # every task left it: it goes, its memory cgroup dies (page cache refers to it)
            children.append((folder, child))
        time.sleep(1.0)
        dying = num_memory_cgroups() - before
        assert t.stop(signal.SIGINT) == 0, t.stderr
    finally:
        for _, child in children:
            child.stdin.close()
            child.wait()
    report = t.reports()[-1]
    names = {f"(removed) /{os.path.basename(folder)}" for folder, _ in children}
    for name in names:
        mine = [g for g in report["groups"] if g.get("cgroup") == name]
        # the sockets the child made there, and the cgroup's own struct mem_cgroup
        assert count({"groups": mine}, "sock_inode_cache") == 2 * n, mine
        assert sum(g["objects"] for g in mine if g.get("cgroup_own")) == 1, mine
    own = {g["cgroup"] for g in report["groups"] if g.get("cgroup_own")}
    assert own == names
    assert dying == k == len(own)  # as many as the kernel counts still there
    table = {r["cgroup"]: r for r in report["cgroups"]}
    assert all(table[name]["removed"] and table[name]["kinds"]["slab"] >= 2 * n for name in names)


def test_cgroup_option_traces_inside_and_nothing_outside(workloads):
    folder = make_cgroup(f"kleaktrace-filter-{os.getpid()}")
    try:
        t = Tracer("--cgroup", "/" + os.path.basename(folder), "--format", "json", "--min-age", "0",
                   "--top", "100000").start()
        outside = workloads(churn=0, sockets=20, files=0)
        inside = workloads(churn=0, sockets=10, files=0)
        with open(os.path.join(folder, "cgroup.procs"), "w") as f:
            f.write(str(inside.pid))
        inside.go()
        outside.go()
        inside.leaked()
        outside.leaked()
        time.sleep(0.5)
        assert t.stop(signal.SIGINT) == 0, t.stderr
        report = t.reports()[-1]
        assert count(report, "sock_inode_cache") == 20  # 10 socketpairs inside; the 20 outside not
        assert {p for g in report["groups"] for p in g["pids"]} == {inside.pid}
        assert {g["cgroup"] for g in report["groups"]} == {"/" + os.path.basename(folder)}
    finally:
        for w in (inside, outside):
            w.end()
        os.rmdir(folder)


def test_unknown_cgroup_is_one_line():
    res = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", "--cgroup", "/no/such/cgroup", "--duration", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no such cgroup" in res.stderr and "Traceback" not in res.stderr
