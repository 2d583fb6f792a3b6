"""What a session compiles and attaches, decided from the configuration and
the kernel's facts alone: ``plan(config, facts)`` is pure, so unit tests
call it with made-up kernels.

The plan holds the compile flags (capacities, filters, the raw tracepoints'
argument positions, struct offsets from BTF), the catalog's probes to attach
in order, what the kernel lacks, and the ways reference counts may be
tracked, best first (whether the kernel permits fentry is only known by
trying: session.py falls back to the next way).
"""

import secrets
from dataclasses import dataclass, field

from .. import layout
from ..errors import KleakError
from ..kernel.functions import kprobe_why
from . import catalog, cgroups_plan, census_plan, pins_plan, refs_plan, scan_plan
from .catalog import FENTRY, ITER, KPROBE, RAW, RUN, TAIL

__all__ = ["Plan", "plan", "STRUCTS", "FUNCTIONS", "PERCPU", "PERCPU_OPTIONAL", "ENUMS", "KFUNCS", "TYPES",
           "slot_bits"]

PERCPU, PERCPU_OPTIONAL = census_plan.PERCPU, census_plan.PERCPU_OPTIONAL + scan_plan.PERCPU_OPTIONAL

#: struct offsets the programs follow, as compile flags: {flag: "struct.member"}
_OFFSETS = {
    "KMEM_CACHE_SIZE_OFF": "kmem_cache.size",
    "KMEM_CACHE_NAME_OFF": "kmem_cache.name",
    "TASK_PID_OFF": "task_struct.pid",
    "TASK_TGID_OFF": "task_struct.tgid",
    "TASK_SIGNAL_OFF": "task_struct.signal",
    "SIGNAL_LIVE_OFF": "signal_struct.live",
    "PT_REGS_ORIG_AX_OFF": "pt_regs.orig_ax",
    "TASK_STACK_OFF": "task_struct.stack",
}
#: kernel functions the programs call where BTF has them (layout.h: enum kfunc_call)
KFUNCS = {"bpf_rdonly_cast": "KFUNC_RDONLY_CAST"}
#: structs whose BTF id and size the programs need
TYPES = ("pt_regs",) + scan_plan.TYPES
ENUMS = cgroups_plan.ENUMS + census_plan.ENUMS
STRUCTS = tuple(_OFFSETS.values()) + refs_plan.STRUCTS + cgroups_plan.STRUCTS \
    + census_plan.STRUCTS + pins_plan.STRUCTS + scan_plan.STRUCTS

#: struct vmap_area is allocated in here (probes.c: from_alloc_vmap_area)
_VMAP_ALLOC = ("alloc_vmap_area",)
FUNCTIONS = tuple(dict.fromkeys(p.target for p in catalog.PROBES if p.attach in (KPROBE, FENTRY))) \
    + refs_plan.IGNORED_CALLERS + _VMAP_ALLOC


@dataclass
class Plan:
    cflags: list[str] = field(default_factory=list)
    probes: list[tuple] = field(default_factory=list)  # (catalog.Probe, copies), in attach order
    missing: list[str] = field(default_factory=list)  # optional probes the kernel lacks
    notes: list[str] = field(default_factory=list)  # what this kernel keeps from being seen, said once
    refs_ways: list[str] = field(default_factory=list)  # "fentry", "kprobe": to try in this order
    refs_why: dict = field(default_factory=dict)  # way -> why not (None: worth trying)
    refs_unavailable: str | None = None
    slot_bits: int = 10
    census: dict = field(default_factory=dict)  # what tracer/census.py needs: offsets, CPUs, nodes
    page_freed: int = 0  # frames in probes/retire.h's page_freed (0: none)
    pins: dict = field(default_factory=dict)  # what tracer/pins.py needs: offsets
    cgroups: dict = field(default_factory=dict)  # {"hierarchy": id, "version": 1 or 2} when tracked
    scan: dict = field(default_factory=dict)  # what tracer/scan.py needs: offsets (scan_plan.py)
    addr_key: int = 0  # probes.c MANGLE: addresses in maps not mmap()ed are XORed with it
    kfunc_calls: dict = field(default_factory=dict)  # {placeholder helper number: kfunc BTF id} (tracer/bcc.py)

    def refs_off(self, why: str, allocs: bool) -> None:
        """Reference tracking is not possible: say so once, and why."""
        self.refs_unavailable = why
        self.refs_ways = []
        self.notes.append(f"reference-count tracking unavailable: {why}; path_get/path_put not paired "
                          "(the reference census, --census, needs neither)"
                          if allocs else f"reference-count tracking unavailable: {why}")


def slot_bits(max_objects: int) -> int:
    """log2 of the slab slot array's length: a power of two >= --max-objects."""
    return max(10, (max_objects - 1).bit_length())


def _wanted(probe, config, targets: bool, p: "Plan", retire: bool) -> bool:
    forks = config.children or not targets and not config.include_self and not config.cgroups
    return {"always": True, "allocs": config.allocs, "targets": targets or bool(config.cgroups),
            "targets-only": targets, "forks": forks, "scan": bool(p.scan), "tasks": bool(p.pins or p.scan or "tasks" in p.census.get("stacks", {})),
            "refs": config.refs, "retire": retire, "census": bool(p.census), "cgroups": bool(p.cgroups),
            "pins": bool(p.pins)}[probe.when]


def _missing_args(probe, args: tuple) -> list[str]:
    """The arguments ``probe`` needs that ``args`` lacks (alternatives joined by "or")."""
    missing = []
    for need in probe.args:
        options = need if isinstance(need, tuple) else (need,)
        if not any(a in args for a in options):
            missing.append(" or ".join(options))
    return missing


def _arg_flags(probe, args: tuple) -> list[str]:
    """-DARG_<name>_<argument>=<index> for every argument; KleakError when one
    the program needs is missing."""
    missing = _missing_args(probe, args)
    if missing:
        raise KleakError(f"cannot locate tracepoint {probe.target.replace('/', ':')}'s argument "
                         f"{missing[0]} (its arguments here: {', '.join(args) or 'unknown'}; "
                         "kleaktrace reads them from kernel BTF, CONFIG_DEBUG_INFO_BTF)")
    return [f"-DARG_{probe.name}_{name}={i}" for i, name in enumerate(args)]


def plan(config, facts, targets: bool) -> Plan:
    """The plan for ``config`` on a kernel with ``facts``; ``targets``: a PID
    filter is on (-p, -c). KleakError when the session cannot run here."""
    # a mangled kernel address is a user-space one (top 16 bits clear), never 0
    p = Plan(slot_bits=slot_bits(config.max_objects) if config.allocs else 10,
             addr_key=0xFFFF000000000000 | secrets.randbits(47) << 1)
    if facts.btf_error and config.allocs:
        raise KleakError(f"cannot locate the allocation tracepoints' arguments: {facts.btf_error} "
                         "(kleaktrace needs kernel BTF, CONFIG_DEBUG_INFO_BTF)")
    flags = _base_flags(p, config, facts, targets)
    retire = _page_retire(p, facts) if config.allocs else []
    flags += retire
    if config.allocs:
        flags += cgroups_plan.flags(p, config, facts, targets)
        flags += pins_plan.flags(p, config, facts)
        flags += scan_plan.flags(p, config, facts)
    flags += _events(p, config, facts, targets, flags, "-DRETIRE_ON_FREE" in retire)
    if config.allocs:
        flags += _free_kprobes(p, config, facts)
    if config.refs:
        flags += refs_plan.flags(p, config, facts)
        if not config.allocs and p.refs_unavailable:
            raise KleakError(f"--kinds refs: reference-count tracking unavailable: {p.refs_unavailable}")
    p.cflags = flags
    return p


def _base_flags(p: Plan, config, facts, targets: bool) -> list[str]:
    """Capacities, filters and the struct offsets every program follows."""
    flags = [
        # slab objects: an array of a power of two slots, pages a small one,
        # the rest (other spaces, objects whose slot was taken) a hash of half
        f"-DSLOT_BITS={p.slot_bits}",
        f"-DSLOT_COUNT={1 << p.slot_bits}",
        f"-DMAX_OBJECTS={max(1024, config.max_objects // 2) if config.allocs else 1024}",
        f"-DSTACK_SLOTS={config.stack_slots}",
        f"-DTARGET_WORDS={-(-facts.pid_max // 64)}",
        f"-DMAX_SITES={config.max_sites}",
        f"-DPAGE_BYTES={facts.page_size}",
        f"-DFREE_COPIES_USED={min(config.free_copies, catalog.by_program('free_kfree').copies)}",
        f"-DADDR_KEY={p.addr_key:#x}ULL",
    ]
    if config.stacks == "sites":
        flags.append("-DSTACKS_AT_SITES")
    if config.sample_bytes:
        # and the slab records counted by frame (probes/objects.h: frame_counts):
        # 1 M u32s, 4 MiB, a frame's count shared with those 4 GiB apart
        flags += [f"-DSAMPLE_BYTES={config.sample_bytes}U", f"-DFRAME_COUNTS={1 << 20}"]
    if targets:
        flags.append("-DFILTER_TARGETS")
    elif config.cgroups:
        pass  # _cgroups: FILTER_CGROUPS
    elif not config.include_self:
        flags.append("-DEXCLUDE_SET")  # the tracer and what it forks are left out
    if config.children:
        flags.append("-DTRACE_CHILDREN")
    if config.user_pages:
        flags.append("-DINCLUDE_USER_PAGES")
    if config.allocs:
        flags.append("-DTRACK_ALLOCS")
        if facts.user_page_gfp is None:
            p.notes.append("cannot find __GFP_HARDWALL in mm_page_alloc's format: user pages not told apart")
        flags.append(f"-DUSER_PAGE_GFP={facts.user_page_gfp or 0:#x}")
    for name, path in _OFFSETS.items():
        if path in facts.offsets:
            flags.append(f"-D{name}={facts.offsets[path]}")
    flags += _regs_flags(p, config, facts)
    if (config.children or not targets) and "task_struct.tgid" not in facts.offsets:
        raise KleakError("following forks needs task_struct's pid and tgid offsets from kernel BTF")
    # struct vmap_area is bookkeeping whether or not the vmalloc events exist:
    # 6.1 has none, and its vmap_areas, kept on the lazy-purge list after a
    # vfree, showed as 3,272 phantoms under 2,003 forks' stacks in the lab
    if config.allocs:
        for i, (start, end) in enumerate(r for fn in _VMAP_ALLOC for r in facts.ranges.get(fn, [])[:2]):
            flags += [f"-DVMAP_ALLOC_START_{i}={start:#x}ULL", f"-DVMAP_ALLOC_END_{i}={end:#x}ULL"]
    return flags


def _regs_flags(p: Plan, config, facts) -> list[str]:
    """An allocation's system call number read with no helper call
    (probes/filters.h: task_syscall) where the kernel has bpf_rdonly_cast
    (6.2+) and BTF the offsets; where the registers are is found at load
    (regs_at: session.py)."""
    regs = facts.types.get("pt_regs")
    if not (config.allocs and regs and "bpf_rdonly_cast" in facts.kfuncs and "task_struct.stack" in facts.offsets
            and "pt_regs.orig_ax" in facts.offsets):
        return []
    for name, placeholder in KFUNCS.items():
        if name in facts.kfuncs:
            p.kfunc_calls[layout.ENUMS["kfunc_call"][placeholder]] = facts.kfuncs[name]
    return [f"-DPT_REGS_BTF_ID={regs[0]}", f"-DPT_REGS_SIZE={regs[1]}"]


def _events(p: Plan, config, facts, targets: bool, flags: list[str], retire: bool) -> list[str]:
    """Put the catalog's tracepoint programs (and the programs run on demand
    whose flags are set) in ``p.probes``; returns the events' flags."""
    out = []
    events_done = set()
    for probe in catalog.PROBES:
        if probe.attach in (TAIL, RUN, ITER) and _wanted(probe, config, targets, p, retire) and \
                all(f"-D{need}=" in " ".join(flags + out) for need in probe.needs):
            p.probes.append((probe, 1))
        if probe.attach != RAW or not _wanted(probe, config, targets, p, retire):
            continue
        args = facts.events.get(probe.target)
        if args is None:
            if probe.required:
                raise KleakError(f"tracepoint {probe.target.replace('/', ':')} is missing from this kernel")
            p.missing.append(probe.target)
            continue
        if probe.target not in events_done:
            events_done.add(probe.target)
            out.append(f"-DEVENT_{probe.event}")
            out += _arg_flags(probe, args)
        p.probes.append((probe, config.free_copies))
    return out


def _free_kprobes(p: Plan, config, facts) -> list[str]:
    """The kprobes on frees with no per-object event (bulk frees, kfree_rcu
    batches, sheaves) this kernel allows; a note for the ones it does not."""
    flags = []
    unseen = {}
    for probe in catalog.PROBES:
        if probe.attach != KPROBE or probe.when != "allocs":
            continue
        args = facts.params.get(probe.target, ())
        if _missing_args(probe, args):  # not this kernel's function: neither compiled nor attached
            unseen[probe.target] = "not in this kernel's BTF"
            continue
        flags += [f"-DARG_{probe.name}_{name}={i}" for i, name in enumerate(args)]  # compiled either way
        why = kprobe_why([probe.target], facts.kprobes, facts.traceable)
        if why is None:
            p.probes.append((probe, 1))
        else:
            unseen[probe.target] = why
    if unseen:
        reasons = sorted(set(unseen.values()))
        p.notes.append(f"frees without a per-object event not seen ({'; '.join(reasons)}): objects freed by "
                       f"{', '.join(unseen)} (bulk frees, kfree_rcu batches and sheaves) stay outstanding "
                       "until their address is reused or their slab page is freed")
    return flags


#: page_freed (probes/retire.h) holds a u32 per page frame: 128 MiB at most, for 2^25 frames
#: (128 GiB of physical address space; a host with more keeps retire_first on every page free)
PAGE_FREED_MAX = 1 << 25


def _page_freed(p: Plan, facts) -> list[str]:
    """With the census: each page free notes its frames' time (probes/retire.h:
    page_freed), 4 bytes a frame of RAM, and the census retires the records
    made before (census.h: census_freed); [] where the frames are unknown or
    too many, and each page free retires its first record at once, as before."""
    count = 1 << max(1, (facts.max_pfn - 1).bit_length()) if facts.max_pfn else 0
    if not count or count > PAGE_FREED_MAX:
        p.notes.append("a freed slab page retires its first record only (page frames: "
                       f"{facts.max_pfn or 'unknown'})")
        return []
    p.page_freed = count
    return [f"-DPAGE_FREED_COUNT={count}"]


def _page_retire(p: Plan, facts) -> list[str]:
    """Flags for retiring what a freed slab page held, or [] with a note when
    this kernel cannot tell. The slab census does it at each report (probes/
    census.h: census_slab) for the cost of one program run per page visited;
    only without the census does each page free (probes/retire.h: retire_page:
    5 us per freed slab page, a third of the page events' cost on the
    allocation storm) and a mark per page frame at each allocation."""
    ratio = facts.page_size // facts.page_struct if facts.page_struct else 0
    why = None
    if not facts.has("kmem/mm_page_free") or not facts.has("kmem/mm_page_alloc"):
        why = "no page events"
    elif not ratio or ratio * facts.page_struct != facts.page_size:
        why = f"struct page is {facts.page_struct or 'of unknown'} bytes"
    if why:
        p.notes.append(f"objects of freed slab pages not retired ({why})")
        return []
    flags = ["-DPAGE_RETIRE", f"-DPAGE_RATIO={ratio}ULL",
             # KMALLOC_MAX_CACHE_SIZE is two pages on SLUB: larger kmallocs take pages
             f"-DKMALLOC_MAX_CACHE={2 * facts.page_size}"]
    census = census_plan.flags(p, facts, ratio)
    if census:
        return flags + census + _page_freed(p, facts)
    marks = 1 << max(16, min(26, (2 * max(facts.mem_pages, 1) - 1).bit_length()))
    return flags + ["-DRETIRE_ON_FREE", f"-DPAGE_MARKS={marks}"]
