"""The lab through Vagrant: a box made here from the lab's own bookworm root,
brought up by `vagrant up` with libvirt running QEMU under TCG.

No box catalogue is asked for anything. The box is the lab's bookworm root
(labkit.py) with what Vagrant needs added (systemd, sshd, the vagrant user
with Vagrant's insecure key, DHCP on eth0, rsync for the synced folder),
turned into a libvirt box (box.img in qcow2, metadata.json) and added with
`vagrant box add`. The box's disk is the root file system itself, no
partition table and no boot loader: the Vagrantfile boots the kernel and the
lab's initramfs directly (libvirt's <kernel>/<initrd>, copied to
/var/lib/libvirt/boot where libvirt's QEMU may read them), with
lab.init=/sbin/init so systemd starts instead of the scenarios.

`vagrant up` then provisions with vagrant/provision.sh like any box;
provision.sh finds BCC, the headers and a compiler already installed and
builds the module, runs the scenarios and checks them. The reports are
copied out over `vagrant ssh`, and `vagrant destroy -f` removes the machine
(and libvirt's network, which vagrant-libvirt made for it).
"""

import glob
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time

from labkit import (HERE, Chroot, LabError, cache_lock, ensure_image, ensure_initrd, ensure_kernel, ensure_root,
                    say, sh, unmount_under)

BOX_RECIPE = 1  # bump when the box's recipe changes
BOX = "kleaktrace/lab-bookworm"
SUITE = "bookworm"
BOX_PACKAGES = ["systemd-sysv", "udev", "openssh-server", "sudo", "ifupdown", "isc-dhcp-client", "rsync",
                "iproute2"]
NEEDS = {"vagrant": "vagrant", "libvirtd": "libvirt-daemon-system", "virsh": "libvirt-clients",
         "qemu-img": "qemu-utils", "rsync": "rsync", "dnsmasq": "dnsmasq-base", "iptables": "iptables"}
BOOT_DIR = "/var/lib/libvirt/boot"
OUT_IN_GUEST = "/var/tmp/kleaklab-out"  # the Vagrantfile's provisioner writes here


def in_chroot() -> bool:
    """True inside a chroot (e.g. a fresh-root check), where libvirt's QEMU
    cannot make its mount namespace ("Failed disable mount propagation out
    of the root filesystem")."""
    try:
        return os.stat("/") != os.stat("/proc/1/root")
    except OSError:  # PID 1's root unreadable (some sandboxes' init hides it)
        pass
    # a root that is no mount point (a chroot into a folder) has no "/" line
    # in mountinfo: mounts outside the process's root are not shown
    try:
        with open("/proc/self/mountinfo") as f:
            return not any(line.split()[4] == "/" for line in f if len(line.split()) > 4)
    except OSError:
        return False


def preflight() -> None:
    if in_chroot():
        raise LabError("libvirt cannot start a guest inside a chroot (its QEMU needs a mount namespace "
                       "of a real root): run vagrant/lab vagrant on the machine itself")
    missing = sorted({pkg for tool, pkg in NEEDS.items() if shutil.which(tool) is None})
    if not missing:
        plugins = subprocess.run(["vagrant", "plugin", "list"], capture_output=True, text=True).stdout
        if "vagrant-libvirt" not in plugins:
            missing.append("vagrant-libvirt")
    if missing:
        raise LabError(f"missing tools: apt-get install --no-install-recommends {' '.join(missing)}")


def insecure_key() -> str:
    """Vagrant's well-known public key, as Debian's vagrant ships it."""
    for pattern in ("/usr/share/rubygems-integration/all/gems/vagrant-*/keys/vagrant.pub",
                    "/usr/share/vagrant/keys/vagrant.pub", "/opt/vagrant/embedded/gems/gems/vagrant-*/keys/vagrant.pub"):
        found = sorted(glob.glob(pattern))
        if found:
            return open(found[-1]).read().strip()
    raise LabError("cannot find Vagrant's insecure public key (keys/vagrant.pub) in the vagrant package")


def ensure_box_root(cache: str, root: str, rel: str) -> str:
    """The bookworm root, copied, with what a Vagrant box needs."""
    box_root = os.path.join(cache, f"box-{SUITE}-{rel}-b{BOX_RECIPE}")
    if os.path.exists(box_root + ".done"):
        return box_root
    for old in glob.glob(os.path.join(cache, f"box-{SUITE}-*")):  # earlier kernels' and recipes'
        if os.path.isdir(old):
            unmount_under(old)
            shutil.rmtree(old)
        else:
            os.remove(old)
    say(f"box: copying the {SUITE} root and adding {', '.join(BOX_PACKAGES)}")
    sh(["cp", "-a", "--reflink=auto", root, box_root])
    with Chroot(box_root) as ch:
        ch.run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *BOX_PACKAGES,
               log=os.path.join(cache, "apt-box.log"))
        ch.run("apt-get", "clean")
        ch.run("useradd", "-m", "-s", "/bin/bash", "vagrant")
        ch.run("passwd", "-d", "vagrant")
    home = os.path.join(box_root, "home", "vagrant")
    os.makedirs(os.path.join(home, ".ssh"), mode=0o700, exist_ok=True)
    with open(os.path.join(home, ".ssh", "authorized_keys"), "w") as f:
        f.write(insecure_key() + "\n")
    os.chmod(os.path.join(home, ".ssh", "authorized_keys"), 0o600)
    files = {
        "etc/sudoers.d/vagrant": "vagrant ALL=(ALL) NOPASSWD: ALL\n",
        "etc/network/interfaces": "auto lo\niface lo inet loopback\nauto eth0\niface eth0 inet dhcp\n",
        "etc/fstab": "LABEL=labroot / ext4 defaults 0 0\n",
        "etc/hostname": "kleaktrace-lab\n",
        # sshd's host keys are made at its install; a box's are shared by design
        "etc/ssh/sshd_config.d/vagrant.conf": "UseDNS no\n",
    }
    for path, text in files.items():
        with open(os.path.join(box_root, path), "w") as f:
            f.write(text)
    os.chmod(os.path.join(box_root, "etc/sudoers.d/vagrant"), 0o440)
    uid = int(sh(["chroot", box_root, "id", "-u", "vagrant"]).strip())
    for dirpath, _, names in os.walk(home):
        for name in [None, *names]:
            os.chown(os.path.join(dirpath, name) if name else dirpath, uid, uid)
    open(box_root + ".done", "w").close()
    return box_root


def ensure_box(cache: str, box_root: str, rel: str) -> None:
    """The libvirt box, added to Vagrant once per kernel and recipe."""
    stamp = os.path.join(cache, f"box-{SUITE}-{rel}-b{BOX_RECIPE}.added")
    listed = subprocess.run(["vagrant", "box", "list"], capture_output=True, text=True).stdout
    if os.path.exists(stamp) and BOX in listed:
        return
    img = ensure_image(cache, f"box-{SUITE}", box_root, rel)
    with tempfile.TemporaryDirectory(prefix="kleaktrace-box-", dir=cache) as d:
        say("box: converting the root's image to qcow2")
        sh(["qemu-img", "convert", "-O", "qcow2", img, os.path.join(d, "box.img")])
        size_gb = -(-os.path.getsize(img) // (1 << 30))
        with open(os.path.join(d, "metadata.json"), "w") as f:
            json.dump({"provider": "libvirt", "format": "qcow2", "virtual_size": size_gb}, f)
        box = os.path.join(d, "lab.box")
        with tarfile.open(box, "w") as tar:
            for name in ("metadata.json", "box.img"):
                tar.add(os.path.join(d, name), arcname=name)
        say(f"box: vagrant box add {BOX}")
        sh(["vagrant", "box", "add", "--force", "--name", BOX, box])
    os.remove(img)  # the box holds it now
    open(stamp, "w").close()


class Libvirt:
    """libvirtd (and virtlogd) started for the run where no init system runs them; stopped after."""

    def __init__(self):
        self.started: list[subprocess.Popen] = []

    def __enter__(self):
        for daemon in ("virtlogd", "libvirtd"):
            if subprocess.run(["pgrep", "-x", daemon], capture_output=True).returncode != 0:
                self.started.append(subprocess.Popen([daemon], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for _ in range(50):
            if subprocess.run(["virsh", "-c", "qemu:///system", "version"], capture_output=True).returncode == 0:
                return self
            time.sleep(0.2)
        raise LabError("libvirtd does not answer on qemu:///system")

    def __exit__(self, *exc):
        for proc in reversed(self.started):
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()


def vagrant(args, env, timeout, log) -> None:
    """Run ``vagrant ARGS``, its output in ``log`` and its lab: lines shown."""
    with open(log, "a") as out:
        proc = subprocess.Popen(["timeout", str(timeout), "vagrant", *args], cwd=HERE, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        for raw in proc.stdout:
            line = raw.decode(errors="replace").rstrip().split("\r")[-1]  # progress bars redraw with \r
            out.write(line + "\n")
            text = line.split(": ", 1)[-1].strip()
            if text.startswith(("lab:", "kleaktrace:")) or "Machine booted" in line or "Running provisioner" in line:
                say(f"vagrant: {text}")
        rc = proc.wait()
    if rc == 124:
        raise LabError(f"vagrant {args[0]} did not finish within {timeout} s (log: {log})")
    if rc != 0:
        tail = open(log, errors="replace").read().strip().splitlines()[-6:]
        raise LabError(f"vagrant {args[0]} failed ({rc}; log: {log}):\n" + "\n".join(tail))


def copy_out(env: dict, out: str) -> None:
    """The guest's reports, over `vagrant ssh`, into ``out``."""
    try:
        tar = subprocess.run(["vagrant", "ssh", "-c", f"sudo tar -C {OUT_IN_GUEST} -cf - ."], cwd=HERE,
                             env=env, capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise LabError("vagrant ssh did not answer within 120 s") from None
    if tar.returncode != 0 or not tar.stdout:
        raise LabError(f"cannot copy {OUT_IN_GUEST} out of the guest: {tar.stderr.decode(errors='replace')[-300:]}")
    with tempfile.NamedTemporaryFile(suffix=".tar") as f:
        f.write(tar.stdout)
        f.flush()
        with tarfile.open(f.name) as t:
            t.extractall(out, **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))


def run(args) -> dict:
    """Build the box, `vagrant up` it, fetch its reports, destroy it; the summary."""
    t0 = time.monotonic()
    preflight()
    out = os.path.join(args.out, "vagrant")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    with cache_lock(args.cache):
        root = ensure_root(args.cache, SUITE)
        rel = ensure_kernel(args.cache, SUITE, root, args.offline)
        box_root = ensure_box_root(args.cache, root, rel)
        initrd = ensure_initrd(args.cache, SUITE, root, rel)
        ensure_box(args.cache, box_root, rel)
        os.makedirs(BOOT_DIR, exist_ok=True)
        kernel = os.path.join(BOOT_DIR, "kleaktrace-lab-vmlinuz")
        shutil.copy(os.path.join(root, "boot", f"vmlinuz-{rel}"), kernel)
        shutil.copy(initrd, os.path.join(BOOT_DIR, "kleaktrace-lab-initrd"))
    log = os.path.join(out, "vagrant.log")
    with tempfile.TemporaryDirectory(prefix="kleaktrace-vagrant-") as dot:
        env = dict(os.environ, VAGRANT_DOTFILE_PATH=dot, VAGRANT_DEFAULT_PROVIDER="libvirt",
                   KLEAKTRACE_LAB_BOX=BOX, KLEAKTRACE_LAB_KERNEL=kernel,
                   KLEAKTRACE_LAB_INITRD=os.path.join(BOOT_DIR, "kleaktrace-lab-initrd"))
        failed = None
        with Libvirt():
            try:
                say("vagrant: up --provider=libvirt (boot under TCG, then provision.sh: about 4 minutes)")
                try:
                    vagrant(["up", "--provider=libvirt"], env, args.timeout, log)
                except LabError as e:  # a failing scenario fails the provisioner: the reports still come out
                    failed = e
                say("vagrant: copying the reports out")
                copy_out(env, out)
            except LabError as e:
                failed = failed or e
            finally:
                say("vagrant: destroy -f")
                try:
                    vagrant(["destroy", "-f"], env, 300, log)
                except LabError as e:
                    say(f"vagrant: {e}")
    try:
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    except (OSError, ValueError):
        raise failed or LabError(f"the box wrote no summary (log: {log})") from None
    say(f"vagrant: done in {time.monotonic() - t0:.0f} s; reports in {out}")
    return dict(summary, suite="vagrant", release=rel, seconds=round(time.monotonic() - t0))
