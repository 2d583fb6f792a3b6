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


# -- the folder: no symlink a non-root user could have planted (issue #24, 1) -------

@pytest.mark.parametrize("folder_mode", [0o1777, 0o777])
def test_a_planted_folder_symlink_is_never_followed(tmp_path, folder_mode):
    """A user plants ``dirlink -> /some/root/folder`` in a folder anyone can
    write (sticky or not): root writes nothing through it, --force or not."""
    target = tmp_path / "rootonly"
    target.mkdir(mode=0o755)
    precious = target / "file"
    precious.write_text("root's")
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, folder_mode)
    os.symlink(target, shared / "dirlink")
    for replace in (False, True):
        for write in (lambda p: write_private(p, "x", replace=replace),
                      lambda p: open_private(p, replace=replace).close()):
            for name in ("file", "new"):
                with pytest.raises(KleakError, match="symlink in a folder other users can write") as e:
                    write(str(shared / "dirlink" / name))
                assert e.value.status == 2
    assert precious.read_text() == "root's" and sorted(os.listdir(target)) == ["file"]


def test_a_symlink_only_root_could_make_is_followed(tmp_path):
    """``/lib -> usr/lib``: a link in a folder only root can write is root's own."""
    real = tmp_path / "real"
    real.mkdir()
    os.chmod(tmp_path, 0o755)
    os.symlink("real", tmp_path / "alias")
    write_private(str(tmp_path / "alias" / "r.txt"), "ok")
    assert (real / "r.txt").read_text() == "ok"


def test_a_folder_symlink_deeper_in_a_shared_folder_is_refused(tmp_path):
    etc = tmp_path / "etc"  # root's own folder (not the real /etc: a red run must not write there)
    etc.mkdir(mode=0o755)
    shared = tmp_path / "tmp"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    (shared / "user").mkdir()
    os.symlink(etc, shared / "user" / "etc")  # a user's own folder is theirs: its links too
    os.chmod(shared / "user", 0o755)
    os.chown(shared / "user", 65534, 65534)
    with pytest.raises(KleakError, match="symlink"):
        write_private(str(shared / "user" / "etc" / "kleaktrace-test"), "x")
    assert os.listdir(etc) == []


def test_a_name_that_is_a_folder_is_refused(tmp_path):
    for path in (str(tmp_path) + "/", str(tmp_path) + "/..", str(tmp_path) + "/."):
        with pytest.raises(KleakError, match="names a folder"):
            write_private(path, "x")


# -- files compared by device and inode, never by spelling (issue #24, 3 and 4) ------

def test_same_place_sees_through_spellings_and_hard_links(tmp_path, monkeypatch):
    from bpftrace_leak.output.outfiles import same_place
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    assert same_place("r.out", "./r.out") and same_place("r.out", str(tmp_path / "sub" / ".." / "r.out"))
    (tmp_path / "a").write_text("x")
    os.link(tmp_path / "a", tmp_path / "b")
    assert same_place("a", "b") and not same_place("a", "c")


def test_an_input_is_never_replaced(tmp_path):
    cap = tmp_path / "x.kcap"
    cap.write_text("the capture")
    st = os.stat(cap)
    os.link(cap, tmp_path / "other-name")
    for out in (cap, tmp_path / "other-name", tmp_path / "." / "x.kcap"):
        with pytest.raises(KleakError, match="is the file being read"):
            write_private(str(out), "its report", replace=True, keep=(st.st_dev, st.st_ino))
    assert cap.read_text() == "the capture"


# -- a failure while writing leaves nothing (issue #24, 5) -----------------------------

def test_a_failed_write_leaves_no_file(tmp_path):
    for replace in (False, True):
        path = tmp_path / "r.html"
        if replace:
            path.write_text("old")
        with pytest.raises(UnicodeEncodeError):
            write_private(str(path), "\ud800", replace=replace)  # a lone surrogate cannot be encoded
        assert sorted(os.listdir(tmp_path)) == (["r.html"] if replace else [])
        if replace:
            assert path.read_text() == "old"
