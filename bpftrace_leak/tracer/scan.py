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

A word in a slab slot the allocator holds free is stale (the census's
freelist walks: probes/scan.h). A target's word is an edge, any other a
root. A scan that finds orphans is repeated (analysis/holders.py: confirm),
an object whose record changed meanwhile is unknown."""

import ctypes
import os
import time

import numpy as np

from .. import layout
from ..analysis.holders import CYCLE, ORPHANED, UNKNOWN, VERDICTS, confirm, verdicts
from ..kernel.btf import Btf, BtfError
from ..kernel.pageflags import bit, read_flags
from . import bcc
from .memory import PAGE, BpfMemory, KcoreMemory, KernelLayout, PageTables
from .scan_match import free_frames, kernel_frames, read_pass, target_ranges, unique_pairs
from .scan_names import Names
from .scan_plan import fpu_regs_offset
from .scan_regions import Regions
from .scan_watch import Stopped, Watch, Watched

__all__ = ["HolderScan"]


class HolderScan:
    """The holder scan of a started session.Session whose plan has ``scan``."""

    def __init__(self, session, reader, census):
        self.session, self.reader, self.census = session, reader, census
        self.off = session.plan.scan
        self.layout: KernelLayout | str | None = None
        self.tables = self.names = None
        self._bpf = None
        self._watch = Watch()
        try:
            btf = Btf.load()
            self.percpu_vars, self.fpu_regs = btf.percpu_vars(), fpu_regs_offset(btf)
        except BtfError:
            self.percpu_vars, self.fpu_regs = {}, None

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
                    self.names = Names(self.layout, self.census, self.off, self.session, self.fpu_regs)
        return self.layout if isinstance(self.layout, str) else None

    def _memory(self, method: str):
        if method == "kcore":
            return KcoreMemory()
        if self._bpf is None:
            self._bpf = BpfMemory(self.session, self.census)
        return self._bpf

    # -- one scan --------------------------------------------------------------------------

    def _memmap_pass(self, memory, targets, buckets, memmap_vas, frames, stats):
        """Pass 1, the memmap: (word addresses, targets) of its hits, and
        per frame its flags (read afresh: a pass takes seconds, tens under
        emulation), whether it is free, counted (_refcount > 0) and mapped
        (_mapcount >= 0: in some process's page tables)."""
        flags = read_flags(frames=frames, between=self._watch.check)
        orders = np.zeros(len(flags), np.uint8)
        counted = np.zeros(len(flags), bool)
        mapped = np.zeros(len(flags), bool)
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
        w1, o1, _ = read_pass(memory, targets, buckets, memmap_vas, stats, memmap)
        return w1, o1, flags, free_frames(flags, orders), counted, mapped

    def _once(self, memory, addr, space, size, regions, frames, memmap_vas, allocated, describe, key):
        n, lay = len(addr), self.layout
        calib = self.session.map("page_calib")[ctypes.c_int(0)].offset
        targets, mem = target_ranges(addr, space, size, lay, self.tables, calib, self.census.cpu_offsets)
        buckets = targets.buckets()
        stats = {"pages": 0, "unreadable": 0}
        w1, o1, flags, free, counted, mapped = self._memmap_pass(memory, targets, buckets, memmap_vas, frames, stats)
        pfns = kernel_frames(flags, free, counted, mapped, regions.excluded | regions.dead)
        w2, o2, ok2 = read_pass(memory, targets, buckets, np.uint64(lay.direct) + pfns.astype(np.uint64)
                                * np.uint64(PAGE), stats)
        read_ok = np.zeros(len(flags), bool)
        read_ok[pfns[ok2]] = True
        src2 = mem.find(w2)
        root = src2 < 0
        self._watch.check()  # each step below is a pass over every hit: a slow host's limit holds
        root_labels, root_stale = self.names.roots(w2[root], flags, free, regions, allocated)
        labels, index = [], {}

        def label(kind_text):
            if kind_text not in index:
                index[kind_text] = len(labels)
                labels.append(kind_text)
            return index[kind_text]
        hit_label = np.zeros(len(o1) + len(o2), np.int64)
        for i, w in enumerate(w1.tolist()):
            hit_label[i] = label(self.names.memmap_label(w, flags, free))
        lab2 = np.zeros(len(o2), np.int64)
        lab2[root] = [label(x) for x in root_labels]
        for i in np.flatnonzero(~root).tolist():
            lab2[i] = label(("outstanding", f"outstanding {describe[key[src2[i]]]}"))
        hit_label[len(o1):] = lab2
        stale = np.zeros(len(o1) + len(o2), bool)
        stale[len(o1):][root] = root_stale
        stale[len(o1):][~root] = self.names.stale_inside(w2[~root], addr[src2[~root]], space[src2[~root]], regions)
        target = np.concatenate([o1, o2])
        source = np.concatenate([np.full(len(o1), -1), src2])
        unknown = np.zeros(n, bool)
        unknown[targets.clashing] = True
        unknown[mem.clashing] = True
        mpfn = ((mem.start - np.uint64(lay.direct)) // np.uint64(PAGE)).astype(np.int64)
        inside = (mpfn >= 0) & (mpfn < len(flags))
        unknown[mem.owner[inside][~read_ok[mpfn[inside]]]] = True
        self._watch.check()
        verdict = verdicts(n, target, source, stale, unknown)
        keep = ~stale & (source != target)
        pairs = unique_pairs(target[keep], hit_label[keep], len(labels))
        stats["stale_words"] = int(stale.sum())
        return verdict, pairs, labels, stats

    def _unready(self, recs: dict, everything: dict, frames: int) -> str | None:
        """Why no scan can run, or None (the layout found)."""
        if self.off["via"] != "bpf" and not os.path.exists("/proc/kcore"):
            return "--scan-via kcore: this kernel has no /proc/kcore"
        # a slab object is in the direct map, a percpu or vmalloc one is not
        # (with one as the sample no base is found: seen once on CI)
        slab_space = layout.ENUMS["space"]["SPACE_SLAB"]
        slab = np.concatenate([recs["addr"][recs["space"] == slab_space],
                               everything["addr"][everything["space"] == slab_space]])
        return self._find_layout(int(slab[0]), frames) if len(slab) else \
            "no slab object recorded to find the direct map by"

    # -- the scan a report asks for ------------------------------------------------------------

    def _regions(self, flags) -> Regions:
        """What the frames a scan reads are, named afresh (page tables,
        stacks: Regions.restack; a session scans every 10 minutes under serve)."""
        self.census.cpu_offsets()
        regions = Regions(self.layout, self.tables, self.census.peek, self.off, self.percpu_vars,
                          self.census.cpu_bases(), flags)
        regions.restack(self.session, self.census)
        regions.vmalloc()
        return regions

    def run(self, recs: dict, describe: list[str], everything: dict, current, stop=None) -> dict:
        """run_once (below) that stops when ``stop()`` says so or past
        its limit (--scan-limit): then {"section": {"skipped": why}}, the verdicts unknown."""
        self._watch = Watch(stop, self.off["limit_s"])
        try:
            return self.run_once(recs, describe, everything, current)
        except Stopped as e:
            return {"section": {"skipped": str(e), "seconds": round(time.monotonic() - self._watch.began, 3)}}

    def run_once(self, recs: dict, describe: list[str], everything: dict, current) -> dict:
        """Scan for the targets ``recs`` (numpy arrays: addr, space, size, ts, key: an index
        into ``describe``, the label of each key's group, unprovable: no orphan verdict, see
        tracer/collect.py); ``everything``: every record (addr, space), whatever its age;
        ``current()``: (addr, ts) of the records after the scan. Returns {"verdict", "pairs",
        "labels", "section"}, or {"section"} alone with "skipped" when the scan cannot run."""
        t0 = time.monotonic()
        n = len(recs["addr"])
        try:
            flags = read_flags(between=self._watch.check)  # each pass reads them afresh (_once)
        except OSError as e:
            return {"section": {"skipped": f"cannot read /proc/kpageflags: {e.strerror}"}}
        frames = len(flags)
        why = self._unready(recs, everything, frames)
        if why:
            return {"section": {"skipped": why}}
        regions = self._regions(flags)
        del flags  # 8 bytes a frame: each pass reads its own
        memmap_vas, _ = regions.memmap()
        methods = ["bpf", "kcore"] if self.off["via"] == "both" else [self.off["via"]]
        results = {}
        for method in methods:
            try:
                memory = Watched(self._memory(method), self._watch)
            except OSError as e:
                return {"section": {"skipped": f"cannot read kernel memory through {method}: {e}"}}
            # kleaktrace's mmap()ed maps hold object addresses as they are (the
            # slot arrays: every object): their frames are not the kernel's holders
            regions.excluded.update(self.session.view_frames())
            if results:  # the first method's passes took a while
                regions.restack(self.session, self.census)
            try:
                results[method] = self._twice(memory, recs, regions, frames, memmap_vas, everything["addr"], describe)
            finally:
                if method == "kcore":
                    memory.memory.close()
        verdict, pairs, labels, stats = results[methods[0]]
        now_addr, now_ts = current()
        gone = ~np.isin(recs["addr"] ^ (recs["ts"] * np.uint64(0x9E3779B97F4A7C15)),
                        now_addr ^ (now_ts * np.uint64(0x9E3779B97F4A7C15)))
        # unknown: freed or reused while scanned; orphans the scan cannot
        # prove (tracer/collect.py: pages, phantoms); for each method's verdicts
        for v in [r[0] for r in results.values()]:
            v[gone | (recs["unprovable"] & ((v == ORPHANED) | (v == CYCLE)))] = UNKNOWN
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
            freed = np.fromiter(self.names.free_objects(recs["addr"][slab]), np.uint64)
            phantom = slab[np.isin(recs["addr"][slab], freed)]
            verdict[phantom] = UNKNOWN
            stats["phantoms"] = len(phantom)
            again = again[~np.isin(again, phantom)]
        if len(again):
            regions.restack(self.session, self.census)  # the stacks and stack pointers of now
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
