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
    ranges of the functions asked about (and of TRAMPOLINE_SYMBOL).
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


def read_facts(events: dict, functions, structs) -> KernelFacts:
    """The facts for ``events`` ({``system/event``: BTF functions that may
    carry its arguments}), kernel ``functions`` and ``structs``
    ("struct.member.path" offsets)."""
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
    return KernelFacts(
        release=kernel_release(), events=found, offsets=offsets, btf_error=btf_error, pid_max=pid_max(),
        page_size=page_size(), user_page_gfp=gfp_bit("__GFP_HARDWALL"), kprobes=kprobes_available(),
        traceable=frozenset(traceable_functions(functions)), btf=os.path.exists(BTF_VMLINUX),
        ranges=function_ranges((TRAMPOLINE_SYMBOL, *functions)))
