"""Programs this host cannot attach must still pass its verifier: the lab's
kernel (and any with kprobes) attaches them, and a verifier refusal there
only shows as a note."""

from bpftrace_leak.tracer import Options, Tracer


def test_bulk_free_kprobe_program_loads_here():
    from bcc import BPF
    with Tracer(Options(targets=[1], refs=False)) as t:
        fn = t.bpf.load_func(b"free_bulk", BPF.KPROBE)  # raises on a verifier refusal
        assert fn.fd >= 0


def test_reference_kprobe_programs_load_here():
    """The kprobe fallback for path_get/path_put passes this kernel's verifier
    (the fentry ones cannot even be loaded here: EPERM; the lab runs both)."""
    from bcc import BPF
    with Tracer(Options(targets=[1], refs=True, max_objects=1024)) as t:
        assert t.refs_method is None and "refuses fentry" in t.refs_unavailable
        for name in (b"ref_path_get", b"ref_path_put"):
            assert t.bpf.load_func(name, BPF.KPROBE).fd >= 0
