"""Reading the ``live`` map fast: batched lookups, aggregated while read.

A million outstanding objects must not become a million Python objects. The
map is read in chunks with BPF_MAP_LOOKUP_BATCH into one reused buffer, and
each record is split into its allocation time and the bytes that group it
(layout.h keeps every other field of struct live_obj together after ts_ns);
only aged records are counted, per distinct group bytes.
"""

import ctypes
import errno
import os
import struct
from itertools import compress
from dataclasses import dataclass

from .layout import DEFINES

__all__ = ["LiveRow", "aggregate", "aggregate_slots", "decode", "read_values"]

_CHUNK = 65536
SLOT_BUSY = DEFINES["SLOT_BUSY"]


@dataclass(frozen=True)
class LiveRow:
    """Aged objects sharing every field but their allocation time."""

    kind: int
    cache: int  # struct kmem_cache address, 0 when not a slab object
    call_site: int
    bytes: int  # of each object
    tgid: int
    stack_id: int
    stack_how: int
    count: int
    oldest_ts_ns: int


def read_values(lib, map_fd: int, key_size: int, value_size: int, chunk: int = _CHUNK):
    """Yield buffers of whole values of map ``map_fd``, a chunk at a time.

    The buffer is reused: consume each before asking for the next. Raises
    OSError when the kernel refuses batched lookups (before 5.6).
    """
    keys = ctypes.create_string_buffer(key_size * chunk)
    values = ctypes.create_string_buffer(value_size * chunk)
    token = ctypes.c_uint32(0)
    count = ctypes.c_uint32(0)
    first = True
    while True:
        count.value = chunk
        res = lib.bpf_lookup_batch(map_fd, None if first else ctypes.byref(token), ctypes.byref(token),
                                   keys, values, ctypes.byref(count))
        err = ctypes.get_errno() if res != 0 else 0
        if res != 0 and err != errno.ENOENT:
            raise OSError(err, f"BPF_MAP_LOOKUP_BATCH: {os.strerror(err)}")
        if count.value:
            yield memoryview(values)[: count.value * value_size]
        if res != 0:  # ENOENT: that was the last chunk
            return
        first = False


def aggregate(chunks, value_size: int, cutoff_ns: int, rows: dict | None = None) -> dict[bytes, list[int]]:
    """{group bytes: [objects, oldest ts]} over live_obj records whose ts_ns <= ``cutoff_ns``.

    ts_ns leads struct live_obj and the group bytes are the rest of it; this
    is one of the two loops that run per object. Adds to ``rows`` if given.
    """
    rows = {} if rows is None else rows
    fmt = struct.Struct(f"<Q{value_size - 8}s")
    get = rows.get
    for chunk in chunks:
        for ts, key in fmt.iter_unpack(chunk):
            if ts <= cutoff_ns:
                row = get(key)
                if row is None:
                    rows[key] = [1, ts]
                else:
                    row[0] += 1
                    if ts < row[1]:
                        row[1] = ts
    return rows


def aggregate_slots(buf, slots: int, value_size: int, cutoff_ns: int) -> dict[bytes, list[int]]:
    """aggregate() over the slab slot array (struct slab_slot: addr, then a
    live_obj), skipping free slots and those being written.

    Most slots are free: their addresses are picked out as one strided
    column by C code, and only occupied slots are unpacked.
    """
    rows: dict[bytes, list[int]] = {}
    fmt = struct.Struct(f"<QQ{value_size - 8}s")
    if fmt.size % 8:
        raise ValueError("struct slab_slot is not a whole number of u64s")
    view = memoryview(buf)[: slots * fmt.size]
    addrs = view.cast("Q")[:: fmt.size // 8]
    occupied = compress(range(slots), map(SLOT_BUSY.__lt__, addrs))
    get = rows.get
    unpack = fmt.unpack_from
    size = fmt.size
    for i in occupied:
        _addr, ts, key = unpack(view, i * size)
        if ts <= cutoff_ns:
            row = get(key)
            if row is None:
                rows[key] = [1, ts]
            else:
                row[0] += 1
                if ts < row[1]:
                    row[1] = ts
    return rows


def decode(rows: dict[bytes, list[int]], leaf_type) -> list[LiveRow]:
    """LiveRows from aggregate()'s result; ``leaf_type`` is BCC's ctypes Leaf of ``live``."""
    out = []
    pad = bytes(8)
    for key, (n, oldest) in rows.items():
        v = leaf_type.from_buffer_copy(pad + key)
        out.append(LiveRow(kind=v.kind, cache=v.cache, call_site=v.call_site, bytes=v.bytes, tgid=v.tgid,
                           stack_id=v.stack_id,
                           stack_how=v.stack_how, count=n, oldest_ts_ns=oldest))
    return out
