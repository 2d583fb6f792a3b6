"""The lab: Debian's 6.1 kernel under QEMU with the leaky module (vagrant/lab qemu).

Slow (about 4 minutes cold, under 2 minutes with the cached image) and needs
root, qemu, debootstrap and busybox-static (.ci/run installs them).
"""

import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "vagrant", "lab")

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab builds images and boots a VM: root")]


def test_lab_finds_every_planted_leak_and_no_decoy(tmp_path):
    out = tmp_path / "out"
    res = subprocess.run([LAB, "qemu", "--out", str(out)], capture_output=True, text=True, timeout=1500)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    rows = {r["scenario"]: r for r in summary["scenarios"]}
    for name in ("kmalloc", "cache", "socket", "percpu"):
        assert rows[name]["status"] == "pass" and rows[name]["found"] == rows[name]["expected"] > 0, rows[name]
    for name in ("decoy_park", "decoy_rcu", "decoy_ref"):
        assert rows[name]["status"] == "pass" and rows[name]["found"] == 0, rows[name]
    # the field case: +K references on K dentries and +K on their mount
    assert rows["pathref"]["status"] == "pass" and rows["pathref"]["found"] == rows["pathref"]["expected"] > 0
    # ... through fentry (6.1 allows it), and again through the kprobe fallback
    k = rows["pathref"]["expected"]
    for suffix, method in (("", "fentry"), ("@kprobe", "kprobe")):
        row = rows[f"pathref{suffix}"]
        assert row["status"] == "pass" and row["found"] == k, row
        assert rows[f"decoy_ref{suffix}"]["status"] == "pass", rows[f"decoy_ref{suffix}"]
        pathref = json.loads((out / f"pathref{suffix}.json").read_text())
        assert pathref["refs_tracking"] == method
        by_object = {r["object"]: r for r in pathref["refs"]}
        assert (by_object["dentry"]["objects"], by_object["dentry"]["net"]) == (k, k)
        assert (by_object["vfsmount"]["objects"], by_object["vfsmount"]["net"]) == (1, k)
        assert by_object["dentry"]["why"] == "put on a cleared path"
        # stacks start in the traced function: fentry's trampoline frames are skipped
        assert by_object["dentry"]["stack"][0].startswith("path_get+")
        assert any(f.startswith("kleaklab_pathref+") for f in by_object["dentry"]["stack"])
        assert by_object["dentry"]["put_stack"][0].startswith("path_put+")
        assert sorted(by_object["dentry"]["names"]) == sorted(f"f{i}" for i in range(k))
        # the driver opened and closed dozens of files: a struct file's own
        # path_get (do_dentry_open, put by __fput) must not show as never put
        name = "report.json" if not suffix else "report-kprobe.json"
        full = json.loads([line for line in (out / name).read_text().splitlines() if line.startswith("{")][-1])
        assert {r["object"] for r in full["refs"]} == {"dentry", "vfsmount"} and len(full["refs"]) == 2, full["refs"]
    # per-scenario reports in the tracer's schema, stacks through the module
    sock = json.loads((out / "socket.json").read_text())
    assert sock["schema"] == "kleaktrace.report/1"
    assert all(any(f.startswith("kleaklab_leak_socket+") for f in g["stack"]) for g in sock["groups"])
    assert summary["kernel"].startswith("6.1.")
    assert "expected" in (out / "summary.txt").read_text()


def test_lab_reports_missing_tools_clearly(tmp_path):
    env = dict(os.environ, PATH=str(tmp_path))  # nothing to be found
    os.symlink("/usr/bin/python3", tmp_path / "python3")
    os.symlink(shutil.which("dpkg-query"), tmp_path / "dpkg-query")
    res = subprocess.run(["/usr/bin/python3", LAB, "qemu", "--out", str(tmp_path / "o")],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 1
    assert res.stderr.startswith("lab: missing tools: apt-get install ")
    assert "qemu-system-x86" in res.stderr and "debootstrap" in res.stderr
    assert "Traceback" not in res.stderr


def test_vagrantfile_validates():
    if shutil.which("vagrant") is None:
        pytest.fail("vagrant is not installed (.ci/run installs Debian's vagrant)")
    res = subprocess.run(["vagrant", "validate", "--ignore-provider"], cwd=os.path.join(ROOT, "vagrant"),
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
