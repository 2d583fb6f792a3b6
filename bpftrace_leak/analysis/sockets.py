"""Names the sockets behind socket leaks: family and state, from sock_diag.

A group in a socket cache says sockets are outstanding; the process's file
table says which of its file descriptors are sockets (``socket:[INODE]``),
and the kernel's sock_diag netlink interface (through pyroute2) gives each
inode's family and state, so a report can say "600 unix ESTABLISHED".
"""

import os
import socket

__all__ = ["SOCKET_CACHES", "is_socket_cache", "socket_inodes", "name_sockets"]

#: slab caches that hold sockets (merged aliases are checked too)
SOCKET_CACHES = frozenset({
    "sock_inode_cache", "UNIX", "UNIX-STREAM", "TCP", "TCPv6", "UDP", "UDPv6", "UDP-Lite", "UDPLITEv6",
    "RAW", "RAWv6", "PING", "PINGv6", "MPTCP", "MPTCPv6", "request_sock_TCP", "tw_sock_TCP", "NETLINK",
})

# TCP_* states (include/net/tcp_states.h); AF_UNIX uses the same numbers
_STATES = {1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2", 6: "TIME_WAIT",
           7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING"}


def is_socket_cache(cache: str | None, aliases: set) -> bool:
    return bool(cache) and bool(({cache} | set(aliases)) & SOCKET_CACHES)


def socket_inodes(pid: int) -> set[int]:
    """Inodes of the sockets among ``pid``'s file descriptors."""
    out = set()
    fd_dir = f"/proc/{pid}/fd"
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return out
    for fd in fds:
        try:
            target = os.readlink(os.path.join(fd_dir, fd))
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(int(target[8:-1]))
    return out


def _diag_table() -> dict[int, tuple[str, str, dict]]:
    """{inode: (family, state, detail)} for UNIX, TCP and UDP sockets, v4 and v6.

    detail: {"peer": inode} for UNIX, {"sport", "dport"} for inet.
    """
    from pyroute2 import DiagSocket

    table = {}
    with DiagSocket() as ds:
        ds.bind()
        for msg in ds.get_sock_stats(family=socket.AF_UNIX):
            peer = dict(msg.get("attrs") or []).get("UNIX_DIAG_PEER")
            table[msg.get("udiag_ino")] = ("unix", _STATES.get(msg.get("udiag_state"), str(msg.get("udiag_state"))),
                                           {"peer": peer} if peer else {})
        for family, fname in ((socket.AF_INET, "inet"), (socket.AF_INET6, "inet6")):
            for proto, pname in ((socket.IPPROTO_TCP, "tcp"), (socket.IPPROTO_UDP, "udp")):
                try:
                    msgs = ds.get_sock_stats(family=family, protocol=proto)
                except Exception:  # a kernel without that diag module
                    continue
                for msg in msgs:
                    state = msg.get("idiag_state")
                    table[msg.get("idiag_inode")] = (f"{pname}{'6' if family == socket.AF_INET6 else ''}",
                                                     _STATES.get(state, str(state)),
                                                     {"sport": msg.get("idiag_sport"), "dport": msg.get("idiag_dport")})
    return table


_EXAMPLES = 5


def name_sockets(pids) -> list[dict]:
    """[{"pid", "family", "state", "count", "examples": [{"inode", ...detail}]}] for the
    sockets ``pids`` hold, most first; a few examples each, lowest inodes first.

    Returns [] when sock_diag cannot be used (no pyroute2, no permission).
    """
    try:
        table = _diag_table()
    except Exception:
        return []
    found: dict[tuple, list] = {}
    for pid in pids:
        for ino in sorted(socket_inodes(pid)):
            family, state, detail = table.get(ino, ("other", "?", {}))
            found.setdefault((pid, family, state), []).append(dict(inode=ino, **detail))
    return [{"pid": p, "family": f, "state": s, "count": len(socks), "examples": socks[:_EXAMPLES]}
            for (p, f, s), socks in sorted(found.items(), key=lambda kv: -len(kv[1]))]
