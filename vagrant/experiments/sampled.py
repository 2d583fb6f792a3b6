#!/usr/bin/env python3
"""A sampled session (frame_counts, probes/objects.h) on a lab kernel: the
probes load there, and with every allocation kept (--sample-bytes 1) a
child that leaves LEAK files on a tmpfs (their inodes outlive it) and
creates and removes CHURN more is counted exactly, the churned inodes
freed through the frame counts. The host's 6.18 runs the
same in tests/kernel/test_accuracy.py; the lab's scenarios trace unsampled.

    sudo vagrant/lab qemu --out DIR --kernel all --jobs 2 --experiment sampled   # DIR/*/summary.txt

Runs in the guest (provision.sh run, with the module loaded).
"""

import json
import os
import subprocess
import sys
import tempfile

LEAK, CHURN = 100, 2000
MNT = tempfile.mkdtemp(prefix="kleaktrace-sampled-")  # a tmpfs of its own (the guest has no /dev/shm)
DIR = f"{MNT}/d"
CHILD = f"""
import os
os.mkdir("{DIR}")
for i in range({CHURN}):
    open("{DIR}/c%d" % i, "w").close(); os.unlink("{DIR}/c%d" % i)
for i in range({LEAK}):
    open("{DIR}/l%d" % i, "w").close()
"""


def traced(src: str, sample_bytes: str) -> dict:
    """One session over the child; what it counted of tmpfs inodes."""
    run = subprocess.run([sys.executable, "-m", "bpftrace_leak.cli", "--kinds", "allocs", "--no-scan",
                          "--sample-bytes", sample_bytes, "--min-age", "1000ms", "--format", "json",
                          "--top", "100000", "-c", f"{sys.executable} -c '{CHILD}'"],
                         cwd=src, env=dict(os.environ, PYTHONPATH=src), capture_output=True, text=True)
    subprocess.run(["rm", "-rf", DIR], check=False)
    docs = [line for line in run.stdout.splitlines() if line.startswith("{")]  # a report a line
    try:
        report = json.loads(docs[-1]) if docs else {}
    except ValueError:
        report = {}
    inodes = sum(g["objects"] for g in report.get("groups", []) if g["cache"] == "shmem_inode_cache")
    return {"status": run.returncode, "shmem_inode_cache": inodes,
            "frees": report.get("totals", {}).get("frees"), "stderr": run.stderr[-1500:]}


def main() -> int:
    out = sys.argv[1]
    src = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    row = {"kernel": os.uname().release}
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs", MNT], check=True)
    try:
        for sample_bytes in ("1", "0"):  # frame counts on, and off (unsampled): the same count
            row[f"sample_bytes={sample_bytes}"] = traced(src, sample_bytes)
    finally:
        subprocess.run(["umount", MNT], check=False)
        os.rmdir(MNT)
    # the files left and their folder
    row["passed"] = all(r["status"] == 0 and r["shmem_inode_cache"] == LEAK + 1
                        for k, r in row.items() if k.startswith("sample_bytes"))
    print("lab: " + json.dumps({k: {f: v for f, v in r.items() if f != "stderr"} if isinstance(r, dict) else r
                                for k, r in row.items()}), flush=True)
    with open(f"{out}/sampled.json", "w") as f:
        json.dump(row, f, indent=1)
    with open(f"{out}/summary.json", "w") as f:
        json.dump({"kernel": "experiment", "passed": row["passed"], "scenarios": []}, f)
        f.write("\n")
    return 0 if row["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
