"""Session shapes (-c, system-wide, INTERVAL COUNT, --cache, target exit) and bad input."""

import json
import re
import subprocess
import sys
import time

from conftest import ROOT, Tracer, as_user, count

CLI = [sys.executable, "-m", "bpftrace_leak.cli"]
WORKLOAD = f"{sys.executable} -m bpftrace_leak.sessions.workload"


def run(*args, env=None, timeout=120):
    cmd = CLI + [str(a) for a in args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def test_command_traced_from_its_first_allocation():
    # the leak happens right after exec, before any -p could have been given
    res = run("-c", f"{WORKLOAD} --churn 0 --sockets 40 --files 3 --hold 6",
              "--duration", "4", "--format", "json", "--top", "100")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert any(line.startswith("leaked 40 3") for line in lines)  # the command's output passes through
    report = json.loads([line for line in lines if line.startswith("{")][-1])
    assert count(report, "sock_inode_cache") == 80, (report["totals"], res.stderr)
    # plus a struct file for each library the new program mmapped: -c sees its exec too
    assert count(report, "filp") >= 83


def test_exited_target_still_gets_its_report(workloads):
    w = workloads(churn=2000, sockets=20, files=0)
    t = Tracer("-p", w.pid, "--format", "json", "--min-age", "0").start()
    w.go()
    w.leaked()
    w.end()  # its sockets close on exit: nothing of it stays outstanding
    assert t.wait(timeout=30) == 0, t.stderr  # the session ends by itself
    assert "targets exited" in t.stderr
    report = t.reports()[-1]
    assert count(report, "sock_inode_cache") == 0
    assert report["totals"]["frees"] >= 4000


def test_system_wide_interval_count_and_cache_filter(workloads):
    w = workloads(churn=0, sockets=25, files=0)
    t = Tracer("--format", "json", "--cache", "sock_inode*", "--top", "1000", "--min-age", "200ms", "1", "3")
    t.start()
    w.go()
    holder = w.leaked()
    assert t.wait(timeout=60) == 0, t.stderr  # ends after COUNT reports
    reports = t.reports()
    assert len(reports) == 3 and reports[-1]["targets"] == []
    assert {g["cache"] for r in reports for g in r["groups"]} <= {"sock_inode_cache"}
    mine = [g for g in reports[-1]["groups"] if holder in g["pids"]]
    assert sum(g["objects"] for g in mine) == 50


def test_text_report_names_the_leak(workloads):
    w = workloads(churn=0, sockets=10, files=0)
    t = Tracer("-p", w.pid, "--min-age", "100ms").start()
    w.go()
    w.leaked()
    time.sleep(0.5)
    assert t.stop() == 0, t.stderr
    # 10 socketpairs: 20 socket inodes, in one group or one per socketpair call site
    shown = re.findall(r"slab sock_inode_cache: (\d+) objects", t.stdout)
    assert shown and sum(map(int, shown)) == 20, t.stdout
    assert "sock_alloc_inode+0x" in t.stdout


def one_line_error(res, status, text):
    assert res.returncode == status, (res.stdout, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("kleaktrace: ") and text in lines[0], res.stderr
    assert "Traceback" not in res.stderr


def test_bad_inputs_one_line_errors(tmp_path):
    one_line_error(run("-p", "999999999"), 2, "no process with PID 999999999")
    one_line_error(run("--cache", "no_such_cache_*", "--duration", "1"), 2, "no slab cache")
    one_line_error(run("-c", "/no/such/command"), 2, "command not found")
    one_line_error(run("-p", "1", "--min-age", "soon"), 2, "not a duration")
    one_line_error(as_user(65534, ["-p", "1", "--duration", "1"]), 1, "needs root")
    (tmp_path / "include").mkdir()
    one_line_error(run("-p", "1", "--duration", "1", "--kernel-headers", tmp_path), 1,
                   "not a kernel header tree")
    events = tmp_path / "events"
    (events / "kmem" / "kmalloc").mkdir(parents=True)
    (events / "kmem" / "kmalloc" / "format").write_text("format:\n")
    one_line_error(run("-p", "1", "--duration", "1", env={"KLEAKTRACE_EVENTS_DIR": str(events), "PATH": "/usr/bin:/bin"}),
                   1, "tracepoint kmem:kfree is missing")


def test_doctor_reports_this_host():
    res = run("doctor")
    assert res.returncode == 0, res.stdout
    assert "ok   tracepoint kmem:kmem_cache_alloc" in res.stdout
    # this host has neither kprobes nor a usable fentry: doctor says so
    lines = res.stdout.splitlines()
    assert "warn kprobes: not built into this kernel (CONFIG_KPROBE_EVENTS); refcount tracking needs kprobes or fentry" in lines
    assert ("warn fentry: cannot attach to path_get (the kernel refuses it: Operation not permitted); "
            "refcount tracking needs kprobes instead") in lines
    assert any(line.startswith("warn reference counts: unavailable (this kernel has no kprobes") for line in lines)


def test_processes_that_exited_keep_their_names(tmp_path):
    # touch's dentries outlive it (cached); it is gone when the report names it
    files = " ".join(str(tmp_path / f"f{i}") for i in range(30))
    res = run("-c", f"sh -c 'touch {files}'", "--children", "--format", "json", "--min-age", "0", "--top", "100")
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.splitlines()[-1])
    dentries = [g for g in report["groups"] if g["cache"] == "dentry"]
    assert sum(g["objects"] for g in dentries) >= 30, report["groups"]
    assert "touch" in {c for g in dentries for c in g["comms"]}, dentries
