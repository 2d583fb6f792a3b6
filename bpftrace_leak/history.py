"""Groups over time: growth rates from a capture's snapshots, and diffs.

A group is the same group in two snapshots when its (kind, cache, stack)
match. Growth is the least-squares slope of its objects and bytes over the
snapshots' times, per hour; a group absent from a snapshot counts as zero
there (it had nothing outstanding old enough).
"""

__all__ = ["group_key", "slope", "growth", "slab_growth", "diff", "headline"]


def group_key(g: dict) -> tuple:
    return (g["kind"], g["cache"], tuple(g["stack"]))


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points; 0.0 with fewer than two distinct x."""
    n = len(points)
    if n < 2:
        return 0.0
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    sxx = sum((x - mx) ** 2 for x, _ in points)
    if sxx == 0:
        return 0.0
    return sum((x - mx) * (y - my) for x, y in points) / sxx


def growth(snapshots: list[dict]) -> dict[tuple, dict]:
    """{group key: {"objects_per_h", "bytes_per_h", "series": [(t_s, objects, bytes)]}}."""
    keys = {}
    for snap in snapshots:
        for g in snap["report"]["groups"]:
            keys.setdefault(group_key(g), None)
    out = {}
    for key in keys:
        series = []
        for snap in snapshots:
            g = next((g for g in snap["report"]["groups"] if group_key(g) == key), None)
            series.append((snap["t_s"], g["objects"] if g else 0, g["bytes"] if g else 0))
        out[key] = {
            "objects_per_h": slope([(t, o) for t, o, _ in series]) * 3600,
            "bytes_per_h": slope([(t, b) for t, _, b in series]) * 3600,
            "series": series,
        }
    return out


def slab_growth(snapshots: list[dict]) -> dict[str, dict]:
    """Per slab cache (from /proc/slabinfo): bytes per hour and the series."""
    names = set()
    for snap in snapshots:
        names |= set(snap.get("slab", {}).get("caches", {}))
    out = {}
    for name in names:
        series = []
        for snap in snapshots:
            c = snap.get("slab", {}).get("caches", {}).get(name)
            series.append((snap["t_s"], c["objects"] * c["objsize"] if c else 0))
        out[name] = {"bytes_per_h": slope(series) * 3600, "series": series}
    return out


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


def headline(report: dict) -> str | None:
    """``sock_inode_cache +4.1 MiB/h from sock_alloc_inode+0x1e <- ...`` for the fastest-growing group."""
    groups = [g for g in report["groups"] if g.get("bytes_per_h", 0) > 0]
    if not groups:
        return None
    g = max(groups, key=lambda g: g["bytes_per_h"])
    from .reporter import human_bytes
    what = g["cache"] or g["kind"]
    return (f"{what} +{human_bytes(int(g['bytes_per_h']))}/h ({g['objects_per_h']:+,.0f} objects/h) from "
            f"{' <- '.join(g['stack'][:3])}")
