import json

from bpftrace_leak.analysis.groups import Obj
from bpftrace_leak.analysis.report import SCHEMA, build_report
from bpftrace_leak.reporter import limit, render_json, render_text, warnings
from bpftrace_leak.tracer.reader import Snapshot

S = 1_000_000_000
STACKS = {
    1: ["kmem_cache_alloc_noprof+0x230", "alloc_empty_file+0x3c", "path_openat+0x40"],
    2: ["kmem_cache_alloc_noprof+0x230", "alloc_empty_file+0x3c", "path_openat+0x40"],  # same after trim
    3: ["kmem_cache_alloc_lru_noprof+0x235", "sock_alloc_inode+0x1e", "__sys_socketpair+0xd5"],
    4: ["__alloc_pages_noprof+0x1", "allocate_slab+0x9", "___slab_alloc+0x3"],
    5: ["__alloc_pages_noprof+0x1", "filemap_alloc_folio_noprof+0x9", "ext4_da_write_begin+0x2"],
    6: ["__alloc_pages_noprof+0x1", "pipe_write+0x99"],
}


class FakeSymbolizer:
    """Stands in for BCC's stack table: report building is pure logic."""

    def raw_frames(self, sid):
        return STACKS.get(sid, [])

    def name(self, addr):
        return f"site_{addr:x}+0x0"


def o(kind, cache, size, stack, ts=0, tgid=7):
    return Obj(kind=kind, cache=cache, bytes=size, ts_ns=ts, tgid=tgid, comm="w", stack_id=stack, call_site=0x99)


def snapshot(objs, **counters):
    skipped = counters.pop("skipped", 0)
    base = {"allocs": 10, "frees": 4, "missed_frees": 0, "dropped": 0, "stack_errors": 0, "failed_allocs": 0}
    base.update(counters)
    return Snapshot(now_ns=10 * S, objects=objs, counters=base, skipped_frees=skipped)


def report(objs, **kw):
    args = dict(kernel="6.18", started="2026-11-25T00:00:00+00:00", duration_s=3.0, min_age_ms=1000, targets=[7])
    args.update(kw)
    counters = args.pop("counters", {})
    return build_report(snapshot(objs, **counters), FakeSymbolizer(), **args)


def test_groups_merge_after_trim_and_sort_by_bytes():
    r = report([o("slab", "filp", 192, 1), o("slab", "filp", 192, 2), o("slab", "sock_inode_cache", 832, 3)])
    assert [(g["cache"], g["objects"], g["bytes"]) for g in r["groups"]] == [
        ("sock_inode_cache", 1, 832), ("filp", 2, 384)]
    assert r["groups"][1]["stack"] == ["alloc_empty_file+0x3c", "path_openat+0x40"]
    assert r["totals"]["objects"] == 3 and r["totals"]["bytes"] == 1216


def test_slab_backing_pages_dropped_and_page_cache_is_user_page():
    objs = [o("page", None, 4096, 4), o("page", None, 4096, 5), o("page", None, 4096, 6)]
    r = report(objs)
    assert [(g["kind"], g["stack"][0]) for g in r["groups"]] == [("page", "pipe_write+0x99")]
    r = report(objs, user_pages=True)
    assert sorted(g["kind"] for g in r["groups"]) == ["page", "user-page"]


def test_top_limits_groups_not_totals():
    objs = [o("slab", "filp", 192, 1), o("slab", "sock_inode_cache", 832, 3)]
    r = limit(report(objs), 1)
    assert len(r["groups"]) == 1 and r["totals"]["objects"] == 2


def test_json_schema_fields():
    r = json.loads(render_json(report([o("slab", "filp", 192, 1)])))
    assert r["schema"] == SCHEMA
    assert set(r) >= {"schema", "kernel", "started", "duration_s", "min_age_ms", "targets", "totals", "groups"}
    assert set(r["totals"]) >= {"objects", "bytes", "allocs", "frees", "missed_frees", "dropped", "skipped_frees"}
    g = r["groups"][0]
    assert set(g) >= {"kind", "cache", "objects", "bytes", "oldest_ms", "pids", "comms", "stack"}
    assert g["oldest_ms"] == 10_000 and g["pids"] == [7]


def test_text_warns_on_drops_missed_and_skipped_frees():
    clean = report([o("slab", "filp", 192, 1)])
    assert warnings(clean) == []
    assert "warning" not in render_text(clean)
    r = report([o("slab", "filp", 192, 1)], counters={"dropped": 5, "missed_frees": 3, "skipped": 2})
    text = render_text(r)
    assert "5 allocations not recorded" in text
    assert "3 addresses were handed out again" in text
    assert "up to 2 free events" in text
    assert "[1] slab filp: 1 objects, 192 B" in text


def test_text_escapes_control_characters_named_by_others():
    from bpftrace_leak.reporter import printable, render_diff, render_folded
    evil = "\x1b[2J\x1b]0;owned\x07\u202egnp.exe\r\n"
    r = report([o("slab", "filp", 192, 1)])
    g = r["groups"][0]
    g.update(comms=[evil], cache=evil, cache_aliases=[evil], stack=[evil, "path_openat+0x40"])
    r["kernel"] = evil
    r["refs_tracking"] = "kprobe"
    r["refs"] = [{"object": "dentry", "objects": 1, "net": 1, "why": evil, "names": [evil], "oldest_ms": 1,
                  "pids": [7], "comms": [evil], "stack": [evil], "put_stack": [evil]}]
    r["sockets"] = [{"pid": 7, "family": evil, "state": evil, "count": 1, "examples": []}]
    for text in (render_text(r), render_folded(r),
                 render_diff([dict(g, delta_objects=1, delta_bytes=1, new=True)], evil, evil)):
        assert not any(c in text for c in "\x1b\x07\r\u202e"), text
        assert "\\x1b[2J" in text
    assert printable("plain name+0x1") == "plain name+0x1"
    assert printable("a\tb") == "a\\x09b"
    folded = render_folded(r).splitlines()
    assert len(folded) == 1 and folded[0].count(" ") == 1  # one line, one count


def test_slab_bookkeeping_is_not_reported():
    STACKS[7] = ["__kmalloc_noprof+0x1", "alloc_empty_sheaf+0x1f", "__kfree_rcu_sheaf+0x1be", "kvfree_call_rcu+0x1fd"]
    STACKS[8] = ["__kmalloc_noprof+0x1", "alloc_slab_obj_exts+0x58", "allocate_slab+0xe3", "___slab_alloc+0x896"]
    r = report([o("kmalloc", "kmalloc-512", 512, 7), o("kmalloc", "kmalloc-192", 192, 8), o("slab", "filp", 192, 1)])
    assert [g["cache"] for g in r["groups"]] == ["filp"]


def test_merged_cache_named_after_the_alias_its_stack_belongs_to():
    from bpftrace_leak.analysis.aliases import owner
    merged = {"UNIX", "UNIX-STREAM", "task_delay_info"}
    stack = ["sk_prot_alloc+0x3a", "sk_alloc+0x35", "unix_create1+0x6b", "unix_create+0x54", "__sock_create+0x117"]
    assert owner("signal_cache", merged, stack) == ("UNIX", ["UNIX", "UNIX-STREAM"])
    damon = ["damon_new_region+0x1f", "damon_split_region_at+0x30", "kdamond_fn+0x3fa"]
    assert owner("ftrace_event_field", {"damon_region", "Acpi-Parse"}, damon)[0] == "damon_region"
    assert owner("signal_cache", merged, ["copy_process+0x1", "kernel_clone+0x2"]) == \
        (None, ["UNIX", "UNIX-STREAM", "signal_cache", "task_delay_info"])
    assert owner("filp", set(), stack) == ("filp", ["filp"])
    r = report([o("slab", "signal_cache", 1152, 3)], aliases={"signal_cache": merged})
    text = render_text(r)
    assert "one of: UNIX, UNIX-STREAM, signal_cache, task_delay_info (merged into signal_cache)" in text


def test_a_full_map_is_said_in_the_header():
    """Issue #24 G: with the live map full the header showed partial counts
    as if complete; the warning was at the very bottom."""
    r = report([o("slab", "filp", 192, 1)], counters={"dropped": 5})
    lines = render_text(r).splitlines()
    first_group = next(i for i, line in enumerate(lines) if line.startswith("[1]"))
    warned = next(i for i, line in enumerate(lines) if "5 allocations not recorded" in line)
    assert warned < first_group and "every count here may be short" in lines[warned]


def test_a_cgroup_filter_is_named_in_the_header():
    """Issue #24 C: the header said "all processes" for --cgroup."""
    r = report([o("slab", "filp", 192, 1)])
    r["targets"], r["cgroup_filter"] = [], ["/system.slice/app.service"]
    assert "[cgroup /system.slice/app.service (and below);" in render_text(r).splitlines()[0]
