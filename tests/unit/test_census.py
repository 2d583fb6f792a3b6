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


def _facts(offsets, enums={}, release="6.18.0"):
    needed = {path: 8 * i for i, path in enumerate(census_plan._CENSUS_OFFSETS.values())}
    return SimpleNamespace(offsets={**needed, **offsets}, percpu={v: 0x100 for v in census_plan.PERCPU.values()},
                           cpus=2, nodes=1, page_size=4096, enums=enums, release=release)


def test_the_objects_per_slab_offset_is_passed_where_btf_has_it():
    # census.h: slab_range reads s->oo when a slab's counters word reads 0
    flags = census_plan.flags
    with_oo = flags(SimpleNamespace(notes=[]), _facts({"kmem_cache.oo": 52}), 64)
    assert "-DKMEM_CACHE_OO_OFF=52" in with_oo
    without = flags(SimpleNamespace(notes=[]), _facts({}), 64)
    assert "-DSLAB_CENSUS" in without and not any("KMEM_CACHE_OO_OFF" in f for f in without)


# ---- free page blocks (probes/census.h: census_page) -------------------------
# what page_type reads on a free block's first page, and on other pages
BUDDY_HEADS = {"6.12": 0xF0000000, "6.10": 0xBFFFFFFF, "6.1": 0xFFFFFF7F}
#: no type (_mapcount -1), mapcounts, and each era's other types (offline, table)
NOT_BUDDY = {"6.12": [0xFFFFFFFF, 0, 5, 0xF1000000, 0xF2000000, 0xF5000000],
             "6.10": [0xFFFFFFFF, 0, 5, 0xDFFFFFFF, 0xEFFFFFFF],
             "6.1": [0xFFFFFFFF, 0, 5, 0xFFFFFEFF, 0xFFFFFDFF, 0x80]}


def test_each_kernels_buddy_type_is_told():
    marks = {"6.12": census_plan.buddy_mark({"PGTY_buddy": 0xF0}, "6.12.117+deb13-amd64"),
             # 6.10-6.11: enum pagetype, the bit cleared under PAGE_TYPE_BASE (BTF: a signed 0x80000000)
             "6.10": census_plan.buddy_mark({"PG_buddy": 0x40000000, "PAGE_TYPE_BASE": -0x80000000}, "6.10.3"),
             "6.1": census_plan.buddy_mark({}, "6.1.0-57-amd64")}
    for version, (mask, value) in marks.items():
        assert BUDDY_HEADS[version] & mask == value, version
        assert all(other & mask != value for other in NOT_BUDDY[version]), version
    assert census_plan.buddy_mark({}, "6.9.1") is None  # #defines changed before the enum: unknown


def test_the_page_census_is_built_where_the_buddy_type_is_known():
    offsets = {"page.page_type": 48, "page.private": 40}
    p = SimpleNamespace(notes=[])
    flags = census_plan.flags(p, _facts(offsets, {"PGTY_buddy": 0xF0}), 64)
    assert {"-DPAGE_BUDDY_MASK=0xff000000U", "-DPAGE_BUDDY_VALUE=0xf0000000U", "-DPAGE_TYPE_OFF=48",
            "-DPAGE_PRIVATE_OFF=40"} <= set(flags) and not p.notes
    p = SimpleNamespace(notes=[])
    flags = census_plan.flags(p, _facts(offsets, {}, "6.9.1"), 64)
    assert not any("PAGE_BUDDY" in f for f in flags) and "free the kernel skipped" in p.notes[0]


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
