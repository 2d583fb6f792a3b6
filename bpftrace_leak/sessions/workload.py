"""A workload whose kernel leaks are known exactly, for the demo and the tests.

It churns socketpair+close and open+close cycles (all freed, some through
RCU), then keeps N socketpairs and M open files: 2N socket inodes
(sock_inode_cache), 2N+M struct files (filp). It prints ``leaked N M`` and
holds them until --hold seconds pass, stdin closes (--until-eof) or a signal.

    python3 -m bpftrace_leak.sessions.workload --churn 20000 --sockets 300 --files 200
"""

import argparse
import errno
import os
import shutil
import signal
import socket
import sys
import tempfile
import time


def churn(cycles: int, path: str) -> None:
    for _ in range(cycles):
        a, b = socket.socketpair()
        a.close()
        b.close()
        os.close(os.open(path, os.O_RDONLY))


def ip_options(keep: int, churn: int) -> list:
    """UDP sockets with IP options: setting them again frees the old ones with
    kfree_rcu() (net/ipv4/ip_sockglue.c), a free no tracepoint shows. Sets
    options ``churn`` times on one socket, then keeps ``keep`` sockets with
    options: exactly ``keep`` struct ip_options_rcu stay allocated."""
    nops = bytes([1, 1, 1, 1])  # IPOPT_NOOP x4
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _ in range(churn):
            s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, nops)
    held = []
    for _ in range(keep):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, nops)
        held.append(s)
    return held


def leak(sockets: int, files: int, path: str) -> list:
    held = [socket.socketpair() for _ in range(sockets)]
    held += [os.open(path, os.O_RDONLY) for _ in range(files)]
    return held


def in_flight(count: int) -> tuple[list, str]:
    """Files whose only holder is a unix socket's queue: ``count`` files made
    on a tmpfs mounted for this process alone (a mount namespace of its own),
    sent over a socketpair with SCM_RIGHTS, never received, and closed here:
    each struct file, and through it a reference on its dentry and on the
    mount, is held by a message no BPF iterator lists (unix_gc's in-flight
    files, the way SCM_RIGHTS cycles leak). Returns what keeps them
    (the socketpair) and the mount point."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    clone_newns, ms_rec, ms_private = 0x20000, 0x4000, 0x40000
    if libc.unshare(clone_newns):
        raise OSError(ctypes.get_errno(), "unshare: a mount namespace of its own")
    # so that the tmpfs does not propagate back; a root that is no mount point
    # (a chroot into a folder) refuses with EINVAL: its mounts are the host's
    if libc.mount(b"none", b"/", None, ms_rec | ms_private, None) and ctypes.get_errno() != errno.EINVAL:
        raise OSError(ctypes.get_errno(), "mount: make / private")
    where = tempfile.mkdtemp(prefix="kleaktrace-inflight-", dir="/tmp")
    if libc.mount(b"tmpfs", where.encode(), b"tmpfs", 0, b"size=1m"):
        raise OSError(ctypes.get_errno(), f"mount tmpfs on {where}")
    a, b = socket.socketpair()
    fds = [os.open(os.path.join(where, f"inflight{i}"), os.O_CREAT | os.O_RDWR, 0o600) for i in range(count)]
    socket.send_fds(a, [b"x"], fds)
    for fd in fds:
        os.close(fd)
    return [a, b], where


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--churn", type=int, default=20000, help="socketpair/open cycles freed")
    ap.add_argument("--sockets", type=int, default=300, help="socketpairs kept (leaked)")
    ap.add_argument("--files", type=int, default=200, help="open files kept (leaked)")
    ap.add_argument("--hold", type=float, default=3600, help="seconds to keep them")
    ap.add_argument("--wait", action="store_true", help="start only after a line on stdin")
    ap.add_argument("--until-eof", action="store_true", help="hold until stdin closes")
    ap.add_argument("--fork", action="store_true", help="leak in a forked child instead")
    ap.add_argument("--rate", type=float, default=0,
                    help="leak this many socketpairs a second for --for seconds (after the fixed leak)")
    ap.add_argument("--for", dest="for_s", type=float, default=0, help="seconds of --rate leaking")
    ap.add_argument("--rate-files", action="store_true", help="--rate leaks open files, not socketpairs")
    ap.add_argument("--create", type=int, default=0,
                    help="also create this many files, closed (their dentries stay cached, not pinned)")
    ap.add_argument("--cwd-files", type=int, default=0,
                    help="also make a folder, work in it, keep this many files open in it and one empty "
                         "subfolder (the reference census's cwd, file and child pins)")
    ap.add_argument("--inflight", type=int, default=0,
                    help="also make this many files on a private tmpfs and leave them in flight in a unix "
                         "socket (SCM_RIGHTS, never received): references no iterator lists")
    ap.add_argument("--name", help="set the process's name (prctl PR_SET_NAME; escapes welcome)")
    ap.add_argument("--ip-options", type=int, default=0,
                    help="also keep this many UDP sockets with IP options (kfree_rcu'd when replaced)")
    ap.add_argument("--ip-options-churn", type=int, default=0, help="IP options set and replaced first")
    return ap


def _leak_all(args, path: str):
    """What the arguments ask to leak: (what holds it, the --cwd-files
    folder, the --inflight mount, the --create folder)."""
    home = inflight_at = None
    held = leak(args.sockets, args.files, path)
    if args.ip_options or args.ip_options_churn:
        held += ip_options(args.ip_options, args.ip_options_churn)
    if args.cwd_files:
        home = tempfile.mkdtemp(prefix="kleaktrace-cwd-", dir="/tmp")
        os.chdir(home)
        held += [os.open(f"f{i}", os.O_CREAT | os.O_RDWR, 0o600) for i in range(args.cwd_files)]
        os.mkdir("sub")
    if args.inflight:
        kept, inflight_at = in_flight(args.inflight)
        held += kept
    created = tempfile.TemporaryDirectory(prefix="kleaktrace-workload-", dir="/tmp") if args.create else None
    for i in range(args.create):
        os.close(os.open(os.path.join(created.name, f"c{i}"), os.O_CREAT | os.O_WRONLY, 0o600))
    if args.rate:
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < args.for_s:
            due = int((time.monotonic() - start) * args.rate)
            held += leak(0, due - n, path) if args.rate_files else leak(due - n, 0, path)
            n = due
            time.sleep(0.02)
    return held, home, inflight_at, created


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    if args.name:
        import ctypes
        ctypes.CDLL(None).prctl(15, args.name.encode()[:15], 0, 0, 0)  # PR_SET_NAME
    signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
    # opened before --wait returns, so its own struct file is not in the count
    with tempfile.NamedTemporaryFile(prefix="kleaktrace-workload-") as f:
        if args.wait:
            sys.stdin.readline()
        churn(args.churn, f.name)
        if args.fork:
            pid = os.fork()
            if pid:
                print(f"child {pid}", flush=True)
                os.waitpid(pid, 0)
                return 0
        held, home, inflight_at, created = _leak_all(args, f.name)
        print(f"leaked {args.sockets} {args.files} pid {os.getpid()}", flush=True)
        if args.until_eof:
            sys.stdin.read()
        else:
            time.sleep(args.hold)
        del held
        if args.cwd_files:
            shutil.rmtree(home, ignore_errors=True)
        if args.inflight:  # the tmpfs was this process's alone; its folder is the host's
            import ctypes
            ctypes.CDLL(None).umount2(inflight_at.encode(), 2)  # MNT_DETACH
            os.rmdir(inflight_at)
    return 0


if __name__ == "__main__":
    sys.exit(main())
