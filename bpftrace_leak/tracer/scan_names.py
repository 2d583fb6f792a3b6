"""What the holder scan found, named as a kernel engineer reads it: the
memmap field, the slab object (its cache and offset; sheaves' and free
slots' words stale), the named region (scan_regions.py) or the kind of
page that holds a pointer into an outstanding object.
"""

import ctypes

import numpy as np

from .. import layout
from .census import page_head
from .memory import PAGE

__all__ = ["Names"]


class Names:
    """Holders' names, for a HolderScan's kernel ``layout``, ``census``
    (its reads and freelist walks), scan offsets ``off`` and session."""

    def __init__(self, layout, census, off, session, fpu_regs: int | None = None):
        self.layout, self.census, self.off, self.session = layout, census, off, session
        self.fpu_regs = fpu_regs  # scan_plan.py: fpu_regs_offset

    _FIELDS = {"page_memcg_data": "memcg_data", "page_private": "private", "page_mapping": "mapping"}
    #: what a cache's objects are, where its name does not say it to everyone
    _KNOWN = {"tw_sock_TCP": "TIME_WAIT sockets", "tw_sock_TCPv6": "TIME_WAIT sockets",
              "request_sock_TCP": "connection requests", "request_sock_TCPv6": "connection requests",
              "filp": "open files", "buffer_head": "buffer heads", "radix_tree_node": "page cache index nodes"}

    def frame_class(self, flags, free, pfn: int) -> str:
        f = int(flags[pfn]) if pfn < len(flags) else 0
        if pfn < len(free) and free[pfn]:
            return "free"
        if f >> 12 & 1:
            return "anonymous"
        if f >> 5 & 1:
            return "page-cache"
        if f >> 7 & 1:
            return "slab"
        return "kernel"

    def memmap_label(self, word: int, flags, free) -> tuple[str, str]:
        rel = word - self.layout.vmemmap
        field_off, pfn = rel % 64, rel // 64
        field = next((name for key, name in self._FIELDS.items() if self.off.get(key) == field_off), None)
        if field is None and self.off["page_lru"] <= field_off < self.off["page_lru"] + 16:
            field = "lru"
        cls = self.frame_class(flags, free, pfn)
        what = {"memcg_data": " (memory charged to it)"}.get(field, "")
        return "memmap", (f"{cls} folios' {field}{what}" if field else f"struct page +{field_off:#x} of {cls} frames")

    def slab_objects(self, words: np.ndarray) -> tuple[np.ndarray, list, list]:
        """(object start, cache label, cache name) of the slab objects holding ``words``."""
        lay, co = self.layout, self.census.offsets
        heads: dict[int, tuple] = {}
        starts, names, caches = np.zeros(len(words), np.uint64), [], []
        for i, w in enumerate(words.tolist()):
            page = self._page(w)
            info = self.census.u64(page + co["PAGE_COMPOUND_HEAD_OFF"])
            head = page_head(page, info) if info is not None else page
            if head not in heads:
                cache = self.census.u64(head + co["SLAB_CACHE_OFF"]) or 0
                raw = self.census.peek(cache + self.off["cache_size"], 4) if cache else None
                size = int.from_bytes(raw, "little") if raw else 0
                heads[head] = (lay.direct + (head - lay.vmemmap) // 64 * PAGE, size,
                               (self.census.cache_name(cache) if cache else None) or "?")
            base, size, name = heads[head]
            starts[i] = base + (w - base) // size * size if size else w
            known = self._KNOWN.get(name)
            names.append(f"{name} objects, +{w - int(starts[i]):#x}" + (f": {known}" if known else ""))
            caches.append(name)
        return starts, names, caches

    def free_objects(self, objects: np.ndarray) -> set[int]:
        """Which of the slab ``objects`` the allocator holds free (the census's walks)."""
        query = self.session.map("scan_query")
        query.clear()
        objects = np.unique(objects)[:65536]  # more are rare; those left out count as allocated
        key = self.session.plan.addr_key  # probes/scan.h: scan_mark_free looks them up MANGLEd
        for o in objects.tolist():
            query[ctypes.c_uint64(o ^ key)] = ctypes.c_uint8(0)
        lay = self.layout
        pages = np.unique(lay.vmemmap + (objects - np.uint64(lay.direct)) // np.uint64(PAGE) * np.uint64(64))
        self.census.walk(pages)
        stale = {k.value ^ key for k, v in query.items() if v.value}
        query.clear()
        return stale

    def roots(self, words, flags, free, regions, allocated) -> tuple[list, np.ndarray]:
        """(a (kind, label) for each word of kernel memory no target owns,
        which of them are stale)."""
        lay = self.layout
        labels: list = [None] * len(words)
        stale = np.zeros(len(words), bool)
        pfn = ((words - np.uint64(lay.direct)) // np.uint64(PAGE)).astype(np.int64)
        slab_hits = []
        for i, (w, p) in enumerate(zip(words.tolist(), pfn.tolist())):
            named = regions.name(p, w % PAGE)
            if named:
                labels[i] = named
                stale[i] = regions.stale(p, w % PAGE)
            elif int(flags[p]) >> 7 & 1:
                slab_hits.append(i)
            elif int(flags[p]) >> 32 & 1:
                labels[i] = ("reserved", "reserved memory (boot-time tables)")
            elif p in regions.vmalloced:
                labels[i] = ("vmalloc", "vmalloc memory (kvmalloc'd tables, hash tables, maps)")
            else:
                labels[i] = ("page", "kernel pages (page allocator, vmalloc)")
        if slab_hits:
            starts, names, caches = self.slab_objects(words[slab_hits])
            unknown_holders = starts[~np.isin(starts, allocated)]
            free_ones = self.free_objects(unknown_holders) if len(unknown_holders) else set()
            in_sheaf = self.in_sheaf_slots(words[slab_hits], starts)
            regs = self.fpu_regs if self.fpu_regs is not None else 1 << 62
            for j, (i, start, name, cache) in enumerate(zip(slab_hits, starts.tolist(), names, caches)):
                labels[i] = ("slab", name)
                registers = cache == "task_struct" and int(words[i]) - start >= regs  # a process's, saved
                stale[i] = start in free_ones or in_sheaf[j] or registers
        return labels, stale

    def in_sheaf_slots(self, words: np.ndarray, starts: np.ndarray) -> np.ndarray:
        """Which ``words`` (each in the slab object at ``starts``) lie in a
        sheaf's objects[]: stale, whether the sheaf is a root or a target."""
        sheaves = self.sheaves(starts) if len(starts) else {}
        base = np.array([sheaves.get(s, 1 << 62) for s in starts.tolist()], np.int64)
        return (words.astype(np.int64) - starts.astype(np.int64)) >= base if len(starts) else np.zeros(0, bool)

    def sheaves(self, starts: np.ndarray) -> dict[int, int]:
        """{holder: where its objects[] start} for the slab objects among
        ``starts`` that are sheaves (6.18+; every cache's in 7.x): a
        kmalloc'd struct slab_sheaf whose cache is a kmem_cache with sheaves
        of that capacity, its size within it. Its slots point at free
        objects, and keep pointing at ones handed out since: no holder
        (found on 7.2: each planted orphan "held" by a kmalloc-512 sheaf)."""
        o = self.off.get("sheaf")
        out: dict[int, int] = {}
        if not o:
            return out
        capacities: dict[int, int] = {}  # a kmem_cache's sheaf capacity, 0: none (no sheaves, or no cache)
        caches: set[int] | None = None
        for start in np.unique(starts).tolist():
            raw = self.census.peek(start + o["sheaf_cache"], 16)
            if not raw:
                continue
            cache, size = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:12], "little")
            if cache >> 47 != 0x1FFFF:
                continue
            if caches is None:  # one of the kernel's caches, not a pointer that reads like one
                caches = self.census.kmem_caches(self._page(start))
            if cache not in capacities:
                cap = self.census.peek(cache + o["cache_sheaf_capacity"], 4) if cache in caches else None
                capacity = int.from_bytes(cap, "little") if cap else 0
                capacities[cache] = capacity if 0 < capacity <= 4096 else 0
            if 0 < capacities[cache] >= size and self._fits(start, o["sheaf_objects"] + 8 * capacities[cache]):
                out[start] = o["sheaf_objects"]
        return out

    def _page(self, va: int) -> int:
        """The struct page of direct-map address ``va``."""
        return self.layout.vmemmap + (va - self.layout.direct) // PAGE * 64

    def _fits(self, start: int, need: int) -> bool:
        """Whether the slab object at ``start`` is of a cache ``need`` bytes fit in."""
        own = self.census.kmem_cache_of(self._page(start))
        raw = self.census.peek(own + self.off["cache_size"], 4) if own else None
        return bool(raw) and int.from_bytes(raw, "little") >= need

    def stale_inside(self, words: np.ndarray, owners: np.ndarray, spaces: np.ndarray, regions) -> np.ndarray:
        """Which ``words`` inside targets (each at its target's address
        ``owners``, in ``spaces``) are stale: in a kernel stack's dead frames
        or past a kfree_rcu page's records (Regions.stale_at), or in a
        sheaf's objects[]. A sheaf kmalloc'd during the session is a target
        (7.x: a traced task's refill or kfree_rcu takes one,
        tests/unit/test_report.py), and its slots point at objects handed out
        since, as a root sheaf's do."""
        stale = regions.stale_at(words)
        slab = np.flatnonzero(spaces == layout.ENUMS["space"]["SPACE_SLAB"])
        stale[slab] |= self.in_sheaf_slots(words[slab], owners[slab].astype(np.uint64))
        return stale
