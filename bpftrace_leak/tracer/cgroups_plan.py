"""What recording each allocation's cgroup needs (probes/filters.h:
task_cgroup): struct offsets from BTF and the memory controller's
hierarchy, as compile flags. Pure, as plan.py.
"""

from ..errors import KleakError

__all__ = ["STRUCTS", "ENUMS", "flags"]

#: what the cgroup of an allocation is found with (probes/filters.h: task_cgroup)
_OFFSETS = {
    "TASK_CGROUPS_OFF": "task_struct.cgroups",
    "CSS_SET_SUBSYS_OFF": "css_set.subsys",
    "CSS_CGROUP_OFF": "cgroup_subsys_state.cgroup",
    "CSS_PARENT_OFF": "cgroup_subsys_state.parent",
    "CGROUP_KN_OFF": "cgroup.kn",
    "CGROUP_ROOT_OFF": "cgroup.root",
    "CGROUP_SELF_OFF": "cgroup.self",
    "CGROUP_SUBSYS_OFF": "cgroup.subsys",
    "CGROUP_ROOT_HIERARCHY_OFF": "cgroup_root.hierarchy_id",
    "KERNFS_ID_OFF": "kernfs_node.id",
}
ENUMS = ("memory_cgrp_id",)
STRUCTS = tuple(_OFFSETS.values())


def flags(p, config, facts, targets: bool) -> list[str]:
    """Flags to record each allocation's cgroup (probes/filters.h: task_cgroup),
    in the memory controller's hierarchy: v1 where it is mounted so, else v2."""
    missing = [path for path in _OFFSETS.values() if path not in facts.offsets]
    memory = facts.enums.get("memory_cgrp_id")
    hierarchy = facts.controllers.get("memory", 0)
    if missing or (hierarchy and memory is None):
        why = ", ".join(missing) or "memory_cgrp_id"
        if config.cgroups:
            raise KleakError(f"--cgroup: this kernel's BTF lacks {why}")
        p.notes.append(f"cgroups not recorded: this kernel's BTF lacks {why}")
        return []
    flags = ["-DTRACK_CGROUPS", f"-DCGROUP_HIERARCHY={hierarchy}"]
    flags += [f"-D{name}={facts.offsets[path]}" for name, path in _OFFSETS.items()]
    if hierarchy:
        flags.append(f"-DCGROUP_V1_SUBSYS={memory}")
    if memory is not None and "memory" in facts.controllers:
        flags.append(f"-DCGROUP_MEMORY_SUBSYS={memory}")
    if config.cgroups:
        if targets:
            raise KleakError("--cgroup and -p/-c cannot be combined", status=2)
        flags.append("-DFILTER_CGROUPS")
    p.cgroups = {"hierarchy": hierarchy, "version": 1 if hierarchy else 2}
    return flags
