"""Why an outstanding object is alive: the holder scan's verdicts (pure logic).

The scan (tracer/scan.py) gives, for each outstanding object (a target), the
words of kernel memory that point into it: each from the memory of another
target (an edge) or from memory no target owns (the kernel's own: a root),
and whether that word lies in a slab slot the allocator holds free (stale).
As kmemleak colours its objects, an object is

- ``held`` when a root points at it, or a held object does (transitively);
- ``orphan_cycle`` when only other outstanding objects point at it, none of
  them held: a leaked structure, its members pointing at each other;
- ``orphaned`` when nothing points at it: its last pointer was dropped;
- ``unknown`` when it cannot be told (freed or reused while scanned, memory
  that could not be read).

A self-pointer (an empty list_head inside the object) keeps nothing alive,
nor does a stale word. An object is reported orphaned only when two scans,
seconds apart, agree (confirm()): a pointer the kernel moved while the first
one read, or one in a CPU's registers, is found by the second.
"""

import numpy as np

__all__ = ["HELD", "ORPHANED", "CYCLE", "UNKNOWN", "VERDICTS", "verdicts", "confirm", "summarize", "group_verdicts",
           "describe"]

HELD, ORPHANED, CYCLE, UNKNOWN = 0, 1, 2, 3
#: the report's names of the verdicts, in code order
VERDICTS = ("held", "orphaned", "orphan_cycle", "unknown")


def verdicts(n: int, target: np.ndarray, source: np.ndarray, stale: np.ndarray,
             unknown: np.ndarray | None = None) -> np.ndarray:
    """Each of ``n`` targets' verdict (a code of VERDICTS). Hit ``i``: a word
    pointing into target ``target[i]`` from target ``source[i]``'s memory, or
    from the kernel's own (``source`` -1); ``stale[i]``: in a free slot."""
    live = ~np.asarray(stale, bool)
    t, s = np.asarray(target, np.int64)[live], np.asarray(source, np.int64)[live]
    keep = s != t
    t, s = t[keep], s[keep]
    held = np.zeros(n, bool)
    held[t[s < 0]] = True
    edge = s >= 0
    es, et = s[edge], t[edge]
    order = np.argsort(es, kind="stable")
    es, et = es[order], et[order]
    first = np.searchsorted(es, np.arange(n + 1))
    todo = np.flatnonzero(held).tolist()
    while todo:  # what held objects point at is held
        v = todo.pop()
        for u in et[first[v]:first[v + 1]].tolist():
            if not held[u]:
                held[u] = True
                todo.append(u)
    pointed = np.zeros(n, bool)
    pointed[et] = True
    out = np.full(n, ORPHANED, np.int8)
    out[pointed] = CYCLE
    out[held] = HELD
    if unknown is not None:
        out[np.asarray(unknown, bool)] = UNKNOWN
    return out


def confirm(first: np.ndarray, rescanned: np.ndarray, second: np.ndarray) -> np.ndarray:
    """The verdicts after a second scan of the targets at ``rescanned`` (the
    first's orphans and cycles), whose verdicts there are ``second``: an
    orphan stays one only if both scans say so; held in either is held."""
    out = first.copy()
    out[rescanned] = second
    return out


#: what the objects of well-known allocation sites are, to name them as holders
_SITES = {"alloc_fdtable": "fd tables", "sk_prot_alloc": "sockets", "alloc_empty_file": "open files",
          "__d_alloc": "dentries", "sock_alloc_inode": "socket inodes", "inet_twsk_alloc": "TIME_WAIT sockets",
          "alloc_inode": "inodes", "mem_cgroup_css_alloc": "memory cgroups", "alloc_buffer_head": "buffer heads",
          "dup_task_struct": "tasks", "copy_process": "tasks", "mm_alloc": "mms", "dup_mm": "mms"}
#: holders that say least, shown after the others
_VAGUE = ("page",)


def describe(kind: str, cache: str | None, stack: list[str]) -> str:
    """A report group's objects as a holder: ``socket inodes (sock_inode_cache,
    sock_alloc_inode+0x1e)``."""
    top = stack[0] if stack else None
    what = next((_SITES[f.split("+", 1)[0]] for f in stack[:4] if f.split("+", 1)[0] in _SITES), None)
    where = ", ".join(x for x in (cache or kind, top) if x)
    return f"{what} ({where})" if what else f"{cache or kind} objects" + (f" ({top})" if top else "")


def summarize(verdict: np.ndarray, group: np.ndarray, groups: int, pair_target: np.ndarray,
              pair_label: np.ndarray, labels: list[tuple[str, str]], top: int = 5,
              other: np.ndarray | None = None) -> list[dict]:
    """Per group (``group[t]``: target t's group, of ``groups``): objects per
    verdict and the ``top`` holders of its held objects, each {holder, kind,
    objects}. ``pair_target``/``pair_label``: which direct holders (labels:
    (kind, text)) point at which target, one pair each. ``other``: a second
    method's verdicts (/proc/kcore's): ``scan_differ`` counts the objects
    whose verdicts differ."""
    out = [{name: 0 for name in VERDICTS} | {"holders": []} for _ in range(groups)]
    if other is not None:
        differ = np.bincount(np.asarray(group, np.int64)[np.asarray(other) != np.asarray(verdict)],
                             minlength=groups)
        for g in range(groups):
            out[g]["scan_differ"] = int(differ[g])
    codes = np.asarray(verdict, np.int64) * groups + np.asarray(group, np.int64)
    counts = np.bincount(codes, minlength=len(VERDICTS) * groups)
    for v, name in enumerate(VERDICTS):
        for g in range(groups):
            out[g][name] = int(counts[v * groups + g])
    pt, pl = np.asarray(pair_target, np.int64), np.asarray(pair_label, np.int64)
    mine = verdict[pt] == HELD if len(pt) else np.zeros(0, bool)
    pt, pl = pt[mine], pl[mine]
    if len(pt):
        combo = np.unique(np.asarray(group, np.int64)[pt] * len(labels) + pl, return_counts=True)
        per: dict[int, list] = {}
        for code, n in zip(*combo):
            g, label = divmod(int(code), len(labels))
            per.setdefault(g, []).append((int(n), label))
        for g, rows in per.items():
            rows.sort(key=lambda r: (labels[r[1]][0] in _VAGUE, -r[0], labels[r[1]][1]))
            out[g]["holders"] = [{"holder": labels[label][1], "kind": labels[label][0], "objects": n}
                                 for n, label in rows[:top]]
    return out


def group_verdicts(keys: dict, by_key: dict, top: int = 5) -> dict:
    """A report group's verdict fields from its records' (summarize()'s, by
    record group bytes): ``keys`` {group bytes: (objects, records)}; a
    sampled key's counts are weighed as its objects are. Objects the scan
    did not look at (user pages; freed between the report's read and the
    scan's: DAMON's regions churn by the thousand) are unknown."""
    out = {name: 0.0 for name in VERDICTS}
    holders: dict[tuple, float] = {}
    for key, (objects, records) in keys.items():
        s = by_key.get(key)
        if s is None:
            out["unknown"] += objects
            continue
        weight = objects / max(records, 1)
        for name in VERDICTS:
            out[name] += s[name] * weight
        out["unknown"] += max(0, records - sum(s[name] for name in VERDICTS)) * weight
        if "scan_differ" in s:
            out["scan_differ"] = out.get("scan_differ", 0) + s["scan_differ"] * weight
        for h in s["holders"]:
            k = (h["holder"], h["kind"])
            holders[k] = holders.get(k, 0) + h["objects"] * weight
    result = {name: int(round(v)) for name, v in out.items()}
    result["holders"] = [{"holder": h, "kind": k, "objects": int(round(n))}
                         for (h, k), n in sorted(holders.items(), key=lambda kv: (kv[0][1] in _VAGUE, -kv[1]))[:top]]
    return result
