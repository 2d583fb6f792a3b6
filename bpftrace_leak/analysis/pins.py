"""The reference census's accounting: each dentry's count against the
holders listed (tracer/pins.py reads both), what is left unexplained, and
the report's ``census`` section. Pure: numpy arrays and callables in, a
JSON-ready dict out, so unit tests build censuses by hand.

References explained, per dentry (the kinds the report names):

- ``file``: struct files whose f_path is the dentry, each file once however
  many fds, mappings or tasks share it;
- ``cwd``, ``root``: fs_structs whose pwd or root it is, each once;
- ``mount``: mounts whose root it is, a mount point's struct mountpoint
  (one per dentry mounted on), a superblock whose s_root it is;
- ``fs``: in-memory filesystems (tmpfs, ramfs, debugfs, ...) keep one
  reference on each of their files' dentries, their only copy
  (simple_mknod's "extra count - pin the dentry in core");
- ``child``: its children, counted (only for dentries the others leave
  short: walking a directory's children costs one read each).

Mounts are accounted the same way: ``namespace`` (an attached mount's
reference as a namespace root or someone's child), ``child`` (a child mount
holds its parent, before 6.17 only), ``file``, ``cwd``, ``root``. The
kernel keeps mount references this census cannot list (a pid namespace's
proc mount, cgroup v1 roots, acct and swap files), so a mount's
unexplained references are also given against the first census of the
session: ``since_start``, what a leak while traced adds.
"""

import re
from dataclasses import dataclass, field

import numpy as np

from .. import layout
from . import checks as c

__all__ = ["RefCensus", "MountRow", "KINDS", "MOUNT_KINDS", "check_census"]

KINDS = ("file", "cwd", "root", "mount", "fs", "child")
#: filesystems whose positive dentries hold a reference of the filesystem's
#: own (d_make_persistent or simple_mknod's dget): their files live nowhere else
PINNING_FS = frozenset({"tmpfs", "ramfs", "devtmpfs", "hugetlbfs", "mqueue", "debugfs", "tracefs", "configfs",
                        "securityfs", "bpf", "binfmt_misc", "efivarfs", "pstore", "rpc_pipefs", "nfsd", "devpts"})
MOUNT_KINDS = ("namespace", "child", "file", "cwd", "root")
_PIN = layout.ENUMS["pin_kind"]
_READ = layout.ENUMS["pin_state"]["PIN_READ"]
_TOP = 100  # unexplained dentries, stacks and parents listed


def _natural(name: str) -> list:
    """Sort key: f2 before f10."""
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name)]


@dataclass(frozen=True)
class MountRow:
    """One mount as read: its struct mount, what it holds, its count."""

    mount: int
    root: int
    sb: int
    s_root: int
    parent: int
    mountpoint: int
    attached: bool
    count: int


def _per_addr(addrs: np.ndarray, refs: np.ndarray) -> np.ndarray:
    """How many times each of ``addrs`` (sorted unique) appears in ``refs``."""
    out = np.zeros(len(addrs), np.int64)
    if not len(refs) or not len(addrs):
        return out
    values, counts = np.unique(refs, return_counts=True)
    at = np.searchsorted(addrs, values)
    ok = at < len(addrs)
    ok[ok] = addrs[at[ok]] == values[ok]
    np.add.at(out, at[ok], counts[ok])
    return out


def _unique_holders(holders: np.ndarray, kind: int) -> np.ndarray:
    """The records of ``kind``, each holder once (a file shared by fds,
    mappings or threads holds one reference)."""
    rows = holders[holders["kind"] == kind]
    _, first = np.unique(rows["holder"], return_index=True)
    return rows[first]


def _mounts(mounts: list[MountRow], holders: dict, *, child_pins: bool, mnt_of, baseline: dict) -> list[dict]:
    """Each mount's count against its namespace reference, its child mounts
    (``child_pins``: before 6.17), and the files and fs_structs on it
    (``holders``: kind -> unique PIN_HOLDER records, whose mnt is the
    vfsmount a struct mount embeds: ``mnt_of``); unexplained, and gained
    since ``baseline``."""
    children: dict[int, int] = {}
    for m in mounts if child_pins else ():
        if m.parent and m.parent != m.mount:
            children[m.parent] = children.get(m.parent, 0) + 1
    rows = [{"mount": m.mount, "count": m.count, "mountpoint_dentry": m.mountpoint,
             "explained": {"namespace": int(m.attached), "child": children.get(m.mount, 0),
                           "file": 0, "cwd": 0, "root": 0}} for m in mounts]
    vfs = np.array([mnt_of(m.mount) for m in mounts], np.uint64)
    if len(vfs):
        vorder = np.argsort(vfs)
        for kind, held in holders.items():
            for j, n in zip(vorder, _per_addr(vfs[vorder], held["mnt"])):
                rows[j]["explained"][kind] = int(n)
    for r in rows:
        r["unexplained"] = r["count"] - sum(r["explained"].values())
        before = baseline.get(r["mount"])
        r["since_start"] = r["unexplained"] - (before or 0)
    return rows


def _explain(addrs, read, holders: dict, mounts: list[MountRow], children, fs_name):
    """(count, live, explained {kind: per-dentry counts}) of the sorted
    ``addrs``: the references each kind of holder accounts for."""
    ok = read["state"] == _READ
    count = read["count"].astype(np.int64)
    live = ok & (count >= 0)
    explained = {kind: _per_addr(addrs, holders[kind]["dentry"]) for kind in ("file", "cwd", "root")}
    mount_refs = [m.root for m in mounts]
    mount_refs += list({m.mountpoint for m in mounts if m.parent and m.parent != m.mount})
    mount_refs += list({m.s_root for m in mounts if m.s_root})
    explained["mount"] = _per_addr(addrs, np.array(mount_refs, np.uint64))
    pinning = np.array([s for s in np.unique(read["sb"][ok]) if fs_name(int(s)) in PINNING_FS], np.uint64)
    explained["fs"] = (live & (read["inode"] != 0) & np.isin(read["sb"], pinning)).astype(np.int64)
    child = np.zeros(len(addrs), np.int64)
    for i in np.flatnonzero(live & (count > sum(explained.values()))):  # only where the rest falls short
        child[i] = children(int(addrs[i]))
    explained["child"] = child
    return count, live, explained


def _listing(section: dict, addrs, read, count, explained, unexplained, *, path, stack, index) -> None:
    """The unexplained dentries into ``section``: up to _TOP of them, and
    grouped by allocation stack and by parent folder."""
    bad = np.flatnonzero(unexplained > 0)
    bad = bad[np.argsort(-unexplained[bad], kind="stable")]
    by_stack: dict[tuple, dict] = {}
    by_parent: dict[int, dict] = {}
    listed = []
    for i in bad:
        name = read["name"][i].decode(errors="replace")
        frames = stack(int(index[i]))
        g = by_stack.setdefault(tuple(frames), {"stack": frames, "dentries": 0, "refs": 0, "names": []})
        g["dentries"] += 1
        g["refs"] += int(unexplained[i])
        if len(g["names"]) < 50:
            g["names"].append(name)
        p = by_parent.setdefault(int(read["parent"][i]), {"parent": None, "dentries": 0, "refs": 0})
        p["dentries"] += 1
        p["refs"] += int(unexplained[i])
        if len(listed) < _TOP:
            listed.append({"name": name, "path": path(int(addrs[i])), "count": int(count[i]),
                           "explained": {k: int(v[i]) for k, v in explained.items()},
                           "unexplained": int(unexplained[i]), "stack": frames})
    parents = sorted(by_parent.items(), key=lambda kv: -kv[1]["refs"])[:_TOP]
    for addr, p in parents:
        p["parent"] = path(addr) if addr else "?"
    for g in by_stack.values():
        g["names"].sort(key=_natural)
    section["unexplained"] = listed
    section["by_stack"] = sorted(by_stack.values(), key=lambda g: -g["refs"])[:_TOP]
    section["by_parent"] = [p for _a, p in parents]


@dataclass
class RefCensus:
    """A reference census: the report's ``census`` section, and the rows behind it."""

    section: dict = field(default_factory=dict)
    mounts_unexplained: dict = field(default_factory=dict)  # struct mount -> unexplained, for the next baseline

    @classmethod
    def build(cls, addrs, read, holders, mounts: list[MountRow], *, children, path, stack,
              mnt_of=lambda m: m, child_mounts_pin: bool = True, baseline: dict | None = None,
              fs_name=lambda sb: None) -> "RefCensus":
        """``addrs`` (u64) and ``read`` (tracer/pins.py PIN_DENTRY records,
        one per address); ``holders`` (PIN_HOLDER records); ``mounts``;
        callables: ``children(addr)`` counts a dentry's children,
        ``path(addr)`` names it, ``stack(i)`` gives the allocation stack of
        ``addrs[i]``; ``mnt_of(mount)`` the vfsmount address holders use
        for a struct mount; ``child_mounts_pin``: the kernel's child mounts
        hold their parent; ``baseline``: {struct mount: unexplained} of the
        session's first census; ``fs_name(sb)`` a superblock's filesystem type."""
        index = np.argsort(addrs, kind="stable")  # position in the caller's arrays, for stack()
        addrs, read = addrs[index], read[index]
        held = {"file": _unique_holders(holders, _PIN["PIN_FILE"]), "cwd": _unique_holders(holders, _PIN["PIN_PWD"]),
                "root": _unique_holders(holders, _PIN["PIN_ROOT"])}
        count, live, explained = _explain(addrs, read, held, mounts, children, fs_name)
        left = np.where(live, count - sum(explained.values()), 0)
        unexplained = np.maximum(left, 0)
        ok = read["state"] == _READ
        pinned = live & (count > 0)
        section = {
            "dentries": int(len(addrs)),
            "gone": int((~ok).sum()),
            "dead": int((ok & (count < 0)).sum()),
            "cached": int((live & (count == 0)).sum()),
            "pinned": int(pinned.sum()),
            "pinned_explained": int((pinned & (unexplained == 0)).sum()),
            "pinned_unexplained": int((pinned & (unexplained > 0)).sum()),
            "references": {"total": int(count[live].sum()), **{k: int(v[live].sum()) for k, v in explained.items()},
                           "unexplained": int(unexplained.sum()), "over_explained": int(np.maximum(-left, 0).sum())},
            "pinned_by": {k: int((pinned & (v > 0)).sum()) for k, v in explained.items()},
        }
        _listing(section, addrs, read, count, explained, unexplained, path=path, stack=stack, index=index)
        baseline = baseline or {}
        rows = _mounts(mounts, held, child_pins=child_mounts_pin, mnt_of=mnt_of, baseline=baseline)
        section["mounts_read"] = len(rows)
        section["mounts"] = [
            {"mountpoint": path(r["mountpoint_dentry"]) if r["mountpoint_dentry"] else "?",
             "count": r["count"], "explained": r["explained"], "unexplained": r["unexplained"],
             "since_start": r["since_start"], "new": r["mount"] not in baseline}
            for r in sorted(rows, key=lambda r: -r["since_start"]) if r["since_start"] > 0][:_TOP]
        return cls(section, {r["mount"]: r["unexplained"] for r in rows})


# -- checked when read back from a capture (schema.py) ---------------------------------

def check_census(doc, where: str) -> dict:
    """Check a ``census`` section (schema.py's check_report asks)."""
    counts = [(k, c.count) for k in ("dentries", "gone", "dead", "cached", "pinned", "pinned_explained",
                                      "pinned_unexplained", "mounts_read")]
    c.fields(doc, where, counts, [("references", c.kinds), ("pinned_by", c.kinds)])
    for i, d in enumerate(c.listed(doc.get("unexplained") or [], f"{where}.unexplained", 1000)):
        c.fields(d, f"{where}.unexplained[{i}]", [("name", c.text), ("path", c.text), ("count", c.count),
                                                    ("explained", c.kinds), ("unexplained", c.count),
                                                    ("stack", c.stack)])
    for i, g in enumerate(c.listed(doc.get("by_stack") or [], f"{where}.by_stack", 1000)):
        c.fields(g, f"{where}.by_stack[{i}]", [("stack", c.stack), ("dentries", c.count), ("refs", c.count),
                                                 ("names", c.texts)])
    for i, p in enumerate(c.listed(doc.get("by_parent") or [], f"{where}.by_parent", 1000)):
        c.fields(p, f"{where}.by_parent[{i}]", [("parent", c.text), ("dentries", c.count), ("refs", c.count)])
    for i, m in enumerate(c.listed(doc.get("mounts") or [], f"{where}.mounts", 100_000)):
        c.fields(m, f"{where}.mounts[{i}]", [("mountpoint", c.text), ("count", c.number),
                                               ("explained", c.kinds), ("unexplained", c.number),
                                               ("since_start", c.number)])
    return doc
