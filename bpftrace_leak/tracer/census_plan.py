"""What the slab census (tracer/census.py, probes.c: census_*) needs from the
kernel, as compile flags: struct offsets from BTF, per-CPU variables, and
the parts some kernels lack. Pure, as plan.py.
"""

import re

__all__ = ["STRUCTS", "PERCPU", "PERCPU_OPTIONAL", "ENUMS", "buddy_mark", "flags"]

#: what the slab census follows (probes.c: census_*): always needed ...
_CENSUS_OFFSETS = {
    "PAGE_COMPOUND_HEAD_OFF": "page.compound_head",  # 7.x: page.compound_info (_ALTERNATIVES)
    "SLAB_CACHE_OFF": "slab.slab_cache",
    "SLAB_FREELIST_OFF": "slab.freelist",
    "SLAB_COUNTERS_OFF": "slab.counters",
    "KMEM_CACHE_OFFSET_OFF": "kmem_cache.offset",
    "KMEM_CACHE_RED_LEFT_PAD_OFF": "kmem_cache.red_left_pad",
    "KMEM_CACHE_LIST_OFF": "kmem_cache.list",
    "TASK_CFS_RQ_OFF": "task_struct.se.cfs_rq",
    "CFS_RQ_RQ_OFF": "cfs_rq.rq",
}
_SHEAVES = {"KMEM_CACHE_CPU_SHEAVES_OFF": "kmem_cache.cpu_sheaves", "SHEAVES_MAIN_OFF": "slub_percpu_sheaves.main",
            "SHEAVES_SPARE_OFF": "slub_percpu_sheaves.spare", "SHEAVES_RCU_FREE_OFF": "slub_percpu_sheaves.rcu_free",
            "SHEAF_SIZE_OFF": "slab_sheaf.size", "SHEAF_OBJECTS_OFF": "slab_sheaf.objects",
            "SHEAF_LIST_OFF": "slab_sheaf.barn_list", "BARN_FULL_OFF": "node_barn.sheaves_full"}
#: ... and what some kernels have, each group all or nothing: the freelist
#: pointer's hardening (CONFIG_SLAB_FREELIST_HARDENED), per-CPU slabs (gone in
#: 7.x), their partial lists (CONFIG_SLUB_CPU_PARTIAL), sheaves and barns (6.18+)
_CENSUS_OPTIONAL = (
    {"KMEM_CACHE_RANDOM_OFF": "kmem_cache.random"},
    {"KMEM_CACHE_OO_OFF": "kmem_cache.oo"},  # a slab's object count when its counters read 0 (census.h: slab_range)
    {"KMEM_CACHE_CPU_SLAB_OFF": "kmem_cache.cpu_slab", "CPU_SLAB_SLAB_OFF": "kmem_cache_cpu.slab",
     "CPU_SLAB_FREELIST_OFF": "kmem_cache_cpu.freelist"},
    {"CPU_SLAB_PARTIAL_OFF": "kmem_cache_cpu.partial", "SLAB_NEXT_OFF": "slab.next"},
    {**_SHEAVES, "KMEM_CACHE_NODE_OFF": "kmem_cache.node", "KMEM_CACHE_NODE_BARN_OFF": "kmem_cache_node.barn"},
    # 7.x: a node's barn is kmem_cache.per_node[node].barn, no longer behind kmem_cache_node
    {**_SHEAVES, "KMEM_CACHE_PER_NODE_OFF": "kmem_cache.per_node",
     "PER_NODE_BARN_OFF": "kmem_cache_per_node_ptrs.barn", "PER_NODE_NODE_OFF": "kmem_cache_per_node_ptrs.node"},
)
#: struct members renamed by newer kernels: the old path's name takes the new one's offset.
#: 7.x's page.compound_info holds a tail page's head as compound_head did (a pointer
#: with bit 0 set) or, with HugeTLB vmemmap optimisation, a mask: probes.c: page_head
_ALTERNATIVES = {"page.compound_head": "page.compound_info"}
#: per-CPU variables the census finds a CPU's per-CPU offset with
PERCPU = {"PCPU_RUNQUEUES": "runqueues", "PCPU_THIS_CPU_OFF": "this_cpu_off"}
#: ... and fork's cache of freed kernel stacks (kernel/fork.c, CONFIG_VMAP_STACK):
#: the census reads it from Python (tracer/census.py: cached_stacks)
_STACK_CACHE = {"var": "cached_stacks", "addr_off": "vm_struct.addr", "pages_off": "vm_struct.pages"}
PERCPU_OPTIONAL = (_STACK_CACHE["var"],)
#: ... and, to tell a cached stack handed to a task its recorder did not fork
#: (tracer/census.py: recycled_stacks), each task's parent and stack area,
#: listed by the task iterator (probes/pins.h, CENSUS_TASKS)
_RECYCLED = {"real_parent": "task_struct.real_parent", "tgid": "task_struct.tgid",
             "stack_vm_area": "task_struct.stack_vm_area"}
#: ... and each CPU's idle task (swapper/N: pid 0, never in the task list),
#: its runqueue's rq.idle: the holder scan leaves their stacks out (tracer/census.py: idle_stacks)
_IDLE = {"rq_idle": "rq.idle", "task_stack": "task_struct.stack"}
#: ... and a free block's first struct page (probes/census.h: census_page): its
#: type says buddy, its private the block's order
_BUDDY = {"PAGE_TYPE_OFF": "page.page_type", "PAGE_PRIVATE_OFF": "page.private"}
#: how page_type says buddy: 6.12 on, enum pagetype's PGTY_buddy in the top
#: byte; before, a bit cleared under PAGE_TYPE_BASE (an enum from 6.10, with
#: other values; #defines 0xf0000000 and 0x80 up to 6.8)
ENUMS = ("PGTY_buddy", "PG_buddy", "PAGE_TYPE_BASE")
#: the largest order of a free block (MAX_PAGE_ORDER, x86's default; a larger
#: block is in no block the census sees: its records stay, soundly)
PAGE_MAX_ORDER = 10
STRUCTS = tuple(_BUDDY.values()) + tuple(_CENSUS_OFFSETS.values()) \
    + tuple(path for group in _CENSUS_OPTIONAL for path in group.values()) \
    + (_STACK_CACHE["addr_off"], _STACK_CACHE["pages_off"]) + tuple(_ALTERNATIVES.values()) + tuple(_IDLE.values()) \
    + tuple(_RECYCLED.values())


def buddy_mark(enums: dict, release: str) -> tuple[int, int] | None:
    """(mask, value): page_type & mask == value on a free block's first page;
    None where this kernel's encoding is not known."""
    u32 = 0xFFFFFFFF
    if "PGTY_buddy" in enums:
        return 0xFF000000, (enums["PGTY_buddy"] & 0xFF) << 24
    if "PG_buddy" in enums and "PAGE_TYPE_BASE" in enums:
        base = enums["PAGE_TYPE_BASE"] & u32
        return (base | enums["PG_buddy"]) & u32, base
    m = re.match(r"(\d+)\.(\d+)", release)
    if m and (int(m[1]), int(m[2])) < (6, 9):
        return 0xF0000080, 0xF0000000
    return None


def flags(p, facts, ratio: int) -> list[str]:
    """Flags for the slab census (tracer/census.py), or [] with a note."""
    offsets = dict(_CENSUS_OFFSETS)
    found = dict(facts.offsets)
    for old, new in _ALTERNATIVES.items():
        if old not in found and new in found:
            found[old] = found[new]
    missing = [path for path in offsets.values() if path not in found]
    missing += [var for var in PERCPU.values() if var not in facts.percpu]
    if missing:
        p.notes.append(f"no slab census: this kernel's BTF lacks {', '.join(missing)}")
        return []
    for group in _CENSUS_OPTIONAL:
        if all(path in found for path in group.values()):
            offsets.update(group)
    flags = ["-DSLAB_CENSUS", f"-DCENSUS_CPUS={facts.cpus}"]
    flags += [f"-D{name}={found[path]}" for name, path in offsets.items()]
    flags += [f"-D{name}={facts.percpu[var]:#x}ULL" for name, var in PERCPU.items()]
    p.census = {"offsets": {name: found[path] for name, path in offsets.items()},
                "cpus": facts.cpus, "nodes": facts.nodes, "ratio": ratio, "page_size": facts.page_size,
                "name_off": facts.offsets.get("kmem_cache.name", 0)}
    if _STACK_CACHE["var"] in facts.percpu and all(_STACK_CACHE[k] in facts.offsets for k in ("addr_off", "pages_off")):
        p.census["stacks"] = {"var": facts.percpu[_STACK_CACHE["var"]],
                              "addr_off": facts.offsets[_STACK_CACHE["addr_off"]],
                              "pages_off": facts.offsets[_STACK_CACHE["pages_off"]]}
        if all(path in facts.offsets for path in _RECYCLED.values()):
            p.census["stacks"]["tasks"] = {k: facts.offsets[path] for k, path in _RECYCLED.items()}
            flags.append("-DCENSUS_TASKS")
    mark = buddy_mark(facts.enums, facts.release)
    if mark and all(path in facts.offsets for path in _BUDDY.values()):
        flags += [f"-DPAGE_BUDDY_MASK={mark[0]:#x}U", f"-DPAGE_BUDDY_VALUE={mark[1]:#x}U",
                  f"-DPAGE_MAX_ORDER={PAGE_MAX_ORDER}"]
        flags += [f"-D{name}={facts.offsets[path]}" for name, path in _BUDDY.items()]
    else:
        p.notes.append("page records whose free the kernel skipped stay until their page is allocated "
                       "again (this kernel's free page blocks cannot be told)")
    if all(path in facts.offsets for path in _IDLE.values()):
        p.census["idle"] = {"runqueues": facts.percpu[PERCPU["PCPU_RUNQUEUES"]],
                            **{k: facts.offsets[path] for k, path in _IDLE.items()}}
    return flags
