"""What the reference census (tracer/pins.py, probes.c: pins_*) needs from
the kernel: struct offsets from BTF, as compile flags for the programs and
as numbers for the mount walk done from Python. Pure, as plan.py.
"""

__all__ = ["STRUCTS", "child_mounts_pin", "flags"]

#: what pins_read and the iterators follow: {flag: "struct.member"}
_OFFSETS = {
    "PIN_COUNT_OFF": "dentry.d_lockref.count",
    "PIN_FLAGS_OFF": "dentry.d_flags",
    "PIN_PARENT_OFF": "dentry.d_parent",
    "PIN_SB_OFF": "dentry.d_sb",
    "PIN_INODE_OFF": "dentry.d_inode",
    "PIN_NAME_OFF": "dentry.d_name.name",
    "PIN_FILE_PATH_OFF": "file.f_path",
    "PIN_PATH_DENTRY_OFF": "path.dentry",
    "PIN_PATH_MNT_OFF": "path.mnt",
    "PIN_VMA_FILE_OFF": "vm_area_struct.vm_file",
    "PIN_TASK_FS_OFF": "task_struct.fs",
    "PIN_FS_PWD_OFF": "fs_struct.pwd",
    "PIN_FS_ROOT_OFF": "fs_struct.root",
    "PIN_TASK_MM_OFF": "task_struct.mm",
    "PIN_MM_EXE_OFF": "mm_struct.exe_file",
    "PIN_TASK_NSPROXY_OFF": "task_struct.nsproxy",
    "PIN_NSPROXY_MNT_NS_OFF": "nsproxy.mnt_ns",
    "TASK_TGID_OFF": "task_struct.tgid",
}
#: a dentry's children: an hlist from 6.8 (d_children, linked by d_sib), a
#: circular list before (d_subdirs, by d_child); the walk only follows next
_CHILDREN = ("dentry.d_children", "dentry.d_subdirs")
#: the mounts, walked from Python (tracer/pins.py: Mounts)
_MOUNT = {
    "mnt": "mount.mnt", "root": "vfsmount.mnt_root", "sb": "vfsmount.mnt_sb",
    "parent": "mount.mnt_parent", "mountpoint": "mount.mnt_mountpoint", "pcp": "mount.mnt_pcp",
    "ns": "mount.mnt_ns", "s_root": "super_block.s_root",
    "s_type": "super_block.s_type", "fs_name": "file_system_type.name",
}
#: a mount's count, per CPU: mnt_count until 7.x, then gets less puts (each
#: CPU's may be negative or wrap: only the sum over CPUs means anything)
_COUNTS = ({"count": "mnt_pcp.mnt_count"}, {"gets": "mnt_pcp.mnt_gets", "puts": "mnt_pcp.mnt_puts"})
#: a namespace's mounts: an rbtree from 6.8 (mounts, by mnt_node), a list before (list, by mnt_list)
_NS_TREE = {"ns_mounts": "mnt_namespace.mounts", "node": "mount.mnt_node",
            "rb_left": "rb_node.rb_left", "rb_right": "rb_node.rb_right"}
_NS_LIST = {"ns_list": "mnt_namespace.list", "link": "mount.mnt_list"}

STRUCTS = tuple(_OFFSETS.values()) + _CHILDREN + tuple(_MOUNT.values()) + tuple(_NS_TREE.values()) \
    + tuple(_NS_LIST.values()) + tuple(path for group in _COUNTS for path in group.values())


def child_mounts_pin(release: str) -> bool:
    """Whether a child mount holds a reference on its parent: it did until
    6.17 ("don't have mounts pin their parents", fs/namespace.c); the
    version is the only sign of it."""
    import re
    m = re.match(r"(\d+)\.(\d+)", release or "")
    return not m or (int(m.group(1)), int(m.group(2))) < (6, 17)


def flags(p, config, facts) -> list[str]:
    """Flags for the reference census, filling ``p.pins``; [] with a note when
    it is off or this kernel cannot carry it."""
    if not config.ref_census:
        return []
    found = facts.offsets
    children = next((path for path in _CHILDREN if path in found), None)
    ns = next((group for group in (_NS_TREE, _NS_LIST) if all(v in found for v in group.values())), None)
    counts = next((group for group in _COUNTS if all(v in found for v in group.values())), None)
    missing = [path for path in (*_OFFSETS.values(), *_MOUNT.values()) if path not in found]
    if children is None:
        missing.append(" or ".join(_CHILDREN))
    if ns is None:
        missing.append("mnt_namespace.mounts or .list")
    if counts is None:
        missing.append("mnt_pcp.mnt_count or .mnt_gets")
    why = None
    if not p.census:
        why = "it reads kernel memory with the slab census's programs, which this kernel cannot run"
    elif missing:
        why = f"this kernel's BTF lacks {', '.join(missing)}"
    if why:
        p.notes.append(f"no reference census: {why}")
        return []
    p.pins = {"mount": {k: found[v] for k, v in {**_MOUNT, **counts}.items()}, "ns": {k: found[v] for k, v in ns.items()},
              "dentry": {"parent": found["dentry.d_parent"], "name": found["dentry.d_name.name"]},
              "child_mounts_pin": child_mounts_pin(facts.release)}
    return ["-DPIN_CENSUS", f"-DPIN_CHILDREN_OFF={found[children]}"] + \
        [f"-D{name}={found[path]}" for name, path in _OFFSETS.items() if name != "TASK_TGID_OFF"]
