"""Files kleaktrace writes for a user: captures (-w), reports (-o, --output).

kleaktrace runs as root and often writes where other users can write too
(/tmp, a shared project folder), so every file it writes follows the same
rules:

- it is created, never opened: O_CREAT|O_EXCL|O_NOFOLLOW, so a symlink, a
  FIFO, a device or a file someone planted is never written through,
  truncated or chmod'ed (``-w /tmp/x`` where a local user made /tmp/x a link
  to /etc/shadow must not touch /etc/shadow);
- an existing path is refused unless the caller asks to replace it, and then
  only a regular file is replaced, atomically: a new file is made beside it
  and renamed over it (rename(2) replaces the directory entry; the old inode,
  whoever owns it, is left as it was);
- the new file is mode 0600, whatever the umask: captures and reports hold
  kernel symbol offsets, process and file names;
- a session writing a file holds an exclusive flock on it, and a replace of
  a file another session holds is refused: two sessions never interleave.
"""

import errno
import fcntl
import os
import stat
import tempfile

from ..errors import KleakError

__all__ = ["PrivateFile", "open_private", "write_private", "discard"]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _refuse(path: str, what: str) -> KleakError:
    return KleakError(f"{path}: {what}", status=2)


def _check_replaceable(path: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise _refuse(path, f"exists and is {kind}; refusing to write there")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return  # gone meanwhile, or unreadable: the rename decides
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refuse(path, "another kleaktrace session is writing this file") from None
    finally:
        os.close(fd)


def _new_file(path: str, replace: bool) -> tuple[int, str | None]:
    """(fd of a new private file, its temporary name or None when it already is ``path``)."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _refuse(path, f"cannot write: {e.strerror}") from None
    if st is not None:
        if not replace:
            kind = "is a symlink" if stat.S_ISLNK(st.st_mode) else "exists"
            raise _refuse(path, f"{kind}; refusing to overwrite it (--force replaces a regular file)")
        _check_replaceable(path, st)
        folder = os.path.dirname(os.path.abspath(path))
        try:
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".part")
        except OSError as e:
            raise _refuse(path, f"cannot write: {e.strerror}") from None
        return fd, tmp
    try:
        return os.open(path, _CREATE, 0o600), None
    except FileExistsError:  # made between the lstat and the open: someone else's
        raise _refuse(path, "exists; refusing to overwrite it (--force replaces a regular file)") from None
    except OSError as e:
        raise _refuse(path, f"cannot write: {e.strerror}") from None


def _private(fd: int) -> None:
    os.fchmod(fd, 0o600)  # our own new inode: the umask may have left it 0400
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


class PrivateFile:
    """A file open_private() made: ``stream`` to write to; commit() puts it
    at its path (a replacement takes the old file's name only then), discard()
    removes it. Closing it commits it."""

    def __init__(self, stream, path: str, tmp: str | None):
        self.stream, self.path, self._tmp = stream, path, tmp

    def commit(self) -> None:
        if self._tmp is not None:
            try:
                os.rename(self._tmp, self.path)
            except OSError as e:
                raise _refuse(self.path, f"cannot write: {e.strerror}") from None
            self._tmp = None

    def discard(self) -> None:
        """Close and remove what we made (a replaced file stays as it was)."""
        try:
            self.stream.close()
        except OSError:
            pass
        discard(self._tmp or self.path)
        self._tmp = None

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.stream.close()

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        self.close()
        return False


def open_private(path: str, replace: bool = False, binary: bool = False) -> PrivateFile:
    """A new file at ``path`` for writing (text, or bytes with ``binary``),
    mode 0600 and locked. With ``replace`` an existing regular file is
    replaced by it at commit() (so a session that fails to start leaves the
    old one alone)."""
    fd, tmp = _new_file(path, replace)
    try:
        _private(fd)
    except OSError as e:
        os.close(fd)
        discard(tmp or path)
        raise _refuse(path, f"cannot write: {e.strerror}") from None
    return PrivateFile(os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8"), path, tmp)


def write_private(path: str, text, replace: bool = False) -> None:
    """Write ``text`` (str, or bytes) to a new file ``path`` (mode 0600); whole
    or not at all: on a write error (ENOSPC, EIO) nothing is left behind."""
    fd, tmp = _new_file(path, replace)
    made = tmp or path
    try:
        with (os.fdopen(fd, "wb") if isinstance(text, bytes) else os.fdopen(fd, "w", encoding="utf-8")) as f:
            _private(f.fileno())
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        if tmp is not None:
            os.rename(tmp, path)
    except OSError as e:
        discard(made)
        raise _refuse(path, f"cannot write: {e.strerror or errno.errorcode.get(e.errno, e)}") from None


def discard(path: str) -> None:
    """Remove a file this process created, if it is still there."""
    try:
        os.unlink(path)
    except OSError:
        pass
