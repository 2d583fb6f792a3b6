"""Stacks per call site (the default) against a stack per allocation (--stacks all)."""

import signal
import time

from conftest import Tracer, count

N, M = 100, 50


def run(workloads, *extra, **wkw):
    w = workloads(sockets=N, files=M, **wkw)
    t = Tracer("-p", w.pid, "--format", "json", "--top", "1000", "--min-age", "500ms", *extra).start()
    w.go()
    w.leaked()
    time.sleep(1.0)
    assert t.stop(signal.SIGINT) == 0, t.stderr
    return t.reports()[-1]


def stacks_of(report, cache):
    return [g for g in report["groups"] if g["cache"] == cache]


def via(group, fn):
    return any(f.startswith(fn + "+") for f in group["stack"])


def test_all_gives_every_object_its_own_stack(workloads):
    r = run(workloads, "--stacks", "all", churn=2000)
    files = stacks_of(r, "filp")
    assert sum(g["objects"] for g in files) == 2 * N + M
    assert all(g["site_stack_objects"] == 0 for g in r["groups"])
    # the socketpair files and the open() files come apart
    assert sum(g["objects"] for g in files if via(g, "__sys_socketpair")) == 2 * N
    assert sum(g["objects"] for g in files if via(g, "do_sys_openat2")) == M


def test_sites_take_few_stacks_and_count_the_same(workloads):
    r = run(workloads, churn=2000)
    assert count(r, "filp") == 2 * N + M and count(r, "sock_inode_cache") == 2 * N
    # 2,000 churned cycles of a dozen allocations each, a stack for a few dozen call sites
    assert r["totals"]["allocs"] > 20_000 and r["totals"]["own_stacks"] < 500, r["totals"]
    shared = [g for g in r["groups"] if g["site_stack_objects"]]
    assert shared and all(g["stack"] for g in shared)


def test_a_growing_call_site_is_promoted_to_own_stacks(workloads):
    """filp's call site is first seen on the socketpair path; files then leak
    through open() for 7 s. Once the site's aged objects grow it is promoted,
    and the later open() files show their own stack."""
    r = run(workloads, churn=200, rate=100, for_s=7, rate_files=True)
    files = stacks_of(r, "filp")
    # the rate loop leaks int(elapsed * rate) files, its last round a little short of 7 s
    assert 2 * N + M + 690 <= sum(g["objects"] for g in files) <= 2 * N + M + 700
    opened = [g for g in files if via(g, "do_sys_openat2")]
    assert opened and sum(g["objects"] for g in opened) > 100, files
    assert all(g["site_stack_objects"] < g["objects"] for g in opened), opened
