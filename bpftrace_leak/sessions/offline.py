"""Reports from capture files: ``kleaktrace report FILE`` and ``kleaktrace diff A B``.

The report is the capture's last snapshot with each group's growth (least
squares over all snapshots) and the leak-rate headline, then selected,
culled and sorted in the spirit of page_owner_sort, by the same functions
the live report uses (analysis/groups.py), and rendered by output/.
"""

import sys

from ..analysis.groups import by_cgroup, cull, select, sort_groups
from ..analysis.history import diff, group_key, growth, headline
from ..errors import KleakError
from ..output.capture import load_capture
from ..output.outfiles import write_private
from ..output.reporter import limit, printable, render, render_diff

__all__ = ["annotate", "run_report", "run_diff"]


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


def run_report(path, fmt="text", sort="bytes", pid=None, comm=None, cache=None, cull_by="stack",
               top=None, output=None, force=False, cgroup=None, by=None) -> int:
    cap = load_capture(path)
    if cap.torn:
        print(f"kleaktrace: note: {printable(path)} ends in a torn line (the recording was cut short); "
              f"using its {len(cap.series)} complete snapshots", file=sys.stderr)
    report = annotate(cap)
    groups = sort_groups(cull(select(report["groups"], pid, comm, cache, cgroup), cull_by), sort)
    report["groups"] = groups
    report["cgroups"] = by_cgroup(groups)
    report["by"] = by
    report["totals"] = dict(report["totals"], objects=sum(g["objects"] for g in groups),
                            bytes=sum(g["bytes"] for g in groups))
    if fmt == "html":
        from ..output.htmlreport import render_html
        text = render_html(report, cap)
    elif fmt == "pprof":
        from ..output.pprof import render_pprof
        text = render_pprof(limit(report, top))
        if not output and sys.stdout.isatty():
            raise KleakError("--format pprof is binary: give -o FILE (e.g. -o leak.pb.gz)", status=2)
    else:
        text = render(limit(report, top), fmt)
    if output:
        write_private(output, text, replace=force)
    elif isinstance(text, bytes):
        sys.stdout.buffer.write(text)
    else:
        sys.stdout.write(text)
    return 0


def run_diff(path_a, path_b, fmt="text", top=None) -> int:
    a, b = load_capture(path_a), load_capture(path_b)
    grown = diff(a.last, b.last)
    sys.stdout.write(render_diff(grown[:top] if top else grown, path_a, path_b, fmt))
    return 0
