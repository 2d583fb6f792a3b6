"""The processes a session traces: PIDs given with -p, or a command started held.

Allocation probes filter by thread-group id, so every thread of a target is
traced; a thread id given with -p is mapped to its process.
"""

import os
import shlex
import shutil
import sys

from .errors import KleakError

__all__ = ["resolve_pid", "alive", "HeldCommand"]


def resolve_pid(pid: int) -> int:
    """The tgid of ``pid``; KleakError (status 2) when no such process exists."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Tgid:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        pass
    raise KleakError(f"no process with PID {pid}", status=2)


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


class HeldCommand:
    """A command forked now but held before exec until ``release()``.

    The probes attach and the child's pid enters the target map while it
    waits, so its first allocation is already traced. Its standard streams
    are ours: the command's output passes through.
    """

    def __init__(self, command: str):
        argv = shlex.split(command)
        if not argv:
            raise KleakError("-c needs a command", status=2)
        if shutil.which(argv[0]) is None:
            raise KleakError(f"-c: command not found: {argv[0]}", status=2)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(w)
                os.read(r, 1)
                os.close(r)
                os.execvp(argv[0], argv)
            except BaseException as e:
                print(f"kleaktrace: cannot run {argv[0]}: {e}", file=sys.stderr)
            os._exit(127)
        os.close(r)
        self.pid = pid
        self.command = command
        self._gate = w
        self.returncode = None

    def release(self) -> None:
        if self._gate is not None:
            os.write(self._gate, b"g")
            os.close(self._gate)
            self._gate = None

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def stop(self) -> None:
        """Release (so a held child can die), terminate and reap the command."""
        if self._gate is not None:
            os.close(self._gate)  # EOF: the child's read returns and exec proceeds
            self._gate = None
        if self.poll() is None:
            try:
                os.kill(self.pid, 15)
            except ProcessLookupError:
                pass
            os.waitpid(self.pid, 0)
            self.returncode = -15
