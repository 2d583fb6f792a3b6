"""Files written for a user: never through a symlink, never over a file we did not make."""

import fcntl
import os
import stat

import pytest

from bpftrace_leak.errors import KleakError
from bpftrace_leak.output.outfiles import open_private, write_private


def mode(path):
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_new_file_is_private_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        write_private(str(tmp_path / "r.txt"), "report")
        with open_private(str(tmp_path / "c.kcap")) as f:
            f.write("x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "r.txt") == 0o600 and mode(tmp_path / "c.kcap") == 0o600
    assert (tmp_path / "r.txt").read_text() == "report"


def test_symlink_is_never_followed_even_when_replacing(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    os.chmod(victim, 0o644)
    link = tmp_path / "leak.kcap"
    os.symlink(victim, link)
    for replace in (False, True):
        with pytest.raises(KleakError, match="symlink") as e:
            open_private(str(link), replace=replace)
        assert e.value.status == 2
        with pytest.raises(KleakError, match="symlink"):
            write_private(str(link), "x", replace=replace)
    assert victim.read_text() == "precious" and mode(victim) == 0o644
    assert os.path.islink(link)


def test_dangling_symlink_is_not_created_through(tmp_path):
    link = tmp_path / "out.html"
    os.symlink(tmp_path / "made-by-root", link)
    with pytest.raises(KleakError, match="symlink"):
        write_private(str(link), "x")
    assert not (tmp_path / "made-by-root").exists()


def test_existing_file_is_refused_then_replaced_atomically(tmp_path):
    path = tmp_path / "leak.kcap"
    path.write_text("someone else's")
    os.chmod(path, 0o666)
    keep = tmp_path / "hardlink"
    os.link(path, keep)  # the old inode, seen from elsewhere
    with pytest.raises(KleakError, match="exists; refusing to overwrite"):
        write_private(str(path), "new")
    assert path.read_text() == "someone else's"
    write_private(str(path), "new", replace=True)
    assert path.read_text() == "new" and mode(path) == 0o600
    # the old file was not truncated or chmod'ed: a new inode took its name
    assert keep.read_text() == "someone else's" and mode(keep) == 0o666
    assert os.stat(keep).st_ino != os.stat(path).st_ino
    assert sorted(os.listdir(tmp_path)) == ["hardlink", "leak.kcap"]  # no temporary left


@pytest.mark.parametrize("special", ["/dev/full", "/dev/null", "/proc/version"])
def test_devices_and_proc_files_are_never_written(special):
    before = os.lstat(special)
    for replace in (False, True):
        with pytest.raises(KleakError) as e:
            write_private(special, "x", replace=replace)
        assert e.value.status == 2
    after = os.lstat(special)
    assert (after.st_mode, after.st_uid, after.st_ino) == (before.st_mode, before.st_uid, before.st_ino)


def test_fifo_is_refused(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(KleakError, match="not a regular file"):
        open_private(str(fifo), replace=True)


def test_a_file_another_session_writes_is_not_replaced(tmp_path):
    path = str(tmp_path / "leak.kcap")
    first = open_private(path)
    first.stream.write("header\n")
    first.stream.flush()
    with pytest.raises(KleakError, match="another kleaktrace session is writing"):
        open_private(path, replace=True)
    first.close()
    second = open_private(path, replace=True)  # once it is done, a replace is fine
    second.close()


def test_the_writer_holds_an_exclusive_lock(tmp_path):
    path = str(tmp_path / "c.kcap")
    with open_private(path):
        fd = os.open(path, os.O_RDONLY)
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        os.close(fd)


def test_missing_folder_is_one_error(tmp_path):
    with pytest.raises(KleakError, match="cannot write: No such file or directory"):
        write_private(str(tmp_path / "no" / "such" / "r.html"), "x")
