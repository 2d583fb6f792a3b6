"""One leak, one group (issue #26): groups are kind, cache and stack, each
listing its cgroups; --split cgroup splits them; merged caches named by the
best match of their words, by elimination where a stack ties."""

import json
from dataclasses import replace

from test_report import STACKS, o, report

from bpftrace_leak.analysis.aliases import owner
from bpftrace_leak.analysis.cgroups import split, span
from bpftrace_leak.analysis.groups import by_cgroup, select
from bpftrace_leak.analysis.schema import check_report
from bpftrace_leak.reporter import render_json, render_text

#: /sys/kernel/slab on this project's 6.18 host (2026-12-03)
EVENTPOLL = {"fib6_node", "pte_list_desc", "tcp_bind2_bucket", "tcp_bind_bucket"}
FTRACE = {"Acpi-Parse", "btrfs_inode_defrag", "damon_region", "fanotify_mnt_event", "file_lock_ctx",
          "xfs_extfree_intent"}
SIGNAL = {"UNIX", "UNIX-STREAM"}

PATHS = {10 + i: (f"/kltdying_{i}", True) for i in range(20)}
PATHS.update({100 + i: (f"/system.slice/docker-{i:012x}abcdef.scope", False) for i in range(5)})


def name(cid):
    return PATHS.get(cid, (None, False))


def test_a_leak_in_twenty_cgroups_is_one_group_listing_them():
    objs = [replace(o("slab", "mem_cgroup", 2048, 3), cgroup=10 + i) for i in range(20)]
    r = report(objs, cgroup_name=name)
    (g,) = r["groups"]
    assert g["objects"] == 20 and g["cgroup_count"] == 20 and "cgroup" not in g
    assert {c["path"] for c in g["cgroups"]} == {f"(removed) /kltdying_{i}" for i in range(20)}
    assert all(c["removed"] and c["objects"] == 1 for c in g["cgroups"])
    text = render_text(r)
    assert "cgroups: 20 (20 removed): (removed) /kltdying_" in text
    assert "the groups span 20 cgroups" in text
    # --split cgroup: today's split, live and offline
    live = report(objs, cgroup_name=name, split_by="cgroup")
    assert len(live["groups"]) == 20 and all(g["objects"] == 1 and g["cgroup"].startswith("(removed) /kltdying_")
                                             for g in live["groups"])
    offline = split(r["groups"])
    assert sorted(g["cgroup"] for g in offline) == sorted(g["cgroup"] for g in live["groups"])
    # what a capture keeps of both passes the checks it is read back with
    for doc in (r, live):
        check_report(json.loads(render_json(doc)))


def test_five_containers_one_socket_group_and_the_table_per_cgroup():
    objs = [replace(o("slab", "sock_inode_cache", 832, 3), cgroup=100 + i, count=60) for i in range(5)]
    r = report(objs, cgroup_name=name)
    (g,) = r["groups"]
    assert g["objects"] == 300 and [c["objects"] for c in g["cgroups"]] == [60] * 5
    assert {c["container"] for c in g["cgroups"]} == {f"docker:{i:012x}" for i in range(5)}
    rows = by_cgroup(r["groups"])
    assert len(rows) == 5 and all(row["objects"] == 60 and row["kinds"] == {"slab": 60} for row in rows)
    assert span(r["groups"]) == {"cgroups": 5, "containers": 5}
    assert len(select(r["groups"], cgroup="*docker-000000000002*")) == 1
    assert select(r["groups"], cgroup="/nope*") == []


def test_words_keep_their_digits_longest_match_wins():
    bind2 = ["inet_bind2_bucket_create+0x2a", "__inet_hash_connect+0x2ae", "tcp_v4_connect+0x41c"]
    bind = ["inet_bind_bucket_create+0x2a", "__inet_hash_connect+0x2ae", "tcp_v4_connect+0x41c"]
    assert owner("eventpoll_epi", EVENTPOLL, bind2)[0] == "tcp_bind2_bucket"
    assert owner("eventpoll_epi", EVENTPOLL, bind)[0] == "tcp_bind_bucket"
    damon = ["damon_split_region_at+0x30", "kdamond_fn+0x1432", "kthread+0xf8"]
    assert owner("ftrace_event_field", FTRACE, damon)[0] == "damon_region"
    unix = ["sk_prot_alloc+0x32", "sk_alloc+0x35", "unix_create1+0x6b"]
    assert owner("signal_cache", SIGNAL, unix)[0] == "UNIX"
    # inet_bind_bucket_create inlined: tcp_ ties the two; "one of" them only
    inlined = ["__inet_hash_connect+0x2ae", "tcp_v4_connect+0x41c", "__sys_connect+0x7d"]
    assert owner("eventpoll_epi", EVENTPOLL, inlined) == (None, ["tcp_bind2_bucket", "tcp_bind_bucket"])


def test_a_tie_is_named_by_elimination_when_another_site_owns_the_other_name():
    STACKS[20] = ["kmem_cache_alloc_noprof+0x1", "__inet_hash_connect+0x2ae", "tcp_v4_connect+0x41c"]
    STACKS[21] = ["kmem_cache_alloc_noprof+0x1", "inet_bind2_bucket_create+0x2a", "__inet_hash_connect+0x2ae"]
    r = report([o("slab", "eventpoll_epi", 64, 20, tgid=1), o("slab", "eventpoll_epi", 64, 21, tgid=1)],
               aliases={"eventpoll_epi": EVENTPOLL})
    named = {g["stack"][0]: (g["cache_owner"], g.get("cache_owner_by")) for g in r["groups"]}
    assert named == {"__inet_hash_connect+0x2ae": ("tcp_bind_bucket", "elimination"),
                     "inet_bind2_bucket_create+0x2a": ("tcp_bind2_bucket", None)}
    assert "tcp_bind_bucket (merged into eventpoll_epi with " in render_text(r)
    alone = report([o("slab", "eventpoll_epi", 64, 20, tgid=1)], aliases={"eventpoll_epi": EVENTPOLL})
    assert alone["groups"][0]["cache_owner"] is None  # nothing to eliminate by
