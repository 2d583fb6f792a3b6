"""cgroups: where the hierarchy kleaktrace records is mounted, the cgroups in
it by kernfs id, and the container a cgroup belongs to.

A cgroup's kernfs id is the inode number of its folder in cgroupfs (on
64-bit kernels), so listing the folders names the ids the probes record.
Cgroups made or removed while traced are named by the probes themselves
(probes.c: cgroup_made, cgroup_removed), so a cgroup removed before the
report still has its last path.
"""

import os
import re

from ..errors import KleakError
from ..text import printable

__all__ = ["memory_on_v1", "mount_point", "scan", "resolve", "ids", "container", "CgroupNames"]


def memory_on_v1(path: str = "/proc/cgroups") -> bool:
    """True when the memory controller is mounted as cgroup v1 (its hierarchy
    id in /proc/cgroups is not 0), as on this project's host."""
    try:
        with open(path) as f:
            return any(line.split()[0] == "memory" and line.split()[1] != "0" for line in f
                       if not line.startswith("#") and len(line.split()) >= 4)
    except OSError:
        return False


def mount_point(version: int, mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the memory controller's v1 hierarchy (``version`` 1) or the
    unified v2 hierarchy (2) is mounted, None when it is not."""
    try:
        with open(mountinfo) as f:
            for line in f:
                left, _, right = line.partition(" - ")
                fstype, _source, options = (right.split() + ["", "", ""])[:3]
                where = left.split()[4]
                if version == 2 and fstype == "cgroup2":
                    return where
                if version == 1 and fstype == "cgroup" and "memory" in options.split(","):
                    return where
    except OSError:
        pass
    return None


def scan(root: str) -> dict[int, str]:
    """{kernfs id: path in the hierarchy} of every cgroup under ``root``."""
    out = {}
    for folder, _dirs, _files in os.walk(root):
        try:
            ino = os.stat(folder).st_ino
        except OSError:
            continue
        rel = os.path.relpath(folder, root)
        out[ino] = "/" if rel == "." else "/" + rel
    return out


def _inside(folder: str, root: str) -> bool:
    real, top = os.path.realpath(folder), os.path.realpath(root)
    return real == top or real.startswith(top.rstrip("/") + "/")


def resolve(path: str, root: str) -> str | None:
    """The folder of cgroup ``path``: a folder under ``root`` as given, or a
    path in the hierarchy (``/docker/abc``); None when there is no such
    cgroup: an empty path, or one that leads out of the hierarchy (``..``
    from its root is /sys/fs, and would have traced everything)."""
    if not path.strip():
        return None
    candidates = [path] if os.path.isabs(path) else []
    candidates.append(os.path.join(root, path.lstrip("/")))
    return next((os.path.realpath(c) for c in candidates if os.path.isdir(c) and _inside(c, root)), None)


_RUNTIMES = [
    (re.compile(r"(?:^|/)docker[-/]([0-9a-f]{12})[0-9a-f]*(?:\.scope)?(?:/|$)"), "docker"),
    (re.compile(r"(?:^|/)libpod-(?:conmon-)?([0-9a-f]{12})[0-9a-f]*(?:\.scope)?(?:/|$)"), "podman"),
    (re.compile(r"(?:^|/)cri-containerd-([0-9a-f]{12})[0-9a-f]*(?:\.scope)?(?:/|$)"), "containerd"),
    (re.compile(r"(?:^|/)crio-([0-9a-f]{12})[0-9a-f]*(?:\.scope)?(?:/|$)"), "cri-o"),
    (re.compile(r"(?:^|/)kubepods[^/]*/.*?pod([0-9a-f_-]{8,})"), "k8s pod"),
    (re.compile(r"(?:^|/)lxc(?:\.payload)?[./]([^/]+)"), "lxc"),
    (re.compile(r"(?:^|/)machine\.slice/machine-([^/]+)\.scope"), "machine"),
]


def container(path: str) -> str | None:
    """``docker:0123456789ab`` and the like, for a cgroup path a container
    runtime made (its names are conventions: no runtime is asked)."""
    for pattern, runtime in _RUNTIMES:
        m = pattern.search(path)
        if m:
            return f"{runtime}:{m.group(1)}"
    return None


class CgroupNames:
    """Names the kernfs ids the probes record: from the folders that exist,
    then from what the probes saw made and removed (``events``: a callable
    returning {id: (path, removed)})."""

    def __init__(self, root: str | None, events=None):
        self.root = root
        self.events = events or (lambda: {})
        self.known: dict[int, str] = {}  # every path seen, kept after removal
        self.live: dict[int, str] = {}
        self._events: dict[int, tuple] = {}

    def refresh(self) -> None:
        self.live = scan(self.root) if self.root else {}
        self.known.update(self.live)
        self._events = self.events()

    def keep(self, ids) -> None:
        """Forget removed cgroups' paths but those of ``ids`` (the ones
        outstanding objects name): a session of weeks sees thousands come
        and go."""
        self.known = {i: p for i, p in self.known.items() if i in self.live or i in ids}

    def name(self, cgroup_id: int) -> tuple[str | None, bool]:
        """(path, removed); (None, False) for an id never seen (0: not recorded)."""
        if not cgroup_id:
            return None, False
        if cgroup_id in self.live:
            return self.live[cgroup_id], False
        seen = self._events.get(cgroup_id)
        if seen:
            return seen
        if cgroup_id in self.known:
            return self.known[cgroup_id], True
        return f"#{cgroup_id}", True


def ids(paths) -> list[int]:
    """The kernfs ids of --cgroup PATHs and their descendants, in the memory
    controller's hierarchy; KleakError (status 2) for one that does not exist."""
    if not paths:
        return []
    root = mount_point(1) if memory_on_v1() else mount_point(2)
    if root is None:
        raise KleakError("--cgroup: the memory controller's cgroup hierarchy is not mounted", status=2)
    ids = []
    for path in paths:
        folder = resolve(path, root)
        if folder is None:
            raise KleakError(f"--cgroup {printable(path)!r}: no such cgroup under {root}", status=2)
        ids += scan(folder)
    return ids
