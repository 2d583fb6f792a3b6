"""/proc/kpageflags: what each page frame is, for the holder scan.

One u64 of KPF_* bits per page frame (Documentation/admin-guide/mm/pagemap.rst;
root only): 6.5 million frames on this project's 24 GiB host, read in about
half a second. A free block of the buddy allocator is flagged on its first
frame only (KPF_BUDDY; its order is in that frame's struct page, private):
tracer/scan.py reads the orders from the memmap.
"""

import os

import numpy as np

__all__ = ["read_flags", "KPF", "bit"]

#: include/uapi/linux/kernel-page-flags.h (and fs/proc/page.c for the high ones)
KPF = {"LOCKED": 0, "LRU": 5, "SLAB": 7, "BUDDY": 10, "MMAP": 11, "ANON": 12, "COMPOUND_HEAD": 15,
       "COMPOUND_TAIL": 16, "HUGE": 17, "HWPOISON": 19, "NOPAGE": 20, "OFFLINE": 23, "PGTABLE": 26,
       "RESERVED": 32}


def bit(flags: np.ndarray, name: str) -> np.ndarray:
    """Which frames have flag ``name`` (a bool array)."""
    return (flags >> np.uint64(KPF[name])) & np.uint64(1) == 1


def read_flags(path: str = "/proc/kpageflags") -> np.ndarray:
    """Every page frame's flags; OSError when the file cannot be read."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            data = os.read(fd, 8 << 20)
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(fd)
    return np.frombuffer(b"".join(chunks), np.uint64)
