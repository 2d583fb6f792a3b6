"""The probe catalog: every BPF program of probes.c, what it attaches to and
what it needs from the kernel, in one table.

Everything about a program is derived from its row: the compile flags that
give its arguments' positions (plan.py), the order and way it is attached
and detached (session.py), the doctor's lines (sessions/doctor.py), and
whether its skipped runs are lost frees (reader.py). A unit test checks the
table against probes.c, so a program is named in C once and here once.

Attach kinds:

- ``raw``: a raw tracepoint. The program gets the tracepoint's arguments
  themselves, several times cheaper than the perf-event form, which first
  copies a record; their positions come from the kernel's BTF
  (``__bpf_trace_<event>``), compiled in as ``ARG_<event>_<name>``. A raw
  program skips an event only while that same program runs on the CPU
  (perf-event programs: while any of them does), see ``copies``.
- ``kprobe``: a kprobe on a kernel function (kernels with CONFIG_KPROBES).
- ``fentry``: a BPF trampoline on a kernel function (BTF and trampolines);
  BCC names such programs ``kfunc__<function>``.
- ``tail``: a program other programs tail-call, put in slot 0 of the
  program array named by its target (a loop too long for one program).
- ``run``: a program user space runs on demand (BPF_PROG_TEST_RUN) with the
  arguments it chooses; attached to nothing (the slab and reference censuses).
- ``iter``: a BPF iterator over the kernel object its target names (5.8+);
  user space makes one and reads what the program wrote, on demand (the
  reference census). BCC finds the target from the ``bpf_iter__`` name.
"""

from dataclasses import dataclass

from .. import layout

__all__ = ["Probe", "PROBES", "RAW", "KPROBE", "FENTRY", "TAIL", "RUN", "ITER", "by_program", "events"]

RAW, KPROBE, FENTRY, TAIL, RUN, ITER = "raw", "kprobe", "fentry", "tail", "run", "iter"


@dataclass(frozen=True)
class Probe:
    """One program of probes.c and where it attaches.

    ``target``: ``system/event`` of a tracepoint, or a kernel function.
    ``when``: the configuration that wants it: "allocs" (allocation
    tracking), "targets" (a PID filter), "forks" (--children, or the
    tracer's own children left out system-wide), "refs"
    (reference counts), "targets-only" (a PID filter, not --cgroup), "scan" (the
    holder scan: plan.py decides), "tasks" (the task iterator: the reference census, the
    holder scan or the census's recycled stacks), "retire" (freed slab pages retire their objects:
    plan.py decides), "census" (the slab census: plan.py decides), "pins" (the
    reference census: plan.py decides), "cgroups"
    (each allocation's cgroup: plan.py decides), "always".
    ``required``: without it the session cannot run (an error); otherwise its
    absence is a note.
    ``args``: the tracepoint arguments the program must find, each a name or
    a tuple of alternatives (the first one the kernel has is used).
    ``copies``: identical programs attached to the event (``<program>_<n>``),
    so that a nested event finds a copy that is not running (probes.c:
    free_copy); ``free_event`` names its layout.h free_event entry.
    ``lost_when_skipped``: every run the kernel skips (recursion_misses) is a
    free nobody saw: counted in the report's skipped_frees. ``space``: the
    records (layout.h enum space) such a free leaves behind as phantoms: the
    holder scan cannot call them orphans (tracer/scan.py).
    ``template``: the DEFINE_EVENT class the event belongs to on kernels where
    it is not a TRACE_EVENT of its own: BTF then has no ``__bpf_trace_<event>``,
    its arguments are ``__bpf_trace_<template>``'s.
    ``needs``: compile flags (``-D`` names) without which probes.c does not
    build the program (what some kernels lack). ``part``: the file among
    probes.c's parts (probes/*.h) that defines it.
    """

    target: str
    program: str
    attach: str
    when: str
    required: bool = False
    args: tuple = ()
    copies: int = 1
    free_event: str | None = None
    lost_when_skipped: bool = False
    space: str = ""
    template: str | None = None
    needs: tuple = ()
    part: str = ""  # the file of probes.c's parts that defines it (probes/*.h)

    @property
    def event(self) -> str:
        """The tracepoint's name without its system (raw programs)."""
        return self.target.split("/")[1]

    @property
    def name(self) -> str:
        """What ARG_<name>_<argument> macros are named after: the event, or the function."""
        return self.event if self.attach == RAW else self.target

    def programs(self, copies: int = 1) -> list[str]:
        """The program names attached: one, or ``copies`` of a copied one."""
        if self.copies == 1:
            return [self.program]
        return [f"{self.program}_{n}" for n in range(min(copies, self.copies))]


#: in attach order: interrupt exits before entries (no CPU may see an entry
#: whose exit is not attached yet), frees before allocations (nothing is
#: recorded whose free could go unseen), process events, then references
PROBES = (
    Probe("irq/softirq_exit", "irq_softirq_exit", RAW, "targets", part="probes/events.h"),
    Probe("irq/irq_handler_exit", "irq_irq_handler_exit", RAW, "targets", part="probes/events.h"),
    Probe("irq/softirq_entry", "irq_softirq_entry", RAW, "targets", part="probes/events.h"),
    Probe("irq/irq_handler_entry", "irq_irq_handler_entry", RAW, "targets", part="probes/events.h"),
    Probe("kmem/kfree", "free_kfree", RAW, "allocs", required=True, args=("ptr",),
          copies=layout.DEFINES["FREE_COPIES"], free_event="FREE_EV_KFREE", part="probes/frees.h"),
    Probe("kmem/kmem_cache_free", "free_kmem_cache_free", RAW, "allocs", required=True, args=("ptr",),
          copies=layout.DEFINES["FREE_COPIES"], free_event="FREE_EV_KMEM_CACHE_FREE", part="probes/frees.h"),
    # the 2nd to 8th 4 KiB of a freed page: tail-called by free_page (probes/retire.h:
    # retire_page), on kernels without the slab census
    Probe("retire_next", "retire_pages", TAIL, "retire", part="probes/retire.h"),
    Probe("kmem/mm_page_free", "free_page", RAW, "allocs", args=("page", "order"), lost_when_skipped=True,
          space="SPACE_PAGE", part="probes/allocs.h"),
    Probe("kmem/mm_page_free_batched", "free_page_batched", RAW, "allocs", args=("page",), lost_when_skipped=True,
          space="SPACE_PAGE", part="probes/allocs.h"),
    Probe("percpu/percpu_free_percpu", "free_percpu", RAW, "allocs", args=("ptr",), lost_when_skipped=True,
          space="SPACE_PERCPU", part="probes/allocs.h"),
    Probe("vmalloc/free_vmap_area_noflush", "free_vmalloc", RAW, "allocs", args=("va_start",),
          lost_when_skipped=True, space="SPACE_VMALLOC", part="probes/allocs.h"),
    # kmem_cache_free_bulk(s, size, p) frees p[0..size) without a per-object
    # event: batched kfree_rcu frees that way on 5.x-6.x (the lab's 6.1)
    Probe("kmem_cache_free_bulk", "free_bulk", KPROBE, "allocs", args=("size", "p"), lost_when_skipped=True, part="probes/frees.h"),
    # kfree_rcu()'s entry: the object is dead to its owner from here (6.18+
    # sheaves return whole batches to the barn without a per-object free)
    Probe("kvfree_call_rcu", "free_rcu", KPROBE, "allocs", args=("head", ("ptr", "func")), lost_when_skipped=True, part="probes/frees.h"),
    Probe("kmem/kmalloc", "alloc_kmalloc", RAW, "allocs", required=True, args=("call_site", "ptr", "bytes_alloc"), part="probes/allocs.h"),
    Probe("kmem/kmem_cache_alloc", "alloc_kmem_cache", RAW, "allocs", required=True,
          args=("call_site", "ptr", ("s", "bytes_alloc")), part="probes/allocs.h"),
    Probe("kmem/mm_page_alloc", "alloc_page", RAW, "allocs", args=("page", "order", "gfp_flags"), part="probes/allocs.h"),
    Probe("percpu/percpu_alloc_percpu", "alloc_percpu", RAW, "allocs", args=("ptr", ("bytes_alloc", "size")), part="probes/allocs.h"),
    Probe("vmalloc/alloc_vmap_area", "alloc_vmalloc", RAW, "allocs", args=("addr", "size", "failed"), part="probes/allocs.h"),
    # its own TRACE_EVENT, with group_dead, from 6.16; sched_process_template's before
    Probe("sched/sched_process_exit", "task_exit", RAW, "always", required=True, args=("p",),
          template="sched_process_template", part="probes/events.h"),
    # a traced task freed after its exit (probes.c: exits_unfreed): the final
    # report waits for what exits free
    Probe("sched/sched_process_free", "task_freed", RAW, "targets-only", args=("p",),
          template="sched_process_template", part="probes/events.h"),
    # cgroups made, removed and joined (probes.c: cgroup_made, ...)
    Probe("cgroup/cgroup_mkdir", "cgroup_made", RAW, "cgroups", args=("cgrp", "path"), template="cgroup", part="probes/events.h"),
    Probe("cgroup/cgroup_rmdir", "cgroup_removed", RAW, "cgroups", args=("cgrp", "path"), template="cgroup", part="probes/events.h"),
    Probe("cgroup/cgroup_attach_task", "cgroup_moved", RAW, "cgroups", template="cgroup_migrate", part="probes/events.h"),
    Probe("sched/sched_process_fork", "task_fork", RAW, "forks", required=True, args=("child",), part="probes/events.h"),
    # where a task's registers are, found once at load (session.py: _find_regs)
    Probe("regs", "regs_at", RUN, "allocs", needs=("PT_REGS_BTF_ID",), part="probes/filters.h"),
    # the slab census (tracer/census.py), run on demand
    Probe("clock", "clock_now", RUN, "allocs", part="probes/objects.h"),
    Probe("census", "census_peek", RUN, "census", part="probes/census.h"),
    Probe("census", "census_cpu", RUN, "census", part="probes/census.h"),
    Probe("census", "census_drop", RUN, "census", part="probes/census.h"),
    Probe("census", "census_slab", RUN, "census", part="probes/census.h"),
    Probe("census", "census_retire", RUN, "census", part="probes/census.h"),
    Probe("census", "census_freed", RUN, "census", needs=("PAGE_FREED_COUNT",), part="probes/census.h"),
    Probe("census", "census_page", RUN, "census", needs=("PAGE_BUDDY_MASK",), part="probes/census.h"),
    Probe("census", "census_cpu_cache", RUN, "census", part="probes/census.h"),
    Probe("census", "census_barn", RUN, "census", needs=("KMEM_CACHE_CPU_SHEAVES_OFF",), part="probes/census.h"),
    Probe("census", "census_sheaf", RUN, "census", needs=("KMEM_CACHE_CPU_SHEAVES_OFF",), part="probes/census.h"),
    # the reference census (tracer/pins.py), run on demand
    Probe("pins_next", "pins_read_next", TAIL, "pins", part="probes/pins.h"),
    Probe("pins", "pins_read", RUN, "pins", part="probes/pins.h"),
    Probe("pins", "pins_children", RUN, "pins", part="probes/pins.h"),
    Probe("task_file", "bpf_iter__task_file", ITER, "pins", part="probes/pins.h"),
    Probe("task_vma", "bpf_iter__task_vma", ITER, "pins", part="probes/pins.h"),
    Probe("task", "bpf_iter__task", ITER, "tasks", part="probes/pins.h"),
    # the holder scan (tracer/scan.py), run on demand
    Probe("scan", "scan_read", RUN, "scan", part="probes/scan.h"),
    Probe("scan", "scan_task", RUN, "scan", part="probes/scan.h"),
    Probe("path_get", "kfunc__path_get", FENTRY, "refs", part="probes/refs.h"),
    Probe("path_put", "kfunc__path_put", FENTRY, "refs", part="probes/refs.h"),
    Probe("path_get", "ref_path_get", KPROBE, "refs", part="probes/refs.h"),
    Probe("path_put", "ref_path_put", KPROBE, "refs", part="probes/refs.h"),
)


def by_program(name: str) -> Probe:
    """The catalog row of program ``name`` (a copy's name included)."""
    for p in PROBES:
        if name == p.program or (p.copies > 1 and name in p.programs(p.copies)):
            return p
    raise KeyError(name)


def events() -> dict[str, tuple]:
    """{tracepoint: the BTF functions that may carry its arguments, in order}
    for every tracepoint in the catalog."""
    out: dict[str, tuple] = {}
    for p in PROBES:
        if p.attach == RAW:
            out[p.target] = (f"__bpf_trace_{p.event}",) + ((f"__bpf_trace_{p.template}",) if p.template else ())
    return out
