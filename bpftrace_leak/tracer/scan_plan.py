"""What the holder scan (tracer/scan.py, probes/scan.h) needs from the
kernel: struct offsets from BTF, as compile flags for the task iterator and
as numbers for the reads done from Python. Pure, as plan.py.
"""

from ..kernel.btf import BtfError

__all__ = ["STRUCTS", "PERCPU_OPTIONAL", "TYPES", "flags", "fpu_regs_offset"]

#: followed from Python: the page tables' root (a task's mm), names of the
#: tasks whose kernel stacks hold something, the fields of struct page that
#: name a memmap holder (memcg_data: page cache charged to a memory cgroup;
#: private: a folio's buffer heads; mapping: its address_space or anon_vma)
_OFFSETS = {
    "task_mm": "task_struct.mm", "mm_pgd": "mm_struct.pgd", "task_comm": "task_struct.comm",
    "task_pid": "task_struct.pid", "page_private": "page.private", "page_mapping": "page.mapping",
    "page_lru": "page.lru", "page_refcount": "page._refcount", "page_mapcount": "page._mapcount", "slab_cache": "slab.slab_cache", "cache_size": "kmem_cache.size",
    "cache_name": "kmem_cache.name",
}
#: struct page's memcg_data (CONFIG_MEMCG) is the one field some kernels lack
_OPTIONAL = {"page_memcg_data": "page.memcg_data"}
#: a sheaf (6.18+; every cache's in 7.x) is a kmalloc'd array of pointers to
#: free objects, whose slots keep pointing at objects handed out since: no holder
_SHEAF = {"sheaf_cache": "slab_sheaf.cache", "sheaf_size": "slab_sheaf.size", "sheaf_objects": "slab_sheaf.objects",
          "cache_sheaf_capacity": "kmem_cache.sheaf_capacity"}
#: kfree_rcu's pages of pointers (struct kvfree_rcu_bulk_data: records of
#: objects to free after a grace period), each CPU's (per-CPU krc): the pages
#: it caches for reuse (bkvcache, an llist) keep every record they had, and a
#: page in use keeps, past nr_records, what its last use wrote. Freed objects'
#: addresses, handed out again since: on 6.1 a cached page "held" one pair
#: of the lab's planted orphan cycle (its stale next, and records). 6.1 chains
#: a channel's pages by next (bkvhead, bkvhead_free); 6.2 on lists (bulk_head,
#: bulk_head_free: list_head first in the page)
_RCU_PAGES = {"cache": "kfree_rcu_cpu.bkvcache",
              "nr_records": "kvfree_rcu_bulk_data.nr_records", "records": "kvfree_rcu_bulk_data.records",
              "works": "kfree_rcu_cpu.krw_arr"}
_RCU_CHAINS = ({"heads": "kfree_rcu_cpu.bulk_head", "free_heads": "kfree_rcu_cpu_work.bulk_head_free",
                "list": "kvfree_rcu_bulk_data.list"},
               {"heads": "kfree_rcu_cpu.bkvhead", "free_heads": "kfree_rcu_cpu_work.bkvhead_free",
                "next": "kvfree_rcu_bulk_data.next"})
PERCPU_OPTIONAL = ("krc",)
TYPES = ("kfree_rcu_cpu_work",)
_STACK = "task_struct.stack"
#: a sleeping task's stack below its saved stack pointer is dead frames: the
#: words there are stale (7.2: a kworker's dead frame "held" a lab orphan).
#: on_cpu (CONFIG_SMP) says the saved one is out of date: the task runs
_LIVE_STACK = {"TASK_SP_OFF": "task_struct.thread.sp", "TASK_ON_CPU_OFF": "task_struct.on_cpu"}
STRUCTS = tuple(_OFFSETS.values()) + tuple(_OPTIONAL.values()) + tuple(_SHEAF.values()) + (_STACK,) \
    + tuple(_LIVE_STACK.values()) + tuple(_RCU_PAGES.values()) + tuple(v for c in _RCU_CHAINS for v in c.values())


def flags(p, config, facts) -> list[str]:
    """Flags for the holder scan, filling ``p.scan``; [] with a note when it is
    off or this kernel cannot carry it."""
    if not config.scan:
        return []
    found = facts.offsets
    missing = [path for path in (*_OFFSETS.values(), _STACK) if path not in found]
    why = None
    if not p.census:
        why = "it reads kernel memory with the slab census's programs, which this kernel cannot run"
    elif missing:
        why = f"this kernel's BTF lacks {', '.join(missing)}"
    elif facts.page_struct != 64:
        why = f"struct page is {facts.page_struct} bytes (the scan reads 64)"
    if why:
        p.notes.append(f"no holder scan: {why}")
        return []
    p.scan = {k: found[v] for k, v in _OFFSETS.items()}
    p.scan.update({k: found[v] for k, v in _OPTIONAL.items() if v in found})
    if all(v in found for v in _SHEAF.values()):
        p.scan["sheaf"] = {k: found[v] for k, v in _SHEAF.items()}
    p.scan["via"], p.scan["limit_s"] = config.scan_via, config.scan_limit_s
    chain = next((c for c in _RCU_CHAINS if all(v in found for v in c.values())), None)
    if "krc" in facts.percpu and chain and all(v in found for v in _RCU_PAGES.values()) \
            and "kfree_rcu_cpu_work" in facts.types:
        p.scan["rcu_pages"] = {"var": facts.percpu["krc"], "work_size": facts.types["kfree_rcu_cpu_work"][1],
                               **{k: found[v] for k, v in (_RCU_PAGES | chain).items()}}
    live = [f"-D{k}={found[v]}" for k, v in _LIVE_STACK.items() if v in found]
    # TASK_STACK_OFF is a base flag (plan.py: _OFFSETS), found here
    return ["-DHOLDER_SCAN"] + (live if len(live) == len(_LIVE_STACK) else [])


def fpu_regs_offset(btf) -> int | None:
    """Where in a task_struct slab object the saved FPU registers start
    (struct fpu's __fpstate.regs, the XSAVE area, last of the object): a
    process's SIMD and x87 registers, user data. What they hold is no kernel
    reference, and a percpu pointer is a small number that user data matches
    (the lab: 1-2 of the 31 planted per-CPU leaks "held" at task_struct
    +0x1770 on 6.12, a different count for each read); kleaktrace's own
    registers hold the addresses numpy works through. Up to 6.14 the fpu is
    the end of task_struct.thread; from 6.15 it follows the task_struct in
    the same object (x86_task_fpu). None where BTF has no struct fpu."""
    try:
        regs = btf.offset("fpu", "__fpstate.regs")
    except BtfError:
        return None
    try:
        return btf.offset("task_struct", "thread.fpu") + regs
    except BtfError:
        return btf.size("task_struct") + regs
