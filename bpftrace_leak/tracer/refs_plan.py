"""What pairing path_get with path_put needs (probes/refs.h): a way to
attach (fentry, else kprobes: whether the kernel permits fentry is only
known by trying), struct offsets from BTF and the address ranges of the
functions involved, as compile flags. Pure, as plan.py.
"""

from ..kernel.functions import fentry_why, kprobe_why
from . import catalog
from .catalog import FENTRY, KPROBE

__all__ = ["STRUCTS", "FUNCTIONS", "IGNORED_CALLERS", "flags", "refs_why", "ref_probes"]

_OFFSETS = {
    "PATH_MNT_OFF": "path.mnt",
    "PATH_DENTRY_OFF": "path.dentry",
    "DENTRY_NAME_OFF": "dentry.d_name.name",
    "MOUNT_MNT_OFF": "mount.mnt",
    "MOUNT_MOUNTPOINT_OFF": "mount.mnt_mountpoint",
}
#: a struct file's own f_path reference is taken in these (probes.c: ignored_caller)
IGNORED_CALLERS = ("do_dentry_open", "vfs_open")
FUNCTIONS = ("path_get", "path_put")
STRUCTS = tuple(_OFFSETS.values())


def flags(p, config, facts) -> list[str]:
    """Reference tracking's flags and ways, or [] with ``refs_unavailable`` saying why."""
    via = config.refs_via
    p.refs_why = {
        FENTRY: fentry_why(FUNCTIONS, facts.btf, facts.ranges) if via != KPROBE else "not chosen",
        KPROBE: kprobe_why(FUNCTIONS, facts.kprobes, facts.traceable) if via != FENTRY else "not chosen",
    }
    p.refs_ways = [way for way in (FENTRY, KPROBE) if p.refs_why[way] is None]
    if not p.refs_ways:
        p.refs_off(refs_why(p, via), config.allocs)
        return []
    missing = [path for path in _OFFSETS.values() if path not in facts.offsets]
    if missing:
        p.refs_off(f"no usable kernel BTF for struct offsets ({', '.join(missing)})", config.allocs)
        return []
    flags = ["-DTRACK_REFS", f"-DMAX_REFS={config.max_refs}"]
    flags += [f"-D{name}={facts.offsets[path]}" for name, path in _OFFSETS.items()]
    if FENTRY in p.refs_ways:
        flags.append("-DREFS_FENTRY")
    for fn in FUNCTIONS:
        start, end = facts.ranges.get(fn, [(0, 0)])[0]
        flags += [f"-D{fn.upper()}_START={start:#x}ULL", f"-D{fn.upper()}_END={end:#x}ULL"]
    ignored = [r for fn in IGNORED_CALLERS for r in facts.ranges.get(fn, [])]
    for i, (start, end) in enumerate(ignored[:3]):
        flags += [f"-DIGNORE_CALLER_START_{i}={start:#x}ULL", f"-DIGNORE_CALLER_END_{i}={end:#x}ULL"]
    return flags


def refs_why(p, via: str) -> str:
    """Why neither fentry nor kprobes (or not the one --refs-via chose) carry
    reference tracking; kprobes' reason first."""
    if via != "auto":
        return p.refs_why[via]
    return f"{p.refs_why[KPROBE]}, and {p.refs_why[FENTRY]}"


def ref_probes(way: str) -> list:
    """The catalog's reference probes attached through ``way``."""
    return [probe for probe in catalog.PROBES if probe.when == "refs" and probe.attach == way]
