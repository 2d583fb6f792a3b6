"""--shake: drop what the kernel keeps only for reuse before the final report."""

import os
import time

from ..text import warn
from .rcu import rcu_barrier

__all__ = ["shake"]


def shake(settle_s: float) -> None:
    """Drop the clean page cache and the reclaimable dentries and inodes,
    system-wide, and wait for their RCU-deferred frees: what is still
    outstanding then is pinned (held by a reference), not kept for reuse by
    the dcache or, as the buffer heads of cached metadata blocks, the page
    cache."""
    warn("--shake: syncing and writing 3 to /proc/sys/vm/drop_caches (system-wide: "
          "clean page cache and every unused dentry and inode are dropped)")
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError as e:
        warn(f"--shake: cannot write /proc/sys/vm/drop_caches: {e.strerror}; report not shaken")
        return
    rcu_barrier()  # the dropped dentries and inodes are freed by RCU callbacks
    time.sleep(settle_s)
