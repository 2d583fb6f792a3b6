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
