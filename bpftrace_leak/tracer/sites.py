"""Call sites and their promotion: when a call site starts taking a stack per
allocation.

By default (--stacks sites) only a call site's first allocation takes a
kernel stack; the others point at it (STACK_SITE). A site whose aged objects
under that first stack grow between two looks is promoted: from then on
every allocation there takes its own stack, so a leak that goes on shows
its real paths within seconds; one that stops growing is demoted again.
Promotion and demotion write kernel state (the site's ``sites`` entry and
its ``site_marks`` slot) and are called by the live loop, never by a report.
"""

import ctypes
import time

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
    """Promotes growing call sites of a session (``--stacks sites``), and
    demotes the ones that stopped growing.

    A promoted site takes a stack for every allocation: a site that grows
    and shrinks with the work (dentries and buffer heads under an untar,
    maple nodes under process churn) was promoted by the first look that
    saw it grow and stayed so; after 100 s of a loop of untars, 74% of
    allocations took a stack, 3 us each (bench/demotion.py: 4% with
    demotion, an allocation 577 ns against 2,987). So a promoted site whose aged
    objects (all of them, own stacks or not) set no new high for
    ``demote_after_s`` (config.py) is demoted: its allocations share the
    first stack again. For ten times that, it is promoted again only when
    its objects pass the high it had: a leak does, a cycle of the same work
    does not; then growth alone does again, so that a slow leak below an
    old high, at a busy site reached from many paths, still gets its own
    stacks within minutes.
    """

    def __init__(self, session, demote_after_s: float):
        self.session = session
        self.demote_after_s = demote_after_s
        self._aged: dict[tuple, int] = {}  # call site -> aged objects under its first stack, last look
        self._high: dict[tuple, tuple[int, float]] = {}  # promoted site -> (its most aged objects, when)
        self._demoted: dict[tuple, tuple[int, float]] = {}  # demoted site -> (its most aged objects, when)

    def decide(self, objects, now: float) -> tuple[list, list]:
        """(sites to promote, sites to demote) at time ``now`` (monotonic s),
        from ``objects`` (reader.Reader.objects()); keeps the state of this
        look for the next."""
        aged: dict[tuple, int] = {}
        total: dict[tuple, int] = {}
        for o in objects:
            key = (o.call_site, o.cache_ptr, layout.KIND_BY_NAME[o.kind], o.syscall)
            total[key] = total.get(key, 0) + o.count
            if o.site_stack:
                aged[key] = aged.get(key, 0) + o.count
        barrier = 10 * self.demote_after_s
        grown = [k for k, n in aged.items() if k in self._aged and n > self._aged[k] and k not in self._high
                 and (k not in self._demoted or total[k] > self._demoted[k][0]
                      or now - self._demoted[k][1] >= barrier)]
        self._aged = aged
        demote = []
        for k, (high, since) in list(self._high.items()):
            n = total.get(k, 0)
            if n > high:
                self._high[k] = (n, now)
            elif now - since >= self.demote_after_s:
                demote.append(k)
                self._demoted[k] = (high, now)
                del self._high[k]
        for k in grown:
            self._high[k] = (total[k], now)
            self._demoted.pop(k, None)
        return grown, demote

    def promote(self, objects, now: float | None = None) -> int:
        """Promote the sites whose aged objects shown with their site's first
        stack (``objects``: reader.Reader.objects()) grew since the last
        call, demote the promoted ones that stopped growing; returns how
        many were promoted now."""
        grown, demote = self.decide(objects, time.monotonic() if now is None else now)
        table, marks = self.session.map("sites"), self.session.map("site_marks")
        for keys, promoted in ((grown, 1), (demote, 0)):
            state = layout.DEFINES["SITE_MARK_PROMOTED" if promoted else "SITE_MARK_SEEN"]
            for call_site, cache, kind, syscall in keys:
                key = table.Key(call_site=call_site, cache=cache, kind=kind, syscall=syscall)
                try:
                    site = table[key]
                except KeyError:
                    continue
                site.promoted = promoted
                table[key] = site
                idx, tag = site_mark(call_site, cache, kind, syscall)
                slot = ctypes.c_int(idx)
                if marks[slot].value & ~layout.DEFINES["SITE_MARK_STATE"] == tag:
                    marks[slot] = ctypes.c_uint64(tag | state)
        return len(grown)
