"""kfree_rcu's pages (tracer/scan_rcu.py): the walk of each CPU's cache and
chains over a fake memory, on 6.1's layout (pointers, next) and 6.2's (lists)."""

from bpftrace_leak.tracer.memory import PAGE
from bpftrace_leak.tracer.scan_rcu import MAX_PAGES, rcu_pages

BASE = 0x100000  # the one CPU's per-CPU area
LIST = {"var": 0x800, "work_size": 120, "cache": 568, "nr_records": 32, "records": 40,
        "works": 64, "heads": 24, "free_heads": 80, "list": 0}  # this host's 6.18
NEXT = {"var": 0x800, "work_size": 64, "cache": 400, "nr_records": 0, "records": 16,
        "works": 24, "heads": 8, "free_heads": 40, "next": 8}  # bookworm's 6.1


class Census:
    def __init__(self, words):
        self.words = words

    def cpu_bases(self):
        return {0: BASE}

    def u64(self, addr):
        return self.words.get(addr, 0)


def page(n):
    return 0xFFFF888000000000 + n * PAGE


def test_cached_pages_are_dead_and_pages_in_use_stale_past_their_records_61():
    krc = BASE + NEXT["var"]
    words = {krc + NEXT["cache"]: page(1), page(1): page(2), page(2): 0,  # the llist of cached pages
             krc + NEXT["heads"] + 8: page(3), page(3) + NEXT["nr_records"]: 5, page(3) + 8: page(4),
             page(4) + NEXT["nr_records"]: 0,
             krc + NEXT["works"] + NEXT["work_size"] + NEXT["free_heads"]: page(5), page(5): 500}
    dead, tails = rcu_pages(Census(words), NEXT)
    assert dead == [page(1), page(2)]
    assert tails == {page(3): 16 + 5 * 8, page(4): 16, page(5): 16 + 500 * 8}


def test_lists_on_62_and_a_misread_ends_the_walk():
    krc = BASE + LIST["var"]
    head = krc + LIST["heads"]
    words = {head: page(7), page(7): page(8), page(8): head,  # a list of two pages, back to its head
             page(7) + 32: 3, page(8) + 32: 10_000}  # the second's count fits no page: a misread
    dead, tails = rcu_pages(Census(words), LIST)
    assert dead == [] and tails == {page(7): 40 + 3 * 8}


def test_a_looping_cache_stops():
    krc = BASE + LIST["var"]
    words = {krc + LIST["cache"]: page(1), page(1): page(1)}
    dead, _ = rcu_pages(Census(words), LIST)
    assert len(dead) == MAX_PAGES
