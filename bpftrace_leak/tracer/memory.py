"""Kernel memory for the holder scan: read a page at a time, where it is.

Two readers with one interface, ``read(addrs) -> (pages, ok)``: BpfMemory
(probes/scan.h's scan_read, run on demand, 1,024 pages a run into an
mmap()ed array: no /proc/kcore needed) and KcoreMemory (/proc/kcore's ELF
segments, where the kernel has it: the lab's Debian kernels; a second
method the first is checked against).

And the layout a physical scan needs, found at run time on x86-64 (KASLR
moves all of it, and this project's 6.18 host lists no data symbols in
kallsyms):

- the direct map's base (page_offset_base): 1 GiB-aligned, so among the few
  candidates below a known direct-map address (a recorded slab object) the
  one where the kernel's rodata, read through the direct map at its
  physical address (/proc/iomem), equals the same bytes read through the
  kernel image's own mapping (kallsyms' _stext and iomem's "Kernel code");
- the memmap's base (vmemmap_base), from it and the struct page offset the
  probes learned (layout.h: page_calib);
- a page-table walker (PageTables) for the virtual ranges that are not in
  the direct map (vmalloc: kernel stacks, module data, vmalloc'd objects;
  the vmemmap): the kernel half of any mm's page tables, from our own
  task's mm->pgd.
"""

import os
import re
import struct

import numpy as np

from .. import layout
from . import bcc

__all__ = ["BpfMemory", "KcoreMemory", "PageTables", "KernelLayout", "iomem", "kallsyms_symbol"]

PAGE = layout.DEFINES["SCAN_PAGE_BYTES"]
BATCH = layout.DEFINES["SCAN_BATCH"]
RUN = layout.DEFINES["SCAN_RUN"]
GIB = 1 << 30
_PHYS_MASK = ((1 << 52) - 1) & ~0xFFF  # bits 12-51 of a page-table entry


class BpfMemory:
    """Kernel memory read by scan_read into the mmap()ed scan_buf."""

    method = "bpf"

    def __init__(self, session, census):
        self.session, self.census = session, census
        self.fd = session.prog_fds["scan_read"]

        self._in = session.mmap("scan_in", 8, BATCH, writable=True)
        self._buf = session.mmap("scan_buf", PAGE, BATCH)
        self._ok = session.mmap("scan_ok", 8, BATCH)

    def read(self, addrs: np.ndarray):
        """(pages, ok) for at most BATCH page addresses: a (n, PAGE // 8) u64
        view valid until the next read, and which pages could be read."""
        n = len(addrs)
        np.frombuffer(self._in, np.uint64, count=BATCH)[:n] = addrs
        for at in range(0, n, RUN):
            bcc.test_run(self.fd, [at, min(RUN, n - at)])
        pages = np.frombuffer(self._buf, np.uint64, count=n * PAGE // 8).reshape(n, PAGE // 8)
        return pages, np.frombuffer(self._ok, np.uint64, count=n).astype(bool)

    def peek(self, addr: int, n: int) -> bytes | None:
        return self.census.peek(addr, n)

    def close(self) -> None:
        for v in (self._in, self._buf, self._ok):
            v.close()


class KcoreMemory:
    """Kernel memory read through /proc/kcore (an ELF core file whose
    segments are the kernel's virtual ranges)."""

    method = "kcore"

    def __init__(self, path: str = "/proc/kcore"):
        self.f = open(path, "rb", buffering=0)
        head = self.f.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:
            raise OSError(f"{path}: not a 64-bit ELF core")
        phoff, = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        self.f.seek(phoff)
        table = self.f.read(phentsize * phnum)
        segs = []
        for i in range(phnum):
            p_type, _flags, offset, vaddr, _paddr, filesz, _memsz, _align = \
                struct.unpack_from("<IIQQQQQQ", table, i * phentsize)
            if p_type == 1 and filesz:  # PT_LOAD
                segs.append((vaddr, vaddr + filesz, offset))
        segs.sort()
        self.starts = np.array([s[0] for s in segs], np.uint64)
        self.segs = segs
        self._buf = np.zeros((BATCH, PAGE // 8), np.uint64)

    def _offset(self, addr: int) -> int | None:
        i = int(np.searchsorted(self.starts, np.uint64(addr), "right")) - 1
        if i < 0:
            return None
        start, end, offset = self.segs[i]
        return offset + addr - start if addr + PAGE <= end else None

    def read(self, addrs: np.ndarray):
        ok = np.zeros(len(addrs), bool)
        raw = self._buf.view(np.uint8).reshape(BATCH, PAGE)
        for i, addr in enumerate(addrs.tolist()):
            off = self._offset(addr)
            if off is None:
                continue
            try:
                got = os.preadv(self.f.fileno(), [memoryview(raw[i])], off)
            except OSError:
                continue
            ok[i] = got == PAGE
        return self._buf[:len(addrs)], ok

    def peek(self, addr: int, n: int) -> bytes | None:
        off = self._offset(addr & ~(PAGE - 1))
        if off is None:
            return None
        try:
            data = os.pread(self.f.fileno(), n, off + (addr & (PAGE - 1)))
        except OSError:
            return None
        return data if len(data) == n else None

    def close(self) -> None:
        self.f.close()


def iomem(path: str = "/proc/iomem") -> dict[str, list[tuple[int, int]]]:
    """{name: [(start, end exclusive)]} of /proc/iomem's top-level and kernel
    entries (root reads the real addresses)."""
    out: dict[str, list] = {}
    try:
        with open(path) as f:
            for line in f:
                m = re.match(r"\s*([0-9a-f]+)-([0-9a-f]+) : (.*)", line)
                if m:
                    out.setdefault(m.group(3).strip(), []).append((int(m.group(1), 16), int(m.group(2), 16) + 1))
    except OSError:
        pass
    return out


def kallsyms_symbol(names, path: str = "/proc/kallsyms") -> dict[str, int]:
    """Addresses of the kernel symbols ``names`` (the first of each)."""
    want, out = set(names), {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] in want and parts[2] not in out and len(parts) == 3:
                    out[parts[2]] = int(parts[0], 16)
    except OSError:
        pass
    return out


class PageTables:
    """Virtual -> physical through the kernel's page tables (x86-64, 4- or
    5-level), read with ``peek`` through the direct map at ``base``; whole
    tables are read once and kept until forget()."""

    def __init__(self, peek, base: int, pgd: int, levels: int):
        self.peek, self.base, self.pgd, self.levels = peek, base, pgd, levels
        self._tables: dict[int, np.ndarray | None] = {}

    def forget(self) -> None:
        """Drop the tables read: vmalloc maps and unmaps all the time (a
        task's stack comes and goes with it), so what was read for one scan
        is wrong for the next (tracer/scan.py calls it before each pass)."""
        self._tables.clear()

    def _table(self, va_of_table: int):
        if va_of_table not in self._tables:
            data = self.peek(va_of_table, PAGE)
            self._tables[va_of_table] = np.frombuffer(data, np.uint64) if data else None
        return self._tables[va_of_table]

    def phys(self, va: int) -> int | None:
        """The physical address of ``va``; None where nothing is mapped."""
        table = self.pgd
        shifts = (48, 39, 30, 21, 12) if self.levels == 5 else (39, 30, 21, 12)
        for level, shift in enumerate(shifts):
            entries = self._table(table)
            if entries is None:
                return None
            e = int(entries[(va >> shift) & 511])
            if not e & 1:
                return None
            last = level == len(shifts) - 1
            if not last and e & 0x80 and shift in (30, 21):  # a 1 GiB or 2 MiB page
                return (e & _PHYS_MASK & ~((1 << shift) - 1)) + (va & ((1 << shift) - 1))
            if last:
                return (e & _PHYS_MASK) + (va & 0xFFF)
            table = self.base + (e & _PHYS_MASK)
        return None

    def mapped(self, start: int, end: int) -> np.ndarray:
        """The PFNs of every page mapped in [start, end), a whole region
        walked table by table (only the tables that exist are read)."""
        shifts = (48, 39, 30, 21, 12) if self.levels == 5 else (39, 30, 21, 12)
        out: list = []

        def walk(table: int, level: int, base: int):
            entries = self._table(table)
            if entries is None:
                return
            shift = shifts[level]
            span = 1 << shift
            first = max(0, (start - base) >> shift) if start > base else 0
            last = min(511, (end - 1 - base) >> shift) if end - 1 >= base else -1
            for i in range(first, last + 1):
                e = int(entries[i])
                if not e & 1:
                    continue
                phys = e & _PHYS_MASK
                if level == len(shifts) - 1:
                    out.append(phys >> 12)
                elif e & 0x80 and shift in (30, 21):  # a 1 GiB or 2 MiB page
                    out.extend(range(phys >> 12, (phys >> 12) + (span >> 12)))
                else:
                    walk(self.base + phys, level + 1, base + i * span)
        # the top table's entry i maps i << its shift, sign-extended: 256 is the kernel half's first
        walk(self.pgd, 0, 0xFE00000000000000 if self.levels == 5 else 0xFFFF000000000000)
        return np.array(out, np.int64)

    def pfns(self, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """(virtual page addresses, their PFNs) of the mapped pages of [start, end)."""
        vas, pfns = [], []
        for va in range(start & ~(PAGE - 1), end, PAGE):
            p = self.phys(va)
            if p is not None:
                vas.append(va)
                pfns.append(p >> 12)
        return np.array(vas, np.uint64), np.array(pfns, np.uint64)


class KernelLayout:
    """Where things are in this kernel's address space (see the module docstring)."""

    def __init__(self, direct: int, vmemmap: int, pfns: int, levels: int, image_delta: int,
                 image: dict[str, list[tuple[int, int]]]):
        self.direct, self.vmemmap, self.pfns, self.levels = direct, vmemmap, pfns, levels
        self.image_delta = image_delta  # high-mapping address = physical + this
        self.image = image  # iomem's "Kernel code", "Kernel rodata", "Kernel data", "Kernel bss"

    @classmethod
    def find(cls, peek, sample: int, calib_offset: int, ratio: int, pfns: int) -> "KernelLayout | str":
        """The layout, or why it cannot be found. ``sample``: any direct-map
        address (a recorded slab object); ``calib_offset``, ``ratio``: va =
        struct page * ratio + calib_offset (layout.h: page_calib)."""
        mem = iomem()
        image = {k: mem[k] for k in ("Kernel code", "Kernel rodata", "Kernel data", "Kernel bss") if k in mem}
        syms = kallsyms_symbol(("_text", "_stext"))
        text = syms.get("_text") or syms.get("_stext")
        if not text or "Kernel code" not in image or "Kernel rodata" not in image:
            return "no kernel image in /proc/iomem or no _text in /proc/kallsyms"
        delta = text - image["Kernel code"][0][0]
        ram = [r for r in mem.get("System RAM", [])]
        top = max((e for _s, e in ram), default=pfns * PAGE)
        rodata = image["Kernel rodata"][0][0]
        probes = [rodata + k * (image["Kernel rodata"][0][1] - rodata) // 5 for k in range(4)]
        want = [peek(p + delta, 64) for p in probes]
        if any(w is None for w in want):
            return "the kernel image cannot be read"
        levels = 5 if sample < 0xFFFF800000000000 else 4
        base = sample & ~(GIB - 1)
        for k in range(top // GIB + 2):
            cand = base - k * GIB
            if all(peek(cand + p, 64) == w for p, w in zip(probes, want)):
                # va = page * ratio + offset wraps modulo 2**64: the quotient
                # gets back the top bits it lost (a kernel address's are ones)
                vmemmap = ((cand - calib_offset) % (1 << 64)) // ratio + (ratio - 1) * ((1 << 64) // ratio) \
                    if ratio else 0
                return cls(cand, vmemmap, pfns, levels, delta, image)
        return "the direct map's base was not found (no 1 GiB-aligned candidate shows the kernel's rodata)"

    def direct_of(self, pfn) -> int:
        return self.direct + int(pfn) * PAGE

    def pfn_of(self, addr: int) -> int | None:
        """The PFN of a direct-map address, None for another one."""
        if self.direct <= addr < self.direct + self.pfns * PAGE:
            return (addr - self.direct) // PAGE
        return None
