"""Groups over time: growth rates from a capture's snapshots, and diffs.

A group is the same group in two snapshots when its (kind, cache, stack,
cgroup) match. Growth is the least-squares slope of its objects and bytes over the
snapshots' times, per hour; a group absent from a snapshot counts as zero
there (it had nothing outstanding old enough). Slopes are computed for all
groups at once with numpy: 100 snapshots of 5,000 groups take milliseconds
(a loop per group and snapshot made ``report`` quadratic in the groups).
"""

from collections import deque

import numpy as np

__all__ = ["group_key", "point", "slope", "growth", "Trends", "series_of", "slab_growth", "slab_items", "cache_growth",
           "diff", "headline", "LiveGrowth"]


def group_key(g: dict) -> tuple:
    return (g["kind"], g["cache"], tuple(g["stack"]), g.get("cgroup"))


def point(groups: list[dict]) -> dict[tuple, tuple[int, int]]:
    """One snapshot's groups as growth() reads them: {key: (objects, bytes)}
    (capture.py builds the same while it checks each group)."""
    return {group_key(g): (g["objects"], g["bytes"]) for g in groups}


def _slopes(times, values) -> np.ndarray:
    """Least-squares slope of each row of ``values`` (rows x len(times)) against ``times``."""
    t = np.asarray(times, dtype=float)
    y = np.asarray(values, dtype=float).reshape(-1, len(t))
    if len(t) < 2:
        return np.zeros(len(y))
    dt = t - t.mean()
    sxx = float((dt * dt).sum())
    if sxx == 0:
        return np.zeros(len(y))
    return ((y - y.mean(axis=1, keepdims=True)) * dt).sum(axis=1) / sxx


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0.0 with fewer than two distinct x."""
    if not points:
        return 0.0
    return float(_slopes([x for x, _ in points], [[y for _, y in points]])[0])


def growth(series: list[tuple[float, dict]], keys=None) -> dict[tuple, dict]:
    """{group key: {"objects_per_h", "bytes_per_h"}}.

    ``series`` is per snapshot (t_s, {key: (objects, bytes)}); ``keys``
    limits the result (default: every group seen).
    """
    trends = Trends()
    for t, groups in series:
        trends.add(t, ((key, o, b) for key, (o, b) in groups.items()))
    return trends.growth(keys)


class Trends:
    """Least-squares growth of many series (groups, or slab caches) over
    snapshots, kept as running sums: memory grows with the keys, not with
    keys x snapshots. A dense keys x snapshots matrix was the old way, and a
    capture of 100,000 empty snapshots and one of 20,000 groups asked numpy
    for 2 x 14.9 GiB.

    A key absent from a snapshot counts as zero there. With ``series`` the
    values themselves are kept too, for charts, thinned to at most
    ``max_points`` (every 2nd, 4th, ... snapshot once there are more).
    """

    def __init__(self, series: bool = False, max_points: int = 4_000_000):
        self.index: dict = {}
        self.keys: list = []
        self.times: list[float] = []
        self._t0 = None
        self._st = self._stt = 0.0
        self._sy = np.zeros((64, 2))  # per key: sum of (objects, bytes)
        self._sty = np.zeros((64, 2))  # per key: sum of t * (objects, bytes)
        self._series, self._max = series, max_points
        self._stride, self._points = 1, 0
        self._kept: list[tuple] = []  # (snapshot number, t, key indices, objects, bytes)

    @property
    def snapshots(self) -> int:
        return len(self.times)

    def slot(self, key) -> int:
        """The row of ``key``, a new one for a key not seen before."""
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.keys)
            self.keys.append(key)
            if i >= len(self._sy):
                self._sy = np.concatenate([self._sy, np.zeros_like(self._sy)])
                self._sty = np.concatenate([self._sty, np.zeros_like(self._sty)])
        return i

    def add(self, t_s: float, items) -> None:
        """A snapshot at ``t_s``: ``items`` yields (key, objects, bytes)."""
        idx, objects, nbytes = [], [], []
        for key, o, b in items:
            idx.append(self.slot(key))
            objects.append(o)
            nbytes.append(b)
        self.add_indexed(t_s, idx, objects, nbytes)

    def add_indexed(self, t_s: float, idx, objects, nbytes) -> None:
        """A snapshot at ``t_s`` of the keys at ``idx`` (slot() numbers, a key
        at most once) with those ``objects`` and ``bytes``."""
        if self._t0 is None:
            self._t0 = t_s
        u = float(t_s) - float(self._t0)
        self.times.append(t_s)
        self._st += u
        self._stt += u * u
        if len(idx):
            i = np.asarray(idx, dtype=np.int64)
            v = np.empty((len(i), 2))
            v[:, 0], v[:, 1] = objects, nbytes
            n = len(self.keys)
            if len(i) * 8 >= n:  # a dense snapshot: one pass over every key
                for col in (0, 1):
                    added = np.bincount(i, weights=v[:, col], minlength=n)
                    self._sy[:n, col] += added
                    self._sty[:n, col] += u * added
            else:  # a few of many keys: touch those alone
                np.add.at(self._sy, i, v)
                np.add.at(self._sty, i, u * v)
        if self._series:
            self._keep(len(self.times) - 1, t_s, idx, objects, nbytes)

    def _keep(self, number: int, t_s: float, idx, objects, nbytes) -> None:
        if number % self._stride:
            return
        self._kept.append((number, t_s, np.asarray(idx, dtype=np.int32), np.asarray(objects, dtype=np.int64),
                           np.asarray(nbytes, dtype=np.int64)))
        self._points += len(idx) + 1
        while self._points > self._max and self._stride < 2**30:
            self._stride *= 2
            self._kept = [k for k in self._kept if k[0] % self._stride == 0]
            self._points = sum(len(k[2]) + 1 for k in self._kept)

    def slopes(self) -> np.ndarray:
        """Per key (rows in key order): (objects, bytes) per second."""
        n = len(self.times)
        sxx = n * self._stt - self._st * self._st
        rows = self._sy[:len(self.keys)]
        if n < 2 or sxx <= 0:
            return np.zeros_like(rows)
        return (n * self._sty[:len(self.keys)] - self._st * rows) / sxx

    def growth(self, keys=None) -> dict[tuple, dict]:
        """{key: {"objects_per_h", "bytes_per_h"}} of ``keys`` (default: all;
        one never seen grows by 0)."""
        per_s = self.slopes() * 3600
        out = {}
        for key in (self.keys if keys is None else keys):
            i = self.index.get(key)
            o, b = (float(per_s[i, 0]), float(per_s[i, 1])) if i is not None else (0.0, 0.0)
            out[key] = {"objects_per_h": o, "bytes_per_h": b}
        return out

    def series(self, keys) -> dict[tuple, list[tuple[float, int, int]]]:
        """{key: [(t_s, objects, bytes)]} over the snapshots kept (``series``
        only), 0 where a key was absent."""
        want = {self.index[k]: k for k in keys if k in self.index}
        out = {k: [] for k in keys}
        for _n, t, idx, objects, nbytes in self._kept:
            found = {}
            for j in np.flatnonzero(np.isin(idx, list(want))) if want else ():
                found[int(idx[j])] = (int(objects[j]), int(nbytes[j]))
            for i, k in want.items():
                out[k].append((t, *found.get(i, (0, 0))))
        return out


def series_of(series: list[tuple[float, dict]], key: tuple) -> list[tuple[float, int, int]]:
    """[(t_s, objects, bytes)] of one group over a capture's snapshots (0 where absent)."""
    return [(t, *groups.get(key, (0, 0))) for t, groups in series]


def slab_growth(slab: list[tuple[float, dict]]) -> dict[str, dict]:
    """Per slab cache (from /proc/slabinfo): bytes per hour and the series
    [(t_s, bytes)], from a list of (t_s, slab facts)."""
    trends = Trends(series=True)
    for t, facts in slab:
        trends.add(t, slab_items(facts))
    return cache_growth(trends)


def slab_items(facts: dict):
    """A snapshot's slab facts as Trends items: (cache, objects, bytes)."""
    for name, c in (facts.get("caches") or {}).items():
        yield name, c["objects"], c["objects"] * c["objsize"]


def cache_growth(trends: "Trends", top: int | None = None) -> dict[str, dict]:
    """slab_growth()'s result from the Trends of the caches (kept with
    series): the ``top`` fastest-growing ones (default: all)."""
    rates = trends.growth()
    names = sorted(trends.keys, key=lambda n: -rates[n]["bytes_per_h"])[:top]
    series = trends.series(names)
    return {name: {"bytes_per_h": rates[name]["bytes_per_h"], "series": [(t, b) for t, _o, b in series[name]]}
            for name in names}


def diff(old: dict, new: dict) -> list[dict]:
    """Groups of report ``new`` that grew since report ``old``, largest growth in bytes first."""
    before = {group_key(g): g for g in old["groups"]}
    grown = []
    for g in new["groups"]:
        b = before.get(group_key(g))
        d_obj = g["objects"] - (b["objects"] if b else 0)
        d_bytes = g["bytes"] - (b["bytes"] if b else 0)
        if d_obj > 0 or d_bytes > 0:
            grown.append(dict(g, delta_objects=d_obj, delta_bytes=d_bytes, new=b is None))
    grown.sort(key=lambda g: -g["delta_bytes"])
    return grown


class LiveGrowth:
    """A live session's recent snapshots, to rank its reports by growth.

    Long-lived objects that do not grow (a kernel thread's working set, the
    dcache) outweigh a slow leak in bytes; once a session has two snapshots
    or more, groups are ranked by their growth per hour, then by bytes, and
    the report says so (``ranked_by``, ``snapshots``). Growth is the recent
    one, over the last ``keep`` snapshots: a burst of allocations that then
    stays (a cache filled once) leaves the window and stops counting as growth.
    """

    def __init__(self, keep: int = 5):
        self.series: deque = deque(maxlen=keep)

    def add(self, t_s: float, report: dict) -> None:
        self.series.append((t_s, point(report["groups"])))

    def rank(self, report: dict) -> dict:
        """``report`` with growth per group and ranked by it, when known."""
        if len(self.series) < 2:
            report["ranked_by"] = "bytes"
            return report
        rates = growth(list(self.series), [group_key(g) for g in report["groups"]])
        groups = [dict(g, objects_per_h=round(rates[group_key(g)]["objects_per_h"], 1),
                       bytes_per_h=round(rates[group_key(g)]["bytes_per_h"], 1)) for g in report["groups"]]
        # orphans outrank what something holds (analysis/holders.py), then growth
        groups.sort(key=lambda g: (not (g.get("orphaned") or g.get("orphan_cycle")), -g["bytes_per_h"], -g["bytes"]))
        return dict(report, groups=groups, ranked_by="growth", snapshots=len(self.series),
                    growth_window_s=round(self.series[-1][0] - self.series[0][0], 1))


def headline(report: dict) -> str | None:
    """``sock_inode_cache +4.1 MiB/h from sock_alloc_inode+0x1e <- ...`` for the fastest-growing group."""
    groups = [g for g in report["groups"] if g.get("bytes_per_h", 0) > 0]
    if not groups:
        return None
    g = max(groups, key=lambda g: g["bytes_per_h"])
    from ..text import human_bytes
    what = g["cache"] or g["kind"]
    unverified = (f" [unverified: the kernel counts fewer live objects in {what}: up to "
                  f"{g['unverified_objects']:,} are phantoms]") if g.get("unverified_objects") else ""
    return (f"{what} +{human_bytes(int(g['bytes_per_h']))}/h ({g['objects_per_h']:+,.0f} objects/h) from "
            f"{' <- '.join(g['stack'][:3])}{unverified}")
