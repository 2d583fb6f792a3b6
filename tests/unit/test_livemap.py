"""Aggregation of live-object records (livemap.py) on synthetic buffers."""

import struct

import numpy as np

from bpftrace_leak.tracer import livemap

KEY = struct.Struct("<QQQIiHHI")  # call_site, cache, bytes, tgid, stack_id, kind, stack_how, pad: 40 bytes
VALUE = 8 + KEY.size
HEAD = 16  # layout.h struct slot_head: addr, spilled


def key(site, tgid=7):
    return KEY.pack(site, 0, 64, tgid, 3, 0, 1, 0)


def slots(entries, count=16):
    heads, objs = bytearray(count * HEAD), bytearray(count * VALUE)
    for i, (addr, ts, k) in entries.items():
        struct.pack_into("<Qq", heads, i * HEAD, addr, 0)
        struct.pack_into(f"<Q{len(k)}s", objs, i * VALUE, ts, k)
    return livemap.slot_records(heads, objs, count, HEAD, VALUE)


def test_slots_counted_per_key_with_oldest_and_free_or_busy_slots_skipped():
    recs = slots({0: (0x1000, 50, key(1)), 1: (0x1008, 20, key(1)), 2: (0x1010, 30, key(2)),
                  3: (0, 10, key(1)), 4: (livemap.SLOT_BUSY, 10, key(1)), 5: (0x1020, 500, key(1))})
    rows = livemap.aggregate(recs, cutoff=100)
    assert rows == {key(1): [2, 20], key(2): [1, 30]}  # ts 500 is younger than the cutoff


def test_values_add_to_the_same_rows():
    rows = livemap.aggregate(slots({0: (0x1000, 50, key(1))}), 100)
    hashed = bytearray()
    for ts, k in ((40, key(1)), (60, key(9))):
        hashed += struct.pack("<Q", ts) + k
    livemap.aggregate(livemap.value_records(bytes(hashed), VALUE), 100, rows)
    assert rows == {key(1): [2, 40], key(9): [1, 60]}


def test_a_hash_collision_falls_back_to_sorting_keys(monkeypatch):
    monkeypatch.setattr(livemap, "_GOLDEN", np.uint64(0))  # every key hashes to 0
    recs = slots({0: (0x1000, 5, key(1)), 1: (0x1008, 6, key(2)), 2: (0x1010, 4, key(1)), 3: (0x1018, 9, key(3, 8))})
    assert livemap.aggregate(recs, 100) == {key(1): [2, 4], key(2): [1, 6], key(3, 8): [1, 9]}


def test_nothing_aged_is_no_rows():
    assert livemap.aggregate(slots({0: (0x1000, 500, key(1))}), 100) == {}


class FakeBatches:
    """lib.bpf_lookup_batch over ``entries`` (key bytes, value bytes): a
    chunk per call, ENOENT with the last one, as the kernel answers."""

    def __init__(self, entries):
        self.entries, self.buffers = entries, []

    def bpf_lookup_batch(self, fd, in_token, out_token, keys, values, count):
        import ctypes
        import errno
        self.buffers.append((ctypes.addressof(keys), ctypes.addressof(values)))
        at = out_token._obj.value if in_token is not None else 0
        chunk = self.entries[at:at + count._obj.value]
        for i, (k, v) in enumerate(chunk):
            ctypes.memmove(ctypes.addressof(keys) + i * len(k), k, len(k))
            ctypes.memmove(ctypes.addressof(values) + i * len(v), v, len(v))
        count._obj.value = len(chunk)
        out_token._obj.value = at + len(chunk)
        if at + len(chunk) >= len(self.entries):
            ctypes.set_errno(errno.ENOENT)
            return -1
        return 0


def test_batched_reads_reuse_their_buffers_but_never_share_them_while_running():
    entries = [(struct.pack("<Q", i), struct.pack("<QQ", i, 2 * i)) for i in range(5)]
    lib = FakeBatches(entries)
    outer = livemap.read_items(lib, 3, 8, 16, chunk=2)
    first = [bytes(b) for b in next(outer)]  # consumed before the next chunk, as read_items asks
    # a read of the same sizes while the first is suspended gets buffers of its own
    inner = [bytes(v) for _, v in livemap.read_items(lib, 3, 8, 16, chunk=2)]
    assert first[0] == b"".join(k for k, _ in entries[:2])
    rest = [bytes(v) for _, v in outer]
    assert [first[1]] + rest == inner == [b"".join(v for _, v in entries[i:i + 2]) for i in (0, 2, 4)]
    assert len({b for b in lib.buffers}) == 2
    # the next read takes a pair the finished ones gave back
    list(livemap.read_items(lib, 3, 8, 16, chunk=2))
    assert lib.buffers[-1] in lib.buffers[:-1]
