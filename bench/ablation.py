#!/usr/bin/env python3
"""What each part of an allocation program costs: kleaktrace -p on the
allocation storm (bench/storm.c), its probes rebuilt with one part left out
at a time, ns per run of the slab programs from kernel.bpf_stats_enabled,
interleaved rounds, medians. Each variant is a copy of bpftrace_leak/ with
one line of probes/ replaced (ABLATIONS: a line no longer found stops the
script), so nothing here is an option of the tool: a variant that leaves out
the filter or the atomic claim is wrong by design, and is measured only to
price what it leaves out.

    sudo .venv/bin/python bench/ablation.py [--rounds 3] [--seconds 3] [--base REV] [--only]

--base REV adds the package as git revision REV has it, as a first row, so
that a change's before and after are measured side by side in one run;
--only leaves out the ablations (the tree as built, and REV's).
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "bench"))

from bpftrace_leak.kernel.headers import find_headers  # noqa: E402
from interleave import interleaved  # noqa: E402
from overhead import build_storm, with_tracer  # noqa: E402

#: variant -> (file under bpftrace_leak/probes, line as it is, line instead)
ABLATIONS = {
    "as built": None,
    "no syscall number": ("objects.h", "obj->syscall = sk->syscall = task_syscall(task);",
                          "obj->syscall = sk->syscall = 0;"),
    "no cgroup": ("objects.h", "obj->cgroup = task_cgroup(task);", "obj->cgroup = 0;"),
    "no call-site lookup": ("objects.h", "take_stack(ctx, sk, s, obj);", "obj->stack_id = -1;"),
    "no target filter": ("filters.h", "return is_target(task_tgid(t));", "return 1;"),
    "slot claimed by a plain store": ("objects.h",
                                      "u64 old = __sync_val_compare_and_swap(&slot->addr, 0, SLOT_BUSY);",
                                      "u64 old = slot->addr; if (!old) slot->addr = SLOT_BUSY;"),
    "no slot written": ("objects.h", "\tstruct slot_head *slot = NULL;\n\tif (in_slots(key->space)) {",
                        "\treturn;\n\tstruct slot_head *slot = NULL;\n\tif (in_slots(key->space)) {"),
    "no time (jiffies)": ("objects.h", "obj->ts = bpf_jiffies64();", "obj->ts = 0;"),
    "nothing past the filter": ("objects.h", "obj->ts = bpf_jiffies64();", "return;"),
}
PROGRAMS = ("alloc_kmem_cache", "alloc_kmalloc", "free_kmem_cache_free_0", "free_kfree_0")


def variant_tree(dest: str, ablation) -> str:
    """A copy of the package with ``ablation`` applied: the folder to run it in."""
    shutil.copytree(os.path.join(ROOT, "bpftrace_leak"), os.path.join(dest, "bpftrace_leak"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    if ablation:
        name, line, instead = ablation
        path = os.path.join(dest, "bpftrace_leak", "probes", name)
        with open(path) as f:
            text = f.read()
        if text.count(line) != 1:
            raise SystemExit(f"bench/ablation.py: probes/{name} no longer has exactly one {line!r}")
        with open(path, "w") as f:
            f.write(text.replace(line, instead))
    return dest


def revision_tree(dest: str, rev: str) -> str:
    """The package as git revision ``rev`` has it: the folder to run it in."""
    os.makedirs(dest)
    archive = subprocess.run(["git", "-C", ROOT, "archive", rev, "bpftrace_leak"], capture_output=True, check=False)
    if archive.returncode:
        raise SystemExit(f"bench/ablation.py: no revision {rev!r}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", dest], input=archive.stdout, check=True)
    return dest


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--base", metavar="REV", help="also run the probes of git revision REV, as the first row")
    ap.add_argument("--only", action="store_true", help="no ablations: the tree as built (and --base)")
    args = ap.parse_args()
    tree = find_headers(warn=lambda m: None)
    if tree:
        os.environ["BCC_KERNEL_SOURCE"] = tree
    kleak = [sys.executable, "-m", "bpftrace_leak.cli", "--format", "json", "--kinds", "allocs"]
    with tempfile.TemporaryDirectory() as d:
        exe = build_storm(d)
        runs = {}
        trees = {}
        if args.base:
            trees[f"revision {args.base}"] = revision_tree(os.path.join(d, "base"), args.base)
        for i, (name, ablation) in enumerate(ABLATIONS.items()):
            if ablation and args.only:
                continue
            trees[name] = variant_tree(os.path.join(d, f"v{i}"), ablation)
        for name, cwd in trees.items():

            def run(cwd=cwd):
                stats = {}
                rate, _ = with_tracer(kleak, "Hit Ctrl-C", exe, args.seconds, target_pid=True, stats=stats, cwd=cwd)
                return rate, {p: ns / runs for p, (runs, ns) in stats.items() if p in PROGRAMS and runs}
            runs[name] = run
        results = interleaved(runs, args.rounds, lambda v: f"{v[0]:,.0f} cycles/s, "
                              + ", ".join(f"{p} {ns:.0f}" for p, ns in sorted(v[1].items())))
    print(f"kleaktrace -p on the allocation storm, one part of the probes left out at a time; median of "
          f"{args.rounds} rounds of {args.seconds:g} s, ns per run with kernel.bpf_stats_enabled (itself ~55 ns)")
    print(f"  {'variant':32} {'storm':>9} " + " ".join(f"{p[:22]:>22}" for p in PROGRAMS))
    base = None
    for name, vals in results.items():
        med = {p: statistics.median(v[1].get(p, 0.0) for v in vals) for p in PROGRAMS}
        base = base or med
        cells = " ".join(f"{med[p]:>13.0f} ({med[p] - base[p]:+4.0f})" for p in PROGRAMS)
        print(f"  {name:32} {statistics.median(v[0] for v in vals):>9,.0f} {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
