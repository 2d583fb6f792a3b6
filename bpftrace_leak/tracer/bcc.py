"""BCC specifics, in one place: importing it, compiling probes.c, loading and
attaching programs, and turning its failures into one line.

BCC attaches programs named ``kprobe__*``, ``tracepoint__*``, ``kfunc__*``
by itself as soon as it compiles them, and raises where the kernel refuses
one (fentry on this project's 6.18 host), which would lose the compiled
module. kleaktrace names its programs after the probe catalog and attaches
every one itself: _Module turns that autoload off.
"""

import contextlib
import ctypes
import os
import re
import struct
import sys
import tempfile

from ..errors import KleakError

__all__ = ["load_bcc", "compile_module", "captured_output", "failure_line", "attach_raw", "attach_kprobe",
           "attach_fentry", "detach_kprobe", "detach_fentry", "program_fd", "release_compiler_memory", "test_run", "iterate",
           "rewrite_kfunc_calls"]


def load_bcc():
    """(BPF class, libbcc) or KleakError when python3-bpfcc is missing."""
    try:
        from bcc import BPF
        from bcc.libbcc import lib
    except ImportError:
        raise KleakError(
            "BCC's Python module is missing (apt-get install python3-bpfcc, "
            "and run kleaktrace with the system python3)"
        ) from None
    return BPF, lib


@contextlib.contextmanager
def captured_output():
    """Collect what C code writes to fds 1 and 2 (BCC's compiler and verifier
    output; it prints some of its complaints on stdout).

    Yields a list that holds the captured text once the block ends.
    """
    sink: list[str] = []
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        saved = [os.dup(1), os.dup(2)]
        os.dup2(tmp.fileno(), 1)
        os.dup2(tmp.fileno(), 2)
        try:
            yield sink
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            tmp.seek(0)
            sink.append(tmp.read().decode(errors="replace"))


def failure_line(exc: Exception, log: str) -> str:
    """One line from BCC's exception and its compiler/verifier log."""
    detail = next((ln.strip() for ln in log.splitlines() if "error:" in ln), "")
    if not detail:
        detail = next((ln.strip() for ln in reversed(log.splitlines()) if ln.strip()), "")
    head = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return f"{head}: {detail}" if detail and detail not in head else head


_PART = re.compile(r'^#include "(probes/[\w.]+\.h)"\s*$', re.M)


def source(src_file: str) -> str:
    """``src_file`` with its ``#include "probes/NAME.h"`` parts written in
    place (each with #line markers, so errors name the part): BCC rewrites
    map operations (``m.lookup()``) only in the file it is given, not in
    headers it includes, and probes.c is split by concern into probes/."""
    folder = os.path.dirname(os.path.abspath(src_file))
    with open(src_file) as f:
        text = f.read()

    def part(m):
        path = os.path.join(folder, m.group(1))
        with open(path) as f:
            body = f.read()
        line = text.count("\n", 0, m.start()) + 2
        return f'#line 1 "{m.group(1)}"\n{body}\n#line {line} "{os.path.basename(src_file)}"'
    return _PART.sub(part, text)


def compile_module(src_file: str, cflags: list[str], headers: str | None, kfunc_calls: dict | None = None):
    """Compile ``src_file`` with ``cflags`` against header tree ``headers``
    (None: BCC's default); loads nothing into the kernel yet. ``kfunc_calls``:
    {placeholder helper number: kfunc BTF id}, rewritten at load (program_fd)."""
    BPF, _lib = load_bcc()

    class _Module(BPF):
        def _trace_autoload(self):
            pass  # session.py attaches every program from the catalog

    if headers:
        os.environ["BCC_KERNEL_SOURCE"] = headers
    try:
        with captured_output() as log:
            module = _Module(text=source(src_file).encode(), cflags=cflags)
    except Exception as e:  # BCC raises bare Exception for compile errors
        raise KleakError(f"cannot load the BPF programs: {failure_line(e, ''.join(log))}") from None
    release_compiler_memory()
    module.kfunc_calls = dict(kfunc_calls or {})
    return module


_BPF_CALL, _BPF_PSEUDO_KFUNC_CALL = 0x85, 2


def rewrite_kfunc_calls(insns, calls: dict) -> int:
    """Rewrite, in the program ``insns`` (a writable buffer of 8-byte BPF
    instructions), each call to helper number P of ``calls`` ({P: BTF id})
    into a call to that kernel function: src_reg BPF_PSEUDO_KFUNC_CALL, imm
    its BTF id, off 0 (vmlinux's BTF). Returns how many were rewritten."""
    done = 0
    for i in range(0, len(insns) - 7, 8):
        code, regs, _off, imm = struct.unpack_from("<BBhi", insns, i)
        if code == _BPF_CALL and (regs >> 4) == 0 and imm in calls:
            struct.pack_into("<BBhi", insns, i, code, (regs & 0x0F) | _BPF_PSEUDO_KFUNC_CALL << 4, 0, calls[imm])
            done += 1
    return done


def release_compiler_memory() -> None:
    """Give back to the system what BCC's in-process LLVM freed (a session
    runs for hours; its compile peak need not stay resident)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def program_fd(module, program: str, kind: str) -> int:
    """Load ``program`` (verifier included) as a ``kind`` program; its fd."""
    BPF, _lib = load_bcc()
    # iter: BCC finds the iterator's target from the program's bpf_iter__ name
    prog_type = {"raw": BPF.RAW_TRACEPOINT, "kprobe": BPF.KPROBE, "fentry": BPF.TRACING, "iter": BPF.TRACING}[kind]
    calls = getattr(module, "kfunc_calls", None)
    if calls and program.encode() not in module.funcs:
        # the instructions BCC compiled, in its module's memory, which it loads from
        start = _lib.bpf_function_start(module.module, program.encode())
        if start:
            size = _lib.bpf_function_size(module.module, program.encode())
            rewrite_kfunc_calls((ctypes.c_uint8 * size).from_address(start), calls)
    try:
        with captured_output() as log:
            return module.load_func(program.encode(), prog_type).fd
    except Exception as e:
        raise KleakError(f"cannot load BPF program {program}: {failure_line(e, ''.join(log))}") from None


def attach_raw(module, program: str, event: str) -> int:
    """Attach ``program`` to raw tracepoint ``event`` (no system); returns the
    link fd, closed to detach. bcc's attach_raw_tracepoint() refuses a second
    program on one event; several free copies share theirs."""
    _BPF, lib = load_bcc()
    fd = program_fd(module, program, "raw")
    link = lib.bpf_attach_raw_tracepoint(fd, event.encode())
    if link < 0:
        raise KleakError(f"cannot attach raw tracepoint {event}: {os.strerror(ctypes.get_errno() or 1)}")
    return link


class _TestRun(ctypes.Structure):
    """union bpf_attr's ``test`` member (include/uapi/linux/bpf.h), BPF_PROG_TEST_RUN."""

    _fields_ = [("prog_fd", ctypes.c_uint32), ("retval", ctypes.c_uint32), ("data_size_in", ctypes.c_uint32),
                ("data_size_out", ctypes.c_uint32), ("data_in", ctypes.c_uint64), ("data_out", ctypes.c_uint64),
                ("repeat", ctypes.c_uint32), ("duration", ctypes.c_uint32), ("ctx_size_in", ctypes.c_uint32),
                ("ctx_size_out", ctypes.c_uint32), ("ctx_in", ctypes.c_uint64), ("ctx_out", ctypes.c_uint64),
                ("flags", ctypes.c_uint32), ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
                ("pad", ctypes.c_uint32)]


_NR_BPF, _BPF_PROG_TEST_RUN, _BPF_F_TEST_RUN_ON_CPU = 321, 10, 1
_libc = ctypes.CDLL(None, use_errno=True)


def test_run(fd: int, args, cpu: int | None = None) -> int:
    """Run raw-tracepoint program ``fd`` once with ``args`` as its tracepoint
    arguments (BPF_PROG_TEST_RUN, 5.10+), on CPU ``cpu`` if given; returns
    what the program returned. OSError when the kernel refuses."""
    values = (ctypes.c_uint64 * len(args))(*[a & (2**64 - 1) for a in args])
    attr = _TestRun(prog_fd=fd, ctx_size_in=ctypes.sizeof(values), ctx_in=ctypes.addressof(values))
    if cpu is not None:
        attr.flags, attr.cpu = _BPF_F_TEST_RUN_ON_CPU, cpu
    if _libc.syscall(_NR_BPF, _BPF_PROG_TEST_RUN, ctypes.byref(attr), ctypes.sizeof(attr)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"BPF_PROG_TEST_RUN: {os.strerror(err)}")
    return attr.retval


def iterate(fd: int) -> bytes:
    """Everything iterator program ``fd`` writes in one pass over its target
    (a link and an iterator made for the pass and closed after it)."""
    _BPF, lib = load_bcc()
    link = lib.bcc_iter_attach(fd, None, 0)
    if link < 0:
        raise OSError(-link, f"BPF iterator link: {os.strerror(-link)}")
    try:
        it = lib.bcc_iter_create(link)
        if it < 0:
            raise OSError(-it, f"BPF iterator: {os.strerror(-it)}")
        chunks = []
        try:
            while True:
                chunk = os.read(it, 1 << 20)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        finally:
            os.close(it)
    finally:
        os.close(link)


def attach_kprobe(module, program: str, function: str) -> None:
    """Attach ``program`` as a kprobe on ``function``; raises what BCC raises."""
    with captured_output():
        module.attach_kprobe(event=function, fn_name=program)


def detach_kprobe(module, function: str) -> None:
    with contextlib.suppress(Exception):
        module.detach_kprobe(event=function)


def fentry_program(module, program: str) -> bytes:
    """The name KFUNC_PROBE gave ``program`` (``kfunc__<function>``) in this
    BCC: Debian 12's 0.26 keeps it, Debian 13's 0.31 makes it
    ``kfunc__vmlinux__<function>`` (MODULE_KFUNC_PROBE's scheme); asking
    for the old name there fails with "Unknown program" (found by the lab on
    trixie's 6.12)."""
    from bcc import lib
    newer = program.replace("kfunc__", "kfunc__vmlinux__", 1)
    for name in (program.encode(), newer.encode()):
        if lib.bpf_function_start(module.module, name):
            return name
    return program.encode()


def attach_fentry(module, program: str) -> None:
    """Attach fentry ``program`` (named ``kfunc__<function>``); raises what BCC
    raises, with errno saying what the kernel said."""
    with captured_output():
        module.attach_kfunc(fn_name=fentry_program(module, program))


def detach_fentry(module, program: str) -> None:
    with contextlib.suppress(Exception):
        module.detach_kfunc(fn_name=fentry_program(module, program))
