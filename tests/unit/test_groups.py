from bpftrace_leak.analysis.groups import Obj, age_and_group, kmalloc_cache_name, select

S = 1_000_000_000


def obj(ts, stack=1, cache="filp", kind="slab", size=192, tgid=10, comm="a", site=0xffff0001):
    return Obj(kind=kind, cache=cache, bytes=size, ts_ns=ts, tgid=tgid, comm=comm, stack_id=stack, call_site=site)


def test_young_objects_are_not_reported():
    objs = [obj(ts=10 * S), obj(ts=10 * S + S // 2)]
    groups = age_and_group(objs, now_ns=11 * S, min_age_ns=S)
    assert [(g.objects, g.oldest_ns) for g in groups] == [(1, S)]


def test_grouping_key_is_kind_cache_stack():
    objs = [obj(0, stack=1), obj(0, stack=1, tgid=11, comm="b"), obj(0, stack=2),
            obj(0, stack=1, cache="dentry"), obj(0, stack=1, kind="kmalloc", cache="kmalloc-192")]
    groups = {(g.kind, g.cache, g.stack_key): g for g in age_and_group(objs, 5 * S, S)}
    assert len(groups) == 4
    g = groups[("slab", "filp", ("id", 1))]
    assert (g.objects, g.bytes, g.pids, g.comms) == (2, 384, {10, 11}, {"a", "b"})


def test_lost_stacks_group_by_call_site():
    objs = [obj(0, stack=-17, site=0xa), obj(0, stack=-17, site=0xa), obj(0, stack=-17, site=0xb)]
    keys = sorted(g.stack_key for g in age_and_group(objs, 5 * S, S))
    assert keys == [("site", 0xa), ("site", 0xb)]


def test_kmalloc_cache_name():
    assert kmalloc_cache_name(64) == "kmalloc-64"
    assert kmalloc_cache_name(8192) == "kmalloc-8192"
    assert kmalloc_cache_name(16384) is None


def test_cache_filter_follows_merged_aliases():
    aliases = {"signal_cache": {"UNIX", "UNIX-STREAM"}}
    groups = [{"cache": g.cache, "cache_aliases": sorted(aliases.get(g.cache, ()))}
              for g in age_and_group([obj(0, cache="signal_cache"), obj(0, cache="filp", stack=2)], 5 * S, S)]
    assert [g["cache"] for g in select(groups, cache="UNIX*")] == ["signal_cache"]
    assert [g["cache"] for g in select(groups, cache="fil?")] == ["filp"]
    assert select(groups, cache="dentry") == []
    assert len(select(groups, cache=None)) == 2
