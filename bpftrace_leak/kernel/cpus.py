"""Visit every CPU: drop the memory an idle CPU borrows from an exited process.

When a CPU goes idle after a process exits, the idle task keeps that
process's mm as its "lazy TLB" mm (active_mm) and holds a reference on it
until the CPU next switches to another process's mm. The mm_struct, its
page directory and its per-CPU counters then stay allocated with their owner
long gone: one such mm per idle CPU, a phantom leak in any report taken
while the CPU sleeps (found by the lab's process-churn decoy on Debian 13's
6.12: one mm_struct, pgd page and two per-CPU counters of the last exec'd
process, 8 s old). Running this thread on each CPU for a moment makes each
switch away from its lazy mm, which drops it.
"""

import os

__all__ = ["visit_cpus"]


def visit_cpus() -> int:
    """Run briefly on every CPU this process may use; returns how many were visited."""
    try:
        allowed = os.sched_getaffinity(0)
    except OSError:
        return 0
    visited = 0
    try:
        for cpu in sorted(allowed):
            try:
                os.sched_setaffinity(0, {cpu})  # returns once running there
                os.sched_yield()
                visited += 1
            except OSError:  # went offline meanwhile
                continue
    finally:
        try:
            os.sched_setaffinity(0, allowed)
        except OSError:
            pass
    return visited
