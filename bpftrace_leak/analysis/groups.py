"""Aging and grouping of outstanding allocations, and the operations on groups
that live and offline reports share (pure logic, no BPF).

Like kmemleak's MSECS_MIN_AGE, an allocation younger than the minimum age is
not reported: most are in flight and about to be freed. Older ones are
grouped by (kind, cache, kernel stack).

A group has two forms: ``Group``, the accumulator while objects are counted
(live sessions only), and the report's group, a dict (schema.py lists its
fields), which is what live and offline reports select, merge, sort and
render: select(), cull() and sort_groups() work on it, for both.
"""

import fnmatch
from dataclasses import dataclass, field

__all__ = ["Obj", "Group", "age_and_group", "kmalloc_cache_name", "select", "cull", "sort_groups", "SORT_KEYS",
           "by_cgroup"]


@dataclass(frozen=True)
class Obj:
    """Outstanding allocations alike in all but age, as read from the kernel.

    ``ts_ns`` is the oldest one's allocation time; ``site_stack`` says their
    stack was not taken: ``stack_id`` is the first one seen at their call
    site (its first in the same syscall); ``cache_ptr`` is the struct
    kmem_cache of slab objects (0 else).
    """

    kind: str
    cache: str | None
    bytes: int
    ts_ns: int
    tgid: int
    comm: str
    stack_id: int
    call_site: int
    count: int = 1
    site_stack: bool = False
    cache_ptr: int = 0
    syscall: int = 0  # the allocating task's syscall number (tells call paths apart)
    cgroup: int = 0  # the allocating task's cgroup, a kernfs id (0: not recorded)
    key: bytes = b""  # the records' group bytes (tracer/livemap.py): the holder scan's verdicts are by them
    kept: int = 0  # records behind ``count`` (fewer when sampled)


@dataclass
class Group:
    kind: str
    cache: str | None
    stack_key: tuple  # ("id", stack_id) or ("site", call_site) when the stack was lost
    cgroup: int = 0
    objects: int = 0
    bytes: int = 0
    site_stack_objects: int = 0  # objects shown with their call site's first stack
    oldest_ns: int = 0  # age of the oldest object
    pids: set = field(default_factory=set)
    comms: set = field(default_factory=set)
    stack: list = field(default_factory=list)  # filled by symbolization
    keys: dict = field(default_factory=dict)  # Obj.key -> (objects it stands for, records behind them)
    cgroups: dict = field(default_factory=dict)  # kernfs id -> [objects, bytes] (analysis/cgroups.py)

    def add(self, obj: Obj, age_ns: int) -> None:
        self.objects += obj.count
        self.bytes += obj.bytes * obj.count
        if obj.site_stack:
            self.site_stack_objects += obj.count
        self.oldest_ns = max(self.oldest_ns, age_ns)
        self.pids.add(obj.tgid)
        self.comms.add(obj.comm)
        if obj.key:
            self.keys[obj.key] = (obj.count, obj.kept or obj.count)
        row = self.cgroups.setdefault(obj.cgroup, [0, 0])
        row[0] += obj.count
        row[1] += obj.bytes * obj.count

    def merge(self, other: "Group") -> None:
        self.objects += other.objects
        self.bytes += other.bytes
        self.site_stack_objects += other.site_stack_objects
        self.oldest_ns = max(self.oldest_ns, other.oldest_ns)
        self.pids |= other.pids
        self.comms |= other.comms
        self.keys.update(other.keys)
        for cid, (n, b) in other.cgroups.items():
            row = self.cgroups.setdefault(cid, [0, 0])
            row[0] += n
            row[1] += b


# KMALLOC_MAX_CACHE_SIZE is two pages on SLUB; larger kmallocs come from the
# page allocator and have no cache.
_KMALLOC_MAX_CACHE = 8192


def kmalloc_cache_name(bytes_alloc: int) -> str | None:
    """The generic cache a kmalloc of ``bytes_alloc`` came from (kmalloc-N), or None.

    The kmalloc tracepoint names no cache; its bytes_alloc is the cache's
    object size. Random (kmalloc-rnd-NN-*) and accounted (kmalloc-cg-*) copies
    of the caches cannot be told apart from it.
    """
    return f"kmalloc-{bytes_alloc}" if 0 < bytes_alloc <= _KMALLOC_MAX_CACHE else None


def age_and_group(objs, now_ns: int, min_age_ns: int, by_cgroup: bool = False) -> list[Group]:
    """Group objects at least ``min_age_ns`` old at ``now_ns`` (both
    CLOCK_MONOTONIC) by kind, cache and stack; and by cgroup with ``by_cgroup``
    (--split cgroup): a group lists its cgroups either way (Group.cgroups)."""
    groups: dict[tuple, Group] = {}
    for obj in objs:
        age = now_ns - obj.ts_ns
        if age < min_age_ns:
            continue
        skey = ("id", obj.stack_id) if obj.stack_id >= 0 else ("site", obj.call_site)
        cgroup = obj.cgroup if by_cgroup else 0
        key = (obj.kind, obj.cache, skey, cgroup)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(obj.kind, obj.cache, skey, cgroup)
        g.add(obj, age)
    return list(groups.values())


# -- the report's groups (dicts), live and offline ---------------------------------

def _cache_matches(g: dict, pattern: str) -> bool:
    """Glob ``pattern`` names the group's cache or one of its merged aliases."""
    return bool(g["cache"]) and any(fnmatch.fnmatchcase(n, pattern)
                                    for n in [g["cache"], *g.get("cache_aliases", [])])


def by_cgroup(groups: list[dict]) -> list[dict]:
    """Per cgroup: [{"cgroup", "container", "removed", "objects", "bytes",
    "kinds": {kind: objects}}], most bytes first (groups without one: cgroup null)."""
    rows: dict = {}
    for g in groups:
        parts = g.get("cgroups") if g.get("cgroups") and g.get("cgroup") is None else \
            [{"path": g.get("cgroup"), "container": g.get("container"), "removed": g.get("cgroup_removed", False),
              "objects": g["objects"], "bytes": g["bytes"]}]
        for p in parts:
            row = rows.setdefault(p["path"], {"cgroup": p["path"], "container": p.get("container"),
                                              "removed": p.get("removed", False), "objects": 0, "bytes": 0,
                                              "kinds": {}})
            row["objects"] += p["objects"]
            row["bytes"] += p["bytes"]
            row["kinds"][g["kind"]] = row["kinds"].get(g["kind"], 0) + p["objects"]
    return sorted(rows.values(), key=lambda r: (-r["bytes"], r["cgroup"] or ""))


def select(groups: list[dict], pid=None, comm=None, cache=None, cgroup=None) -> list[dict]:
    """The groups with process ``pid``, command ``comm``, a cache matching
    glob ``cache``, and a cgroup path matching glob ``cgroup``."""
    out = groups
    if cgroup is not None:
        out = [g for g in out if any(p and fnmatch.fnmatchcase(p, cgroup)
                                     for p in [g.get("cgroup")] + [r.get("path") for r in g.get("cgroups") or []])]
    if pid is not None:
        out = [g for g in out if pid in g["pids"]]
    if comm is not None:
        out = [g for g in out if comm in g["comms"]]
    if cache is not None:
        out = [g for g in out if _cache_matches(g, cache)]
    return out


def cull(groups: list[dict], by: str) -> list[dict]:
    """Merge groups by ``by``: "stack" (as recorded) or "cache" (kind and cache);
    a merged group shows the stack of its largest member."""
    if by == "stack":
        return groups
    merged: dict[tuple, dict] = {}
    for g in sorted(groups, key=lambda g: -g["bytes"]):
        key = (g["kind"], g["cache"], g.get("cgroup"))
        m = merged.get(key)
        if m is None:
            merged[key] = dict(g, pids=list(g["pids"]), comms=list(g["comms"]))
            continue
        for k in ("objects", "bytes", "objects_per_h", "bytes_per_h", "site_stack_objects"):
            if k in g:
                m[k] = m.get(k, 0) + g[k]
        m["oldest_ms"] = max(m["oldest_ms"], g["oldest_ms"])
        m["pids"] = sorted(set(m["pids"]) | set(g["pids"]))
        m["comms"] = sorted(set(m["comms"]) | set(g["comms"]))
    return sorted(merged.values(), key=lambda g: -g["bytes"])


SORT_KEYS = {
    "bytes": lambda g: (-g["bytes"], -g["objects"], g["kind"], g["cache"] or ""),
    "objects": lambda g: -g["objects"],
    "growth": lambda g: -g.get("bytes_per_h", 0),
    "pid": lambda g: min(g["pids"] or [0]),
    "comm": lambda g: min(g["comms"] or [""]),
    "cache": lambda g: g["cache"] or "",
}


def sort_groups(groups: list[dict], key: str = "bytes") -> list[dict]:
    return sorted(groups, key=SORT_KEYS[key])
