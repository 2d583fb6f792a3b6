"""Facts about the running kernel and what this process may do with it.

Read-only: nothing here loads BPF. The modules:

- tracefs.py: tracepoints present, their formats, GFP bits;
- functions.py: kernel functions from kallsyms, and whether kprobes or
  fentry can reach them;
- btf.py: struct offsets and tracepoint argument positions from BTF;
- slabs.py: slab caches and their merged aliases;
- headers.py: a header tree for BCC's compiler.
"""

import os

from ..errors import KleakError

__all__ = ["kernel_release", "pid_max", "page_size", "check_privileges"]

_CAP_SYS_ADMIN, _CAP_PERFMON, _CAP_BPF = 21, 38, 39


def kernel_release() -> str:
    return os.uname().release


def pid_max() -> int:
    """The largest pid + 1 (/proc/sys/kernel/pid_max); 4194304, the limit, if unreadable."""
    try:
        with open("/proc/sys/kernel/pid_max") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 4194304


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")


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
