from bpftrace_leak.analysis.referee import kmalloc_size, referee


def group(kind, cache, n):
    return {"kind": kind, "cache": cache, "objects": n, "bytes": n * 64}


def test_kmalloc_sizes():
    assert kmalloc_size("kmalloc-64") == 64 and kmalloc_size("kmalloc-cg-8k") == 8192
    assert kmalloc_size("kmalloc-rnd-05-192") == 192 and kmalloc_size("dma-kmalloc-1k") == 1024
    assert kmalloc_size("kmalloc_buckets") is None and kmalloc_size("filp") is None


def test_slab_cache_bound_and_excess_per_group():
    r = referee({"groups": [group("slab", "maple_node", 600), group("slab", "maple_node", 100),
                            group("slab", "filp", 5)], "totals": {}}, {"maple_node": 650, "filp": 100})
    assert r["totals"]["unverified_objects"] == 50
    assert [g.get("unverified_objects") for g in r["groups"]] == [50, 50, None]
    assert r["groups"][0]["kernel_active"] == 650


def test_kmalloc_bound_counts_every_cache_of_the_size_wherever_merged():
    # kmalloc-cg-64 was merged into "pid": its objects are counted on pid's line
    active = {"kmalloc-64": 10, "pid": 30, "kmalloc-rnd-01-64": 5, "kmalloc-128": 1000}
    aliases = {"pid": {"kmalloc-cg-64"}}
    r = referee({"groups": [group("kmalloc", "kmalloc-64", 45)], "totals": {}}, active, aliases)
    assert r["totals"]["unverified_objects"] == 0  # 10 + 30 + 5 = 45: not above
    r = referee({"groups": [group("kmalloc", "kmalloc-64", 46)], "totals": {}}, active, aliases)
    assert r["totals"]["unverified_objects"] == 1


def test_unknown_caches_and_other_kinds_are_not_judged():
    r = referee({"groups": [group("slab", "gone_cache", 5), group("page", None, 9)], "totals": {}}, {})
    assert r["totals"]["unverified_objects"] == 0
