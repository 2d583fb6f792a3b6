"""The reporter: a ``kleaktrace.report/1`` document (analysis/report.py)
rendered as text, JSON, folded stacks or a pprof profile, and a diff of two
captures; the renderers themselves live in output/ (textreport.py,
pprof.py, htmlreport.py for captures).

JSON escapes control characters itself; folded stacks and diffs pass every
string through printable() as the text report does.
"""

import json

from .output.textreport import render_text, warnings
from .text import human_bytes, printable

__all__ = ["render", "render_text", "render_json", "render_folded", "render_diff", "warnings", "limit",
           "printable", "human_bytes"]


def render_json(report: dict) -> str:
    """One report per line (JSON Lines), so periodic reports stream."""
    return json.dumps(report, separators=(",", ":")) + "\n"


def render_folded(report: dict) -> str:
    """Folded stacks for flamegraph.pl and speedscope: ``root;...;leaf bytes``.

    The root frame is the kind and cache; frames run outermost to innermost.
    A ``;`` inside a name would split a frame, a space the count: both are
    replaced, and control characters escaped.
    """
    def frame(name):
        return printable(name).replace(";", ",").replace(" ", "_")
    out = []
    for g in report["groups"]:
        root = f"{g['kind']}:{g['cache']}" if g["cache"] else g["kind"]
        frames = [frame(root)] + [frame(f) for f in reversed(g["stack"])]
        out.append(f"{';'.join(frames)} {g['bytes']}")
    return "\n".join(out) + ("\n" if out else "")


def render_diff(grown: list[dict], a: str, b: str, fmt: str = "text") -> str:
    """Groups grown from capture ``a`` to ``b`` (history.diff()), as text or ``kleaktrace.diff/1`` JSON."""
    if fmt == "json":
        return json.dumps({"schema": "kleaktrace.diff/1", "a": a, "b": b, "groups": grown},
                          separators=(",", ":")) + "\n"
    if not grown:
        return f"no group grew from {printable(a)} to {printable(b)}\n"
    lines = [f"groups grown from {printable(a)} to {printable(b)}:"]
    for i, g in enumerate(grown, 1):
        lines.append(f"[{i}] {printable(g['kind'])} {printable(g['cache'] or '-')}: {g['delta_objects']:+,} objects, "
                     f"{'+' if g['delta_bytes'] >= 0 else '-'}{human_bytes(abs(g['delta_bytes']))}"
                     f"{' (new)' if g['new'] else ''}; now {g['objects']:,} objects")
        lines.extend(f"      {printable(frame)}" for frame in g["stack"])
    return "\n".join(lines) + "\n"


def limit(report: dict, top: int | None) -> dict:
    """The report with at most ``top`` groups and refs shown; totals unchanged."""
    if not top:
        return report
    return dict(report, groups=report["groups"][:top], refs=report.get("refs", [])[:top])


def render(report: dict, fmt: str):
    """``report`` as text, JSON, folded stacks (str) or a pprof profile (bytes)."""
    if fmt == "pprof":
        from .output.pprof import render_pprof
        return render_pprof(report)
    if fmt == "json":
        return render_json(report)
    if fmt == "folded":
        return render_folded(report)
    return render_text(report)
