"""A tracing session: read the kernel's facts, plan, compile probes.c, attach
the plan's probes in order, and always detach.

The session is a context manager; leaving it (normally, on an exception, or
on a signal the live loop turns into its end) detaches every program: raw
tracepoint links are closed, kprobes and fentry links removed, and BCC's
module (its maps) released.
"""

import contextlib
import ctypes
import mmap
import os

from ..errors import KleakError
from ..kernel import check_privileges
from ..kernel.facts import read_facts
from ..kernel.headers import find_headers
from ..kernel.tracefs import ensure_tracefs
from . import bcc, catalog
from .catalog import FENTRY, ITER, KPROBE, RAW, RUN, TAIL
from ..layout import PACKAGE, PROBES_C
from .clock import KernelClock
from .plan import ENUMS, FUNCTIONS, KFUNCS, PERCPU, PERCPU_OPTIONAL, STRUCTS, TYPES, plan
from .refs_plan import ref_probes, refs_why

__all__ = ["Session"]


def _zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


class Session:
    """One attached set of probes for ``config``; ``targets``: the tgids traced
    (empty: every process). ``with Session(config, targets) as s: ...``"""

    def __init__(self, config, targets, warn=None, cgroup_ids=()):
        self.config = config
        self.targets = list(targets)
        self.cgroup_ids = list(cgroup_ids)  # --cgroup: their kernfs ids, descendants included
        self.warn = warn or (lambda m: None)
        self.module = None  # BCC's BPF object: the maps, the loaded programs
        self.plan = None
        self.attached: list[str] = []
        self.prog_fds: dict[str, int] = {}  # program name -> fd, for bpf_prog_info
        self.clock: KernelClock | None = None
        self.refs_method: str | None = None  # "fentry" or "kprobe" once reference tracking is attached
        self._links: list[int] = []
        self._kprobes: list[str] = []
        self._fentries: list[str] = []
        self.views: list = []  # mmap()ed BPF arrays (mmap())

    @property
    def missing(self) -> list[str]:
        return self.plan.missing if self.plan else []

    @property
    def notes(self) -> list[str]:
        return self.plan.notes if self.plan else []

    @property
    def refs_unavailable(self) -> str | None:
        return self.plan.refs_unavailable if self.plan else None

    @property
    def refs_tracking(self) -> str:
        """The report's refs_tracking: off, fentry, kprobe or "unavailable: why"."""
        if not self.config.refs:
            return "off"
        return self.refs_method or f"unavailable: {self.refs_unavailable}"

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def start(self) -> None:
        check_privileges()
        bcc.load_bcc()
        ensure_tracefs()
        facts = read_facts(catalog.events(), FUNCTIONS, STRUCTS, (*PERCPU.values(), *PERCPU_OPTIONAL), ENUMS,
                           tuple(KFUNCS), TYPES)
        self.plan = plan(self.config, facts, bool(self.targets))
        headers = find_headers(self.config.kernel_headers, warn=self.warn)
        self.module = bcc.compile_module(PROBES_C, [f"-I{PACKAGE}"] + self.plan.cflags, headers,
                                         self.plan.kfunc_calls)
        try:
            self._find_regs()
            # the set first: the probes filter from their first event
            if self.targets:
                self._set_targets(self.targets)
            elif self.cgroup_ids:
                table = self.map("cgroup_filter")
                for cid in self.cgroup_ids:
                    table[ctypes.c_uint64(cid)] = ctypes.c_uint8(1)
            elif not self.config.include_self:
                self._set_targets([os.getpid()])  # probes.c: EXCLUDE_SET
            for probe, copies in self.plan.probes:
                self._attach(probe, copies)
            if self.plan.refs_ways:
                self._attach_refs()
            if "-DPAGE_RETIRE" in self.plan.cflags:
                self._calibrate_pages()
            if "clock_now" in self.prog_fds:
                self.clock = KernelClock(self)  # records' times are jiffies
            bcc.release_compiler_memory()  # the verifier's logs and load buffers too
        except BaseException:
            self.close()
            raise

    def _find_regs(self) -> None:
        """Before anything is attached, regs_at finds where this kernel keeps
        a task's registers (probes/filters.h); if it cannot, the allocation
        programs read them through the helper."""
        if "regs_at" in (p.program for p, _ in self.plan.probes):
            with contextlib.suppress(OSError, KleakError):
                bcc.test_run(bcc.program_fd(self.module, "regs_at", RAW), [0])

    def _attach(self, probe, copies: int) -> None:
        if probe.attach == RAW:
            for program in probe.programs(copies):
                self._links.append(bcc.attach_raw(self.module, program, probe.event))
                self.prog_fds[program] = bcc.program_fd(self.module, program, RAW)
            self.attached.append(probe.target)
        elif probe.attach == RUN:
            self.prog_fds[probe.program] = bcc.program_fd(self.module, probe.program, RAW)
        elif probe.attach == ITER:
            try:
                self.prog_fds[probe.program] = bcc.program_fd(self.module, probe.program, ITER)
            except KleakError as e:  # a kernel without this iterator: the census is off, said once
                if self.plan.pins:
                    self.plan.notes.append(f"no reference census: {e}")
                self.plan.pins = {}
        elif probe.attach == TAIL:
            fd = bcc.program_fd(self.module, probe.program, RAW)
            self.map(probe.target)[ctypes.c_int(0)] = ctypes.c_int(fd)
            self.prog_fds[probe.program] = fd
        elif probe.attach == KPROBE:
            try:
                bcc.attach_kprobe(self.module, probe.program, probe.target)
            except Exception as e:  # BCC raises bare Exception
                self.plan.notes.append(f"kprobe on {probe.target} refused ({bcc.failure_line(e, '')}): "
                                       "its frees are not seen")
                return
            self._kprobes.append(probe.target)
            self.prog_fds[probe.program] = bcc.program_fd(self.module, probe.program, KPROBE)
            self.attached.append(f"kprobe/{probe.target}")

    def _attach_refs(self) -> None:
        """Reference probes through the plan's ways, best first: fentry where
        the kernel permits it (known only by trying), kprobes otherwise."""
        why = self.plan.refs_why
        for way in self.plan.refs_ways:
            done = []
            try:
                for probe in ref_probes(way):
                    if way == FENTRY:
                        bcc.attach_fentry(self.module, probe.program)
                    else:
                        bcc.attach_kprobe(self.module, probe.program, probe.target)
                    done.append(probe)
            except Exception as e:  # BCC raises bare Exception; errno says what the kernel said
                err = ctypes.get_errno()
                for probe in done:
                    (bcc.detach_fentry(self.module, probe.program) if way == FENTRY
                     else bcc.detach_kprobe(self.module, probe.target))
                if way == FENTRY:
                    why[way] = (f"the kernel refuses fentry ({os.strerror(err)})" if err
                                else f"fentry failed ({bcc.failure_line(e, '')})")
                else:
                    why[way] = f"kprobes refused ({bcc.failure_line(e, '')})"
                continue
            for probe in done:
                (self._fentries.append(probe.program) if way == FENTRY else self._kprobes.append(probe.target))
                self.attached.append(f"{way}/{probe.target}")
            self.refs_method = way
            if way == KPROBE and self.config.refs_via == "auto" and why.get(FENTRY):
                self.plan.notes.append(f"reference counts via kprobes: {why[FENTRY]}")
            return
        self.plan.refs_off(refs_why(self.plan, self.config.refs_via), self.config.allocs)
        if not self.config.allocs:
            raise KleakError(f"--kinds refs: reference-count tracking unavailable: {self.refs_unavailable}")

    def _calibrate_pages(self) -> None:
        """Make the kernel side learn where struct pages map (layout.h:
        page_calib): readv() of 1,024 iovecs (UIO_MAXIOV) copies them to a
        kmalloc of 16 KiB, above the largest kmalloc cache, which takes its
        pages from the page allocator right before its kmalloc event."""
        calib = self.map("page_calib")
        try:
            with open("/dev/zero", "rb", buffering=0) as f:
                for _ in range(8):
                    if calib[ctypes.c_int(0)].ready:
                        return
                    os.readv(f.fileno(), [bytearray(1) for _ in range(1024)])
        except OSError:
            pass
        if not calib[ctypes.c_int(0)].ready:
            self.plan.notes.append("objects of freed slab pages not retired and no slab census: the kernel "
                                   "side could not learn where struct pages map")

    def traces(self, tgid: int) -> bool | None:
        """Whether process ``tgid``'s allocations are recorded now (the
        targets' bits, or the left-out ones'); None under --cgroup."""
        if self.cgroup_ids:
            return None
        if not self.targets and self.config.include_self:
            return True
        try:
            bit = bool(self.map("targets")[ctypes.c_int(tgid // 64)].value >> (tgid % 64) & 1)
        except (KeyError, IndexError):  # past pid_max: no process
            return None
        return bit if self.targets else not bit

    def _set_targets(self, pids) -> None:
        """Trace ``pids``. target_count is set before any bit: from then on
        only the kernel side changes it, atomically (a target forks, or exits)."""
        pids = sorted(set(pids))
        words, count = self.map("targets"), self.map("target_count")
        count[ctypes.c_int(0)] = ctypes.c_int64(len(pids))
        for pid in pids:
            word = ctypes.c_int(pid // 64)
            words[word] = ctypes.c_uint64(words[word].value | (1 << (pid % 64)))
        for pid in pids:  # exited before its bit was set: no exit event will count it out
            if not os.path.exists(f"/proc/{pid}") or _zombie(pid):
                word = ctypes.c_int(pid // 64)
                if words[word].value & (1 << (pid % 64)):
                    words[word] = ctypes.c_uint64(words[word].value & ~(1 << (pid % 64)))
                    count[ctypes.c_int(0)] = ctypes.c_int64(count[ctypes.c_int(0)].value - 1)

    def targets_left(self) -> int:
        """How many traced processes (forked children included) have not exited yet."""
        return self.map("target_count")[ctypes.c_int(0)].value

    def exits_unfreed(self) -> int:
        """Tasks of targets that exited and are not freed yet (not reaped, or
        within the RCU grace period after it); 0 where the kernel side does
        not count them (probes.c: exits_unfreed)."""
        if not any(probe.program == "task_freed" for probe, _ in self.plan.probes):
            return 0
        return max(0, self.map("exits_unfreed")[ctypes.c_int(0)].value)

    def mmap(self, name: str, itemsize: int, count: int, writable: bool = False) -> mmap.mmap:
        """Map ``count`` entries of ``itemsize`` bytes of BPF array ``name``
        (BPF_F_MMAPABLE) into this process; kept in ``views``, whose pages
        the holder scan leaves out (they hold object addresses as they are)."""
        length = -(-itemsize * count // mmap.PAGESIZE) * mmap.PAGESIZE
        prot = mmap.PROT_READ | (mmap.PROT_WRITE if writable else 0)
        view = mmap.mmap(self.map(name).map_fd, length, mmap.MAP_SHARED, prot)
        self.views.append(view)
        return view

    def view_frames(self) -> list[int]:
        """The page frames behind every view this session mmap()ed (each
        page touched first, so that it is mapped; /proc/self/pagemap gives
        root the frame of each)."""
        import numpy as np
        frames = []
        with open("/proc/self/pagemap", "rb") as pm:
            for view in self.views:
                if view.closed:
                    continue
                data = np.frombuffer(view, np.uint8)
                int(data[::mmap.PAGESIZE].sum())  # fault every page in
                start = data.ctypes.data // mmap.PAGESIZE
                pm.seek(start * 8)
                entries = np.frombuffer(pm.read(8 * (len(data) // mmap.PAGESIZE)), np.uint64)
                present = (entries >> np.uint64(63)) & np.uint64(1) == 1
                frames += (entries[present] & np.uint64((1 << 55) - 1)).tolist()
                del data
        return frames

    def map(self, name: str):
        """BCC's table ``name`` of probes.c."""
        return self.module[name.encode()]

    def close(self) -> None:
        """Detach everything; safe to call twice."""
        for fd in self._links:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._links = []
        if self.module is not None:
            module, self.module = self.module, None
            for fn in self._kprobes:
                bcc.detach_kprobe(module, fn)
            for program in self._fentries:
                bcc.detach_fentry(module, program)
            self._kprobes, self._fentries = [], []
            module.cleanup()
