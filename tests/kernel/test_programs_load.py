"""Programs this host cannot attach must still pass its verifier: the lab's
kernel (and any with kprobes) attaches them, and a verifier refusal there
only shows as a note."""

from bpftrace_leak.tracer import Options, Tracer


def test_bulk_free_kprobe_program_loads_here():
    from bcc import BPF
    with Tracer(Options(targets=[1], refs=False)) as t:
        fn = t.bpf.load_func(b"free_bulk", BPF.KPROBE)  # raises on a verifier refusal
        assert fn.fd >= 0
