#!/usr/bin/env python3
"""Reference tracers for bench/overhead.py, on the four slab tracepoints
(kmalloc, kmem_cache_alloc, kfree, kmem_cache_free), attached raw as
kleaktrace attaches them:

- ``empty``: programs that return 0, the floor any per-event tracer pays
  (the tracepoint's dispatch to BPF);
- ``hash``: a minimal exact tracker: a hash insert (address -> time) on an
  allocation, a delete on a free; no stacks, no filters, no counters.

Prints "ready" once attached, runs until SIGINT or SIGTERM.

    sudo .venv/bin/python bench/floor.py empty|hash
"""

import os
import signal
import sys
import threading

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bpftrace_leak.kernel.facts import read_facts  # noqa: E402
from bpftrace_leak.tracer import catalog  # noqa: E402

EVENTS = {"kmem/kmalloc": "alloc", "kmem/kmem_cache_alloc": "alloc", "kmem/kfree": "free",
          "kmem/kmem_cache_free": "free"}

TEXT = """
BPF_HASH(live, u64, u64, 1048576);

int floor_alloc(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef HASH
    u64 addr = ctx->args[PTR], ts = bpf_ktime_get_ns();
    live.update(&addr, &ts);
#endif
    return 0;
}

int floor_free(struct bpf_raw_tracepoint_args *ctx)
{
#ifdef HASH
    u64 addr = ctx->args[PTR];
    live.delete(&addr);
#endif
    return 0;
}
"""


def main() -> int:
    mode = sys.argv[1] if len(sys.argv) > 1 else "empty"
    from bcc import BPF
    facts = read_facts({ev: catalog.events()[ev] for ev in EVENTS}, (), ())
    ptrs = {facts.events[ev].index("ptr") for ev in EVENTS}
    if len(ptrs) != 1:
        raise SystemExit(f"the events' ptr arguments differ here: {facts.events}")
    cflags = [f"-DPTR={ptrs.pop()}"] + (["-DHASH"] if mode == "hash" else [])
    bpf = BPF(text=TEXT, cflags=cflags)
    for ev, what in EVENTS.items():
        bpf.attach_raw_tracepoint(tp=ev.split("/")[1], fn_name=f"floor_{what}")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    print("ready", flush=True)
    done.wait()
    bpf.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
