"""The holder scan's reading and matching (tracer/scan.py drives it): the
ranges of the targets, the words of a batch of pages that point into them,
and which page frames the kernel owns or holds free.
"""

import os

import numpy as np

from .. import layout
from ..kernel.pageflags import any_of, bit
from .memory import BATCH, PAGE

__all__ = ["Ranges", "target_ranges", "match", "read_pass", "owned", "kernel_frames", "free_frames", "possible_cpus",
           "unique_pairs", "KERNEL"]

KERNEL = np.uint64(0xFF00000000000000)  # the kernel half of the address space
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


class Ranges:
    """Sorted, disjoint [start, end) ranges, each of a target."""

    def __init__(self, start, end, owner):
        order = np.argsort(start, kind="stable")
        self.start, self.end, self.owner = start[order], end[order], owner[order]
        clash = np.flatnonzero(self.start[1:] < np.maximum.accumulate(self.end)[:-1]) + 1
        self.clashing = np.unique(self.owner[np.r_[clash, clash - 1]]) if len(clash) else np.zeros(0, np.int64)
        if len(clash):  # two objects' ranges overlap: neither can be told (never seen: a check)
            keep = ~np.isin(self.owner, self.clashing)
            self.start, self.end, self.owner = self.start[keep], self.end[keep], self.owner[keep]
        low = self.start < KERNEL  # per-CPU pointers
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


def target_ranges(addr, space, size, lay, tables, calib: int, cpu_offsets) -> tuple["Ranges", "Ranges"]:
    """The ranges words may point into (pointer space) and the targets'
    own memory (direct-map addresses), each owned by a target index.
    ``calib``: where struct page 0 maps (probes: page_calib);
    ``cpu_offsets()``: {cpu: its per-CPU offset}."""
    spaces = layout.ENUMS["space"]
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
        va = (addr[page] * np.uint64(64) + np.uint64(calib))
        ts.append(va)
        te.append(va + size[page])
        to.append(n[page])
        ms.append(va)
        me.append(va + size[page])
        mo.append(n[page])
    for i in np.flatnonzero((space == spaces["SPACE_VMALLOC"]) | (space == spaces["SPACE_PERCPU"])).tolist():
        bases = [0] if space[i] == spaces["SPACE_VMALLOC"] else list(cpu_offsets().values())
        for off in bases:
            start = (int(addr[i]) + off) % (1 << 64)
            direct = lay.pfn_of(start)
            if direct is not None:
                ms.append(np.array([start], np.uint64))
                me.append(np.array([start + int(size[i])], np.uint64))
                mo.append(np.array([i]))
                continue
            end = start + int(size[i])
            vas, pfns = tables.pfns(start, end)  # each mapped page's part of [start, end)
            lo = np.maximum(vas, np.uint64(start)) - vas
            hi = np.minimum(vas + np.uint64(PAGE), np.uint64(end)) - vas
            ms.append(np.uint64(lay.direct) + pfns * np.uint64(PAGE) + lo)
            me.append(np.uint64(lay.direct) + pfns * np.uint64(PAGE) + hi)
            mo.append(np.full(len(pfns), i))
    cat = lambda parts, t: np.concatenate(parts).astype(t)  # noqa: E731
    return (Ranges(cat(ts, np.uint64), cat(te, np.uint64), cat(to, np.int64)),
            Ranges(cat(ms, np.uint64), cat(me, np.uint64), cat(mo, np.int64)))


def match(pages, bases, ok, targets: "Ranges", buckets) -> tuple[np.ndarray, np.ndarray]:
    """(address of each word that points into a target, that target).
    Kernel addresses go through the bucket table; per-CPU pointers (on
    6.18 x86-64 offsets such as 0x6079...) through the bounds of the
    targets below the kernel half."""
    good = np.flatnonzero(ok)
    w = pages[good].reshape(-1)
    kernel = w >= KERNEL
    if targets.low is not None:
        kernel |= (w >= targets.low[0]) & (w < targets.low[1])
    at = np.flatnonzero(kernel)
    v = w[at]
    sel = (v < KERNEL) | buckets[((v >> np.uint64(21)) & np.uint64((1 << _BUCKET_BITS) - 1)).astype(np.int64)]
    at, v = at[sel], v[sel]
    owner = targets.find(v)
    at, owner = at[owner >= 0], owner[owner >= 0]
    where = bases[good][at // _WORDS] + (at % _WORDS).astype(np.uint64) * np.uint64(8)
    return where, owner

def read_pass(memory, targets, buckets, page_addrs, stats, privates=None):
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
        w, o = match(pages, addrs, ok, targets, buckets)
        where.append(w)
        owner.append(o)
    cat = lambda parts, t: np.concatenate(parts).astype(t) if parts else np.zeros(0, t)  # noqa: E731
    return cat(where, np.uint64), cat(owner, np.int64), cat(oks, bool)


def kernel_frames(flags, free, counted, mapped, excluded: set) -> np.ndarray:
    """Pass 2's frames: the kernel's own (owned, below), not user memory
    (what kpageflags says, and what the memmap just read says is mapped
    into a process: allocated since the flags were read, kleaktrace's own
    arrays of object addresses among them), not page tables, not
    ``excluded`` (the regions left out: code, constants, the memmap, dead
    stacks and frames)."""
    scan = owned(flags, counted, free)
    # a slab page's struct fields overlay folio->mapping: kpageflags reads
    # its low bits as ANON (and KSM) on 6.18, for slab pages that are neither
    scan &= ~((any_of(flags, "LRU", "ANON", "MMAP") | mapped) & ~any_of(flags, "SLAB"))
    scan &= ~any_of(flags, "NOPAGE", "OFFLINE", "HWPOISON", "PGTABLE")
    left_out = np.fromiter(excluded, np.int64)
    scan[left_out[left_out < len(scan)]] = False
    return np.flatnonzero(scan)


def owned(flags, counted, free) -> np.ndarray:
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

def free_frames(flags, orders_of) -> np.ndarray:
    """Which frames are free: each buddy block from its flagged first frame."""
    heads = np.flatnonzero(bit(flags, "BUDDY"))
    orders = orders_of[heads]
    orders = np.where(orders <= _MAX_ORDER, orders, 0).astype(np.int64)
    # free blocks never overlap: the sum is 0 or 1, or 2 where 6.18 flags a
    # block's other frames too (each then a block of order 0: kernel/pageflags.py)
    diff = np.zeros(len(flags) + 1, np.int8)
    np.add.at(diff, heads, 1)
    np.add.at(diff, np.minimum(heads + (1 << orders), len(flags)), -1)
    return np.cumsum(diff, dtype=np.int8)[:len(flags)] > 0


def unique_pairs(targets: np.ndarray, labels: np.ndarray, nlabels: int) -> np.ndarray:
    """The distinct (target, label) pairs, a (2, n) int64 array sorted by
    target: one int64 key each, sorted flat. np.unique(axis=1) sorts them
    as void records, 13x slower (5 M pairs: 6.6 s against 0.5 s): a serve
    scan in CI sat minutes in it, 5.4 GB, past its limit and its signals."""
    width = max(nlabels, 1)
    key = np.unique(targets.astype(np.int64) * width + labels.astype(np.int64))
    return np.stack([key // width, key % width])
