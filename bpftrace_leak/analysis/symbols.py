"""Kernel stack symbolization and the trimming of allocator-internal frames.

A stack taken in a kmem tracepoint starts inside the tracing and allocator
machinery (perf_trace_kmalloc, kmem_cache_alloc_noprof, ___slab_alloc ...).
Those frames are identical for every leak; the report starts at the first
frame that is not the allocator, innermost first, as ``func+0xoff``.
"""

import re

__all__ = ["base_name", "is_allocator_frame", "trim_allocator_frames", "backs_other_kind", "is_slab_bookkeeping",
           "is_user_page_stack", "Symbolizer"]

# Function-name prefixes of the tracing path and of the allocators' insides.
# Memory-profiling kernels (6.10+, CONFIG_MEM_ALLOC_PROFILING) rename the
# allocators to *_noprof; base_name() strips that and compiler suffixes.
_ALLOCATOR_PREFIXES = (
    "perf_trace_", "trace_event_raw_event_", "__traceiter_", "__bpf_trace_", "bpf_trace_run",
    "trace_call_bpf", "perf_tp_event", "bpf_prog_",
    "kmem_cache_alloc", "__kmem_cache_alloc", "kmalloc", "__kmalloc", "___kmalloc",
    "slab_alloc", "__slab_alloc", "___slab_alloc", "slab_post_alloc_hook",
    "kvmalloc", "__kvmalloc", "kvzalloc", "krealloc", "__krealloc", "kvrealloc",
    "kmemdup", "kstrdup", "kstrndup", "kmemdup_nul", "kzalloc", "kcalloc", "kmalloc_array",
    "__alloc_pages", "alloc_pages", "__alloc_frozen_pages", "alloc_frozen_pages",
    "get_page_from_freelist", "__get_free_pages", "get_zeroed_page", "folio_alloc",
    "__folio_alloc", "alloc_pages_mpol", "alloc_slab_page", "post_alloc_hook",
    "pcpu_alloc", "__alloc_percpu", "alloc_percpu",
    "alloc_vmap_area", "__get_vm_area_node", "__vmalloc_node", "vmalloc", "vzalloc",
    "__vmalloc", "vmalloc_node", "vzalloc_node",
)

# Page allocations made on behalf of slab, percpu or vmalloc are already
# counted as those objects: a page group through these frames is not reported.
_BACKING_FRAMES = frozenset({
    "allocate_slab", "new_slab", "alloc_slab_page", "___kmalloc_large_node",
    "__kmalloc_large_node", "kmalloc_large", "kmalloc_large_node",
    "pcpu_populate_chunk", "pcpu_alloc_pages", "vm_area_alloc_pages", "__vmalloc_area_node",
    # 7.x inlines both into it (the lab's churn decoy on 7.2: a cached stack's pages)
    "__vmalloc_node_range",
    "refill_sheaf", "__refill_sheaf",
    # the kernel's own page tables for vmalloc space, made as vmalloc maps an
    # area and kept for the address range after the area is freed (the lab's
    # process-churn decoy on 6.12: 20 pte pages under forks' vmalloc'd stacks)
    "__pte_alloc_kernel", "vmap_small_pages_range_noflush", "vmap_pages_range_noflush", "vmap_range_noflush",
    "vmap_pte_range", "vmap_pmd_range", "vmap_pud_range", "vmap_p4d_range",
})

# The slab allocator's own bookkeeping, allocated in whichever task needed
# it: per-slab object extension vectors (memcg and allocation profiling) and
# 6.18's sheaves (the arrays kfree_rcu() and frees fill). Like the pages
# backing slabs, they are the allocator's, counted with the objects they serve.
_SLAB_BOOKKEEPING_FRAMES = frozenset({
    "alloc_slab_obj_exts", "alloc_empty_sheaf", "__alloc_empty_sheaf",
    # 6.1-6.6's name for the per-slab memcg vector (the lab's Vagrant box, where
    # systemd turns memory accounting on: kmalloc-128/192/512 under allocate_slab)
    "memcg_alloc_slab_cgroups",
    # 7.x inlines alloc_empty_sheaf into the paths that need a sheaf (the lab on
    # 7.2: 25 kmalloc-128..512 sheaves under a module cache's allocations)
    "__pcs_replace_empty_main", "__pcs_replace_full_main", "__kfree_rcu_sheaf", "free_to_pcs_bulk",
    "kmem_cache_prefill_sheaf", "kmem_cache_refill_sheaf",
})

# Page-cache and anonymous-memory paths whose gfp lacks __GFP_HARDWALL
# (block-device metadata, ext4's "unmovable" buffer heads): still user-side
# memory the kernel reclaims, not kernel objects.
_USER_PAGE_FRAMES = frozenset({
    "__filemap_get_folio", "filemap_alloc_folio", "page_cache_ra_unbounded", "page_cache_ra_order",
    "do_anonymous_page", "alloc_anon_folio", "do_cow_fault", "wp_page_copy", "shmem_alloc_folio",
    "folio_prealloc", "vma_alloc_folio", "alloc_swap_folio", "__read_swap_cache_async",
})

_SUFFIX = re.compile(r"(\.(constprop|isra|part|cold|llvm)\.?\d*)+$")


def base_name(frame: str) -> str:
    """``kmem_cache_alloc_noprof.constprop.0+0x1a`` -> ``kmem_cache_alloc``."""
    name = frame.split("+", 1)[0]
    name = _SUFFIX.sub("", name)
    if name.endswith("_noprof"):
        name = name[: -len("_noprof")]
    return name


def is_allocator_frame(frame: str) -> bool:
    return base_name(frame).startswith(_ALLOCATOR_PREFIXES)


def trim_allocator_frames(frames: list[str]) -> list[str]:
    """Drop the leading (innermost) allocator frames; never return an empty stack."""
    for i, frame in enumerate(frames):
        if not is_allocator_frame(frame):
            return frames[i:]
    return frames[-1:] if frames else frames


def backs_other_kind(frames: list[str]) -> bool:
    """True when a page stack is slab, percpu or vmalloc filling its own backing store."""
    return any(base_name(f) in _BACKING_FRAMES for f in frames)


def is_slab_bookkeeping(frames: list[str]) -> bool:
    """True when an object is the slab allocator's own (obj_exts vectors, sheaves)."""
    return any(base_name(f) in _SLAB_BOOKKEEPING_FRAMES for f in frames)


def is_user_page_stack(frames: list[str]) -> bool:
    """True when a page was allocated for the page cache or anonymous memory."""
    return any(base_name(f) in _USER_PAGE_FRAMES for f in frames)


class Symbolizer:
    """Turns BPF stack ids into frame lists, caching by address.

    ``stacks`` is the BCC StackTrace table, ``ksym`` BCC's ``BPF.ksym``.
    """

    def __init__(self, stacks, ksym):
        self._stacks = stacks
        self._ksym = ksym
        self._names: dict[int, str] = {}

    def name(self, addr: int) -> str:
        name = self._names.get(addr)
        if name is None:
            raw = self._ksym(addr, show_module=True, show_offset=True)
            name = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
            if name.startswith("[unknown]"):
                name = f"0x{addr:x}"
            elif name.endswith(" [kernel]"):  # keep " [module]" only for modules
                name = name[: -len(" [kernel]")]
            self._names[addr] = name
        return name

    def raw_frames(self, stack_id: int) -> list[str]:
        """All frames of ``stack_id``, innermost first; [] when the stack is gone."""
        try:
            return [self.name(a) for a in self._stacks.walk(stack_id)]
        except KeyError:
            return []
