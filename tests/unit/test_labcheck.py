"""The lab's verdicts (vagrant/labcheck.py): pure logic on report dicts."""

import os
import sys

from conftest import ROOT

sys.path.insert(0, os.path.join(ROOT, "vagrant"))
import labcheck  # noqa: E402


def group(stack, objects=1, cache=None, kind="slab", **extra):
    return dict({"stack": stack, "objects": objects, "bytes": 64 * objects, "cache": cache, "kind": kind,
                 "comms": ["python3"]}, **extra)


def churn_row(groups):
    report = {"groups": groups, "totals": {"objects": 0, "bytes": 0}, "kernel": "test"}
    rows, _ = labcheck.check({"decoy_churn": 2003}, report)
    return rows[0]


IDR = ["radix_tree_node_alloc.constprop.0+0xb3", "idr_get_free+0x252", "idr_alloc_u32+0x5f",
       "idr_alloc_cyclic+0x50", "alloc_pid+0x1b2", "copy_process+0x143b", "kernel_clone+0xb8"]
STACK = ["copy_process+0xd81", "kernel_clone+0xb8", "__do_sys_clone3+0x139"]


def test_a_held_pid_idr_node_is_no_churn_phantom():
    row = churn_row([group(IDR, cache="radix_tree_node", held=1)])
    assert row["status"] == "pass" and row["found"] == 0


def test_an_idr_node_not_found_held_still_fails_the_churn():
    assert churn_row([group(IDR, cache="radix_tree_node", held=0, orphaned=1)])["status"] == "FAIL"
    assert churn_row([group(IDR, cache="radix_tree_node")])["status"] == "FAIL"  # no holder scan


def test_a_kernel_stack_through_copy_process_fails_the_churn():
    row = churn_row([group(STACK, kind="vmalloc", bytes=16384), group(IDR, cache="radix_tree_node", held=1)])
    assert row["status"] == "FAIL" and row["found"] == 1


def test_a_failed_orphan_row_names_what_held_the_objects():
    """The CI log shows a failed row, not the lab's OUT/: the row says what held them."""
    holder = {"holder": "kernel stack of 7 (kworker/0:1)", "kind": "stack", "objects": 2}
    report = {"groups": [group(["kleaklab_orphan+0x1b [kleaklab]"], objects=19, orphaned=17, held=2,
                               holders=[holder])], "totals": {"objects": 19, "bytes": 0}, "kernel": "test"}
    row = labcheck.check({"orphan": 19}, report)[0][0]
    assert (row["status"], row["found"]) == ("FAIL", 17)
    assert row["holders"] == [holder] and row["verdicts"]["held"] == 2
    report["groups"][0].update(orphaned=19, held=0, holders=[])
    row = labcheck.check({"orphan": 19}, report)[0][0]
    assert row["status"] == "pass" and "holders" not in row
