"""Waiting for RCU-deferred frees: rcu_barrier() from user space.

Dentries, inodes, sockets, a task's pid and the 6.18 slab's kfree_rcu
sheaves are freed by RCU callbacks, after a grace period, on whichever CPU
queued them. A fixed sleep guesses how long that takes, and under load the
guess can be short: the kernel's own wait is rcu_barrier(), which returns
once every callback queued before it has run, on every CPU. Kernels since
2023 expose it to root as a module parameter (kernel/rcu/tree.c:
param_set_do_rcu_barrier: writing 1 runs rcu_barrier(), throttled to one
every HZ/16, and the write returns when it is done; 6.1 has none): 2 to 60
ms on this project's host. It does not drain kvfree_rcu()'s batches (they
wait up to KFREE_DRAIN_JIFFIES, 5 s, before their grace period even starts)
nor work queued by the callbacks.
"""

import os
import threading

__all__ = ["RCU_BARRIER", "ABSENT", "rcu_barrier"]

RCU_BARRIER = "/sys/module/rcutree/parameters/do_rcu_barrier"
ABSENT = "the kernel has no rcutree.do_rcu_barrier"


def rcu_barrier(timeout_s: float = 2.0, path: str = RCU_BARRIER) -> str | None:
    """Run rcu_barrier() and wait for it, ``timeout_s`` at most: None when
    it completed, else why not: ABSENT on older kernels, or a stalled grace
    period (the write sleeps uninterruptibly, so it runs on a daemon thread
    and the session goes on without it), or the write's error."""
    failed: list[str] = []

    def run() -> None:
        try:
            fd = os.open(path, os.O_WRONLY)  # never O_CREAT: a parameter or nothing
            try:
                os.write(fd, b"1")
            finally:
                os.close(fd)
        except FileNotFoundError:
            failed.append(ABSENT)
        except OSError as e:
            failed.append(f"{path}: {e.strerror or e}")

    t = threading.Thread(target=run, name="rcu_barrier", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        return f"rcu_barrier() not done in {timeout_s:g} s"
    return failed[0] if failed else None
