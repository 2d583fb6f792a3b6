"""``kleaktrace demo``: trace the bundled workload and check the tracer against it.

The workload (workload.py) churns socketpairs and files, then keeps N
socketpairs and M files open: the report must show 2N sock_inode_cache and
2N+M filp objects. The demo ends the session once those leaks are older than
the minimum age, then compares.
"""

import subprocess
import sys
import threading
import time

from . import live

__all__ = ["run_demo", "expected_counts"]


def expected_counts(sockets: int, files: int) -> dict[str, int]:
    return {"sock_inode_cache": 2 * sockets, "filp": 2 * sockets + files}


def run_demo(cfg, churn: int = 20000, sockets: int = 300, files: int = 200) -> int:
    """Trace the workload with Config ``cfg`` (its targets are the workload's)."""
    cmd = [sys.executable, "-m", "bpftrace_leak.sessions.workload", "--churn", str(churn),
           "--sockets", str(sockets), "--files", str(files), "--wait", "--until-eof"]
    work = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    stop = threading.Event()

    def go(_session):
        print(f"kleaktrace demo: workload PID {work.pid} churns {churn:,} socketpair+open cycles, "
              f"then keeps {sockets} socketpairs and {files} files", file=sys.stderr, flush=True)
        work.stdin.write("go\n")
        work.stdin.flush()

        def wait_for_leak():
            line = work.stdout.readline()
            if line.startswith("leaked"):
                time.sleep(cfg.min_age_ms / 1000 + 1.0)
            stop.set()

        threading.Thread(target=wait_for_leak, daemon=True).start()

    final = {}
    try:
        status = live.run(cfg.replace(pids=(work.pid,)), on_attached=go, stop_event=stop,
                          on_report=lambda report, _facts: final.update(report))
    finally:
        try:
            work.stdin.close()
        except BrokenPipeError:
            pass
        work.wait(timeout=30)
    want = expected_counts(sockets, files)
    found = {cache: sum(g["objects"] for g in final.get("groups", []) if g["cache"] == cache) for cache in want}
    for cache, n in want.items():
        print(f"kleaktrace demo: {cache}: expected {n}, reported {found[cache]}", file=sys.stderr)
    return status
