"""This host has neither kprobes nor fentry: reference tracking says so once and
allocation tracking carries on. (The lab tests reference tracking for real.)"""

import signal
import subprocess
import sys
import time

from conftest import ROOT, Tracer, count

from bpftrace_leak.kernel.functions import kprobes_available


def test_refs_unavailable_note_and_allocations_still_traced(workloads):
    assert not kprobes_available(), "this test is for a kernel without kprobes"
    w = workloads(churn=0, sockets=12, files=0)
    t = Tracer("-p", w.pid, "--format", "json", "--min-age", "200ms").start()
    w.go()
    w.leaked()
    time.sleep(0.6)
    assert t.stop(signal.SIGINT) == 0, t.stderr
    notes = [line for line in t.stderr.splitlines() if "reference-count tracking unavailable" in line]
    assert len(notes) == 1 and "no kprobes" in notes[0]
    report = t.reports()[-1]
    assert report["refs_tracking"].startswith("unavailable: this kernel has no kprobes")
    assert report["refs"] == []
    assert count(report, "sock_inode_cache") == 24


def test_refs_only_without_kprobes_is_an_error():
    res = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", "-p", "1", "--kinds", "refs"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert lines[-1].startswith("kleaktrace: --kinds refs: reference-count tracking unavailable")
    assert "Traceback" not in res.stderr
