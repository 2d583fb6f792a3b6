"""A self-contained HTML page for a capture: flame graph and growth charts.

No scripts and no external files: inline SVG with <title> tooltips, so the
page opens anywhere and can be attached to a bug report. People attach it to
bug reports, and a capture may come from anyone: every value that reaches the
page, numbers included, goes through _e() (tests/unit/test_html.py renders a
capture with a payload in every field in Chromium and checks its DOM).
"""

import html

from ..analysis.history import cache_growth, group_key
from .censustext import census_lines
from .textreport import scan_line, warnings
from ..text import human_bytes, printable

__all__ = ["render_html"]

_W = 1100
_ROW = 18
_PALETTE = ["#e4572e", "#29335c", "#f3a712", "#669bbc", "#a8c686", "#8e5572", "#4d9078", "#c06e52"]


def _e(value) -> str:
    """Any value as HTML text, quotes included (it may land in an attribute);
    control characters, bidi overrides and lone surrogates spelled out
    (output/text.py), as in a terminal."""
    return html.escape(printable(value), quote=True)


def _trie(groups):
    root = {"name": "all", "value": 0, "children": {}}
    for g in groups:
        label = f"{g['kind']}:{g['cache']}" if g["cache"] else g["kind"]
        node = root
        node["value"] += g["bytes"]
        for frame in [label] + list(reversed(g["stack"])):
            node = node["children"].setdefault(frame, {"name": frame, "value": 0, "children": {}})
            node["value"] += g["bytes"]
    return root


def _flame(groups) -> str:
    """Icicle of outstanding bytes: root on top, callees below."""
    root = _trie(groups)
    rects = []
    depth_max = 0
    # an explicit stack, not recursion: a stack's depth is the input's to choose
    todo = [(root, 0.0, 0)] if root["value"] else []
    scale = _W / root["value"] if root["value"] else 0
    while todo:
        node, x, depth = todo.pop()
        w = node["value"] * scale
        if w < 0.5:
            continue
        depth_max = max(depth_max, depth)
        y = depth * _ROW
        color = _PALETTE[sum(printable(node["name"]).split("+")[0].encode()) % len(_PALETTE)] if depth else "#999"
        tip = _e(f"{node['name']}: {human_bytes(node['value'])}")
        label = _e(node["name"][: max(0, int(w / 7) - 1)]) if w > 30 else ""
        rects.append(f'<g class="frame"><title>{tip}</title><rect x="{x:.1f}" y="{y}" width="{w:.1f}" '
                     f'height="{_ROW - 1}" fill="{color}"/><text x="{x + 3:.1f}" y="{y + 13}">{label}</text></g>')
        cx = x
        for child in sorted(node["children"].values(), key=lambda c: -c["value"]):
            todo.append((child, cx, depth + 1))
            cx += child["value"] * scale
    height = (depth_max + 1) * _ROW
    return (f'<svg id="flamegraph" xmlns="http://www.w3.org/2000/svg" width="{_W}" height="{height}" '
            f'font-family="monospace" font-size="11">{"".join(rects)}</svg>')


def _chart(svg_id: str, series: list[tuple[str, list[tuple[float, float]]]], title: str) -> str:
    """Lines of bytes over time, one per (name, [(t_s, bytes)]) with a legend."""
    w, h, pad = _W, 260, 50
    pts = [p for _, s in series for p in s]
    if not pts:
        return f'<svg id="{svg_id}" width="{w}" height="40"><text x="10" y="25">{_e(title)}: no data</text></svg>'
    tmax = max(t for t, _ in pts) or 1.0
    ymax = max(max(y for _, y in pts), 1.0)
    parts = [f'<text x="{pad}" y="16" font-weight="bold">{_e(title)}</text>',
             f'<line x1="{pad}" y1="{h - pad}" x2="{w - 10}" y2="{h - pad}" stroke="#333"/>',
             f'<line x1="{pad}" y1="30" x2="{pad}" y2="{h - pad}" stroke="#333"/>',
             f'<text x="{pad}" y="{h - pad + 16}">0 s</text>',
             f'<text x="{w - 80}" y="{h - pad + 16}">{tmax:.0f} s</text>',
             f'<text x="2" y="36">{_e(human_bytes(int(ymax)))}</text>']
    for i, (name, s) in enumerate(series):
        color = _PALETTE[i % len(_PALETTE)]
        coords = " ".join(f"{pad + (t / tmax) * (w - pad - 10):.1f},{(h - pad) - (y / ymax) * (h - pad - 30):.1f}"
                          for t, y in s)
        parts.append(f'<polyline class="series" fill="none" stroke="{color}" stroke-width="2" points="{coords}">'
                     f'<title>{_e(name)}</title></polyline>')
        # the legend goes under the time axis, one line per series
        parts.append(f'<text x="{pad + 10}" y="{h - pad + 34 + 14 * i}" fill="{color}" '
                     f'font-size="11">{_e(name[:120])}</text>')
    return f'<svg id="{svg_id}" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h - pad + 40 + 14 * len(series)}" ' \
           f'font-family="sans-serif" font-size="12">{"".join(parts)}</svg>'


def render_html(report: dict, capture, top: int = 8, rows: int = 50) -> str:
    """The page for ``report`` (the last of ``capture``, loaded with
    ``series``, with growth): ``top`` groups and caches charted, ``rows``
    groups in the table (-T)."""
    group_series = []
    shown = report["groups"][:top]
    series = capture.trends.series([group_key(g) for g in shown])
    for g in shown:
        label = f"{g['cache'] or g['kind']} {g['stack'][0] if g['stack'] else ''}"
        group_series.append((label, [(t, b) for t, _, b in series[group_key(g)]]))
    caches = sorted(cache_growth(capture.slab, top).items(), key=lambda kv: -kv[1]["bytes_per_h"])
    # growth since the first snapshot: a cache's size would hide its growth
    cache_series = [(name, [(t, b - data["series"][0][1]) for t, b in data["series"]])
                    for name, data in caches if data["bytes_per_h"] > 0]
    table = "".join(_row(g) for g in report["groups"][:rows])
    warn = "".join(f"<p class='warn'>warning: {_e(w)}</p>" for w in warnings(report))
    headline = f"<p id='headline'><b>Leak rate:</b> {_e(report['headline'])}</p>" \
        if report.get("headline") else ""
    t = report["totals"]
    targets = ", ".join(map(str, report["targets"])) or "all"
    scan = f"<p id='scan'>{_e(scan_line(report['scan']).strip())}</p>" if report.get("scan") else ""
    census = f'<h2>Reference census</h2>\n<pre id="census">{_e(chr(10).join(census_lines(report["census"])[1:]))}</pre>' \
        if report.get("census") else ""
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>kleaktrace report</title>
<style>body{{font-family:sans-serif;margin:20px}} td,th{{padding:2px 8px;text-align:left}}
.warn{{color:#b00}} svg text{{pointer-events:none}}</style></head>
<body>
<h1>kleaktrace: outstanding kernel allocations</h1>
<p>kernel {_e(report['kernel'])}, started {_e(report['started'])}, {_e(capture.snapshots)} snapshots
over {_e(f"{report['duration_s']:.0f}")} s; targets {_e(targets)};
{_e(f"{t['objects']:,}")} objects, {_e(human_bytes(t['bytes']))} older than {_e(report['min_age_ms'])} ms.</p>
{headline}{warn}{scan}
<h2>Flame graph of outstanding bytes</h2>
{_flame(report['groups'])}
<h2>Growth</h2>
{_chart('growth-groups', group_series, 'bytes outstanding, top groups')}
{_chart('growth-caches', cache_series, 'slab caches, bytes grown since the first snapshot (/proc/slabinfo)')}
{census}
<h2>Groups</h2>
<table id="groups"><tr><th>kind</th><th>cache</th><th>objects</th><th>bytes</th><th>growth</th><th>orphaned</th>
<th>held by</th><th>stack</th></tr>
{table}</table>
</body></html>
"""


def _row(g: dict) -> str:
    orphans = g.get("orphaned", 0) + g.get("orphan_cycle", 0)
    cells = [g["kind"], g["cache"] or "-", f"{g['objects']:,}", human_bytes(g["bytes"]),
             f"{human_bytes(max(0, int(g.get('bytes_per_h', 0))))}/h",
             f"{orphans:,}" if "held" in g else "-",
             "; ".join(f"{h['holder']} ({h['objects']:,})" for h in (g.get("holders") or [])[:3])]
    return ("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells)
            + f"<td><code>{_e(' <- '.join(g['stack'][:4]))}</code></td></tr>")
