"""The documents kleaktrace writes and reads back, and the checks a document
read from a file passes before any renderer sees it.

- ``kleaktrace.report/1``: one report (report.py builds it);
- ``kleaktrace.capture/1``: a header line, then snapshots each holding a
  report (capture.py writes and reads it).

A capture is input like any other: someone may hand one over, edited or
made up. Every field a renderer reads is checked here for its JSON type and
its bounds (counts are non-negative integers below 2**63, numbers finite,
strings and lists of bounded length, a stack at most MAX_FRAMES frames), so
a bad file is a one-line error naming the field, never a traceback, a hang
or an injection. Unknown fields are allowed (fields may be added to the
format, never renamed) and are never rendered.

Checking is fast enough for 100 snapshots of 5,000 groups (bench/report_offline.py):
the snapshots before the last are only read for growth, so only the fields
growth reads are checked there (check_group_core), the last one wholly.
"""

from . import checks as c
from .checks import MAX_FRAMES, Invalid, finite_float, reject_constant

__all__ = ["REPORT_SCHEMA", "CAPTURE_SCHEMA", "MAX_FRAMES", "Invalid", "check_header", "check_snapshot",
           "check_report", "check_group_core", "check_groups_core", "finite_float", "reject_constant"]

REPORT_SCHEMA = "kleaktrace.report/1"
CAPTURE_SCHEMA = "kleaktrace.capture/1"

def check_group_core(g, i: int, known: dict | None = None, prefix: str = "groups") -> tuple:
    """The fields growth reads of group ``i``; returns its key (kind, cache,
    stack tuple, cgroup): history.group_key's.

    Errors name it ``prefix[i]`` (made only then: this runs for every group
    of every snapshot). ``known``: {key: key} of groups checked before; a
    capture repeats its groups in every snapshot, so a known group's stack is
    not checked again and the key returned is the first one (one key object
    per group for a whole capture, not one per snapshot).
    """
    if type(g) is dict:
        kind, cache, stack, n, b = g.get("kind"), g.get("cache"), g.get("stack"), g.get("objects"), g.get("bytes")
        cgroup = g.get("cgroup")
        if (type(kind) is str and len(kind) <= 256 and (cache is None or type(cache) is str and len(cache) <= 256)
                and type(stack) is list and type(n) is int and type(b) is int
                and 0 <= n < c.MAX_COUNT and 0 <= b < c.MAX_COUNT
                and (cgroup is None or type(cgroup) is str and len(cgroup) <= c.MAX_TEXT)):
            key = (kind, cache, tuple(stack), cgroup)
            if known is not None:
                try:
                    first = known.get(key)
                except TypeError:  # a frame that is a list or an object: unhashable
                    c.stack(stack, f"{prefix}[{i}].stack")
                    raise
                if first is not None:
                    return first
                c.stack(stack, f"{prefix}[{i}].stack")
                known[key] = key
                return key
            c.stack(stack, f"{prefix}[{i}].stack")
            return key
    where = f"{prefix}[{i}]"
    c.obj(g, where)
    c.text(g.get("kind"), f"{where}.kind", 256)
    if g.get("cache") is not None:
        c.text(g["cache"], f"{where}.cache", 256)
    c.listed(g.get("stack"), f"{where}.stack")
    c.opt_text(g.get("cgroup"), f"{where}.cgroup")
    c.count(g.get("objects"), f"{where}.objects")
    c.count(g.get("bytes"), f"{where}.bytes")
    raise AssertionError("unreachable: the fast path refused what the checks accept")


def check_groups_core(groups: list, index: dict, new, prefix: str = "groups") -> tuple[list, list, list]:
    """check_group_core() over a snapshot's groups, fast: (rows, objects,
    bytes), a group's row being ``index[its key]`` or, for a key not in
    ``index``, ``new(key)`` once the group passed every check.

    A group whose key is known needs no more checks than its counts: equal
    keys hold equal strings (a string equals no other type), and the key's
    first group was checked whole. 20,000 groups x 200 snapshots pass here.
    """
    rows, objects, nbytes = [], [], []
    known = index.get
    for i, g in enumerate(groups):
        if type(g) is dict:
            n, b, stack = g.get("objects"), g.get("bytes"), g.get("stack")
            if type(n) is int and type(b) is int and 0 <= n < c.MAX_COUNT and 0 <= b < c.MAX_COUNT \
                    and type(stack) is list:
                try:
                    row = known((g.get("kind"), g.get("cache"), tuple(stack), g.get("cgroup")))
                except TypeError:  # an unhashable frame: check_group_core names it
                    row = None
                if row is not None:
                    rows.append(row)
                    objects.append(n)
                    nbytes.append(b)
                    continue
        key = check_group_core(g, i, prefix=prefix)
        rows.append(new(key))
        objects.append(g["objects"])
        nbytes.append(g["bytes"])
    return rows, objects, nbytes


_GROUP_REST = [("oldest_ms", c.count), ("pids", c.counts), ("comms", c.texts)]
_GROUP_OPTIONAL = [("cache_aliases", c.texts), ("site_stack_objects", c.count), ("unverified_objects", c.count),
                   ("kernel_active", c.count), ("cgroup", c.opt_text), ("cache_owner", c.opt_text),
                   ("cache_candidates", c.texts), ("container", c.opt_text), ("cgroup_removed", c.flag),
                   ("cache_owner_by", c.text),
                   ("cgroup_own", c.flag), ("objects_per_h", c.number), ("bytes_per_h", c.number),
                   ("held", c.count), ("orphaned", c.count), ("orphan_cycle", c.count), ("unknown", c.count),
                   ("scan_differ", c.count), ("cgroup_count", c.count),
                   ("cgroups", lambda v, w: c.rows(v, w, [("objects", c.count), ("bytes", c.count)], 1000,
                                                  [("path", c.text), ("container", c.text), ("removed", c.flag)])),
                   ("holders", lambda v, w: c.rows(v, w, [("holder", c.text), ("kind", c.text), ("objects", c.count)], 100))]
#: fields a renderer reads together: the first one present needs the others
_GROUP_TOGETHER = [("unverified_objects", "kernel_active"), ("objects_per_h", "bytes_per_h"),
                   ("bytes_per_h", "objects_per_h")] + \
    [(a, b) for a in ("held", "orphaned", "orphan_cycle", "unknown") for b in ("held", "orphaned", "orphan_cycle", "unknown")
     if a != b]


def _scan(v, where):
    """The report's ``scan`` section: what the holder scan read, or why it did not run."""
    c.obj(v, where)
    if v.get("skipped") is not None:
        return c.fields(v, where, [("skipped", c.text)], [("seconds", c.number)])
    numbers = [(k, c.count) for k in ("targets", "pages", "bytes", "unreadable_pages", "passes", "stale_words",
                                     "held", "orphaned", "orphan_cycle", "unknown")]
    c.fields(v, where, numbers + [("method", c.text), ("seconds", c.number)], [("differ", c.count), ("kcore", c.kinds)])
    return v
_REF = [("object", c.text), ("objects", c.count), ("net", c.count), ("why", c.text), ("names", c.texts),
        ("oldest_ms", c.count), ("pids", c.counts), ("comms", c.texts), ("stack", c.stack), ("put_stack", c.stack)]
_SOCKET = [("pid", c.count), ("family", c.text), ("state", c.text), ("count", c.count)]
_EXAMPLE = [("inode", c.count)]
_EXAMPLE_OPTIONAL = [("peer", c.count), ("sport", c.count), ("dport", c.count)]


def _socket(s, where):
    c.fields(s, where, _SOCKET)
    for i, e in enumerate(c.listed(s.get("examples", []), f"{where}.examples", 100)):
        c.fields(e, f"{where}.examples[{i}]", _EXAMPLE, _EXAMPLE_OPTIONAL)
        c.together(e, f"{where}.examples[{i}]", [("sport", "dport"), ("dport", "sport")])
    return s


def _totals(t, where):
    c.obj(t, where)
    for name in ("objects", "bytes"):
        if name not in t:
            raise Invalid(f"{where}: no {name!r}")
    for name, v in t.items():
        c.count(v, f"{where}.{name}")
    return t


def _ranked_by(v, where):
    if v not in ("bytes", "growth"):
        raise Invalid(f"{where}: not 'bytes' or 'growth'")
    return v


_REPORT = [("kernel", c.text), ("started", c.text), ("duration_s", c.number), ("min_age_ms", c.count),
           ("targets", c.counts), ("totals", _totals), ("groups", c.listed)]


def check_report(doc, where: str = "report") -> dict:
    """Check a whole report; returns it."""
    c.fields(doc, where, _REPORT, [("refs_tracking", c.text), ("schema", c.text), ("headline", c.text),
                                  ("ranked_by", _ranked_by), ("snapshots", c.count), ("tracer_maps_bytes", c.count),
                                  ("by", c.text), ("sampling_bytes", c.count), ("growth_window_s", c.number),
                                  ("cgroup_filter", c.texts), ("scan", _scan), ("span", c.kinds)])
    if doc.get("ranked_by") == "growth":
        c.together(doc, where, [("ranked_by", "snapshots")])
    for i, g in enumerate(doc["groups"]):
        check_group_core(g, i, prefix=f"{where}.groups")
        c.fields(g, f"{where}.groups[{i}]", _GROUP_REST, _GROUP_OPTIONAL)
        c.together(g, f"{where}.groups[{i}]", _GROUP_TOGETHER)
    for i, r in enumerate(c.listed(doc.get("refs") or [], f"{where}.refs")):
        c.fields(r, f"{where}.refs[{i}]", _REF)
    for i, s in enumerate(c.listed(doc.get("sockets") or [], f"{where}.sockets", 100_000)):
        _socket(s, f"{where}.sockets[{i}]")
    if doc.get("census") is not None:
        from . import pins
        pins.check_census(doc["census"], f"{where}.census")
    for i, row in enumerate(c.listed(doc.get("cgroups") or [], f"{where}.cgroups", 100_000)):
        c.fields(row, f"{where}.cgroups[{i}]", [("objects", c.count), ("bytes", c.count)],
                [("cgroup", c.opt_text), ("container", c.opt_text), ("kinds", c.kinds)])
    return doc


def _slab(s, where):
    c.obj(s, where)
    if s.get("meminfo_slab_kb") is not None:
        c.count(s["meminfo_slab_kb"], f"{where}.meminfo_slab_kb")
    for name, cache in c.obj(s.get("caches", {}), f"{where}.caches").items():
        c.text(name, f"{where}.caches key", 256)
        c.fields(cache, f"{where}.caches[{name!r}]", [("objects", c.count), ("objsize", c.count)])
    return s


def check_snapshot(doc, where: str = "snapshot") -> dict:
    """Check a snapshot line's envelope; its report's groups are checked by
    the reader (check_group_core for every snapshot, check_report for the last)."""
    c.fields(doc, where, [("t_s", c.number), ("report", c.obj)], [("time", c.text), ("slab", _slab)])
    c.listed(doc["report"].get("groups"), f"{where}.report.groups")
    return doc


def _aliases(a, where):
    for name, names in c.obj(a, where).items():
        c.text(name, f"{where} key", 256)
        c.texts(names, f"{where}[{name!r}]", 1000)
    return a


def check_header(doc, where: str = "header") -> dict:
    c.fields(doc, where, [], [("kernel", c.text), ("started", c.text), ("targets", c.counts), ("command", c.text),
                             ("min_age_ms", c.count), ("interval_s", c.number), ("host", c.obj)])
    host = doc.get("host") or {}
    c.fields(host, f"{where}.host", [], [("hostname", c.text), ("slab_aliases", _aliases)])
    return doc
