"""What a session compiles and attaches, decided from the configuration and
the kernel's facts alone: ``plan(config, facts)`` is pure, so unit tests
call it with made-up kernels.

The plan holds the compile flags (capacities, filters, the raw tracepoints'
argument positions, struct offsets from BTF), the catalog's probes to attach
in order, what the kernel lacks, and the ways reference counts may be
tracked, best first (whether the kernel permits fentry is only known by
trying: session.py falls back to the next way).
"""

from dataclasses import dataclass, field

from ..errors import KleakError
from ..kernel.functions import fentry_why, kprobe_why
from . import catalog
from .catalog import FENTRY, KPROBE, RAW

__all__ = ["Plan", "plan", "STRUCTS", "FUNCTIONS", "slot_bits"]

#: struct offsets the programs follow, as compile flags: {flag: "struct.member"}
_OFFSETS = {
    "KMEM_CACHE_SIZE_OFF": "kmem_cache.size",
    "KMEM_CACHE_NAME_OFF": "kmem_cache.name",
    "TASK_PID_OFF": "task_struct.pid",
    "TASK_TGID_OFF": "task_struct.tgid",
    "TASK_SIGNAL_OFF": "task_struct.signal",
    "SIGNAL_LIVE_OFF": "signal_struct.live",
}
_REF_OFFSETS = {
    "PATH_MNT_OFF": "path.mnt",
    "PATH_DENTRY_OFF": "path.dentry",
    "DENTRY_NAME_OFF": "dentry.d_name.name",
    "MOUNT_MNT_OFF": "mount.mnt",
    "MOUNT_MOUNTPOINT_OFF": "mount.mnt_mountpoint",
}
STRUCTS = tuple(_OFFSETS.values()) + tuple(_REF_OFFSETS.values())

#: a struct file's own f_path reference is taken in these (probes.c: ignored_caller)
_IGNORED_CALLERS = ("do_dentry_open", "vfs_open")
_REF_FUNCTIONS = ("path_get", "path_put")
FUNCTIONS = tuple(dict.fromkeys(p.target for p in catalog.PROBES if p.attach != RAW)) + _IGNORED_CALLERS


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

    def refs_off(self, why: str, allocs: bool) -> None:
        """Reference tracking is not possible: say so once, and why."""
        self.refs_unavailable = why
        self.refs_ways = []
        self.notes.append(f"reference-count tracking unavailable: {why}; tracing allocations only"
                          if allocs else f"reference-count tracking unavailable: {why}")


def slot_bits(max_objects: int) -> int:
    """log2 of the slab slot array's length: a power of two >= --max-objects."""
    return max(10, (max_objects - 1).bit_length())


def _wanted(probe, config, targets: bool) -> bool:
    return {"always": True, "allocs": config.allocs, "targets": targets, "children": config.children,
            "refs": config.refs}[probe.when]


def _arg_flags(probe, args: tuple) -> list[str]:
    """-DARG_<event>_<name>=<index> for every argument; KleakError when one
    the program needs is missing."""
    for need in probe.args:
        options = need if isinstance(need, tuple) else (need,)
        if not any(a in args for a in options):
            raise KleakError(f"cannot locate tracepoint {probe.target.replace('/', ':')}'s argument "
                             f"{' or '.join(options)} (its arguments here: {', '.join(args) or 'unknown'}; "
                             "kleaktrace reads them from kernel BTF, CONFIG_DEBUG_INFO_BTF)")
    return [f"-DARG_{probe.event}_{name}={i}" for i, name in enumerate(args)]


def plan(config, facts, targets: bool) -> Plan:
    """The plan for ``config`` on a kernel with ``facts``; ``targets``: a PID
    filter is on (-p, -c). KleakError when the session cannot run here."""
    p = Plan(slot_bits=slot_bits(config.max_objects) if config.allocs else 10)
    if facts.btf_error and config.allocs:
        raise KleakError(f"cannot locate the allocation tracepoints' arguments: {facts.btf_error} "
                         "(kleaktrace needs kernel BTF, CONFIG_DEBUG_INFO_BTF)")
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
    ]
    if config.stacks == "sites":
        flags.append("-DSTACKS_AT_SITES")
    if targets:
        flags.append("-DFILTER_TARGETS")
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
    if config.children and "task_struct.tgid" not in facts.offsets:
        raise KleakError("--children needs task_struct's pid and tgid offsets from kernel BTF")
    events_done = set()
    for probe in catalog.PROBES:
        if probe.attach != RAW or not _wanted(probe, config, targets):
            continue
        args = facts.events.get(probe.target)
        if args is None:
            if probe.required:
                raise KleakError(f"tracepoint {probe.target.replace('/', ':')} is missing from this kernel")
            p.missing.append(probe.target)
            continue
        if probe.target not in events_done:
            events_done.add(probe.target)
            flags.append(f"-DEVENT_{probe.event}")
            flags += _arg_flags(probe, args)
        p.probes.append((probe, config.free_copies))
    bulk = [pr for pr in catalog.PROBES if pr.attach == KPROBE and pr.when == "allocs"]
    for probe in bulk if config.allocs else ():
        why = kprobe_why([probe.target], facts.kprobes, facts.traceable)
        if why is None:
            p.probes.append((probe, 1))
        else:
            p.notes.append(f"bulk frees not seen ({why}): objects freed by {probe.target}, "
                           "e.g. batched kfree_rcu, stay outstanding until their address is reused")
    if config.refs:
        flags += _refs(p, config, facts)
        if not config.allocs and p.refs_unavailable:
            raise KleakError(f"--kinds refs: reference-count tracking unavailable: {p.refs_unavailable}")
    p.cflags = flags
    return p


def _refs(p: Plan, config, facts) -> list[str]:
    """Reference tracking's flags and ways, or [] with ``refs_unavailable`` saying why."""
    via = config.refs_via
    p.refs_why = {
        FENTRY: fentry_why(_REF_FUNCTIONS, facts.btf, facts.ranges) if via != KPROBE else "not chosen",
        KPROBE: kprobe_why(_REF_FUNCTIONS, facts.kprobes, facts.traceable) if via != FENTRY else "not chosen",
    }
    p.refs_ways = [way for way in (FENTRY, KPROBE) if p.refs_why[way] is None]
    if not p.refs_ways:
        p.refs_off(refs_why(p, via), config.allocs)
        return []
    missing = [path for path in _REF_OFFSETS.values() if path not in facts.offsets]
    if missing:
        p.refs_off(f"no usable kernel BTF for struct offsets ({', '.join(missing)})", config.allocs)
        return []
    flags = ["-DTRACK_REFS", f"-DMAX_REFS={config.max_refs}"]
    flags += [f"-D{name}={facts.offsets[path]}" for name, path in _REF_OFFSETS.items()]
    if FENTRY in p.refs_ways:
        flags.append("-DREFS_FENTRY")
    for fn in _REF_FUNCTIONS:
        start, end = facts.ranges.get(fn, [(0, 0)])[0]
        flags += [f"-D{fn.upper()}_START={start:#x}ULL", f"-D{fn.upper()}_END={end:#x}ULL"]
    ignored = [r for fn in _IGNORED_CALLERS for r in facts.ranges.get(fn, [])]
    for i, (start, end) in enumerate(ignored[:3]):
        flags += [f"-DIGNORE_CALLER_START_{i}={start:#x}ULL", f"-DIGNORE_CALLER_END_{i}={end:#x}ULL"]
    return flags


def refs_why(p: Plan, via: str) -> str:
    """Why neither fentry nor kprobes (or not the one --refs-via chose) carry
    reference tracking; kprobes' reason first."""
    if via != "auto":
        return p.refs_why[via]
    return f"{p.refs_why[KPROBE]}, and {p.refs_why[FENTRY]}"


def ref_probes(way: str) -> list:
    """The catalog's reference probes attached through ``way``."""
    return [probe for probe in catalog.PROBES if probe.when == "refs" and probe.attach == way]
