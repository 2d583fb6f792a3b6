"""Kernel headers for BCC's compiler, found without touching /lib/modules.

The probes read only tracepoint fields and raw pointers, so headers of another
kernel version compile them correctly; BCC just needs *a* complete tree. Debian
splits one tree into linux-headers-X-common and linux-headers-X-amd64, and BCC
accepts neither alone: we lay the arch folder over a symlink copy of the common
one, in a cache folder of our own.
"""

import glob
import os
import re
import shutil
import subprocess
import sys

from ..errors import KleakError

__all__ = ["CACHE_DIR", "find_headers", "merged_debian_tree"]

CACHE_DIR = os.environ.get("KLEAKTRACE_CACHE", "/var/cache/kleaktrace")


def _version_key(path: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.\-]", os.path.basename(path))]


def merged_debian_tree(arch_dir: str, cache_dir: str = CACHE_DIR) -> str:
    """Return a tree merging Debian's ``-common`` headers under ``arch_dir``.

    ``arch_dir`` is e.g. /usr/src/linux-headers-6.1.0-56-amd64; its sibling
    -common folder is found from the arch folder's own Makefile include.
    """
    name = os.path.basename(arch_dir.rstrip("/"))
    common = re.sub(r"-[a-z0-9_]+$", "-common", arch_dir.rstrip("/"))
    if not os.path.isdir(common):
        return arch_dir  # not split: usable as it is
    dest = os.path.join(cache_dir, "headers", name)
    stamp = os.path.join(dest, ".kleaktrace-complete")
    if os.path.exists(stamp):
        return dest
    tmp = dest + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(os.path.dirname(tmp), exist_ok=True)
    for cmd in (
        ["cp", "-as", common, tmp],
        ["cp", "-asf", "--remove-destination", arch_dir.rstrip("/") + "/.", tmp + "/"],
    ):
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise KleakError(f"cannot build merged header tree in {tmp}: {res.stderr.strip()}")
    open(os.path.join(tmp, ".kleaktrace-complete"), "w").close()
    shutil.rmtree(dest, ignore_errors=True)
    os.rename(tmp, dest)
    return dest


def find_headers(override: str | None = None, release: str | None = None, warn=None) -> str | None:
    """Choose the header tree for BCC and return it (None: BCC's own default).

    Order: ``override`` (--kernel-headers), the running kernel's
    /lib/modules/RELEASE/build, then the newest installed Debian headers with a
    one-line warning.
    """
    warn = warn or (lambda msg: print(f"kleaktrace: warning: {msg}", file=sys.stderr))
    release = release or os.uname().release
    if override:
        if not os.path.isdir(os.path.join(override, "include")):
            raise KleakError(f"--kernel-headers {override}: no include/ folder there")
        tree = merged_debian_tree(override) if override.startswith("/usr/src/linux-headers-") else override
        # BCC's compiler can crash, not fail, on a tree without it
        if not os.path.exists(os.path.join(tree, "include", "linux", "kconfig.h")):
            raise KleakError(f"--kernel-headers {override}: not a kernel header tree (no include/linux/kconfig.h)")
        return tree
    own = f"/lib/modules/{release}/build"
    if os.path.isdir(os.path.join(own, "include")):
        return None
    candidates = [
        d
        for d in glob.glob("/usr/src/linux-headers-*")
        if not d.endswith("-common") and os.path.isdir(os.path.join(d, "include"))
    ]
    if not candidates:
        raise KleakError(
            f"no kernel headers for {release} and none installed "
            "(apt-get install linux-headers-amd64, or --kernel-headers DIR)"
        )
    best = max(candidates, key=_version_key)
    warn(
        f"no headers for kernel {release}; compiling with {os.path.basename(best)} "
        "(safe: probes take struct layouts from BTF, never from headers)"
    )
    return merged_debian_tree(best)
