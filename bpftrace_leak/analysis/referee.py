"""The kernel as referee: what a report holds per slab cache against what the
kernel itself counts there.

/proc/slabinfo's active objects of a cache count every object allocated in
it and more (objects in per-CPU slabs and sheaves count as active), so they
are an upper bound of what can be outstanding there. A report above that
bound holds phantoms: objects whose free no tracepoint showed (bulk frees,
kfree_rcu batches, 6.18's sheaves). Such groups get ``unverified_objects``
(at most that many of theirs are phantoms: which ones cannot be told) and
the report's totals the sum of the excess; a renderer shows the warning
beside the group.

Merged caches: the tracepoint names a slab object's cache by the surviving
kmem_cache, which is the slabinfo line holding all its aliases. kmalloc
groups are named by size only (kmalloc-64), and the kmalloc caches of that
size (kmalloc-cg-64, kmalloc-rnd-05-64, dma-kmalloc-64, ...) may each be
merged into another cache: the bound of a kmalloc group is the sum over the
distinct slabinfo lines that hold any cache of that size.
"""

import re

__all__ = ["referee", "kmalloc_size"]

_KMALLOC = re.compile(r"^(?:dma-)?kmalloc(?:-cg|-rcl|-rnd-\d+)?-(\d+)(k?)$")


def kmalloc_size(name: str) -> int | None:
    """The object size of a kmalloc cache name (``kmalloc-cg-8k`` -> 8192), else None."""
    m = _KMALLOC.match(name)
    return int(m.group(1)) * (1024 if m.group(2) else 1) if m else None


def _bounds(active: dict[str, int], aliases: dict[str, set]) -> tuple[dict[str, int], dict[int, int]]:
    """({slabinfo cache: active objects}, {kmalloc size: active objects of the
    lines holding any kmalloc cache of that size})."""
    canonical = {}  # any name -> the slabinfo line that holds it
    for name in active:
        canonical[name] = name
        for alias in aliases.get(name, ()):
            canonical.setdefault(alias, name)
    lines_by_size: dict[int, set] = {}
    for name, line in canonical.items():
        size = kmalloc_size(name)
        if size is not None:
            lines_by_size.setdefault(size, set()).add(line)
    return active, {size: sum(active[line] for line in lines) for size, lines in lines_by_size.items()}


def referee(report: dict, active: dict[str, int], aliases: dict[str, set] | None = None) -> dict:
    """Mark the groups of ``report`` in caches reported above the kernel's own
    count (``active``: /proc/slabinfo active objects per cache); returns it."""
    by_cache, by_size = _bounds(active, aliases or {})
    reported: dict[tuple, int] = {}
    for g in report["groups"]:
        key = _key(g)
        if key:
            reported[key] = reported.get(key, 0) + g["objects"]
    excess_total = 0
    for key, n in reported.items():
        bound = by_cache.get(key[1]) if key[0] == "slab" else by_size.get(key[1])
        if bound is None or n <= bound:
            continue
        excess_total += n - bound
        for g in report["groups"]:
            if _key(g) == key:
                g["unverified_objects"] = min(g["objects"], n - bound)
                g["kernel_active"] = bound
    report["totals"]["unverified_objects"] = excess_total
    return report


def _key(g: dict) -> tuple | None:
    """What a group's bound is looked up by: ("slab", cache) or ("kmalloc", size)."""
    if g["kind"] == "slab" and g["cache"]:
        return ("slab", g["cache"])
    if g["kind"] == "kmalloc" and g["cache"]:
        size = kmalloc_size(g["cache"])
        return ("kmalloc", size) if size else None
    return None
