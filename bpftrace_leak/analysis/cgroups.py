"""Which cgroups a report group's objects were allocated in (pure logic).

A leak is one group whatever number of containers it runs in: groups are
keyed by kind, cache and stack, and each lists its cgroups as it lists its
PIDs (``cgroups``: path, container, removed, objects, bytes; the most bytes
first), so a service leaking in 200 containers is one group of its true size,
its 200 containers inside. ``--split cgroup`` keys them by cgroup too, one
group per cgroup (the group then has ``cgroup``, ``container`` and
``cgroup_removed`` of its own, as before). Offline, split() does the same to a
capture's groups.
"""

from ..kernel.cgroups import container
from .symbols import base_name

__all__ = ["cgroup_fields", "split", "span", "MEMCG_OWN", "SHOWN"]

#: a memory cgroup's own structures: the kernel keeps them while the cgroup dies
MEMCG_OWN = frozenset({"mem_cgroup_css_alloc", "mem_cgroup_alloc"})
#: cgroups a group lists in JSON (``cgroup_count`` has them all)
SHOWN = 50


def _row(cgroup_name, cid: int, objects: int, nbytes: int) -> dict:
    path, removed = cgroup_name(cid)
    return {"path": (f"(removed) {path}" if removed else path) if path else None, "removed": bool(removed),
            "container": container(path) if path else None, "objects": objects, "bytes": nbytes}


def cgroup_fields(cgroups: dict, stack: list[str], cgroup_name, split_by: bool) -> dict:
    """A report group's cgroup fields from its {kernfs id: [objects, bytes]}:
    ``cgroups`` (the top SHOWN) and ``cgroup_count``; with ``split_by``, the
    group's one cgroup as ``cgroup``/``container``/``cgroup_removed``;
    ``cgroup_own`` when a memory cgroup's own struct mem_cgroup is what is
    held, its cgroups all removed (dying)."""
    if cgroup_name is None:
        return {}
    rows = sorted((_row(cgroup_name, cid, n, b) for cid, (n, b) in cgroups.items() if cid),
                  key=lambda r: (-r["bytes"], r["path"] or ""))
    out = {"cgroups": rows[:SHOWN], "cgroup_count": len(rows)}
    if split_by:
        one = rows[0] if rows else {"path": None, "removed": False, "container": None}
        out.update(cgroup=one["path"], cgroup_removed=one["removed"], container=one["container"])
    if rows and all(r["removed"] for r in rows) and any(base_name(f) in MEMCG_OWN for f in stack):
        out["cgroup_own"] = True
    return out


def split(groups: list[dict]) -> list[dict]:
    """Groups split by cgroup (``--split cgroup`` of a capture made without
    it): one per listed cgroup, with that cgroup's objects and bytes."""
    out = []
    for g in groups:
        rows = g.get("cgroups")
        if not rows or g.get("cgroup") is not None:
            out.append(g)
            continue
        for r in rows:
            out.append(dict(g, objects=r["objects"], bytes=r["bytes"], cgroups=[r], cgroup_count=1,
                            cgroup=r["path"], cgroup_removed=r["removed"], container=r["container"]))
    return out


def span(groups: list[dict]) -> dict:
    """How many cgroups and containers the groups span (the header says it)."""
    paths, containers = set(), set()
    for g in groups:
        for r in g.get("cgroups") or ([{"path": g.get("cgroup"), "container": g.get("container")}]
                                      if g.get("cgroup") else []):
            if r.get("path"):
                paths.add(r["path"])
            if r.get("container"):
                containers.add(r["container"])
    return {"cgroups": len(paths), "containers": len(containers)}
