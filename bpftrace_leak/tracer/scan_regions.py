"""Names for the places a holder scan finds a pointer: which kernel memory a
page frame is, as a kernel engineer reads it.

- the kernel image's data, bss and ro_after_init (/proc/iomem), named by
  symbol where kallsyms has one near;
- each CPU's per-CPU area (its base from its runqueue, tracer/census.py),
  named by the per-CPU variable BTF places there;
- each task's kernel stack (the task iterator lists them; their vmalloc
  pages found through the page tables): "kernel stack of 1234 (sshd)";
- modules' data and bss (/sys/module/*/sections), named by their symbols;
- the memmap (struct pages: a folio's memcg_data, private, mapping);
- slab objects, by their cache (the slab's kmem_cache) and offset;
- what is left: reserved memory (boot-time tables: hash tables, the first
  per-CPU chunk) or other kernel pages (the page allocator, vmalloc).
"""

import bisect
import glob
import os
import struct

import numpy as np

from .. import layout
from ..kernel.pageflags import bit
from . import bcc
from .memory import PAGE, kallsyms_symbol
from .scan_rcu import rcu_pages

__all__ = ["Regions", "data_symbols"]

KSTACK = layout.DEFINES["KSTACK_SIZE"]  # a task's kernel stack, THREAD_SIZE


def data_symbols(path: str = "/proc/kallsyms") -> tuple[list[int], list[str]]:
    """(sorted addresses, names) of kallsyms' data and bss symbols (modules
    named ``sym [mod]``): this project's 6.18 host lists 35, a lab kernel
    thousands."""
    rows = []
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "dDbBrR":
                    name = parts[2] + (f" {parts[3]}" if len(parts) > 3 else "")
                    rows.append((int(parts[0], 16), name))
    except OSError:
        pass
    rows.sort()
    return [a for a, _ in rows], [n for _, n in rows]


class Regions:
    """PFN -> what it is, for the few frames named beyond their page flags."""

    def __init__(self, layout, tables, peek, offsets: dict, percpu_vars: dict, cpu_bases: dict, flags=None):
        self.layout, self.tables, self.peek, self.off = layout, tables, peek, offsets
        self.named: dict[int, tuple[str, str, int]] = {}  # pfn -> (kind, label, address of the page)
        self.sym_addrs, self.sym_names = data_symbols()
        self._percpu = sorted((o, n) for n, o in percpu_vars.items())
        self.excluded: set[int] = set()  # frames read by another pass (the memmap's)
        self.vmalloced: set[int] = set()  # frames mapped in the vmalloc region (vmalloc())
        self.dead: set[int] = set()  # stack frames wholly below a sleeping task's stack pointer
        self.live_from: dict[int, int] = {}  # stack frame -> offset of its first live word
        self.stale_from: dict[int, int] = {}  # kfree_rcu page in use -> offset of its first stale word
        self._stack_pfns: list[int] = []
        self._image(layout, flags)
        self._percpu_areas(cpu_bases)
        self._modules()

    # -- what gets a name ------------------------------------------------------------

    def _image(self, layout, flags) -> None:
        # the image's frames still reserved: x86 frees the unused part of
        # .bss..decrypted (up to 2 MiB, inside iomem's "Kernel bss") at boot,
        # and those frames serve anyone since (the Vagrant box's 6.1: the lab
        # module's .bss there, its list head named "kernel bss")
        reserved = bit(flags, "RESERVED") if flags is not None else None
        for kind in ("Kernel data", "Kernel bss"):
            for start, end in layout.image.get(kind, []):
                for pfn in range(start // PAGE, -(-end // PAGE)):
                    if reserved is None or (pfn < len(reserved) and reserved[pfn]):
                        self.named[pfn] = ("data", kind.split()[1], pfn * PAGE + layout.image_delta)
        ro = kallsyms_symbol(("__start_ro_after_init",)).get("__start_ro_after_init")
        for start, end in layout.image.get("Kernel rodata", []):
            first = (ro - layout.image_delta) // PAGE if ro else end // PAGE
            for pfn in range(start // PAGE, -(-end // PAGE)):
                if pfn < first:
                    self.excluded.add(pfn)  # constants: no reference to a heap object
                else:
                    self.named[pfn] = ("data", "ro_after_init", pfn * PAGE + layout.image_delta)
        for start, end in layout.image.get("Kernel code", []):
            self.excluded.update(range(start // PAGE, -(-end // PAGE)))

    def _percpu_areas(self, bases: dict) -> None:
        ordered = sorted(bases.values())
        gaps = [b - a for a, b in zip(ordered, ordered[1:]) if b > a]
        unit = min(gaps) if gaps else 64 * PAGE
        for cpu, base in bases.items():
            for va in range(base, base + unit, PAGE):
                pfn = self.layout.pfn_of(va)
                if pfn is not None:
                    self.named[pfn] = ("percpu", f"CPU {cpu}", va - base)

    def _modules(self) -> None:
        for folder in glob.glob("/sys/module/*/sections"):
            module = folder.split("/")[-2]
            for section in (".data", ".bss", ".data..ro_after_init", ".data..read_mostly"):
                try:
                    with open(os.path.join(folder, section)) as f:
                        start = int(f.read().strip(), 16)
                except (OSError, ValueError):
                    continue
                for va in range(start & ~(PAGE - 1), start + 64 * PAGE, PAGE):
                    phys = self.tables.phys(va)
                    if phys is None:
                        break
                    self.named.setdefault(phys // PAGE, ("module", module, va))

    def stacks(self, records) -> None:
        """Name the kernel stacks of the tasks the iterator listed: (stack,
        task, tgid, sp) rows. A sleeping task's frames below its saved stack
        pointer ``sp`` are dead: their pages are left out (``dead``) and the
        words below sp in its page are stale (``live_from``); kleaktrace's
        own threads come with sp at their stack's top, dead whole
        (probes/pins.h). Called again before each pass: a task that ran
        since has another sp."""
        for pfn in self._stack_pfns:
            self.named.pop(pfn, None)
        self._stack_pfns, self.dead, self.live_from = [], set(), {}
        for stack, task, _tgid, sp in records:
            if not stack:
                continue
            vas, pfns = self.tables.pfns(int(stack), int(stack) + KSTACK)
            live = sp if stack <= sp <= stack + KSTACK else stack
            for va, pfn in zip(vas.tolist(), pfns.tolist()):
                self.named[pfn] = ("stack", f"task {int(task):#x}", va)
                self._stack_pfns.append(pfn)
                if va + PAGE <= live:
                    self.dead.add(pfn)
                elif va < live:
                    self.live_from[pfn] = live - va

    def restack(self, session, census) -> None:
        """Before a pass: every task's stack and stack pointer as they are
        now (all_stacks), through the page tables as they are now (stacks of
        tasks forked since the last pass are in tables read before they
        were), and the stacks fork.c caches now."""
        self.tables.forget()
        self.stacks(all_stacks(session, census))
        self.dead_stacks(a for a in (census.stack_address(vm) for vm in census.stack_cache()) if a)
        for pfn in self.stale_from:
            self.named.pop(pfn, None)
        where = session.plan.scan.get("rcu_pages")
        if where:
            dead, tails = rcu_pages(census, where)
            pfn = lambda va: (va - self.layout.direct) // PAGE  # noqa: E731
            self.dead.update(pfn(va) for va in dead)
            self.stale_from = {pfn(va): off for va, off in tails.items()}
            for va in tails:
                self.named.setdefault(pfn(va), ("rcu", "", va))

    def stale(self, pfn: int, offset: int) -> bool:
        """Whether the word at ``offset`` in frame ``pfn`` is in a dead stack
        frame, or past the records of a kfree_rcu page (scan_rcu.py)."""
        return offset < self.live_from.get(pfn, 0) or offset >= self.stale_from.get(pfn, PAGE)

    def stale_at(self, words) -> np.ndarray:
        """stale() of each direct-map word address in ``words`` (the words
        inside targets: a kfree_rcu page or a kernel stack recorded as one,
        7.2's lab: 4 planted orphans "held" by outstanding pages)."""
        words = np.asarray(words, np.uint64)
        pfns = ((words - np.uint64(self.layout.direct)) // np.uint64(PAGE)).astype(np.int64)
        out = np.zeros(len(words), bool)
        for i in np.flatnonzero(np.isin(pfns, list(self.live_from) + list(self.stale_from))).tolist():
            out[i] = self.stale(int(pfns[i]), int(words[i]) % PAGE)
        return out

    def vmalloc(self) -> None:
        """The frames mapped in the vmalloc region (between the direct map and
        the memmap: vmalloc'd tables, BPF maps, module memory, kernel
        stacks): a hit there is named "vmalloc memory", not a bare page."""
        lay = self.layout
        start = lay.direct + lay.pfns * PAGE
        self.vmalloced = set(self.tables.mapped(start, lay.vmemmap).tolist())

    def dead_stacks(self, addresses) -> None:
        """Leave out the stacks fork.c keeps for reuse (census.stack_cache):
        what a dead task left on them is stale. Called after each stacks():
        a task that exits during a scan leaves its stack there."""
        for stack in addresses:
            _vas, pfns = self.tables.pfns(int(stack), int(stack) + KSTACK)
            self.dead.update(pfns.tolist())

    def memmap(self) -> tuple[np.ndarray, np.ndarray]:
        """(virtual page addresses, PFNs) of the memmap's pages; they are read
        through the vmemmap, and left out of the physical pass."""
        lay = self.layout
        vas, pfns = self.tables.pfns(lay.vmemmap, lay.vmemmap + lay.pfns * 64)
        self.excluded.update(pfns.tolist())
        return vas, pfns

    # -- naming a hit --------------------------------------------------------------------

    def _symbol(self, va: int) -> str | None:
        i = bisect.bisect_right(self.sym_addrs, va) - 1
        if i >= 0 and va - self.sym_addrs[i] < 4096:
            return f"{self.sym_names[i]}+{va - self.sym_addrs[i]:#x}"
        return None

    def _task(self, task: int) -> str:
        raw = self.peek(task + self.off["task_comm"], 16)
        pid = self.peek(task + self.off["task_pid"], 4)
        comm = raw.split(b"\0", 1)[0].decode(errors="replace") if raw else "?"
        return f"{struct.unpack('<i', pid)[0] if pid else '?'} ({comm})"

    def name(self, pfn: int, offset: int) -> tuple[str, str] | None:
        """(kind, label) of the word at ``offset`` in frame ``pfn`` when the
        frame is named, else None."""
        got = self.named.get(pfn)
        if got is None:
            return None
        kind, what, at = got
        if kind == "data":
            sym = self._symbol(at + offset)
            return "data", f"kernel {what} {sym}" if sym else f"kernel {what} (no symbol near)"
        if kind == "module":
            sym = self._symbol(at + offset)
            return "data", f"module {what} {sym}" if sym else f"module {what} data"
        if kind == "percpu":
            off = at + offset
            i = bisect.bisect_right(self._percpu, (off, "\uffff")) - 1
            var = f" {self._percpu[i][1]}+{off - self._percpu[i][0]:#x}" if i >= 0 and off - self._percpu[i][0] < 4096 \
                else ""
            return "percpu", f"per-CPU data{var}"
        if kind == "stack":
            return "stack", f"kernel stack of {self._task(int(what.split()[1], 16))}"
        if kind == "rcu":
            return "page", "kfree_rcu's records (objects freed after a grace period)"
        return None


def task_stacks(session) -> list[tuple[int, int, int, int]]:
    """(stack, task, tgid, saved stack pointer or 0) of every task, from the task iterator."""
    from .pins import PIN_HOLDER
    fd = session.prog_fds.get("bpf_iter__task")
    if fd is None:
        return []
    data = bcc.iterate(fd)
    rows = np.frombuffer(data, PIN_HOLDER, count=len(data) // PIN_HOLDER.itemsize)
    rows = rows[rows["kind"] == layout.ENUMS["pin_kind"]["PIN_STACK"]]
    return list(zip(rows["holder"].tolist(), rows["dentry"].tolist(), rows["tgid"].tolist(), rows["mnt"].tolist()))


def all_stacks(session, census) -> list[tuple[int, int, int, int]]:
    """task_stacks and each CPU's idle task, dead whole: it holds nothing
    across its loop. CPU 0's stack (init_stack, kernel data) was "kernel data
    (no symbol near)" before: likely the holder of a lab orphan cycle's pair
    (bookworm, 2026-12-06)."""
    return task_stacks(session) + [(stack, task, 0, stack + KSTACK) for stack, task in census.idle_stacks()]
