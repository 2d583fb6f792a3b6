"""When a holder scan stops before it is done: on a signal, or past its time
limit. tracer/scan.py checks a Watch before each batch of pages it reads
(Watched) and each million page frames' flags; a stopped scan's section
says why, and the report has no verdicts."""

import time

__all__ = ["SCAN_LIMIT_S", "Stopped", "Watch", "Watched"]

#: a holder scan running longer stops, and says so (the section's
#: "skipped"): a pass takes 2.2 to 2.4 s on this project's 2-core host
#: (bench/scan.py), 15 to 20 s in the lab's emulated guests
SCAN_LIMIT_S = 120.0


class Stopped(Exception):
    """The scan was told to stop: a signal, or its time limit (str: why)."""


class Watch:
    """When a scan must stop: ``stop()`` true (a signal ending the session
    came), or SCAN_LIMIT_S past its start. check() raises Stopped."""

    def __init__(self, stop=None, limit_s: float = SCAN_LIMIT_S):
        self.stop, self.limit_s = stop, limit_s
        self.began = time.monotonic()

    def check(self) -> None:
        if self.stop is not None and self.stop():
            raise Stopped("stopped by a signal before it was done")
        if time.monotonic() - self.began > self.limit_s:
            raise Stopped(f"stopped after {self.limit_s:.0f} s, its limit, before it was done")


class Watched:
    """A memory reader (tracer/memory.py) whose every batch checks a Watch first."""

    def __init__(self, memory, watch: Watch):
        self.memory, self.watch, self.method = memory, watch, memory.method

    def read(self, addrs):
        self.watch.check()
        return self.memory.read(addrs)

    def peek(self, addr: int, n: int):
        return self.memory.peek(addr, n)
