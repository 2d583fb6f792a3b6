"""A live session: attach, report every INTERVAL or once at the end, detach.

The session ends at --duration, after COUNT reports, on Ctrl-C, SIGTERM or
SIGHUP, or when every target has exited (its children too with
--children); it always ends with a final report (the objects a dead process
left outstanding are exactly the leaks worth seeing) and with every probe
detached. A signal never cuts anything short: it ends the waiting, and what
is being written (a report, a capture line) is finished first; a signal
while the probes are being compiled ends the session as soon as that is
done, with one line. A full disk or a closed terminal costs the snapshots or
reports that cannot be written, with one warning, never the session.
"""

import datetime
import os
import sys
import time

from ..analysis.history import LiveGrowth
from ..analysis.referee import referee
from ..analysis.report import build_report
from ..analysis.sockets import is_socket_cache, name_sockets
from ..errors import KleakError
from ..kernel import check_privileges, kernel_release
from ..kernel.cgroups import CgroupNames, memory_on_v1, mount_point, scan
from ..kernel.cgroups import resolve as cgroup_folder
from ..kernel.cpus import visit_cpus
from ..kernel.slabs import cache_aliases, check_cache_glob, known_caches
from ..output.capture import slab_facts
from ..output.outfiles import open_private
from ..output.reporter import limit, printable, render
from ..output.sinks import CaptureSink, ReportSink
from ..tracer.census import Census
from ..tracer.pins import PinCensus
from ..tracer.reader import Reader
from ..tracer.session import Session
from ..tracer.sites import Promoter
from .signals import Interrupted, Signals
from .targets import HeldCommand, alive, resolve_pid

__all__ = ["run"]


def _warn(msg: str) -> None:
    print(f"kleaktrace: warning: {msg}", file=sys.stderr, flush=True)


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


def _targets_gone(cfg, watched, held, session) -> bool:
    """Every traced process has exited: with --children, every one the
    kernel side still counts (targets it forked included), else the ones
    named; a held command is reaped as it goes."""
    if not watched:
        return False
    done = held.poll() is not None if held else not any(alive(p) for p in watched)
    return session.targets_left() == 0 if cfg.children else done


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def run(cfg, out=None, on_attached=None, stop_event=None, on_report=None) -> int:
    """Run one live session for Config ``cfg``; returns the exit status.
    Raises KleakError on bad input.

    ``on_attached(session)`` is called once the probes are live; setting
    ``stop_event`` (a threading.Event) ends the session like Ctrl-C;
    ``on_report(report, slab_facts)`` sees each report document after it is
    written, with the /proc/slabinfo and /proc/meminfo facts it was checked against.
    """
    check_privileges()
    targets = [resolve_pid(p) for p in cfg.pids]
    cgroup_ids = resolve_cgroups(cfg.cgroups)
    aliases = cache_aliases()
    if cfg.cache_glob and not check_cache_glob(cfg.cache_glob, known_caches()):
        raise KleakError(f"--cache {printable(cfg.cache_glob)}: no slab cache of that name (see /proc/slabinfo)",
                         status=2)
    with Signals() as signals:
        return _run(cfg, targets, aliases, signals, out, on_attached, stop_event, on_report, cgroup_ids)


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
            raise KleakError(f"--cgroup {printable(path)}: no such cgroup under {root}", status=2)
        ids += scan(folder)
    return ids


def _run(cfg, targets, aliases, signals, out, on_attached, stop_event, on_report, cgroup_ids) -> int:
    sink = capture = held = reader = session = census = pins = None
    try:
        # files first: a path that cannot take them fails before the compile
        if cfg.output:
            made = open_private(cfg.output, cfg.force, binary=cfg.fmt == "pprof")
            sink = ReportSink(made.stream, cfg.output, _warn, file=made)
        elif not cfg.quiet:
            sink = ReportSink(out or sys.stdout, "standard output", _warn)
        if cfg.capture_path:
            capture = CaptureSink(cfg.capture_path, cfg.force, _warn)
        if cfg.command is not None:
            held = HeldCommand(cfg.argv)
            targets.append(held.pid)
        watched = list(targets)
        session = Session(cfg, targets, warn=_warn, cgroup_ids=cgroup_ids)
        session.start()
        signals.check()
        reader = Reader(session)
        promoter = Promoter(session) if cfg.stacks == "sites" and cfg.allocs else None
        census = Census(session, reader) if session.plan.census else None
        pins = PinCensus(session, reader, census) if census and session.plan.pins else None
        growth = LiveGrowth()
        cgroups = None
        if session.plan.cgroups:
            cgroups = CgroupNames(mount_point(session.plan.cgroups["version"]), reader.cgroup_events)
            cgroups.refresh()
        started = _now_iso()
        t0 = time.monotonic()
        if capture:
            capture.header({
                "kernel": kernel_release(), "started": started, "targets": targets,
                "command": cfg.command, "min_age_ms": cfg.min_age_ms,
                "interval_s": cfg.interval_s or cfg.capture_interval_s,
                "host": {"slab_aliases": {k: sorted(v) for k, v in aliases.items() if v}}})
        symbolizer = reader.symbolizer()  # one for the session: it caches address -> name
        if pins:
            pins.start(symbolizer)

        def build():
            """(The full report (every group), refereed by /proc/slabinfo, with the
            sockets behind socket groups named; the slab facts it was checked against)."""
            visit_cpus()  # idle CPUs drop the mm of an exited process they borrowed
            if census:
                census.run(cfg.min_age_ns, seeds=reader.sites()[0])
            snap = reader.snapshot(cfg.min_age_ns)
            facts = slab_facts()
            if promoter:
                promoter.promote(snap.objects)
            if cgroups:
                cgroups.refresh()
            report = build_report(
                snap, symbolizer, kernel=kernel_release(), started=started, duration_s=time.monotonic() - t0,
                min_age_ms=cfg.min_age_ms, targets=targets, cache_glob=cfg.cache_glob, aliases=aliases,
                user_pages=cfg.user_pages, refs_tracking=session.refs_tracking,
                cgroup_name=cgroups.name if cgroups else None, sample_bytes=cfg.sample_bytes)
            report["by"] = cfg.by
            socket_pids = {p for g in report["groups"] if is_socket_cache(g["cache"], aliases.get(g["cache"], set()))
                           for p in g["pids"]}
            report["sockets"] = name_sockets(sorted(socket_pids)) if socket_pids and targets else []
            if not cfg.sample_bytes:  # a sampled estimate above the kernel's count may be chance, not phantoms
                referee(report, {name: c["objects"] for name, c in facts["caches"].items()}, aliases)
            if pins:
                report["census"] = pins.run(cfg.min_age_ns, symbolizer).section
            report["tracer_maps_bytes"] = reader.map_memory()
            forget(snap.now_ns, snap.objects)
            return report, facts

        def forget(now_ns, objects):
            reader.prune(now_ns, objects, cfg.min_age_ns)
            if cgroups:
                cgroups.keep({o.cgroup for o in objects})

        def snapshot():
            """A report, kept for growth and in the capture; and its slab facts."""
            report, facts = build()
            growth.add(time.monotonic() - t0, report)
            if capture:
                capture.snapshot(time.monotonic() - t0, report, facts)
            return report, facts

        def emit():
            report, facts = snapshot()
            shown = limit(growth.rank(report), cfg.top)
            if sink:
                sink.write(render(shown, cfg.fmt))
            if on_report:
                on_report(shown, facts)

        who = f"PID {', '.join(map(str, watched))}" if watched else "all processes"
        print(f"kleaktrace: tracing {who} with {len(session.attached)} events"
              + (f" (kernel lacks: {', '.join(session.missing)})" if session.missing else "")
              + "... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        for note in session.notes:
            print(f"kleaktrace: note: {note}", file=sys.stderr, flush=True)
        if on_attached:
            on_attached(session)
        if held:
            held.release()
        reports = 0
        final_needed = True
        next_report = t0 + cfg.interval_s if cfg.interval_s else None
        # without INTERVAL, snapshots are still taken, silently: for -w, and
        # for the growth that ranks the final report
        next_snapshot = t0 + cfg.capture_interval_s if not cfg.interval_s else None
        deadline = t0 + cfg.duration_s if cfg.duration_s else None
        next_promote = t0 + cfg.promote_every_s if promoter else None
        while signals.received is None and not (stop_event is not None and stop_event.is_set()):
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if next_snapshot is not None and now >= next_snapshot:
                began = time.monotonic()
                snapshot()
                next_snapshot += cfg.capture_interval_s
                if not capture:  # for growth only: a million objects take a second, stay below 5% of a core
                    next_snapshot = max(next_snapshot, time.monotonic() + 20 * (time.monotonic() - began))
            if next_promote is not None and now >= next_promote:
                began = time.monotonic()
                now_ns, objects = reader.objects(cfg.min_age_ns)
                promoter.promote(objects)
                if cgroups:  # names of cgroups that may be gone by the report
                    cgroups.refresh()
                forget(now_ns, objects)  # a thousand processes may exit a second
                # a million objects take a good part of a second to read: stay below 5% of a core
                next_promote = time.monotonic() + max(cfg.promote_every_s, 20 * (time.monotonic() - began))
            if next_report is not None and now >= next_report:
                emit()
                reports += 1
                next_report += cfg.interval_s
                if cfg.count and reports >= cfg.count:
                    final_needed = False
                    break
            if _targets_gone(cfg, watched, held, session):
                print("kleaktrace: targets exited", file=sys.stderr, flush=True)
                signals.wait(cfg.settle_s)
                break
            stops = [t for t in (deadline, next_report, next_snapshot, next_promote) if t is not None]
            signals.wait(min([now + 0.2] + stops) - time.monotonic())
        if final_needed:
            if cfg.shake and cfg.allocs:
                shake(cfg.settle_s)
            emit()
        return 0
    except Interrupted as e:
        print(f"kleaktrace: {e}", file=sys.stderr, flush=True)
        return e.status
    finally:
        # nothing here is cut short by a signal: the handlers only take note
        if capture:
            capture.close()
        if pins:
            pins.close()
        if census:
            census.close()
        if reader:
            reader.close()
        if session:
            session.close()
        if held:
            held.stop()
        if sink:
            sink.close()
