"""slabs.py and headers.py against folders laid out like the real ones."""

import os

import pytest

from bpftrace_leak.kernel import headers, slabs
from bpftrace_leak.errors import KleakError


def test_cache_aliases_from_sysfs_symlinks(tmp_path):
    for d in (":A-0001152", "filp", "dentry"):
        (tmp_path / d).mkdir()
    for alias in ("signal_cache", "UNIX", "UNIX-STREAM"):
        os.symlink(":A-0001152", tmp_path / alias)
    al = slabs.cache_aliases(str(tmp_path))
    assert al["signal_cache"] == {"UNIX", "UNIX-STREAM"}
    assert al["UNIX"] == {"signal_cache", "UNIX-STREAM"}
    assert al["filp"] == set()
    assert ":A-0001152" not in al


def test_check_cache_glob():
    names = {"filp", "dentry", "sock_inode_cache"}
    assert slabs.check_cache_glob("sock_*", names)
    assert slabs.check_cache_glob("kmalloc-*", names)
    assert not slabs.check_cache_glob("no_such_cache", names)


def test_merged_debian_tree(tmp_path):
    common = tmp_path / "src" / "linux-headers-6.1.0-9-common"
    arch = tmp_path / "src" / "linux-headers-6.1.0-9-amd64"
    (common / "include" / "linux").mkdir(parents=True)
    (common / "include" / "linux" / "kernel.h").write_text("common")
    (common / "Makefile").write_text("common makefile")
    (arch / "include" / "generated").mkdir(parents=True)
    (arch / "include" / "generated" / "autoconf.h").write_text("arch")
    (arch / "Makefile").write_text("arch makefile")
    tree = headers.merged_debian_tree(str(arch), cache_dir=str(tmp_path / "cache"))
    assert open(os.path.join(tree, "include/linux/kernel.h")).read() == "common"
    assert open(os.path.join(tree, "include/generated/autoconf.h")).read() == "arch"
    assert open(os.path.join(tree, "Makefile")).read() == "arch makefile"  # arch laid over common
    assert os.path.islink(os.path.join(tree, "Makefile"))  # symlinks, not copies
    assert headers.merged_debian_tree(str(arch), cache_dir=str(tmp_path / "cache")) == tree


def test_headers_override_must_be_a_tree(tmp_path):
    with pytest.raises(KleakError, match="no include/"):
        headers.find_headers(str(tmp_path))
