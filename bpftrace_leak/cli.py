"""Command line: parses arguments and dispatches; no BPF and no formatting here.

    kleaktrace [-p PID]... [-c CMD] [options] [INTERVAL [COUNT]]
    kleaktrace record | report | diff | demo | doctor

Option defaults are config.Config's; every tracing command builds one Config
and validates it the same way.
"""

import sys

import click

from .cli_options import Duration, DefaultGroup, trace_options
from .config import Config, default
from .errors import KleakError
from .text import say



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


@click.group(cls=DefaultGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="kleaktrace")
def main():
    """Find kernel memory leaks on a running system.

    Without a sub-command, traces (see `kleaktrace trace --help`).
    """


@main.command()
@trace_options
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
@trace_options
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
@trace_options
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
#: still sampled 64 times an hour), maps for 128Ki sampled objects (some 10
#: million outstanding ones of a few hundred bytes) instead of a million
SERVE_DEFAULTS = {"sample_bytes": 65536, "max_objects": 131072}
#: serve scans for holders this often by default (a scan reads every page the
#: kernel holds: seconds of a core, and /metrics answers slower meanwhile)
SERVE_SCAN_EVERY = "10m"


@main.command()
@trace_options
@click.option("--listen", default="127.0.0.1:9464", show_default=True, metavar="HOST:PORT",
              help="Serve /metrics (Prometheus) and /profile (pprof) here.")
@click.option("--expose", is_flag=True, help="Allow a --listen address other than loopback.")
@click.option("--interval", "interval", type=Duration("s"), default="30s", show_default=True,
              help="Time between reports (what scrapes see).")
@click.option("--top-labels", type=click.IntRange(min=1, max=1000), default=20, show_default=True,
              help="Call sites and cgroups given labels of their own (the rest are summed by cache).")
@click.option("--scan-every", "scan_every_s", type=Duration("s"), default=SERVE_SCAN_EVERY, show_default=True,
              help="Time between holder scans (the first this long after the start): the orphaned_* metrics.")
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


def entry():
    """Console-script entry: KleakError becomes one line on stderr, never a traceback."""
    try:
        main(standalone_mode=False)
    except KleakError as e:
        say(str(e))
        sys.exit(e.status)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as e:
        say(e.format_message())
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(1)


if __name__ == "__main__":
    entry()
