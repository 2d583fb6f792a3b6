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
