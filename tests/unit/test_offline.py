import json

import pytest
from capture_data import write_capture

from bpftrace_leak.sessions.offline import run_report, run_diff


def out_of(capsys, fn, *args, **kw):
    assert fn(*args, **kw) == 0
    return capsys.readouterr().out


def test_json_report_with_growth(tmp_path, capsys):
    cap = write_capture(tmp_path / "c.kcap")
    r = json.loads(out_of(capsys, run_report, str(cap), fmt="json"))
    sock = r["groups"][0]
    assert sock["cache"] == "sock_inode_cache" and sock["objects"] == 500
    assert sock["objects_per_h"] == pytest.approx(360_000)
    assert r["headline"].startswith("sock_inode_cache +")
    assert r["snapshots"] == 5


def test_select_sort_and_cull(tmp_path, capsys):
    cap = str(write_capture(tmp_path / "c.kcap"))
    assert [g["cache"] for g in json.loads(out_of(capsys, run_report, cap, fmt="json", pid=8))["groups"]] == ["filp"]
    assert json.loads(out_of(capsys, run_report, cap, fmt="json", comm="nobody"))["groups"] == []
    by_cache = json.loads(out_of(capsys, run_report, cap, fmt="json", cache="fil*"))["groups"]
    assert [g["cache"] for g in by_cache] == ["filp"]
    by_pid = json.loads(out_of(capsys, run_report, cap, fmt="json", sort="pid"))["groups"]
    assert [g["pids"] for g in by_pid] == [[7], [8]]
    culled = json.loads(out_of(capsys, run_report, cap, fmt="json", cull_by="cache"))["groups"]
    assert len(culled) == 2


def test_folded_lines_are_stack_then_count(tmp_path, capsys):
    cap = str(write_capture(tmp_path / "c.kcap"))
    lines = out_of(capsys, run_report, cap, fmt="folded").splitlines()
    assert lines[0] == "slab:sock_inode_cache;__sys_socketpair+0xd5;sock_alloc_inode+0x1e 416000"
    for line in lines:
        stack, count = line.rsplit(" ", 1)
        assert ";" in stack and int(count) > 0


def test_diff(tmp_path, capsys):
    a = write_capture(tmp_path / "a.kcap", seconds=(1, 2))
    b = write_capture(tmp_path / "b.kcap", seconds=(1, 2, 3, 4))
    text = out_of(capsys, run_diff, str(a), str(b))
    assert "slab sock_inode_cache: +200 objects" in text and "filp" not in text
