#!/usr/bin/env python3
"""Compares a lab report with what the driver planted; writes OUT/<scenario>.json.

Usage: labcheck.py EXPECTED.json REPORT.json OUT [LABEL EXPECTED.json REPORT.json ...]
Exit 0 only when every planted leak is found with its exact count and a stack
through the module's function, and no decoy is reported. Reference-count
scenarios are "pending" when the report says references were not tracked.
Each further (LABEL, EXPECTED, REPORT) is a session that ran only some
scenarios (e.g. the reference ones with --refs-via kprobe): checked the same
way, its rows named SCENARIO@LABEL, its files OUT/SCENARIO@LABEL.json. The
session labelled "census" ran the reference scenarios with --refs-via none:
its reference census is checked instead (check_census).
"""

import json
import os
import sys

from bpftrace_leak.analysis.holders import VERDICTS

# scenario: (module function, what to count, objects per trigger, kind of check)
#   "leak": the count must equal objects per trigger x times
#   "decoy": nothing may be reported through the function
#   "refs": reference-count leak: +per x times references on that many dentries and
#           on the vfsmount, leaked by a path_put on a cleared path
#   "refs-decoy": no reference finding through the function
SCENARIOS = {
    "kmalloc": ("kleaklab_leak_kmalloc", None, 3, "leak"),
    "cache": ("kleaklab_leak_cache", None, 1, "leak"),
    # a kernel socket: count its socket inode (sock_inode_cache)
    "socket": ("kleaklab_leak_socket", "sock_alloc_inode", 1, "leak"),
    "percpu": ("kleaklab_leak_percpu", None, 1, "leak"),
    "pathref": ("kleaklab_pathref", None, 1, "refs"),
    "decoy_park": ("kleaklab_decoy_park", None, 0, "decoy"),
    "decoy_rcu": ("kleaklab_decoy_rcu", None, 0, "decoy"),
    "decoy_ref": ("kleaklab_decoy_ref", None, 0, "refs-decoy"),
    # one object of a cache with sheaves kept per call, while 16 more of it are
    # bulk-allocated and bulk-freed through the same function
    "sheaf": ("kleaklab_leak_sheaf", None, 1, "leak"),
    "decoy_bulk": ("kleaklab_decoy_bulk", None, 0, "decoy"),
    "decoy_rcuvol": ("kleaklab_decoy_rcuvol", None, 0, "decoy"),
    # thousands of fork+exec+exit: nothing the forks made (task structs, mm,
    # vmas, maple nodes: stacks through copy_process) nor anything the children
    # allocated may stay outstanding
    "decoy_churn": ("copy_process", None, 0, "churn"),
    # the holder scan: every object orphaned, every one in an orphan cycle,
    # every one held (and one by the module's list head `kept`)
    "orphan": ("kleaklab_orphan", None, 1, "orphan"),
    "cycle": ("kleaklab_cycle", None, 2, "cycle"),
    "hold": ("kleaklab_hold", None, 1, "held"),
}
#: the verdict each holder-scan check wants of every object it counts
VERDICT = {"orphan": "orphaned", "cycle": "orphan_cycle", "held": "held"}
VERDICT_SCENARIOS = ("orphan", "cycle", "hold")
CHURN_COMM = "kleaklab-churn"  # driver.py's


def through(group: dict, func: str) -> bool:
    return any(frame.split("+", 1)[0] == func for frame in group["stack"])


def pid_idr_node(group: dict) -> bool:
    """A group of radix tree nodes alloc_pid() added to the pid idr, every
    one of them found held by the holder scan."""
    return group.get("cache") == "radix_tree_node" and through(group, "alloc_pid") \
        and group.get("held", 0) == group["objects"] > 0


def check_refs(refs: list, func: str, how: str, expected: int) -> tuple[int, str]:
    """(references found on dentries, status) for a reference-count scenario."""
    mine = [r for r in refs if through(r, func)]
    if how == "refs-decoy":
        return sum(r["net"] for r in mine), "pass" if not mine else "FAIL"
    leaked = [r for r in mine if r["why"] == "put on a cleared path"]
    dentry = sum(r["net"] for r in leaked if r["object"] == "dentry")
    dentries = sum(r["objects"] for r in leaked if r["object"] == "dentry")
    mounts = sum(r["net"] for r in leaked if r["object"] == "vfsmount")
    ok = dentry == expected and dentries == expected and mounts == expected and len(mine) == len(leaked)
    return dentry, "pass" if ok else "FAIL"


def check(times: dict, report: dict) -> tuple[list[dict], dict]:
    rows, per_scenario = [], {}
    errors = times.pop("_errors", {})
    tracked = report.get("refs_tracking", "off").startswith(("kprobe", "fentry"))
    for name, (func, must_have, per, how) in SCENARIOS.items():
        if name not in times:
            continue
        groups = [g for g in report["groups"] if through(g, func)
                  or (how == "churn" and CHURN_COMM in g.get("comms", []))]
        counted = [g for g in groups if must_have is None or through(g, must_have)]
        found = sum(g["objects"] for g in counted)
        expected = per * times[name] if how in ("leak", "refs", *VERDICT) else 0
        refs = [r for r in report.get("refs", []) if through(r, func)]
        extra = {}
        if how.startswith("refs"):
            if tracked:
                found, status = check_refs(report["refs"], func, how, expected)
            else:
                found, status = 0, "pending"
        elif how == "churn":
            # a node of the pid idr one of the churn's forks added, still in
            # the tree because a task forked meanwhile outside it (a kworker)
            # has its pid there: alive and held, no phantom (6.12, 1 in 5 runs)
            phantoms = [g for g in groups if not pid_idr_node(g)]
            found = sum(g["objects"] for g in phantoms)
            status = "pass" if not phantoms else "FAIL"
        elif how == "decoy":
            status = "pass" if not groups else "FAIL"
        elif how in VERDICT:
            found = sum(g.get(VERDICT[how], 0) for g in counted)
            held_by_kept = how != "held" or any("kept" in h["holder"] for g in counted for h in g.get("holders", []))
            status = "pass" if found == expected == sum(g["objects"] for g in counted) and held_by_kept else "FAIL"
            if status == "FAIL":  # what held them: the CI log shows the row, not OUT/
                extra["holders"] = [h for g in counted for h in g.get("holders", [])]
                extra["verdicts"] = {v: sum(g.get(v, 0) for g in counted) for v in VERDICTS}
                if (report.get("scan") or {}).get("skipped"):  # no verdicts at all: why
                    extra["scan"] = report["scan"]["skipped"]
        else:
            status = "pass" if found == expected and counted else "FAIL"
        if name in errors:  # the driver could not run it
            status = f"FAIL (driver: {errors[name]})"
        rows.append({"scenario": name, "kind": how, "function": func, "expected": expected,
                     "found": found, "status": status} | extra)
        sub = dict(report, groups=groups, refs=refs)
        sub["totals"] = dict(report["totals"], objects=sum(g["objects"] for g in groups),
                             bytes=sum(g["bytes"] for g in groups))
        per_scenario[name] = sub
    scan = report.get("scan") or {}
    if "differ" in scan:  # --scan-via both: /proc/kcore's read against BPF's, object for object
        # on the planted objects; elsewhere the kernel runs on between the two
        # reads (the count of those is in the scan section)
        planted = [g for name in VERDICT_SCENARIOS if name in per_scenario for g in per_scenario[name]["groups"]]
        differ = sum(g.get("scan_differ", 0) for g in planted)
        rows.append({"scenario": "scan@kcore", "kind": "agree", "function": "-", "expected": 0,
                     "found": differ, "status": "pass" if planted and differ == 0 else "FAIL"})
        per_scenario["scan@kcore"] = {"kernel": report["kernel"], "scan": scan}
    return rows, per_scenario


def check_census(times: dict, report: dict) -> tuple[list[dict], dict]:
    """The reference census of a session that ran pathref and decoy_ref with
    path_get/path_put unprobed: pathref's N files are N dentries with exactly
    one unexplained reference each (names f0..fN-1), their mount has N more
    unexplained references than at the start, and nothing in decoy_ref's
    folder is unexplained."""
    times.pop("_errors", None)
    c = report.get("census") or {}
    rows, per = [], {}
    for name in ("pathref", "decoy_ref"):
        if name not in times:
            continue
        n = times[name]
        mine = [d for d in c.get("unexplained", []) if f"/kleaklab-{name}-" in d["path"]]
        if name == "pathref":
            names = sorted(d["name"] for d in mine if d["unexplained"] == 1)
            mounts = [m for m in c.get("mounts", []) if m["since_start"] == n]
            ok = names == sorted(f"f{i}" for i in range(n)) and len(mine) == n and len(mounts) == 1
            found, expected = len(names), n
        else:
            ok, found, expected = not mine, len(mine), 0
        rows.append({"scenario": name, "kind": "census", "function": "-", "expected": expected,
                     "found": found, "status": "pass" if c and ok else "FAIL"})
        per[name] = {"kernel": report["kernel"], "census": c, "unexplained_here": mine}
    return rows, per


def load_report(path: str):
    with open(path) as f:
        lines = [line for line in f if line.startswith("{")]
    return json.loads(lines[-1]) if lines else None


def main(argv):
    out = argv[2]
    sessions = [("", argv[0], argv[1])] + [tuple(argv[i:i + 3]) for i in range(3, len(argv), 3)]
    rows, report = [], None
    for label, expected_path, report_path in sessions:
        with open(expected_path) as f:
            times = json.load(f)
        this = load_report(report_path)
        if this is None:
            print(f"lab: the tracer wrote no report{' for ' + label if label else ''}", file=sys.stderr)
            return 1
        report = report or this
        these, per_scenario = (check_census if label == "census" else check)(times, this)
        suffix = f"@{label}" if label else ""
        for row in these:
            row["scenario"] += suffix
        rows += these
        for name, sub in per_scenario.items():
            with open(os.path.join(out, f"{name}{suffix}.json"), "w") as f:
                json.dump(sub, f, indent=1)
    summary = {"kernel": report["kernel"], "scenarios": rows,
               "passed": all(not r["status"].startswith("FAIL") for r in rows)}
    with open(os.path.join(out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    text = [f"{'scenario':18} {'check':10} {'expected':>8} {'found':>6}  status"]
    text += [f"{r['scenario']:18} {r['kind']:10} {r['expected']:>8} {r['found']:>6}  {r['status']}" for r in rows]
    with open(os.path.join(out, "summary.txt"), "w") as f:
        f.write("\n".join(text) + "\n")
    for line in text:
        print(f"lab: {line}")
    return 0 if summary["passed"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
