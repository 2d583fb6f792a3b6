"""Slab cache names and their merged aliases, from /sys/kernel/slab.

SLUB merges caches of the same object size and compatible flags; the kmem
tracepoints then report the surviving cache's name for all of them (on this
project's 6.18 host, UNIX sockets come out as ``signal_cache``). sysfs keeps
one ``:A-0001152``-style folder per merged cache and a symlink per name.
"""

import fnmatch
import os

__all__ = ["SLAB_SYSFS", "cache_aliases", "known_caches", "check_cache_glob", "slab_facts"]

SLAB_SYSFS = "/sys/kernel/slab"


def cache_aliases(root: str = SLAB_SYSFS) -> dict[str, set[str]]:
    """{cache name: other names merged into the same cache}; unmerged caches map to set()."""
    by_target: dict[str, set[str]] = {}
    names: list[str] = []
    try:
        entries = os.listdir(root)
    except OSError:
        return {}
    for name in entries:
        if name.startswith(":"):
            continue
        path = os.path.join(root, name)
        target = os.path.realpath(path) if os.path.islink(path) else path
        by_target.setdefault(target, set()).add(name)
        names.append(name)
    out = {}
    for members in by_target.values():
        for name in members:
            out[name] = members - {name}
    return out


def known_caches(root: str = SLAB_SYSFS, slabinfo: str = "/proc/slabinfo") -> set[str]:
    names = {n for n in cache_aliases(root)}
    try:
        with open(slabinfo) as f:
            for line in f.readlines()[2:]:
                names.add(line.split()[0])
    except OSError:
        pass
    return names


def check_cache_glob(pattern: str, names: set[str]) -> bool:
    """True when ``pattern`` names at least one cache (generic kmalloc-N included)."""
    return any(fnmatch.fnmatchcase(n, pattern) for n in names) or fnmatch.fnmatchcase("kmalloc-64", pattern)


def slab_facts(meminfo: str = "/proc/meminfo", slabinfo: str = "/proc/slabinfo") -> dict:
    """/proc/meminfo's Slab and /proc/slabinfo's active objects and object size per cache."""
    facts = {"meminfo_slab_kb": None, "caches": {}}
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("Slab:"):
                    facts["meminfo_slab_kb"] = int(line.split()[1])
    except OSError:
        pass
    try:
        with open(slabinfo) as f:
            for line in f.readlines()[2:]:
                parts = line.split()
                facts["caches"][parts[0]] = {"objects": int(parts[1]), "objsize": int(parts[3])}
    except (OSError, IndexError, ValueError):
        pass
    return facts
