"""sessions/signals.py: what a signal does to a session, and after it."""

import os
import signal

from bpftrace_leak.sessions.signals import ENDING, Signals


def test_a_session_a_signal_ended_ignores_the_signals_that_follow():
    before = {sig: signal.getsignal(sig) for sig in ENDING}
    try:
        with Signals() as s:
            os.kill(os.getpid(), signal.SIGINT)
            s.wait(1.0)
            assert s.received == signal.SIGINT
        # Ctrl-C pressed again while the process exits: no KeyboardInterrupt
        assert all(signal.getsignal(sig) is signal.SIG_IGN for sig in ENDING)
        os.kill(os.getpid(), signal.SIGINT)
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)


def test_a_session_no_signal_ended_gives_the_handlers_back():
    before = {sig: signal.getsignal(sig) for sig in ENDING}
    with Signals() as s:
        assert signal.getsignal(signal.SIGINT) == s._on
    assert {sig: signal.getsignal(sig) for sig in ENDING} == before
