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


def test_by_cgroup_offline(tmp_path, capsys):
    from capture_data import report as make_report

    from bpftrace_leak.output.capture import CaptureWriter
    path = tmp_path / "cg.kcap"
    w = CaptureWriter(str(path), header={"kernel": "6.18", "started": "x", "targets": [], "command": None,
                                         "min_age_ms": 1000, "interval_s": 1})
    for t in (1, 2):
        r = make_report(t)
        r["groups"][0].update(cgroup="(removed) /docker/0123456789abcdef0123", container="docker:0123456789ab")
        r["groups"][1].update(cgroup="/system.slice")
        w.snapshot(t, "x", r, {"meminfo_slab_kb": 1, "caches": {}})
    w.close()
    text = out_of(capsys, run_report, str(path), by="cgroup")
    assert "per cgroup:" in text
    assert "(removed) /docker/0123456789abcdef0123 [docker:0123456789ab]: 200 objects" in text
    assert "/system.slice: 50 objects" in text
    only = json.loads(out_of(capsys, run_report, str(path), fmt="json", cgroup="(removed) /docker/*"))
    assert [g["cache"] for g in only["groups"]] == ["sock_inode_cache"]


def test_container_names_from_cgroup_paths():
    from bpftrace_leak.kernel.cgroups import container
    long_id = "0123456789abcdef" * 4
    assert container(f"/docker/{long_id}") == "docker:0123456789ab"
    assert container(f"/system.slice/docker-{long_id}.scope") == "docker:0123456789ab"
    assert container(f"/machine.slice/libpod-{long_id}.scope/container") == "podman:0123456789ab"
    assert container(f"/kubepods.slice/kubepods-burstable.slice/cri-containerd-{long_id}.scope") == \
        "containerd:0123456789ab"
    assert container("/user.slice/user-1000.slice") is None
