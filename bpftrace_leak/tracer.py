"""A tracing session: compile probes.c, attach it, read the live map, detach.

The session is a context manager; leaving it (normally, on an exception, on
Ctrl-C or on the SIGTERM handler cli.py installs) detaches every program.
"""

import contextlib
import ctypes
import mmap
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field

from . import kernel, layout
from .errors import KleakError
from .groups import Obj, kmalloc_cache_name
from .headers import find_headers
from .livemap import aggregate, decode, read_values, slot_records, value_records
from .progstats import recursion_misses
from .refs import WHY_TEXT, RefHold

__all__ = ["Options", "Snapshot", "Tracer", "check_privileges"]

PROBES_C = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probes.c")


_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39

SITE_MARK_BITS = 16
PAGE_SLOTS = 1 << 16  # kernel pages outstanding at once, beyond which they spill to the hash
_GOLDEN = 0x9E3779B97F4A7C15
_U64 = (1 << 64) - 1


def site_mark(call_site: int, cache: int, kind: int) -> tuple[int, int]:
    """(index, tag) of a call site in probes.c's site_marks; the same hash as its site_hash()."""
    h = ((call_site ^ (cache >> 3) ^ ((kind << 56) & _U64)) * _GOLDEN) & _U64
    return h >> (64 - SITE_MARK_BITS), h & ~layout.DEFINES["SITE_MARK_STATE"]


@dataclass
class Options:
    targets: list[int]  # tgids; empty: system-wide
    children: bool = False
    user_pages: bool = False
    max_objects: int = 1_000_000
    stack_slots: int = 16384
    free_copies: int = 2
    kernel_headers: str | None = None
    allocs: bool = True  # --kinds: allocation tracking
    refs: bool = True  # --kinds: reference-count tracking, where the kernel allows it
    refs_via: str = "auto"  # --refs-via: fentry, kprobe, or auto (fentry where the kernel allows it)
    max_refs: int = 65536
    stacks: str = "sites"  # "sites": a stack per call site until promoted; "all": one per allocation
    max_sites: int = 65536


@dataclass
class Snapshot:
    """What the kernel side holds at one instant."""

    now_ns: int  # CLOCK_MONOTONIC, same clock as bpf_ktime_get_ns()
    objects: list[Obj]
    counters: dict[str, int]  # layout.COUNTERS names without CNT_, lower case
    skipped_frees: int
    ref_holds: list = field(default_factory=list)  # refs.RefHold


def check_privileges() -> None:
    """Raise unless we may load tracing BPF programs (root, or CAP_BPF + CAP_PERFMON)."""
    if os.geteuid() == 0:
        return
    try:
        with open("/proc/self/status") as f:
            caps = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    except (OSError, StopIteration):
        caps = 0
    has = lambda bit: bool(caps & (1 << bit))  # noqa: E731
    if has(_CAP_SYS_ADMIN) or (has(_CAP_BPF) and has(_CAP_PERFMON)):
        return
    raise KleakError("kleaktrace needs root (or CAP_BPF and CAP_PERFMON): run it with sudo")


def _import_bcc():
    try:
        import bcc  # noqa: F401
        from bcc import BPF
        from bcc.libbcc import lib
    except ImportError:
        raise KleakError(
            "BCC's Python module is missing (apt-get install python3-bpfcc, "
            "and run kleaktrace with the system python3)"
        ) from None
    return BPF, lib


def _manual_kfuncs(BPF):
    """BPF that leaves kfunc__ programs unattached on load: BCC would attach
    them and raise where the kernel refuses fentry, losing the compiled
    module; the tracer attaches them itself, with kprobes as the fallback."""
    class ManualKfuncBPF(BPF):
        def _trace_autoload(self):
            self.attach_kfunc = lambda fn_name=b"": self
            try:
                super()._trace_autoload()
            finally:
                del self.attach_kfunc
    return ManualKfuncBPF


@contextlib.contextmanager
def captured_stderr():
    """Collect what C code writes to fds 1 and 2 (BCC's compiler and verifier
    output; it prints some of its complaints on stdout).

    Yields a list that holds the captured text once the block ends.
    """
    sink: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            sink.append(tmp.read().decode(errors="replace"))


def bcc_failure(exc: Exception, log: str) -> str:
    """One line from BCC's exception and its compiler/verifier log."""
    detail = next((ln.strip() for ln in log.splitlines() if "error:" in ln), "")
    if not detail:
        detail = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "")
    head = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return f"{head}: {detail}" if detail and detail not in head else head


def _release_compiler_memory() -> None:
    """Give back to the system what BCC's in-process LLVM freed (a session
    runs for hours; its compile peak need not stay resident)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class Tracer:
    """One attached set of probes. Use as ``with Tracer(opts) as t: t.snapshot()``."""

    def __init__(self, opts: Options, warn=None):
        self.opts = opts
        self.warn = warn or (lambda m: None)
        self.bpf = None
        self._raw_fds: list[int] = []
        self._free_progs: dict[str, list[int]] = {}  # raw event -> prog fds of its copies
        self._raw_progs: dict[str, int] = {}  # raw allocation event -> prog fd
        self.attached: list[str] = []
        self.missing: list[str] = []
        self.notes: list[str] = []  # what this kernel keeps from being seen, said once
        self._bulk_kprobe = False
        self.refs_method: str | None = None  # "fentry" or "kprobe" once reference tracking is attached
        self.refs_unavailable: str | None = None
        self._refs_ways: dict[str, str | None] = {}  # "fentry"/"kprobe" -> why not, None if worth trying
        self.started_ns = 0
        self.slot_bits = max(10, (opts.max_objects - 1).bit_length()) if opts.allocs else 10
        self._slot_maps: dict[str, tuple] = {}  # array name -> (mmap, slots)
        self._site_aged: dict[tuple, int] = {}  # call site -> aged objects under its first stack

    # -- set-up --------------------------------------------------------------

    def _cflags(self) -> list[str]:
        o = self.opts
        flags = [
            f"-I{os.path.dirname(PROBES_C)}",
            # slab objects: an array of a power of two slots, pages a small one,
            # the rest (other spaces, objects whose slot was taken) a hash of half
            f"-DSLOT_BITS={self.slot_bits}",
            f"-DSLOT_COUNT={1 << self.slot_bits}",
            f"-DPAGE_SLOT_COUNT={PAGE_SLOTS}",
            f"-DMAX_OBJECTS={max(1024, o.max_objects // 2) if o.allocs else 1024}",
            f"-DSTACK_SLOTS={o.stack_slots}",
            f"-DTARGET_WORDS={-(-kernel.pid_max() // 64)}",
            f"-DMAX_SITES={o.max_sites}",
            f"-DSITE_MARK_BITS={SITE_MARK_BITS}",
            f"-DSITE_MARK_SLOTS={1 << SITE_MARK_BITS}",
            f"-DPAGE_BYTES={os.sysconf('SC_PAGE_SIZE')}",
        ]
        if o.stacks == "sites":
            flags.append("-DSTACKS_AT_SITES")
        if o.targets:
            flags.append("-DFILTER_TARGETS")
        if o.children:
            flags.append("-DTRACE_CHILDREN")
        if o.user_pages:
            flags.append("-DINCLUDE_USER_PAGES")
        hardwall = kernel.gfp_bit("__GFP_HARDWALL")
        if hardwall is None:
            self.warn("cannot find __GFP_HARDWALL in mm_page_alloc's format: user pages not told apart")
            hardwall = 0
        flags.append(f"-DUSER_PAGE_GFP={hardwall:#x}")
        if o.allocs:
            flags += ["-DTRACK_ALLOCS"] + self._raw_alloc_cflags()
        for event in kernel.ALLOC_EVENTS if o.allocs else ():
            fields = kernel.event_fields(event)
            if fields is None:
                self.missing.append(event)
                continue
            system, name = event.split("/")
            flags.append(f"-DHAVE_TP_{system}_{name}")
            self.attached.append(event)
            for fname in fields:
                flags.append(f"-DHAVE_FIELD_{name}_{fname}")
        if self.opts.children:
            if kernel.event_fields("sched/sched_process_fork") is None:
                raise KleakError("--children needs the sched:sched_process_fork tracepoint, absent here")
        if o.refs:
            flags += self._refs_cflags()
        return flags

    def _raw_alloc_cflags(self) -> list[str]:
        """Argument positions of the raw allocation events, and the struct
        kmem_cache offsets, from the running kernel's BTF."""
        from .btf import Btf, BtfError
        try:
            btf = Btf.load()
            flags = [f"-DKMEM_CACHE_SIZE_OFF={btf.offset('kmem_cache', 'size')}",
                     f"-DKMEM_CACHE_NAME_OFF={btf.offset('kmem_cache', 'name')}"]
            for event, (_prog, prefix, names) in kernel.RAW_ALLOC_EVENTS.items():
                if event not in kernel.REQUIRED_EVENTS and kernel.event_fields(event) is None:
                    self.missing.append(event)
                    continue
                params = btf.params(f"__bpf_trace_{event.split('/')[1]}")[1:]  # after the tracepoint's __data
                for name in names:
                    if name in params:
                        flags.append(f"-D{prefix}_ARG_{name}={params.index(name)}")
                if prefix == "CACHE_ALLOC" and "s" not in params and "bytes_alloc" not in params:
                    raise BtfError(f"{event}'s arguments {params} name neither its cache nor its size")
                if prefix.startswith("PAGE") and "page" not in params:
                    raise BtfError(f"{event}'s arguments {params} have no page")
        except BtfError as e:
            raise KleakError(f"cannot locate the allocation tracepoints' arguments: {e} "
                             "(kleaktrace needs kernel BTF, CONFIG_DEBUG_INFO_BTF)") from None
        return flags

    def _refs_cflags(self) -> list[str]:
        """-D flags for TRACK_REFS (REFS_FENTRY too where fentry may work),
        or [] with ``refs_unavailable`` saying why."""
        funcs = ("path_get", "path_put")
        via = self.opts.refs_via
        # one read of kallsyms: fentry's check and the probes' address ranges
        ranges = kernel.function_ranges(funcs + ("do_dentry_open", "vfs_open", kernel.TRAMPOLINE_SYMBOL))
        ways = {"kprobe": kernel.kprobe_unavailable(funcs) if via != "fentry" else "not chosen",
                "fentry": kernel.fentry_unavailable(funcs, ranges=ranges) if via != "kprobe" else "not chosen"}
        self._refs_ways = ways
        if ways["kprobe"] and ways["fentry"]:
            return self._refs_off(self._refs_why())
        try:
            from .btf import Btf, BtfError
            btf = Btf.load()
            offsets = {
                "PATH_MNT_OFF": btf.offset("path", "mnt"),
                "PATH_DENTRY_OFF": btf.offset("path", "dentry"),
                "DENTRY_NAME_OFF": btf.offset("dentry", "d_name.name"),
                "MOUNT_MNT_OFF": btf.offset("mount", "mnt"),
                "MOUNT_MOUNTPOINT_OFF": btf.offset("mount", "mnt_mountpoint"),
            }
        except BtfError as e:
            return self._refs_off(f"no usable kernel BTF for struct offsets ({e})")
        flags = ["-DTRACK_REFS", f"-DMAX_REFS={self.opts.max_refs}"]
        flags += [f"-D{k}={v}" for k, v in offsets.items()]
        if ways["fentry"] is None:
            flags.append("-DREFS_FENTRY")
        for fn in funcs:
            start, end = ranges.get(fn, [(0, 0)])[0]
            flags += [f"-D{fn.upper()}_START={start:#x}ULL", f"-D{fn.upper()}_END={end:#x}ULL"]
        # a struct file's own f_path reference: see probes.c, ignored_caller
        ignored = ranges.get("do_dentry_open", []) + ranges.get("vfs_open", [])
        for i, (start, end) in enumerate(ignored[:3]):
            flags += [f"-DIGNORE_CALLER_START_{i}={start:#x}ULL", f"-DIGNORE_CALLER_END_{i}={end:#x}ULL"]
        return flags

    def _refs_why(self) -> str:
        """Why neither fentry nor kprobes (or not the one --refs-via chose) carry
        reference tracking; kprobes' reason first."""
        if self.opts.refs_via != "auto":
            return self._refs_ways[self.opts.refs_via]
        return f"{self._refs_ways['kprobe']}, and {self._refs_ways['fentry']}"

    def _refs_off(self, why: str) -> list[str]:
        self.refs_unavailable = why
        self.notes.append(f"reference-count tracking unavailable: {why}; tracing allocations only"
                          if self.opts.allocs else f"reference-count tracking unavailable: {why}")
        return []

    def _attach_refs(self) -> None:
        """fentry on path_get/path_put where the kernel permits it, kprobes
        otherwise; ``refs_method`` says which, ``refs_unavailable`` why neither."""
        ways = self._refs_ways
        if ways["fentry"] is None:
            try:
                with captured_stderr() as log:
                    for fn in ("path_get", "path_put"):
                        self.bpf.attach_kfunc(fn_name=fn.encode())
                self.attached += ["fentry/path_get", "fentry/path_put"]
                self.refs_method = "fentry"
                return
            except Exception as e:  # BCC raises bare Exception; errno says what the kernel said
                err = ctypes.get_errno()
                for fn in list(self.bpf.kfunc_entry_fds):
                    self.bpf.detach_kfunc(fn_name=fn)
                ways["fentry"] = (f"the kernel refuses fentry ({os.strerror(err)})" if err
                                  else f"fentry failed ({bcc_failure(e, ''.join(log))})")
        if ways["kprobe"] is None:
            try:
                with captured_stderr() as log:
                    self.bpf.attach_kprobe(event="path_get", fn_name="ref_path_get")
                    self.bpf.attach_kprobe(event="path_put", fn_name="ref_path_put")
                self.attached += ["kprobe/path_get", "kprobe/path_put"]
                self.refs_method = "kprobe"
                if self.opts.refs_via == "auto" and ways["fentry"]:
                    self.notes.append(f"reference counts via kprobes: {ways['fentry']}")
                return
            except Exception as e:
                for event in ("path_get", "path_put"):
                    with contextlib.suppress(Exception):
                        self.bpf.detach_kprobe(event=event)
                ways["kprobe"] = f"kprobes refused ({bcc_failure(e, ''.join(log))})"
        self._refs_off(self._refs_why())

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self) -> None:
        check_privileges()
        BPF, lib = _import_bcc()
        kernel.ensure_tracefs()
        for event in kernel.REQUIRED_EVENTS if self.opts.allocs else ():
            if kernel.event_fields(event) is None:
                raise KleakError(f"tracepoint {event.replace('/', ':')} is missing from this kernel")
        headers = find_headers(self.opts.kernel_headers, warn=self.warn)
        if headers:
            os.environ["BCC_KERNEL_SOURCE"] = headers
        cflags = self._cflags()
        if not self.opts.allocs and self.refs_unavailable:
            raise KleakError(f"--kinds refs: reference-count tracking unavailable: {self.refs_unavailable}")
        try:
            with captured_stderr() as log:
                self.bpf = _manual_kfuncs(BPF)(src_file=PROBES_C.encode(), cflags=cflags)
        except Exception as e:  # BCC raises bare Exception for compile and load errors
            raise KleakError(f"cannot load the BPF programs: {bcc_failure(e, ''.join(log))}") from None
        _release_compiler_memory()
        try:
            if self.opts.allocs:
                for event, (prog, _prefix, _args) in kernel.RAW_ALLOC_EVENTS.items():
                    if event in self.missing:
                        continue
                    self._raw_progs[event] = self._attach_raw(BPF, lib, prog, event.split("/")[1])
                    self.attached.append(event)
                self._attach_raw_frees(BPF, lib)
                self._attach_bulk_frees()
            if self.opts.refs and self.refs_unavailable is None:
                self._attach_refs()
                if not self.opts.allocs and self.refs_unavailable:
                    raise KleakError(f"--kinds refs: reference-count tracking unavailable: {self.refs_unavailable}")
            if self.opts.targets:
                self._attach_irq_state(BPF, lib)
            for pid in self.opts.targets:
                self.add_target(pid)
        except BaseException:
            self.close()
            raise
        self.started_ns = time.monotonic_ns()

    def _attach_raw_frees(self, BPF, lib) -> None:
        copies = max(1, min(self.opts.free_copies, layout.DEFINES["FREE_COPIES"]))
        for event in kernel.FREE_RAW_EVENTS:
            name = event.split("/")[1]
            fds = []
            for n in range(copies):
                fds.append(self._attach_raw(BPF, lib, f"free_{name}_{n}", name))
            self._free_progs[event] = fds
            self.attached.append(event)

    def _attach_bulk_frees(self) -> None:
        reason = kernel.kprobe_unavailable(kernel.BULK_FREE_FUNCTIONS)
        if reason is None:
            try:
                with captured_stderr():
                    for fn in kernel.BULK_FREE_FUNCTIONS:
                        self.bpf.attach_kprobe(event=fn, fn_name="free_bulk")
                        self.attached.append(f"kprobe/{fn}")
                self._bulk_kprobe = True
                return
            except Exception as e:
                reason = f"kprobe refused ({str(e).strip().splitlines()[-1] if str(e).strip() else e})"
        self.notes.append(
            f"bulk frees not seen ({reason}): objects freed by kmem_cache_free_bulk, "
            "e.g. batched kfree_rcu, stay outstanding until their address is reused")

    def _attach_raw(self, BPF, lib, fn_name: str, event: str) -> int:
        fn = self.bpf.load_func(fn_name.encode(), BPF.RAW_TRACEPOINT)
        # bcc's attach_raw_tracepoint() refuses a second program on one event
        link = lib.bpf_attach_raw_tracepoint(fn.fd, event.encode())
        if link < 0:
            raise KleakError(f"cannot attach raw tracepoint {event}: {os.strerror(ctypes.get_errno() or 1)}")
        self._raw_fds.append(link)
        return fn.fd

    def _attach_irq_state(self, BPF, lib) -> None:
        for event in kernel.IRQ_RAW_EVENTS:
            name = event.split("/")[1]
            if kernel.event_fields(event) is None:
                self.warn(f"{event.replace('/', ':')} missing: allocations in interrupts may be charged to targets")
                continue
            self._attach_raw(BPF, lib, f"irq_{name}", name)

    def add_target(self, pid: int) -> None:
        words = self.bpf["targets"]
        word = ctypes.c_int(pid // 64)
        words[word] = ctypes.c_uint64(words[word].value | (1 << (pid % 64)))

    def close(self) -> None:
        """Detach everything; safe to call twice."""
        for fd in self._raw_fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self._raw_fds = []
        for view, _count in self._slot_maps.values():
            view.close()
        self._slot_maps = {}
        if self.bpf is not None:
            bpf, self.bpf = self.bpf, None
            bpf.cleanup()

    # -- reading -------------------------------------------------------------

    def counters(self) -> dict[str, int]:
        table = self.bpf["counters"]
        out = {}
        for name, idx in layout.COUNTERS.items():
            if name.startswith("NR_"):
                continue
            out[name[len("CNT_"):].lower()] = sum(table[ctypes.c_int(idx)])
        return out

    def skipped_frees(self) -> int:
        """Free events no program saw (an upper bound, see probes.c's free_copy).

        A raw free event is lost when every copy skipped it: copy 0's misses
        less those a later copy covered. The perf-event free programs run
        alone: each of their misses is a lost free.
        """
        total = 0
        covered = self.bpf["free_covered"]
        for event, fds in self._free_progs.items():
            idx = layout.FREE_EVENTS["FREE_EV_" + event.split("/")[1].upper()]
            total += max(0, recursion_misses(fds[0]) - sum(covered[ctypes.c_int(idx)]))
        for event in ("kmem/mm_page_free", "kmem/mm_page_free_batched"):
            if event in self._raw_progs:
                total += recursion_misses(self._raw_progs[event])
        for event in ("percpu/percpu_free_percpu", "vmalloc/free_vmap_area_noflush"):
            if event in self.attached:
                fn = self.bpf.funcs.get(("tracepoint__" + event.replace("/", "__")).encode())
                if fn is not None:
                    total += recursion_misses(fn.fd)
        if self._bulk_kprobe:
            total += recursion_misses(self.bpf.funcs[b"free_bulk"].fd)
        return total

    def ref_holds(self) -> list[RefHold]:
        """Unbalanced path_get()s: leaked by a put on a cleared path, or not put yet."""
        if self.refs_method is None:
            return []
        holds = []
        for key, leak in self.bpf["ref_leaks"].items():
            holds.append(RefHold(
                object_type="dentry" if key.type == layout.REF_OBJECTS["REF_DENTRY"] else "vfsmount",
                object=key.object, refs=leak.refs, name=leak.name.decode(errors="replace"),
                tgid=key.tgid, comm=leak.comm.decode(errors="replace"), stack_id=key.get_stack,
                ts_ns=leak.ts_ns, why=WHY_TEXT[key.why], put_stack_id=leak.put_stack))
        for _p, rec in self.bpf["path_gets"].items():
            for otype, obj, name in (("dentry", rec.dentry, rec.dentry_name), ("vfsmount", rec.mnt, rec.mnt_name)):
                if obj:
                    holds.append(RefHold(
                        object_type=otype, object=obj, refs=rec.count, name=name.decode(errors="replace"),
                        tgid=rec.tgid, comm=rec.comm.decode(errors="replace"), stack_id=rec.stack_id,
                        ts_ns=rec.ts_ns, why=WHY_TEXT[layout.REF_WHY["WHY_NEVER_PUT"]]))
        return holds

    def _aged_rows(self, min_age_ns: int) -> tuple[int, list]:
        """(now, LiveRows of objects at least ``min_age_ns`` old)."""
        from bcc.libbcc import lib
        live = self.bpf["live"]
        leaf = live.Leaf
        size = ctypes.sizeof(leaf)
        if not self._slot_maps:
            for name, count in (("slots", 1 << self.slot_bits), ("page_slots", PAGE_SLOTS)):
                table = self.bpf[name]
                length = -(-ctypes.sizeof(table.Leaf) * count // mmap.PAGESIZE) * mmap.PAGESIZE
                self._slot_maps[name] = (mmap.mmap(table.map_fd, length, mmap.MAP_SHARED, mmap.PROT_READ), count)
        now = time.monotonic_ns()
        cutoff = now - min_age_ns
        rows: dict = {}
        for name, (view, count) in self._slot_maps.items():
            aggregate(slot_records(view, count, ctypes.sizeof(self.bpf[name].Leaf), size), cutoff, rows)
        try:
            for chunk in read_values(lib, live.map_fd, ctypes.sizeof(live.Key), size):
                aggregate(value_records(chunk, size), cutoff, rows)
        except OSError:  # no batched lookups (kernels before 5.6): one entry at a time
            aggregate(value_records(b"".join(bytes(v) for v in live.values()), size), cutoff, rows)
        return now, decode(rows, leaf)

    def _read_sites(self) -> tuple[dict[int, tuple[str, int]], dict[tuple, int]]:
        """({struct kmem_cache address: (name, object size)},
        {(call_site, cache, kind): first stack id})."""
        caches, stacks = {}, {}
        for key, site in self.bpf["sites"].items():
            stacks[(key.call_site, key.cache, key.kind)] = site.stack_id
            if key.cache and site.cache[:1]:
                caches[key.cache] = (site.cache.decode(errors="replace"), site.bytes)
        return caches, stacks

    def comm(self, tgid: int) -> str:
        """A process's name: from the kernel if it exited while traced, else /proc."""
        exited = self.bpf["exited_comms"]
        try:
            return exited[ctypes.c_uint32(tgid)].comm.decode(errors="replace")
        except KeyError:
            pass
        try:
            with open(f"/proc/{tgid}/comm") as f:
                return f.read().strip()
        except OSError:
            return "?"

    def promote(self, rows) -> int:
        """Give every later allocation at a growing call site its own stack.

        A site is growing when it holds more aged objects under its first
        stack than at the previous call: those are leak candidates whose real
        stacks may differ from the one first seen there. Returns the number
        of sites promoted now.
        """
        if self.opts.stacks != "sites":
            return 0
        site_how = layout.STACK_HOW["STACK_SITE"]
        aged: dict[tuple, int] = {}
        for r in rows:
            if r.stack_how == site_how:
                key = (r.call_site, r.cache, r.kind)
                aged[key] = aged.get(key, 0) + r.count
        grown = [k for k, n in aged.items() if n > self._site_aged.get(k, 0) and k in self._site_aged]
        self._site_aged = aged
        table, marks = self.bpf["sites"], self.bpf["site_marks"]
        promoted = layout.DEFINES["SITE_MARK_PROMOTED"]
        for call_site, cache, kind in grown:
            key = table.Key(call_site=call_site, cache=cache, kind=kind)
            try:
                site = table[key]
            except KeyError:
                continue
            site.promoted = 1
            table[key] = site
            idx, tag = site_mark(call_site, cache, kind)
            slot = ctypes.c_int(idx)
            if marks[slot].value & ~layout.DEFINES["SITE_MARK_STATE"] == tag:
                marks[slot] = ctypes.c_uint64(tag | promoted)
        return len(grown)

    def tick(self, min_age_ns: int) -> None:
        """Between reports: promote growing call sites (see promote())."""
        if self.opts.allocs:
            self.promote(self._aged_rows(min_age_ns)[1])

    def snapshot(self, min_age_ns: int = 0) -> Snapshot:
        """What is outstanding, objects younger than ``min_age_ns`` left out."""
        if self.opts.allocs:
            now, rows = self._aged_rows(min_age_ns)
            self.promote(rows)
            caches, site_stacks = self._read_sites()
        else:
            now, rows, caches, site_stacks = time.monotonic_ns(), [], {}, {}
        objs = []
        kmalloc, slab = layout.KINDS["KIND_KMALLOC"], layout.KINDS["KIND_SLAB"]
        site_how = layout.STACK_HOW["STACK_SITE"]
        comms: dict[int, str] = {}
        for r in rows:
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
            at_site = r.stack_how == site_how
            stack_id = site_stacks.get((r.call_site, r.cache, r.kind), -1) if at_site else r.stack_id
            objs.append(Obj(kind=layout.KIND_NAMES.get(r.kind, str(r.kind)), cache=cache, bytes=size,
                            ts_ns=r.oldest_ts_ns, tgid=r.tgid, comm=comms[r.tgid], stack_id=stack_id,
                            call_site=r.call_site, count=r.count, site_stack=at_site))
        return Snapshot(now, objs, self.counters(), self.skipped_frees() if self.opts.allocs else 0,
                        self.ref_holds())

    def symbolizer(self):
        from .symbols import Symbolizer
        return Symbolizer(self.bpf["stacks"], self.bpf.ksym)
