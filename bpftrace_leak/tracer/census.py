"""The slab census: recorded objects the slab allocator itself holds as free.

Some frees fire no event: kmem_cache_free_bulk(), kfree_rcu() batches, and
from 6.18 the sheaves (a kfree_rcu'd or bulk-freed object goes into a
per-CPU array of free objects, which later returns whole to the cache's
barn). Where kprobes exist the tracer sees those calls (catalog.py); where
they do not (this project's 6.18 host), the objects stay recorded as
outstanding, phantoms, until their address is handed out again or their
slab page is freed (probes.c: retire_page).

The census asks the allocator. For every slab page holding aged recorded
objects, for every CPU's freelist, partial slabs and sheaves of the caches
those pages belong to, and for every full sheaf in those caches' barns, a
BPF program run on demand (BPF_PROG_TEST_RUN) walks the list and retires
each recorded object it finds free there (counted: ``found_free``). Only
kernel memory is read; nothing of the kernel changes. Struct offsets come
from BTF, a CPU's per-CPU offset from its runqueue (probes.c: census_cpu).

A slab is visited only when its kmem_cache is one of the kernel's caches,
found by walking their list (kmem_cache.list) from one the tracer saw; a
freelist walk stops at the first pointer outside its slab or off an
object's start. An object found free is free: a real leak never sits on a
freelist, so the census cannot hide one.

fork.c keeps up to NR_CACHED_STACKS (2) freed kernel stacks per CPU for the
next fork (CONFIG_VMAP_STACK): no vfree, no event. Each is a vmalloc area,
its struct vm_struct and its page array, all recorded at the fork that first
made them; the census reads each CPU's cached_stacks (a per-CPU variable
BTF places) and retires the three (found by the lab's process-churn decoy on
6.12: 2 stacks, 6 objects after 2,003 fork+exec+exit). A cached stack the
next fork takes is handed on with no event either, to whichever task forks
next on that CPU: a kworker, another user's process. Its records still name
the fork that first made it, so a traced churn "kept" the stacks of tasks it
never forked (3 of 5 lab runs on 6.12; on the host, 2 stacks of 6 untraced
sleeps forked amid 2,000 traced spawns). The census lists every task's stack
(the task iterator) and retires the records of a stack whose task was forked
by a process not traced, when they name neither the task nor its parent
(recycled_stacks); a traced parent's fork keeps a stack another traced
fork made. Under --cgroup (whose processes Python does not list) the rule is
the records' names alone. Known limit: a child whose stack came from the
cache and whose traced parent exited before it (reparented) cannot be told
from a recycled stack's holder, and loses the stack's three records.

Page records: census_pages.py. Cost (bench/report_scale.py): README "Accuracy".
"""

import ctypes
import struct

from .. import layout
from . import bcc
from .census_pages import retire_free_pages

__all__ = ["Census", "page_head"]

_MAX_CACHES = 4096
NR_CACHED_STACKS = 2  # kernel/fork.c, unchanged since 4.9


def page_head(page: int, info: int) -> int:
    """The head of ``page`` from its compound_head/compound_info word (probes.c: page_head)."""
    if not info & 1:
        return page
    m = info - 1
    inv = ~m & 0xFFFFFFFFFFFFFFFF
    return page & m if inv & (inv + 1) == 0 else m


class Census:
    """The census of a started session.Session whose plan has ``census``."""

    def __init__(self, session, reader):
        self.session, self.reader = session, reader
        self.offsets = session.plan.census["offsets"]
        self.fds = session.prog_fds
        self._cpu_offsets: dict[int, int] | None = None
        self._cpu_bases: dict[int, int] = {}
        self._peek_view = None
        self.known: set[int] = set()

    # -- kernel memory, read by census_peek (the reference census reads with it too)

    def peek(self, addr: int, n: int) -> bytes | None:
        """``n`` bytes (at most PEEK_BYTES) of kernel memory at ``addr``; None where unreadable."""
        if self._peek_view is None:
            self._peek_view = self.session.mmap("peek_buf", layout.DEFINES["PEEK_BYTES"], 1)
        if bcc.test_run(self.fds["census_peek"], [addr, n]) != 0:
            return None
        return self._peek_view[:n]

    def u64(self, addr: int) -> int | None:
        data = self.peek(addr, 8)  # the u64 there; None where unreadable
        return struct.unpack("<Q", data)[0] if data else None

    def cache_name(self, cache: int) -> str | None:
        """A kmem_cache's name, None when it does not read like one."""
        ptr = self.u64(cache + self.session.plan.census.get("name_off", 0))
        data = self.peek(ptr, 64) if ptr else None
        if not data or b"\0" not in data:
            return None
        name = data.split(b"\0", 1)[0]
        return name.decode() if name and all(32 < c < 127 for c in name) else None

    # -- what to visit ---------------------------------------------------------

    def cpu_offsets(self) -> dict[int, int]:
        """{cpu: its per-CPU offset}, learned once (census_cpu run on each CPU)."""
        if self._cpu_offsets is None:
            table = self.session.map("cpu_offsets")
            self._cpu_offsets = {}
            for cpu in range(self.session.plan.census["cpus"]):
                try:
                    if bcc.test_run(self.fds["census_cpu"], [0], cpu=cpu) == 0:
                        self._cpu_offsets[cpu] = table[ctypes.c_int(cpu)].value
                        self._cpu_bases[cpu] = self.session.map("cpu_bases")[ctypes.c_int(cpu)].value
                except OSError:  # offline
                    continue
        return self._cpu_offsets

    def _caches(self, seeds) -> set[int]:
        """The kernel's kmem_caches: their list (kmem_cache.list) walked from ``seeds``."""
        link = self.offsets["KMEM_CACHE_LIST_OFF"]
        found: set[int] = set()
        for seed in seeds:
            if seed in found:
                continue
            at = seed
            for _ in range(_MAX_CACHES):
                found.add(at)
                nxt = self.u64(at + link)
                if not nxt:
                    break
                at = nxt - link
                if at in found:
                    break
        # the list's head (slab_caches) is no kmem_cache: keep what reads like one
        return {c for c in found if self.cache_name(c)}

    def kmem_caches(self, page: int) -> set[int]:
        """The kernel's kmem_caches: the last walk's, else walked from slab ``page``'s (a struct page)."""
        seed = None if self.known else self.kmem_cache_of(page)
        return self.known or (self._caches({seed}) if seed else set())

    def kmem_cache_of(self, page: int) -> int | None:
        """The kmem_cache of slab ``page`` (a struct page), or None."""
        info = self.u64(page + self.offsets["PAGE_COMPOUND_HEAD_OFF"])
        if info is None:
            return None
        return self.u64(page_head(page, info) + self.offsets["SLAB_CACHE_OFF"])

    # -- the census --------------------------------------------------------------

    def stack_cache(self) -> list[int]:
        """The vm_structs of the kernel stacks fork.c holds for reuse (each
        CPU's cached_stacks): a dead task's, no live task's."""
        where = self.session.plan.census.get("stacks")
        if not where:
            return []
        self.cpu_offsets()
        found = []
        for base in self._cpu_bases.values():
            for i in range(NR_CACHED_STACKS):
                vm = self.u64(base + where["var"] + 8 * i)
                if vm:
                    found.append(vm)
        return found

    def stack_address(self, vm: int) -> int | None:
        return self.u64(vm + self.session.plan.census["stacks"]["addr_off"])

    def cached_stacks(self) -> None:
        """Retire the kernel stacks fork.c holds for reuse, with their vm_struct and page array."""
        if "census_drop" not in self.fds:
            return
        for vm in self.stack_cache():
            self._drop_stack(self.stack_address(vm), vm)

    def _drop_stack(self, stack: int | None, vm: int) -> None:
        """Retire a kernel stack's records: its area, its vm_struct, its page array."""
        vmalloc, slab = layout.ENUMS["space"]["SPACE_VMALLOC"], layout.ENUMS["space"]["SPACE_SLAB"]
        pages = self.u64(vm + self.session.plan.census["stacks"]["pages_off"])
        for addr, space in ((stack, vmalloc), (vm, slab), (pages, slab)):
            if addr:
                bcc.test_run(self.fds["census_drop"], [addr, space])

    def recycled_stacks(self) -> int:
        """Retire the records of kernel stacks fork.c took from its cache for
        a task whose fork was not traced: recorded at an earlier fork, handed
        on with no event. Returns how many stacks."""
        where = self.session.plan.census.get("stacks", {}).get("tasks")
        if not where or "census_drop" not in self.fds:
            return 0
        from .scan_regions import task_stacks
        live = self.session.map("live")
        vmalloc = layout.ENUMS["space"]["SPACE_VMALLOC"]
        retired = 0
        for stack, task, tgid, _sp in task_stacks(self.session):
            try:  # probes.c MANGLE: the live hash's addresses
                recorder = live[live.Key(stack ^ self.session.plan.addr_key, vmalloc)].tgid
            except KeyError:
                continue
            parent = self.u64(task + where["real_parent"])
            ptgid = self.u64(parent + where["tgid"]) if parent else None
            if recorder == tgid or ptgid is None or recorder == ptgid & 0xFFFFFFFF \
                    or self.session.traces(ptgid & 0xFFFFFFFF):
                continue
            vm = self.u64(task + where["stack_vm_area"])
            if not vm or self.stack_address(vm) != stack:
                continue  # the task is going away, or not what was read
            self._drop_stack(stack, vm)
            retired += 1
        return retired

    def idle_stacks(self) -> list[tuple[int, int]]:
        """(kernel stack, task) of each CPU's idle task, swapper/N: its
        runqueue's rq.idle. Idle tasks have pid 0 and are in no task list,
        so the task iterator never shows them; CPU 0's is init_task, whose
        stack (init_stack) is in the kernel image's data on x86-64."""
        where = self.session.plan.census.get("idle")
        if not where:
            return []
        found = []
        for _cpu, base in sorted(self.cpu_bases().items()):
            task = self.u64(base + where["runqueues"] + where["rq_idle"])
            stack = self.u64(task + where["task_stack"]) if task else None
            if stack:
                found.append((stack, task))
        return found

    def cpu_bases(self) -> dict[int, int]:
        """{cpu: where its per-CPU area starts}, learned with cpu_offsets()."""
        self.cpu_offsets()
        return dict(self._cpu_bases)

    def run(self, min_age_ns: int, seeds=()) -> int:
        """Retire the aged recorded objects the allocator holds free; returns
        how many were retired (the kernel side counts them too)."""
        before = self.reader.counters().get("found_free", 0)
        self.cached_stacks()
        self.recycled_stacks()
        recs = self.reader.records(min_age_ns)
        retire_free_pages(self.fds, self.reader, recs, min_age_ns)
        pages, caches, sizes, stale = self.reader.records.slab_pages(min_age_ns, recs)
        if "census_freed" in self.fds:  # records made before their page was freed
            for page in pages[stale].tolist():
                bcc.test_run(self.fds["census_freed"], [page])
        self.walk(pages, seeds, hints=(caches, sizes))
        return self.reader.counters().get("found_free", 0) - before

    def walk(self, pages, seeds=(), hints=None) -> None:
        """Walk the free lists of the slabs at struct ``pages`` and of their
        caches (each CPU's freelist, partial slabs and sheaves; the barns):
        recorded objects found there are retired, and objects the holder
        scan asks about marked (probes/scan.h: scan_query). ``hints``: the
        (cache, size) arrays records.slab_pages() gives for pages of records:
        a page that is no slab of theirs any more retires them."""
        if not len(pages):
            return
        seeds = set(seeds) | {c for c in (self.kmem_cache_of(int(p)) for p in pages[:4]) if c}
        caches = self._caches(seeds)
        if caches != self.known:
            known = self.session.map("census_known")
            known.clear()
            for c in caches:
                known[ctypes.c_uint64(c)] = ctypes.c_uint8(1)
            self.known = caches
        seen = self.session.map("census_seen")
        seen.clear()
        if hints is None:
            for page in pages.tolist():
                bcc.test_run(self.fds["census_slab"], [page, 0, 0, 0])
        else:
            for page, cache, size in zip(pages.tolist(), hints[0].tolist(), hints[1].tolist()):
                if bcc.test_run(self.fds["census_slab"], [page, cache, size, 1]) == 3:
                    bcc.test_run(self.fds["census_retire"], [page])
        lists = self.session.map("census_lists")
        for cache in [k.value for k in seen.keys()]:
            for off in self.cpu_offsets().values():
                if bcc.test_run(self.fds["census_cpu_cache"], [cache, off]) != 0:
                    continue
                self._visit(lists, layout.ENUMS["census_list_kind"]["CENSUS_SLABS"], "census_slab")
                self._visit(lists, layout.ENUMS["census_list_kind"]["CENSUS_SHEAVES"], "census_sheaf")
            if "census_barn" in self.fds and "KMEM_CACHE_CPU_SHEAVES_OFF" in self.offsets:
                for node in range(self.session.plan.census["nodes"]):
                    if bcc.test_run(self.fds["census_barn"], [cache, node]) == 0:
                        self._visit(lists, layout.ENUMS["census_list_kind"]["CENSUS_SHEAVES"], "census_sheaf")

    def _visit(self, lists, kind: int, program: str) -> None:
        """Run ``program`` on each item census_lists[kind] holds."""
        if program not in self.fds:
            return
        entry = lists[ctypes.c_int(kind)]
        for i in range(min(entry.n, layout.DEFINES["CENSUS_LIST_MAX"])):
            if entry.items[i]:
                bcc.test_run(self.fds[program], [entry.items[i], 0, 0, 0])

    def close(self) -> None:
        if self._peek_view is not None:
            self._peek_view.close()
            self._peek_view = None
