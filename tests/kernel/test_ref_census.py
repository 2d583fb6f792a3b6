"""The reference census: pinned vs cached without drop_caches, and each
pin explained by the open file, working directory or child that holds it."""

import signal
import time

from conftest import Tracer

N, CREATED, CWD_FILES = 50, 300, 5


def _vmstat(name: str) -> int:
    with open("/proc/vmstat") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(name + " "))


def census(workloads, **kw):
    w = workloads(churn=0, files=0, **kw)
    t = Tracer("-p", w.pid, "--format", "json", "--kinds", "allocs", "--min-age", "200ms").start()
    w.go()
    w.leaked()
    time.sleep(0.5)
    assert t.stop(signal.SIGINT) == 0, t.stderr
    return t.reports()[-1]["census"]


def test_pinned_and_cached_without_drop_caches(workloads):
    """The --shake test's workload: each socket's dentry is pinned by its
    file, each created file's only cached; the folder the files were created
    in is pinned by them, its children."""
    drops = (_vmstat("drop_pagecache"), _vmstat("drop_slab"))
    c = census(workloads, sockets=N, create=CREATED)
    assert (_vmstat("drop_pagecache"), _vmstat("drop_slab")) == drops  # nothing was dropped
    assert c["pinned_by"]["file"] == 2 * N, c
    assert c["pinned"] == 2 * N + 1 and c["pinned_by"]["child"] == 1, c
    assert c["references"]["child"] == CREATED, c
    assert c["cached"] == CREATED, c
    assert c["references"]["unexplained"] == 0 and c["pinned_unexplained"] == 0, c
    assert c["gone"] == 0 and c["dead"] == 0, c


def test_cwd_files_and_child_explained(workloads):
    """A process working in a new folder, files open in it, one empty subfolder:
    the folder is held by the cwd and its 6 children, each file by its file."""
    c = census(workloads, sockets=0, cwd_files=CWD_FILES)
    refs = c["references"]
    assert refs["unexplained"] == 0 and c["pinned_unexplained"] == 0, c
    assert (refs["file"], refs["cwd"], refs["child"]) == (CWD_FILES, 1, CWD_FILES + 1), c
    assert c["pinned_by"] == {"file": CWD_FILES, "cwd": 1, "root": 0, "mount": 0, "fs": 0, "child": 1}, c
    assert c["pinned"] == CWD_FILES + 1 and c["cached"] >= 1, c  # the subfolder: count 0


def test_files_in_flight_in_a_unix_socket_are_unexplained_pins(workloads):
    """Files sent with SCM_RIGHTS and never received are held by the
    message alone, where no iterator looks: each of their dentries (on a
    tmpfs, which pins its own) has one reference nothing explains, and their
    mount, new in this session, as many."""
    k = 9
    c = census(workloads, sockets=0, inflight=k)
    mine = [d for d in c["unexplained"] if d["name"].startswith("inflight")]
    assert sorted(d["name"] for d in mine) == sorted(f"inflight{i}" for i in range(k)), c
    assert all((d["count"], d["unexplained"], d["explained"]["fs"]) == (2, 1, 1) for d in mine), mine
    assert c["references"]["unexplained"] == k and c["pinned_unexplained"] == k, c
    assert {g["parent"] for g in c["by_parent"]} == {"/"}  # the tmpfs's root: the mount's own path
    mounts = [m for m in c["mounts"] if "/kleaktrace-inflight-" in m["mountpoint"]]
    assert [(m["since_start"], m["new"], m["unexplained"]) for m in mounts] == [(k, True, k)], c["mounts"]
    assert mounts[0]["count"] == k + 1 and mounts[0]["explained"]["namespace"] == 1
