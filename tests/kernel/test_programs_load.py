"""Programs this host cannot attach must still pass its verifier: the lab's
kernel (and any with kprobes) attaches them, and a verifier refusal there
only shows as a note."""

from bpftrace_leak.config import Config
from bpftrace_leak.tracer import session as session_module
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


def _regs_flag(t) -> str:
    return next((f for f in t.plan.cflags if f.startswith("-DPT_REGS_AT=")), "")


def test_the_system_call_number_is_read_where_the_kernel_keeps_the_registers():
    """probes/filters.h reads a task's registers at task->stack + PT_REGS_AT,
    with bpf_rdonly_cast (a kfunc rewritten from a placeholder call): the
    programs load, and regs_at measures the kernel's own task_pt_regs() there."""
    with Session(Config(refs=False), targets=[1]) as t:
        assert t.plan.kfunc_calls, "this 6.18 kernel has bpf_rdonly_cast in BTF"
        at = bcc.test_run(t.prog_fds["regs_at"], [0])
        assert _regs_flag(t) == f"-DPT_REGS_AT={at}" and 0 < at < 1 << 20


def test_a_wrong_guess_of_where_the_registers_are_is_measured_and_compiled_again(monkeypatch):
    """A kernel whose stacks differ from the guess (KASAN, FRED) gets what
    regs_at measured; one where nothing sane was measured gets the helper."""
    def guessing(at):
        def wrong(config, facts, targets):
            p = real(config, facts, targets)
            p.cflags = [f"-DPT_REGS_AT={at}" if f.startswith("-DPT_REGS_AT=") else f for f in p.cflags]
            return p
        return wrong
    real = session_module.plan
    monkeypatch.setattr(session_module, "plan", guessing(8000))
    with Session(Config(refs=False), targets=[1]) as t:
        measured = bcc.test_run(t.prog_fds["regs_at"], [0])
        assert measured != 8000 and _regs_flag(t) == f"-DPT_REGS_AT={measured}"
    calls = []

    def failing_first(fd, args, cpu=None):  # the first run of a session's start is regs_at's
        calls.append(fd)
        if len(calls) == 1:
            raise OSError(95, "BPF_PROG_TEST_RUN: not supported")
        return real_test_run(fd, args, cpu)
    real_test_run = bcc.test_run
    monkeypatch.setattr(bcc, "test_run", failing_first)
    with Session(Config(refs=False), targets=[1]) as t:
        assert _regs_flag(t) == "" and "regs_at" not in t.prog_fds  # compiled with bpf_task_pt_regs instead
        assert "alloc_kmem_cache" in t.prog_fds
