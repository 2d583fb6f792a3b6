"""Command line: parses arguments and dispatches; no BPF and no formatting here.

    kleaktrace [-p PID]... [-c CMD] [options] [INTERVAL [COUNT]]
    kleaktrace record | report | diff | demo | doctor

Option defaults are config.Config's; every tracing command builds one Config
and validates it the same way.
"""

import re
import sys

import click

from .config import Config, default
from .errors import KleakError
from .text import printable

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
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
            m = _DURATION.match(str(value))
            if not m:
                self.fail(f"{value!r} is not a duration (like 500ms, 30s, 5m, 8h)", param, ctx)
            seconds = float(m.group(1)) * _SCALE[m.group(2) or self.default_unit]
        if not seconds <= _MAX_SECONDS:  # inf and nan too
            self.fail(f"{printable(value)[:40]!s} is more than a year", param, ctx)
        return int(round(seconds * 1000)) if self.to == "ms" else seconds


class _DefaultGroup(click.Group):
    """A group whose default command is ``trace``, so ``kleaktrace -p 1 5`` works;
    a word that is neither a command nor a duration is an unknown command."""

    def parse_args(self, ctx, args):
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            if not args[0].startswith("-") and not _DURATION.match(args[0]):
                raise click.UsageError(f"no such command {args[0]!r} (commands: {', '.join(sorted(self.commands))})")
        if not args or args[0] not in self.commands and args[0] not in ("--help", "-h", "--version"):
            args = ["trace"] + list(args)
        return super().parse_args(ctx, args)


def _trace_options(f):
    options = [
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
    for opt in reversed(options):
        f = opt(f)
    return f


def _config(**kw) -> Config:
    """The Config of a tracing command's options, validated."""
    kinds = kw.pop("kinds")
    kw["pids"] = tuple(kw.get("pids") or ())
    kw["cgroups"] = tuple(kw.get("cgroups") or ())
    kw["interval_s"] = kw.pop("interval", None)
    refs = kinds in ("both", "refs") and kw.get("refs_via") != "none"
    if kinds == "refs" and not refs:
        raise KleakError("--kinds refs with --refs-via none: nothing to trace", status=2)
    return Config(allocs=kinds in ("both", "allocs"), refs=refs, **kw).validate()


@click.group(cls=_DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kleaktrace")
def main():
    """Find kernel memory leaks on a running system.

    Without a sub-command, traces (see `kleaktrace trace --help`).
    """


@main.command()
@_trace_options
@click.argument("interval", type=Duration("s"), required=False)
@click.argument("count", type=click.IntRange(min=1), required=False)
def trace(**kw):
    """Trace kernel allocations and report those outstanding.

    INTERVAL prints a report every INTERVAL seconds, COUNT times; without
    it one report is printed when the session ends (--duration, Ctrl-C,
    SIGTERM, SIGHUP, or all targets exited).
    """
    from .sessions import live
    sys.exit(live.run(_config(**kw)))


@main.command()
@_trace_options
@click.option("--interval", "capture_interval_s", type=Duration("s"), default=f"{default('capture_interval_s'):g}s",
              show_default=True, help="Time between snapshots in the capture.")
def record(**kw):
    """Record a timed session to a capture file (-w FILE), for later reports.

    Example: kleaktrace record -p PID --duration 8h -w leak.kcap
    """
    from .sessions import live
    if not kw.get("capture_path"):
        raise KleakError("record needs -w FILE", status=2)
    sys.exit(live.run(_config(quiet=True, **kw)))


@main.command()
@click.argument("capture", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json", "folded", "html", "pprof"]), default="text",
              show_default=True, help="pprof: a gzipped profile for go tool pprof, Pyroscope, Parca.")
@click.option("--sort", type=click.Choice(["bytes", "objects", "growth", "pid", "comm", "cache"]),
              default="bytes", show_default=True)
@click.option("--pid", type=int, help="Only groups with this process.")
@click.option("--comm", help="Only groups with this command name.")
@click.option("--cache", metavar="GLOB", help="Only slab caches matching GLOB.")
@click.option("--cgroup", metavar="GLOB", help="Only groups of cgroups whose path matches GLOB.")
@click.option("--cull", "cull_by", type=click.Choice(["stack", "cache"]), default="stack", show_default=True,
              help="Merge groups by stack (as recorded) or by cache.")
@click.option("--by", type=click.Choice(["cgroup"]), help="Before the groups, a table per cgroup.")
@click.option("--split", "split_by", type=click.Choice(["cgroup"]),
              help="A group per cgroup (each group's listed cgroups become groups of their own).")
@click.option("-T", "--top", type=click.IntRange(min=1), help="Show this many groups.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write here (a new file, mode 0600) instead of stdout.")
@click.option("--force", is_flag=True, help="Replace --output if it exists (a regular file, atomically).")
def report(capture, **kw):
    """Report on a capture file: text, JSON, folded stacks or an HTML page."""
    from .sessions.offline import run_report
    sys.exit(run_report(capture, **kw))


@main.command()
@click.argument("a", type=click.Path(dir_okay=False))
@click.argument("b", type=click.Path(dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("-T", "--top", type=click.IntRange(min=1))
def diff(a, b, fmt, top):
    """Groups that grew from capture A to capture B."""
    from .sessions.offline import run_diff
    sys.exit(run_diff(a, b, fmt=fmt, top=top))


@main.command()
@_trace_options
@click.option("--sockets", type=click.IntRange(min=0), default=300, show_default=True)
@click.option("--files", type=click.IntRange(min=0), default=200, show_default=True)
@click.option("--churn", type=click.IntRange(min=0), default=20000, show_default=True)
def demo(sockets, files, churn, **kw):
    """Trace the bundled workload that leaks a known number of objects."""
    from .sessions.demo import run_demo
    if kw["pids"] or kw["command"] is not None:
        raise KleakError("demo traces its own workload: no -p or -c", status=2)
    sys.exit(run_demo(_config(**kw), churn=churn, sockets=sockets, files=files))


#: serve's defaults, for always-on: allocations sampled (a 4 MiB/h leak is
#: still sampled 64 times an hour) and one program per slab free event (the
#: census and freed slab pages retire what a skipped free leaves): 0.79x
#: untraced on the allocation storm, against 0.62x tracking everything
#: (bench/overhead.py); maps for 128Ki sampled objects (some 10 million
#: outstanding ones of a few hundred bytes) instead of a million
SERVE_DEFAULTS = {"sample_bytes": 65536, "free_copies": 1, "max_objects": 131072}


@main.command()
@_trace_options
@click.option("--listen", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT",
              help="Serve /metrics (Prometheus) and /profile (pprof) here.")
@click.option("--expose", is_flag=True, help="Allow a --listen address other than loopback.")
@click.option("--interval", "interval", type=Duration("s"), default="30s", show_default=True,
              help="Time between reports (what scrapes see).")
@click.option("--top-labels", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="Call sites and cgroups given labels of their own (the rest are summed by cache).")
@click.pass_context
def serve(ctx, listen, expose, top_labels, **kw):
    """Keep tracing and serve the outstanding allocations: /metrics for
    Prometheus, /profile for go tool pprof, Pyroscope, Parca.

    Samples allocations by default (--sample-bytes 65536: weighed estimates);
    --sample-bytes 0 tracks every one.
    """
    from .sessions.serve import run_serve
    for name, value in SERVE_DEFAULTS.items():
        if ctx.get_parameter_source(name) == click.core.ParameterSource.DEFAULT:
            kw[name] = value
    cfg = _config(quiet=True, **kw).replace(top=None)
    sys.exit(run_serve(cfg, listen, expose, top_labels))


@main.command()
def doctor():
    """Say what this kernel and host support, and what to do about what is missing."""
    from .sessions.doctor import run_doctor
    sys.exit(run_doctor())


def _say(message: str) -> None:
    """One line on stderr: whatever a user put in it (a file name, a capture's
    field) is shown, never obeyed (output/text.py); a closed stderr costs it."""
    try:
        print(f"kleaktrace: {printable(message)}", file=sys.stderr)
    except (OSError, AttributeError, ValueError):
        pass


def entry():
    """Console-script entry: KleakError becomes one line on stderr, never a traceback."""
    try:
        main(standalone_mode=False)
    except KleakError as e:
        _say(str(e))
        sys.exit(e.status)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        _say(e.format_message())
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    entry()
