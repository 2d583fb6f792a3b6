"""Reports from capture files: ``kleaktrace report FILE`` and ``kleaktrace diff A B``.

The report is the capture's last snapshot with each group's growth (least
squares over all snapshots) and the leak-rate headline, then selected,
culled and sorted in the spirit of page_owner_sort, by the same functions
the live report uses (analysis/groups.py), and rendered by output/.

What is written is rendered whole first: a failure while rendering leaves
no file behind (it left a 0-byte one, which the next run then refused), and
the capture being read is never the file written (compared by device and
inode, so ``-o`` naming it by another spelling or a hard link is refused).
"""

import os
import sys

from ..analysis.cgroups import span, split
from ..analysis.groups import by_cgroup, cull, select, sort_groups
from ..analysis.history import diff, group_key, headline
from ..errors import KleakError
from ..output.capture import load_capture
from ..output.outfiles import write_private
from ..reporter import limit, render, render_diff
from ..text import printable

__all__ = ["annotate", "run_report", "run_diff"]


def annotate(capture) -> dict:
    """The last report of ``capture``, each group with objects_per_h and bytes_per_h."""
    report = dict(capture.last)
    rates = capture.trends.growth([group_key(g) for g in report["groups"]])
    report["groups"] = [dict(g, objects_per_h=round(rates[group_key(g)]["objects_per_h"], 1),
                             bytes_per_h=round(rates[group_key(g)]["bytes_per_h"], 1))
                        for g in report["groups"]]
    report["snapshots"] = capture.snapshots
    report["headline"] = headline(report)
    return report


def _stdout(data) -> None:
    """Write ``data`` to standard output; KleakError when it cannot take it
    (closed, a full disk: ``> /dev/full``), never a traceback."""
    stream = sys.stdout
    if stream is None:
        raise KleakError("standard output is closed: give -o FILE")
    try:
        if isinstance(data, bytes):
            stream.buffer.write(data)
        else:
            stream.write(data)
        stream.flush()
    except (OSError, ValueError) as e:
        # what is still buffered would fail again at exit, with a traceback
        sys.stdout = open(os.devnull, "w")
        raise KleakError(f"cannot write to standard output: {getattr(e, 'strerror', None) or e}") from None


def _input_identity(path: str):
    try:
        st = os.stat(path)
        return st.st_dev, st.st_ino
    except OSError:
        return None


def run_report(path, fmt="text", sort="bytes", pid=None, comm=None, cache=None, cull_by="stack",
               top=None, output=None, force=False, cgroup=None, by=None, split_by=None) -> int:
    keep = _input_identity(path)
    cap = load_capture(path, series=fmt == "html")
    if cap.torn:
        print(f"kleaktrace: note: {printable(path)} ends in a torn line (the recording was cut short); "
              f"using its {cap.snapshots} complete snapshots", file=sys.stderr)
    report = annotate(cap)
    groups = split(report["groups"]) if split_by == "cgroup" else report["groups"]
    groups = sort_groups(cull(select(groups, pid, comm, cache, cgroup), cull_by), sort)
    report["groups"] = groups
    report["cgroups"] = by_cgroup(groups)
    report["span"] = span(groups)
    report["by"] = by
    report["totals"] = dict(report["totals"], objects=sum(g["objects"] for g in groups),
                            bytes=sum(g["bytes"] for g in groups))
    if fmt == "html":
        from ..output.htmlreport import render_html
        data = render_html(report, cap, rows=top or 50)
    elif fmt == "pprof":
        if not output and sys.stdout is not None and sys.stdout.isatty():
            raise KleakError("--format pprof is binary: give -o FILE (e.g. -o leak.pb.gz)", status=2)
        from ..output.pprof import render_pprof
        data = render_pprof(limit(report, top))
    else:
        data = render(limit(report, top), fmt)
    if output:
        write_private(output, data, replace=force, keep=keep)
    else:
        _stdout(data)
    return 0


def run_diff(path_a, path_b, fmt="text", top=None) -> int:
    a, b = load_capture(path_a), load_capture(path_b)
    grown = diff(a.last, b.last)
    _stdout(render_diff(grown[:top] if top else grown, path_a, path_b, fmt))
    return 0
