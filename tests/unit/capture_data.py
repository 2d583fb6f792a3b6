"""Synthetic captures for the offline tests: a socket group leaking 100 objects
a second beside a steady filp group."""

from bpftrace_leak.output.capture import CaptureWriter

SOCK = ["sock_alloc_inode+0x1e", "__sys_socketpair+0xd5"]
FILP = ["alloc_empty_file+0x3c", "path_openat+0x40"]


DALLOC = ["__d_alloc+0x29", "d_alloc+0x1b", "path_openat+0x7c7"]
CENSUS = {  # the lab's pathref, shortened: one of its 13 dentries
    "dentries": 27, "gone": 0, "dead": 0, "cached": 1, "pinned": 26, "pinned_explained": 25,
    "pinned_unexplained": 1, "mounts_read": 14,
    "references": {"total": 51, "file": 0, "cwd": 0, "root": 0, "mount": 0, "fs": 26, "child": 24,
                   "unexplained": 1, "over_explained": 0},
    "pinned_by": {"file": 0, "cwd": 0, "root": 0, "mount": 0, "fs": 26, "child": 2},
    "unexplained": [{"name": "f0", "path": "/kleaklab-pathref-x/f0", "count": 2,
                     "explained": {"file": 0, "cwd": 0, "root": 0, "mount": 0, "fs": 1, "child": 0},
                     "unexplained": 1, "stack": DALLOC}],
    "by_stack": [{"stack": DALLOC, "dentries": 1, "refs": 1, "names": ["f0"]}],
    "by_parent": [{"parent": "/kleaklab-pathref-x", "dentries": 1, "refs": 1}],
    "mounts": [{"mountpoint": "/tmp", "count": 40, "explained": {"namespace": 1, "child": 0, "file": 0, "cwd": 0,
                                                                "root": 0}, "unexplained": 39, "since_start": 1,
                "new": False}],
}


def report(t: float, extra_groups=()):
    groups = [
        {"kind": "slab", "cache": "sock_inode_cache", "cache_aliases": [], "objects": int(100 * t),
         "bytes": int(100 * t) * 832, "oldest_ms": int(t * 1000), "pids": [7], "comms": ["w"], "stack": SOCK},
        {"kind": "slab", "cache": "filp", "cache_aliases": [], "objects": 50, "bytes": 50 * 192,
         "oldest_ms": 9000, "pids": [8], "comms": ["x"], "stack": FILP},
    ] + list(extra_groups)
    groups.sort(key=lambda g: -g["bytes"])
    return {"schema": "kleaktrace.report/1", "kernel": "6.18", "started": "2026-11-25T00:00:00+00:00",
            "duration_s": t, "min_age_ms": 1000, "targets": [7],
            "totals": {"objects": sum(g["objects"] for g in groups), "bytes": sum(g["bytes"] for g in groups),
                       "allocs": 0, "frees": 0, "missed_frees": 0, "dropped": 0, "skipped_frees": 0},
            "groups": groups, "refs_tracking": "off", "refs": [], "census": CENSUS}


def write_capture(path, seconds=(1, 2, 3, 4, 5)):
    w = CaptureWriter(str(path), replace=True, header={"kernel": "6.18", "started": "2026-11-25T00:00:00+00:00",
                                                       "targets": [7], "command": None, "min_age_ms": 1000,
                                                       "interval_s": 1})
    for t in seconds:
        w.snapshot(t, f"2026-11-25T00:00:0{t}+00:00", report(t),
                   {"meminfo_slab_kb": 1000 + t, "caches": {"sock_inode_cache": {"objects": 100 * t, "objsize": 832},
                                                            "filp": {"objects": 50, "objsize": 192}}})
    w.close()
    return path
