"""The kernel side's allocation clock: records carry bpf_jiffies64(), the
tick count, not nanoseconds (probes/objects.h: clock_now says why). This
converts between the two, so that everything past the reader is on
CLOCK_MONOTONIC (time.monotonic_ns(), bpf_ktime_get_ns()).

HZ is not in BTF or in sysfs here, so it is measured: the ticks between
two readings some 100 ms apart, rounded to the nearest value the kernel
allows (CONFIG_HZ: 100, 250, 300 or 1000). Each conversion then anchors on a
fresh reading of both clocks, so jiffies' own small drift against the clock
source never adds up; a record's time is its tick's start, at most a tick
(4 ms at HZ=250) before it was made.
"""

import ctypes
import time

from . import bcc

__all__ = ["KernelClock", "nearest_hz"]

_HZ = (100, 250, 300, 1000)
_MEASURE_S = 0.1


def nearest_hz(ticks: int, seconds: float) -> int:
    """The CONFIG_HZ closest to ``ticks`` in ``seconds``."""
    rate = ticks / seconds
    return min(_HZ, key=lambda hz: abs(hz - rate))


class KernelClock:
    """Jiffies <-> monotonic ns for a started session (its clock_now program)."""

    def __init__(self, session):
        self.session = session
        self._first = self._read()
        self._hz: int | None = None

    def _read(self) -> tuple[int, int]:
        """(jiffies, ktime ns) at one instant."""
        bcc.test_run(self.session.prog_fds["clock_now"], [0])
        pair = self.session.map("clock_pairs")[ctypes.c_int(0)]
        return pair.jiffies, pair.ktime_ns

    @property
    def tick_ns(self) -> int:
        if self._hz is None:
            wait = _MEASURE_S - (time.monotonic_ns() - self._first[1]) / 1e9
            if wait > 0:
                time.sleep(wait)
            j, ns = self._read()
            self._hz = nearest_hz(j - self._first[0], (ns - self._first[1]) / 1e9)
        return 1_000_000_000 // self._hz

    def anchor(self) -> tuple[int, int, int]:
        """(jiffies, ns, ns per tick) now: to_ns() and to_jiffies() use it."""
        tick = self.tick_ns
        j, ns = self._read()
        return j, ns, tick

    @staticmethod
    def to_ns(jiffies, anchor):
        """Monotonic ns of ``jiffies`` (an int or a numpy u64 array)."""
        j, ns, tick = anchor
        return ns - (j - jiffies) * tick if isinstance(jiffies, int) else \
            (jiffies.astype("i8") - j) * tick + ns

    @staticmethod
    def to_jiffies(ns: int, anchor) -> int:
        """The tick of monotonic ``ns``, to a tick; every tick for ``ns`` at
        or after the anchor (--min-age 0: every record)."""
        j, now, tick = anchor
        return 2**64 - 1 if ns >= now else j - -(-(now - ns) // tick)
