"""Builds the report, the stable ``kleaktrace.report/1`` document, from a snapshot.

Rendering it as text or JSON is reporter.py's job; this module decides what
is in it: aged groups, symbolized and trimmed stacks, totals and warnings.
"""

from .aliases import eliminate, owner
from .referee import referee
from .cgroups import cgroup_fields, span
from .groups import Group, age_and_group, by_cgroup, select, sort_groups
from .holders import group_verdicts
from .refs import group_refs
from .schema import REPORT_SCHEMA as SCHEMA
from .symbols import backs_other_kind, is_slab_bookkeeping, is_user_page_stack, trim_allocator_frames

__all__ = ["SCHEMA", "build_report", "final_groups", "group_stacks", "assemble"]

_PAGE_KINDS = ("page", "user-page")


def group_stacks(groups: list[Group], raw_frames, site_name, user_pages: bool = False) -> list[Group]:
    """Give each group its trimmed stack and merge groups whose stacks then match.

    ``raw_frames(stack_id)`` returns all frames innermost first,
    ``site_name(addr)`` one symbol. Page groups that are slab, percpu or
    vmalloc refilling their backing store are dropped: those objects are
    counted under their own kind; so are the slab allocator's own objects
    (obj_exts vectors, sheaves). Page groups allocated for the page cache or
    anonymous memory become ``user-page``, kept only when ``user_pages``.
    """
    merged: dict[tuple, Group] = {}
    for g in groups:
        how, value = g.stack_key
        if how == "id":
            raw = raw_frames(value) or ["[stack lost]"]
        else:
            raw = [site_name(value) if value else "[unknown]", "[stack not recorded]"]
        if g.kind in _PAGE_KINDS and backs_other_kind(raw) or is_slab_bookkeeping(raw):
            continue
        if g.kind == "page" and is_user_page_stack(raw):
            g.kind = "user-page"
        if g.kind == "user-page" and not user_pages:
            continue
        g.stack = trim_allocator_frames(raw)
        key = (g.kind, g.cache, tuple(g.stack), g.cgroup)
        if key in merged:
            merged[key].merge(g)
        else:
            merged[key] = g
    return list(merged.values())


def _owner(g: Group, aliases: dict) -> dict:
    """The group's ``cache_owner`` (which merged name it belongs to, or null)
    and, for a merged cache whose owner cannot be told, ``cache_candidates``."""
    if g.kind != "slab" or not g.cache or not aliases.get(g.cache):
        return {}
    name, candidates = owner(g.cache, aliases[g.cache], g.stack)
    return {"cache_owner": name} if name else {"cache_owner": None, "cache_candidates": candidates}


def final_groups(snapshot, symbolizer, *, user_pages: bool = False, cache_glob: str | None = None,
                 aliases: dict | None = None, split_by: str | None = None) -> list[Group]:
    """The groups a report shows, before they become its dicts: aged (the
    reader left out younger objects, on the kernel's clock), with trimmed
    stacks, the slab's and page cache's own left out, matching --cache."""
    groups = age_and_group(snapshot.objects, snapshot.now_ns, 0, by_cgroup=split_by == "cgroup")
    groups = group_stacks(groups, symbolizer.raw_frames, symbolizer.name, user_pages)
    if cache_glob:
        aliases = aliases or {}
        groups = [g for g in groups if select([{"cache": g.cache, "cache_aliases": sorted(aliases.get(g.cache, ()))}],
                                              cache=cache_glob)]
    return groups


def build_report(snapshot, symbolizer, *, kernel: str, started: str, duration_s: float,
                 min_age_ms: int, targets: list[int],
                 cache_glob: str | None = None, aliases: dict | None = None,
                 user_pages: bool = False, refs_tracking: str = "off", cgroup_name=None,
                 sample_bytes: int = 0, cgroup_filter=(), scan: dict | None = None, split_by: str | None = None,
                 ) -> dict:
    """The report as a JSON-ready dict, groups sorted by bytes, largest first
    (orphans first when the holder scan ran).

    ``refs_tracking`` says how references were tracked ("kprobe") or why not.
    """
    aliases = aliases or {}
    verdicts = scan["by_key"] if scan and "by_key" in scan else None
    groups = [_group(g, aliases, cgroup_name, split_by, verdicts)
              for g in final_groups(snapshot, symbolizer, user_pages=user_pages, cache_glob=cache_glob,
                                    aliases=aliases, split_by=split_by)]
    eliminate(groups)
    groups = sort_groups(groups)
    if verdicts is not None:  # orphans outrank what something holds
        groups.sort(key=lambda g: not (g.get("orphaned") or g.get("orphan_cycle")))
    return {
        "schema": SCHEMA,
        "kernel": kernel,
        "started": started,
        "duration_s": round(duration_s, 3),
        "min_age_ms": min_age_ms,
        "targets": sorted(targets),
        **({"cgroup_filter": list(cgroup_filter)} if cgroup_filter else {}),
        **({"scan": scan["section"]} if scan else {}),
        "totals": _totals(snapshot, groups),
        "groups": groups,
        "cgroups": by_cgroup(groups) if cgroup_name else [],
        "span": span(groups),
        "sampling_bytes": sample_bytes,
        "refs_tracking": refs_tracking,
        # the kernel side keeps every hold: aged here
        "refs": [_ref(r, symbolizer) for r in group_refs(snapshot.ref_holds, snapshot.now_ns, min_age_ms * 1_000_000)],
    }


def _group(g: Group, aliases: dict, cgroup_name, split_by, verdicts) -> dict:
    """A report group (schema.py lists its fields) of a Group."""
    return {
        "kind": g.kind,
        "cache": g.cache,
        "cache_aliases": sorted(aliases.get(g.cache, ())) if g.cache else [],
        **_owner(g, aliases),
        "objects": g.objects,
        "bytes": g.bytes,
        "oldest_ms": g.oldest_ns // 1_000_000,
        "pids": sorted(g.pids),
        "comms": sorted(g.comms),
        "stack": g.stack,
        "site_stack_objects": g.site_stack_objects,
        **cgroup_fields(g.cgroups, g.stack, cgroup_name, split_by),
        **(group_verdicts(g.keys, verdicts) if verdicts is not None else {}),
    }


#: the report's totals: {name: the kernel side's counter}
_COUNTERS = {"allocs": "allocs", "frees": "frees", "missed_frees": "missed_frees", "dropped": "dropped",
             "stack_errors": "stack_errors", "stack_collisions": "stack_collisions", "stack_table_full": "stack_full",
             "freed_with_slab": "freed_with_slab", "freed_by_rcu": "freed_by_rcu", "found_free": "found_free",
             "own_stacks": "own_stacks", "failed_allocs": "failed_allocs"}


def _totals(snapshot, groups: list[dict]) -> dict:
    c = snapshot.counters
    totals = {"objects": sum(g["objects"] for g in groups), "bytes": sum(g["bytes"] for g in groups)}
    totals.update({name: c.get(counter, 0) for name, counter in _COUNTERS.items()})
    totals["skipped_frees"] = snapshot.skipped_frees
    return totals


def _ref(r, symbolizer) -> dict:
    def frames(stack_id):
        return (symbolizer.raw_frames(stack_id) or ["[stack lost]"]) if stack_id is not None and stack_id >= 0 else []
    return {"object": r.object_type, "objects": len(r.objects), "net": r.net, "why": r.why,
            "names": sorted(r.names)[:50], "oldest_ms": r.oldest_ns // 1_000_000, "pids": sorted(r.pids),
            "comms": sorted(r.comms), "stack": frames(r.stack_id), "put_stack": frames(r.put_stack_id)}


def assemble(c) -> tuple[dict, dict]:
    """(the report document, the slab facts it was refereed by) of a live
    session's tracer.collect.Collected: the one function that makes a live
    report; it reads nothing from the kernel."""
    report = build_report(c.snapshot, c.symbolizer, scan=c.scan, **c.context)
    report["by"] = c.by
    report["sockets"] = c.sockets
    if c.referee:
        aliases = c.context.get("aliases") or {}
        referee(report, {name: row["objects"] for name, row in c.facts["caches"].items()}, aliases)
    if c.census is not None:
        report["census"] = c.census
    report["tracer_maps_bytes"] = c.maps_bytes
    return report, c.facts
