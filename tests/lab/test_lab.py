"""The lab: Debian's kernels (bookworm 6.1, trixie 6.12, sid 7.x) under QEMU
with the leaky module (vagrant/lab qemu), and the same through `vagrant up`
on a box built here (vagrant/lab vagrant).

Slow (see README "The lab" for cold and warm times) and needs root and the
lab's tools (./setup --tests installs them).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LAB = os.path.join(ROOT, "vagrant", "lab")

pytestmark = [pytest.mark.lab,
              pytest.mark.skipif(os.geteuid() != 0, reason="the lab builds images and boots a VM: root")]


KERNELS = ("bookworm", "trixie", "sid")
LEAKS = ("kmalloc", "cache", "socket", "percpu", "sheaf")
DECOYS = ("decoy_park", "decoy_rcu", "decoy_ref", "decoy_bulk", "decoy_rcuvol", "decoy_churn")


@pytest.fixture(scope="module")
def vagrant_run(tmp_path_factory):
    """`vagrant/lab vagrant`, started before the QEMU run and alongside it
    (each guest is one emulating thread or two; this host has 2 cores: CI
    saves the ~7 minutes the box took after the three kernels): (Popen, out)."""
    sys.path.insert(0, os.path.join(ROOT, "vagrant"))
    import labbox
    if labbox.in_chroot():  # the lab says so in one line; CI and laptops are no chroot
        yield None, None
        return
    out = tmp_path_factory.mktemp("vagrant") / "out"
    log = open(out.parent / "log", "w+")
    proc = subprocess.Popen([LAB, "vagrant", "--out", str(out)], stdout=log, stderr=subprocess.STDOUT, text=True)
    yield proc, out
    if proc.poll() is None:
        proc.terminate()
        proc.wait(60)
    log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, vagrant_run):
    """One run of the lab on every kernel (a guest each, two at a time
    beside the box: the three took 13.5 min one at a time in CI, one core
    idle once the box was done): its output folder and summary."""
    out = tmp_path_factory.mktemp("lab") / "out"
    res = subprocess.run([LAB, "qemu", "--kernel", "all", "--jobs", "2", "--out", str(out)], capture_output=True,
                         text=True, timeout=2400)
    summary = json.loads((out / "summary.json").read_text()) if (out / "summary.json").exists() else None
    return res, out, summary


def test_lab_passes_on_every_kernel(lab):
    res, out, summary = lab
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert [k["suite"] for k in summary["kernels"]] == list(KERNELS)
    table = (out / "summary.txt").read_text()
    for k in summary["kernels"]:
        assert k["passed"] and "error" not in k, k
        assert k["release"] in table


@pytest.mark.parametrize("suite", KERNELS)
def test_every_planted_leak_found_exactly_and_no_decoy(lab, suite):
    _, out, summary = lab
    kernel = next(k for k in summary["kernels"] if k["suite"] == suite)
    rows = {r["scenario"]: r for r in kernel["scenarios"]}
    for name in LEAKS:
        assert rows[name]["status"] == "pass" and rows[name]["found"] == rows[name]["expected"] > 0, rows[name]
    for name in DECOYS:
        assert rows[name]["status"] == "pass" and rows[name]["found"] == 0, rows[name]
    # the field case: +K references on K dentries and +K on their mount
    k = rows["pathref"]["expected"]
    assert k > 0
    # ... through fentry (every Debian kernel allows it), and again through the kprobe fallback
    for suffix, method in (("", "fentry"), ("@kprobe", "kprobe")):
        row = rows[f"pathref{suffix}"]
        assert row["status"] == "pass" and row["found"] == k, row
        assert rows[f"decoy_ref{suffix}"]["status"] == "pass", rows[f"decoy_ref{suffix}"]
        pathref = json.loads((out / suite / f"pathref{suffix}.json").read_text())
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
        full = json.loads([line for line in (out / suite / name).read_text().splitlines()
                           if line.startswith("{")][-1])
        assert {r["object"] for r in full["refs"]} == {"dentry", "vfsmount"} and len(full["refs"]) == 2, full["refs"]
    # per-scenario reports in the tracer's schema, stacks through the module
    sock = json.loads((out / suite / "socket.json").read_text())
    assert sock["schema"] == "kleaktrace.report/1"
    assert all(any(f.startswith("kleaklab_leak_socket+") for f in g["stack"]) for g in sock["groups"])


@pytest.mark.parametrize("suite", KERNELS)
def test_reference_census_finds_pathref_without_kprobes_or_fentry(lab, suite):
    """--refs-via none: no path_get/path_put probe, the reference census alone.
    pathref's K dentries hold one reference each that no file, cwd, root,
    child or mount explains, their mount K more than at the start; decoy_ref's
    balanced references leave nothing unexplained."""
    _, out, summary = lab
    kernel = next(k for k in summary["kernels"] if k["suite"] == suite)
    rows = {r["scenario"]: r for r in kernel["scenarios"]}
    k = rows["pathref"]["expected"]
    assert rows["pathref@census"]["status"] == "pass" and rows["pathref@census"]["found"] == k, rows
    assert rows["decoy_ref@census"]["status"] == "pass" and rows["decoy_ref@census"]["found"] == 0, rows
    full = json.loads([line for line in (out / suite / "report-census.json").read_text().splitlines()
                       if line.startswith("{")][-1])
    assert full["refs_tracking"] == "off" and not full["refs"]
    c = full["census"]
    mine = [d for d in c["unexplained"] if "/kleaklab-pathref-" in d["path"]]
    assert sorted(d["name"] for d in mine) == sorted(f"f{i}" for i in range(k))
    # the guest's /tmp is a tmpfs: it holds one reference on each of its files (explained, "fs")
    assert all(d["unexplained"] == 1 and d["count"] == 1 + d["explained"]["fs"] for d in mine), mine
    assert [m["since_start"] for m in c["mounts"] if m["since_start"] == k] == [k]


@pytest.mark.parametrize("suite", KERNELS)
def test_holder_scan_tells_orphans_cycles_and_holders(lab, suite):
    """The holder scan (issue #25): the planted kmalloc leak whose pointer
    was dropped is orphaned, every object; two objects pointing at each
    other and at nothing else are an orphan cycle; objects kept on the
    module's list are held, one by its list head `kept`; /proc/kcore's read
    of the same memory gives every object the same verdict."""
    _, out, summary = lab
    kernel = next(k for k in summary["kernels"] if k["suite"] == suite)
    rows = {r["scenario"]: r for r in kernel["scenarios"]}
    for name, per in (("orphan", 1), ("cycle", 2), ("hold", 1)):
        assert rows[name]["status"] == "pass" and rows[name]["found"] == rows[name]["expected"] > 0, rows[name]
    assert rows["scan@kcore"]["status"] == "pass" and rows["scan@kcore"]["found"] == 0, rows["scan@kcore"]
    orphan = json.loads((out / suite / "orphan.json").read_text())
    (g,) = orphan["groups"]
    assert g["orphaned"] == g["objects"] == rows["orphan"]["expected"] and not g["holders"]
    hold = json.loads((out / suite / "hold.json").read_text())
    assert any(h["holder"].startswith("module kleaklab kept") for g in hold["groups"] for h in g["holders"]), hold
    # the decoys stay unreported, and nothing the lab's kernel made alone is an orphan
    full = json.loads([line for line in (out / suite / "report.json").read_text().splitlines()
                       if line.startswith("{")][-1])
    strays = [(g["stack"][:3], g["orphaned"], g["orphan_cycle"]) for g in full["groups"]
              if (g.get("orphaned") or g.get("orphan_cycle"))
              and not any(f.startswith(("kleaklab_orphan+", "kleaklab_cycle+", "kleaklab_leak_")) for f in g["stack"])]
    assert not strays, strays


def test_each_kernel_is_its_suites(lab):
    _, _, summary = lab
    major = {k["suite"]: k["kernel"].split(".")[0] + "." + k["kernel"].split(".")[1] for k in summary["kernels"]}
    assert major["bookworm"] == "6.1"
    assert major["trixie"] == "6.12"
    assert int(major["sid"].split(".")[0]) >= 7


def test_vagrant_up_runs_the_lab_in_a_box_built_here(vagrant_run):
    proc, out = vagrant_run
    if proc is None:
        pytest.skip("libvirt cannot start guests inside a chroot (a fresh-root check)")
    rc = proc.wait(2400)
    log = (out.parent / "log").read_text()
    assert rc == 0, log[-6000:]
    summary = json.loads((out / "summary.json").read_text())
    (box,) = summary["kernels"]
    rows = {r["scenario"]: r for r in box["scenarios"]}
    for name in ("kmalloc", "socket", "pathref"):
        assert rows[name]["status"] == "pass" and rows[name]["found"] == rows[name]["expected"] > 0, rows[name]
    for name in ("decoy_park", "decoy_rcu", "decoy_ref", "decoy_churn"):
        assert rows[name]["status"] == "pass", rows[name]
    # destroyed: no domain left behind
    listed = subprocess.run(["virsh", "-c", "qemu:///system", "list", "--all", "--name"], capture_output=True,
                            text=True).stdout
    assert "kleaktrace" not in listed and "vagrant" not in listed


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
