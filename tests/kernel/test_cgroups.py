"""Containers: outstanding kernel memory attributed to cgroups, live and after
they are removed, checked against the kernel's own count of memory cgroups."""

import os
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
    t = Tracer("--format", "json", "--min-age", "0", "--top", "100000", "--by", "cgroup", "--split", "cgroup").start()
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
        assert {c["path"] for g in report["groups"] for c in g["cgroups"]} == {"/" + os.path.basename(folder)}
    finally:
        for w in (inside, outside):
            w.end()
        os.rmdir(folder)


def test_unknown_cgroup_is_one_line():
    res = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", "--cgroup", "/no/such/cgroup", "--duration", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert res.returncode == 2 and "no such cgroup" in res.stderr and "Traceback" not in res.stderr


def test_one_leak_in_five_cgroups_is_one_group_listing_them(tmp_path):
    """Issue #26: the same leaky program in 5 memory cgroups, 30 socketpairs
    each: one socket-inode group of 300 objects listing 5 cgroups with 60
    each (not 5 groups of 60); --by cgroup gives 5 rows."""
    k, n = 5, 30
    t = Tracer("--format", "json", "--min-age", "0", "--top", "100000", "--by", "cgroup").start()
    children = []
    try:
        for i in range(k):
            folder = make_cgroup(f"kleaktrace-five-{os.getpid()}-{i}")
            child = subprocess.Popen([sys.executable, "-c", CHILD, folder, parent_of_self(), str(n),
                                      str(tmp_path / f"scratch{i}")], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
            assert child.stdout.readline().strip() == "ready"
            children.append((folder, child))
        time.sleep(1.0)
        assert t.stop(signal.SIGINT) == 0, t.stderr
    finally:
        for folder, child in children:
            child.stdin.close()
            child.wait()
            os.rmdir(folder)
    report = t.reports()[-1]
    names = {"/" + os.path.basename(folder) for folder, _ in children}
    socks = [g for g in report["groups"] if g["cache"] == "sock_inode_cache"
             and {c["path"] for c in g["cgroups"]} & names]
    assert len(socks) == 1, [(g["objects"], g["stack"][:2], g["cgroup_count"]) for g in socks]
    (g,) = socks
    assert g["objects"] == 2 * n * k and g["cgroup_count"] == k
    assert {c["path"]: c["objects"] for c in g["cgroups"]} == {name: 2 * n for name in names}
    rows = [r for r in report["cgroups"] if r["cgroup"] in names]
    assert len(rows) == k and all(r["kinds"]["slab"] >= 2 * n for r in rows)


DYING = r"""
import os, subprocess, sys
root, n, data = sys.argv[1], int(sys.argv[2]), sys.argv[3]
for i in range(n):
    d = os.path.join(root, f"kleaktrace-dying-{os.getpid()}-{i}")
    os.mkdir(d)
    subprocess.run(["sh", "-c", f"echo $$ > {d}/cgroup.procs; head -c 200000 /dev/urandom > {data}/{i}"], check=True)
    os.rmdir(d)
"""


@pytest.mark.parametrize("split", [False, True])
def test_dying_memory_cgroups_are_one_group_or_split(tmp_path, split):
    """Issue #26: 20 memory cgroups made, charged and removed: one mem_cgroup
    group of 20 objects listing 20 removed cgroups; --split cgroup: 20 groups of 1."""
    script = tmp_path / "dying.py"
    script.write_text(DYING)
    t = Tracer("-c", f"{sys.executable} {script} {ROOT_CG} 20 {tmp_path}", "--children", "--format", "json",
               "--top", "100000", "--no-scan", *(["--split", "cgroup"] if split else [])).start()
    assert t.wait(180) == 0, t.stderr
    report = t.reports()[-1]
    own = [g for g in report["groups"] if g["cache"] == "mem_cgroup" and g.get("cgroup_own")]
    if split:
        assert len(own) == 20 and all(g["objects"] == 1 and g["cgroup"].startswith("(removed) /kleaktrace-dying-")
                                      for g in own), [(g["objects"], g.get("cgroup")) for g in own]
    else:
        assert len(own) == 1, [(g["objects"], g["cgroup_count"]) for g in own]
        (g,) = own
        assert g["objects"] == 20 and g["cgroup_count"] == 20
        assert all(c["removed"] and c["path"].startswith("(removed) /kleaktrace-dying-") for c in g["cgroups"])
