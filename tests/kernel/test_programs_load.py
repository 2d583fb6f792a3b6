"""Programs this host cannot attach must still pass its verifier: the lab's
kernel (and any with kprobes) attaches them, and a verifier refusal there
only shows as a note."""

import ctypes
import os

import pytest

from bpftrace_leak.config import Config
from bpftrace_leak.tracer import bcc
from bpftrace_leak.tracer.bcc import program_fd
from bpftrace_leak.tracer.session import Session


def test_bulk_free_kprobe_program_loads_here():
    with Session(Config(refs=False), targets=[1]) as t:
        assert program_fd(t.module, "free_bulk", "kprobe") >= 0  # raises on a verifier refusal


def test_reference_kprobe_programs_load_here():
    """The kprobe fallback for path_get/path_put passes this kernel's verifier
    (the fentry ones cannot even be loaded here: EPERM; the lab runs both)."""
    with Session(Config(refs=True, max_objects=1024), targets=[1]) as t:
        assert t.refs_method is None and "refuses fentry" in t.refs_unavailable
        for name in ("ref_path_get", "ref_path_put"):
            assert program_fd(t.module, name, "kprobe") >= 0



def _openat_sites(t) -> list:
    """Open files in this (traced) process; the `sites` keys of filp's call sites."""
    files = [open(os.devnull) for _ in range(20)]
    try:
        return [k.syscall for k, v in t.map("sites").items() if v.cache == b"filp"]
    finally:
        for f in files:
            f.close()


@pytest.mark.parametrize("way", ["bpf_rdonly_cast", "helper"])
def test_the_system_call_number_is_read_either_way(monkeypatch, way):
    """probes/filters.h reads a task's registers at task->stack + regs_offset
    through bpf_rdonly_cast (a kfunc, rewritten from a placeholder call),
    regs_offset being what regs_at found at load by comparing with the
    kernel's own task_pt_regs(); where regs_at cannot run, through the
    helper. Either way files opened here are filed under openat (257)."""
    if way == "helper":
        real, calls = bcc.test_run, []

        def failing_first(fd, args, cpu=None):  # the first run of a session's start is regs_at's
            calls.append(fd)
            if len(calls) == 1:
                raise OSError(95, "BPF_PROG_TEST_RUN: not supported")
            return real(fd, args, cpu)
        monkeypatch.setattr(bcc, "test_run", failing_first)
    with Session(Config(refs=False), targets=[os.getpid()]) as t:
        assert t.plan.kfunc_calls, "this 6.18 kernel has bpf_rdonly_cast in BTF"
        offset = t.map("regs_offset")[ctypes.c_int(0)].value
        assert (offset == 0) == (way == "helper") and offset in (0, 4 * 4096 - 168, 4 * 4096 - 184)
        assert 257 in _openat_sites(t)
