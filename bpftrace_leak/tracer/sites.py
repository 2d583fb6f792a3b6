"""Call sites and their promotion: when a call site starts taking a stack per
allocation.

By default (--stacks sites) only a call site's first allocation takes a
kernel stack; the others point at it (STACK_SITE). A site whose aged objects
under that first stack grow between two looks is promoted: from then on
every allocation there takes its own stack, so a leak that goes on shows
its real paths within seconds. Promotion writes kernel state (the site's
``sites`` entry and its ``site_marks`` slot) and is called by the live loop,
never by a report.
"""

import ctypes

from .. import layout

__all__ = ["site_hash", "site_mark", "Promoter"]

_U64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def site_hash(call_site: int, cache: int, kind: int, syscall: int) -> int:
    """layout.h's site_hash(), the same 64 bits (tests/unit/test_layout.py compiles the C one)."""
    return ((call_site ^ (cache >> 3) ^ ((kind << 56) & _U64) ^ ((syscall << 40) & _U64)) * _GOLDEN) & _U64


def site_mark(call_site: int, cache: int, kind: int, syscall: int) -> tuple[int, int]:
    """(index, tag) of a call site in probes.c's site_marks."""
    h = site_hash(call_site, cache, kind, syscall)
    return h >> (64 - layout.DEFINES["SITE_MARK_BITS"]), h & ~layout.DEFINES["SITE_MARK_STATE"]


class Promoter:
    """Promotes growing call sites of a session (``--stacks sites``)."""

    def __init__(self, session):
        self.session = session
        self._aged: dict[tuple, int] = {}  # call site -> aged objects under its first stack, last look

    def promote(self, objects) -> int:
        """Promote the sites whose aged objects shown with their site's first
        stack (``objects``: reader.Reader.objects()) grew since the last
        call; returns how many were promoted now."""
        aged: dict[tuple, int] = {}
        for o in objects:
            if o.site_stack:
                key = (o.call_site, o.cache_ptr, layout.KIND_BY_NAME[o.kind], o.syscall)
                aged[key] = aged.get(key, 0) + o.count
        grown = [k for k, n in aged.items() if k in self._aged and n > self._aged[k]]
        self._aged = aged
        table, marks = self.session.map("sites"), self.session.map("site_marks")
        promoted = layout.DEFINES["SITE_MARK_PROMOTED"]
        for call_site, cache, kind, syscall in grown:
            key = table.Key(call_site=call_site, cache=cache, kind=kind, syscall=syscall)
            try:
                site = table[key]
            except KeyError:
                continue
            site.promoted = 1
            table[key] = site
            idx, tag = site_mark(call_site, cache, kind, syscall)
            slot = ctypes.c_int(idx)
            if marks[slot].value & ~layout.DEFINES["SITE_MARK_STATE"] == tag:
                marks[slot] = ctypes.c_uint64(tag | promoted)
        return len(grown)
