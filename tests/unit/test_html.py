"""The HTML page rendered by real headless Chromium, checked by its DOM."""

import re
import shutil
import subprocess

import pytest
from capture_data import write_capture

from bpftrace_leak.sessions.offline import run_report

CHROMIUM = shutil.which("chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def page(tmp_path):
    cap = write_capture(tmp_path / "c.kcap")
    html = tmp_path / "report.html"
    assert run_report(str(cap), fmt="html", output=str(html)) == 0
    return html


def chromium(tmp_path, *args):
    if CHROMIUM is None:
        pytest.fail("chromium is not installed (.ci/run installs Debian's chromium)")
    res = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args],
                         capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def test_page_is_self_contained(page):
    text = page.read_text()
    assert "<script" not in text and "http://" not in text.replace('xmlns="http://www.w3.org/2000/svg"', "")


def test_dom_has_flame_graph_and_growth_charts(page, tmp_path):
    dom = chromium(tmp_path, "--dump-dom", page.as_uri())
    flame = re.search(r'<svg id="flamegraph".*?</svg>', dom, re.S).group(0)
    frames = re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)"', flame)
    assert len(frames) >= 6 and max(map(float, frames)) > 1000  # the root spans the width
    assert "sock_alloc_inode+0x1e" in flame and "slab:sock_inode_cache" in flame
    groups_chart = re.search(r'<svg id="growth-groups".*?</svg>', dom, re.S).group(0)
    lines = re.findall(r'<polyline class="series"[^>]*points="([^"]+)"', groups_chart)
    assert len(lines) == 2 and all(len(p.split()) == 5 for p in lines)
    caches_chart = re.search(r'<svg id="growth-caches".*?</svg>', dom, re.S).group(0)
    assert "sock_inode_cache" in caches_chart and 'class="series"' in caches_chart
    assert 'id="headline"' in dom and "sock_inode_cache +" in dom


def test_screenshot_renders(page, tmp_path):
    shot = tmp_path / "shot.png"
    chromium(tmp_path, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri())
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000


PAYLOAD = '"\'><img src=x onerror=alert(1)><script>alert(2)</script>'


def _poison(doc, keep=("type", "schema")):
    """Every string in ``doc`` (dict keys too) with the payload around it."""
    if isinstance(doc, dict):
        return {(k if k in keep or k in _FIELDS else PAYLOAD + k): (v if k in keep else _poison(v))
                for k, v in doc.items()}
    if isinstance(doc, list):
        return [_poison(v) for v in doc]
    if isinstance(doc, str):
        return PAYLOAD + doc + PAYLOAD
    return doc


# field names are not data: they stay as they are (cache names used as keys get the payload)
_FIELDS = {"kernel", "started", "targets", "command", "min_age_ms", "interval_s", "host", "hostname",
           "slab_aliases", "t_s", "time", "report", "slab", "meminfo_slab_kb", "caches", "objects", "objsize",
           "duration_s", "totals", "bytes", "allocs", "frees", "missed_frees", "dropped", "skipped_frees",
           "groups", "kind", "cache", "cache_aliases", "oldest_ms", "pids", "comms", "stack", "refs_tracking",
           "refs", "sockets",
           # the reference census's fields and the kinds it counts
           "census", "dentries", "gone", "dead", "cached", "pinned", "pinned_explained", "pinned_unexplained",
           "mounts_read", "references", "pinned_by", "unexplained", "by_stack", "by_parent", "mounts", "name",
           "path", "count", "explained", "names", "parent", "mountpoint", "since_start", "new", "total", "file",
           "cwd", "root", "mount", "fs", "child", "over_explained", "namespace"}


def _numbers(doc, path=()):
    """Paths of every number in ``doc``."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _numbers(v, path + (k,))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _numbers(v, path + (i,))
    elif isinstance(doc, (int, float)) and not isinstance(doc, bool):
        yield path


def test_payload_in_every_string_field_stays_text(tmp_path):
    import json
    cap = write_capture(tmp_path / "c.kcap")
    docs = [json.loads(line) for line in cap.read_text().splitlines()]
    poisoned = tmp_path / "poisoned.kcap"
    poisoned.write_text("".join(json.dumps(_poison(d)) + "\n" for d in docs))
    html = tmp_path / "p.html"
    assert run_report(str(poisoned), fmt="html", output=str(html)) == 0
    dom = chromium(tmp_path, "--dump-dom", html.as_uri())
    assert "<img" not in dom and "onerror=" not in dom.replace("onerror=alert(1)&gt;", "")
    assert "<script" not in dom
    # shown as text: in the headline, the kernel line, the table, the flame graph and charts
    assert dom.count("&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;") >= 10
    census = re.search(r'<pre id="census">(.*?)</pre>', dom, re.S).group(1)  # names, paths, stacks, mounts
    assert census.count("&lt;img src=x onerror=alert(1)&gt;") >= 4, census


def test_payload_in_any_number_field_is_refused(tmp_path):
    import json

    from bpftrace_leak.errors import KleakError
    cap = write_capture(tmp_path / "c.kcap")
    docs = [json.loads(line) for line in cap.read_text().splitlines()]
    paths = list(_numbers(docs[-1])) + [("header",) + p for p in _numbers(docs[0])]
    assert len(paths) > 20
    for path in paths:
        variant = json.loads(json.dumps(docs))
        target = variant[0] if path[0] == "header" else variant[-1]
        for step in (path[1:] if path[0] == "header" else path)[:-1]:
            target = target[step]
        target[path[-1]] = PAYLOAD
        bad = tmp_path / "bad.kcap"
        bad.write_text("".join(json.dumps(d) + "\n" for d in variant))
        with pytest.raises(KleakError, match="corrupt capture") as e:
            run_report(str(bad), fmt="html", output=str(tmp_path / "out.html"), force=True)
        assert e.value.status == 2, path
