"""Programs this host cannot attach must still pass its verifier: the lab's
kernel (and any with kprobes) attaches them, and a verifier refusal there
only shows as a note."""

from bpftrace_leak.config import Config
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
