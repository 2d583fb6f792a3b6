"""The live session's schedule: named jobs, each a step that says when it is
due again (sessions/live.py's docstring lists them), run until one ends the
session or a signal does."""

import time
from dataclasses import dataclass

from ..kernel.rcu import ABSENT, rcu_barrier
from ..text import say, warn
from .targets import alive

__all__ = ["Job", "Jobs", "REAP_WAIT_S"]

#: after the targets exited, how long the final report waits at most for their
#: tasks to be reaped and freed (a parent that never waits keeps zombies)
REAP_WAIT_S = 5.0


@dataclass
class Job:
    """A step of the session, due at ``due`` (time.monotonic; None: never again)."""

    name: str
    due: float | None
    step: object  # callable(now) -> the next due time, or None


class Jobs:
    """LiveSession's jobs and their schedule (a mixin: the jobs are the
    session's steps, on its state)."""

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
            warn(f"{what} failed ({why}); the session goes on")
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
        most), then every RCU callback queued so far (kernel/rcu.py:
        rcu_barrier) and settle_s more for the frees deferred past them. A
        report made at the last exit showed an exited process's task_struct,
        signal_struct and sighand as leaks. A fixed second of sleep alone
        was once short in a loaded full test run (77 maple nodes, which
        kfree_rcu frees, outstanding after 2,000 exits; where they waited is
        not known)."""
        if self._exited_at is None:
            if not self._targets_gone():
                return now + 0.2
            say("targets exited")
            self._exited_at = now
        if self.held:
            self.held.reap()
        unfreed = self.session.exits_unfreed()
        if unfreed and now - self._exited_at < REAP_WAIT_S:
            return now + 0.05
        if unfreed:
            say(f"note: {unfreed} exited tasks of the targets are not reaped yet (their parent has not "
                 "waited for them): what they hold stays outstanding")
        why = rcu_barrier()
        if why and why != ABSENT:
            say(f"note: {why}: the final report may still count RCU-deferred frees of the targets")
        self.signals.wait(self.cfg.settle_s)
        self.ended = "targets"
        return None
