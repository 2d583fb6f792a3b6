"""The census's pure parts: a tail page's head from compound_head/compound_info."""

from types import SimpleNamespace

import numpy as np

from bpftrace_leak.tracer import census_plan
from bpftrace_leak.tracer.census import page_head
from bpftrace_leak.tracer.records import FREE_HORIZON, forget_old_frees, freed_index, made_before_free

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
                           cpus=2, nodes=1, page_size=4096)


def test_the_objects_per_slab_offset_is_passed_where_btf_has_it():
    # census.h: slab_range reads s->oo when a slab's counters word reads 0
    flags = census_plan.flags
    with_oo = flags(SimpleNamespace(notes=[]), _facts({"kmem_cache.oo": 52}), 64)
    assert "-DKMEM_CACHE_OO_OFF=52" in with_oo
    without = flags(SimpleNamespace(notes=[]), _facts({}), 64)
    assert "-DSLAB_CENSUS" in without and not any("KMEM_CACHE_OO_OFF" in f for f in without)


# ---- page_freed (probes/retire.h, tracer/records.py) -------------------------
# jiffies start 5 minutes before the u32 wrap (INITIAL_JIFFIES): a lab VM's
# first records sit just below it, and frames never freed read 0
BOOT = (1 << 32) - 300 * 250


def test_a_frame_never_freed_keeps_every_record():
    ts = np.array([BOOT, BOOT + 70_000, (1 << 32) - 1, 1 << 32, 5 << 40], np.uint64)
    assert not made_before_free(ts, np.zeros(len(ts), np.uint32)).any()


def test_records_made_before_the_free_across_the_wrap():
    ts = np.array([BOOT, (1 << 32) - 2, (1 << 32) + 16, (1 << 32) + 17, (1 << 32) + 40], np.uint64)
    freed = np.full(len(ts), ((1 << 32) + 20) & 0xFFFFFFFF | 1, np.uint32)  # freed after the wrap
    assert made_before_free(ts, freed).tolist() == [True, True, True, True, False]
    # a free before the wrap, a record after it: made after, kept
    assert not made_before_free(np.array([(1 << 32) + 3], np.uint64), np.array([(1 << 32) - 9], np.uint32)).any()


def test_the_same_jiffy_counts_as_after():
    t = (1 << 33) + 100
    assert made_before_free(np.array([t, t, t], np.uint64),
                            np.array([(t | 1) & 0xFFFFFFFF, ((t + 1) | 1) & 0xFFFFFFFF, ((t + 2) | 1) & 0xFFFFFFFF],
                                     np.uint32)).tolist() == [False, False, True]


def test_frees_far_from_now_are_forgotten():
    now = (7 << 32) + 1000
    near = [(now - 10) & 0xFFFFFFFF | 1, (now + 3) & 0xFFFFFFFF | 1, (now - FREE_HORIZON + 5) & 0xFFFFFFFF | 1]
    far = [(now - FREE_HORIZON - 9) & 0xFFFFFFFF | 1, (now + FREE_HORIZON + 9) & 0xFFFFFFFF | 1]
    freed = np.array(near + far + [0], np.uint32)
    assert forget_old_frees(freed, now) == 2
    assert freed.tolist() == near + [0, 0, 0]


def test_a_frame_index_is_the_struct_page_modulo_the_count():
    vmemmap = 0xFFFFEA0000000000
    pages = np.array([vmemmap, vmemmap + 64, vmemmap + 64 * 6553599], np.uint64)
    index = freed_index(pages, 64, 1 << 23)
    assert len(set(index.tolist())) == 3 and index.max() < 1 << 23
    assert index[1] - index[0] == 1
