"""The reference census's accounting (analysis/pins.py) and its text, on censuses made by hand."""

import dataclasses

import numpy as np
import pytest

from bpftrace_leak import layout
from bpftrace_leak.analysis import schema
from bpftrace_leak.analysis.pins import MountRow, RefCensus, check_census
from bpftrace_leak.output.censustext import census_lines
from bpftrace_leak.tracer.pins import PIN_DENTRY, PIN_HOLDER

K = layout.ENUMS["pin_kind"]
READ, GONE = layout.ENUMS["pin_state"]["PIN_READ"], layout.ENUMS["pin_state"]["PIN_GONE"]
SB, TMPFS_SB, ROOT = 0x5000, 0x6000, 0x9000
MNT = 0x7000  # struct mount; its vfsmount at +32


def dentries(rows):
    """rows: (addr, count, parent, name, state, inode, sb)"""
    read = np.zeros(len(rows), PIN_DENTRY)
    for i, (_a, count, parent, name, state, inode, sb) in enumerate(rows):
        read[i] = (parent, sb, inode, count, 0, state, 0, name.encode())
    return np.array([r[0] for r in rows], np.uint64), read


def holders(rows):
    return np.array(rows, PIN_HOLDER)


def build(rows, hold, mounts=(), children=None, baseline=None):
    addrs, read = dentries(rows)
    return RefCensus.build(addrs, read, holders(hold), list(mounts), children=children or (lambda a: 0),
                        path=lambda a: f"/p/{a:x}", stack=lambda i: [f"alloc{i}"], mnt_of=lambda m: m + 32,
                        baseline=baseline, fs_name=lambda sb: "tmpfs" if sb == TMPFS_SB else "ext4")


def test_each_reference_explained_once_and_the_rest_unexplained():
    rows = [(0xA0, 3, 0xD0, "a", READ, 1, SB),   # an fd, a mapping of the same file, a cwd; 1 child
            (0xB0, 1, 0xD0, "leaked", READ, 1, SB),
            (0xC0, 0, 0xD0, "cached", READ, 1, SB),
            (0xE0, -128, 0xD0, "dead", READ, 1, SB),
            (0xF0, 5, 0xD0, "gone", GONE, 1, SB)]
    hold = [(0x111, 0xA0, MNT + 32, K["PIN_FILE"], 1), (0x111, 0xA0, MNT + 32, K["PIN_FILE"], 1),
            (0x222, 0xA0, MNT + 32, K["PIN_PWD"], 1), (0x222, ROOT, MNT + 32, K["PIN_ROOT"], 1),
            (0x333, ROOT, MNT + 32, K["PIN_PWD"], 2), (0x333, ROOT, MNT + 32, K["PIN_ROOT"], 2)]
    walked = []
    c = build(rows, hold, children=lambda a: walked.append(a) or (1 if a == 0xA0 else 0)).section
    assert sorted(walked) == [0xA0, 0xB0]  # only the dentries the listed holders leave short
    assert (c["dentries"], c["gone"], c["dead"], c["cached"], c["pinned"]) == (5, 1, 1, 1, 2)
    refs = c["references"]
    assert (refs["file"], refs["cwd"], refs["child"], refs["unexplained"]) == (1, 1, 1, 1)
    assert c["pinned_explained"] == 1 and c["pinned_unexplained"] == 1
    assert [(d["name"], d["unexplained"], d["count"]) for d in c["unexplained"]] == [("leaked", 1, 1)]
    assert c["by_stack"] == [{"stack": ["alloc1"], "dentries": 1, "refs": 1, "names": ["leaked"]}]
    assert c["by_parent"] == [{"parent": "/p/d0", "dentries": 1, "refs": 1}]


def test_in_memory_filesystems_pin_their_positive_dentries():
    rows = [(0xA0, 1, 0xD0, "tmpfile", READ, 1, TMPFS_SB), (0xB0, 0, 0xD0, "negative", READ, 0, TMPFS_SB),
            (0xC0, 1, 0xD0, "ext4file", READ, 1, SB)]
    c = build(rows, []).section
    assert c["pinned_by"]["fs"] == 1 and c["cached"] == 1
    assert [d["name"] for d in c["unexplained"]] == ["ext4file"]


def test_mounts_and_their_references_against_the_start():
    mounts = [MountRow(mount=MNT, root=ROOT, sb=SB, s_root=ROOT, parent=MNT, mountpoint=ROOT, attached=True,
                       count=1 + 2 + 1 + 13),  # namespace, a file and a pwd, a child mount, 13 leaked
              MountRow(mount=0x8000, root=0x8100, sb=0x8200, s_root=0x8100, parent=MNT, mountpoint=0xA0,
                       attached=True, count=1)]
    hold = [(0x111, 0xA0, MNT + 32, K["PIN_FILE"], 1), (0x222, 0xA0, MNT + 32, K["PIN_PWD"], 1)]
    rows = [(0xA0, 3, 0xD0, "mnt-point", READ, 1, SB)]  # a file, a pwd, the mountpoint
    first = build(rows, hold, mounts, baseline=None)
    assert first.section["references"]["mount"] == 1 and first.section["references"]["unexplained"] == 0
    # before 6.17 a child mount holds its parent
    assert first.mounts_unexplained == {MNT: 13, 0x8000: 0}
    assert first.section["mounts"][0]["explained"] == {"namespace": 1, "child": 1, "file": 1, "cwd": 1, "root": 0}
    later = build(rows, hold, [dataclasses.replace(mounts[0], count=1 + 2 + 1 + 26), mounts[1]],
                  baseline=first.mounts_unexplained)
    assert [(m["since_start"], m["unexplained"]) for m in later.section["mounts"]] == [(13, 26)]
    # from 6.17 it does not
    addrs, read = dentries(rows)
    new = RefCensus.build(addrs, read, holders(hold), mounts, children=lambda a: 0, path=str, stack=lambda i: [],
                       mnt_of=lambda m: m + 32, child_mounts_pin=False)
    assert new.mounts_unexplained == {MNT: 14, 0x8000: 0}


def test_the_section_passes_the_capture_checks_and_renders_escaped():
    rows = [(0xB0, 2, 0xD0, "evil\x1b[2J", READ, 1, SB)]
    c = build(rows, []).section
    check_census(c, "census")
    text = "\n".join(census_lines(c))
    assert "\x1b" not in text and "evil\\x1b[2J" in text and "2 references on 1 dentries" in text
    bad = dict(c, pinned=-1)
    with pytest.raises(schema.Invalid, match="census.pinned"):
        check_census(bad, "census")


def test_child_mounts_pin_their_parent_before_6_17():
    from bpftrace_leak.tracer.pins_plan import child_mounts_pin
    assert child_mounts_pin("6.1.0-56-amd64") and child_mounts_pin("6.12.117+deb13-amd64")
    assert child_mounts_pin("6.16.9")
    assert not child_mounts_pin("6.17.0") and not child_mounts_pin("6.18.44-fc-v669")
    assert not child_mounts_pin("7.2.13+deb14-amd64")
