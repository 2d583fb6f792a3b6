"""The processes a session traces: PIDs given with -p, or a command started held.

Allocation probes filter by thread-group id, so every thread of a target is
traced; a thread id given with -p is mapped to its process.
"""

import os
import shutil
import signal
import sys
import time

from ..errors import KleakError
from ..text import printable

__all__ = ["resolve_pid", "alive", "HeldCommand"]

_PF_KTHREAD = 0x00200000  # include/linux/sched.h; /proc/PID/stat field 9


def _stat(pid: int) -> tuple[str, str, int] | None:
    """(comm, state, flags) of ``pid`` from /proc/PID/stat, None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    comm, rest = text[text.index("(") + 1:text.rindex(")")], text[text.rindex(")") + 2:].split()
    return comm, rest[0], int(rest[6])


def resolve_pid(pid: int) -> int:
    """The tgid of ``pid``; KleakError (status 2) when it is no process worth tracing:
    gone, a zombie (it exited: nothing it does can leak any more), or a kernel
    thread (it allocates on behalf of everyone: trace system-wide instead)."""
    st = _stat(pid)
    tgid = None
    try:
        with open(f"/proc/{pid}/status") as f:
            tgid = next(int(line.split()[1]) for line in f if line.startswith("Tgid:"))
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        pass
    if st is None or tgid is None:
        raise KleakError(f"no process with PID {pid}", status=2)
    comm, state, flags = st
    if state in ("Z", "X"):
        raise KleakError(f"PID {pid} ({printable(comm)}) has exited (a zombie): there is nothing left to trace",
                         status=2)
    if flags & _PF_KTHREAD:
        raise KleakError(f"PID {pid} ({printable(comm)}) is a kernel thread: it allocates for everyone; "
                         "trace system-wide (no -p) and look for its name in the groups", status=2)
    return tgid


def alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie."""
    st = _stat(pid)
    return st is not None and st[1] not in ("Z", "X")


_PR_SET_CHILD_SUBREAPER = 36  # include/uapi/linux/prctl.h


def _children_map() -> dict[int, list[int]]:
    """{ppid: [pids]} of every process, from /proc/PID/stat."""
    out: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        ppid = int(text[text.rindex(")") + 2:].split()[1])
        out.setdefault(ppid, []).append(int(name))
    return out


class HeldCommand:
    """A command forked now but held before exec until ``release()``.

    The probes attach and the child's pid enters the target map while it
    waits, so its first allocation is already traced. Its standard streams
    are ours: the command's output passes through.

    kleaktrace becomes the child subreaper of what it starts: a process the
    command orphans (``sh -c 'sleep 300 & ...'``, a forking server's workers
    once their parent is gone) is reparented to kleaktrace, which reaps it
    as it exits (an exited task is freed only once reaped: reap()), and
    which ends it with the rest of the tree (stop()).
    """

    def __init__(self, argv: list[str]):
        if shutil.which(argv[0]) is None:
            raise KleakError(f"-c: command not found: {printable(argv[0])}", status=2)
        import ctypes
        # children this process had already (a caller's own) are not the command's
        self._others = set(_children_map().get(os.getpid(), ()))
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            try:
                os.close(w)
                go = os.read(r, 1)
                os.close(r)
                if go != b"g":
                    os._exit(0)  # the session ended before it started: never exec
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.execvp(argv[0], argv)
            except BaseException as e:
                print(f"kleaktrace: cannot run {printable(argv[0])}: {e}", file=sys.stderr)
            os._exit(127)
        os.close(r)
        self.pid = pid
        self._gate = w
        self.returncode = None

    def release(self) -> None:
        if self._gate is not None:
            os.write(self._gate, b"g")
            os.close(self._gate)
            self._gate = None

    def reap(self) -> None:
        """Reap every exited child of ours: the command, and what it orphaned
        (reparented to us); records the command's status."""
        mine = None if not self._others else \
            [p for p in _children_map().get(os.getpid(), ()) if p not in self._others]
        for pid in mine if mine is not None else iter(int, 1):  # each of ours, or any child until none
            try:
                got, status = os.waitpid(-1 if mine is None else pid, os.WNOHANG)
            except ChildProcessError:
                return
            if not got:
                if mine is None:
                    return
                continue
            if got == self.pid:
                self.returncode = os.waitstatus_to_exitcode(status)

    def _tree(self) -> list[int]:
        """The command and every process below it, orphans reparented to us included."""
        tree, found = _children_map(), []
        todo = [p for p in tree.get(os.getpid(), ()) if p not in self._others]
        while todo:
            p = todo.pop()
            found.append(p)
            todo.extend(tree.get(p, ()))
        return found

    def poll(self) -> int | None:
        if self.returncode is None:
            self.reap()
        return self.returncode

    def stop(self, grace_s: float = 2.0) -> None:
        """End the command and everything below it: a held one never execs;
        a running tree gets SIGTERM, and SIGKILL for what is still there
        after ``grace_s`` (a command that ignores SIGTERM must not hold the
        session); then reap it all."""
        if self._gate is not None:
            os.close(self._gate)  # EOF: the held child exits without exec
            self._gate = None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            tree = self._tree()
            if not tree:
                break
            for p in tree:
                try:
                    os.kill(p, sig)
                except ProcessLookupError:
                    pass
            end = time.monotonic() + grace_s
            while time.monotonic() < end:
                self.reap()
                if not any(alive(p) for p in tree):
                    break
                time.sleep(0.02)
        self.reap()
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, 0)
                self.returncode = os.waitstatus_to_exitcode(status)
            except ChildProcessError:
                pass
