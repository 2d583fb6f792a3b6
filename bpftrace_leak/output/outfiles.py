"""Files kleaktrace writes for a user: captures (-w), reports (-o, --output).

kleaktrace runs as root and often writes where other users can write too
(/tmp, a shared project folder), so every file it writes follows the same
rules:

- the folder is reached one component at a time from ``/`` (or the working
  directory), each opened with O_DIRECTORY|O_NOFOLLOW relative to the one
  before (``folder()``). A symlink on the way is followed only where root
  alone could have made it: in a folder owned by root that no one else may
  write (``/lib -> usr/lib``). One in a folder anyone else can write (a
  user's ``/tmp/dirlink -> /etc``) is refused: O_NOFOLLOW on the last
  component alone would let root write through it;
- everything after that is relative to the folder's descriptor, so nothing
  swapped in the path meanwhile changes where the file goes;
- the file is created, never opened: O_CREAT|O_EXCL|O_NOFOLLOW, so a
  symlink, a FIFO, a device or a file someone planted is never written
  through, truncated or chmod'ed;
- an existing path is refused unless the caller asks to replace it, and then
  only a regular file is replaced, atomically: a new file is made beside it
  and renamed over it (rename(2) replaces the directory entry; the old inode,
  whoever owns it, is left as it was); an input being read is never replaced
  (``keep``: compared by device and inode, so a hard link or another
  spelling of the same file is the same file);
- the new file is mode 0600, whatever the umask: captures and reports hold
  kernel symbol offsets, process and file names;
- a session writing a file holds an exclusive flock on it, and a replace of
  a file another session holds is refused: two sessions never interleave.
"""

import errno
import fcntl
import os
import secrets
import stat

from ..errors import KleakError
from ..text import printable

__all__ = ["Place", "folder", "same_place", "PrivateFile", "open_private", "write_private"]

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_MAX_LINKS = 40  # as the kernel's MAXSYMLINKS


def _refuse(path: str, what: str) -> KleakError:
    return KleakError(f"{printable(path)}: {what}", status=2)


def _root_only(st: os.stat_result) -> bool:
    """Only root may change this folder's entries: owned by root, writable
    by no other user (group write only for root's own group)."""
    return st.st_uid == 0 and not st.st_mode & 0o002 and (not st.st_mode & 0o020 or st.st_gid == 0)


class Place:
    """Where a file goes: an open folder (``fd``) and a name in it.
    ``key`` identifies it whatever the spelling: the folder's device and
    inode and the name."""

    def __init__(self, path: str, fd: int, name: str):
        self.path, self.fd, self.name = path, fd, name
        st = os.fstat(fd)
        self.key = (st.st_dev, st.st_ino, name)

    def lstat(self) -> os.stat_result | None:
        try:
            return os.stat(self.name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


def _walk(start: int, parts: list[str], path: str, links: list[int]) -> int:
    """The folder reached from descriptor ``start`` through ``parts``;
    ``start`` is closed."""
    fd = start
    try:
        for part in parts:
            if part in ("", "."):
                continue
            try:
                nxt = os.open(part, _DIR, dir_fd=fd)
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise _refuse(path, f"cannot write: {e.strerror}") from None
                st = os.stat(part, dir_fd=fd, follow_symlinks=False)
                if not stat.S_ISLNK(st.st_mode):
                    raise _refuse(path, f"cannot write: {part!r} is not a folder") from None
                if not _root_only(os.fstat(fd)):
                    raise _refuse(path, f"{part!r} is a symlink in a folder other users can write; "
                                  "refusing to follow it (give the path it points to)") from None
                links[0] += 1
                if links[0] > _MAX_LINKS:
                    raise _refuse(path, "cannot write: too many levels of symbolic links") from None
                target = os.readlink(part, dir_fd=fd)
                base = os.open("/", _DIR) if target.startswith("/") else os.dup(fd)
                nxt = _walk(base, target.split("/"), path, links)
            os.close(fd)
            fd = nxt
        return fd
    except BaseException:
        os.close(fd)
        raise


def folder(path: str) -> Place:
    """The Place of ``path``: its folder opened without following a symlink a
    non-root user could have planted; KleakError (status 2) when there is none."""
    head, name = os.path.split(path)
    if not name or name in (".", ".."):
        raise _refuse(path, "names a folder, not a file")
    try:
        start = os.open("/" if path.startswith("/") else ".", _DIR)
    except OSError as e:
        raise _refuse(path, f"cannot write: {e.strerror}") from None
    fd = _walk(start, head.split("/"), path, [0])
    return Place(path, fd, name)


def same_place(a: str, b: str) -> bool:
    """``a`` and ``b`` name the same file: the same folder and name, or the
    same existing inode (a hard link)."""
    pa, pb = folder(a), folder(b)
    try:
        if pa.key == pb.key:
            return True
        sa, sb = pa.lstat(), pb.lstat()
        return bool(sa and sb and (sa.st_dev, sa.st_ino) == (sb.st_dev, sb.st_ino))
    finally:
        pa.close()
        pb.close()


def _check_replaceable(place: Place, st: os.stat_result, keep) -> None:
    path = place.path
    if not stat.S_ISREG(st.st_mode):
        kind = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
        raise _refuse(path, f"exists and is {kind}; refusing to write there")
    if keep is not None and (st.st_dev, st.st_ino) == keep:
        raise _refuse(path, "is the file being read; refusing to replace it")
    try:
        fd = os.open(place.name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC,
                     dir_fd=place.fd)
    except OSError:
        return  # gone meanwhile, or unreadable: the rename decides
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        raise _refuse(path, "another kleaktrace session is writing this file") from None
    finally:
        os.close(fd)


def _new_file(place: Place, replace: bool, keep) -> tuple[int, str | None]:
    """(fd of a new private file in ``place``, its temporary name or None
    when it already has its own)."""
    path = place.path
    try:
        st = place.lstat()
    except OSError as e:
        raise _refuse(path, f"cannot write: {e.strerror}") from None
    if st is not None:
        if not replace:
            kind = "is a symlink" if stat.S_ISLNK(st.st_mode) else "exists"
            raise _refuse(path, f"{kind}; refusing to overwrite it (--force replaces a regular file)")
        _check_replaceable(place, st, keep)
        for _ in range(100):
            tmp = f".{place.name[:200]}.{secrets.token_hex(4)}.part"
            try:
                return os.open(tmp, _CREATE, 0o600, dir_fd=place.fd), tmp
            except FileExistsError:
                continue
            except OSError as e:
                raise _refuse(path, f"cannot write: {e.strerror}") from None
        raise _refuse(path, "cannot write: no free temporary name")
    try:
        return os.open(place.name, _CREATE, 0o600, dir_fd=place.fd), None
    except FileExistsError:  # made between the lstat and the open: someone else's
        raise _refuse(path, "exists; refusing to overwrite it (--force replaces a regular file)") from None
    except OSError as e:
        raise _refuse(path, f"cannot write: {e.strerror}") from None


def _private(fd: int) -> None:
    os.fchmod(fd, 0o600)  # our own new inode: the umask may have left it 0400
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _unlink(place: Place, name: str | None) -> None:
    if name is not None and place.fd >= 0:
        try:
            os.unlink(name, dir_fd=place.fd)
        except OSError:
            pass


class PrivateFile:
    """A file open_private() made: ``stream`` to write to; commit() puts it
    at its path (a replacement takes the old file's name only then), discard()
    removes it. Closing it commits it."""

    def __init__(self, stream, place: Place, tmp: str | None):
        self.stream, self.place, self._tmp = stream, place, tmp
        self.path = place.path
        self._mine = tmp or place.name  # the name we made, until committed

    def commit(self) -> None:
        if self._tmp is not None:
            try:
                os.rename(self._tmp, self.place.name, src_dir_fd=self.place.fd, dst_dir_fd=self.place.fd)
            except OSError as e:
                raise _refuse(self.path, f"cannot write: {e.strerror}") from None
            self._tmp = None
        self._mine = None

    def discard(self) -> None:
        """Close and remove what we made (a replaced file stays as it was)."""
        try:
            self.stream.close()
        except OSError:
            pass
        _unlink(self.place, self._tmp or self._mine)
        self._tmp = self._mine = None
        self.place.close()

    def close(self) -> None:
        try:
            self.commit()
        finally:
            self.stream.close()
            self.place.close()

    def __enter__(self):
        return self.stream

    def __exit__(self, *exc):
        self.close()
        return False


def open_private(path: str, replace: bool = False, binary: bool = False, keep=None) -> PrivateFile:
    """A new file at ``path`` for writing (text, or bytes with ``binary``),
    mode 0600 and locked. With ``replace`` an existing regular file is
    replaced by it at commit() (so a session that fails to start leaves the
    old one alone), unless it is ``keep`` (device, inode): an input."""
    place = folder(path)
    try:
        fd, tmp = _new_file(place, replace, keep)
    except BaseException:
        place.close()
        raise
    try:
        _private(fd)
    except OSError as e:
        os.close(fd)
        _unlink(place, tmp or place.name)
        place.close()
        raise _refuse(path, f"cannot write: {e.strerror}") from None
    return PrivateFile(os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8"), place, tmp)


def write_private(path: str, data, replace: bool = False, keep=None) -> None:
    """Write ``data`` (str, or bytes) to a new file ``path`` (mode 0600); whole
    or not at all: on any failure (ENOSPC, EIO, text that cannot be encoded)
    nothing is left behind. ``keep``: as open_private's."""
    made = open_private(path, replace, binary=isinstance(data, bytes), keep=keep)
    try:
        made.stream.write(data)
        made.stream.flush()
        os.fsync(made.stream.fileno())
        made.close()
    except BaseException as e:
        made.discard()
        if isinstance(e, OSError):
            raise _refuse(path, f"cannot write: {e.strerror or errno.errorcode.get(e.errno, e)}") from None
        raise
