"""Reading a session's maps: outstanding objects aggregated with their caches
named, counters, skipped frees, reference holds, process names.

Read-only but for prune(), which forgets names no report needs again
(promotion is sites.py's, and the live loop calls both). A million live objects never become a million
Python objects: livemap.py aggregates them with numpy as they are read, and
objects alike in all but their age come out as one Obj with a count.
"""

import ctypes
import os
import time
from dataclasses import dataclass, field

from ..analysis.groups import Obj, kmalloc_cache_name
from ..analysis.refs import WHY_TEXT, RefHold
from .. import layout
from .livemap import aggregate, decode, read_items, read_values, value_records
from .records import Records
from .progstats import recursion_misses

__all__ = ["Snapshot", "Reader", "weighed"]

#: entries of `sites` per batched read (a few hundred on a busy host)
SITES_CHUNK = 4096


def weighed(n: int, size: int, sample_bytes: int) -> int:
    """The estimate of how many objects ``n`` kept ones of ``size`` bytes
    stand for, sampled as probes.c's KEEP does (kept with probability
    min(1, size / sample_bytes); 0: all kept): n over that probability, an
    unbiased estimate (Horvitz-Thompson), as pprof's heap profiles scale."""
    if not sample_bytes or size >= sample_bytes:
        return n
    return round(n * sample_bytes / max(size, 1))


@dataclass
class Snapshot:
    """What the kernel side holds at one instant."""

    now_ns: int  # CLOCK_MONOTONIC, same clock as bpf_ktime_get_ns()
    objects: list[Obj]
    counters: dict[str, int]  # layout.COUNTER_NAMES
    skipped_frees: int
    ref_holds: list = field(default_factory=list)  # analysis.refs.RefHold


class Reader:
    """Reads the maps of a started session.Session."""

    def __init__(self, session):
        self.session = session
        self.records = Records(session)  # every record, one row each (the census's and the scan's)

    def close(self) -> None:
        self.records.close()

    # -- outstanding objects ---------------------------------------------------

    def _records(self, cutoff: int) -> dict:
        """aggregate()'s {group bytes: [objects, oldest]} of the objects allocated at or before
        ``cutoff`` (jiffies: tracer/clock.py)."""
        from bcc.libbcc import lib
        live = self.session.map("live")
        size = ctypes.sizeof(live.Leaf)
        rows: dict = {}
        for recs in self.records.slot_arrays().values():
            aggregate(recs, cutoff, rows)
        try:
            for chunk in read_values(lib, live.map_fd, ctypes.sizeof(live.Key), size):
                aggregate(value_records(chunk, size), cutoff, rows)
        except OSError:  # no batched lookups (kernels before 5.6): one entry at a time
            aggregate(value_records(b"".join(bytes(v) for v in live.values()), size), cutoff, rows)
        return rows

    def decode_key(self, key: bytes):
        """The struct live_obj of a record's group bytes (ts unset)."""
        return self.session.map("live").Leaf.from_buffer_copy(bytes(8) + key)

    @staticmethod
    def stack_id(obj, site_stacks: dict) -> int:
        """The stack an object's record stands for: its own, or its site's first."""
        if obj.stack_how == layout.STACK_HOW["STACK_SITE"]:
            return site_stacks.get((obj.call_site, obj.cache, obj.kind, obj.syscall), -1)
        return obj.stack_id

    def sites(self) -> tuple[dict[int, tuple[str, int]], dict[tuple, int]]:
        """({struct kmem_cache address: (name, object size)},
        {(call_site, cache, kind, syscall): first stack id})."""
        from bcc.libbcc import lib
        table = self.session.map("sites")
        caches, stacks = {}, {}
        key_size, size = ctypes.sizeof(table.Key), ctypes.sizeof(table.Leaf)
        try:  # one system call: BCC's items() made two per site, 1.9 ms for 200 sites
            entries = [(table.Key.from_buffer_copy(kbuf, i * key_size), table.Leaf.from_buffer_copy(vbuf, i * size))
                       for kbuf, vbuf in read_items(lib, table.map_fd, key_size, size, SITES_CHUNK)
                       for i in range(len(kbuf) // key_size)]
        except OSError:  # no batched lookups (kernels before 5.6)
            entries = list(table.items())
        for key, site in entries:
            stacks[(key.call_site, key.cache, key.kind, key.syscall)] = site.stack_id
            if key.cache and site.cache[:1]:
                caches[key.cache] = (site.cache.decode(errors="replace"), site.bytes)
        return caches, stacks

    def objects(self, min_age_ns: int) -> tuple[int, list[Obj]]:
        """(now, the objects at least ``min_age_ns`` old), alike ones as one Obj with a count."""
        if not self.session.config.allocs:
            return time.monotonic_ns(), []
        now = time.monotonic_ns()
        anchor = self.session.clock.anchor()
        rows = self._records(self.session.clock.to_jiffies(now - min_age_ns, anchor))
        caches, site_stacks = self.sites()
        kmalloc, slab = layout.KINDS["KIND_KMALLOC"], layout.KINDS["KIND_SLAB"]
        site_how = layout.STACK_HOW["STACK_SITE"]
        comms: dict[int, str] = {}
        objs = []
        sample = self.session.config.sample_bytes
        for key, r, n, oldest in decode(rows, self.session.map("live").Leaf):
            size = r.bytes
            if r.kind == kmalloc:
                cache = kmalloc_cache_name(r.bytes)
            elif r.kind == slab:
                cache, cache_size = caches.get(r.cache, (None, 0))
                size = size or cache_size
            else:
                cache = None
            if r.tgid not in comms:
                comms[r.tgid] = self.comm(r.tgid)
            kept, n = n, weighed(n, size, sample)
            at_site = r.stack_how == site_how
            stack_id = self.stack_id(r, site_stacks)
            objs.append(Obj(kind=layout.KIND_NAMES.get(r.kind, str(r.kind)), cache=cache, bytes=size,
                            ts_ns=self.session.clock.to_ns(oldest, anchor), tgid=r.tgid, comm=comms[r.tgid],
                            stack_id=stack_id,
                            call_site=r.call_site, count=n, site_stack=at_site, cache_ptr=r.cache,
                            syscall=r.syscall, cgroup=r.cgroup, key=key, kept=kept))
        return now, objs

    def cgroup_events(self) -> dict[int, tuple[str, bool]]:
        """{kernfs id: (path, removed)} of the cgroups made or removed while traced."""
        if not self.session.plan.cgroups:
            return {}
        return {k.value: (v.path.decode(errors="replace") or "/", bool(v.removed_ns))
                for k, v in self.session.map("cgroup_names").items()}

    def prune(self, now_ns: int, objects: list[Obj], min_age_ns: int) -> int:
        """Forget the names no report will need again, so that a session of
        weeks (serve) keeps its maps from filling: processes and removed
        cgroups gone longer ago than ``min_age_ns`` before ``now_ns``
        (whatever they allocated is aged by now, so in ``objects``, read
        then, if still outstanding) and not named by those objects. Returns
        how many were forgotten."""
        cutoff = now_ns - min_age_ns
        named = {"exited_comms": ({o.tgid for o in objects}, "exited_ns")}
        if self.session.plan.cgroups:
            named["cgroup_names"] = ({o.cgroup for o in objects}, "removed_ns")
        forgotten = 0
        for name, (used, when) in named.items():
            table = self.session.map(name)
            stale = [k for k, v in table.items() if 0 < getattr(v, when) <= cutoff and k.value not in used]
            for k in stale:
                del table[k]
            forgotten += len(stale)
        return forgotten

    def comm(self, tgid: int) -> str:
        """A process's name: from the kernel if it exited while traced, else /proc."""
        try:
            return self.session.map("exited_comms")[ctypes.c_uint32(tgid)].comm.decode(errors="replace")
        except KeyError:
            pass
        try:
            with open(f"/proc/{tgid}/comm") as f:
                return f.read().strip()
        except OSError:
            return "?"

    # -- accuracy ----------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        table = self.session.map("counters")
        return {name: sum(table[ctypes.c_int(idx)]) for idx, name in layout.COUNTER_NAMES.items()}

    def skipped_frees(self) -> int:
        """Free events no program saw (an upper bound, see probes.c's free_copy).

        A copied free event is lost when every copy skipped it: copy 0's
        misses less those a later copy covered (free_covered). Every miss of
        the other free programs is a lost free.
        """
        if not self.session.config.allocs:
            return 0
        total = 0
        fds = self.session.prog_fds
        covered = self.session.map("free_covered")
        for probe, copies in self.session.plan.probes:
            names = [n for n in probe.programs(copies) if n in fds]
            if not names:
                continue
            if probe.free_event:
                idx = layout.FREE_EVENTS[probe.free_event]
                total += max(0, recursion_misses(fds[names[0]]) - sum(covered[ctypes.c_int(idx)]))
            elif probe.lost_when_skipped:
                total += sum(recursion_misses(fds[n]) for n in names)
        return total

    def skipped_spaces(self) -> set[int]:
        """The record spaces (layout.h enum space) some of whose free events
        the kernel skipped: their records may be phantoms (slab's are found
        on the slab's free lists; no other space has a check)."""
        fds = self.session.prog_fds
        return {layout.ENUMS["space"][probe.space] for probe, copies in self.session.plan.probes
                if probe.space and any(recursion_misses(fds[n]) for n in probe.programs(copies) if n in fds)}

    # -- references ----------------------------------------------------------------

    def ref_holds(self) -> list[RefHold]:
        """Unbalanced path_get()s: leaked by a put on a cleared path, or not put yet."""
        if self.session.refs_method is None:
            return []
        holds = []
        dentry = layout.REF_OBJECTS["REF_DENTRY"]
        key_mask = self.session.plan.addr_key  # probes.c MANGLE
        for key, leak in self.session.map("ref_leaks").items():
            holds.append(RefHold(
                object_type="dentry" if key.type == dentry else "vfsmount",
                object=key.object ^ key_mask, refs=leak.refs, name=leak.name.decode(errors="replace"),
                tgid=key.tgid, comm=leak.comm.decode(errors="replace"), stack_id=key.get_stack,
                ts_ns=leak.ts_ns, why=WHY_TEXT[key.why], put_stack_id=leak.put_stack))
        never = WHY_TEXT[layout.REF_WHY["WHY_NEVER_PUT"]]
        for _p, rec in self.session.map("path_gets").items():
            for otype, obj, name in (("dentry", rec.dentry ^ key_mask, rec.dentry_name),
                                     ("vfsmount", rec.mnt ^ key_mask, rec.mnt_name)):
                if obj:
                    holds.append(RefHold(
                        object_type=otype, object=obj, refs=rec.count, name=name.decode(errors="replace"),
                        tgid=rec.tgid, comm=rec.comm.decode(errors="replace"), stack_id=rec.stack_id,
                        ts_ns=rec.ts_ns, why=never))
        return holds

    @staticmethod
    def map_memory() -> int:
        """Bytes of kernel memory this process's BPF maps hold (their fdinfo
        memlock: every map open here is the session's)."""
        total, seen = 0, set()
        for fd in os.listdir("/proc/self/fd"):
            try:
                with open(f"/proc/self/fdinfo/{fd}") as f:
                    info = dict(line.split(":", 1) for line in f if ":" in line)
            except OSError:
                continue
            if "map_id" in info and int(info["map_id"]) not in seen:
                seen.add(int(info["map_id"]))
                total += int(info.get("memlock", 0))
        return total

    # -- all of it ---------------------------------------------------------------------

    def snapshot(self, min_age_ns: int = 0) -> Snapshot:
        """What is outstanding, objects younger than ``min_age_ns`` left out."""
        now, objs = self.objects(min_age_ns)
        return Snapshot(now, objs, self.counters(), self.skipped_frees(), self.ref_holds())

    def symbolizer(self):
        from ..analysis.symbols import Symbolizer
        return Symbolizer(self.session.map("stacks"), self.session.module.ksym)
