"""``kleaktrace doctor``: what this kernel and host support, one line each.

Each line starts with ok, warn or FAIL and says what to do. The exit status
is 1 when allocation tracing cannot run at all. The tracepoint lines come
from the probe catalog (tracer/catalog.py), the reference lines from the
same checks the tracer's plan makes.
"""

import ctypes
import os
import sys

from ..errors import KleakError
from ..kernel import kernel_release
from ..kernel.functions import BTF_VMLINUX, fentry_unavailable, kprobe_unavailable, kprobes_available, \
    traceable_functions
from ..kernel.tracefs import ensure_tracefs, event_fields
from ..tracer import bcc, catalog
from ..tracer.refs_plan import FUNCTIONS as _REF_FUNCTIONS

__all__ = ["checks", "run_doctor"]


def _kprobes() -> tuple[str, str]:
    if not kprobes_available():
        return "warn", "kprobes: not built into this kernel (CONFIG_KPROBE_EVENTS); refcount tracking needs kprobes or fentry"
    want = ("dput", "path_get", "path_put", "mntget", "mntput")
    found = [fn for fn in want if fn in traceable_functions(want)]
    return "ok", f"kprobes: available; traceable: {', '.join(found) or 'none of dput/path_get/path_put'}"


def _fentry() -> tuple[str, str]:
    why = fentry_unavailable(_REF_FUNCTIONS)
    if why:
        return "warn", f"fentry: {why}; refcount tracking needs kprobes instead"
    try:
        BPF, _lib = bcc.load_bcc()
    except KleakError:
        return "warn", "fentry: untested, BCC missing"
    try:
        with bcc.captured_output() as log:
            BPF(text="KFUNC_PROBE(path_get) { return 0; }").cleanup()
    except Exception as e:
        err = ctypes.get_errno()
        reason = f"the kernel refuses it: {os.strerror(err)}" if err else bcc.failure_line(e, "".join(log))
        return "warn", f"fentry: cannot attach to path_get ({reason}); refcount tracking needs kprobes instead"
    return "ok", "fentry: attaches (path_get)"


def _refs(fentry_ok: bool) -> tuple[str, str]:
    if not os.path.exists(BTF_VMLINUX):
        return "warn", "reference counts: unavailable (no kernel BTF for struct path/dentry offsets)"
    if fentry_ok:
        return "ok", "reference counts: fentry on path_get/path_put, offsets from BTF"
    why = kprobe_unavailable(_REF_FUNCTIONS)
    if why:
        return "warn", f"reference counts: unavailable ({why}, and no fentry): path_get/path_put not paired; the reference census still reads who holds each dentry"
    return "ok", "reference counts: kprobe on path_get/path_put (no fentry), offsets from BTF"


_ITER_TEST = """
struct meta { union { struct seq_file *seq; }; u64 session_id; u64 seq_num; };
struct ctx_task { union { struct meta *meta; }; union { void *task; }; };
int bpf_iter__task(struct ctx_task *ctx) { return 0; }
"""


def _census() -> tuple[str, str]:
    """The reference census needs BPF iterators (5.8+) and kernel BTF; tried for real."""
    if not os.path.exists(BTF_VMLINUX):
        return "warn", "reference census: unavailable (no kernel BTF)"
    try:
        BPF, _lib = bcc.load_bcc()
        with bcc.captured_output():
            module = BPF(text=_ITER_TEST)
            try:
                bcc.iterate(bcc.program_fd(module, "bpf_iter__task", "iter"))
            finally:
                module.cleanup()
    except Exception as e:  # KleakError, OSError, and BCC raises bare Exception
        return "warn", f"reference census: unavailable (a BPF task iterator fails: {bcc.failure_line(e, '')})"
    return "ok", "reference census: BPF task iterators work (pinned vs cached, who holds each dentry)"


def _tracepoints() -> list[tuple[str, str]]:
    out = []
    required = {p.target for p in catalog.PROBES if p.required}
    for event in catalog.events():
        name = f"tracepoint {event.replace('/', ':')}"
        if event_fields(event) is not None:
            out.append(("ok", name))
        elif event in required:
            out.append(("FAIL", f"{name}: missing; slab tracking impossible"))
        else:
            out.append(("warn", f"{name}: missing; what it shows is not tracked"))
    return out


def checks() -> list[tuple[str, str]]:
    """[(status, line)] with status ok / warn / FAIL."""
    out = []
    if os.geteuid() == 0:
        out.append(("ok", "privileges: root"))
    else:
        out.append(("FAIL", "privileges: not root; run with sudo (or grant CAP_BPF and CAP_PERFMON)"))
    try:
        bcc.load_bcc()
        out.append(("ok", "BCC: python3-bpfcc importable"))
    except KleakError:
        out.append(("FAIL", "BCC: missing; apt-get install python3-bpfcc bpfcc-tools"))
    try:
        out.append(("ok", f"tracefs: mounted at {ensure_tracefs()}"))
    except KleakError as e:
        out.append(("FAIL", f"{e}"))
        return out
    out += _tracepoints()
    btf = os.path.exists(BTF_VMLINUX)
    out.append(("ok", f"BTF: {BTF_VMLINUX} present") if btf else
               ("FAIL", f"BTF: {BTF_VMLINUX} absent; the probes locate tracepoint arguments "
                        "through it (CONFIG_DEBUG_INFO_BTF)"))
    try:
        from ..kernel.headers import find_headers
        notes = []
        tree = find_headers(warn=notes.append)
        if tree:
            os.environ["BCC_KERNEL_SOURCE"] = tree  # for the fentry probe below
        if tree is None:
            out.append(("ok", f"headers: /lib/modules/{kernel_release()}/build"))
        else:
            out.append(("warn" if notes else "ok", f"headers: {tree}" + (f" ({notes[0]})" if notes else "")))
    except KleakError as e:
        out.append(("FAIL", f"headers: {e}"))
    out.append(_kprobes())
    fentry = _fentry()
    out.append(fentry)
    out.append(_refs(fentry[0] == "ok"))
    out.append(_census())
    return out


def run_doctor(out=None) -> int:
    out = out or sys.stdout
    results = checks()
    for status, line in results:
        out.write(f"{status:<4} {line}\n")
    return 1 if any(s == "FAIL" for s, _ in results) else 0
