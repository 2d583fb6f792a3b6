"""A session's records one row each, as numpy arrays: the slot arrays
(mmap()ed once) and the live hash, for the census (the struct pages of
recorded slab objects, the records of given caches) and the holder scan
(every record). reader.py aggregates the same records into groups.
"""

import ctypes
import time

from .. import layout
from .livemap import read_items, slot_records, value_records

__all__ = ["Records", "freed_index", "made_before_free", "forget_old_frees"]

#: page_freed entries further than this from now, either way, are cleared
#: (forget_old_frees): a u32 of jiffies wraps in 198 days at HZ=250, 49.7 at
#: HZ=1000, and a free 2^31 ticks old would read as one to come
FREE_HORIZON = 1 << 30


def freed_index(pages, struct_size: int, count: int):
    """The page_freed index of each struct page in ``pages`` (numpy u64):
    its index modulo ``count`` (probes/retire.h: frame_of)."""
    import numpy as np
    return ((pages // np.uint64(struct_size)) & np.uint64(count - 1)).astype(np.int64)


def made_before_free(ts, freed):
    """Which records made at jiffies ``ts`` (numpy u64) predate the page free
    at ``freed`` (page_freed's u32 values, (u32)jiffies | 1; 0: none): modulo
    2^32, and the same jiffy counts as after (probes/retire.h: made_before_free)."""
    import numpy as np
    made = ts.astype(np.uint32) | np.uint32(1)
    return (freed != 0) & ((made - freed) >> np.uint32(31) == 1)


def forget_old_frees(freed, now: int) -> int:
    """Clear the page_freed values (a writable numpy u32 view) more than
    FREE_HORIZON jiffies from ``now``; how many were cleared."""
    import numpy as np
    delta = (np.uint32((now & 0xFFFFFFFF) | 1) - freed).view(np.int32).astype(np.int64)
    old = (freed != 0) & (np.abs(delta) > FREE_HORIZON)
    freed[old] = 0
    return int(old.sum())


class Records:
    """The records of a started session.Session; calling it gives every one
    (see __call__)."""

    def __init__(self, session):
        self.session = session
        self._views: dict[str, tuple] = {}  # slot array name -> (heads' mmap, records' mmap, slots)
        self._freed_view = None  # page_freed, mmap()ed once (page_freed())
        self._freed_checked = 0.0  # when forget_old_frees last ran (monotonic s)

    def close(self) -> None:
        for heads, objs, _count in self._views.values():
            heads.close()
            objs.close()
        self._views = {}
        if self._freed_view is not None:
            self._freed_view.close()
            self._freed_view = None

    def page_freed(self):
        """page_freed (probes/retire.h) as a writable numpy u32 array, one per
        frame; None without it. Values far from now are cleared first, once
        an hour (forget_old_frees)."""
        import numpy as np
        count = self.session.plan.page_freed
        if not count:
            return None
        if self._freed_view is None:
            self._freed_view = self.session.mmap("page_freed", 8, count // 2, writable=True)
        freed = np.frombuffer(self._freed_view, np.uint32, count)
        if time.monotonic() - self._freed_checked > 3600:
            self._freed_checked = time.monotonic()
            forget_old_frees(freed, int(self.cutoff(0)[0]))
        return freed

    def slot_arrays(self) -> dict:
        """{slot array name: its columns (slot_records)}, mmap()ed once."""
        size = ctypes.sizeof(self.session.map("live").Leaf)
        head = ctypes.sizeof(self.session.map("slots").Leaf)
        if not self._views:
            for name, objs, count in (("slots", "slot_objs", 1 << self.session.plan.slot_bits),
                                      ("page_slots", "page_objs", layout.DEFINES["PAGE_SLOT_COUNT"])):
                self._views[name] = (self.session.mmap(name, head, count), self.session.mmap(objs, size, count),
                                     count)
        return {name: slot_records(heads, objs, count, head, size)
                for name, (heads, objs, count) in self._views.items()}

    def cutoff(self, min_age_ns: int):
        """The records' time (jiffies, tracer/clock.py) of ``min_age_ns`` ago,
        and the clock's anchor now."""
        import numpy as np
        anchor = self.session.clock.anchor()
        return np.uint64(self.session.clock.to_jiffies(time.monotonic_ns() - min_age_ns, anchor)), anchor

    def aged_slots(self, recs, min_age_ns: int):
        """Which slots hold a record made at least ``min_age_ns`` ago (a numpy mask)."""
        import numpy as np
        return (recs["addr"] > np.uint64(layout.DEFINES["SLOT_BUSY"])) & (recs["ts"] <= self.cutoff(min_age_ns)[0])

    def slab_pages(self, min_age_ns: int, recs=None):
        """The struct pages (numpy u64) of the 4 KiB pages holding slab objects
        recorded at least ``min_age_ns`` ago (for the census), none before the
        kernel side learned where struct pages map (layout.h: page_calib);
        for each, the cache of its records (kmem_cache_alloc's) or their
        size (kmalloc's) when they all agree, else 0 (probes/census.h:
        census_slab retires them from a page that is no such slab any more);
        and whether its frame was freed after one of them was made (a numpy
        bool; census.h: census_freed retires those). ``recs``: this call's
        (min_age_ns) records, when read already."""
        import numpy as np
        calib = self.session.map("page_calib")[ctypes.c_int(0)]
        ratio = self.session.plan.census.get("ratio", 0)
        if not calib.ready or not ratio:
            return (np.zeros(0, np.uint64),) * 3 + (np.zeros(0, bool),)
        recs = self(min_age_ns) if recs is None else recs
        slab = recs["space"] == layout.ENUMS["space"]["SPACE_SLAB"]
        leaf = self.session.map("live").Leaf
        def col(field):  # a field of the records' group bytes (after ts), shifted down
            off = getattr(leaf, field).offset
            return recs["key"][slab, (off - 8) // 8] >> np.uint64(off % 8 * 8)
        kinds = col("kind") & np.uint64(0xFFFF)
        cache = np.where(kinds == layout.KINDS["KIND_SLAB"], col("cache"), np.uint64(0))
        size = np.where(kinds == layout.KINDS["KIND_KMALLOC"], col("bytes") & np.uint64(0xFFFFFFFF), np.uint64(0))
        page = recs["addr"][slab] & np.uint64(~4095 & (2**64 - 1))
        pages, first, inverse = np.unique(page, return_index=True, return_inverse=True)
        agree = np.ones(len(pages), bool)
        for column in (cache, size):
            np.logical_and.at(agree, inverse, column == column[first][inverse])
        cache_hint = np.where(agree, cache[first], np.uint64(0))
        size_hint = np.where(agree, size[first], np.uint64(0))
        # struct page = (va - offset) / ratio, in the kernel half: va = page * ratio + offset
        # wraps modulo 2**64, so the quotient is completed by the top bits it lost
        x = pages - np.uint64(calib.offset)
        structs = x // np.uint64(ratio) + np.uint64((ratio - 1) * (2**64 // ratio))
        stale = np.zeros(len(pages), bool)
        freed = self.page_freed()
        if freed is not None and len(pages):
            oldest = np.full(len(pages), np.iinfo(np.uint64).max, np.uint64)
            np.minimum.at(oldest, inverse, recs["ts"][slab])
            index = freed_index(structs, self.session.plan.census["page_size"] // ratio, len(freed))
            stale = made_before_free(oldest, freed[index])
        return structs, cache_hint, size_hint, stale

    def cache_records(self, caches, min_age_ns: int):
        """(addresses, group bytes) of the slab objects of kmem_caches
        ``caches`` recorded at least ``min_age_ns`` ago: a numpy u64 array
        and a (n, k) u64 array of their records' group bytes (decode_key)."""
        import numpy as np
        from bcc.libbcc import lib
        live = self.session.map("live")
        col = (live.Leaf.cache.offset - 8) // 8
        wanted = np.array(sorted(caches), np.uint64)
        recs = self.slot_arrays()["slots"]
        keep = self.aged_slots(recs, min_age_ns) & np.isin(recs["key"][:, col], wanted)
        cutoff, _ = self.cutoff(min_age_ns)
        addrs, keys = [recs["addr"][keep]], [recs["key"][keep]]
        key_size, size = ctypes.sizeof(live.Key), ctypes.sizeof(live.Leaf)
        try:
            for kbuf, vbuf in read_items(lib, live.map_fd, key_size, size):
                k = np.frombuffer(kbuf, np.dtype({"names": ["addr"], "formats": ["<u8"], "offsets": [0],
                                                  "itemsize": key_size}))
                v = value_records(vbuf, size)
                keep = (v["ts"] <= cutoff) & np.isin(v["key"][:, col], wanted)
                addrs.append(k["addr"][keep] ^ np.uint64(self.session.plan.addr_key))  # probes.c MANGLE
                keys.append(v["key"][keep].copy())
        except OSError:  # no batched lookups: what the slots hold
            pass
        return np.concatenate(addrs), np.concatenate(keys)

    def __call__(self, min_age_ns: int = 0) -> dict:
        """Every record allocated at least ``min_age_ns`` ago, one row each
        (numpy): addr (the object's address, unmangled), space (layout.h's
        enum space), ts (jiffies: with addr, a record's identity), key (the
        group bytes, as aggregate() groups them)."""
        import numpy as np
        from bcc.libbcc import lib
        cutoff, _ = self.cutoff(min_age_ns)
        spaces = layout.ENUMS["space"]
        out = {"addr": [], "space": [], "ts": [], "key": []}

        def add(addr, space, ts, key):
            out["addr"].append(np.asarray(addr, np.uint64))
            out["space"].append(np.full(len(addr), space, np.uint32) if np.isscalar(space) else space)
            out["ts"].append(np.asarray(ts, np.uint64))
            out["key"].append(np.asarray(key, np.uint64))
        for name, space in (("slots", spaces["SPACE_SLAB"]), ("page_slots", spaces["SPACE_PAGE"])):
            recs = self.slot_arrays()[name]
            keep = (recs["addr"] > np.uint64(layout.DEFINES["SLOT_BUSY"])) & (recs["ts"] <= cutoff)
            add(recs["addr"][keep], space, recs["ts"][keep], recs["key"][keep])
        live = self.session.map("live")
        key_size, size = ctypes.sizeof(live.Key), ctypes.sizeof(live.Leaf)
        kdt = np.dtype({"names": ["addr", "space"], "formats": ["<u8", "<u4"], "offsets": [0, 8],
                        "itemsize": key_size})
        try:
            for kbuf, vbuf in read_items(lib, live.map_fd, key_size, size):
                k, v = np.frombuffer(kbuf, kdt), value_records(vbuf, size)
                keep = v["ts"] <= cutoff
                add(k["addr"][keep] ^ np.uint64(self.session.plan.addr_key), k["space"][keep].copy(),
                    v["ts"][keep].copy(), v["key"][keep].copy())
        except OSError:  # no batched lookups: the slots alone
            pass
        width = out["key"][0].shape[1]
        return {"addr": np.concatenate(out["addr"]), "space": np.concatenate(out["space"]),
                "ts": np.concatenate(out["ts"]),
                "key": np.concatenate([k.reshape(-1, width) for k in out["key"]])}
