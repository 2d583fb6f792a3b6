"""A live session: attach, report every INTERVAL or once at the end, detach.

The session ends at --duration, after COUNT reports, on Ctrl-C or SIGTERM,
or when every target has exited; it always ends with a final report (the
objects a dead process left outstanding are exactly the leaks worth seeing)
and with every probe detached.
"""

import datetime
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from . import kernel
from .errors import KleakError
from .report import build_report
from .capture import CaptureWriter, slab_facts
from .reporter import limit, render
from .sockets import is_socket_cache, name_sockets
from .slabs import cache_aliases, check_cache_glob, known_caches
from .targets import HeldCommand, alive, resolve_pid
from .tracer import Options, Tracer, check_privileges

__all__ = ["LiveConfig", "Terminated", "run"]


class Terminated(BaseException):
    """Raised from the SIGTERM handler so the session unwinds like on Ctrl-C."""


@dataclass
class LiveConfig:
    pids: list[int] = field(default_factory=list)
    command: str | None = None
    children: bool = False
    min_age_ms: int = 1000
    interval_s: float | None = None
    count: int | None = None
    duration_s: float | None = None
    top: int | None = 10
    cache_glob: str | None = None
    fmt: str = "text"
    user_pages: bool = False
    kernel_headers: str | None = None
    max_objects: int = 1_000_000
    stack_slots: int = 16384
    free_copies: int = 2
    stacks: str = "sites"
    promote_every_s: float = 2.0  # how often growing call sites are looked for
    allocs: bool = True
    refs: bool = True
    refs_via: str = "auto"
    settle_s: float = 1.0  # after the targets exit, for their RCU-deferred frees
    shake: bool = False  # drop reclaimable dentries and inodes before the final report
    capture_path: str | None = None  # -w FILE
    capture_interval_s: float = 10.0  # snapshots when no INTERVAL is given
    quiet: bool = False  # record: no report on stdout


def _warn(msg: str) -> None:
    print(f"kleaktrace: warning: {msg}", file=sys.stderr, flush=True)


def shake(settle_s: float) -> None:
    """Drop the reclaimable dentries and inodes, system-wide, and wait for
    their RCU-deferred frees: what is still outstanding then is pinned (held
    by a reference), not kept by the dcache for reuse."""
    _warn("--shake: syncing and writing 2 to /proc/sys/vm/drop_caches (system-wide: "
          "every unused dentry and inode is dropped)")
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("2")
    except OSError as e:
        _warn(f"--shake: cannot write /proc/sys/vm/drop_caches: {e.strerror}; report not shaken")
        return
    time.sleep(settle_s)


def _on_sigterm(signum, frame):
    raise Terminated()


def run(cfg: LiveConfig, out=None, on_attached=None, stop_event=None, on_report=None) -> int:
    """Run one live session; returns the exit status. Raises KleakError on bad input.

    ``on_attached(tracer)`` is called once the probes are live; setting
    ``stop_event`` (a threading.Event) ends the session like Ctrl-C;
    ``on_report(report)`` sees each report document after it is printed.
    """
    out = out or sys.stdout
    check_privileges()
    targets = [resolve_pid(p) for p in cfg.pids]
    aliases = cache_aliases()
    if cfg.cache_glob and not check_cache_glob(cfg.cache_glob, known_caches()):
        raise KleakError(f"--cache {cfg.cache_glob}: no slab cache of that name (see /proc/slabinfo)", status=2)
    held = HeldCommand(cfg.command) if cfg.command else None
    if held:
        targets.append(held.pid)
    watched = list(targets)
    opts = Options(targets=targets, children=cfg.children, user_pages=cfg.user_pages,
                   max_objects=cfg.max_objects, stack_slots=cfg.stack_slots,
                   kernel_headers=cfg.kernel_headers, free_copies=cfg.free_copies, stacks=cfg.stacks,
                   allocs=cfg.allocs, refs=cfg.refs, refs_via=cfg.refs_via)
    old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    tracer = Tracer(opts, warn=_warn)
    try:
        tracer.start()
        if not cfg.refs:
            refs_tracking = "off"
        else:
            refs_tracking = tracer.refs_method or f"unavailable: {tracer.refs_unavailable}"
        started_wall = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        t0 = time.monotonic()

        writer = None
        if cfg.capture_path:
            writer = CaptureWriter(cfg.capture_path, {
                "kernel": kernel.kernel_release(), "started": started_wall, "targets": targets,
                "command": cfg.command, "min_age_ms": cfg.min_age_ms,
                "interval_s": cfg.interval_s or cfg.capture_interval_s,
                "host": {"slab_aliases": {k: sorted(v) for k, v in aliases.items() if v}}})

        symbolizer = tracer.symbolizer()  # one for the session: it caches address -> name

        def build():
            """The full report (every group), with the sockets behind socket groups named."""
            report = build_report(
                tracer.snapshot(cfg.min_age_ms * 1_000_000), symbolizer, kernel=kernel.kernel_release(),
                started=started_wall, duration_s=time.monotonic() - t0,
                min_age_ms=cfg.min_age_ms, targets=targets,
                cache_glob=cfg.cache_glob, aliases=aliases, user_pages=cfg.user_pages,
                refs_tracking=refs_tracking)
            socket_pids = {p for g in report["groups"] if is_socket_cache(g["cache"], aliases.get(g["cache"], set()))
                           for p in g["pids"]}
            report["sockets"] = name_sockets(sorted(socket_pids)) if socket_pids and targets else []
            return report

        def capture(report):
            if writer:
                writer.snapshot(time.monotonic() - t0, datetime.datetime.now(datetime.timezone.utc)
                                .isoformat(timespec="seconds"), report, slab_facts())

        def emit():
            report = build()
            capture(report)
            shown = limit(report, cfg.top)
            if not cfg.quiet:
                out.write(render(shown, cfg.fmt))
                out.flush()
            if on_report:
                on_report(shown)

        who = f"PID {', '.join(map(str, watched))}" if watched else "all processes"
        print(f"kleaktrace: tracing {who} with {len(tracer.attached)} events"
              + (f" (kernel lacks: {', '.join(tracer.missing)})" if tracer.missing else "")
              + "... Hit Ctrl-C to end.", file=sys.stderr, flush=True)
        for note in tracer.notes:
            print(f"kleaktrace: note: {note}", file=sys.stderr, flush=True)
        if on_attached:
            on_attached(tracer)
        if held:
            held.release()
        reports = 0
        final_needed = True
        next_report = t0 + cfg.interval_s if cfg.interval_s else None
        # with -w and no INTERVAL, snapshots are still taken, silently
        next_capture = t0 + cfg.capture_interval_s if writer and not cfg.interval_s else None
        deadline = t0 + cfg.duration_s if cfg.duration_s else None
        next_promote = t0 + cfg.promote_every_s if cfg.stacks == "sites" and cfg.allocs else None
        try:
            while True:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                if stop_event is not None and stop_event.is_set():
                    break
                if next_capture is not None and now >= next_capture:
                    capture(build())
                    next_capture += cfg.capture_interval_s
                if next_promote is not None and now >= next_promote:
                    began = time.monotonic()
                    tracer.tick(cfg.min_age_ms * 1_000_000)
                    # a million objects take a good part of a second to read: stay below 5% of a core
                    next_promote = time.monotonic() + max(cfg.promote_every_s, 20 * (time.monotonic() - began))
                if next_report is not None and now >= next_report:
                    emit()
                    reports += 1
                    next_report += cfg.interval_s
                    if cfg.count and reports >= cfg.count:
                        final_needed = False
                        break
                gone = held.poll() is not None if held else (watched and not any(alive(p) for p in watched))
                if gone:
                    print("kleaktrace: targets exited", file=sys.stderr, flush=True)
                    time.sleep(cfg.settle_s)
                    break
                stops = [t for t in (deadline, next_report, next_capture, next_promote) if t is not None]
                time.sleep(max(0.0, min([now + 0.2] + stops) - time.monotonic()))
        except (KeyboardInterrupt, Terminated):
            pass
        if final_needed:
            if cfg.shake and cfg.allocs:
                shake(cfg.settle_s)
            emit()
        if writer:
            writer.close()
            print(f"kleaktrace: capture written to {cfg.capture_path}", file=sys.stderr, flush=True)
        return 0
    finally:
        # a second signal must not cut the detaching short
        old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            tracer.close()
            if held:
                held.stop()
        finally:
            signal.signal(signal.SIGINT, old_int)
            signal.signal(signal.SIGTERM, old_term)
