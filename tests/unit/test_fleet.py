"""Fleet mode's pure parts: the exporter's metrics and label bounds, the
pprof encoding read back field by field, the sampling estimate, --listen."""

import gzip

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from bpftrace_leak.errors import KleakError
from bpftrace_leak.output.pprof import Profile, render_pprof
from bpftrace_leak.output.prometheus import Exporter
from bpftrace_leak.sessions.serve import parse_listen
from bpftrace_leak.tracer.reader import weighed


def group(cache, site, objects, size, kind="slab", cgroup=None, per_h=0.0):
    return {"kind": kind, "cache": cache, "objects": objects, "bytes": objects * size, "bytes_per_h": per_h,
            "stack": [f"{site}+0x1e/0x90", "__sys_socketpair+0xd5/0x1c0", "do_syscall_64+0x3a/0x90"],
            "pids": [7], "comms": ["leaker"], "cgroup": cgroup}


REPORT = {
    "groups": [group("sock_inode_cache", "sock_alloc_inode", 600, 832, cgroup="/docker/abc"),
               group("filp", "alloc_empty_file", 600, 256),
               group("filp", "alloc_empty_file", 5, 256)]
    + [group(f"cache{i}", f"site{i}", 1, 64) for i in range(50)],
    "totals": {"allocs": 41_000, "frees": 40_100, "missed_frees": 3, "skipped_frees": 2, "dropped": 0,
               "stack_errors": 1, "unverified_objects": 0},
    "cgroups": [{"cgroup": "/docker/abc", "objects": 600, "bytes": 499_200}],
    "tracer_maps_bytes": 12345, "sampling_bytes": 0, "_made": 1.0e9,
}


def scrape(exporter) -> dict:
    registry = CollectorRegistry()
    registry.register(exporter)
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_metrics_sum_groups_per_kind_and_cache():
    ex = Exporter(top_labels=3)
    ex.update(REPORT)
    m = scrape(ex)
    key = (("cache", "filp"), ("kind", "slab"))
    assert m[("kleaktrace_outstanding_objects", key)] == 605
    assert m[("kleaktrace_outstanding_bytes", key)] == 605 * 256
    assert m[("kleaktrace_frees_total", ())] == 40_100  # a counter keeps its _total
    assert m[("kleaktrace_missed_frees_total", ())] == 3
    assert m[("kleaktrace_bpf_map_bytes", ())] == 12345
    assert m[("kleaktrace_cgroup_outstanding_bytes", (("cgroup", "/docker/abc"),))] == 499_200
    # no growth series before growth is known
    assert not any(name.startswith("kleaktrace_outstanding_bytes_growth") for name, _ in m)


def test_site_labels_are_bounded_and_never_stacks():
    ex = Exporter(top_labels=3)
    ex.update(REPORT)
    sites = {dict(labels)["site"]: v for (name, labels), v in scrape(ex).items()
             if name == "kleaktrace_site_outstanding_bytes"}
    assert sites == {"sock_alloc_inode": 600 * 832, "alloc_empty_file": 605 * 256, "site0": 64}
    assert all("+0x" not in s for s in sites)


def test_growth_exported_once_ranked_by_growth():
    ex = Exporter()
    ex.update(dict(REPORT, ranked_by="growth", groups=[group("filp", "alloc_empty_file", 10, 256, per_h=3600.0)]))
    m = scrape(ex)
    assert m[("kleaktrace_outstanding_bytes_growth_per_hour", (("cache", "filp"), ("kind", "slab")))] == 3600.0


def test_before_the_first_report_only_the_timestamp():
    m = scrape(Exporter())
    assert m == {("kleaktrace_report_timestamp_seconds", ()): 0.0}


def decoded(data: bytes):
    prof = Profile()
    prof.ParseFromString(gzip.decompress(data))
    return prof


def test_pprof_round_trip():
    prof = decoded(render_pprof(REPORT))
    st = list(prof.string_table)
    assert st[0] == ""
    assert [(st[t.type], st[t.unit]) for t in prof.sample_type] == [("inuse_objects", "count"),
                                                                    ("inuse_space", "bytes")]
    assert st[prof.default_sample_type] == "inuse_space"
    functions = {f.id: st[f.name] for f in prof.function}
    locations = {loc.id: functions[loc.line[0].function_id] for loc in prof.location}
    first = prof.sample[0]
    # leaf first, offsets dropped, the kind and cache as the root frame
    assert [locations[i] for i in first.location_id] == ["sock_alloc_inode", "__sys_socketpair", "do_syscall_64",
                                                         "slab:sock_inode_cache"]
    assert list(first.value) == [600, 600 * 832]
    labels = {st[lab.key]: st[lab.str] for lab in first.label}
    assert labels == {"kind": "slab", "cache": "sock_inode_cache", "cgroup": "/docker/abc"}
    # one Function per name, one Location per frame: shared between samples
    assert len(functions) == len(set(functions.values()))
    assert sum(s.value[0] for s in prof.sample) == 600 + 605 + 50
    assert prof.time_nanos == 10**18  # serve's _made
    capture_report = dict(REPORT, _made=None, started="2026-11-25T20:00:00+00:00", duration_s=60.0)
    assert decoded(render_pprof(capture_report)).time_nanos == 1_795_636_860 * 10**9


def test_pprof_of_nothing_is_a_valid_empty_profile():
    prof = decoded(render_pprof({"groups": []}))
    assert len(prof.sample) == 0 and len(prof.sample_type) == 2


def test_sampling_weights_are_unbiased():
    # probes.c's KEEP: kept when size >= S or a uniform draw in [0, S) < size
    rng = np.random.default_rng(1)
    S = 65536
    for size, n in ((64, 2_000_000), (832, 500_000), (4096, 100_000), (65536, 1000), (200_000, 10)):
        kept = int(np.count_nonzero(rng.integers(0, S, n) < size)) if size < S else n
        est = weighed(kept, size, S)
        assert abs(est - n) <= max(5 * np.sqrt(n * max(0.0, S / size - 1)), 0.5), (size, est, n)
    assert weighed(7, 100, 0) == 7  # not sampled


@pytest.mark.parametrize("listen,expose,want", [
    ("127.0.0.1:9464", False, ("127.0.0.1", 9464)),
    ("[::1]:9464", False, ("::1", 9464)),
    (":0", False, ("127.0.0.1", 0)),
    ("0.0.0.0:9464", True, ("0.0.0.0", 9464)),
])
def test_listen_addresses(listen, expose, want):
    assert parse_listen(listen, expose) == want


@pytest.mark.parametrize("listen", ["0.0.0.0:9464", "10.1.2.3:80", "localhost:9464", "127.0.0.1:99999",
                                    "127.0.0.1", "127.0.0.1:x"])
def test_listen_refused(listen):
    with pytest.raises(KleakError) as e:
        parse_listen(listen, False)
    assert e.value.status == 2


def test_kernel_counts_exported_beside_the_tracer():
    ex = Exporter()
    ex.update(REPORT, {"meminfo_slab_kb": 1000, "caches": {"sock_inode_cache": {"objects": 700, "objsize": 832}}})
    m = scrape(ex)
    assert m[("kleaktrace_kernel_slab_objects", (("cache", "sock_inode_cache"),))] == 700
    assert m[("kleaktrace_kernel_slab_bytes", (("cache", "sock_inode_cache"),))] == 700 * 832
    assert m[("kleaktrace_kernel_meminfo_slab_bytes", ())] == 1_024_000
    assert m[("kleaktrace_unverified_objects", ())] == 0
    # a sampled report is not refereed (live.py): no phantom count to export
    sampled = dict(REPORT, totals={k: v for k, v in REPORT["totals"].items() if k != "unverified_objects"})
    ex.update(sampled)
    assert ("kleaktrace_unverified_objects", ()) not in scrape(ex)


def test_reference_census_exported():
    census = {"pinned": 13, "cached": 300, "dead": 0, "references": {"unexplained": 13},
              "mounts": [{"mountpoint": "/tmp", "since_start": 13}]}
    ex = Exporter(top_labels=3)
    ex.update(dict(REPORT, census=census))
    m = scrape(ex)
    assert m[("kleaktrace_census_dentries", (("state", "pinned"),))] == 13
    assert m[("kleaktrace_census_dentries", (("state", "cached"),))] == 300
    assert m[("kleaktrace_census_unexplained_references", ())] == 13
    assert m[("kleaktrace_census_mount_unexplained_growth", (("mountpoint", "/tmp"),))] == 13
    ex.update(REPORT)  # --no-census: no census series
    assert not any(name.startswith("kleaktrace_census") for name, _ in scrape(ex))
