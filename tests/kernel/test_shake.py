"""--shake: dentries still outstanding after drop_caches are pinned, not cached."""

import signal
import time

from conftest import Tracer, count

N, CREATED = 50, 300


def session(workloads, *extra):
    w = workloads(churn=0, sockets=N, files=0, create=CREATED)
    t = Tracer("-p", w.pid, "--format", "json", "--kinds", "allocs", "--min-age", "200ms", *extra).start()
    w.go()
    w.leaked()
    time.sleep(0.5)
    assert t.stop(signal.SIGINT) == 0, t.stderr
    return t


def test_shake_drops_cached_dentries_and_keeps_pinned_ones(workloads):
    plain = session(workloads)
    # each socket's dentry is pinned by its file; each created file's is only cached
    assert count(plain.reports()[-1], "dentry") >= 2 * N + CREATED
    shaken = session(workloads, "--shake")
    assert "drop_caches" in shaken.stderr
    # the created files' directory may keep its dentry for one more pass of the shrinker
    assert 2 * N <= count(shaken.reports()[-1], "dentry") <= 2 * N + 1, shaken.reports()[-1]["groups"]
