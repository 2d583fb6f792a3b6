"""Facts about the running kernel, read from tracefs, /proc and /sys.

Tracepoint layouts differ between kernels (kmem_cache_alloc gained ``name``
between 6.14 and 6.18; percpu_alloc_percpu gained ``call_site`` and
``bytes_alloc`` in 5.19; the vmalloc events appeared in 6.2), so everything
here is read from the running kernel, never assumed.
"""

import os
import re
import subprocess

from .errors import KleakError

__all__ = [
    "TRACEFS",
    "ALLOC_EVENTS",
    "RAW_ALLOC_EVENTS",
    "FREE_RAW_EVENTS",
    "ensure_tracefs",
    "event_fields",
    "gfp_bit",
    "kernel_release",
    "kprobes_available",
    "pid_max",
    "kprobe_unavailable",
    "fentry_unavailable",
    "TRAMPOLINE_SYMBOL",
    "traceable_functions",
    "function_ranges",
]

TRACEFS = "/sys/kernel/tracing"
# where event formats are read; overridable so tests can present a kernel
# that lacks a tracepoint (BCC itself always reads the real tracefs)
EVENTS_DIR = os.environ.get("KLEAKTRACE_EVENTS_DIR", os.path.join(TRACEFS, "events"))

#: the hottest events, attached raw: {event: (probes.c program, its argument
#: macro prefix, the arguments it reads)}; positions come from BTF
RAW_ALLOC_EVENTS = {
    "kmem/kmalloc": ("alloc_kmalloc", "KMALLOC", ("call_site", "ptr", "bytes_alloc")),
    "kmem/kmem_cache_alloc": ("alloc_kmem_cache", "CACHE_ALLOC", ("call_site", "ptr", "s", "bytes_alloc")),
    "kmem/mm_page_alloc": ("page_alloc", "PAGE_ALLOC", ("page", "order", "gfp_flags")),
    "kmem/mm_page_free": ("page_free", "PAGE_FREE", ("page",)),
    "kmem/mm_page_free_batched": ("page_free_batched", "PAGE_FREE_BATCHED", ("page",)),
}

#: perf-event tracepoints probes.c attaches when the kernel has them
ALLOC_EVENTS = (
    "percpu/percpu_alloc_percpu",
    "percpu/percpu_free_percpu",
    "vmalloc/alloc_vmap_area",
    "vmalloc/free_vmap_area_noflush",
)

#: slab free events, attached as raw tracepoints (see probes.c)
FREE_RAW_EVENTS = ("kmem/kfree", "kmem/kmem_cache_free")

#: interrupt exit and entry, raw, to keep allocations in interrupts off targets;
#: exits first, so that no CPU sees an entry whose exit is not yet attached
IRQ_RAW_EVENTS = ("irq/softirq_exit", "irq/irq_handler_exit", "irq/softirq_entry", "irq/irq_handler_entry")

#: functions that free without a per-object tracepoint, kprobed where possible
BULK_FREE_FUNCTIONS = ("kmem_cache_free_bulk",)

#: the events without which slab tracking means nothing
REQUIRED_EVENTS = ("kmem/kmalloc", "kmem/kfree", "kmem/kmem_cache_alloc", "kmem/kmem_cache_free")


def pid_max() -> int:
    """The largest pid + 1 (/proc/sys/kernel/pid_max); 4194304, the limit, if unreadable."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4194304


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


def kprobe_unavailable(funcs) -> str | None:
    """Why kprobes on ``funcs`` cannot be attached here, or None when they can."""
    if not kprobes_available():
        return "this kernel has no kprobes (kprobe_events is missing from tracefs)"
    missing = set(funcs) - traceable_functions(funcs)
    if missing:
        return f"{', '.join(sorted(missing))} cannot be probed on this kernel"
    return None


#: the kernel symbol whose presence says BPF trampolines (fentry) exist
TRAMPOLINE_SYMBOL = "bpf_trampoline_link_prog"


def fentry_unavailable(funcs, kallsyms: str = "/proc/kallsyms", ranges: dict | None = None) -> str | None:
    """Why fentry on ``funcs`` cannot even be tried here, or None when it may
    work (whether the kernel permits the attach is only known by trying).
    ``ranges``: function_ranges() already read for ``funcs`` and
    TRAMPOLINE_SYMBOL, so kallsyms is not read again."""
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "no kernel BTF for fentry (CONFIG_DEBUG_INFO_BTF)"
    found = ranges if ranges is not None else function_ranges((TRAMPOLINE_SYMBOL, *funcs), kallsyms)
    if TRAMPOLINE_SYMBOL not in found:
        return "no BPF trampolines for fentry in this kernel"
    missing = set(funcs) - found.keys()
    if missing:
        return f"{', '.join(sorted(missing))} not in kallsyms"
    return None


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


def kernel_release() -> str:
    return os.uname().release


def ensure_tracefs(mount: bool = True) -> str:
    """Return the tracefs mount point, mounting it at /sys/kernel/tracing if absent.

    BCC reads tracepoint formats from there; a root shell on a minimal system
    often has neither tracefs nor debugfs mounted.
    """
    if os.path.isdir(os.path.join(TRACEFS, "events")):
        return TRACEFS
    if mount:
        res = subprocess.run(
            ["mount", "-t", "tracefs", "tracefs", TRACEFS], capture_output=True, text=True
        )
        if res.returncode == 0 and os.path.isdir(os.path.join(TRACEFS, "events")):
            return TRACEFS
    raise KleakError(
        f"tracefs is not mounted at {TRACEFS} (mount -t tracefs tracefs {TRACEFS})"
    )


def parse_format(text: str) -> dict[str, str]:
    """Parse a tracefs ``format`` file into {field name: C type}, common_* excluded."""
    fields = {}
    for ctype in re.findall(r"field:([^;]+);", text):
        ctype = ctype.strip()
        m = re.match(r"(.*?)\s*\b(\w+)(\[\d*\])?$", ctype)
        if not m:
            continue
        name = m.group(2)
        if not name.startswith("common_"):
            fields[name] = ctype
    return fields


def event_fields(event: str, events_dir: str | None = None) -> dict[str, str] | None:
    """Fields of tracepoint ``system/event``, or None when the kernel lacks it."""
    try:
        with open(os.path.join(events_dir or EVENTS_DIR, event, "format")) as f:
            return parse_format(f.read())
    except FileNotFoundError:
        return None


def parse_gfp_bit(print_fmt: str, flag: str) -> int | None:
    """Find a GFP flag's value in a tracepoint's ``print fmt`` flag table.

    6.x spells entries ``{( unsigned long)(( gfp_t)((((1UL))) << (20))), "__GFP_HARDWALL"}``,
    older kernels ``{(unsigned long)(( gfp_t)0x100000u), "__GFP_HARDWALL"}``; the bit
    numbers themselves moved (e.g. when ___GFP_* became an enum in 6.8).
    """
    m = re.search(r"\{([^{}]*?),\s*\"" + re.escape(flag) + r"\"\s*\}", print_fmt)
    if not m:
        return None
    expr = m.group(1)
    shift = re.search(r"<<\s*\(?\s*(\d+)\s*\)?", expr)
    if shift:
        return 1 << int(shift.group(1))
    hexval = re.search(r"0x([0-9a-fA-F]+)", expr)
    if hexval:
        return int(hexval.group(1), 16)
    return None


def gfp_bit(flag: str, events_dir: str | None = None) -> int | None:
    """Value of GFP ``flag`` in the running kernel, from kmem/mm_page_alloc's format."""
    try:
        with open(os.path.join(events_dir or EVENTS_DIR, "kmem", "mm_page_alloc", "format")) as f:
            text = f.read()
    except FileNotFoundError:
        return None
    return parse_gfp_bit(text, flag)
