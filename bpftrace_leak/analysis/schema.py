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

import math
import sys

__all__ = ["REPORT_SCHEMA", "CAPTURE_SCHEMA", "MAX_FRAMES", "Invalid", "check_header", "check_snapshot",
           "check_report", "check_group_core", "check_groups_core", "finite_float", "reject_constant"]

REPORT_SCHEMA = "kleaktrace.report/1"
CAPTURE_SCHEMA = "kleaktrace.capture/1"

#: frames a stack may have: the kernel keeps at most perf_event_max_stack
#: (127 by default) per stack; a capture holding more was not made by us
MAX_FRAMES = 512
_MAX_TEXT = 4096  # a kernel symbol is at most 512 bytes, a file name 255
_MAX_LIST = 10_000_000
_MAX_COUNT = 2**63


class Invalid(ValueError):
    """A document that breaks the format; the message names the field."""


def finite_float(text: str) -> float:
    """json ``parse_float``: 1e400 is not a number kleaktrace wrote."""
    value = float(text)
    if not math.isfinite(value):
        raise Invalid(f"number {text[:20]} out of range")
    return value


def reject_constant(name: str):
    """json ``parse_constant``: NaN and Infinity are not JSON."""
    raise Invalid(f"{name} is not a number")


def _count(v, where):
    if type(v) is not int or not 0 <= v < _MAX_COUNT:
        raise Invalid(f"{where}: not a count")
    return v


def _number(v, where):
    if type(v) not in (int, float) or not -1e18 < v < 1e18:
        raise Invalid(f"{where}: not a number")
    return v


def _text(v, where, limit=_MAX_TEXT):
    if type(v) is not str or len(v) > limit:
        raise Invalid(f"{where}: not a string of at most {limit} characters")
    return v


def _opt_text(v, where):
    return None if v is None else _text(v, where)


def _list(v, where, limit=_MAX_LIST):
    if type(v) is not list or len(v) > limit:
        raise Invalid(f"{where}: not a list")
    return v


def _texts(v, where, limit=_MAX_LIST):
    _list(v, where, limit)
    if v and (set(map(type, v)) != {str} or max(map(len, v)) > _MAX_TEXT):
        raise Invalid(f"{where}: not a list of strings")
    return v


def _counts(v, where):
    _list(v, where)
    for i, n in enumerate(v):
        _count(n, f"{where}[{i}]")
    return v


def _stack(v, where):
    return _texts(v, where, MAX_FRAMES)


def _object(v, where):
    if type(v) is not dict:
        raise Invalid(f"{where}: not an object")
    return v


def _fields(doc, where, required, optional=()):
    """Check ``doc``'s fields: {name: checker}; required ones must be there."""
    _object(doc, where)
    for name, check in required:
        if name not in doc:
            raise Invalid(f"{where}: no {name!r}")
        check(doc[name], f"{where}.{name}")
    for name, check in optional:
        if doc.get(name) is not None:
            check(doc[name], f"{where}.{name}")
    return doc


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
                and 0 <= n < _MAX_COUNT and 0 <= b < _MAX_COUNT
                and (cgroup is None or type(cgroup) is str and len(cgroup) <= _MAX_TEXT)):
            key = (kind, cache, tuple(stack), cgroup)
            if known is not None:
                try:
                    first = known.get(key)
                except TypeError:  # a frame that is a list or an object: unhashable
                    _stack(stack, f"{prefix}[{i}].stack")
                    raise
                if first is not None:
                    return first
                _stack(stack, f"{prefix}[{i}].stack")
                known[key] = key
                return key
            _stack(stack, f"{prefix}[{i}].stack")
            return key
    where = f"{prefix}[{i}]"
    _object(g, where)
    _text(g.get("kind"), f"{where}.kind", 256)
    if g.get("cache") is not None:
        _text(g["cache"], f"{where}.cache", 256)
    _list(g.get("stack"), f"{where}.stack")
    _opt_text(g.get("cgroup"), f"{where}.cgroup")
    _count(g.get("objects"), f"{where}.objects")
    _count(g.get("bytes"), f"{where}.bytes")
    raise AssertionError("unreachable: the fast path refused what the checks accept")


def _flag(v, where):
    if type(v) is not bool:
        raise Invalid(f"{where}: not true or false")
    return v


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
            if type(n) is int and type(b) is int and 0 <= n < _MAX_COUNT and 0 <= b < _MAX_COUNT \
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


_GROUP_REST = [("oldest_ms", _count), ("pids", _counts), ("comms", _texts)]
_GROUP_OPTIONAL = [("cache_aliases", _texts), ("site_stack_objects", _count), ("unverified_objects", _count),
                   ("kernel_active", _count), ("cgroup", _opt_text), ("cache_owner", _opt_text),
                   ("cache_candidates", _texts), ("container", _opt_text), ("cgroup_removed", _flag),
                   ("cache_owner_by", _text),
                   ("cgroup_own", _flag), ("objects_per_h", _number), ("bytes_per_h", _number),
                   ("held", _count), ("orphaned", _count), ("orphan_cycle", _count), ("unknown", _count),
                   ("scan_differ", _count), ("cgroup_count", _count),
                   ("cgroups", lambda v, w: _rows(v, w, [("objects", _count), ("bytes", _count)], 1000,
                                                  [("path", _text), ("container", _text), ("removed", _flag)])),
                   ("holders", lambda v, w: _rows(v, w, [("holder", _text), ("kind", _text), ("objects", _count)], 100))]
#: fields a renderer reads together: the first one present needs the others
_GROUP_TOGETHER = [("unverified_objects", "kernel_active"), ("objects_per_h", "bytes_per_h"),
                   ("bytes_per_h", "objects_per_h")] + \
    [(a, b) for a in ("held", "orphaned", "orphan_cycle", "unknown") for b in ("held", "orphaned", "orphan_cycle", "unknown")
     if a != b]


def _rows(v, where, fields, limit, optional=()):
    for i, row in enumerate(_list(v, where, limit)):
        _fields(row, f"{where}[{i}]", fields, optional)
    return v


def _scan(v, where):
    """The report's ``scan`` section: what the holder scan read, or why it did not run."""
    _object(v, where)
    if v.get("skipped") is not None:
        return _fields(v, where, [("skipped", _text)])
    numbers = [(k, _count) for k in ("targets", "pages", "bytes", "unreadable_pages", "passes", "stale_words",
                                     "held", "orphaned", "orphan_cycle", "unknown")]
    _fields(v, where, numbers + [("method", _text), ("seconds", _number)], [("differ", _count), ("kcore", _kinds)])
    return v
_REF = [("object", _text), ("objects", _count), ("net", _count), ("why", _text), ("names", _texts),
        ("oldest_ms", _count), ("pids", _counts), ("comms", _texts), ("stack", _stack), ("put_stack", _stack)]
_SOCKET = [("pid", _count), ("family", _text), ("state", _text), ("count", _count)]
_EXAMPLE = [("inode", _count)]
_EXAMPLE_OPTIONAL = [("peer", _count), ("sport", _count), ("dport", _count)]


def _together(doc, where, pairs):
    for have, need in pairs:
        if doc.get(have) is not None and doc.get(need) is None:
            raise Invalid(f"{where}: {have!r} without {need!r}")


def _kinds(k, where):
    for name, n in _object(k, where).items():
        _text(name, f"{where} key", 64)
        _count(n, f"{where}[{name!r}]")
    return k


def _socket(s, where):
    _fields(s, where, _SOCKET)
    for i, e in enumerate(_list(s.get("examples", []), f"{where}.examples", 100)):
        _fields(e, f"{where}.examples[{i}]", _EXAMPLE, _EXAMPLE_OPTIONAL)
        _together(e, f"{where}.examples[{i}]", [("sport", "dport"), ("dport", "sport")])
    return s


def _totals(t, where):
    _object(t, where)
    for name in ("objects", "bytes"):
        if name not in t:
            raise Invalid(f"{where}: no {name!r}")
    for name, v in t.items():
        _count(v, f"{where}.{name}")
    return t


def _ranked_by(v, where):
    if v not in ("bytes", "growth"):
        raise Invalid(f"{where}: not 'bytes' or 'growth'")
    return v


_REPORT = [("kernel", _text), ("started", _text), ("duration_s", _number), ("min_age_ms", _count),
           ("targets", _counts), ("totals", _totals), ("groups", _list)]


def check_report(doc, where: str = "report") -> dict:
    """Check a whole report; returns it."""
    _fields(doc, where, _REPORT, [("refs_tracking", _text), ("schema", _text), ("headline", _text),
                                  ("ranked_by", _ranked_by), ("snapshots", _count), ("tracer_maps_bytes", _count),
                                  ("by", _text), ("sampling_bytes", _count), ("growth_window_s", _number),
                                  ("cgroup_filter", _texts), ("scan", _scan), ("span", _kinds)])
    if doc.get("ranked_by") == "growth":
        _together(doc, where, [("ranked_by", "snapshots")])
    for i, g in enumerate(doc["groups"]):
        check_group_core(g, i, prefix=f"{where}.groups")
        _fields(g, f"{where}.groups[{i}]", _GROUP_REST, _GROUP_OPTIONAL)
        _together(g, f"{where}.groups[{i}]", _GROUP_TOGETHER)
    for i, r in enumerate(_list(doc.get("refs") or [], f"{where}.refs")):
        _fields(r, f"{where}.refs[{i}]", _REF)
    for i, s in enumerate(_list(doc.get("sockets") or [], f"{where}.sockets", 100_000)):
        _socket(s, f"{where}.sockets[{i}]")
    if doc.get("census") is not None:
        from . import pins
        pins.check_census(doc["census"], f"{where}.census", sys.modules[__name__])
    for i, c in enumerate(_list(doc.get("cgroups") or [], f"{where}.cgroups", 100_000)):
        _fields(c, f"{where}.cgroups[{i}]", [("objects", _count), ("bytes", _count)],
                [("cgroup", _opt_text), ("container", _opt_text), ("kinds", _kinds)])
    return doc


def _slab(s, where):
    _object(s, where)
    if s.get("meminfo_slab_kb") is not None:
        _count(s["meminfo_slab_kb"], f"{where}.meminfo_slab_kb")
    for name, c in _object(s.get("caches", {}), f"{where}.caches").items():
        _text(name, f"{where}.caches key", 256)
        _fields(c, f"{where}.caches[{name!r}]", [("objects", _count), ("objsize", _count)])
    return s


def check_snapshot(doc, where: str = "snapshot") -> dict:
    """Check a snapshot line's envelope; its report's groups are checked by
    the reader (check_group_core for every snapshot, check_report for the last)."""
    _fields(doc, where, [("t_s", _number), ("report", _object)], [("time", _text), ("slab", _slab)])
    _list(doc["report"].get("groups"), f"{where}.report.groups")
    return doc


def _aliases(a, where):
    for name, names in _object(a, where).items():
        _text(name, f"{where} key", 256)
        _texts(names, f"{where}[{name!r}]", 1000)
    return a


def check_header(doc, where: str = "header") -> dict:
    _fields(doc, where, [], [("kernel", _text), ("started", _text), ("targets", _counts), ("command", _text),
                             ("min_age_ms", _count), ("interval_s", _number), ("host", _object)])
    host = doc.get("host") or {}
    _fields(host, f"{where}.host", [], [("hostname", _text), ("slab_aliases", _aliases)])
    return doc
