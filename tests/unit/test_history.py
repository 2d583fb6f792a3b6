import pytest
from capture_data import FILP, SOCK, report

from bpftrace_leak.analysis.history import diff, growth, headline, point, series_of, slope


def test_slope_is_least_squares():
    assert slope([(0, 1), (1, 3), (2, 5)]) == pytest.approx(2)
    assert slope([(0, 0), (1, 1), (2, 1), (3, 2)]) == pytest.approx(0.6)
    assert slope([(1, 5)]) == 0.0 and slope([(1, 5), (1, 6)]) == 0.0


def test_growth_per_group_and_absent_group_counts_zero():
    snaps = [{"t_s": t, "report": report(t)} for t in (1, 2, 3)]
    extra = {"kind": "kmalloc", "cache": "kmalloc-64", "objects": 9, "bytes": 576, "oldest_ms": 1,
             "pids": [7], "comms": ["w"], "stack": ["f+0x1"]}
    snaps.append({"t_s": 4, "report": report(4, [extra])})
    series = [(s["t_s"], point(s["report"]["groups"])) for s in snaps]
    g = growth(series)
    assert g[("slab", "sock_inode_cache", tuple(SOCK), None)]["objects_per_h"] == pytest.approx(360_000)
    assert g[("slab", "filp", tuple(FILP), None)]["objects_per_h"] == pytest.approx(0)
    assert series_of(series, ("kmalloc", "kmalloc-64", ("f+0x1",), None))[0] == (1, 0, 0)


def test_diff_lists_grown_groups_only():
    grown = diff(report(1), report(3))
    assert [(g["cache"], g["delta_objects"], g["new"]) for g in grown] == [("sock_inode_cache", 200, False)]


def test_headline_names_fastest_growing_group():
    r = report(2)
    r["groups"][0].update(bytes_per_h=4_300_000, objects_per_h=5_000)
    r["groups"][1].update(bytes_per_h=0, objects_per_h=0)
    assert headline(r) == ("sock_inode_cache +4.1 MiB/h (+5,000 objects/h) from "
                           "sock_alloc_inode+0x1e <- __sys_socketpair+0xd5")
