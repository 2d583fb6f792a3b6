from bpftrace_leak.analysis.symbols import (backs_other_kind, base_name, is_user_page_stack,
                                   trim_allocator_frames)


def test_base_name_strips_offsets_suffixes_and_noprof():
    assert base_name("kmem_cache_alloc_noprof+0x230") == "kmem_cache_alloc"
    assert base_name("__kmalloc_cache_noprof.constprop.0+0x12") == "__kmalloc_cache"
    assert base_name("sock_alloc_inode+0x1e") == "sock_alloc_inode"
    assert base_name("khm_hook+0x10 [khm]") == "khm_hook"


def test_trim_drops_leading_allocator_frames_only():
    raw = ["perf_trace_kmem_cache_alloc+0x9", "kmem_cache_alloc_lru_noprof+0x235", "sock_alloc_inode+0x1e",
           "alloc_inode+0x1e", "kmalloc_reserve+0x1"]
    assert trim_allocator_frames(raw) == ["sock_alloc_inode+0x1e", "alloc_inode+0x1e", "kmalloc_reserve+0x1"]


def test_trim_never_empties_a_stack():
    assert trim_allocator_frames(["__kmalloc_noprof+0x1", "kmalloc_trace+0x2"]) == ["kmalloc_trace+0x2"]
    assert trim_allocator_frames([]) == []


def test_backing_and_user_page_stacks():
    assert backs_other_kind(["__alloc_pages+0x1", "allocate_slab+0x9", "___slab_alloc+0x1"])
    assert backs_other_kind(["__alloc_pages+0x1", "pcpu_alloc_pages.constprop.0+0x3"])
    assert not backs_other_kind(["__alloc_pages+0x1", "pipe_write+0x3"])
    assert is_user_page_stack(["__alloc_pages+0x1", "filemap_alloc_folio_noprof+0x9"])
    assert not is_user_page_stack(["__alloc_pages+0x1", "pte_alloc_one+0x9"])


def test_vmalloc_page_tables_are_not_reported_as_page_leaks():
    from bpftrace_leak.analysis.symbols import backs_other_kind
    # 6.12: a fork's vmalloc'd stack made kernel page tables; they outlive the area
    assert backs_other_kind(["__pte_alloc_kernel+0x1e", "vmap_small_pages_range_noflush+0x4ab",
                             "__vmalloc_node_range_noprof+0x466", "copy_process+0xfd3"])
    assert not backs_other_kind(["__pte_alloc+0x1e", "do_anonymous_page+0x40"])


def test_7x_sheaves_and_inlined_vmalloc_backing_are_the_allocators():
    from bpftrace_leak.analysis.symbols import backs_other_kind, is_slab_bookkeeping
    # 7.2: alloc_empty_sheaf inlined into the allocation path's sheaf exchange
    assert is_slab_bookkeeping(["__kmalloc_cache_noprof+0x1", "__pcs_replace_empty_main+0x284",
                                "kmem_cache_alloc_noprof+0x388", "kleaklab_leak_cache+0x16 [kleaklab]"])
    assert not is_slab_bookkeeping(["kmem_cache_alloc_noprof+0x388", "kleaklab_leak_cache+0x16 [kleaklab]"])
    # 7.2: __vmalloc_area_node and vm_area_alloc_pages inlined into __vmalloc_node_range
    assert backs_other_kind(["alloc_pages_bulk_noprof+0x1", "__vmalloc_node_range_noprof+0x300",
                             "copy_process+0x326"])


def test_6_1_memcg_slab_vectors_are_the_allocators():
    from bpftrace_leak.analysis.symbols import is_slab_bookkeeping
    assert is_slab_bookkeeping(["memcg_alloc_slab_cgroups+0x37", "allocate_slab+0x3f0", "___slab_alloc+0x379",
                                "kmem_cache_alloc_lru+0x33b", "sock_alloc_inode+0x1e"])
