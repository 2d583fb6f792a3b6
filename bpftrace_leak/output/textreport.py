"""The text report: what a person reads in a terminal, from a
``kleaktrace.report/1`` document (analysis/report.py makes it).

Text goes to terminals, and much of it is named by others: a process names
itself (prctl PR_SET_NAME), a user names files, a capture may be made up.
Every string passes through printable() (bpftrace_leak/text.py), so an
escape sequence is shown, never obeyed.
"""

from ..text import human_bytes, printable
from .censustext import census_lines

__all__ = ["render_text", "warnings", "scan_line"]


def _names(items, n) -> str:
    return ", ".join(printable(x) for x in items[:n])


def warnings(report: dict) -> list[str]:
    """What makes the counts less than exact, one sentence each."""
    t = report["totals"]
    out = []
    if t.get("skipped_frees"):
        out.append(
            f"the kernel skipped up to {t['skipped_frees']:,} free events (BPF recursion, a free inside an "
            "interrupt while another ran): a slab object so missed is retired when its address is handed out "
            "again or its slab page freed (the census); up to that many others may be phantoms"
        )
    if t.get("unverified_objects"):
        out.append(
            f"{t['unverified_objects']:,} reported objects exceed the kernel's own count of live objects in "
            "their caches (/proc/slabinfo): phantoms, freed by paths no tracepoint shows; their groups say so"
        )
    if t.get("missed_frees"):
        out.append(
            f"{t['missed_frees']:,} addresses were handed out again while still recorded: "
            "their frees were not seen, the stale records were retired"
        )
    if t.get("dropped"):
        out.append(f"incomplete: {t['dropped']:,} allocations not recorded, the live map was full "
                   "(raise --max-objects): every count here may be short")
    full = t.get("stack_table_full", 0)
    if full:
        out.append(f"{full:,} stacks not recorded: the stack table is full (raise --stack-slots)")
    collided = t.get("stack_errors", 0) - full
    if collided > 0:
        out.append(f"{collided:,} stacks not recorded: their hash bucket in the stack table held another "
                   "stack, a retry too (a larger --stack-slots makes collisions rarer); "
                   "those objects are grouped by call site")
    return out


def render_text(report: dict) -> str:
    """The report for a terminal: its header, the census, the groups, the
    sockets, the references."""
    lines = _header(report)
    if report.get("by") == "cgroup":
        lines.extend(_cgroup_table(report))
    if report.get("census"):
        lines.extend(census_lines(report["census"]))
    for i, g in enumerate(report["groups"], 1):
        lines.extend(_group(i, g))
    lines.extend(_sockets(report))
    if not report["groups"]:
        lines += ["", "no outstanding allocations older than the minimum age"]
    lines.extend(_refs_text(report))
    return "\n".join(lines) + "\n"


def _header(report: dict) -> list[str]:
    """What was traced, the data quality (warnings first: a full map makes
    every count below a partial one), how the groups were ranked, the scan."""
    t = report["totals"]
    if report["targets"]:
        who = ", ".join(map(str, report["targets"]))
    elif report.get("cgroup_filter"):
        who = "cgroup " + ", ".join(printable(c) for c in report["cgroup_filter"]) + " (and below)"
    else:
        who = "all processes"
    lines = [
        f"kleaktrace: {len(report['groups'])} groups shown, {t['objects']:,} objects, "
        f"{human_bytes(t['bytes'])} outstanding for at least {report['min_age_ms']} ms "
        f"[{who}; kernel {printable(report['kernel'])}; {report['duration_s']:.1f} s]",
        f"  allocs {t.get('allocs', 0):,}  frees {t.get('frees', 0):,}  missed frees {t.get('missed_frees', 0):,}  "
        f"dropped {t.get('dropped', 0):,}  skipped frees {t.get('skipped_frees', 0):,}",
    ]
    if report.get("headline"):
        lines.append(f"  leak rate: {printable(report['headline'])}")
    lines.extend(f"  warning: {w}" for w in warnings(report))
    if report.get("span", {}).get("cgroups", 0) > 1:
        sp = report["span"]
        lines.append(f"  the groups span {sp['cgroups']:,} cgroups"
                     + (f" and {sp['containers']:,} containers" if sp.get("containers") else ""))
    if report.get("sampling_bytes"):
        lines.append(f"  sampled: an allocation of S bytes was kept with probability S/{report['sampling_bytes']:,}; "
                     "objects and bytes are weighed estimates")
    if report.get("ranked_by") == "growth":
        lines.append(f"  ranked by growth over the last {report['snapshots']} snapshots "
                     f"({report.get('growth_window_s', 0):.0f} s), then by bytes")
    if report.get("tracer_maps_bytes"):
        lines.append(f"  kleaktrace's own BPF maps: {human_bytes(report['tracer_maps_bytes'])} (not in the groups)")
    if report.get("scan"):
        lines.append(scan_line(report["scan"]))
    return lines


def _group(i: int, g: dict) -> list[str]:
    """Group ``i``: what, how much, whose, where, growing how, why alive, its stack."""
    procs = ", ".join(f"{p}" for p in g["pids"][:8]) + (" ..." if len(g["pids"]) > 8 else "")
    lines = ["", f"[{i}] {printable(g['kind'])} {_cache_label(g)}: {g['objects']:,} objects, "
                 f"{human_bytes(g['bytes'])}, oldest {g['oldest_ms'] / 1000:.1f} s, pids {procs} "
                 f"({_names(g['comms'], 4)})"]
    if g.get("cgroup"):
        lines.append(f"      cgroup {printable(g['cgroup'])}"
                     + (f" ({printable(g['container'])})" if g.get("container") else "")
                     + (": the cgroup's own struct mem_cgroup, which the kernel keeps while the cgroup dies"
                        if g.get("cgroup_own") else ""))
    elif g.get("cgroups"):
        lines.append(f"      {_cgroups_line(g)}")
    if "bytes_per_h" in g:
        lines.append(f"      growth: {human_bytes(max(0, int(g['bytes_per_h'])))}/h, "
                     f"{g['objects_per_h']:+,.0f} objects/h")
    if g.get("unverified_objects"):
        lines.append(f"      unverified: the kernel counts {g['kernel_active']:,} live objects in this cache "
                     f"(/proc/slabinfo), fewer than reported: up to {g['unverified_objects']:,} of these "
                     "were freed without an event kleaktrace could see")
    if "held" in g:
        lines.append(f"      {_verdict_line(g)}")
    if g.get("site_stack_objects"):
        lines.append(f"      stack first seen at this call site, for {g['site_stack_objects']:,} "
                     f"of the objects (--stacks all takes each one's own)")
    return lines + [f"      {printable(frame)}" for frame in g["stack"]]


def _sockets(report: dict) -> list[str]:
    if not report.get("sockets"):
        return []
    lines = ["", "sockets held by the processes of socket groups (sock_diag):"]
    for s in report["sockets"]:
        examples = ", ".join(
            f"inode {e['inode']}" + (f" peer {e['peer']}" if e.get("peer") else "")
            + (f" port {e['sport']}->{e['dport']}" if e.get("sport") is not None else "")
            for e in s.get("examples", [])[:3])
        lines.append(f"  pid {s['pid']}: {s['count']:,} {printable(s['family'])} {printable(s['state'])}"
                     + (f" (e.g. {examples})" if examples else ""))
    return lines


def _cgroups_line(g: dict) -> str:
    """The cgroups a group's objects were allocated in: how many, the top ones."""
    rows, n = g["cgroups"], g.get("cgroup_count", len(g["cgroups"]))
    if n == 1:
        r = rows[0]
        return f"cgroup {printable(r.get('path') or '(none)')}" + \
            (f" ({printable(r['container'])})" if r.get("container") else "") + \
            ("; its own struct mem_cgroup, which the kernel keeps while the cgroup dies" if g.get("cgroup_own") else "")
    removed = sum(1 for r in rows if r.get("removed"))
    top = ", ".join(f"{printable(r.get('path') or '(none)')}"
                    + (f" [{printable(r['container'])}]" if r.get("container") else "") + f" {r['objects']:,}"
                    for r in rows[:4])
    own = "; the cgroups' own struct mem_cgroup, which the kernel keeps while a cgroup dies" \
        if g.get("cgroup_own") else ""
    some = "at least " if n > len(rows) else ""
    return (f"cgroup{'s' if n != 1 else ''}: {n:,}" + (f" ({some}{removed:,} removed)" if removed else "")
            + f": {top}" + (" ..." if n > 4 else "") + own)


def scan_line(s: dict) -> str:
    """The header's line on the holder scan."""
    if s.get("skipped") and s.get("seconds") is not None:  # begun, not finished
        return f"  holder scan: {printable(s['skipped'])} ({s['seconds']:.1f} s): no verdicts"
    if s.get("skipped"):
        return f"  holder scan: not run ({printable(s['skipped'])})"
    differ = f"; /proc/kcore's read disagrees on {s['differ']:,}" if s.get("differ") else \
        ("; /proc/kcore's read agrees on every object" if "differ" in s else "")
    return (f"  holder scan: {s['targets']:,} objects: {s['orphaned']:,} orphaned, {s['orphan_cycle']:,} in orphan "
            f"cycles, {s['held']:,} held, {s['unknown']:,} unknown; read {human_bytes(s['bytes'])} of kernel memory "
            f"in {s['seconds']:.1f} s ({s['passes']} pass{'es' if s['passes'] > 1 else ''} via "
            f"{printable(s['method'])}, {s['unreadable_pages']:,} pages unreadable){differ}")


def _verdict_line(g: dict) -> str:
    """Why a group's objects are alive: orphaned (nothing points at them), in
    orphan cycles, held (and by what), or unknown."""
    parts = []
    if g["orphaned"]:
        parts.append(f"{g['orphaned']:,} ORPHANED (nothing points at them)")
    if g["orphan_cycle"]:
        parts.append(f"{g['orphan_cycle']:,} in ORPHAN CYCLES (only other unreachable objects point at them)")
    if g["held"]:
        by = "; ".join(f"{printable(h['holder'])} ({h['objects']:,})" for h in g.get("holders") or [])
        parts.append(f"{g['held']:,} held" + (f" by {by}" if by else ""))
    if g["unknown"]:
        parts.append(f"{g['unknown']:,} unknown")
    return "alive: " + (", ".join(parts) or "not scanned")


def _cgroup_table(report: dict) -> list[str]:
    """--by cgroup: outstanding objects and bytes per cgroup, per kind."""
    rows = report.get("cgroups") or []
    out = ["", "per cgroup:"]
    if not rows:
        out.append("  (cgroups not recorded)")
    for r in rows:
        kinds = ", ".join(f"{n:,} {printable(k)}" for k, n in sorted((r.get("kinds") or {}).items(),
                                                                      key=lambda kv: -kv[1]))
        name = printable(r["cgroup"] or "(no cgroup recorded)")
        out.append(f"  {name}" + (f" [{printable(r['container'])}]" if r.get("container") else "")
                   + f": {r['objects']:,} objects, {human_bytes(r['bytes'])} ({kinds})")
    return out


def _cache_label(g: dict) -> str:
    """A group's cache as a reader wants it: the merged name it belongs to
    where that can be told, "one of" the names where not, the cache the
    kernel calls it and its other names beside."""
    cache = printable(g["cache"] or "-")
    aliases = g.get("cache_aliases") or []
    if not aliases:
        return cache
    owner = g.get("cache_owner")
    if owner and owner != g["cache"]:
        others = [a for a in aliases if a != owner]
        how = ", by elimination" if g.get("cache_owner_by") == "elimination" else ""
        return f"{printable(owner)} (merged into {cache}" + (f" with {_names(others, 6)}" if others else "") + how + ")"
    if owner:
        return f"{cache} (merged: {_names(aliases, len(aliases))})"
    candidates = g.get("cache_candidates") or [g["cache"], *aliases]
    return f"one of: {_names(candidates, len(candidates))} (merged into {cache})"


def _refs_text(report: dict) -> list[str]:
    tracking = report.get("refs_tracking", "off")
    if tracking == "off":
        return []
    if not tracking.startswith(("kprobe", "fentry")):
        return ["", f"references: not tracked ({printable(tracking)})"]
    out = ["", f"references (path_get/path_put, {printable(tracking)}):"]
    if not report.get("refs"):
        out.append("  no unbalanced path_get older than the minimum age")
    for i, r in enumerate(report.get("refs", []), 1):
        names = ", ".join(f"'{printable(n)}'" for n in r["names"][:5]) + (" ..." if len(r["names"]) > 5 else "")
        noun = r["object"] if r["objects"] == 1 else {"dentry": "dentries"}.get(r["object"], r["object"] + "s")
        out.append(f"[r{i}] +{r['net']:,} references on {r['objects']:,} {printable(noun)} {names} "
                   f"{printable(r['why'])}, pids {', '.join(map(str, r['pids'][:8]))} ({_names(r['comms'], 4)})")
        out.append("      taken at:")
        out.extend(f"        {printable(frame)}" for frame in r["stack"])
        if r["put_stack"]:
            out.append("      put (dropping nothing) at:")
            out.extend(f"        {printable(frame)}" for frame in r["put_stack"])
    return out
