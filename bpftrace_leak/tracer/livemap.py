"""Reading the outstanding objects fast: a million must not become a million
Python objects.

The slot arrays (heads and records) are mmap()ed and the ``live`` hash read in chunks with
BPF_MAP_LOOKUP_BATCH; numpy views both as columns: allocation time and the
bytes that group an object (layout.h keeps every other field of struct
live_obj together after ts). Aged records are counted per distinct group
bytes with array operations, so no Python code runs per object.
"""

import ctypes
import errno
import os

import numpy as np

from ..layout import DEFINES

__all__ = ["aggregate", "decode", "read_items", "read_values", "slot_records", "value_records"]

_CHUNK = 262144
SLOT_BUSY = DEFINES["SLOT_BUSY"]
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


#: (key size, value size, chunk) -> a pair of buffers no read is using: zeroing
#: a new pair for `live` (17 MB) took 1.6 ms of each read, every 2 s
_spare: dict = {}


def read_items(lib, map_fd: int, key_size: int, value_size: int, chunk: int = _CHUNK):
    """Yield (keys, values) buffers of whole entries of map ``map_fd``, a
    chunk at a time.

    The buffers are reused, by this read and by the next one of the same
    sizes: consume each pair (copy what is kept) before asking for the next.
    Raises OSError when the kernel refuses batched lookups (before 5.6).
    """
    shape = (key_size, value_size, chunk)
    keys, values = _spare.pop(shape, None) or (ctypes.create_string_buffer(key_size * chunk),
                                               ctypes.create_string_buffer(value_size * chunk))
    token = ctypes.c_uint32(0)
    count = ctypes.c_uint32(0)
    first = True
    try:
        while True:
            count.value = chunk
            res = lib.bpf_lookup_batch(map_fd, None if first else ctypes.byref(token), ctypes.byref(token),
                                       keys, values, ctypes.byref(count))
            err = ctypes.get_errno() if res != 0 else 0
            if res != 0 and err != errno.ENOENT:
                raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {os.strerror(err)}")
            if count.value:
                yield memoryview(keys)[: count.value * key_size], memoryview(values)[: count.value * value_size]
            if res != 0:  # ENOENT: that was the last chunk
                return
            first = False
    finally:
        _spare[shape] = (keys, values)  # a read running meanwhile took its own


def read_values(lib, map_fd: int, key_size: int, value_size: int, chunk: int = _CHUNK):
    """read_items()'s value buffers alone."""
    for _keys, values in read_items(lib, map_fd, key_size, value_size, chunk):
        yield values


def aggregate(records, cutoff: int, rows: dict | None = None) -> dict[bytes, list[int]]:
    """{group bytes: [objects, oldest ts]} over the aged records, added to ``rows``.

    ``records`` has columns ``ts`` and ``key`` (the group bytes as u64s):
    value_records()'s numpy array, or slot_records()'s dict, which has
    ``addr`` too. Objects are
    grouped by a 64-bit hash of their key, sorted: no Python code runs per
    object, only per group. A hash shared by two keys (checked) falls back
    to sorting by the keys themselves.
    """
    rows = {} if rows is None else rows
    if isinstance(records, dict):
        # the held slots first, then the age of those only: one pass over a
        # slot array, not two (9.0 ms -> 5.8 ms, 1 M slots a seventh full, 64-byte slots)
        idx = np.flatnonzero(records["addr"] > SLOT_BUSY)
        ts = records["ts"][idx]
        aged = ts <= cutoff
        idx, ts = idx[aged], ts[aged]
    else:
        idx = np.flatnonzero(records["ts"] <= cutoff)
        ts = records["ts"][idx]
    if not len(idx):
        return rows
    # each aged record's group bytes gathered once, as rows, not a column
    # at a time (twice): a cache miss per record, not one per column and
    # record. With the groups' bytes copied at once below: 26 -> 16 ms for
    # 40,000 aged records at random slots of 1 M in 8,800 groups (2026-12-06;
    # tests/unit/test_livemap.py checks the rows). On the untar a slot
    # array's read stayed ~3 ms: scanning the 1 M heads (16 MiB) is 2.2 of it.
    sel = records["key"][idx]
    columns = range(sel.shape[1])
    h = np.zeros(len(idx), "<u8")
    for j in columns:
        h ^= sel[:, j]
        h *= _GOLDEN
    order = np.argsort(h, kind="stable")
    h = h[order]
    starts = np.r_[0, np.flatnonzero(h[1:] != h[:-1]) + 1]
    del h
    sel, ts = sel[order], ts[order]
    sizes = np.diff(np.r_[starts, len(sel)])
    if not (sel == np.repeat(sel[starts], sizes, axis=0)).all():
        order = np.lexsort([sel[:, j] for j in reversed(columns)])
        sel, ts = sel[order], ts[order]
        starts = np.r_[0, np.flatnonzero((sel[1:] != sel[:-1]).any(axis=1)) + 1]
        sizes = np.diff(np.r_[starts, len(sel)])
    oldest = np.minimum.reduceat(ts, starts)
    # the groups' bytes in one copy, sliced per group (was a tobytes() and two int() per group)
    width = sel.shape[1] * 8
    blob = np.ascontiguousarray(sel[starts]).tobytes()
    for at, n, o in zip(range(0, len(blob), width), sizes.tolist(), oldest.tolist()):
        key = blob[at:at + width]
        row = rows.get(key)
        if row is None:
            rows[key] = [n, o]
        else:
            row[0] += n
            if o < row[1]:
                row[1] = o
    return rows


def slot_records(heads, objs, slots: int, head_size: int, value_size: int) -> dict:
    """A slot array (layout.h: struct slot_head, and the live_obj records at
    the same index) as columns for aggregate(): {"addr", "ts", "key"}."""
    addr = np.frombuffer(heads, dtype=np.dtype({"names": ["addr"], "formats": ["<u8"], "offsets": [0],
                                                "itemsize": head_size}), count=slots)["addr"]
    recs = np.frombuffer(objs, dtype=_value_dtype(value_size), count=slots)
    return {"addr": addr, "ts": recs["ts"], "key": recs["key"]}


def _value_dtype(value_size: int):
    """struct live_obj as numpy sees it: ts, then the group bytes as u64s."""
    return np.dtype({"names": ["ts", "key"], "formats": ["<u8", f"({(value_size - 8) // 8},)<u8"],
                     "offsets": [0, 8], "itemsize": value_size})


def value_records(buf, value_size: int):
    """live_obj values (a read_values() chunk) as records for aggregate()."""
    return np.frombuffer(buf, dtype=_value_dtype(value_size))


def decode(rows: dict[bytes, list[int]], leaf_type):
    """Yield (group bytes, struct live_obj, objects, oldest ts) for
    aggregate()'s result; ``leaf_type`` is BCC's ctypes Leaf of ``live``
    (its ts is not set)."""
    pad = bytes(8)
    for key, (n, oldest) in rows.items():
        yield key, leaf_type.from_buffer_copy(pad + key), n, oldest
