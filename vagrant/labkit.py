"""The lab's pieces, built and cached: a suite's root (debootstrap, its own
apt), its kernel and headers, the root's ext4 image, an initramfs that mounts
it, kleaklab.ko and the disk that carries the project into the guest. Used by
vagrant/lab (QEMU) and vagrant/labbox.py (the Vagrant box).
"""

import contextlib
import fcntl
import os
import re
import shutil
import subprocess
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
ROOTFS_RECIPE = 4  # bump when the root filesystem's recipe changes
INITRD_RECIPE = 5  # ... the initramfs's
SUITES = ("bookworm", "trixie", "sid")
# what the initramfs loads to mount an ext4 root on virtio (modules in Debian's
# kernels, with whatever modules.dep says they need; a name the kernel has
# built in is skipped). crc32c_generic: 6.1's ext4 asks the crypto API for it.
INITRD_MODULES = ["virtio_pci", "virtio_blk", "crc32c_generic", "ext4"]
NEEDS = {"qemu-system-x86_64": "qemu-system-x86", "debootstrap": "debootstrap", "mkfs.ext4": "e2fsprogs",
         "debugfs": "e2fsprogs", "cpio": "cpio", "xz": "xz-utils", "zstd": "zstd"}
MIN_FREE = 8 << 30

T0 = time.monotonic()


class LabError(Exception):
    pass


def say(msg: str) -> None:
    print(f"[lab {time.monotonic() - T0:6.1f}s] {msg}", flush=True)


def sh(cmd, log=None, **kw):
    """Run ``cmd``; on failure raise LabError with the tail of its output."""
    try:
        res = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)
    except FileNotFoundError:
        raise LabError(f"{cmd[0]} is not installed") from None
    if log:
        with open(log, "a") as f:
            f.write(res.stdout)
    if res.returncode != 0:
        tail = "\n".join(res.stdout.strip().splitlines()[-5:])
        raise LabError(f"{' '.join(map(str, cmd[:3]))} ... failed ({res.returncode}):\n{tail}")
    return res.stdout


def preflight(cache: str) -> None:
    if os.geteuid() != 0:
        raise LabError("the lab needs root (debootstrap, the guest image): run it with sudo")
    missing = sorted({pkg for tool, pkg in NEEDS.items() if shutil.which(tool) is None})
    static = subprocess.run(["dpkg-query", "-W", "-f=${Status}", "busybox-static"], capture_output=True, text=True)
    if "install ok installed" not in static.stdout:
        missing.append("busybox-static")  # the initramfs runs it without a libc
    if missing:
        raise LabError(f"missing tools: apt-get install {' '.join(missing)}")
    os.makedirs(cache, exist_ok=True)
    free = shutil.disk_usage(cache).free
    if free < MIN_FREE:
        raise LabError(f"only {free >> 20} MiB free in {cache}; the lab needs {MIN_FREE >> 30} GiB")


@contextlib.contextmanager
def cache_lock(cache: str):
    """The cache is prepared by one lab at a time: the test suite runs
    `lab vagrant` alongside `lab qemu`, and both want bookworm's root and kernel."""
    os.makedirs(cache, exist_ok=True)
    fd = os.open(os.path.join(cache, ".lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def prune_cache(cache: str) -> None:
    """Remove what earlier recipes of the lab left in the cache (several GiB each)."""
    keep_root, keep_initrd = f"-r{ROOTFS_RECIPE}", f"-r{INITRD_RECIPE}.cpio.gz"
    for name in os.listdir(cache):
        path = os.path.join(cache, name)
        stale = (name.startswith(("rootfs-", "root-")) and keep_root not in name and not name.endswith(".log")
                 or name.startswith("initrd-") and not name.endswith(keep_initrd)
                 or name.startswith("kernel-") or name == "proto")  # recipe 3's kernel folder; experiments
        if not stale:
            continue
        say(f"removing {name} (an earlier recipe of the lab)")
        if os.path.isdir(path) and not os.path.islink(path):
            unmount_under(path)
            shutil.rmtree(path)
        else:
            os.remove(path)


def mirrors() -> tuple[str, str]:
    """The Debian archive and its security archive, as the host's apt knows them."""
    main, security = "http://deb.debian.org/debian", "http://deb.debian.org/debian-security"
    for path in ("/etc/apt/sources.list.d/debian.sources", "/etc/apt/sources.list"):
        try:
            text = open(path).read()
        except OSError:
            continue
        uris = re.findall(r"^URIs:\s*(\S+)", text, flags=re.M)
        uris += re.findall(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+)", text, flags=re.M)
        for uri in uris:
            if uri.rstrip("/").endswith("/debian"):
                main = uri
            elif uri.rstrip("/").endswith("/debian-security"):
                security = uri
    return main, security


class Chroot:
    """A suite's root, with /proc, /sys and /dev bound while apt and make run in it."""

    def __init__(self, root: str):
        self.root = root
        self.mounted: list[str] = []

    def __enter__(self):
        for what in ("proc", "sys", "dev"):
            target = os.path.join(self.root, what)
            os.makedirs(target, exist_ok=True)
            sh(["mount", "--rbind", f"/{what}", target])
            sh(["mount", "--make-rslave", target])
            self.mounted.append(target)
        return self

    def __exit__(self, *exc):
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-R", "-l", target], capture_output=True)
        self.mounted.clear()

    def run(self, *cmd, log=None):
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "DEBIAN_FRONTEND": "noninteractive",
               "INITRD": "No",  # the kernel's postinst makes no initramfs: the lab brings its own
               "LC_ALL": "C", "HOME": "/root"}
        return sh(["chroot", self.root, *cmd], log=log, env=env)


def unmount_under(root: str) -> None:
    with open("/proc/self/mounts") as f:
        points = [line.split()[1] for line in f]
    prefix = os.path.realpath(root) + "/"
    for point in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def sources(suite: str) -> str:
    """The root's own apt sources: its suite, and for a stable suite its updates and security."""
    main, security = mirrors()
    lines = [f"deb {main} {suite} main"]
    if suite == "bookworm":  # Debian 12's kernels are published through bookworm-security
        lines += [f"deb {main} {suite}-updates main", f"deb {security} {suite}-security main"]
    return "\n".join(lines) + "\n"


def write_apt_config(root: str, suite: str) -> None:
    with open(os.path.join(root, "etc", "apt", "sources.list"), "w") as f:
        f.write(sources(suite))
    # A mirror that is a snapshot serves sid's Release past its Valid-Until
    # ("expired (invalid since 19d)" here on 2026-11-25): signatures are still
    # checked, only the date is not. The lab's root only; never the host's apt.
    with open(os.path.join(root, "etc", "apt", "apt.conf.d", "90kleaktrace-lab"), "w") as f:
        f.write('Acquire::Check-Valid-Until "false";\nAPT::Install-Recommends "false";\n')


def ensure_root(cache: str, suite: str) -> str:
    """The suite's root filesystem tree: debootstrap plus the guest's packages."""
    root = os.path.join(cache, f"root-{suite}-r{ROOTFS_RECIPE}")
    if os.path.exists(root + ".debootstrapped"):
        write_apt_config(root, suite)  # as this version of the lab writes it
        return root
    packages = sh(["sh", os.path.join(HERE, "provision.sh"), "packages"]).split() + ["make", "gcc"]
    unmount_under(root)  # a run killed with the root's /dev bound: rmtree must not reach the host's
    shutil.rmtree(root, ignore_errors=True)
    log = os.path.join(cache, f"debootstrap-{suite}.log")
    say(f"{suite}: debootstrap with {', '.join(packages)} (1 to 3 minutes; log: {log})")
    sh(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", suite, root, mirrors()[0]],
       log=log)
    write_apt_config(root, suite)
    open(root + ".debootstrapped", "w").close()
    return root


def ensure_kernel(cache: str, suite: str, root: str, offline: bool) -> str:
    """Installs the suite's current kernel and its headers in the root; returns its release."""
    log = os.path.join(cache, f"apt-{suite}.log")
    with Chroot(root) as ch:
        if not offline:
            say(f"{suite}: apt-get update in the lab's root")
            try:
                ch.run("apt-get", "update", "-qq", log=log)
            except LabError as e:  # offline: the kernel already installed will do
                say(f"{suite}: apt-get update failed, using the lists already there ({e})")
        m = re.search(r"Depends: linux-image-(\S+)", ch.run("apt-cache", "depends", "linux-image-amd64"))
        if not m:
            raise LabError(f"{suite}: cannot tell the suite's kernel (see {log})")
        rel = m.group(1)
        if not os.path.exists(os.path.join(root, "lib", "modules", rel, "modules.dep")) or \
                not os.path.isdir(os.path.join(root, "usr", "src", f"linux-headers-{rel}")):
            say(f"{suite}: installing Debian's kernel {rel} and its headers in the lab's root")
            ch.run("apt-get", "install", "-y", "-qq", "--no-install-recommends",
                   f"linux-image-{rel}", f"linux-headers-{rel}", log=log)
            base = rel.removesuffix("-amd64")
            installed = ch.run("dpkg-query", "-W", "-f=${Package}\n", "linux-image-[0-9]*", "linux-headers-[0-9]*")
            stale = [p for p in installed.split() if base not in p]
            if stale:  # the kernels of earlier runs
                ch.run("apt-get", "purge", "-y", "-qq", *stale, log=log)
            ch.run("apt-get", "clean")
    return rel


LAB_INIT = """#!/bin/sh
# the guest's init: mount what kleaktrace needs, run the scenarios, power off
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing
mkdir -p /lab && mount /dev/vdb /lab
echo "lab: guest up, kernel $(uname -r), $(nproc) CPUs"
PATH=/usr/sbin:/usr/bin:/sbin:/bin sh /lab/vagrant/provision.sh run /lab /lab/out
echo "lab: scenarios exit status $?"
sync
umount /lab
echo o > /proc/sysrq-trigger
sleep 30
"""


def ensure_image(cache: str, suite: str, root: str, rel: str) -> str:
    """The guest's root disk, an ext4 image of the root tree (booted read-only: snapshot=on)."""
    img = os.path.join(cache, f"rootfs-{suite}-{rel}-r{ROOTFS_RECIPE}.img")
    if os.path.exists(img):
        return img
    for old in os.listdir(cache):  # images of this suite's earlier kernels
        if old.startswith(f"rootfs-{suite}-") and old.endswith(".img"):
            os.remove(os.path.join(cache, old))
    with open(os.path.join(root, "sbin", "lab-init"), "w") as f:
        f.write(LAB_INIT)
    os.chmod(os.path.join(root, "sbin", "lab-init"), 0o755)
    size = int(int(sh(["du", "-sb", "-x", root]).split()[0]) * 1.2) + (256 << 20)
    say(f"{suite}: making the {size >> 20} MiB ext4 image of the root")
    tmp = img + ".tmp"
    sh(["mkfs.ext4", "-q", "-F", "-L", "labroot", "-d", root, tmp, f"{size >> 10}k"])
    os.rename(tmp, img)
    return img


INITRD_INIT = """#!/bin/sh
/bin/busybox mount -t proc proc /proc
/bin/busybox mount -t devtmpfs devtmpfs /dev
for m in {modules}; do /bin/busybox insmod /modules/$m.ko || echo "initrd: insmod $m failed"; done
for i in 1 2 3 4 5 6 7 8 9 10; do [ -b /dev/vda ] && break; /bin/busybox sleep 0.5; done
/bin/busybox mount -t ext4 /dev/vda /newroot || {{ echo "initrd: cannot mount /dev/vda"; /bin/busybox sh; }}
init=/sbin/lab-init  # the scenarios; the Vagrant box boots lab.init=/sbin/init (systemd)
for a in $(/bin/busybox cat /proc/cmdline); do case "$a" in lab.init=*) init="${{a#lab.init=}}";; esac; done
/bin/busybox umount /proc
exec /bin/busybox switch_root /newroot "$init"
"""


def initrd_modules(moddir: str) -> list[str]:
    """INITRD_MODULES and what they need, in load order, as paths under moddir."""
    deps = {}
    with open(os.path.join(moddir, "modules.dep")) as f:
        for line in f:
            path, _, needs = line.partition(":")
            deps[re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(path)).replace("-", "_")] = (path, needs.split())
    by_path = {path: name for name, (path, _) in deps.items()}
    order: list[str] = []

    def load(name: str) -> None:
        if name not in deps or deps[name][0] in order:
            return  # built in, or already loaded
        for need in reversed(deps[name][1]):  # modprobe loads the last-listed first
            load(by_path[need])
        order.append(deps[name][0])

    for name in INITRD_MODULES:
        load(name)
    return order


def ensure_initrd(cache: str, suite: str, root: str, rel: str) -> str:
    initrd = os.path.join(cache, f"initrd-{rel}-r{INITRD_RECIPE}.cpio.gz")
    if os.path.exists(initrd):
        return initrd
    moddir = os.path.join(root, "lib", "modules", rel)
    with tempfile.TemporaryDirectory() as d:
        for sub in ("bin", "proc", "dev", "newroot", "modules"):
            os.makedirs(os.path.join(d, sub))
        shutil.copy("/bin/busybox", os.path.join(d, "bin", "busybox"))
        os.symlink("busybox", os.path.join(d, "bin", "sh"))  # for /init's #!/bin/sh
        names = []
        for i, path in enumerate(initrd_modules(moddir)):
            name = f"{i:02d}-{os.path.basename(path).split('.ko')[0]}.ko"
            src, dst = os.path.join(moddir, path), os.path.join(d, "modules", name)
            unpack = {".xz": ["xz", "-dc"], ".zst": ["zstd", "-dcq"], ".gz": ["gzip", "-dc"]}
            ext = os.path.splitext(src)[1]
            if ext in unpack:  # busybox insmod takes plain modules
                with open(dst, "wb") as out:
                    subprocess.run(unpack[ext] + [src], stdout=out, check=True)
            else:
                shutil.copy(src, dst)
            names.append(name[:-3])
        with open(os.path.join(d, "init"), "w") as f:
            f.write(INITRD_INIT.format(modules=" ".join(names)))
        os.chmod(os.path.join(d, "init"), 0o755)
        files = sh(["find", "."], cwd=d)
        cpio = subprocess.run(["cpio", "-o", "-H", "newc", "--quiet"], input=files.encode(), cwd=d,
                              stdout=subprocess.PIPE, check=True).stdout
        subprocess.run(["gzip", "-c"], input=cpio, stdout=open(initrd + ".tmp", "wb"), check=True)
    say(f"{suite}: initramfs with {', '.join(n[3:] for n in names)}")
    os.rename(initrd + ".tmp", initrd)
    return initrd


def build_module(root: str, rel: str, dest: str) -> str:
    """kleaklab.ko, built in the suite's root (its compiler, its kbuild) against its headers."""
    build = os.path.join(root, "tmp", f"kleaklab-build-{os.getpid()}")
    shutil.rmtree(build, ignore_errors=True)
    shutil.copytree(os.path.join(HERE, "module"), build)
    try:
        with Chroot(root) as ch:
            ch.run("make", "-C", f"/usr/src/linux-headers-{rel}", f"M=/tmp/{os.path.basename(build)}", "modules")
        ko = os.path.join(dest, "kleaklab.ko")
        shutil.copy(os.path.join(build, "kleaklab.ko"), ko)
    finally:
        shutil.rmtree(build, ignore_errors=True)
    return ko


def make_lab_disk(dest: str, ko: str, experiment: str | None = None, name: str = "lab") -> str:
    """A small ext4 disk with the project's code, the module, and room for /out."""
    tree = os.path.join(dest, f"{name}disk")
    shutil.copytree(os.path.join(ROOT, "bpftrace_leak"), os.path.join(tree, "bpftrace_leak"),
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(HERE, os.path.join(tree, "vagrant"), ignore=shutil.ignore_patterns("__pycache__", ".vagrant"))
    shutil.copy(ko, os.path.join(tree, "vagrant", "module", "kleaklab.ko"))
    os.makedirs(os.path.join(tree, "out"))
    if experiment:  # provision.sh runs vagrant/experiments/NAME.py instead of the scenarios
        with open(os.path.join(tree, "experiment"), "w") as f:
            f.write(experiment)
    img = os.path.join(dest, f"{name}.img")
    sh(["mkfs.ext4", "-q", "-F", "-L", "lab", "-d", tree, img, "64M"])
    return img
