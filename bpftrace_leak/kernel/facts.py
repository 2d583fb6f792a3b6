"""Everything the tracer's plan needs to know about the running kernel, read
in one go into one value (tracer/plan.py decides from it, without BPF).

Reading mounts tracefs if it is not mounted, and nothing else: no BPF is
loaded, no kernel state changes.
"""

import os
from dataclasses import dataclass, field

from . import kernel_release, page_size, pid_max
from .btf import Btf, BtfError
from .functions import BTF_VMLINUX, TRAMPOLINE_SYMBOL, function_ranges, kprobes_available, traceable_functions
from .tracefs import event_fields, gfp_bit

__all__ = ["KernelFacts", "read_facts"]


@dataclass(frozen=True)
class KernelFacts:
    """What the kernel offers the probes.

    ``events``: {``system/event``: its raw arguments' names in order, ``()``
    when BTF has no prototype for it, None when the kernel lacks the event}.
    ``offsets``: {"struct.member.path": byte offset} found in BTF.
    ``btf_error``: why BTF could not be read, None when it was.
    ``kprobes``: the kernel has kprobes; ``traceable``: the functions asked
    about that ftrace (so kprobes) can reach.
    ``btf``: /sys/kernel/btf/vmlinux exists; ``ranges``: kallsyms address
    ranges of the functions asked about (and of TRAMPOLINE_SYMBOL);
    ``params``: {function: its parameters' names} from BTF.
    ``page_struct``: sizeof(struct page) (0 when unknown); ``mem_pages``:
    MemTotal in pages; ``max_pfn``: one past the highest RAM page frame
    (/proc/iomem; 0 when unknown); ``percpu``: {per-CPU variable: its offset} from BTF;
    ``cpus``: possible CPUs; ``nodes``: possible NUMA nodes.
    ``enums``: {enum member: value} from BTF; ``controllers``: /proc/cgroups,
    {controller: its hierarchy id (0: the unified v2 hierarchy)}.
    ``kfuncs``: {kernel function callable from BPF: its BTF id}, of those
    asked about that BTF has; ``types``: {struct: (its BTF id, its size)}.
    """

    release: str = "?"
    events: dict = field(default_factory=dict)
    offsets: dict = field(default_factory=dict)
    btf_error: str | None = None
    pid_max: int = 4194304
    page_size: int = 4096
    user_page_gfp: int | None = None
    kprobes: bool = False
    traceable: frozenset = frozenset()
    btf: bool = False
    ranges: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    page_struct: int = 0
    mem_pages: int = 0
    max_pfn: int = 0
    percpu: dict = field(default_factory=dict)
    cpus: int = 1
    nodes: int = 1
    enums: dict = field(default_factory=dict)
    controllers: dict = field(default_factory=dict)
    kfuncs: dict = field(default_factory=dict)
    types: dict = field(default_factory=dict)

    def has(self, event: str) -> bool:
        return self.events.get(event) is not None


def _event_args(btf: Btf | None, functions) -> tuple:
    """A raw tracepoint's argument names: the parameters, after the
    tracepoint's own ``__data``, of the first of its ``__bpf_trace_*``
    ``functions`` BTF has (a DEFINE_EVENT's is named after its class); ()
    when none is there."""
    for fn in functions if btf is not None else ():
        try:
            return tuple(btf.params(fn)[1:])
        except BtfError:
            continue
    return ()


def _count_of(path: str) -> int:
    """How many of a sysfs range list (``0-3,5``) there are: the last one + 1."""
    try:
        with open(path) as f:
            text = f.read().strip()
        return max(int(part.split("-")[-1]) for part in text.split(",")) + 1 if text else 1
    except (OSError, ValueError):
        return 1


def _controllers(path: str = "/proc/cgroups") -> dict[str, int]:
    """{enabled controller: hierarchy id} from /proc/cgroups (0: on cgroup v2)."""
    out = {}
    try:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 4 and not line.startswith("#") and parts[3] == "1":
                    out[parts[0]] = int(parts[1])
    except (OSError, ValueError):
        pass
    return out


def read_facts(events: dict, functions, structs, percpu=(), enums=(), kfuncs=(), types=()) -> KernelFacts:
    """The facts for ``events`` ({``system/event``: BTF functions that may
    carry its arguments}), kernel ``functions`` and ``structs``
    ("struct.member.path" offsets), ``kfuncs`` and struct ``types`` (BTF ids)."""
    try:
        btf, btf_error = Btf.load(), None
    except BtfError as e:
        btf, btf_error = None, str(e)
    found = {}
    for ev, carriers in events.items():
        found[ev] = None if event_fields(ev) is None else _event_args(btf, carriers)
    offsets = {}
    for path in structs:
        name, member = path.split(".", 1)
        try:
            offsets[path] = btf.offset(name, member) if btf else None
        except BtfError:
            offsets[path] = None
    offsets = {k: v for k, v in offsets.items() if v is not None}
    params = _found(functions, lambda fn: tuple(btf.params(fn))) if btf else {}
    try:
        page_struct = btf.size("page") if btf else 0
    except BtfError:
        page_struct = 0
    values = _found(enums, btf.enumerator) if btf else {}
    pcpu = _found(percpu, btf.percpu) if btf else {}
    kfunc_ids = _found(kfuncs, btf.func_id) if btf else {}
    type_ids = _found(types, lambda name: (btf.struct_id(name), btf.size(name))) if btf else {}
    return KernelFacts(
        release=kernel_release(), events=found, offsets=offsets, btf_error=btf_error, pid_max=pid_max(),
        page_size=page_size(), user_page_gfp=gfp_bit("__GFP_HARDWALL"), kprobes=kprobes_available(),
        traceable=frozenset(traceable_functions(functions)), btf=os.path.exists(BTF_VMLINUX),
        ranges=function_ranges((TRAMPOLINE_SYMBOL, *functions)), params=params, page_struct=page_struct,
        mem_pages=_mem_pages(), max_pfn=_max_pfn(), percpu=pcpu, cpus=_count_of("/sys/devices/system/cpu/possible"),
        nodes=_count_of("/sys/devices/system/node/possible"), enums=values, controllers=_controllers(),
        kfuncs=kfunc_ids, types=type_ids)


def _found(names, lookup) -> dict:
    """{name: lookup(name)} for the names BTF has (lookup raises BtfError for the others)."""
    found = {}
    for name in names:
        try:
            found[name] = lookup(name)
        except BtfError:
            pass
    return found


def _max_pfn() -> int:
    from .pageflags import max_pfn  # numpy, for its other parts
    return max_pfn(unknown=0)


def _mem_pages() -> int:
    try:
        with open("/proc/meminfo") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemTotal:"))
        return kb * 1024 // page_size()
    except (OSError, StopIteration, ValueError):
        return 0
