"""When a call site is promoted to a stack per allocation and demoted again
(tracer/sites.py Promoter.decide): pure logic, on objects as the reader gives them."""

from bpftrace_leak.analysis.groups import Obj
from bpftrace_leak.tracer.sites import Promoter

SITE = (0xFFFFFFFF81000000, 0xFFFF888000001000, 1, 257)  # call site, cache, KIND_SLAB, openat


def look(first: int, own: int = 0):
    """The aged objects of SITE: ``first`` under its first stack, ``own`` with their own."""
    call_site, cache, _kind, syscall = SITE
    base = dict(kind="slab", cache="filp", bytes=256, ts_ns=0, tgid=1, comm="x", call_site=call_site,
                cache_ptr=cache, syscall=syscall)
    return [Obj(stack_id=1, count=first, site_stack=True, **base)] * bool(first) + \
        [Obj(stack_id=2, count=own, **base)] * bool(own)


def test_a_site_growing_under_its_first_stack_is_promoted_at_the_second_look():
    p = Promoter(session=None, demote_after_s=60)
    assert p.decide(look(10), 0) == ([], [])  # nothing to compare with yet
    assert p.decide(look(10), 2) == ([], [])  # no growth
    assert p.decide(look(11), 4) == ([SITE], [])


def test_a_leak_stays_promoted_while_a_site_that_stops_growing_is_demoted():
    p = Promoter(session=None, demote_after_s=60)
    p.decide(look(10), 0)
    assert p.decide(look(20), 2) == ([SITE], [])
    # a leak: its own-stack objects keep setting new highs
    for t in range(4, 200, 2):
        assert p.decide(look(20, own=t), t) == ([], []), t
    # it stops: 60 s without a new high demotes it, once
    assert p.decide(look(20, own=198), 257) == ([], [])
    assert p.decide(look(20, own=198), 258) == ([], [SITE])
    assert p.decide(look(20, own=198), 260) == ([], [])


def test_a_demoted_site_comes_back_only_above_the_high_it_had():
    p = Promoter(session=None, demote_after_s=60)
    p.decide(look(10), 0)
    p.decide(look(20), 2)  # promoted with 20; its own stacks then take it to 100
    p.decide(look(20, own=80), 4)
    assert p.decide(look(20, own=80), 64) == ([], [SITE])  # demoted with a high of 100
    # the same work again, under the first stack: growth between looks, but no new high
    for t, n in ((66, 30), (68, 60), (70, 20), (72, 99), (74, 100)):
        assert p.decide(look(n), t) == ([], []), (t, n)
    assert p.decide(look(101), 76) == ([SITE], [])  # a leak goes past it


def test_a_promoted_site_whose_objects_are_all_freed_is_demoted():
    p = Promoter(session=None, demote_after_s=30)
    p.decide(look(10), 0)
    p.decide(look(20), 2)
    assert p.decide([], 20) == ([], [])
    assert p.decide([], 32) == ([], [SITE])


def test_ten_demotion_windows_later_growth_alone_promotes_a_demoted_site_again():
    p = Promoter(session=None, demote_after_s=60)
    p.decide(look(10), 0)
    p.decide(look(20), 2)
    p.decide(look(20, own=80), 4)
    assert p.decide(look(20, own=80), 64) == ([], [SITE])  # a high of 100
    assert p.decide(look(30), 70) == ([], [])
    assert p.decide(look(40), 663) == ([], [])  # growth below the high, 599 s after the demotion
    assert p.decide(look(50), 664) == ([SITE], [])  # 600 s: growth is enough again
