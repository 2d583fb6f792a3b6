"""A live session: attach, report every INTERVAL or once at the end, detach.

The session is a LiveSession: named jobs on one schedule, each a method
that does its step and says when it is due again:

- ``report``   every INTERVAL: a report written out (COUNT of them, then the end);
- ``snapshot`` every 10 s without INTERVAL: a silent report, kept for growth
  (and in the capture with -w);
- ``promote``  every 2 s: call sites whose aged objects grow take their own
  stacks (tracer/sites.py);
- ``targets``  every 0.2 s: the targets exited (their children too with
  --children); the session ends once what their exits free has landed;
- ``duration`` at --duration: the end.

A job that reads every map (report, snapshot, promote) is next due no
sooner than its last run's cost allows (at most half a core for reports,
5% for silent work), so a 100 ms INTERVAL on a million objects cannot take
the CPU. Every session ends with a final report and every probe detached. A
signal never cuts anything short: it ends the waiting, and what is being
written (a report, a capture line) is finished first; a signal while the
probes are being compiled ends the session as soon as that is done, with
one line. A report that fails (a full disk, a closed terminal, no
descriptor left) costs a warning, never the session.
"""

import datetime
import sys
import time

from ..analysis.history import LiveGrowth
from ..analysis.report import assemble
from ..errors import KleakError
from ..kernel import check_privileges, kernel_release
from ..kernel import cgroups as cgroupfs
from ..kernel.cgroups import CgroupNames, mount_point
from ..kernel.dropcaches import shake
from ..kernel.slabs import cache_aliases, check_cache_glob, known_caches
from ..output.outfiles import open_private, same_place
from ..output.sinks import CaptureSink, ReportSink
from ..reporter import limit, render
from ..text import printable, say, warn
from ..tracer.collect import Collector
from ..tracer.session import Session
from .jobs import Jobs
from .signals import Interrupted, Signals
from .targets import HeldCommand, resolve_pid

__all__ = ["run", "LiveSession"]

#: what a holder scan is guessed to cost before the first: it reads every
#: page the kernel holds (bench/scan.py: 2.2 to 2.4 s a pass on this
#: project's 2-core host, two passes when it finds orphans)
SCAN_GUESS_S = 3.0


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run(cfg, out=None, on_attached=None, stop_event=None, on_report=None, keep_going: bool = False) -> int:
    """Run one live session for Config ``cfg``; returns the exit status.
    Raises KleakError on bad input.

    ``on_attached(session)`` is called once the probes are live; setting
    ``stop_event`` (a threading.Event) ends the session like Ctrl-C;
    ``on_report(report, slab_facts)`` sees each report document after it is
    written, with the /proc/slabinfo and /proc/meminfo facts it was checked
    against. ``keep_going`` (serve): a report that fails for any reason is a
    warning.
    """
    check_privileges()
    targets = [resolve_pid(p) for p in cfg.pids]
    cgroup_ids = cgroupfs.ids(cfg.cgroups)
    aliases = cache_aliases()
    if cfg.cache_glob and not check_cache_glob(cfg.cache_glob, known_caches()):
        raise KleakError(f"--cache {printable(cfg.cache_glob)}: no slab cache of that name (see /proc/slabinfo)",
                         status=2)
    if cfg.output and cfg.capture_path and same_place(cfg.output, cfg.capture_path):
        raise KleakError("--output and -w name the same file", status=2)
    with Signals() as signals:
        live = LiveSession(cfg, targets, aliases, signals, out=out, on_attached=on_attached,
                           stop_event=stop_event, on_report=on_report, cgroup_ids=cgroup_ids,
                           keep_going=keep_going)
        return live.run()


class LiveSession(Jobs):
    """One live session (see the module docstring); run() returns the exit status."""

    def __init__(self, cfg, targets, aliases, signals, out=None, on_attached=None, stop_event=None,
                 on_report=None, cgroup_ids=(), keep_going=False):
        self.cfg, self.targets, self.aliases, self.signals = cfg, list(targets), aliases, signals
        self.out, self.on_attached, self.stop_event, self.on_report = out, on_attached, stop_event, on_report
        self.cgroup_ids, self.keep_going = list(cgroup_ids), keep_going
        self.sink = self.capture = self.held = self.session = self.collector = None
        self.growth = LiveGrowth()
        self.ended: str | None = None  # why the session ends
        self.final_needed = True
        self.reports = 0
        self.failed: set[str] = set()  # what failed, warned about once each
        self._exited_at: float | None = None
        self._scan_cost, self._scanned_at = 0.0, None  # the holder scan's last cost and time

    # -- starting and ending -----------------------------------------------------------

    def _open_outputs(self) -> None:
        """Files first: a path that cannot take them fails before the compile."""
        cfg = self.cfg
        if cfg.output:
            made = open_private(cfg.output, cfg.force, binary=cfg.fmt == "pprof")
            self.sink = ReportSink(made.stream, cfg.output, warn, file=made)
        elif not cfg.quiet:
            self.sink = ReportSink(self.out or sys.stdout, "standard output", warn)
        if cfg.capture_path:
            self.capture = CaptureSink(cfg.capture_path, cfg.force, warn)

    def _start(self) -> None:
        cfg = self.cfg
        self._open_outputs()
        if cfg.command is not None:
            self.held = HeldCommand(cfg.argv)
            self.targets.append(self.held.pid)
        self.watched = list(self.targets)
        self.session = Session(cfg, self.targets, warn=warn, cgroup_ids=self.cgroup_ids)
        self.session.start()
        self.signals.check()
        cgroups = None
        if self.session.plan.cgroups:
            cgroups = CgroupNames(mount_point(self.session.plan.cgroups["version"]), None)
        self.started = _now_iso()
        self.t0 = time.monotonic()
        self.collector = Collector(self.session, cfg, self.aliases, cgroups, self.targets, self.started, self.t0)
        if self.capture:
            self.capture.header({
                "kernel": kernel_release(), "started": self.started, "targets": self.targets,
                "command": cfg.command, "min_age_ms": cfg.min_age_ms,
                "interval_s": cfg.interval_s or cfg.capture_interval_s,
                "host": {"slab_aliases": {k: sorted(v) for k, v in self.aliases.items() if v}}})

    def _who(self) -> str:
        if self.watched:
            return f"PID {', '.join(map(str, self.watched))}"
        if self.cfg.cgroups:
            return "cgroup " + ", ".join(printable(c) for c in self.cfg.cgroups) + " (and below)"
        return "all processes"

    def _close(self) -> None:
        """Nothing here is cut short by a signal: the handlers only take note."""
        for part in (self.capture, self.collector, self.session):
            if part:
                part.close()
        if self.held:
            self.held.stop()
        if self.sink:
            self.sink.close()

    def run(self) -> int:
        try:
            self._start()
            say(f"tracing {self._who()} with {len(self.session.attached)} events"
                 + (f" (kernel lacks: {', '.join(self.session.missing)})" if self.session.missing else "")
                 + "... Hit Ctrl-C to end.")
            for note in self.session.notes:
                say(f"note: {note}")
            if self.on_attached:
                self.on_attached(self.session)
            if self.held:
                self.held.release()
            self._loop(self._jobs())
            if self.final_needed:
                if self.cfg.shake and self.cfg.allocs:
                    shake(self.cfg.settle_s)
                if not self._guarded("the final report", lambda: self.emit(final=True)):
                    return 1
            return 0
        except Interrupted as e:
            say(str(e))
            return e.status
        finally:
            self._close()

    # -- reports -----------------------------------------------------------------------------

    def _scan_due(self, final: bool) -> bool:
        """Whether a written report gets the holder scan: the final one
        always; periodic ones every --scan-every (serve: 10 minutes, the
        first 10 minutes after the start: objects a few seconds old say
        little), else while a scan costs at most a tenth of the interval
        (before the first, SCAN_GUESS_S); silent snapshots never."""
        if not self.cfg.scan:
            return False
        if final:
            return True
        now = time.monotonic()
        if self.cfg.scan_every_s:
            return now - (self._scanned_at or self.t0) >= self.cfg.scan_every_s
        return self.cfg.interval_s is not None and (self._scan_cost or SCAN_GUESS_S) * 10 <= self.cfg.interval_s

    def snapshot(self, scan: bool = False):
        """A report, kept for growth and in the capture; and its slab facts."""
        began = time.monotonic()
        # a signal stops the scan: the first one a periodic report's (the
        # session ends: the final report scans), a second the final one's
        signals = self.signals.count
        report, facts = assemble(self.collector.collect(scan=scan, stop=lambda: self.signals.count > signals))
        if report.get("scan", {}).get("seconds") is not None:
            self._scan_cost, self._scanned_at = report["scan"]["seconds"], began
        # when its objects were read: a holder scan after the read takes seconds
        t_s = report["duration_s"]
        self.growth.add(t_s, report)
        if self.capture:
            self.capture.snapshot(t_s, report, facts)
        return report, facts

    def emit(self, final: bool = False) -> None:
        report, facts = self.snapshot(scan=self._scan_due(final))
        shown = limit(self.growth.rank(report), self.cfg.top)
        if self.sink:
            self.sink.write(render(shown, self.cfg.fmt))
        if self.on_report:
            self.on_report(shown, facts)
