"""``kleaktrace doctor``: what this kernel and host support, one line each.

Each line starts with ok, warn or FAIL and says what to do. The exit status
is 1 when allocation tracing cannot run at all.
"""

import ctypes
import os
import sys

from . import kernel
from .errors import KleakError

__all__ = ["checks", "run_doctor"]


def _kprobes() -> tuple[str, str]:
    if not kernel.kprobes_available():
        return "warn", "kprobes: not built into this kernel (CONFIG_KPROBE_EVENTS); refcount tracking needs kprobes or fentry"
    want = ("dput", "path_get", "path_put", "mntget", "mntput")
    found = [fn for fn in want if fn in kernel.traceable_functions(want)]
    return "ok", f"kprobes: available; traceable: {', '.join(found) or 'none of dput/path_get/path_put'}"


def _fentry() -> tuple[str, str]:
    why = kernel.fentry_unavailable(("path_get", "path_put"))
    if why:
        return "warn", f"fentry: {why}; refcount tracking needs kprobes instead"
    from .tracer import bcc_failure, captured_stderr
    try:
        from bcc import BPF
        with captured_stderr() as log:
            BPF(text="KFUNC_PROBE(path_get) { return 0; }").cleanup()
    except ImportError:
        return "warn", "fentry: untested, BCC missing"
    except Exception as e:
        err = ctypes.get_errno()
        reason = f"the kernel refuses it: {os.strerror(err)}" if err else bcc_failure(e, "".join(log))
        return "warn", f"fentry: cannot attach to path_get ({reason}); refcount tracking needs kprobes instead"
    return "ok", "fentry: attaches (path_get)"


def _refs(fentry_ok: bool) -> tuple[str, str]:
    if not os.path.exists("/sys/kernel/btf/vmlinux"):
        return "warn", "reference counts: unavailable (no kernel BTF for struct path/dentry offsets)"
    if fentry_ok:
        return "ok", "reference counts: fentry on path_get/path_put, offsets from BTF"
    why = kernel.kprobe_unavailable(("path_get", "path_put"))
    if why:
        return "warn", f"reference counts: unavailable ({why}, and no fentry); kleaktrace traces allocations only"
    return "ok", "reference counts: kprobe on path_get/path_put (no fentry), offsets from BTF"


def checks() -> list[tuple[str, str]]:
    """[(status, line)] with status ok / warn / FAIL."""
    out = []
    if os.geteuid() == 0:
        out.append(("ok", "privileges: root"))
    else:
        out.append(("FAIL", "privileges: not root; run with sudo (or grant CAP_BPF and CAP_PERFMON)"))
    try:
        import bcc  # noqa: F401
        out.append(("ok", "BCC: python3-bpfcc importable"))
    except ImportError:
        out.append(("FAIL", "BCC: missing; apt-get install python3-bpfcc bpfcc-tools"))
    try:
        out.append(("ok", f"tracefs: mounted at {kernel.ensure_tracefs()}"))
    except KleakError as e:
        out.append(("FAIL", f"{e}"))
        return out
    for event in tuple(kernel.RAW_ALLOC_EVENTS) + kernel.ALLOC_EVENTS + kernel.FREE_RAW_EVENTS + kernel.IRQ_RAW_EVENTS:
        present = kernel.event_fields(event) is not None
        if present:
            out.append(("ok", f"tracepoint {event.replace('/', ':')}"))
        elif event in kernel.REQUIRED_EVENTS:
            out.append(("FAIL", f"tracepoint {event.replace('/', ':')}: missing; slab tracking impossible"))
        else:
            out.append(("warn", f"tracepoint {event.replace('/', ':')}: missing; that kind is not tracked"))
    btf = os.path.exists("/sys/kernel/btf/vmlinux")
    out.append(("ok", "BTF: /sys/kernel/btf/vmlinux present") if btf else
               ("FAIL", "BTF: /sys/kernel/btf/vmlinux absent; slab probes locate their arguments "
                        "through it (CONFIG_DEBUG_INFO_BTF)"))
    try:
        from .headers import find_headers
        notes = []
        tree = find_headers(warn=notes.append)
        if tree:
            os.environ["BCC_KERNEL_SOURCE"] = tree  # for the fentry probe below
        if tree is None:
            out.append(("ok", f"headers: /lib/modules/{kernel.kernel_release()}/build"))
        else:
            out.append(("warn" if notes else "ok", f"headers: {tree}" + (f" ({notes[0]})" if notes else "")))
    except KleakError as e:
        out.append(("FAIL", f"headers: {e}"))
    out.append(_kprobes())
    fentry = _fentry()
    out.append(fentry)
    out.append(_refs(fentry[0] == "ok"))
    return out


def run_doctor(out=None) -> int:
    out = out or sys.stdout
    results = checks()
    for status, line in results:
        out.write(f"{status:<4} {line}\n")
    return 1 if any(s == "FAIL" for s, _ in results) else 0
