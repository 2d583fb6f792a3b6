"""The HTML page rendered by real headless Chromium, checked by its DOM."""

import re
import shutil
import subprocess

import pytest
from capture_data import write_capture

from bpftrace_leak.offline import run_report

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
