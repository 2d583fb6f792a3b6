"""Reports from capture files: ``kleaktrace report FILE`` and ``kleaktrace diff A B``.

The report is the capture's last snapshot with each group's growth (least
squares over all snapshots) and the leak-rate headline, then selected,
culled and sorted in the spirit of page_owner_sort.
"""

import fnmatch
import sys

from .capture import load_capture
from .history import diff, group_key, growth, headline
from .outfiles import write_private
from .reporter import limit, printable, render, render_diff

__all__ = ["annotate", "select", "cull", "sort_groups", "run_report", "run_diff", "SORT_KEYS"]

SORT_KEYS = {
    "bytes": lambda g: -g["bytes"],
    "objects": lambda g: -g["objects"],
    "growth": lambda g: -g.get("bytes_per_h", 0),
    "pid": lambda g: min(g["pids"] or [0]),
    "comm": lambda g: min(g["comms"] or [""]),
    "cache": lambda g: g["cache"] or "",
}


def annotate(capture) -> dict:
    """The last report of ``capture``, each group with objects_per_h and bytes_per_h."""
    report = dict(capture.last)
    rates = growth(capture.series, [group_key(g) for g in report["groups"]])
    report["groups"] = [dict(g, objects_per_h=round(rates[group_key(g)]["objects_per_h"], 1),
                             bytes_per_h=round(rates[group_key(g)]["bytes_per_h"], 1))
                        for g in report["groups"]]
    report["snapshots"] = len(capture.series)
    report["headline"] = headline(report)
    return report


def select(groups, pid=None, comm=None, cache=None):
    out = groups
    if pid is not None:
        out = [g for g in out if pid in g["pids"]]
    if comm is not None:
        out = [g for g in out if comm in g["comms"]]
    if cache is not None:
        out = [g for g in out if g["cache"] and (fnmatch.fnmatchcase(g["cache"], cache) or
                                                 any(fnmatch.fnmatchcase(a, cache) for a in g.get("cache_aliases", [])))]
    return out


def cull(groups, by: str):
    """Merge groups by ``by``: "stack" (as recorded) or "cache" (kind and cache);
    a merged group shows the stack of its largest member."""
    if by == "stack":
        return groups
    merged: dict[tuple, dict] = {}
    for g in sorted(groups, key=lambda g: -g["bytes"]):
        key = (g["kind"], g["cache"])
        m = merged.get(key)
        if m is None:
            merged[key] = dict(g, pids=list(g["pids"]), comms=list(g["comms"]))
            continue
        for k in ("objects", "bytes", "objects_per_h", "bytes_per_h"):
            if k in g:
                m[k] = m.get(k, 0) + g[k]
        m["oldest_ms"] = max(m["oldest_ms"], g["oldest_ms"])
        m["pids"] = sorted(set(m["pids"]) | set(g["pids"]))
        m["comms"] = sorted(set(m["comms"]) | set(g["comms"]))
    return sorted(merged.values(), key=lambda g: -g["bytes"])


def sort_groups(groups, key: str):
    return sorted(groups, key=SORT_KEYS[key])


def run_report(path, fmt="text", sort="bytes", pid=None, comm=None, cache=None, cull_by="stack",
               top=None, output=None, force=False) -> int:
    cap = load_capture(path)
    if cap.torn:
        print(f"kleaktrace: note: {printable(path)} ends in a torn line (the recording was cut short); "
              f"using its {len(cap.series)} complete snapshots", file=sys.stderr)
    report = annotate(cap)
    groups = sort_groups(cull(select(report["groups"], pid, comm, cache), cull_by), sort)
    report["groups"] = groups
    report["totals"] = dict(report["totals"], objects=sum(g["objects"] for g in groups),
                            bytes=sum(g["bytes"] for g in groups))
    if fmt == "html":
        from .htmlreport import render_html
        text = render_html(report, cap)
    else:
        text = render(limit(report, top), fmt)
    if output:
        write_private(output, text, replace=force)
    else:
        sys.stdout.write(text)
    return 0


def run_diff(path_a, path_b, fmt="text", top=None) -> int:
    a, b = load_capture(path_a), load_capture(path_b)
    grown = diff(a.last, b.last)
    sys.stdout.write(render_diff(grown[:top] if top else grown, path_a, path_b, fmt))
    return 0
