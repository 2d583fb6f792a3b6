"""The reference census: who holds the outstanding dentries, read from the
kernel's own counts, with no kprobes and nothing written to the kernel.

A dentry's d_lockref.count is its reference count: 0 cached (reclaimable),
>= 1 held. Most holders can be listed without kprobes, so each reference
can be explained or not:

- a struct file holds one on its f_path (fd tables, mappings, executables:
  the task_file, task_vma and task iterators list them, each file once);
- an fs_struct holds its pwd and its root (task iterator, each one once);
- each child holds its parent (d_alloc): pins_children counts the list;
- a mount holds its root, a mount point's struct mountpoint holds the
  dentry mounted on, a superblock its s_root (the mount namespaces' mounts,
  walked here with census_peek);
- an in-memory filesystem (tmpfs, ...) holds its files' dentries: named
  by the superblock's file_system_type, read here.

What is left, count less explained, is a reference nobody listed: a leak,
or a holder outside those lists (a kernel thread's private path, an fd in
flight in a unix socket, io_uring's registered files). The same accounting
is done for the mounts: a mount's count (the sum of its per-CPU mnt_count)
against its namespace's reference, its child mounts, and the files and
fs_structs on it.

A dentry is read only while its allocation is still recorded, checked in
the reading program before and after (probes.c: pins_read): an object whose
free the tracer saw is never read as live. Dentries whose free no event
showed (the slab census retires most before this runs) read as dead
(count < 0, lockref_mark_dead) and are counted apart.

Cost, measured with bench/census_scale.py: see README "Reference census".
"""

import ctypes
import struct

import numpy as np

from .. import layout
from ..analysis.pins import MountRow, RefCensus
from ..analysis.symbols import trim_allocator_frames
from . import bcc, catalog

__all__ = ["PinCensus", "PIN_DENTRY", "PIN_HOLDER"]

_D = layout.DEFINES
#: struct pin_dentry and struct pin_holder (layout.h) as numpy records
PIN_DENTRY = layout.dtype("pin_dentry")
PIN_HOLDER = layout.dtype("pin_holder")
_MAX_MOUNTS = 100_000
_MAX_DEPTH = 32  # path components named for an unexplained dentry
_MAX_CHILD_RUNS = 256  # PIN_CHILDREN_MAX children a run


class PinCensus:
    """The reference census of a started session.Session whose plan has ``pins``;
    ``census`` is its slab census.Census (kernel reads, per-CPU offsets)."""

    def __init__(self, session, reader, census):
        self.session, self.reader, self.census = session, reader, census
        self.fds = session.prog_fds
        self.mount_off = session.plan.pins["mount"]
        self.ns_off = session.plan.pins["ns"]
        self._views = None
        self.baseline: dict | None = None  # struct mount -> unexplained at the first census
        self._fs_names: dict[int, str | None] = {}

    def close(self) -> None:
        for view in self._views or ():
            view.close()
        self._views = None

    # -- the dentries' own counts ------------------------------------------------

    def _arrays(self):
        if self._views is None:
            def view(name, itemsize):
                return self.session.mmap(name, itemsize, _D["PIN_BATCH"], writable=True)
            self._views = (view("pin_in", 8), view("pin_out", PIN_DENTRY.itemsize))
        return self._views

    def read(self, addrs: np.ndarray) -> np.ndarray:
        """pins_read over ``addrs``: one PIN_DENTRY record each."""
        src, dst = self._arrays()
        batch = _D["PIN_BATCH"]
        out = np.zeros(len(addrs), PIN_DENTRY)
        inp = np.frombuffer(src, np.uint64, count=batch)
        res = np.frombuffer(dst, PIN_DENTRY, count=batch)
        for at in range(0, len(addrs), batch):
            n = min(batch, len(addrs) - at)
            inp[:n] = addrs[at:at + n]
            res[:n] = np.zeros(1, PIN_DENTRY)  # PIN_GONE, should a run not get there
            run = _D["PIN_RUN"]
            for start in range(0, n, run):
                # 0 read, 1 or 2 refused: the entries stay PIN_GONE, unread
                bcc.test_run(self.fds["pins_read"], [start, min(run, n - start)])
            out[at:at + n] = res[:n]
        del inp, res
        return out

    def children(self, dentry: int) -> int:
        """How many children ``dentry`` has (each holds a reference on it)."""
        walk = self.session.map("pin_walk")
        total, at = 0, 0
        for _ in range(_MAX_CHILD_RUNS):
            if bcc.test_run(self.fds["pins_children"], [dentry, at]) != 0:
                break
            got = walk[ctypes.c_int(0)]
            total += got.count
            at = got.next
            if not at:
                break
        return total

    # -- the holders ---------------------------------------------------------------

    def holders(self) -> np.ndarray:
        """Every holder the iterators list, as PIN_HOLDER records (a holder
        seen through several tasks is listed several times)."""
        data = b"".join(bcc.iterate(self.fds[p.program]) for p in catalog.PROBES if p.attach == catalog.ITER)
        return np.frombuffer(data, PIN_HOLDER, count=len(data) // PIN_HOLDER.itemsize)

    def mounts(self, namespaces) -> list[MountRow]:
        """The mounts of the mount namespaces ``namespaces``, with their counts."""
        seen: dict[int, MountRow] = {}
        for ns in namespaces:
            for m in self._ns_mounts(int(ns)):
                if m not in seen and len(seen) < _MAX_MOUNTS:
                    row = self._mount(m)
                    if row:
                        seen[m] = row
        return list(seen.values())

    def _ns_mounts(self, ns: int):
        u64 = self.census.u64
        if "ns_mounts" in self.ns_off:  # 6.8+: an rbtree by mnt_node
            stack, node, n = [], u64(ns + self.ns_off["ns_mounts"]), 0
            while (stack or node) and n < _MAX_MOUNTS:
                while node and len(stack) < 64:
                    stack.append(node)
                    node = u64(node + self.ns_off["rb_left"])
                node = stack.pop()
                n += 1
                yield node - self.ns_off["node"]
                node = u64(node + self.ns_off["rb_right"])
        else:  # a circular list by mnt_list
            head = ns + self.ns_off["ns_list"]
            at = u64(head)
            for _ in range(_MAX_MOUNTS):
                if not at or at == head:
                    return
                yield at - self.ns_off["link"]
                at = u64(at)

    def _mount(self, m: int) -> MountRow | None:
        o = self.mount_off
        span = max(o["mnt"] + max(o["root"], o["sb"]), o["parent"], o["mountpoint"], o["pcp"], o["ns"]) + 8
        data = self.census.peek(m, span)
        if data is None:
            return None

        def at(off):
            return struct.unpack_from("<Q", data, off)[0]
        pcp, count = at(o["pcp"]), 0
        for off in self.census.cpu_offsets().values():
            base = (pcp + off) & (2**64 - 1)
            if "count" in o:  # mnt_count, up to 6.x
                raw = self.census.peek(base + o["count"], 4)
                count += struct.unpack("<i", raw)[0] if raw else 0
            else:  # 7.x: mnt_gets less mnt_puts
                gets, puts = (self.census.peek(base + o[k], 4) for k in ("gets", "puts"))
                count += struct.unpack("<I", gets)[0] - struct.unpack("<I", puts)[0] if gets and puts else 0
        count = (count + 2**31) % 2**32 - 2**31  # the counters wrap: their sum is a signed 32-bit count
        sb = at(o["mnt"] + o["sb"])
        return MountRow(mount=m, root=at(o["mnt"] + o["root"]), sb=sb, s_root=self.census.u64(sb + o["s_root"]) or 0,
                        parent=at(o["parent"]), mountpoint=at(o["mountpoint"]), attached=bool(at(o["ns"])),
                        count=count)

    def fs_name(self, sb: int) -> str | None:
        """The name of superblock ``sb``'s filesystem type ("tmpfs"), cached."""
        if sb not in self._fs_names:
            o = self.mount_off
            fstype = self.census.u64(sb + o["s_type"])
            ptr = self.census.u64(fstype + o["fs_name"]) if fstype else None
            raw = self.census.peek(ptr, 32) if ptr else None
            self._fs_names[sb] = raw.split(b"\0", 1)[0].decode(errors="replace") if raw else None
        return self._fs_names[sb]

    def dentry_path(self, dentry: int) -> str:
        """``dentry``'s path from its filesystem's root (its parents are pinned by it)."""
        parent_off = self.session.plan.pins["dentry"]["parent"]
        name_off = self.session.plan.pins["dentry"]["name"]
        parts, at = [], dentry
        for _ in range(_MAX_DEPTH):
            parent = self.census.u64(at + parent_off)
            if not parent or parent == at:
                break
            ptr = self.census.u64(at + name_off)
            raw = self.census.peek(ptr, 256) if ptr else None
            parts.append(raw.split(b"\0", 1)[0].decode(errors="replace") if raw else "?")
            at = parent
        else:
            parts.append("...")
        return "/" + "/".join(reversed(parts))

    # -- all of it -------------------------------------------------------------------

    def run(self, min_age_ns: int, symbolizer, dentries: bool = True) -> RefCensus:
        """The census of the dentries recorded at least ``min_age_ns`` ago
        (none with ``dentries`` false: the mounts alone)."""
        caches, site_stacks = self.reader.sites()
        dentry_caches = {ptr for ptr, (name, _size) in caches.items() if name == "dentry"} if dentries else ()
        addrs, keys = self.reader.records.cache_records(dentry_caches, min_age_ns) if dentry_caches else \
            (np.zeros(0, np.uint64), np.zeros((0, 1), np.uint64))
        read = self.read(addrs)
        holders = self.holders()
        namespaces = np.unique(holders["holder"][holders["kind"] == layout.ENUMS["pin_kind"]["PIN_MNT_NS"]])
        stacks: dict[bytes, list[str]] = {}

        def stack_of(i: int) -> list[str]:
            key = keys[i].tobytes()
            if key not in stacks:
                sid = self.reader.stack_id(self.reader.decode_key(key), site_stacks)
                raw = symbolizer.raw_frames(sid) if sid >= 0 else None
                stacks[key] = trim_allocator_frames(raw or ["[stack lost]"])
            return stacks[key]
        census = RefCensus.build(addrs, read, holders, self.mounts(namespaces), children=self.children,
                              path=self.dentry_path, stack=stack_of, mnt_of=lambda m: m + self.mount_off["mnt"],
                              child_mounts_pin=self.session.plan.pins["child_mounts_pin"], baseline=self.baseline,
                              fs_name=self.fs_name)
        if self.baseline is None:
            self.baseline = census.mounts_unexplained
        return census

    def start(self, symbolizer) -> None:
        """The first census, taken as the session starts: the mounts' baseline."""
        self.run(0, symbolizer, dentries=False)
