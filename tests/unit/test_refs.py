from bpftrace_leak.analysis.refs import RefHold, group_refs
from bpftrace_leak.reporter import render_text

S = 1_000_000_000


def hold(obj, refs=1, otype="dentry", why="put on a cleared path", stack=7, ts=0, name="f"):
    return RefHold(object_type=otype, object=obj, refs=refs, name=name, tgid=42, comm="drv",
                   stack_id=stack, ts_ns=ts, why=why, put_stack_id=9)


def test_groups_count_objects_and_net_references():
    holds = [hold(0x10, name="f0"), hold(0x20, name="f1"), hold(0x30, refs=2, name="f2"),
             hold(0x99, refs=3, otype="vfsmount", name="tmp"),
             hold(0x40, why="never put", stack=8)]
    groups = group_refs(holds, now_ns=5 * S, min_age_ns=S)
    by = {(g.object_type, g.why): g for g in groups}
    d = by[("dentry", "put on a cleared path")]
    assert (len(d.objects), d.net, d.names) == (3, 4, {"f0", "f1", "f2"})
    m = by[("vfsmount", "put on a cleared path")]
    assert (len(m.objects), m.net) == (1, 3)
    assert groups[0] is d  # largest net first


def test_young_references_are_not_reported():
    assert group_refs([hold(1, ts=5 * S)], now_ns=5 * S + S // 2, min_age_ns=S) == []


def test_text_report_shows_references_or_why_not():
    base = {"kernel": "6.1", "duration_s": 1.0, "min_age_ms": 1000, "targets": [42], "groups": [],
            "totals": {"objects": 0, "bytes": 0, "allocs": 0, "frees": 0, "missed_frees": 0, "dropped": 0}}
    text = render_text(dict(base, refs_tracking="unavailable: this kernel has no kprobes", refs=[]))
    assert "references: not tracked (unavailable: this kernel has no kprobes)" in text
    ref = {"object": "dentry", "objects": 13, "net": 13, "why": "put on a cleared path", "names": ["f0", "f1"],
           "pids": [42], "comms": ["drv"], "stack": ["path_get+0x1", "khm_hook+0x44 [khm]"],
           "put_stack": ["path_put+0x1", "khm_hook+0x65 [khm]"], "oldest_ms": 3000}
    text = render_text(dict(base, refs_tracking="kprobe", refs=[ref]))
    assert "+13 references on 13 dentries 'f0', 'f1' put on a cleared path" in text
    assert "khm_hook+0x44 [khm]" in text and "put (dropping nothing) at:" in text
