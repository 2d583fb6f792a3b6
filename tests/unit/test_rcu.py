"""kernel/rcu.py: rcu_barrier() from user space, against stand-ins for the
kernel's parameter (the real one: tests/kernel/test_exits.py)."""

import os
import time

from bpftrace_leak.kernel.rcu import ABSENT, rcu_barrier


def test_the_barrier_is_requested_by_writing_one(tmp_path):
    param = tmp_path / "do_rcu_barrier"
    param.write_text("0\n")
    assert rcu_barrier(path=str(param)) is None
    assert param.read_text().startswith("1")


def test_a_kernel_without_the_parameter_says_so(tmp_path):
    assert rcu_barrier(path=str(tmp_path / "absent")) == ABSENT


def test_a_write_that_does_not_return_is_left_behind(tmp_path):
    # a FIFO nobody reads: opening it for writing blocks, as the kernel's
    # write blocks on a grace period that does not end
    fifo = tmp_path / "stuck"
    os.mkfifo(fifo)
    t0 = time.monotonic()
    why = rcu_barrier(timeout_s=0.3, path=str(fifo))
    assert why == "rcu_barrier() not done in 0.3 s"
    assert time.monotonic() - t0 < 1.0
    os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the left thread finish


def test_a_refused_write_is_reported(tmp_path):
    folder = tmp_path / "dir"
    folder.mkdir()
    why = rcu_barrier(path=str(folder))
    assert why and why.startswith(str(folder)) and "directory" in why
