"""The census's pure parts: a tail page's head from compound_head/compound_info."""

from types import SimpleNamespace

from bpftrace_leak.tracer import census_plan
from bpftrace_leak.tracer.census import page_head

HEAD = 0xFFFFEA0004A3C000
TAIL = HEAD + 3 * 64  # the 4th struct page of a compound page


def test_a_head_or_order_0_page_is_its_own_head():
    assert page_head(HEAD, 0) == HEAD
    assert page_head(HEAD, 0xFFFF888100000000) == HEAD  # bit 0 clear: not a tail


def test_tail_with_a_pointer_to_its_head():
    # 6.1-6.18 compound_head, and 7.x compound_info without vmemmap optimisation
    assert page_head(TAIL, HEAD | 1) == HEAD


def test_tail_with_a_mask_on_7x():
    # 7.x with HugeTLB vmemmap optimisation: the rest of the word is a mask
    # that the tail's own address is ANDed with (order 2: 4 struct pages of 64 bytes)
    mask = ~((1 << (2 + 6)) - 1) & 0xFFFFFFFFFFFFFFFF
    assert page_head(TAIL, mask | 1) == HEAD


def _facts(offsets):
    needed = {path: 8 * i for i, path in enumerate(census_plan._CENSUS_OFFSETS.values())}
    return SimpleNamespace(offsets={**needed, **offsets}, percpu={v: 0x100 for v in census_plan.PERCPU.values()},
                           cpus=2, nodes=1)


def test_the_objects_per_slab_offset_is_passed_where_btf_has_it():
    # census.h: slab_range reads s->oo when a slab's counters word reads 0
    flags = census_plan.flags
    with_oo = flags(SimpleNamespace(notes=[]), _facts({"kmem_cache.oo": 52}), 64)
    assert "-DKMEM_CACHE_OO_OFF=52" in with_oo
    without = flags(SimpleNamespace(notes=[]), _facts({}), 64)
    assert "-DSLAB_CENSUS" in without and not any("KMEM_CACHE_OO_OFF" in f for f in without)
