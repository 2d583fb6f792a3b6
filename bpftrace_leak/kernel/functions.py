"""Kernel functions: where they are (/proc/kallsyms) and whether kprobes or
fentry can attach to them.

Both need the function in ftrace's available_filter_functions (kprobes) or
in BTF with BPF trampolines (fentry); names may carry compiler suffixes
(``.constprop.0``, ``.isra.0``), matched here by their base name.
"""

import os

from .tracefs import TRACEFS

__all__ = ["kprobes_available", "traceable_functions", "kprobe_unavailable", "fentry_unavailable",
           "kprobe_why", "fentry_why", "function_ranges", "TRAMPOLINE_SYMBOL", "BTF_VMLINUX"]

BTF_VMLINUX = "/sys/kernel/btf/vmlinux"

#: the kernel symbol whose presence says BPF trampolines (fentry) exist
TRAMPOLINE_SYMBOL = "bpf_trampoline_link_prog"


def kprobes_available() -> bool:
    """True when the kernel can attach kprobes (CONFIG_KPROBE_EVENTS)."""
    return os.path.exists(os.path.join(TRACEFS, "kprobe_events"))


def traceable_functions(names) -> set[str]:
    """Which of ``names`` ftrace (and so kprobes) can attach to, suffixed
    variants like ``name.constprop.0`` included."""
    wanted = set(names)
    found = set()
    try:
        with open(os.path.join(TRACEFS, "available_filter_functions")) as f:
            for line in f:
                fn = line.split()[0] if line.strip() else ""
                base = fn.split(".", 1)[0]
                if base in wanted:
                    found.add(base)
    except OSError:
        pass
    return found


def kprobe_why(funcs, kprobes: bool, traceable) -> str | None:
    """Why kprobes on ``funcs`` cannot be attached, given whether the kernel
    has kprobes and which functions ftrace can reach; None when they can."""
    if not kprobes:
        return "this kernel has no kprobes (kprobe_events is missing from tracefs)"
    missing = set(funcs) - set(traceable)
    if missing:
        return f"{', '.join(sorted(missing))} cannot be probed on this kernel"
    return None


def fentry_why(funcs, btf: bool, found) -> str | None:
    """Why fentry on ``funcs`` cannot even be tried, given kernel BTF and the
    kallsyms symbols found (function_ranges()); None when it may work
    (whether the kernel permits the attach is only known by trying)."""
    if not btf:
        return "no kernel BTF for fentry (CONFIG_DEBUG_INFO_BTF)"
    if TRAMPOLINE_SYMBOL not in found:
        return "no BPF trampolines for fentry in this kernel"
    missing = set(funcs) - set(found)
    if missing:
        return f"{', '.join(sorted(missing))} not in kallsyms"
    return None


def kprobe_unavailable(funcs) -> str | None:
    """Why kprobes on ``funcs`` cannot be attached here, or None when they can."""
    return kprobe_why(funcs, kprobes_available(), traceable_functions(funcs))


def fentry_unavailable(funcs, kallsyms: str = "/proc/kallsyms") -> str | None:
    """Why fentry on ``funcs`` cannot even be tried here, or None when it may work."""
    return fentry_why(funcs, os.path.exists(BTF_VMLINUX), function_ranges((TRAMPOLINE_SYMBOL, *funcs), kallsyms))


def function_ranges(names, kallsyms: str = "/proc/kallsyms") -> dict[str, list[tuple[int, int]]]:
    """{name: [start, end) address ranges} of the text symbols ``names``
    (suffixed variants such as ``.isra.0`` included), each ending at the next
    symbol; names not found are absent. One read of kallsyms for them all."""
    wanted = set(names)
    syms = []
    try:
        with open(kallsyms) as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[1] in "tT":
                    syms.append((int(parts[0], 16), parts[2]))
    except OSError:
        return {}
    syms.sort()
    out: dict[str, list[tuple[int, int]]] = {}
    for i, (addr, name) in enumerate(syms):
        base = name.split(".", 1)[0]
        if addr and base in wanted and i + 1 < len(syms):
            out.setdefault(base, []).append((addr, syms[i + 1][0]))
    return out
