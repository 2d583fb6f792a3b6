"""The holder scan: which words of kernel memory point into each outstanding
object, kmemleak's scan without CONFIG_DEBUG_KMEMLEAK, a rebuild or
/proc/kcore. analysis/holders.py turns what it finds into verdicts.

Two passes over memory, read a batch of pages at a time (tracer/memory.py)
and matched with numpy (a word that is a kernel address, in a 2 MiB bucket
a target occupies, then a binary search among the targets' ranges):

1. the memmap, through the vmemmap: every struct page (a folio's
   memcg_data, private, mapping). It also gives the order of each free
   block of the buddy allocator, flagged on its first frame only.
2. every page frame the kernel holds, through the direct map: frames that
   are not free (buddy blocks), not user memory (LRU, anonymous, mapped
   into a process: what user space can see holds no kernel reference, and
   kleaktrace's own mmap()ed maps are left out so), not page tables, not
   kernel code or constants. That is slab pages, the kernel's data and bss
   and ro_after_init, per-CPU areas, kernel stacks, module data, vmalloc'd
   and page-allocator memory, boot-time tables (the dentry and TCP hash
   tables, memblock-allocated, which no list of "regions" would name).

A word in a slab slot the allocator holds free is stale: the census's
freelist walks tell (probes/scan.h: scan_query). What a target points at
from its own memory is an edge; anything else is a root. A scan that finds
orphans is repeated (analysis/holders.py: confirm), and an object whose
record changed meanwhile is unknown.
"""

import ctypes
import os
import time

import numpy as np

from .. import layout
from ..analysis.holders import CYCLE, ORPHANED, UNKNOWN, VERDICTS, confirm, summarize, verdicts
from ..kernel.btf import Btf, BtfError
from ..kernel.pageflags import any_of, bit, read_flags
from . import bcc
from .census import page_head
from .memory import BATCH, PAGE, BpfMemory, KcoreMemory, KernelLayout, PageTables
from .scan_regions import Regions

__all__ = ["HolderScan"]

_KERNEL = np.uint64(0xFF00000000000000)  # the kernel half of the address space
_BUCKET_BITS = 20  # 2 MiB buckets, folded modulo 2**20 (2 TiB)
_WORDS = PAGE // 8
_MAX_ORDER = 10


def possible_cpus(path: str = "/sys/devices/system/cpu/possible") -> int:
    """How many CPUs may exist ("0-3,5" is 5)."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return os.cpu_count() or 1
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return max(n, 1)


class _Ranges:
    """Sorted, disjoint [start, end) ranges, each of a target."""

    def __init__(self, start, end, owner):
        order = np.argsort(start, kind="stable")
        self.start, self.end, self.owner = start[order], end[order], owner[order]
        clash = np.flatnonzero(self.start[1:] < np.maximum.accumulate(self.end)[:-1]) + 1
        self.clashing = np.unique(self.owner[np.r_[clash, clash - 1]]) if len(clash) else np.zeros(0, np.int64)
        if len(clash):  # two objects' ranges overlap: neither can be told (never seen: a check)
            keep = ~np.isin(self.owner, self.clashing)
            self.start, self.end, self.owner = self.start[keep], self.end[keep], self.owner[keep]
        low = self.start < _KERNEL  # per-CPU pointers
        self.low = (self.start[low].min(), self.end[low].max()) if low.any() else None

    def find(self, v: np.ndarray) -> np.ndarray:
        """The owner of each value, -1 for none."""
        j = np.searchsorted(self.start, v, "right") - 1
        ok = (j >= 0) & (v < self.end[np.maximum(j, 0)])
        return np.where(ok, self.owner[np.maximum(j, 0)], -1)

    def buckets(self) -> np.ndarray:
        table = np.zeros(1 << _BUCKET_BITS, bool)
        first, last = self.start >> np.uint64(21), (self.end - np.uint64(1)) >> np.uint64(21)
        mask = np.uint64((1 << _BUCKET_BITS) - 1)
        table[(first & mask).astype(np.int64)] = True
        table[(last & mask).astype(np.int64)] = True
        for a, b in zip(first[last - first > 1].tolist(), last[last - first > 1].tolist()):
            table[[x & ((1 << _BUCKET_BITS) - 1) for x in range(a, min(b, a + (1 << _BUCKET_BITS)) + 1)]] = True
        return table


class HolderScan:
    """The holder scan of a started session.Session whose plan has ``scan``."""

    def __init__(self, session, reader, census):
        self.session, self.reader, self.census = session, reader, census
        self.off = session.plan.scan
        self.layout: KernelLayout | str | None = None
        self.tables = None
        self._bpf = None
        try:
            self.percpu_vars = Btf.load().percpu_vars()
        except BtfError:
            self.percpu_vars = {}

    def close(self) -> None:
        if self._bpf:
            self._bpf.close()

    # -- the kernel's layout, found once -------------------------------------------------

    def _find_layout(self, sample: int, pfns: int) -> str | None:
        if self.layout is None:
            calib = self.session.map("page_calib")[ctypes.c_int(0)]
            ratio = self.session.plan.census.get("ratio", 0)
            if not calib.ready:
                self.layout = "the kernel side never learned where struct pages map"
            else:
                self.layout = KernelLayout.find(self.census.peek, sample, calib.offset, ratio, pfns)
            if isinstance(self.layout, KernelLayout):
                bcc.test_run(self.session.prog_fds["scan_task"], [0])
                task = self.session.map("scan_self")[ctypes.c_int(0)].value
                mm = self.census.u64(task + self.off["task_mm"])
                pgd = self.census.u64(mm + self.off["mm_pgd"]) if mm else None
                if not pgd:
                    self.layout = "no page tables to walk (the scanning task has no mm)"
                else:
                    self.tables = PageTables(self.census.peek, self.layout.direct, pgd, self.layout.levels)
        return self.layout if isinstance(self.layout, str) else None

    def _memory(self, method: str):
        if method == "kcore":
            return KcoreMemory()
        if self._bpf is None:
            self._bpf = BpfMemory(self.session, self.census)
        return self._bpf

    # -- targets ------------------------------------------------------------------------------

    def _targets(self, addr, space, size):
        """The ranges words may point into (pointer space) and the targets'
        own memory (direct-map addresses), each owned by a target index."""
        spaces, lay = layout.ENUMS["space"], self.layout
        percpu = space == spaces["SPACE_PERCPU"]
        if percpu.any():
            # percpu_alloc_percpu's bytes_alloc counts every possible CPU's copy,
            # and for accounted memory an obj_cgroup pointer per 4 bytes too
            # (mm/percpu.c pcpu_obj_full_size): a copy is at most that over the
            # CPUs, and never reaches into the next allocation
            size = size.copy()
            idx = np.flatnonzero(percpu)
            order = idx[np.argsort(addr[idx])]
            copy = np.maximum(size[order] // np.uint64(possible_cpus()), np.uint64(1))
            gap = np.r_[addr[order][1:] - addr[order][:-1], copy[-1:]]
            size[order] = np.minimum(copy, gap)
        n = np.arange(len(addr))
        page = space == spaces["SPACE_PAGE"]
        ts, te, to, ms, me, mo = [addr], [addr + np.where(page, np.uint64(64), size)], [n], [], [], []
        slab = space == spaces["SPACE_SLAB"]
        ms += [addr[slab]]
        me += [addr[slab] + size[slab]]
        mo += [n[slab]]
        if page.any():  # a page is pointed at by its struct page (addr) and by its memory
            calib = self.session.map("page_calib")[ctypes.c_int(0)].offset
            va = (addr[page] * np.uint64(64) + np.uint64(calib))
            ts.append(va)
            te.append(va + size[page])
            to.append(n[page])
            ms.append(va)
            me.append(va + size[page])
            mo.append(n[page])
        for i in np.flatnonzero((space == spaces["SPACE_VMALLOC"]) | (space == spaces["SPACE_PERCPU"])).tolist():
            bases = [0] if space[i] == spaces["SPACE_VMALLOC"] else list(self.census.cpu_offsets().values())
            for off in bases:
                start = (int(addr[i]) + off) % (1 << 64)
                direct = lay.pfn_of(start)
                if direct is not None:
                    ms.append(np.array([start], np.uint64))
                    me.append(np.array([start + int(size[i])], np.uint64))
                    mo.append(np.array([i]))
                    continue
                end = start + int(size[i])
                vas, pfns = self.tables.pfns(start, end)  # each mapped page's part of [start, end)
                lo = np.maximum(vas, np.uint64(start)) - vas
                hi = np.minimum(vas + np.uint64(PAGE), np.uint64(end)) - vas
                ms.append(np.uint64(lay.direct) + pfns * np.uint64(PAGE) + lo)
                me.append(np.uint64(lay.direct) + pfns * np.uint64(PAGE) + hi)
                mo.append(np.full(len(pfns), i))
        cat = lambda parts, t: np.concatenate(parts).astype(t)  # noqa: E731
        return (_Ranges(cat(ts, np.uint64), cat(te, np.uint64), cat(to, np.int64)),
                _Ranges(cat(ms, np.uint64), cat(me, np.uint64), cat(mo, np.int64)))

    # -- reading and matching ---------------------------------------------------------------

    @staticmethod
    def _match(pages, bases, ok, targets: _Ranges, buckets) -> tuple[np.ndarray, np.ndarray]:
        """(address of each word that points into a target, that target).
        Kernel addresses go through the bucket table; per-CPU pointers (on
        6.18 x86-64 offsets such as 0x6079...) through the bounds of the
        targets below the kernel half."""
        good = np.flatnonzero(ok)
        w = pages[good].reshape(-1)
        kernel = w >= _KERNEL
        if targets.low is not None:
            kernel |= (w >= targets.low[0]) & (w < targets.low[1])
        at = np.flatnonzero(kernel)
        v = w[at]
        sel = (v < _KERNEL) | buckets[((v >> np.uint64(21)) & np.uint64((1 << _BUCKET_BITS) - 1)).astype(np.int64)]
        at, v = at[sel], v[sel]
        owner = targets.find(v)
        at, owner = at[owner >= 0], owner[owner >= 0]
        where = bases[good][at // _WORDS] + (at % _WORDS).astype(np.uint64) * np.uint64(8)
        return where, owner

    def _pass(self, memory, targets, buckets, page_addrs, stats, privates=None):
        """Read ``page_addrs`` and match: (word addresses, targets, page read ok)."""
        where, owner, oks = [], [], []
        for at in range(0, len(page_addrs), BATCH):
            addrs = page_addrs[at:at + BATCH]
            pages, ok = memory.read(addrs)
            oks.append(ok.copy())
            stats["pages"] += int(ok.sum())
            stats["unreadable"] += int((~ok).sum())
            if privates is not None:
                privates(addrs, pages, ok)
            w, o = self._match(pages, addrs, ok, targets, buckets)
            where.append(w)
            owner.append(o)
        cat = lambda parts, t: np.concatenate(parts).astype(t) if parts else np.zeros(0, t)  # noqa: E731
        return cat(where, np.uint64), cat(owner, np.int64), cat(oks, bool)

    @staticmethod
    def _owned(flags, counted, free) -> np.ndarray:
        """Frames the kernel owns: counted (_refcount > 0), a compound page's
        tail, or flagged as anything but a free buddy block. Left out: free
        frames on the per-CPU lists (uncounted, unflagged, full of what their
        last owner left: a dead task's stack held a lab orphan's pointer so),
        frames never handed out (on this project's host 4.8 million of 6.5
        million, present but not managed by the page allocator: 18 GB), and
        the tails of a high-order page allocation made without __GFP_COMP,
        which count on their head only: rare (tables of that size are
        vmalloc'd, or split by alloc_pages_exact into counted pages), and
        kmemleak tracks no page allocation at all."""
        owned = counted | any_of(flags, "COMPOUND_TAIL")
        owned |= (flags != 0) & ~any_of(flags, "BUDDY")
        return owned & ~free

    def _free(self, flags, orders_of) -> np.ndarray:
        """Which frames are free: each buddy block from its flagged first frame."""
        heads = np.flatnonzero(bit(flags, "BUDDY"))
        orders = orders_of[heads]
        orders = np.where(orders <= _MAX_ORDER, orders, 0).astype(np.int64)
        diff = np.zeros(len(flags) + 1, np.int8)  # free blocks never overlap: the sum is 0 or 1
        np.add.at(diff, heads, 1)
        np.add.at(diff, np.minimum(heads + (1 << orders), len(flags)), -1)
        return np.cumsum(diff, dtype=np.int8)[:len(flags)] > 0

    # -- naming what was found ------------------------------------------------------------

    _FIELDS = {"page_memcg_data": "memcg_data", "page_private": "private", "page_mapping": "mapping"}
    #: what a cache's objects are, where its name does not say it to everyone
    _KNOWN = {"tw_sock_TCP": "TIME_WAIT sockets", "tw_sock_TCPv6": "TIME_WAIT sockets",
              "request_sock_TCP": "connection requests", "request_sock_TCPv6": "connection requests",
              "filp": "open files", "buffer_head": "buffer heads", "radix_tree_node": "page cache index nodes"}

    def _frame_class(self, flags, free, pfn: int) -> str:
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

    def _memmap_label(self, word: int, flags, free) -> tuple[str, str]:
        rel = word - self.layout.vmemmap
        field_off, pfn = rel % 64, rel // 64
        field = next((name for key, name in self._FIELDS.items() if self.off.get(key) == field_off), None)
        if field is None and self.off["page_lru"] <= field_off < self.off["page_lru"] + 16:
            field = "lru"
        cls = self._frame_class(flags, free, pfn)
        what = {"memcg_data": " (memory charged to it)"}.get(field, "")
        return "memmap", (f"{cls} folios' {field}{what}" if field else f"struct page +{field_off:#x} of {cls} frames")

    def _slab_objects(self, words: np.ndarray) -> tuple[np.ndarray, list]:
        """(object start, cache label) of the slab objects holding ``words``."""
        lay, co = self.layout, self.census.offsets
        heads: dict[int, tuple] = {}
        starts, names = np.zeros(len(words), np.uint64), []
        for i, w in enumerate(words.tolist()):
            pfn = (w - lay.direct) // PAGE
            page = lay.vmemmap + pfn * 64
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
        return starts, names

    def _stale(self, objects: np.ndarray) -> set[int]:
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

    def _roots(self, words, flags, free, regions, allocated) -> tuple[list, np.ndarray]:
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
            starts, names = self._slab_objects(words[slab_hits])
            unknown_holders = starts[~np.isin(starts, allocated)]
            free_ones = self._stale(unknown_holders) if len(unknown_holders) else set()
            sheaves = self._sheaves(starts)
            for i, start, name in zip(slab_hits, starts.tolist(), names):
                labels[i] = ("slab", name)
                slot = int(words[i]) - start - sheaves.get(start, 1 << 62)
                stale[i] = start in free_ones or 0 <= slot and slot % 8 == 0
        return labels, stale

    def _sheaves(self, starts: np.ndarray) -> dict[int, int]:
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
        for start in np.unique(starts).tolist():
            raw = self.census.peek(start + o["sheaf_cache"], 16)
            if not raw:
                continue
            cache, size = int.from_bytes(raw[:8], "little"), int.from_bytes(raw[8:12], "little")
            cap = self.census.peek(cache + o["cache_sheaf_capacity"], 4) if cache >> 47 == 0x1FFFF else None
            capacity = int.from_bytes(cap, "little") if cap else 0
            if 0 < capacity <= 4096 and size <= capacity and self.census.cache_name(cache):
                out[start] = o["sheaf_objects"]
        return out

    # -- one scan --------------------------------------------------------------------------

    def _once(self, memory, addr, space, size, regions, frames, memmap_vas, allocated, describe, key):
        n = len(addr)
        targets, mem = self._targets(addr, space, size)
        buckets = targets.buckets()
        stats = {"pages": 0, "unreadable": 0}
        flags = read_flags(frames=frames)  # fresh: a pass takes seconds (tens under emulation)
        orders = np.zeros(len(flags), np.uint8)
        counted = np.zeros(len(flags), bool)  # _refcount > 0
        mapped = np.zeros(len(flags), bool)  # _mapcount >= 0: in some process's page tables
        buddy = bit(flags, "BUDDY")
        lay = self.layout
        word, ref, mapc = self.off["page_private"] // 8, self.off["page_refcount"], self.off["page_mapcount"]

        def memmap(addrs, pages, ok):
            first = ((addrs[ok] - np.uint64(lay.vmemmap)) // np.uint64(64)).astype(np.int64)
            pfn = (first[:, None] + np.arange(PAGE // 64)).reshape(-1)
            inside = pfn < len(flags)
            words = pages[ok].reshape(-1, 8)[inside]
            pfn = pfn[inside]
            refs = (words[:, ref // 8] >> np.uint64(32 * (ref % 8 // 4))) & np.uint64(0xFFFFFFFF)
            counted[pfn] = (refs != 0) & (refs < np.uint64(0x80000000))
            maps = (words[:, mapc // 8] >> np.uint64(32 * (mapc % 8 // 4))) & np.uint64(0xFFFFFFFF)
            mapped[pfn] = maps < np.uint64(0x80000000)  # -1 unmapped; page types are negative too
            sel = buddy[pfn]
            orders[pfn[sel]] = np.minimum(words[sel, word], 255).astype(np.uint8)
        w1, o1, _ = self._pass(memory, targets, buckets, memmap_vas, stats, memmap)
        free = self._free(flags, orders)
        # a slab page's struct fields overlay folio->mapping: kpageflags reads
        # its low bits as ANON (and KSM) on 6.18, for slab pages that are neither
        scan = self._owned(flags, counted, free)
        # user memory: what kpageflags says, and what the memmap just read
        # says is mapped into a process (allocated since the flags were read:
        # kleaktrace's own arrays of object addresses among them)
        scan &= ~((any_of(flags, "LRU", "ANON", "MMAP") | mapped) & ~any_of(flags, "SLAB"))
        scan &= ~any_of(flags, "NOPAGE", "OFFLINE", "HWPOISON", "PGTABLE")
        excluded = np.fromiter(regions.excluded | regions.dead, np.int64)
        scan[excluded[excluded < len(scan)]] = False
        pfns = np.flatnonzero(scan)
        w2, o2, ok2 = self._pass(memory, targets, buckets, np.uint64(lay.direct) + pfns.astype(np.uint64)
                                 * np.uint64(PAGE), stats)
        read_ok = np.zeros(len(flags), bool)
        read_ok[pfns[ok2]] = True
        src2 = mem.find(w2)
        root = src2 < 0
        root_labels, root_stale = self._roots(w2[root], flags, free, regions, allocated)
        labels, index = [], {}

        def label(kind_text):
            if kind_text not in index:
                index[kind_text] = len(labels)
                labels.append(kind_text)
            return index[kind_text]
        hit_label = np.zeros(len(o1) + len(o2), np.int64)
        for i, w in enumerate(w1.tolist()):
            hit_label[i] = label(self._memmap_label(w, flags, free))
        lab2 = np.zeros(len(o2), np.int64)
        lab2[root] = [label(x) for x in root_labels]
        for i in np.flatnonzero(~root).tolist():
            lab2[i] = label(("outstanding", f"outstanding {describe[key[src2[i]]]}"))
        hit_label[len(o1):] = lab2
        stale = np.zeros(len(o1) + len(o2), bool)
        stale[len(o1):][root] = root_stale
        target = np.concatenate([o1, o2])
        source = np.concatenate([np.full(len(o1), -1), src2])
        unknown = np.zeros(n, bool)
        unknown[targets.clashing] = True
        unknown[mem.clashing] = True
        mpfn = ((mem.start - np.uint64(lay.direct)) // np.uint64(PAGE)).astype(np.int64)
        inside = (mpfn >= 0) & (mpfn < len(flags))
        unknown[mem.owner[inside][~read_ok[mpfn[inside]]]] = True
        verdict = verdicts(n, target, source, stale, unknown)
        keep = ~stale & (source != target)
        pairs = np.unique(np.stack([target[keep], hit_label[keep]]), axis=1) if keep.any() \
            else np.zeros((2, 0), np.int64)
        stats["stale_words"] = int(stale.sum())
        return verdict, pairs, labels, stats

    # -- the scan a report asks for ------------------------------------------------------------

    def run(self, recs: dict, describe: list[str], allocated: np.ndarray, current) -> dict:
        """Scan for the targets ``recs`` (numpy arrays: addr, space, size, ts,
        key: an index into ``describe``, the label of each key's group);
        ``allocated``: every recorded object's address (allocated, whatever
        its age); ``current()`` returns (addr, ts) of the records after the
        scan. Returns {"verdict", "pairs", "labels", "section"}, or
        {"section"} alone with "skipped" when the scan cannot run here."""
        t0 = time.monotonic()
        n = len(recs["addr"])
        try:
            frames = len(read_flags())  # each pass reads them afresh (_once)
        except OSError as e:
            return {"section": {"skipped": f"cannot read /proc/kpageflags: {e.strerror}"}}
        slab = recs["addr"][recs["space"] == layout.ENUMS["space"]["SPACE_SLAB"]]
        sample = int(slab[0]) if len(slab) else int(allocated[0]) if len(allocated) else 0
        why = self._find_layout(sample, frames) if sample else "no slab object recorded to find the direct map by"
        if why:
            return {"section": {"skipped": why}}
        self.census.cpu_offsets()
        regions = Regions(self.layout, self.tables, self.census.peek, self.off, self.percpu_vars,
                          self.census.cpu_bases())
        regions.stacks(self._stacks())
        memmap_vas, _ = regions.memmap()
        regions.vmalloc()
        regions.dead_stacks(a for a in (self.census.stack_address(vm) for vm in self.census.stack_cache()) if a)
        methods = ["bpf", "kcore"] if self.off["via"] == "both" else [self.off["via"]]
        results = {}
        for method in methods:
            try:
                memory = self._memory(method)
            except OSError as e:
                return {"section": {"skipped": f"cannot read kernel memory through {method}: {e}"}}
            # kleaktrace's mmap()ed maps hold object addresses as they are (the
            # slot arrays: every object): their frames are not the kernel's holders
            regions.excluded.update(self.session.view_frames())
            results[method] = self._twice(memory, recs, regions, frames, memmap_vas, allocated, describe)
            if method == "kcore":
                memory.close()
        verdict, pairs, labels, stats = results[methods[0]]
        now_addr, now_ts = current()
        gone = ~np.isin(recs["addr"] ^ (recs["ts"] * np.uint64(0x9E3779B97F4A7C15)),
                        now_addr ^ (now_ts * np.uint64(0x9E3779B97F4A7C15)))
        verdict[gone] = UNKNOWN  # freed or reused while scanned
        counts = np.bincount(verdict, minlength=len(VERDICTS))
        section = {"method": methods[0] if len(methods) == 1 else "both", "targets": n,
                   "seconds": round(time.monotonic() - t0, 3), "pages": stats["pages"],
                   "bytes": stats["pages"] * PAGE, "unreadable_pages": stats["unreadable"],
                   "passes": stats["passes"], "stale_words": stats["stale_words"],
                   "phantoms": stats.get("phantoms", 0),
                   **{name: int(counts[i]) for i, name in enumerate(VERDICTS)}}
        other = None
        if len(methods) == 2:
            other = results["kcore"][0]
            other[gone] = UNKNOWN
            section["kcore"] = {name: int(c) for name, c in zip(VERDICTS, np.bincount(other, minlength=4))}
            section["differ"] = int((other != verdict).sum())
        return {"verdict": verdict, "pairs": pairs, "labels": labels, "section": section, "other": other}

    def _twice(self, memory, recs, regions, frames, memmap_vas, allocated, describe):
        """One scan, and a second of the orphans it found: only what both call
        orphaned (or in an orphan cycle) is."""
        args = (regions, frames, memmap_vas, allocated, describe)
        verdict, pairs, labels, stats = self._once(memory, recs["addr"], recs["space"], recs["size"], *args,
                                                   recs["key"])
        stats["passes"] = 1
        again = np.flatnonzero((verdict == ORPHANED) | (verdict == CYCLE))
        # an object freed without an event (bulk frees, kfree_rcu batches,
        # 6.18's sheaves) is in no one's memory any more: a phantom, not an
        # orphan. The census's walks of its slab's free lists find it there
        # (and retire its record); counted as unknown.
        slab = again[recs["space"][again] == layout.ENUMS["space"]["SPACE_SLAB"]]
        if len(slab):
            freed = np.fromiter(self._stale(recs["addr"][slab]), np.uint64)
            phantom = slab[np.isin(recs["addr"][slab], freed)]
            verdict[phantom] = UNKNOWN
            stats["phantoms"] = len(phantom)
            again = again[~np.isin(again, phantom)]
        if len(again):
            regions.stacks(self._stacks())  # the stack pointers of now
            v2, p2, l2, s2 = self._once(memory, recs["addr"][again], recs["space"][again], recs["size"][again],
                                        *args, recs["key"][again])
            verdict = confirm(verdict, again, v2)
            # the held ones found by the second scan take its holders
            relabel = np.array([len(labels) + i for i in range(len(l2))], np.int64)
            labels = labels + l2
            held2 = p2[:, np.isin(p2[0], np.flatnonzero(v2 == 0))]
            pairs = np.concatenate([pairs, np.stack([again[held2[0]], relabel[held2[1]]])], axis=1) \
                if held2.size else pairs
            stats["passes"] = 2
            stats["pages"] += s2["pages"]
            stats["unreadable"] += s2["unreadable"]
        return verdict, pairs, labels, stats

    def _stacks(self) -> list[tuple[int, int, int, int]]:
        """(stack, task, tgid, saved stack pointer or 0) of every task, from the task iterator."""
        from .pins import PIN_HOLDER
        fd = self.session.prog_fds.get("bpf_iter__task")
        if fd is None:
            return []
        data = bcc.iterate(fd)
        rows = np.frombuffer(data, PIN_HOLDER, count=len(data) // PIN_HOLDER.itemsize)
        rows = rows[rows["kind"] == layout.ENUMS["pin_kind"]["PIN_STACK"]]
        return list(zip(rows["holder"].tolist(), rows["dentry"].tolist(), rows["tgid"].tolist(),
                        rows["mnt"].tolist()))
