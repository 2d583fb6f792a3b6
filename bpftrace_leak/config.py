"""The one configuration of a tracing session, its defaults and its checks.

The CLI builds a Config from its options (whose defaults are read from here),
calls validate(), and hands it on unchanged: the live session, ``record``,
``demo``, the tracer's plan and the report all read the same frozen object.
Times are kept in one unit each: the minimum age in milliseconds, as
kmemleak's MSECS_MIN_AGE and the report's ``min_age_ms``; session times in
seconds.
"""

import dataclasses
import shlex
from dataclasses import dataclass

from .errors import KleakError
from .tracer.scan_watch import SCAN_LIMIT_S

__all__ = ["Config", "default", "MIN_INTERVAL_S"]

#: the shortest time between reports or snapshots; the live loop also waits
#: at least as long as the last report took (sessions/live.py)
MIN_INTERVAL_S = 0.1


@dataclass(frozen=True)
class Config:
    # what is traced
    pids: tuple = ()  # -p, tgids or tids (resolved by the session)
    cgroups: tuple = ()  # --cgroup: cgroup folders (or hierarchy paths) whose tasks are traced
    command: str | None = None  # -c
    children: bool = False
    allocs: bool = True  # --kinds: allocation tracking
    refs: bool = True  # --kinds: reference counts (path_get/path_put), where the kernel allows it
    refs_via: str = "auto"  # fentry, kprobe, or auto (fentry where the kernel allows it)
    user_pages: bool = False
    include_self: bool = False  # system-wide: trace kleaktrace's own allocations too
    # what is reported
    min_age_ms: int = 1000
    top: int = 10
    cache_glob: str | None = None
    fmt: str = "text"
    shake: bool = False  # drop reclaimable dentries and inodes before the final report
    ref_census: bool = True  # --census: who holds the outstanding dentries (tracer/pins.py)
    scan: bool = True  # --scan: who points at each outstanding object (tracer/scan.py)
    scan_via: str = "bpf"  # --scan-via: read kernel memory with BPF, /proc/kcore, or both (compared)
    scan_limit_s: float = SCAN_LIMIT_S  # --scan-limit: each read of kernel memory stops past it
    scan_every_s: float | None = None  # serve --scan-every: periodic reports scan this often (None: by cost)
    by: str | None = None  # --by cgroup: a per-cgroup table before the groups
    split_by: str | None = None  # --split cgroup: a group per cgroup (default: a group lists its cgroups)
    # when
    interval_s: float | None = None  # INTERVAL: a report every INTERVAL
    count: int | None = None  # COUNT reports, then end
    duration_s: float | None = None
    # where to
    output: str | None = None  # --output: reports to this new file instead of stdout
    capture_path: str | None = None  # -w: every snapshot to this capture
    capture_interval_s: float = 10.0  # snapshots when no INTERVAL is given (record --interval)
    force: bool = False  # replace --output / -w if they exist
    quiet: bool = False  # record: no report on stdout
    # the kernel side
    kernel_headers: str | None = None
    max_objects: int = 1_000_000
    stack_slots: int = 16384
    stacks: str = "sites"  # a stack per call site until promoted, or "all": one per allocation
    free_copies: int = 1  # copies of each raw slab free program (docs/accuracy.md)
    sample_bytes: int = 0  # --sample-bytes: keep an allocation of S bytes with probability S/N (0: all)
    max_refs: int = 65536
    max_sites: int = 65536
    # the session loop
    promote_every_s: float = 2.0  # how often growing call sites are looked for
    demote_after_s: float = 60.0  # a promoted site whose objects set no new high this long is demoted
    settle_s: float = 1.0  # after the targets exit, for their RCU-deferred frees

    @property
    def min_age_ns(self) -> int:
        """The minimum age on the kernel's clock (bpf_ktime_get_ns)."""
        return self.min_age_ms * 1_000_000

    @property
    def argv(self) -> list[str]:
        """-c as an argument vector."""
        return shlex.split(self.command) if self.command is not None else []

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Config":
        """Raise KleakError (status 2) for options that cannot go together or
        mean nothing; returns self."""
        def bad(msg):
            raise KleakError(msg, status=2)
        if self.pids and self.command is not None:
            bad("-p and -c cannot be combined")
        if self.command is not None:
            try:
                argv = self.argv
            except ValueError as e:
                bad(f"-c: cannot parse the command ({e})")
            if not argv:
                bad("-c needs a command (it was empty)")
        if self.children and not (self.pids or self.command is not None):
            bad("--children needs -p or -c")
        if self.cgroups and (self.pids or self.command is not None):
            bad("--cgroup and -p/-c cannot be combined")
        if self.duration_s is not None and self.duration_s <= 0:
            bad("--duration must be more than 0 (it would never end, or never wait)")
        for name, value in (("INTERVAL", self.interval_s), ("--interval", self.capture_interval_s)):
            if value is not None and value <= 0:
                bad(f"{name} must be more than 0 (it would never end, or never wait)")
            if value is not None and value < MIN_INTERVAL_S:
                bad(f"{name} must be at least {MIN_INTERVAL_S * 1000:.0f}ms: a report reads every map "
                    "(1ms took 98% of a core)")
        if self.scan_limit_s < 1:
            bad("--scan-limit must be at least 1s: a scan reads every page the kernel holds")
        if self.scan_every_s is not None and self.scan_every_s < 1:
            bad("--scan-every must be at least 1s: a scan reads every page the kernel holds")
        if not self.allocs and not self.refs:
            bad("--kinds: nothing to trace")
        if self.fmt == "pprof" and not self.output:
            bad("--format pprof is binary: give --output FILE (e.g. --output leak.pb.gz)")
        return self


def default(name: str):
    """The default of Config field ``name`` (for the CLI's options)."""
    return next(f.default for f in dataclasses.fields(Config) if f.name == name)
