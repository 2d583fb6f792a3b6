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

from ..errors import KleakError
from ..kernel.functions import fentry_why, kprobe_why
from . import catalog, census_plan, pins_plan, scan_plan
from .catalog import FENTRY, ITER, KPROBE, RAW, RUN, TAIL

__all__ = ["Plan", "plan", "STRUCTS", "FUNCTIONS", "PERCPU", "PERCPU_OPTIONAL", "ENUMS", "slot_bits"]

PERCPU, PERCPU_OPTIONAL = census_plan.PERCPU, census_plan.PERCPU_OPTIONAL

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
#: what the cgroup of an allocation is found with (probes.c: current_cgroup)
_CGROUP_OFFSETS = {
    "TASK_CGROUPS_OFF": "task_struct.cgroups",
    "CSS_SET_SUBSYS_OFF": "css_set.subsys",
    "CSS_CGROUP_OFF": "cgroup_subsys_state.cgroup",
    "CSS_PARENT_OFF": "cgroup_subsys_state.parent",
    "CGROUP_KN_OFF": "cgroup.kn",
    "CGROUP_ROOT_OFF": "cgroup.root",
    "CGROUP_SELF_OFF": "cgroup.self",
    "CGROUP_SUBSYS_OFF": "cgroup.subsys",
    "CGROUP_ROOT_HIERARCHY_OFF": "cgroup_root.hierarchy_id",
    "KERNFS_ID_OFF": "kernfs_node.id",
}
ENUMS = ("memory_cgrp_id",)
STRUCTS = tuple(_OFFSETS.values()) + tuple(_REF_OFFSETS.values()) + tuple(_CGROUP_OFFSETS.values()) \
    + census_plan.STRUCTS + pins_plan.STRUCTS + scan_plan.STRUCTS

#: a struct file's own f_path reference is taken in these (probes.c: ignored_caller)
_IGNORED_CALLERS = ("do_dentry_open", "vfs_open")
#: struct vmap_area is allocated in here (probes.c: from_alloc_vmap_area)
_VMAP_ALLOC = ("alloc_vmap_area",)
_REF_FUNCTIONS = ("path_get", "path_put")
FUNCTIONS = tuple(dict.fromkeys(p.target for p in catalog.PROBES if p.attach in (KPROBE, FENTRY))) \
    + _IGNORED_CALLERS + _VMAP_ALLOC


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
    pins: dict = field(default_factory=dict)  # what tracer/pins.py needs: offsets
    cgroups: dict = field(default_factory=dict)  # {"hierarchy": id, "version": 1 or 2} when tracked
    scan: dict = field(default_factory=dict)  # what tracer/scan.py needs: offsets (scan_plan.py)
    addr_key: int = 0  # probes.c MANGLE: addresses in maps not mmap()ed are XORed with it

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
            "targets-only": targets, "forks": forks, "scan": bool(p.scan), "pins-or-scan": bool(p.pins or p.scan),
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
        flags.append(f"-DSAMPLE_BYTES={config.sample_bytes}U")
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
    if (config.children or not targets) and "task_struct.tgid" not in facts.offsets:
        raise KleakError("following forks needs task_struct's pid and tgid offsets from kernel BTF")
    # struct vmap_area is bookkeeping whether or not the vmalloc events exist:
    # 6.1 has none, and its vmap_areas, kept on the lazy-purge list after a
    # vfree, showed as 3,272 phantoms under 2,003 forks' stacks in the lab
    if config.allocs:
        for i, (start, end) in enumerate(r for fn in _VMAP_ALLOC for r in facts.ranges.get(fn, [])[:2]):
            flags += [f"-DVMAP_ALLOC_START_{i}={start:#x}ULL", f"-DVMAP_ALLOC_END_{i}={end:#x}ULL"]
    retire = _page_retire(p, facts) if config.allocs else []
    flags += retire
    if config.allocs:
        flags += _cgroups(p, config, facts, targets)
        flags += pins_plan.flags(p, config, facts)
        flags += scan_plan.flags(p, config, facts)
    events_done = set()
    for probe in catalog.PROBES:
        if probe.attach in (TAIL, RUN, ITER) and _wanted(probe, config, targets, p, bool(retire)) and \
                all(f"-D{need}=" in " ".join(flags) for need in probe.needs):
            p.probes.append((probe, 1))
        if probe.attach != RAW or not _wanted(probe, config, targets, p, bool(retire)):
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
    unseen = {}
    for probe in catalog.PROBES if config.allocs else ():
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
    if config.refs:
        flags += _refs(p, config, facts)
        if not config.allocs and p.refs_unavailable:
            raise KleakError(f"--kinds refs: reference-count tracking unavailable: {p.refs_unavailable}")
    p.cflags = flags
    return p


def _cgroups(p: Plan, config, facts, targets: bool) -> list[str]:
    """Flags to record each allocation's cgroup (probes.c: current_cgroup),
    in the memory controller's hierarchy: v1 where it is mounted so, else v2."""
    missing = [path for path in _CGROUP_OFFSETS.values() if path not in facts.offsets]
    memory = facts.enums.get("memory_cgrp_id")
    hierarchy = facts.controllers.get("memory", 0)
    if missing or (hierarchy and memory is None):
        why = ", ".join(missing) or "memory_cgrp_id"
        if config.cgroups:
            raise KleakError(f"--cgroup: this kernel's BTF lacks {why}")
        p.notes.append(f"cgroups not recorded: this kernel's BTF lacks {why}")
        return []
    flags = ["-DTRACK_CGROUPS", f"-DCGROUP_HIERARCHY={hierarchy}"]
    flags += [f"-D{name}={facts.offsets[path]}" for name, path in _CGROUP_OFFSETS.items()]
    if hierarchy:
        flags.append(f"-DCGROUP_V1_SUBSYS={memory}")
    if memory is not None and "memory" in facts.controllers:
        flags.append(f"-DCGROUP_MEMORY_SUBSYS={memory}")
    if config.cgroups:
        if targets:
            raise KleakError("--cgroup and -p/-c cannot be combined", status=2)
        flags.append("-DFILTER_CGROUPS")
    p.cgroups = {"hierarchy": hierarchy, "version": 1 if hierarchy else 2}
    return flags


def _page_retire(p: Plan, facts) -> list[str]:
    """Flags for retiring what a freed slab page held (probes.c: retire_page),
    or [] with a note when this kernel cannot tell."""
    ratio = facts.page_size // facts.page_struct if facts.page_struct else 0
    why = None
    if not facts.has("kmem/mm_page_free") or not facts.has("kmem/mm_page_alloc"):
        why = "no page events"
    elif not ratio or ratio * facts.page_struct != facts.page_size:
        why = f"struct page is {facts.page_struct or 'of unknown'} bytes"
    if why:
        p.notes.append(f"objects of freed slab pages not retired ({why})")
        return []
    marks = 1 << max(16, min(26, (2 * max(facts.mem_pages, 1) - 1).bit_length()))
    return ["-DPAGE_RETIRE", f"-DPAGE_MARKS={marks}", f"-DPAGE_RATIO={ratio}ULL",
            # KMALLOC_MAX_CACHE_SIZE is two pages on SLUB: larger kmallocs take pages
            f"-DKMALLOC_MAX_CACHE={2 * facts.page_size}"] + census_plan.flags(p, facts, ratio)


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
