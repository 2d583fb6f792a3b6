"""The holder scan's verdicts and summaries (analysis/holders.py), on hand-made graphs."""

import numpy as np

from bpftrace_leak.analysis.holders import (CYCLE, HELD, ORPHANED, UNKNOWN, confirm, describe, group_verdicts,
                                            summarize, verdicts)


def v(n, hits, stale=(), unknown=None):
    target = np.array([t for t, _ in hits], np.int64)
    source = np.array([s for _, s in hits], np.int64)
    st = np.zeros(len(hits), bool)
    st[list(stale)] = True
    return verdicts(n, target, source, st, unknown).tolist()


def test_roots_hold_and_what_they_hold_holds_transitively():
    # 0 <- root; 0 -> 1 -> 2; 3 alone; 4 <-> 5 (a cycle nothing else reaches)
    got = v(6, [(0, -1), (1, 0), (2, 1), (4, 5), (5, 4)])
    assert got == [HELD, HELD, HELD, ORPHANED, CYCLE, CYCLE]


def test_a_long_chain_is_held_whatever_its_order():
    n = 5000
    hits = [(i + 1, i) for i in reversed(range(n - 1))] + [(0, -1)]
    assert set(v(n, hits)) == {HELD}


def test_self_pointers_and_stale_words_keep_nothing_alive():
    assert v(2, [(0, 0), (1, -1)], stale=[1]) == [ORPHANED, ORPHANED]


def test_a_cycle_reached_from_a_root_is_held():
    assert v(3, [(0, 1), (1, 0), (2, 1), (0, -1)]) == [HELD, HELD, HELD]


def test_unknown_overrides():
    unknown = np.array([True, False])
    assert v(2, [], unknown=unknown) == [UNKNOWN, ORPHANED]


def test_a_second_scan_confirms_orphans_or_finds_their_holders():
    first = np.array([HELD, ORPHANED, CYCLE, ORPHANED], np.int8)
    again = np.array([1, 2, 3])
    second = np.array([ORPHANED, HELD, ORPHANED], np.int8)  # 2 held now; 3 no longer in a cycle
    assert confirm(first, again, second).tolist() == [HELD, ORPHANED, HELD, ORPHANED]


def test_summaries_count_verdicts_and_rank_named_holders_before_vague_ones():
    verdict = np.array([HELD, HELD, HELD, ORPHANED, CYCLE], np.int8)
    group = np.array([0, 0, 0, 1, 1])
    labels = [("page", "kernel pages"), ("slab", "tw_sock_TCP objects"), ("memmap", "folios' private")]
    pairs_t = np.array([0, 1, 2, 0, 1, 2, 3])
    pairs_l = np.array([0, 0, 0, 1, 1, 2, 2])
    out = summarize(verdict, group, 2, pairs_t, pairs_l, labels)
    assert [out[0][k] for k in ("held", "orphaned", "orphan_cycle", "unknown")] == [3, 0, 0, 0]
    assert [h["holder"] for h in out[0]["holders"]] == ["tw_sock_TCP objects", "folios' private", "kernel pages"]
    assert out[0]["holders"][0]["objects"] == 2 and out[0]["holders"][-1]["objects"] == 3
    assert [out[1][k] for k in ("held", "orphaned", "orphan_cycle")] == [0, 1, 1] and out[1]["holders"] == []


def test_group_verdicts_weigh_sampled_records_and_unscanned_ones_are_unknown():
    by_key = {b"a": {"held": 2, "orphaned": 1, "orphan_cycle": 0, "unknown": 0,
                     "holders": [{"holder": "x", "kind": "slab", "objects": 2}]}}
    got = group_verdicts({b"a": (30, 3), b"b": (5, 5)}, by_key)
    assert [got[k] for k in ("held", "orphaned", "orphan_cycle", "unknown")] == [20, 10, 0, 5]
    assert got["holders"] == [{"holder": "x", "kind": "slab", "objects": 20}]


def test_objects_freed_before_the_scan_read_them_are_unknown():
    """The report read 1,756 DAMON regions; 578 were left when the scan ran
    (seen on this host): the other 1,178 are unknown, the fields add up."""
    by_key = {b"a": {"held": 578, "orphaned": 0, "orphan_cycle": 0, "unknown": 0, "holders": []}}
    got = group_verdicts({b"a": (1756, 1756)}, by_key)
    assert [got[k] for k in ("held", "orphaned", "orphan_cycle", "unknown")] == [578, 0, 0, 1178]


def test_holders_are_described_by_what_they_are():
    assert describe("slab", "kmalloc-8192", ["alloc_fdtable+0x84", "dup_fd+0x5e"]) == \
        "fd tables (kmalloc-8192, alloc_fdtable+0x84)"
    assert describe("slab", "damon_region", ["damon_split_region_at+0x30"]) == \
        "damon_region objects (damon_split_region_at+0x30)"


def test_a_sleeping_tasks_dead_frames_hold_nothing():
    """Below a sleeping task's saved stack pointer lie dead frames: pages
    wholly below it are left out, words below it in its page are stale;
    a running task's (sp 0) stack is read whole. A second call (the second
    pass) replaces the first's stacks."""
    import numpy as np
    from bpftrace_leak.tracer.scan_regions import Regions, PAGE

    class Tables:
        def pfns(self, start, end):
            vas = np.arange(start, end, PAGE, dtype=np.int64)
            return vas, (vas - 0x1000000) // PAGE

    regions = Regions.__new__(Regions)
    regions.tables, regions.named, regions._stack_pfns, regions.stale_from = Tables(), {}, [], {}
    stack = 0x1000000 + 16 * PAGE
    regions.stacks([(stack, 0xAA, 1, stack + 2 * PAGE + 0x100), (stack + 8 * PAGE, 0xBB, 2, 0)])
    assert regions.dead == {16, 17}
    assert regions.live_from == {18: 0x100}
    assert regions.stale(18, 0xF8) and not regions.stale(18, 0x100) and not regions.stale(19, 0)
    assert not any(regions.stale(p, 0) for p in range(24, 28))  # the running task's
    assert {p for p, v in regions.named.items() if v[0] == "stack"} == set(range(16, 20)) | set(range(24, 28))
    regions.stacks([(stack, 0xAA, 1, 0)])  # woke: read whole; the other exited
    assert regions.dead == set() and regions.live_from == {}
    assert set(regions.named) == set(range(16, 20))
    regions.stacks([(stack, 0xAA, 1, stack + 4 * PAGE)])  # kleaktrace's own: dead whole
    assert regions.dead == set(range(16, 20)) and regions.live_from == {}


def test_a_scan_stops_at_its_limit_or_when_told_and_says_so(tmp_path):
    from bpftrace_leak.kernel.pageflags import read_flags
    from bpftrace_leak.output.textreport import scan_line
    from bpftrace_leak.tracer.scan_watch import Stopped, Watch, Watched
    import pytest
    told = []
    watch = Watch(stop=lambda: bool(told))
    watch.check()  # neither told nor late
    told.append(1)
    with pytest.raises(Stopped, match="stopped by a signal"):
        Watched(type("M", (), {"method": "bpf", "read": lambda self, a: a})(), watch).read([1])
    late = Watch(limit_s=0.0)
    with pytest.raises(Stopped, match="after 0 s, its limit"):
        late.check()
    import time
    both = Watch(limit_s=0.05)  # --scan-via both: each read of memory has the whole limit
    time.sleep(0.06)
    both.lap()
    both.check()
    time.sleep(0.06)
    with pytest.raises(Stopped, match="its limit"):
        both.check()
    flags = tmp_path / "kpageflags"
    flags.write_bytes(bytes(8 * 3 << 20))  # three reads of a million frames
    calls = []
    assert len(read_flags(str(flags), frames=3 << 20, between=lambda: calls.append(1))) == 3 << 20
    assert len(calls) == 3
    with pytest.raises(Stopped):
        read_flags(str(flags), frames=3 << 20, between=late.check)
    from bpftrace_leak.analysis import schema
    section = {"skipped": "stopped by a signal before it was done", "seconds": 0.4}
    assert schema._scan(dict(section), "scan") == section
    assert scan_line(section) == "  holder scan: stopped by a signal before it was done (0.4 s): no verdicts"
    assert scan_line({"skipped": "no \x1b[2J kcore"}) == "  holder scan: not run (no \\x1b[2J kcore)"
    with pytest.raises(Exception, match="seconds"):
        schema._scan({"skipped": "x", "seconds": "soon"}, "scan")


def test_saved_user_registers_in_a_task_struct_hold_nothing():
    """A task_struct's saved FPU registers (its XSAVE area, from
    fpu_regs_offset on) are a process's data: a word there that matches a
    target is stale, as is nothing before it or in another cache."""
    import numpy as np

    from bpftrace_leak.kernel.btf import BtfError
    from bpftrace_leak.tracer.scan_names import Names
    from bpftrace_leak.tracer.scan_plan import fpu_regs_offset
    from bpftrace_leak.tracer.scan_regions import PAGE

    class Btf:
        def __init__(self, offsets, sizes):
            self.offsets, self.sizes = offsets, sizes

        def offset(self, struct, path):
            try:
                return self.offsets[f"{struct}.{path}"]
            except KeyError:
                raise BtfError(path) from None

        def size(self, struct):
            return self.sizes[struct]

    regs = {"fpu.__fpstate.regs": 128}
    assert fpu_regs_offset(Btf({**regs, "task_struct.thread.fpu": 0x1640}, {"task_struct": 0x2000})) == 0x16C0
    assert fpu_regs_offset(Btf(regs, {"task_struct": 3264})) == 3392  # 6.15+: after the task_struct
    assert fpu_regs_offset(Btf({}, {"task_struct": 3264})) is None

    direct, base = 0xFFFF888000000000, 0xFFFF888000100000  # two objects at base, base + 0x1800
    words = np.array([base + 0xD38, base + 0xD40, base + 0x1800 + 0x1000, base + 0x3000 + 0xD40], np.uint64)
    caches = ["task_struct", "task_struct", "task_struct", "kmalloc-8k"]
    starts = np.array([base, base, base + 0x1800, base + 0x3000], np.uint64)
    names = Names.__new__(Names)
    names.layout, names.fpu_regs = type("L", (), {"direct": direct})(), 3392
    names.slab_objects = lambda w: (starts, [f"{c} objects" for c in caches], caches)
    names.free_objects = lambda objects: set()
    names.sheaves = lambda s: {}
    regions = type("R", (), {"name": lambda self, p, o: None})()
    flags = np.full((base + 0x4000 - direct) // PAGE + 1, 1 << 7, np.uint64)  # slab pages
    _labels, stale = names.roots(words, flags, np.zeros(len(flags), bool), regions, starts)
    assert stale.tolist() == [False, True, True, False]
    names.fpu_regs = None  # no struct fpu in BTF: nothing left out
    assert not names.roots(words, flags, np.zeros(len(flags), bool), regions, starts)[1].any()


def test_words_inside_a_target_can_be_stale_too():
    """A kfree_rcu page or a kernel stack recorded as an object is a target:
    the words past its records, or in its dead frames, are stale as edges
    too (7.2's lab: 4 planted orphans "held" by outstanding pages)."""
    import numpy as np
    from types import SimpleNamespace
    from bpftrace_leak.tracer.scan_regions import Regions, PAGE

    regions = Regions.__new__(Regions)
    direct = 0xFFFF888000000000
    regions.layout = SimpleNamespace(direct=direct)
    regions.live_from, regions.stale_from = {3: 0x100}, {5: 40 + 8 * 7}
    words = np.array([direct + 5 * PAGE + 48, direct + 5 * PAGE + 96, direct + 3 * PAGE + 0x80,
                      direct + 3 * PAGE + 0x100, direct + 9 * PAGE], np.uint64)
    assert regions.stale_at(words).tolist() == [False, True, True, False, False]


def test_a_sheaf_recorded_as_a_target_holds_nothing_by_its_slots():
    """A sheaf kmalloc'd during the session is a target (7.x): its objects[]
    keeps pointing at objects handed out since, stale as a root sheaf's; its
    header is not. Not a sheaf: a slab object whose word there is a cache
    without sheaves, with a size of 0 (a draft took 0 <= 0 for a sheaf: 200
    filps' words stale, the demo's 200 lsm_file_cache blobs orphaned), a
    pointer that is none of the kernel's caches, or an object too small for
    the capacity; a target of another space is not even read."""
    import numpy as np
    from types import SimpleNamespace
    from bpftrace_leak import layout
    from bpftrace_leak.tracer.scan_names import Names

    direct, vmemmap = 0xFFFF888000000000, 0xFFFFEA0000000000
    sheaf, other, f_op_file, small = (direct + 0x100000 + 0x1000 * i for i in range(4))  # a page each
    cache, bogus, f_op, kmalloc_512, kmalloc_64 = (direct + 0x200000 + 0x1000 * i for i in range(5))
    cap = 30  # objects at 32: 32 + 8 * 30 = 272 bytes, a kmalloc-512 object

    def header(c, n):
        return c.to_bytes(8, "little") + n.to_bytes(4, "little") + bytes(4)
    memory = {sheaf + 16: header(cache, 3), other + 16: header(bogus, 0), f_op_file + 16: header(f_op, 3),
              small + 16: header(cache, 3), cache + 0x40: cap.to_bytes(4, "little"),
              f_op + 0x40: cap.to_bytes(4, "little"), bogus + 0x40: bytes(4),
              kmalloc_512 + 0x8: (512).to_bytes(4, "little"), kmalloc_64 + 0x8: (64).to_bytes(4, "little")}
    read = []

    def peek(addr, n):
        read.append(addr)
        return memory.get(addr, b"")[:n] or None

    def page(va):
        return vmemmap + (va - direct) // 4096 * 64
    own = {page(sheaf): kmalloc_512, page(other): kmalloc_512, page(f_op_file): kmalloc_512,
           page(small): kmalloc_64}  # small: too small for 30 slots
    names = Names.__new__(Names)
    names.layout = SimpleNamespace(direct=direct, vmemmap=vmemmap)
    names.off = {"cache_size": 0x8, "sheaf": {"sheaf_cache": 16, "sheaf_size": 24, "sheaf_objects": 32,
                                              "cache_sheaf_capacity": 0x40}}
    names.census = SimpleNamespace(peek=peek, kmem_caches=lambda p: {cache, kmalloc_512, kmalloc_64, bogus},
                                   kmem_cache_of=lambda p: own.get(p))
    regions = SimpleNamespace(stale_at=lambda w: np.zeros(len(w), bool))
    slab, percpu = layout.ENUMS["space"]["SPACE_SLAB"], layout.ENUMS["space"]["SPACE_PERCPU"]
    owners = np.array([sheaf, sheaf, sheaf, other, f_op_file, small, 0x1000], np.uint64)
    words = owners + np.array([0, 32, 32 + 8 * 20, 40, 40, 40, 40], np.uint64)
    spaces = np.array([slab] * 6 + [percpu])
    assert names.stale_inside(words, owners, spaces, regions).tolist() == [False, True, True] + [False] * 4
    assert 0x1000 + 16 not in read and f_op + 0x40 not in read
    assert read.count(cache + 0x40) == 1  # a cache's capacity read once


def test_unique_pairs_are_numpys_unique_columns():
    import numpy as np
    from bpftrace_leak.tracer.scan_match import unique_pairs
    rng = np.random.default_rng(7)
    targets, labels = rng.integers(0, 500, 20000), rng.integers(0, 37, 20000)
    assert (unique_pairs(targets, labels, 37) == np.unique(np.stack([targets, labels]), axis=1)).all()
    assert unique_pairs(np.zeros(0, np.int64), np.zeros(0, np.int64), 0).shape == (2, 0)
