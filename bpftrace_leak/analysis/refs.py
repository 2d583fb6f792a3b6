"""Reference-count findings: grouping of unbalanced path_get()s (pure logic, no BPF).

The kernel side (probes.c, TRACK_REFS) pairs each path_get(p) with the
path_put(p) on the same struct path. Two findings come out of it:

- "put on a cleared path": path_put(p) found p's dentry or mnt NULLed or
  changed, so it dropped nothing of what path_get took: those references are
  leaked for good (the field case: close() NULLed f_path on 3.x kernels);
- "never put": path_get(p) older than the minimum age without its path_put yet
  (long-lived references such as a process's cwd look like this too).

Grouped by (object type, reason, stack of the get).
"""

from dataclasses import dataclass, field

from ..layout import REF_WHY

__all__ = ["RefHold", "RefGroup", "group_refs", "WHY_TEXT"]

#: the report's words for layout.h's enum ref_why, by its value
WHY_TEXT = {REF_WHY[name]: text for name, text in (("WHY_NEVER_PUT", "never put"),
                                                     ("WHY_PUT_CLEARED", "put on a cleared path"))}
assert len(WHY_TEXT) == len(REF_WHY), "a layout.h ref_why has no words in refs.py"


@dataclass(frozen=True)
class RefHold:
    """References one object holds because of one kind of unbalanced get."""

    object_type: str  # "dentry" | "vfsmount"
    object: int
    refs: int
    name: str
    tgid: int
    comm: str
    stack_id: int
    ts_ns: int
    why: str
    put_stack_id: int | None = None


@dataclass
class RefGroup:
    object_type: str
    why: str
    stack_id: int
    objects: set = field(default_factory=set)
    net: int = 0
    oldest_ns: int = 0
    names: set = field(default_factory=set)
    pids: set = field(default_factory=set)
    comms: set = field(default_factory=set)
    put_stack_id: int | None = None


def group_refs(holds, now_ns: int, min_age_ns: int) -> list[RefGroup]:
    """Group holds at least ``min_age_ns`` old, largest net references first."""
    groups: dict[tuple, RefGroup] = {}
    for h in holds:
        age = now_ns - h.ts_ns
        if age < min_age_ns or h.refs <= 0:
            continue
        key = (h.object_type, h.why, h.stack_id)
        g = groups.get(key)
        if g is None:
            g = groups[key] = RefGroup(h.object_type, h.why, h.stack_id, put_stack_id=h.put_stack_id)
        g.objects.add(h.object)
        g.net += h.refs
        g.oldest_ns = max(g.oldest_ns, age)
        if h.name:
            g.names.add(h.name)
        g.pids.add(h.tgid)
        g.comms.add(h.comm)
    return sorted(groups.values(), key=lambda g: (-g.net, g.object_type, g.why))
