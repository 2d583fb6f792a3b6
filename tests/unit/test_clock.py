"""The kernel side's allocation clock (tracer/clock.py): jiffies <-> monotonic ns."""

import numpy as np

from bpftrace_leak.tracer.clock import KernelClock, nearest_hz


def test_hz_is_the_nearest_the_kernel_allows():
    assert nearest_hz(25, 0.1) == 250
    assert nearest_hz(31, 0.1) == 300  # a tick more or less is not another HZ
    assert nearest_hz(24, 0.1) == 250
    assert nearest_hz(101, 0.1) == 1000
    assert nearest_hz(10, 0.1) == 100


def test_conversions_anchor_on_one_instant():
    tick = 4_000_000  # HZ=250
    anchor = (1_000_000, 50_000_000_000, tick)  # jiffies, ns, ns per tick
    assert KernelClock.to_ns(1_000_000, anchor) == 50_000_000_000
    assert KernelClock.to_ns(999_750, anchor) == 49_000_000_000  # a second earlier
    got = KernelClock.to_ns(np.array([999_750, 1_000_000], np.uint64), anchor)
    assert got.tolist() == [49_000_000_000, 50_000_000_000]
    # the records a minimum age of one second keeps: a tick at most lenient
    assert KernelClock.to_jiffies(49_000_000_000, anchor) == 999_750
    assert KernelClock.to_jiffies(48_999_000_000, anchor) == 999_749
    # --min-age 0: every record, even one made after the anchor was read
    assert KernelClock.to_jiffies(50_000_000_000, anchor) == 2**64 - 1
