"""Everything a report reads from the kernel, in one step: collect().

For one report of a live session: the idle CPUs visited (they drop the mm
of an exited process they borrowed), the slab census run (recorded objects
the allocator holds free are retired), the maps read (tracer/reader.py),
/proc/slabinfo and /proc/meminfo, the sockets the traced processes hold
(sock_diag), the reference census (tracer/pins.py), the tracer's own map
memory. What comes back, a Collected, is all analysis/report.assemble()
needs to make the document: it reads nothing more from the kernel.

The collector also owns the helpers that live with the session: the call
sites' promoter (tracer/sites.py) and the names of exited processes and
removed cgroups, forgotten once no report needs them.
"""

import fnmatch
import time
from dataclasses import dataclass, field

import numpy as np

from .. import layout
from ..analysis.aliases import owner
from ..analysis.holders import describe, summarize
from ..analysis.report import final_groups
from ..analysis.sockets import is_socket_cache, name_sockets
from ..kernel import kernel_release
from ..kernel.cpus import visit_cpus
from ..kernel.slabs import slab_facts
from .census import Census
from .pins import PinCensus
from .reader import Reader, Snapshot
from .scan import HolderScan
from .sites import Promoter

__all__ = ["Collected", "Collector"]


@dataclass
class Collected:
    """One report's worth of kernel reads, and how the report is to be made."""

    snapshot: Snapshot
    facts: dict  # kernel.slabs.slab_facts()
    symbolizer: object  # analysis.symbols.Symbolizer of the session's stacks
    context: dict  # analysis.report.build_report's keyword arguments
    sockets: list = field(default_factory=list)  # analysis.sockets.name_sockets()
    census: dict | None = None  # the reference census's section
    maps_bytes: int = 0
    by: str | None = None
    scan: dict | None = None  # the holder scan: {"by_key": {group bytes: verdicts}, "section": {...}}
    referee: bool = True  # compare with /proc/slabinfo (not when sampled: an estimate may exceed it by chance)


class Collector:
    """The kernel reads of a started session.Session's reports."""

    def __init__(self, session, cfg, aliases: dict, cgroups, targets, started: str, t0: float):
        self.session, self.cfg, self.aliases, self.targets = session, cfg, aliases, list(targets)
        self.started, self.t0 = started, t0
        self.reader = Reader(session)
        self.promoter = Promoter(session, cfg.demote_after_s) if cfg.stacks == "sites" and cfg.allocs else None
        self.census = Census(session, self.reader) if session.plan.census else None
        self.pins = PinCensus(session, self.reader, self.census) if self.census and session.plan.pins else None
        self.cgroups = cgroups
        if cgroups is not None:
            cgroups.events = self.reader.cgroup_events
            cgroups.refresh()
        self.holders = HolderScan(session, self.reader, self.census) if session.plan.scan else None
        self.symbolizer = self.reader.symbolizer()  # one for the session: it caches address -> name
        if self.pins:
            self.pins.start(self.symbolizer)

    def close(self) -> None:
        for part in (self.holders, self.pins, self.census, self.reader):
            if part:
                part.close()

    def promote(self) -> None:
        """The promote job: growing call sites take their own stacks; names
        of cgroups that may be gone by the report are read now."""
        now_ns, objects = self.reader.objects(self.cfg.min_age_ns)
        self.promoter.promote(objects)
        if self.cgroups:
            self.cgroups.refresh()
        self._forget(now_ns, objects)  # a thousand processes may exit a second

    def _forget(self, now_ns: int, objects) -> None:
        self.reader.prune(now_ns, objects, self.cfg.min_age_ns)
        if self.cgroups:
            self.cgroups.keep({o.cgroup for o in objects})

    def _socket_pids(self, objects) -> list[int]:
        """The processes of outstanding objects in socket caches (the --cache glob's)."""
        glob = self.cfg.cache_glob
        pids = set()
        for o in objects:
            names = self.aliases.get(o.cache, set()) if o.cache else set()
            if o.cache and is_socket_cache(o.cache, names) and \
                    (glob is None or any(fnmatch.fnmatchcase(n, glob) for n in (o.cache, *names))):
                pids.add(o.tgid)
        return sorted(pids)

    def scan(self, snap: Snapshot, stop=None) -> dict | None:
        """The holder scan of the objects the report shows (analysis/holders.py
        summarizes it per record group)."""
        cfg = self.cfg
        groups = final_groups(snap, self.symbolizer, user_pages=cfg.user_pages, cache_glob=cfg.cache_glob,
                              aliases=self.aliases, split_by=cfg.split_by)
        label, kinds = {}, {}
        for g in groups:
            if g.kind != "user-page":  # user memory: not the kernel's to hold
                cache = owner(g.cache, self.aliases[g.cache], g.stack)[0] if self.aliases.get(g.cache) else None
                label.update(dict.fromkeys(g.keys, describe(g.kind, cache or g.cache, g.stack)))
                kinds.update(dict.fromkeys(g.keys, g.kind))
        everything = self.reader.records(0)
        recs = self.reader.records(cfg.min_age_ns)
        width = recs["key"].shape[1]
        rows = np.ascontiguousarray(recs["key"]).view(np.dtype((np.void, width * 8))).reshape(-1)
        uniq, inverse = np.unique(rows, return_inverse=True)
        keys = [bytes(u) for u in uniq]
        wanted = np.array([k in label for k in keys], bool)
        mine = wanted[inverse]
        index = np.cumsum(wanted) - 1
        kept = [k for k, w in zip(keys, wanted) if w]
        caches, _ = self.reader.sites()
        size_of = []
        for k in kept:
            obj = self.reader.decode_key(k)
            size_of.append(obj.bytes or caches.get(obj.cache, (None, 0))[1] or 8)
        targets = {"addr": recs["addr"][mine], "space": recs["space"][mine], "ts": recs["ts"][mine],
                   "key": index[inverse[mine]]}
        targets["size"] = np.array(size_of, np.uint64)[targets["key"]] if kept else np.zeros(0, np.uint64)
        # no orphan verdict for: a page (alloc_pages), held by frame numbers
        # too (page tables, DMA descriptors, another page's lists), which the
        # scan follows not (the sid lab: of its driver's 8 pages one was
        # "orphaned", another "in a cycle"); a percpu object: no free list
        # tells a phantom from an orphan there, and phantoms come without a
        # skipped free (tests/kernel/test_holders.py's cold cache, 5 runs in
        # 20: 1 to 3 percpu objects of mm_init "orphaned", their mm_struct
        # freed with its event, totals.skipped_frees 0); a record of a space
        # whose frees the kernel skipped (vmalloc), a phantom perhaps
        page = np.array([kinds[k] == "page" for k in kept], bool)[targets["key"]] if kept else np.zeros(0, bool)
        unprovable = list(self.reader.skipped_spaces()) + [layout.ENUMS["space"]["SPACE_PERCPU"]]
        targets["unprovable"] = page | np.isin(targets["space"], unprovable)

        def current():
            now = self.reader.records(0)
            return now["addr"], now["ts"]
        result = self.holders.run(targets, [label[k] for k in kept], everything, current, stop)
        if "verdict" not in result:
            return {"section": result["section"]}
        pairs = result["pairs"]
        summary = summarize(result["verdict"], targets["key"], len(kept), pairs[0], pairs[1], result["labels"],
                            other=result["other"])
        return {"by_key": dict(zip(kept, summary)), "section": result["section"]}

    def collect(self, scan: bool = False, stop=None) -> Collected:
        """A report's parts; with ``scan``, the holder scan's too (it stops
        when ``stop()`` is true: tracer/scan_watch.py)."""
        cfg, reader = self.cfg, self.reader
        visit_cpus()  # idle CPUs drop the mm of an exited process they borrowed
        if self.census:
            self.census.run(cfg.min_age_ns, seeds=reader.sites()[0])
        snap = reader.snapshot(cfg.min_age_ns)
        facts = slab_facts()
        if self.promoter:
            self.promoter.promote(snap.objects)
        if self.cgroups:
            self.cgroups.refresh()
        pids = self._socket_pids(snap.objects) if self.targets else []
        context = dict(kernel=kernel_release(), started=self.started, duration_s=time.monotonic() - self.t0,
                       min_age_ms=cfg.min_age_ms, targets=self.targets, cache_glob=cfg.cache_glob,
                       aliases=self.aliases, user_pages=cfg.user_pages, refs_tracking=self.session.refs_tracking,
                       cgroup_name=self.cgroups.name if self.cgroups else None, sample_bytes=cfg.sample_bytes,
                       cgroup_filter=list(cfg.cgroups), split_by=cfg.split_by)
        # the holder scan before the reference census: the census's iterators
        # leave copies of every file and dentry address in the pages they free
        scanned = self.scan(snap, stop) if scan and self.holders else None
        out = Collected(snapshot=snap, facts=facts, symbolizer=self.symbolizer, context=context,
                        sockets=name_sockets(pids) if pids else [], by=cfg.by, referee=not cfg.sample_bytes,
                        census=self.pins.run(cfg.min_age_ns, self.symbolizer).section if self.pins else None,
                        maps_bytes=reader.map_memory(), scan=scanned)
        self._forget(snap.now_ns, snap.objects)
        return out
