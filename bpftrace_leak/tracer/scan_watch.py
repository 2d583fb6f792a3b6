"""When a holder scan stops before it is done: on a signal, or past its time
limit. tracer/scan.py checks a Watch before each batch of pages it reads
(Watched) and each million page frames' flags; a stopped scan's section
says why, and the report has no verdicts."""

import time

__all__ = ["SCAN_LIMIT_S", "Stopped", "Watch", "Watched"]

#: a read of kernel memory running longer stops, and says so (the section's
#: "skipped"); --scan-limit sets it. A pass takes 2.2 to 2.4 s on this
#: project's 2-core host (bench/scan.py), 15 to 20 s in the lab's emulated
#: guests, 25 s beside CI's load; a read is two passes when it finds orphans
SCAN_LIMIT_S = 120.0


class Stopped(Exception):
    """The scan was told to stop: a signal, or its time limit (str: why)."""


class Watch:
    """When a scan must stop: ``stop()`` true (a signal ending the session
    came), or ``limit_s`` past the start of its read of memory (lap(): a
    scan --via both reads it twice, each read with the whole limit: the lab's
    bookworm took 101 s for both beside CI's load, one CI run past 120 s).
    check() raises Stopped."""

    def __init__(self, stop=None, limit_s: float = SCAN_LIMIT_S):
        self.stop, self.limit_s = stop, limit_s
        self.began = self.lapped = time.monotonic()

    def lap(self) -> None:
        """A new read of memory starts: the limit counts from now."""
        self.lapped = time.monotonic()

    def check(self) -> None:
        if self.stop is not None and self.stop():
            raise Stopped("stopped by a signal before it was done")
        if time.monotonic() - self.lapped > self.limit_s:
            raise Stopped(f"stopped after {self.limit_s:.0f} s, its limit, before it was done")


class Watched:
    """A memory reader (tracer/memory.py) whose every batch checks a Watch
    first: one read of memory, the Watch's limit counted from its making."""

    def __init__(self, memory, watch: Watch):
        self.memory, self.watch, self.method = memory, watch, memory.method
        watch.lap()

    def read(self, addrs):
        self.watch.check()
        return self.memory.read(addrs)

    def peek(self, addr: int, n: int):
        return self.memory.peek(addr, n)
