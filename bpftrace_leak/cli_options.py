"""The command line's options and types: what to trace (targets),
what a report shows and where it goes, how the tracer works. Defaults are
config.Config's."""

import re

import click

from .config import default
from .text import printable

__all__ = ["Duration", "DefaultGroup", "DURATION", "trace_options"]

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_SCALE = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
#: a duration, an interval or a minimum age of more than a year is a typo
#: (400 nines overflowed the conversion to milliseconds, or became infinity)
_MAX_SECONDS = 366 * 86400


class Duration(click.ParamType):
    """``500ms``, ``30s``, ``5m``, ``8h``; a bare number is in ``default_unit``.
    Converts to seconds, or to whole milliseconds with ``to="ms"``."""

    name = "duration"

    def __init__(self, default_unit: str = "s", to: str = "s"):
        self.default_unit = default_unit
        self.to = to

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            seconds = float(value) * _SCALE[self.default_unit]
        else:
            m = DURATION.match(str(value))
            if not m:
                self.fail(f"{value!r} is not a duration (like 500ms, 30s, 5m, 8h)", param, ctx)
            seconds = float(m.group(1)) * _SCALE[m.group(2) or self.default_unit]
        if not seconds <= _MAX_SECONDS:  # inf and nan too
            self.fail(f"{printable(value)[:40]!s} is more than a year", param, ctx)
        return int(round(seconds * 1000)) if self.to == "ms" else seconds


class DefaultGroup(click.Group):
    """A group whose default command is ``trace``, so ``kleaktrace -p 1 5`` works;
    a word that is neither a command nor a duration is an unknown command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            if not args[0].startswith("-") and not DURATION.match(args[0]):
                raise click.UsageError(f"no such command {args[0]!r} (commands: {', '.join(sorted(self.commands))})")
        if not args or args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["trace"] + list(args)
        return super().parse_args(ctx, args)


#: what is traced
TARGETS = [
    click.option("-p", "--pid", "pids", type=int, multiple=True, help="Trace this process (repeatable)."),
    click.option("-c", "--command", help="Run CMD and trace it; probes attach before it starts."),
    click.option("--children", is_flag=True, help="Also trace processes the targets fork; "
                                                  "the session ends when all of them have exited."),
    click.option("--cgroup", "cgroups", multiple=True, metavar="PATH",
                 help="Trace what tasks in this cgroup (and its descendants) allocate: a folder under the "
                      "memory controller's cgroupfs, or a path in its hierarchy (repeatable)."),
    click.option("--by", type=click.Choice(["cgroup"]),
                 help="Before the groups, a table per cgroup: objects and bytes outstanding, per kind."),
    click.option("--split", "split_by", type=click.Choice(["cgroup"]),
                 help="A group per cgroup (by default a group is a kind, cache and stack, and lists the "
                      "cgroups its objects were allocated in)."),
]

#: what a report shows and where it goes
REPORTS = [
    click.option("-o", "--min-age", "min_age_ms", type=Duration("ms", to="ms"),
                 default=f"{default('min_age_ms')}ms", show_default=True,
                 help="Report only allocations at least this old (bare number: ms)."),
    click.option("--duration", "duration_s", type=Duration("s"), help="End the session after this long (30s, 5m, 8h)."),
    click.option("-T", "--top", type=click.IntRange(min=1), default=default("top"), show_default=True,
                 help="Show this many groups."),
    click.option("--cache", "cache_glob", metavar="GLOB", help="Only slab caches matching GLOB."),
    click.option("--format", "fmt", type=click.Choice(["text", "json", "pprof"]), default=default("fmt"),
                 show_default=True, help="pprof (with --output): a gzipped profile, the last report's."),
    click.option("--output", metavar="FILE",
                 help="Write the reports to FILE (a new file, mode 0600) instead of standard output, "
                      "which -c's command keeps: `-c CMD --format json --output r.json` gives clean JSON."),
    click.option("-w", "--write", "capture_path", metavar="FILE",
                 help="Also record every snapshot to capture FILE (a new file, mode 0600) for `kleaktrace report`."),
    click.option("--force", is_flag=True,
                 help="Replace --output / -w FILE if it exists (a regular file only, atomically)."),
]

#: how the tracer works
TRACER = [
    click.option("--kinds", type=click.Choice(["both", "allocs", "refs"]), default="both", show_default=True,
                 help="Track allocations, reference counts (path_get/path_put; needs fentry or kprobes), or both."),
    click.option("--refs-via", type=click.Choice(["auto", "fentry", "kprobe", "none"]), default=default("refs_via"),
                 show_default=True,
                 help="How path_get/path_put are probed; auto takes fentry where the kernel allows it; none "
                      "probes neither (the reference census still runs: --census)."),
    click.option("--census/--no-census", "ref_census", default=default("ref_census"), show_default=True,
                 help="At each report, read the outstanding dentries' reference counts and explain each "
                      "reference by the open files, working directories, roots, children and mounts that "
                      "hold it (BPF iterators; no kprobes, nothing written): pinned vs cached without "
                      "--shake, and the pins nobody explains."),
    click.option("--scan/--no-scan", "scan", default=default("scan"), show_default=True,
                 help="At each report (serve: every 10 minutes), read kernel memory for the words that point "
                      "into each outstanding object, as kmemleak does, without rebuilding the kernel: each "
                      "object orphaned (nothing points at it), in an orphan cycle, or held, and by what."),
    click.option("--scan-via", type=click.Choice(["bpf", "kcore", "both"]), default=default("scan_via"),
                 show_default=True,
                 help="Read kernel memory with BPF programs run on demand, through /proc/kcore where the "
                      "kernel has it, or both, compared object by object."),
    click.option("--scan-limit", "scan_limit_s", type=Duration("s"), default=f"{default('scan_limit_s'):g}s",
                 show_default=True,
                 help="Stop a read of kernel memory that takes longer, and say so (its verdicts unknown): "
                      "2-3 s on a 2-core host, minutes in an emulated guest."),
    click.option("--shake", is_flag=True,
                 help="Before the final report, drop clean page cache, unused dentries and inodes "
                      "system-wide (sync, then 3 > /proc/sys/vm/drop_caches): what stays outstanding is "
                      "pinned, not cached."),
    click.option("--include-self", is_flag=True,
                 help="System-wide, also trace kleaktrace's own process and what it forks "
                      "(left out by default: its maps and buffers are not your leak)."),
    click.option("--user-pages", is_flag=True,
                 help="Also track the targets' own anonymous and page-cache pages (kind user-page)."),
    click.option("--kernel-headers", type=click.Path(file_okay=False), metavar="DIR",
                 help="Kernel header tree for BCC (default: the running kernel's, else the newest installed)."),
    click.option("--max-objects", type=click.IntRange(min=1024), default=default("max_objects"),
                 show_default=True, help="Capacity of the live-object map."),
    click.option("--stacks", type=click.Choice(["sites", "all"]), default=default("stacks"), show_default=True,
                 help="sites: a kernel stack on a call site's first allocation, and on each one at sites "
                      "whose aged objects grow; all: on every allocation (exact, several times slower)."),
    click.option("--demote-after", "demote_after_s", type=Duration("s"), default=default("demote_after_s"),
                 metavar="DURATION", show_default=True,
                 help="With --stacks sites: a promoted call site whose aged objects set no new high for this "
                      "long goes back to its first stack (until they pass that high, or ten times as long)."),
    click.option("--stack-slots", type=click.IntRange(min=64), default=default("stack_slots"),
                 show_default=True, help="Capacity of the stack table."),
    click.option("--sample-bytes", type=click.IntRange(min=0, max=2**31), default=default("sample_bytes"),
                 metavar="N", show_default=True,
                 help="Keep an allocation of S bytes with probability S/N, as heap profilers sample, and "
                      "report weighed estimates (0: every allocation, exact counts)."),
    # copies of each raw free program (README: Accuracy); 1 shows what a
    # single program loses, for tests and benchmarks
    click.option("--free-copies", type=click.IntRange(1, 3), default=default("free_copies"), hidden=True),
]


def trace_options(f):
    """The options of every tracing command (trace, record, serve, demo)."""
    for opt in reversed(TARGETS + REPORTS + TRACER):
        f = opt(f)
    return f
