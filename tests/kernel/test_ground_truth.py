"""The tracer against a workload whose kernel leaks are known exactly."""

import signal
import time

from conftest import Tracer, bpf_prog_count, count

N, M = 300, 200


def traced_leak(workloads, *extra, **wkw):
    w = workloads(sockets=N, files=M, **wkw)
    t = Tracer("-p", w.pid, "--format", "json", "--top", "1000", *extra).start()
    w.go()
    holder = w.leaked()
    time.sleep(1.5)  # past the default 1000 ms minimum age
    assert t.stop(signal.SIGINT) == 0, t.stderr
    return t.reports()[-1], w, holder


def test_socketpairs_and_files_exact(workloads):
    report, w, _ = traced_leak(workloads)
    socks, files = count(report, "sock_inode_cache"), count(report, "filp")
    assert abs(socks - 2 * N) <= 0.05 * 2 * N, report["totals"]
    assert abs(files - (2 * N + M)) <= 0.05 * (2 * N + M), report["totals"]
    # the 40,000 churned socket inodes were freed (through RCU) and are gone
    assert report["totals"]["frees"] > 40_000
    socket_stacks = [g["stack"] for g in report["groups"] if g["cache"] == "sock_inode_cache"]
    assert socket_stacks and all(any("__sys_socketpair" in f for f in s) for s in socket_stacks)
    assert all(s[0].startswith("sock_alloc_inode") for s in socket_stacks)  # allocator frames trimmed
    assert count(report, "names_cache") == 0  # getname()'s buffer is transient
    assert {p for g in report["groups"] for p in g["pids"]} == {w.pid}
    assert report["targets"] == [w.pid]


def test_other_process_absent_from_pid_report(workloads):
    other = workloads(sockets=77, files=0)
    other.go()
    report, w, _ = traced_leak(workloads)
    other.leaked()
    assert count(report, "sock_inode_cache") == 2 * N
    assert other.pid not in {p for g in report["groups"] for p in g["pids"]}


def test_children_flag_catches_a_forked_childs_leak(workloads):
    report, w, holder = traced_leak(workloads, "--children", fork=True)
    assert holder != w.pid
    assert count(report, "sock_inode_cache") == 2 * N
    assert holder in {p for g in report["groups"] if g["cache"] == "sock_inode_cache" for p in g["pids"]}
    report, w, holder = traced_leak(workloads, fork=True)
    assert count(report, "sock_inode_cache") == 0  # without --children the child is not traced


def test_young_allocations_are_not_reported(workloads):
    report, _, _ = traced_leak(workloads, "--min-age", "30s")
    assert count(report, "sock_inode_cache") == 0 and count(report, "filp") == 0
    assert report["min_age_ms"] == 30_000


def test_sigterm_and_sigint_detach_every_program(workloads):
    before = bpf_prog_count()
    for sig in (signal.SIGTERM, signal.SIGINT):
        w = workloads(churn=0, sockets=5, files=0)
        t = Tracer("-p", w.pid, "--format", "json", "--min-age", "0").start()
        assert bpf_prog_count() > before  # the probes really were loaded
        w.go()
        w.leaked()
        time.sleep(0.5)
        assert t.stop(sig) == 0, t.stderr
        assert count(t.reports()[-1], "sock_inode_cache") == 10  # a final report on the signal
        assert bpf_prog_count() == before, sig
