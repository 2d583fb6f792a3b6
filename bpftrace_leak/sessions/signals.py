"""Signals that end a session: SIGINT (Ctrl-C), SIGTERM and SIGHUP.

They end it, they never cut it short: a handler only notes the signal and
wakes the loop's wait, and the loop finishes what it is writing (a report, a
capture line), makes the final report and detaches. Before the probes are
attached, a signal ends the session as soon as the current step (BCC's
compile takes seconds) is done, with one line and status 128 + the signal.
"""

import os
import select
import signal

from ..errors import KleakError

__all__ = ["Signals", "Interrupted", "ENDING"]

ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KleakError):
    """A signal arrived before the probes were attached: nothing was traced."""


class Signals:
    """SIGINT, SIGTERM and SIGHUP end the session without interrupting it.

    The handlers only note the signal and wake wait() (through
    signal.set_wakeup_fd); the loop checks ``received`` between steps. A
    second signal while the final report is made stops its holder scan (its
    verdicts are unknown then) and is answered with a line on stderr,
    written with os.write: a handler must not re-enter a buffered stream the
    report may be writing.
    """

    def __init__(self):
        self.received: int | None = None
        self.count = 0  # ending signals so far: a later one stops a holder scan
        self._told = False
        self._old = {}
        self._r, self._w = os.pipe()
        os.set_blocking(self._w, False)
        os.set_blocking(self._r, False)

    def _on(self, signum, frame):
        self.count += 1
        if self.received is None:
            self.received = signum
        elif not self._told:
            self._told = True
            os.write(2, b"kleaktrace: ending: the holder scan stops; finishing the final report and detaching\n")

    def __enter__(self):
        for sig in ENDING:
            self._old[sig] = signal.signal(sig, self._on)
        self._old_fd = signal.set_wakeup_fd(self._w, warn_on_full_buffer=False)
        return self

    def __exit__(self, *exc):
        signal.set_wakeup_fd(self._old_fd)
        # A session a signal ended is the process ending: one more Ctrl-C
        # (people press it again and again) between here and the exit found
        # Python's own handler back, and its KeyboardInterrupt killed the
        # process, status -2, after the probes were detached (CI, stop 32).
        # The signals that come after it are ignored, not the handler restored.
        for sig, old in self._old.items():
            signal.signal(sig, signal.SIG_IGN if self.received is not None else old)
        os.close(self._r)
        os.close(self._w)
        return False

    def wait(self, seconds: float) -> None:
        """Sleep up to ``seconds``, less when a signal arrives."""
        if self.received is None and seconds > 0:
            select.select([self._r], [], [], seconds)
        try:
            while os.read(self._r, 512):
                pass
        except BlockingIOError:
            pass

    def check(self) -> None:
        """Raise Interrupted when a signal arrived (used before the probes are live)."""
        if self.received is not None:
            name = signal.Signals(self.received).name
            raise Interrupted(f"{name} while starting: nothing was traced", status=128 + self.received)
