"""/proc/kpageflags: what each page frame is, for the holder scan.

One u64 of KPF_* bits per page frame (Documentation/admin-guide/mm/pagemap.rst;
root only): 6.5 million frames on this project's 24 GiB host, read in about
half a second. A free block of the buddy allocator is flagged KPF_BUDDY on
its first frame (its order is in that frame's struct page, private), which
tracer/scan.py reads from the memmap; 6.1's fs/proc/page.c flags that frame
only, this host's 6.18 every frame of the block (400+ free frames flagged
before and after in tests/kernel/test_holders.py's page census test): a
block's other frames then read as blocks of order 0 (private is cleared
when blocks merge), free either way.
"""


import numpy as np

__all__ = ["read_flags", "KPF", "bit", "any_of", "max_pfn"]

#: include/uapi/linux/kernel-page-flags.h (and fs/proc/page.c for the high ones)
KPF = {"LOCKED": 0, "LRU": 5, "SLAB": 7, "BUDDY": 10, "MMAP": 11, "ANON": 12, "COMPOUND_HEAD": 15,
       "COMPOUND_TAIL": 16, "HUGE": 17, "HWPOISON": 19, "NOPAGE": 20, "OFFLINE": 23, "PGTABLE": 26,
       "RESERVED": 32}


def bit(flags: np.ndarray, name: str) -> np.ndarray:
    """Which frames have flag ``name`` (a bool array)."""
    return any_of(flags, name)


def any_of(flags: np.ndarray, *names: str) -> np.ndarray:
    """Which frames have any of the flags ``names``: one pass, in chunks, so
    a host's 6.5 million frames never make a temporary of 52 MB."""
    mask = np.uint64(sum(1 << KPF[n] for n in names))
    out = np.empty(len(flags), bool)
    for at in range(0, len(flags), 1 << 20):
        np.not_equal(np.bitwise_and(flags[at:at + (1 << 20)], mask), 0, out=out[at:at + (1 << 20)])
    return out


def read_flags(path: str = "/proc/kpageflags", frames: int | None = None, between=None) -> np.ndarray:
    """Every page frame's flags (``frames`` of them at most: the file goes
    on past the last frame of RAM); OSError when it cannot be read. Read
    into one array, never a copy of it, 8 MiB a read (a million frames,
    about 0.1 s here), ``between()`` called before each."""
    if frames is None:
        frames = max_pfn()
    out = np.zeros(frames, np.uint64)
    view = memoryview(out).cast("B")
    got = 0
    with open(path, "rb", buffering=0) as f:
        while got < len(view):
            if between is not None:
                between()
            n = f.readinto(view[got:got + (8 << 20)])
            if not n:
                break
            got += n
    return out[:got // 8]


def max_pfn(path: str = "/proc/iomem", unknown: int = 1 << 26) -> int:
    """One past the highest page frame of System RAM (/proc/iomem, as root);
    ``unknown`` when it lists none."""
    top = 0
    try:
        with open(path) as f:
            for line in f:
                if line.rstrip().endswith(": System RAM") and not line.startswith(" "):
                    top = max(top, int(line.split("-")[1].split()[0], 16) + 1)
    except (OSError, ValueError):
        pass
    return -(-top // 4096) or unknown
