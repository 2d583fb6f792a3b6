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
import os
import sys
import time
from dataclasses import dataclass

from ..analysis.history import LiveGrowth
from ..analysis.report import assemble
from ..errors import KleakError
from ..kernel import check_privileges, kernel_release
from ..kernel.cgroups import CgroupNames, memory_on_v1, mount_point, scan
from ..kernel.cgroups import resolve as cgroup_folder
from ..kernel.slabs import cache_aliases, check_cache_glob, known_caches
from ..output.outfiles import open_private, same_place
from ..reporter import limit, render
from ..output.sinks import CaptureSink, ReportSink
from ..text import printable
from ..tracer.collect import Collector
from ..tracer.session import Session
from .signals import Interrupted, Signals
from .targets import HeldCommand, alive, resolve_pid

__all__ = ["run", "LiveSession", "resolve_cgroups"]

#: after the targets exited, how long the final report waits at most for their
#: tasks to be reaped and freed (a parent that never waits keeps zombies)
REAP_WAIT_S = 5.0
#: serve scans for holders at most this often (a scan reads every page the
#: kernel holds: seconds of a core on a large host)
SERVE_SCAN_EVERY_S = 600.0


def _warn(msg: str) -> None:
    try:
        print(f"kleaktrace: warning: {printable(msg)}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def _say(msg: str) -> None:
    try:
        print(f"kleaktrace: {msg}", file=sys.stderr, flush=True)
    except (OSError, ValueError):
        pass


def shake(settle_s: float) -> None:
    """Drop the clean page cache and the reclaimable dentries and inodes,
    system-wide, and wait for their RCU-deferred frees: what is still
    outstanding then is pinned (held by a reference), not kept for reuse by
    the dcache or, as the buffer heads of cached metadata blocks, the page
    cache."""
    _warn("--shake: syncing and writing 3 to /proc/sys/vm/drop_caches (system-wide: "
          "clean page cache and every unused dentry and inode are dropped)")
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3")
    except OSError as e:
        _warn(f"--shake: cannot write /proc/sys/vm/drop_caches: {e.strerror}; report not shaken")
        return
    time.sleep(settle_s)


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
    cgroup_ids = resolve_cgroups(cfg.cgroups)
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


def resolve_cgroups(paths) -> list[int]:
    """The kernfs ids of --cgroup PATHs and their descendants, in the memory
    controller's hierarchy; KleakError (status 2) for one that does not exist."""
    if not paths:
        return []
    root = mount_point(1) if memory_on_v1() else mount_point(2)
    if root is None:
        raise KleakError("--cgroup: the memory controller's cgroup hierarchy is not mounted", status=2)
    ids = []
    for path in paths:
        folder = cgroup_folder(path, root)
        if folder is None:
            raise KleakError(f"--cgroup {printable(path)!r}: no such cgroup under {root}", status=2)
        ids += scan(folder)
    return ids


@dataclass
class Job:
    """A step of the session, due at ``due`` (time.monotonic; None: never again)."""

    name: str
    due: float | None
    step: object  # callable(now) -> the next due time, or None


class LiveSession:
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
            self.sink = ReportSink(made.stream, cfg.output, _warn, file=made)
        elif not cfg.quiet:
            self.sink = ReportSink(self.out or sys.stdout, "standard output", _warn)
        if cfg.capture_path:
            self.capture = CaptureSink(cfg.capture_path, cfg.force, _warn)

    def _start(self) -> None:
        cfg = self.cfg
        self._open_outputs()
        if cfg.command is not None:
            self.held = HeldCommand(cfg.argv)
            self.targets.append(self.held.pid)
        self.watched = list(self.targets)
        self.session = Session(cfg, self.targets, warn=_warn, cgroup_ids=self.cgroup_ids)
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
            _say(f"tracing {self._who()} with {len(self.session.attached)} events"
                 + (f" (kernel lacks: {', '.join(self.session.missing)})" if self.session.missing else "")
                 + "... Hit Ctrl-C to end.")
            for note in self.session.notes:
                _say(f"note: {note}")
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
            _say(str(e))
            return e.status
        finally:
            self._close()

    # -- the schedule --------------------------------------------------------------------

    def _jobs(self) -> list[Job]:
        cfg, t0 = self.cfg, self.t0
        jobs = [Job("targets", t0, self.check_targets)]
        if cfg.duration_s:
            jobs.append(Job("duration", t0 + cfg.duration_s, self.end_of_duration))
        if cfg.interval_s:
            jobs.append(Job("report", t0 + cfg.interval_s, self.report_job))
        else:  # for -w, and for the growth that ranks the final report
            jobs.append(Job("snapshot", t0 + cfg.capture_interval_s, self.snapshot_job))
        if self.collector.promoter:
            jobs.append(Job("promote", t0 + cfg.promote_every_s, self.promote_job))
        return jobs

    def _stopping(self) -> bool:
        return self.ended is not None or self.signals.received is not None or \
            (self.stop_event is not None and self.stop_event.is_set())

    def _loop(self, jobs: list[Job]) -> None:
        while not self._stopping():
            for job in jobs:
                if job.due is not None and time.monotonic() >= job.due and not self._stopping():
                    job.due = job.step(time.monotonic())
            due = [job.due for job in jobs if job.due is not None]
            self.signals.wait(min([time.monotonic() + 0.2] + due) - time.monotonic())

    def _guarded(self, what: str, step) -> bool:
        """Run ``step``; a failure of the host (OSError: no descriptor left, a
        full disk; MemoryError) is one warning per kind and the session goes
        on, as is any failure with keep_going (serve)."""
        try:
            step()
            return True
        except (OSError, MemoryError) as e:
            why = f"{type(e).__name__}: {getattr(e, 'strerror', None) or e}"
        except Exception as e:  # noqa: BLE001 -- serve must outlive a bad report
            if not self.keep_going:
                raise
            why = f"{type(e).__name__}: {e}"
        if (what, why) not in self.failed:
            self.failed.add((what, why))
            _warn(f"{what} failed ({why}); the session goes on")
        return False

    # -- the jobs --------------------------------------------------------------------------

    def report_job(self, now: float) -> float | None:
        began = time.monotonic()
        self._guarded("a report", self.emit)
        self.reports += 1
        if self.cfg.count and self.reports >= self.cfg.count:
            self.final_needed = False
            self.ended = "count"
            return None
        # at most half a core: the next report waits as long as this one took
        return max(now + self.cfg.interval_s, time.monotonic() + (time.monotonic() - began))

    def snapshot_job(self, now: float) -> float:
        began = time.monotonic()
        self._guarded("a snapshot", self.snapshot)
        due = now + self.cfg.capture_interval_s
        if not self.capture:  # for growth only: a million objects take a second, stay below 5% of a core
            due = max(due, time.monotonic() + 20 * (time.monotonic() - began))
        return due

    def promote_job(self, now: float) -> float:
        began = time.monotonic()
        self._guarded("promoting call sites", self.collector.promote)
        # a million objects take a good part of a second to read: stay below 5% of a core
        return time.monotonic() + max(self.cfg.promote_every_s, 20 * (time.monotonic() - began))

    def end_of_duration(self, now: float) -> None:
        self.ended = "duration"
        return None

    def _targets_gone(self) -> bool:
        """Every traced process has exited: with --children, every one the
        kernel side still counts (targets it forked included), else the ones
        named; a held command and what it orphaned are reaped as they go."""
        if not self.watched:
            return False
        if self.held:
            self.held.reap()
        done = self.held.returncode is not None if self.held else not any(alive(p) for p in self.watched)
        return self.session.targets_left() == 0 if self.cfg.children else done

    def check_targets(self, now: float) -> float | None:
        """Once the targets are gone, wait for what their exits free: every
        exited task reaped and freed (probes.c: exits_unfreed; REAP_WAIT_S at
        most), then an RCU grace period and more (settle_s) for the frees
        deferred past it. A report made at the last exit showed an exited
        process's task_struct, signal_struct and sighand as leaks."""
        if self._exited_at is None:
            if not self._targets_gone():
                return now + 0.2
            _say("targets exited")
            self._exited_at = now
        if self.held:
            self.held.reap()
        unfreed = self.session.exits_unfreed()
        if unfreed and now - self._exited_at < REAP_WAIT_S:
            return now + 0.05
        if unfreed:
            _say(f"note: {unfreed} exited tasks of the targets are not reaped yet (their parent has not "
                 "waited for them): what they hold stays outstanding")
        self.signals.wait(self.cfg.settle_s)
        self.ended = "targets"
        return None

    # -- reports -----------------------------------------------------------------------------

    def _scan_due(self, final: bool) -> bool:
        """Whether a written report gets the holder scan: the final one
        always; periodic ones while a scan costs at most a tenth of the
        interval (serve: at most one every SERVE_SCAN_EVERY_S); silent
        snapshots never."""
        if not self.cfg.scan:
            return False
        if final:
            return True
        now = time.monotonic()
        if self.keep_going:
            return self._scanned_at is None or now - self._scanned_at >= SERVE_SCAN_EVERY_S
        return self.cfg.interval_s is not None and self._scan_cost * 10 <= self.cfg.interval_s

    def snapshot(self, scan: bool = False):
        """A report, kept for growth and in the capture; and its slab facts."""
        began = time.monotonic()
        report, facts = assemble(self.collector.collect(scan=scan))
        if report.get("scan", {}).get("seconds") is not None:
            self._scan_cost, self._scanned_at = report["scan"]["seconds"], began
        t_s = time.monotonic() - self.t0
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
