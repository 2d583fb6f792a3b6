"""Tracepoints of the running kernel, read from tracefs.

Tracepoint layouts differ between kernels (kmem_cache_alloc gained ``name``
between 6.14 and 6.18; percpu_alloc_percpu gained ``call_site`` and
``bytes_alloc`` in 5.19; the vmalloc events appeared in 6.2), so whether an
event exists is read here, never assumed; the arguments a raw tracepoint
program reads come from BTF (btf.py).
"""

import os
import re
import subprocess

from ..errors import KleakError

__all__ = ["TRACEFS", "ensure_tracefs", "event_fields", "parse_format", "gfp_bit", "parse_gfp_bit"]

TRACEFS = "/sys/kernel/tracing"
# where event formats are read; overridable so tests can present a kernel
# that lacks a tracepoint
EVENTS_DIR = os.environ.get("KLEAKTRACE_EVENTS_DIR", os.path.join(TRACEFS, "events"))


def _mounted(path: str) -> bool:
    try:
        with open("/proc/self/mountinfo") as f:
            return any(line.split()[4] == path for line in f if len(line.split()) > 4)
    except OSError:
        return os.path.ismount(path)


def ensure_tracefs(mount: bool = True) -> str:
    """Return the tracefs mount point, mounting it at /sys/kernel/tracing if absent.

    A root shell on a minimal system often has neither tracefs nor debugfs
    mounted. tracefs is mode 0700: another user with CAP_BPF is told it may
    not read it, not that it is missing.
    """
    if os.path.isdir(os.path.join(TRACEFS, "events")):
        return TRACEFS
    if _mounted(TRACEFS):
        raise KleakError(f"tracefs at {TRACEFS} is not readable by this user "
                         "(it is root's, mode 0700): run kleaktrace as root")
    if mount and os.geteuid() == 0:
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
