"""The latest report as Prometheus metrics (prometheus_client's collector
interface) and as a pprof profile: what ``kleaktrace serve`` answers
(sessions/serve.py). Label sets stay bounded: kind and cache (a few
hundred), at most ``top_labels`` call sites and cgroups; never stacks or
PIDs (a scrape must not grow a time series per leak)."""

import threading

__all__ = ["Exporter"]


def _site(g: dict) -> str:
    return g["stack"][0].split("+", 1)[0] if g["stack"] else "[unknown]"


class Exporter:
    """The latest report, as Prometheus metrics and as a pprof profile."""

    def __init__(self, top_labels: int = 20):
        self.top_labels = top_labels
        self.report: dict | None = None
        self.facts: dict = {}
        self.lock = threading.Lock()
        self.scanned: tuple | None = None  # the last holder scan: ({(kind, cache): [orphans, bytes]}, its section)

    def update(self, report: dict, facts: dict | None = None) -> None:
        """The latest report and the slab facts it was checked against
        (kernel.slabs.slab_facts)."""
        scanned = None
        if report.get("scan") and not report["scan"].get("skipped"):
            per: dict[tuple, list] = {}
            for g in report["groups"]:
                if "orphaned" in g:
                    row = per.setdefault((g["kind"], g["cache"] or ""), [0, 0])
                    orphans = g["orphaned"] + g["orphan_cycle"]
                    row[0] += orphans
                    row[1] += g["bytes"] * orphans // max(g["objects"], 1)
            scanned = (per, report["scan"])
        with self.lock:
            self.report, self.facts = report, facts or {}
            if scanned:  # kept until the next scan (serve scans every --scan-every)
                self.scanned = scanned

    def collect(self):
        """prometheus_client's collector interface: the metric families."""
        from prometheus_client.core import GaugeMetricFamily
        with self.lock:
            r, facts = self.report, self.facts
        up = GaugeMetricFamily("kleaktrace_report_timestamp_seconds",
                               "When the latest report was made (0 before the first).")
        up.add_metric([], r["_made"] if r else 0)
        yield up
        if r is None:
            return
        yield from self._outstanding(r)
        yield from self._sites(r)
        yield from self._counters(r["totals"])
        yield from self._kernel(facts)
        yield from self._scan()
        yield from self._census(r.get("census"))
        maps = GaugeMetricFamily("kleaktrace_bpf_map_bytes", "Kernel memory kleaktrace's BPF maps hold.")
        maps.add_metric([], r.get("tracer_maps_bytes", 0))
        yield maps
        sampling = GaugeMetricFamily("kleaktrace_sampling_bytes",
                                     "Sampling: an allocation of S bytes is kept with probability S/this (0: all).")
        sampling.add_metric([], r.get("sampling_bytes", 0))
        yield sampling

    def _outstanding(self, r):
        """Objects, bytes and growth per kind and cache."""
        from prometheus_client.core import GaugeMetricFamily
        labels = ["kind", "cache"]
        objects = GaugeMetricFamily("kleaktrace_outstanding_objects",
                                    "Objects allocated and not freed for at least the minimum age.", labels=labels)
        nbytes = GaugeMetricFamily("kleaktrace_outstanding_bytes",
                                   "Bytes of those objects.", labels=labels)
        growth = GaugeMetricFamily("kleaktrace_outstanding_bytes_growth_per_hour",
                                   "Least-squares growth of those bytes over the recent reports.", labels=labels)
        per: dict[tuple, list] = {}
        for g in r["groups"]:
            row = per.setdefault((g["kind"], g["cache"] or ""), [0, 0, 0.0])
            row[0] += g["objects"]
            row[1] += g["bytes"]
            row[2] += g.get("bytes_per_h", 0.0)
        for key, (n, b, h) in sorted(per.items()):
            objects.add_metric(list(key), n)
            nbytes.add_metric(list(key), b)
            if r.get("ranked_by") == "growth":
                growth.add_metric(list(key), h)
        yield objects
        yield nbytes
        if r.get("ranked_by") == "growth":
            yield growth

    def _sites(self, r):
        """The top call sites and cgroups by bytes."""
        from prometheus_client.core import GaugeMetricFamily
        sites = GaugeMetricFamily("kleaktrace_site_outstanding_bytes",
                                  f"Bytes outstanding at the top {self.top_labels} call sites by bytes.",
                                  labels=["kind", "cache", "site"])
        by_site: dict[tuple, int] = {}
        for g in r["groups"]:
            key = (g["kind"], g["cache"] or "", _site(g))
            by_site[key] = by_site.get(key, 0) + g["bytes"]
        for key, b in sorted(by_site.items(), key=lambda kv: -kv[1])[:self.top_labels]:
            sites.add_metric(list(key), b)
        yield sites
        if r.get("cgroups"):
            cg = GaugeMetricFamily("kleaktrace_cgroup_outstanding_bytes",
                                   f"Bytes outstanding per cgroup, the top {self.top_labels}.", labels=["cgroup"])
            for row in r["cgroups"][:self.top_labels]:
                cg.add_metric([row["cgroup"] or ""], row["bytes"])
            yield cg

    def _counters(self, t):
        """The data-quality counters."""
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        for name, key, text in (
                ("allocations", "allocs", "Allocations recorded."),
                ("frees", "frees", "Frees that retired a recorded allocation."),
                ("missed_frees", "missed_frees", "Addresses handed out again while still recorded."),
                ("skipped_frees", "skipped_frees", "Free events the kernel skipped (BPF recursion)."),
                ("dropped", "dropped", "Allocations not recorded: maps full."),
                ("stack_errors", "stack_errors", "Stacks lost."),
                ("found_free", "found_free", "Objects the slab census found free."),
                ("freed_with_slab", "freed_with_slab", "Objects retired with their freed slab page."),
                ("freed_by_rcu", "freed_by_rcu", "Objects retired at kvfree_call_rcu.")):
            c = CounterMetricFamily(f"kleaktrace_{name}", text)
            c.add_metric([], t.get(key, 0))
            yield c
        if "unverified_objects" in t:  # not when sampled: an estimate above the kernel's count may be chance
            quality = GaugeMetricFamily("kleaktrace_unverified_objects",
                                        "Objects reported above the kernel's own count (/proc/slabinfo): phantoms.")
            quality.add_metric([], t["unverified_objects"])
            yield quality

    def _scan(self):
        """The last holder scan: orphaned objects and bytes (in orphan cycles
        too) per kind and cache, and what the scan read."""
        from prometheus_client.core import GaugeMetricFamily
        with self.lock:
            scanned = self.scanned
        if not scanned:
            return
        per, section = scanned
        objects = GaugeMetricFamily("kleaktrace_orphaned_objects", "Outstanding objects no kernel memory points at "
                                    "(or only other such objects), by the last holder scan.", labels=["kind", "cache"])
        nbytes = GaugeMetricFamily("kleaktrace_orphaned_bytes", "Bytes of those objects.", labels=["kind", "cache"])
        for key, (n, b) in sorted(per.items()):
            objects.add_metric(list(key), n)
            nbytes.add_metric(list(key), b)
        yield objects
        yield nbytes
        for name, field, text in (("scan_seconds", "seconds", "How long the last holder scan took."),
                                  ("scan_read_bytes", "bytes", "Kernel memory the last holder scan read.")):
            g = GaugeMetricFamily(f"kleaktrace_{name}", text)
            g.add_metric([], section[field])
            yield g

    def _census(self, c: dict | None):
        """The reference census: dentries by state, references nobody
        explains, and the mounts whose unexplained references grew (at most
        top_labels of them, as the reports list them)."""
        from prometheus_client.core import GaugeMetricFamily
        if not c:
            return
        states = GaugeMetricFamily("kleaktrace_census_dentries",
                                   "Outstanding dentries read by the reference census, by state "
                                   "(with sampling: the kept ones).", labels=["state"])
        for state in ("pinned", "cached", "dead"):
            states.add_metric([state], c.get(state, 0))
        yield states
        refs = GaugeMetricFamily("kleaktrace_census_unexplained_references",
                                 "References on outstanding dentries no open file, cwd, root, child, mount or "
                                 "in-memory filesystem explains.")
        refs.add_metric([], (c.get("references") or {}).get("unexplained", 0))
        yield refs
        mounts = GaugeMetricFamily("kleaktrace_census_mount_unexplained_growth",
                                   "Unexplained references a mount gained since the session's start.",
                                   labels=["mountpoint"])
        for m in (c.get("mounts") or [])[:self.top_labels]:
            mounts.add_metric([m["mountpoint"]], m["since_start"])
        yield mounts

    @staticmethod
    def _kernel(facts: dict):
        """The kernel's own count, the referee an alert should agree with:
        /proc/slabinfo's active objects and their bytes per cache (one
        series per slabinfo line, a few hundred), /proc/meminfo's Slab."""
        from prometheus_client.core import GaugeMetricFamily
        caches = facts.get("caches") or {}
        if caches:
            objects = GaugeMetricFamily("kleaktrace_kernel_slab_objects",
                                        "Active objects per slab cache, as /proc/slabinfo counts them.",
                                        labels=["cache"])
            nbytes = GaugeMetricFamily("kleaktrace_kernel_slab_bytes",
                                       "Active objects times object size per slab cache (/proc/slabinfo).",
                                       labels=["cache"])
            for name, c in sorted(caches.items()):
                objects.add_metric([name], c["objects"])
                nbytes.add_metric([name], c["objects"] * c["objsize"])
            yield objects
            yield nbytes
        if facts.get("meminfo_slab_kb") is not None:
            slab = GaugeMetricFamily("kleaktrace_kernel_meminfo_slab_bytes", "/proc/meminfo's Slab.")
            slab.add_metric([], facts["meminfo_slab_kb"] * 1024)
            yield slab

    def profile(self) -> bytes:
        from .pprof import render_pprof
        with self.lock:
            r = self.report
        return render_pprof(r or {"groups": []})
