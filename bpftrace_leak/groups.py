"""Aging and grouping of outstanding allocations (pure logic, no BPF).

Like kmemleak's MSECS_MIN_AGE, an allocation younger than the minimum age is
not reported: most are in flight and about to be freed. Older ones are
grouped by (kind, cache, kernel stack).
"""

import fnmatch
from dataclasses import dataclass, field

__all__ = ["Obj", "Group", "age_and_group", "kmalloc_cache_name", "filter_caches"]


@dataclass(frozen=True)
class Obj:
    """Outstanding allocations alike in all but age, as read from the ``live`` map.

    ``ts_ns`` is the oldest one's allocation time; ``site_stack`` says their
    stack was not taken: ``stack_id`` is the first one seen at their call site.
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


@dataclass
class Group:
    kind: str
    cache: str | None
    stack_key: tuple  # ("id", stack_id) or ("site", call_site) when the stack was lost
    objects: int = 0
    bytes: int = 0
    site_stack_objects: int = 0  # objects shown with their call site's first stack
    oldest_ns: int = 0  # age of the oldest object
    pids: set = field(default_factory=set)
    comms: set = field(default_factory=set)
    stack: list = field(default_factory=list)  # filled by symbolization

    def add(self, obj: Obj, age_ns: int) -> None:
        self.objects += obj.count
        self.bytes += obj.bytes * obj.count
        if obj.site_stack:
            self.site_stack_objects += obj.count
        self.oldest_ns = max(self.oldest_ns, age_ns)
        self.pids.add(obj.tgid)
        self.comms.add(obj.comm)

    def merge(self, other: "Group") -> None:
        self.objects += other.objects
        self.bytes += other.bytes
        self.site_stack_objects += other.site_stack_objects
        self.oldest_ns = max(self.oldest_ns, other.oldest_ns)
        self.pids |= other.pids
        self.comms |= other.comms


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


def age_and_group(objs, now_ns: int, min_age_ns: int) -> list[Group]:
    """Group objects at least ``min_age_ns`` old at ``now_ns`` (both CLOCK_MONOTONIC)."""
    groups: dict[tuple, Group] = {}
    for obj in objs:
        age = now_ns - obj.ts_ns
        if age < min_age_ns:
            continue
        skey = ("id", obj.stack_id) if obj.stack_id >= 0 else ("site", obj.call_site)
        key = (obj.kind, obj.cache, skey)
        g = groups.get(key)
        if g is None:
            g = groups[key] = Group(obj.kind, obj.cache, skey)
        g.add(obj, age)
    return list(groups.values())


def filter_caches(groups: list[Group], pattern: str | None, aliases: dict[str, set[str]] | None = None):
    """Keep groups whose cache, or one of its merged aliases, matches glob ``pattern``."""
    if not pattern:
        return groups
    aliases = aliases or {}
    out = []
    for g in groups:
        if g.cache is None:
            continue
        names = aliases.get(g.cache, set()) | {g.cache}
        if any(fnmatch.fnmatchcase(n, pattern) for n in names):
            out.append(g)
    return out
